#!/usr/bin/env python3
"""docs/reference.md documents every public function exactly as the catalog has it.

Every function in schema stream whose name does not start with '_' must have a
heading  ### `stream.name(arg type [DEFAULT expr], ...) → result`  in
docs/reference.md with the same argument names, types (compared as regtype),
defaults (compared by value, cast to the argument's type) and result
(scalar / SETOF type, or the TABLE(...) / (...) columns).  A heading for a
function that does not exist fails too.  The README must link the reference.
Each failure line names the function and what differs.

    python3 test/scripts/92_reference.py
"""
import os
import re
import sys

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "docs", "reference.md")
HEADING = re.compile(r"^### `stream\.([A-Za-z0-9_]+)\((.*)\) → (.+)`\s*$")
DB = "stream_reference"


def split_top(s):
    """Split on commas outside quotes and parentheses."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in s:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur += ch
        elif ch in "([":
            depth += 1
            cur += ch
        elif ch in ")]":
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_arg(a):
    """'name type [DEFAULT expr]' -> (name, type, default or None); a leading IN/OUT mode is kept apart."""
    mode = "IN"
    m = re.match(r"^(IN|OUT|INOUT|VARIADIC)\s+(.*)$", a)
    if m:
        mode, a = m.group(1), m.group(2)
    default = None
    m = re.match(r"^(.*?)\s+DEFAULT\s+(.*)$", a)
    if m:
        a, default = m.group(1), m.group(2)
    m = re.match(r'^("[^"]+"|[A-Za-z_][A-Za-z0-9_]*)\s+(.+)$', a)
    if not m:
        return None
    return mode, m.group(1).strip('"'), m.group(2).strip(), default


def main():
    failures = []
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    if "docs/reference.md" not in readme:
        failures.append("README.md does not link docs/reference.md")

    docs = {}
    for n, line in enumerate(open(REF, encoding="utf-8").read().split("\n"), 1):
        if line.startswith("### `stream."):
            m = HEADING.match(line)
            if not m:
                failures.append(f"docs/reference.md line {n}: heading not in the form "
                                f"### `stream.name(args) → result`: {line}")
                continue
            args = [parse_arg(a) for a in split_top(m.group(2))]
            if None in args:
                failures.append(f"docs/reference.md line {n}: cannot read the arguments of stream.{m.group(1)}")
                continue
            docs.setdefault(m.group(1), []).append((n, args, m.group(3).strip()))

    admin = psycopg2.connect("dbname=postgres")
    admin.autocommit = True
    with admin.cursor() as c:
        c.execute("SET client_min_messages = warning")
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    conn = psycopg2.connect(f"dbname={DB}")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION stream")

    def regtype(t):
        cur.execute("SELECT to_regtype(%s)::oid", (t,))
        return cur.fetchone()[0]

    def typename(oid):
        cur.execute("SELECT format_type(%s, NULL)", (oid,))
        return cur.fetchone()[0]

    def same_value(a, b, typ):
        try:
            cur.execute(f"SELECT ({a})::{typ} IS NOT DISTINCT FROM ({b})::{typ}")
            return cur.fetchone()[0]
        except psycopg2.Error as e:
            return f"error: {e.pgerror or e}".strip()

    cur.execute(r"""
        SELECT p.oid, p.proname, pg_get_function_arguments(p.oid), p.proretset, p.prorettype,
               format_type(p.prorettype, NULL),
               coalesce(p.proargnames, '{}'), coalesce(p.proargmodes::text[], '{}'),
               coalesce(p.proallargtypes, p.proargtypes::oid[])
          FROM pg_proc p
         WHERE p.pronamespace = 'stream'::regnamespace AND p.proname NOT LIKE '\_%'
         ORDER BY p.proname, p.oid""")
    funcs = cur.fetchall()
    matched = set()
    for oid, name, arglist, retset, rettype, rettype_name, argnames, argmodes, alltypes in funcs:
        cat_args = [parse_arg(a) for a in split_top(arglist)]
        cat_in = [a for a in cat_args if a[0] in ("IN", "INOUT", "VARIADIC")]
        out_cols = [(argnames[i], alltypes[i]) for i in range(len(alltypes))
                    if argmodes and argmodes[i] in ("o", "b", "t")]
        sig = f"stream.{name}({arglist})"
        if name not in docs:
            failures.append(f"{sig}: not documented in docs/reference.md (add a heading "
                            f"### `stream.{name}(...) → ...`)")
            continue
        problems_by_entry = []
        for n, args, result in docs[name]:
            problems = []
            doc_in = [a for a in args if a[0] in ("IN", "INOUT", "VARIADIC")]
            if [a[1] for a in doc_in] != [a[1] for a in cat_in]:
                problems.append(f"arguments are ({', '.join(a[1] for a in cat_in)}), documented "
                                f"({', '.join(a[1] for a in doc_in)})")
            else:
                for d, k in zip(doc_in, cat_in):
                    if regtype(d[2]) != regtype(k[2]):
                        problems.append(f"argument {k[1]} is {k[2]}, documented {d[2]}")
                    elif (d[3] is None) != (k[3] is None):
                        problems.append(f"argument {k[1]} has " +
                                        (f"DEFAULT {k[3]}, documented none" if k[3] else
                                         f"no default, documented DEFAULT {d[3]}"))
                    elif d[3] is not None:
                        same = same_value(d[3], k[3], k[2])
                        if same is not True:
                            problems.append(f"argument {k[1]} has DEFAULT {k[3]}, documented DEFAULT {d[3]}"
                                            + (f" ({same})" if isinstance(same, str) else ""))
            # result
            m = re.match(r"^(TABLE)?\((.*)\)$", result)
            if m:
                cols = [parse_arg(x) for x in split_top(m.group(2))]
                if None in cols or [c[1] for c in cols] != [c[0] for c in out_cols] or \
                        any(regtype(c[2]) != t for c, (_, t) in zip(cols, out_cols)):
                    problems.append(f"result is {'TABLE' if retset else ''}"
                                    f"({', '.join(f'{c} {typename(t)}' for c, t in out_cols)}), "
                                    f"documented {result}")
                elif bool(m.group(1)) != bool(retset):
                    problems.append(f"result {'is' if retset else 'is not'} a set, documented {result}")
            else:
                setof = result.startswith("SETOF ")
                t = result[6:] if setof else result
                if setof != bool(retset) or regtype(t) != rettype:
                    problems.append(f"result is {'SETOF ' if retset else ''}{rettype_name}, documented {result}")
            if not problems:
                matched.add((name, n))
                break
            problems_by_entry.append((n, problems))
        else:
            for n, problems in problems_by_entry:
                for p in problems:
                    failures.append(f"{sig}: docs/reference.md line {n}: {p}")

    names = {f[1] for f in funcs}
    for name, entries in docs.items():
        for n, _, _ in entries:
            if name not in names:
                failures.append(f"docs/reference.md line {n}: stream.{name} is documented but does not exist")
    conn.close()
    with admin.cursor() as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin.close()

    if failures:
        print(f"FAIL: docs/reference.md and the catalog differ ({len(failures)} problems):")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print(f"PASS: docs/reference.md documents all {len(funcs)} public functions with their arguments, "
          f"defaults and results")


if __name__ == "__main__":
    main()
