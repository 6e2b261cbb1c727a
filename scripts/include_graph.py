#!/usr/bin/env python3
"""The include graph of src/: which concern depends on which, and whether the
arrows point down.

A unit is a .c file with its .h (src/streams/chunk.c + chunk.h = streams/chunk);
unit A depends on unit B when A's .c or .h includes B's header.  A module is a
directory of src/ (streams, runtime, delivery, bgw, parquet) or a top-level
unit (kinesis, raise, ...).  The layers below say which module may depend on
which: a module depends only on modules of lower layers (or its own).

    python3 scripts/include_graph.py            modules, their edges, cycles, violations
    python3 scripts/include_graph.py --units    the unit-level edges as well
    python3 scripts/include_graph.py --dot      Graphviz of the module graph
    python3 scripts/include_graph.py --check    exit 1 on a cycle or a layer violation
    python3 scripts/include_graph.py --raw      the same with directories only (no INTERFACES)
    python3 scripts/include_graph.py --src DIR  another tree's src/ (an older checkout, say)

Cycles are counted as strongly connected components of more than one unit
(and, separately, of more than one module).
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

# Bottom first.  Who may include whom: a module of layer n includes modules of
# lower layers only (and its own).  Leaves (layer 0) depend on nothing of the
# extension; module = the library's entry point (_PG_init, hooks), which
# starts every subsystem and which nothing includes.
LAYERS = [
    ['kinesis', 'md5', 'settings', 'safe_path', 'subxact'],
    ['stream'],
    ['locktag', 'codec', 'raise', 'bgw/worker.h'],
    ['streams', 'parquet'],
    ['runtime'],
    ['delivery', 'esm'],
    ['analytics'],
    ['bgw'],
    ['caller', 'module'],
]

# Interfaces: a header a lower module may include although its module sits
# higher, because it declares only a service that depends on nothing above
# the includer.  bgw/worker.h: posting requests to and waking the database's
# worker touches only the slots in shared memory (bgw/worker_slots.c, which
# depends on settings and bgw's own files), never what the workers run.
INTERFACES = {'bgw/worker': 'bgw/worker.h'}


def units():
    """unit name -> list of (file path relative to src)."""
    out = defaultdict(list)
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(('.c', '.h')):
                rel = os.path.relpath(os.path.join(d, f), ROOT)
                out[unit_of(rel)].append(rel)
    return out


def unit_of(rel):
    # a header without a .c of its name (delivery_int.h, runtime.h) is a unit of its own
    return rel[:-2]


def module_of(unit):
    if unit in INTERFACES:
        return INTERFACES[unit]
    return unit.split('/')[0]


def resolve(rel, inc):
    here = os.path.dirname(rel)
    for cand in (os.path.normpath(os.path.join(here, inc)), os.path.normpath(inc)):
        if os.path.exists(os.path.join(ROOT, cand)):
            return cand
    return None


def graph():
    us = units()
    edges = defaultdict(set)
    for u, files in us.items():
        for rel in files:
            with open(os.path.join(ROOT, rel), encoding='utf-8', errors='replace') as fh:
                text = fh.read()
            for inc in INCLUDE.findall(text):
                target = resolve(rel, inc)
                if target is None:
                    continue
                v = unit_of(target)
                if v != u:
                    edges[u].add(v)
    return us, edges


def sccs(nodes, edges):
    """Tarjan's strongly connected components."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def layer_of(module):
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    return None


def main(argv):
    global ROOT
    if '--raw' in argv:
        INTERFACES.clear()
    if '--src' in argv:
        ROOT = argv[argv.index('--src') + 1]
    us, edges = graph()
    medges = defaultdict(lambda: defaultdict(list))
    for u, vs in edges.items():
        for v in vs:
            mu, mv = module_of(u), module_of(v)
            if mu != mv:
                medges[mu][mv].append((u, v))
    modules = sorted({module_of(u) for u in us})

    if '--dot' in argv:
        print('digraph include {\n  rankdir=BT;')
        for mu in sorted(medges):
            for mv in sorted(medges[mu]):
                print(f'  "{mu}" -> "{mv}" [label="{len(medges[mu][mv])}"];')
        print('}')
        return 0

    unit_cycles = sccs(us.keys(), edges)
    module_cycles = sccs(modules, {m: set(vs) for m, vs in medges.items()})
    violations = []
    unknown = [m for m in modules if layer_of(m) is None]
    for mu in sorted(medges):
        for mv in sorted(medges[mu]):
            lu, lv = layer_of(mu), layer_of(mv)
            if lu is not None and lv is not None and lv >= lu:
                violations.append((mu, mv, medges[mu][mv]))

    print('modules by layer (bottom first):')
    for i, layer in enumerate(LAYERS):
        present = [m for m in layer if m in modules]
        print(f'  {i}: {" ".join(present)}')
    print('module edges (A -> B: A includes B; number of unit edges):')
    for mu in sorted(medges):
        print(f'  {mu} -> ' + ', '.join(f'{mv} ({len(medges[mu][mv])})' for mv in sorted(medges[mu])))
    if '--units' in argv:
        print('unit edges:')
        for u in sorted(edges):
            print(f'  {u} -> {", ".join(sorted(edges[u]))}')
    print(f'unit cycles: {len(unit_cycles)}')
    for c in unit_cycles:
        print('  ' + ' <-> '.join(c))
    print(f'module cycles: {len(module_cycles)}')
    for c in module_cycles:
        print('  ' + ' <-> '.join(c))
    print(f'layer violations (arrows pointing up or sideways): {len(violations)}')
    for mu, mv, pairs in violations:
        print(f'  {mu} -> {mv}: ' + ', '.join(f'{u} -> {v}' for u, v in sorted(pairs)))
    if unknown:
        print('modules in no layer: ' + ' '.join(unknown))
    if '--check' in argv:
        return 1 if unit_cycles or module_cycles or violations or unknown else 0
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
