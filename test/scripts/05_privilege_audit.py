#!/usr/bin/python3
"""Privilege audit: every object of the extension, its ACL, and the rules.

In a fresh database with the extension, one stream (with a read and a write
grantee) and one direct-put delivery stream, this lists every object the
extension creates: its schemas; every table, view, sequence, type and
function (with argument types) in schemas stream, stream_internal and
stream_data (the streams' data tables and chunks too); any other member of
the extension; row-level security policies and column privileges.  Each line
gives the owner, the ACL (aclexplode: grantee, privileges, '*' for WITH GRANT
OPTION; ALL for a role's full set of several), SECURITY DEFINER and proconfig, view
options and row-level security.  The list is compared with
test/expected/acl.txt; any difference fails with a diff.

    test/scripts/05_privilege_audit.py            compare
    test/scripts/05_privilege_audit.py --update   rewrite test/expected/acl.txt

Independently of that file, these rules must hold (the file records what is;
the rules say what must be):

  R1  no PUBLIC privilege on a table, view or sequence, except SELECT on the
      read-only views of READ_ONLY_VIEWS (each security_barrier or
      security_invoker) and, exactly as listed, the PENDING exceptions;
  R2  PUBLIC has no CREATE on the extension's schemas;
  R3  PUBLIC may EXECUTE a function in stream_internal if and only if the
      grant-back list of src/sql/99_finish.sql names it;
  R4  no SECURITY DEFINER function in stream_internal is executable by PUBLIC
      (internal ones run only from API functions);
  R5  every SECURITY DEFINER function has search_path=pg_catalog, pg_temp in
      proconfig, and every SQL or PL/pgSQL function pins a search_path that
      starts with pg_catalog and ends with pg_temp;
  R6  every function in schema stream has a heading in docs/reference.md,
      and every view there is named in it;
  R7  no function in schema stream has a name starting with '_';
  R8  the control-plane functions in ADMIN_ONLY are not executable by PUBLIC;
  R9  every object in the extension's schemas is owned by the extension's
      owner, and no column grants anything to PUBLIC.

Each rule must be able to fail: once the catalog passes, each of BREAKS (a
GRANT, an ALTER or a CREATE that breaks one rule) is applied in a
transaction that is rolled back, and its rule must report it.
"""
import difflib
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import ROOT, check, configure, connect, create_db, drop_db, finish, log, q, q1, warn  # noqa: E402

DB = 'stream_acl_audit'
ROLES = ('acl_reader', 'acl_writer')
EXPECTED = os.path.join(ROOT, 'test', 'expected', 'acl.txt')
SCHEMAS = ('stream', 'stream_internal', 'stream_data')
OWNER = 'extension_owner'           # the extension's owner, whoever installed it

# R1: the views PUBLIC may read (SELECT only); each filters by the caller itself.
READ_ONLY_VIEWS = {
    'stream.application_leases',            # security_invoker over the lease tables' row-level security
    'stream.delivery_stream_status',        # security_barrier: the caller's delivery streams
    'stream.delivery_batches',
    'stream.delivery_failed_records',
    'stream.processor_status',              # security_barrier: the caller's processors
    'stream.event_source_mapping_status',   # security_barrier: the caller's mappings
    'stream.continuous_query_status',       # security_barrier: the caller's continuous queries
    'stream.stream_metrics',                # security_barrier: streams the caller may read
    'stream.shard_metrics',
    'stream.consumer_lag',                  # security_barrier: as application_leases, stream_consumers, processor_status
    'stream_internal.visible_delivery_streams',
}
# R1: PUBLIC table privileges that exist today, tolerated exactly as listed
# until their own work removes them (a note is printed once one is gone).
# Data-changing privileges are tolerated only with row-level security.
PENDING = {
    'stream.streams': ({'SELECT'}, 'stream metadata that list_streams shows every role (00_core.sql)'),
    'stream.shards': ({'SELECT'}, 'shard metadata that list_shards shows (00_core.sql)'),
    'stream.stream_consumers': ({'SELECT'}, 'registered consumers, readers of the stream see its rows (row-level '
                                'security, 25_fanout.sql); ACCESS SHARE is the only lock it allows (72_catalog_locks.py)'),
}
# R8: administrators only (README "Privileges", docs/reference.md).
ADMIN_ONLY = {
    'stream.create_stream', 'stream.delete_stream', 'stream.increase_stream_retention_period',
    'stream.decrease_stream_retention_period', 'stream.grant_stream_access', 'stream.revoke_stream_access',
    'stream.enable_stream_notifications', 'stream.run_maintenance', 'stream.create_delivery_stream',
    'stream.enable_enhanced_monitoring', 'stream.disable_enhanced_monitoring',
    'stream.add_tags_to_stream', 'stream.remove_tags_from_stream',
}
FULL = {
    'table': {'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'},
    'sequence': {'USAGE', 'SELECT', 'UPDATE'},
    'function': {'EXECUTE'},
    'schema': {'USAGE', 'CREATE'},
    'type': {'USAGE'},
}
RELKIND = {'r': 'table', 'p': 'table', 'f': 'table', 'v': 'view', 'm': 'view', 'S': 'sequence'}


def acl_text(entries, kind, owner):
    """[(grantee, privilege, grantable)] -> 'PUBLIC=SELECT extension_owner=ALL*' (sorted)."""
    by = {}
    for grantee, priv, grantable in entries:
        by.setdefault(grantee, set()).add(priv + ('*' if grantable else ''))
    full = FULL['table' if kind == 'view' else kind]
    out = []
    for grantee in sorted(by):
        privs = by[grantee]
        if len(full) > 1 and {p.rstrip('*') for p in privs} == full:
            privs = {'ALL*' if all(p.endswith('*') for p in privs) else 'ALL'}
        out.append(f'{grantee}=' + ','.join(sorted(privs)))
    return ' '.join(out) or '(none)'


def collect(c):
    """Objects: {line key: dict}, and the rendered lines."""
    ext_owner = q1(c, "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'stream'")

    def who(oid_name):
        return OWNER if oid_name == ext_owner else oid_name

    def acl_of(rows):
        """rows of (grantee name or NULL for PUBLIC, privilege, grantable)"""
        return [('PUBLIC' if g is None else who(g), p, gr) for g, p, gr in rows]

    objs = []
    nsp = "(SELECT oid FROM pg_namespace WHERE nspname IN ('stream', 'stream_internal', 'stream_data'))"
    member = ("(SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e' "
              "AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stream') AND classid = '%s'::regclass)")

    def acl_rows(expr):
        return ("(SELECT coalesce(array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN NULL ELSE a.grantee::regrole::text END, "
                f"a.privilege_type, a.is_grantable::text]), '{{}}') FROM aclexplode({expr}) a)")

    # schemas
    for name, owner, acl in q(c, f"""
            SELECT n.nspname, n.nspowner::regrole::text, {acl_rows("coalesce(n.nspacl, acldefault('n', n.nspowner))")}
              FROM pg_namespace n WHERE n.oid IN {nsp} OR n.oid IN {member % 'pg_namespace'} ORDER BY 1"""):
        objs.append(dict(kind='schema', name=name, owner=who(owner),
                         acl=acl_of((g, p, gr == 'true') for g, p, gr in acl)))
    # relations
    rel_acl = acl_rows("coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner))")
    for name, relkind, owner, acl, opts, rls, force in q(c, f"""
            SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relowner::regrole::text,
                   {rel_acl},
                   c.reloptions, c.relrowsecurity, c.relforcerowsecurity
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
               AND (c.relnamespace IN {nsp} OR c.oid IN {member % 'pg_class'}) ORDER BY 1"""):
        objs.append(dict(kind=RELKIND[relkind], name=name, owner=who(owner),
                         acl=acl_of((g, p, gr == 'true') for g, p, gr in acl),
                         options=sorted(opts or []), rls=rls, force_rls=force))
    # column privileges
    for name, acl in q(c, f"""
            SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname), {acl_rows('a.attacl')}
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE a.attacl IS NOT NULL AND (c.relnamespace IN {nsp} OR c.oid IN {member % 'pg_class'}) ORDER BY 1"""):
        objs.append(dict(kind='column', name=name, owner='', acl=acl_of((g, p, gr == 'true') for g, p, gr in acl)))
    # types of their own (not a relation's row type, not an array)
    for name, owner, acl in q(c, f"""
            SELECT format('%I.%I', n.nspname, t.typname), t.typowner::regrole::text,
                   {acl_rows("coalesce(t.typacl, acldefault('T', t.typowner))")}
              FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE (t.typnamespace IN {nsp} OR t.oid IN {member % 'pg_type'})
               AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
               AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') ORDER BY 1"""):
        objs.append(dict(kind='type', name=name, owner=who(owner), acl=acl_of((g, p, gr == 'true') for g, p, gr in acl)))
    # functions
    for name, schema, proname, owner, acl, secdef, config, lang in q(c, f"""
            SELECT p.oid::regprocedure::text, n.nspname, p.proname, p.proowner::regrole::text,
                   {acl_rows("coalesce(p.proacl, acldefault('f', p.proowner))")},
                   p.prosecdef, p.proconfig, l.lanname
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
             WHERE p.pronamespace IN {nsp} OR p.oid IN {member % 'pg_proc'} ORDER BY 1"""):
        objs.append(dict(kind='function', name=name, schema=schema, proname=proname, owner=who(owner),
                         acl=acl_of((g, p, gr == 'true') for g, p, gr in acl),
                         secdef=secdef, config=list(config or []), lang=lang))
    # row-level security policies
    for name, cmd, permissive, roles in q(c, f"""
            SELECT format('%I.%I %I', n.nspname, c.relname, p.polname), p.polcmd::text, p.polpermissive,
                   ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END FROM unnest(p.polroles) r ORDER BY 1)
              FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relnamespace IN {nsp} ORDER BY 1"""):
        objs.append(dict(kind='policy', name=name, owner='',
                         cmd={'*': 'ALL', 'r': 'SELECT', 'a': 'INSERT', 'w': 'UPDATE', 'd': 'DELETE'}[cmd],
                         permissive=permissive, roles=[who(r) for r in roles], acl=None))
    # any other member of the extension
    for (desc,) in q(c, """
            SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
             WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
               AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'stream')
               AND classid NOT IN ('pg_namespace'::regclass, 'pg_class'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass)
             ORDER BY 1"""):
        objs.append(dict(kind='member', name=desc, owner='', acl=None))
    return objs


def normalize(name):
    """Chunk tables are named after the hour they hold: one line for all."""
    return re.sub(r'^(stream_data\.s\d+)_\d+$', r'\1_<chunk>', name)


def render(o):
    parts = [f"{o['kind']:<8} {normalize(o['name'])}"]
    if o['owner'] and o['owner'] != OWNER:
        parts.append(f"owner {o['owner']}")
    if o['acl'] is not None:
        parts.append('acl ' + acl_text(o['acl'], 'table' if o['kind'] == 'column' else o['kind'], OWNER))
    if o['kind'] in ('table', 'view', 'sequence'):
        if o['options']:
            parts.append('options ' + ','.join(o['options']))
        if o['rls']:
            parts.append('row level security' + (' forced' if o['force_rls'] else ''))
    if o['kind'] == 'function':
        if o['secdef']:
            parts.append('SECURITY DEFINER')
        if o['config']:
            parts.append('config ' + ' '.join(o['config']))
    if o['kind'] == 'policy':
        parts.append(f"{'permissive' if o['permissive'] else 'restrictive'} FOR {o['cmd']} TO {','.join(o['roles'])}")
    return '; '.join(parts)


def grant_back(c):
    """The functions 99_finish.sql grants back to PUBLIC, as regprocedure text."""
    text = open(os.path.join(ROOT, 'src', 'sql', '99_finish.sql'), encoding='utf-8').read()
    text = re.sub(r'--[^\n]*', '', text)
    names = set()
    for m in re.finditer(r'GRANT\s+EXECUTE\s+ON\s+FUNCTION\s+(.*?)\s+TO\s+PUBLIC\s*;', text, re.S | re.I):
        depth, cur = 0, ''
        for ch in m.group(1) + ',':
            if ch == ',' and depth == 0:
                if cur.strip():
                    names.add(q1(c, 'SELECT %s::regprocedure::text', (cur.strip(),)))
                cur = ''
                continue
            depth += (ch == '(') - (ch == ')')
            cur += ch
    return names


def check_rules(c, objs):
    """The violations of R1-R9, each a message starting with its rule."""
    out = []

    def check(cond, msg):
        if not cond:
            out.append(msg)

    def log(msg):
        if not quiet:
            print(msg, flush=True)

    quiet = getattr(check_rules, 'quiet', False)
    rels = {o['name']: o for o in objs if o['kind'] in ('table', 'view', 'sequence')}
    public = {name: {p for g, p, _ in o['acl'] if g == 'PUBLIC'} for name, o in rels.items()}
    # R1
    for name, privs in sorted(public.items()):
        o = rels[name]
        if not privs:
            continue
        if name in READ_ONLY_VIEWS:
            check(o['kind'] == 'view' and privs == {'SELECT'},
                  f'R1: PUBLIC may only SELECT from the read-only view {name}, has {sorted(privs)}')
            check(o['kind'] == 'view' and any(x in o['options'] for x in ('security_barrier=true', 'security_invoker=true')),
                  f'R1: the PUBLIC view {name} is neither security_barrier nor security_invoker')
        elif name in PENDING:
            allowed, why = PENDING[name]
            check(privs == allowed, f'R1: PUBLIC has {sorted(privs)} on {name}; tolerated only {sorted(allowed)} ({why})')
            check(privs <= {'SELECT'} or o['rls'], f'R1: PUBLIC may change {name}, which has no row-level security')
        else:
            check(False, f'R1: PUBLIC has {sorted(privs)} on {o["kind"]} {name}')
    for name in sorted(PENDING):
        if not public.get(name):
            log(f'note: the pending exception {name} has no PUBLIC privilege any more: remove it from PENDING')
    for name in sorted(READ_ONLY_VIEWS):
        check(name in rels, f'R1: the read-only view {name} does not exist (update READ_ONLY_VIEWS)')
    # R2
    for o in objs:
        if o['kind'] == 'schema':
            check('CREATE' not in {p for g, p, _ in o['acl'] if g == 'PUBLIC'}, f'R2: PUBLIC may CREATE in schema {o["name"]}')
    fns = [o for o in objs if o['kind'] == 'function']
    pub_exec = {o['name'] for o in fns if any(g == 'PUBLIC' and p == 'EXECUTE' for g, p, _ in o['acl'])}
    # R3, R4
    listed = grant_back(c)
    internal_public = {o['name'] for o in fns if o['schema'] == 'stream_internal' and o['name'] in pub_exec}
    for name in sorted(internal_public - listed):
        check(False, f'R3: PUBLIC may EXECUTE {name}, which the grant-back list of 99_finish.sql does not name')
    for name in sorted(listed - internal_public):
        check(False, f'R3: 99_finish.sql grants {name} back to PUBLIC, but PUBLIC may not EXECUTE it')
    for o in fns:
        if o['schema'] == 'stream_internal' and o['secdef']:
            check(o['name'] not in pub_exec, f'R4: PUBLIC may EXECUTE the SECURITY DEFINER function {o["name"]}')
    # R5
    for o in fns:
        paths = [x.split('=', 1)[1] for x in o['config'] if x.startswith('search_path=')]
        if o['secdef']:
            check(paths and re.sub(r'\s+', ' ', paths[0]) == 'pg_catalog, pg_temp',
                  f'R5: SECURITY DEFINER {o["name"]} has config {o["config"]}, not search_path=pg_catalog, pg_temp')
        if o['lang'] in ('sql', 'plpgsql'):
            sp = [x.strip() for x in paths[0].split(',')] if paths else []
            check(sp[:1] == ['pg_catalog'] and sp[-1:] == ['pg_temp'],
                  f'R5: {o["lang"]} function {o["name"]} does not pin search_path to pg_catalog, ..., pg_temp ({o["config"]})')
    # R6, R7
    ref = open(os.path.join(ROOT, 'docs', 'reference.md'), encoding='utf-8').read()
    headed = set(re.findall(r'^### `stream\.([A-Za-z0-9_]+)\(', ref, re.M))
    for o in fns:
        if o['schema'] == 'stream':
            check(o['proname'] in headed, f'R6: {o["name"]} has no heading in docs/reference.md')
            check(not o['proname'].startswith('_'), f'R7: {o["name"]} in schema stream starts with "_"')
    for name, o in rels.items():
        if o['kind'] == 'view' and name.startswith('stream.'):
            check(f'`{name}`' in ref, f'R6: the view {name} is not named in docs/reference.md')
    # R8
    for o in fns:
        if f"{o['schema']}.{o['proname']}" in ADMIN_ONLY:
            check(o['name'] not in pub_exec, f'R8: PUBLIC may EXECUTE the administrators\' {o["name"]}')
    for name in ADMIN_ONLY:
        check(any(f"{o['schema']}.{o['proname']}" == name for o in fns), f'R8: {name} does not exist (update ADMIN_ONLY)')
    # R9
    for o in objs:
        if o['kind'] in ('schema', 'table', 'view', 'sequence', 'type', 'function'):
            check(o['owner'] == OWNER, f'R9: {o["kind"]} {o["name"]} is owned by {o["owner"]}, not the extension\'s owner')
        if o['kind'] == 'column':
            check(not any(g == 'PUBLIC' for g, _, _ in o['acl']), f'R9: PUBLIC has privileges on column {o["name"]}')
    return out


# Each rule must be able to fail: break it, inside a transaction rolled back.
BREAKS = [
    ('R1', 'GRANT SELECT ON stream.delivery_manifest TO PUBLIC'),
    ('R1', 'GRANT INSERT ON stream.streams TO PUBLIC'),
    ('R2', 'GRANT CREATE ON SCHEMA stream_internal TO PUBLIC'),
    ('R3', 'GRANT EXECUTE ON FUNCTION stream_internal._xact_lock(text, int) TO PUBLIC'),
    ('R4', 'GRANT EXECUTE ON FUNCTION stream_internal._add_chunk_for_put(int, bigint) TO PUBLIC'),
    ('R5', 'ALTER FUNCTION stream_internal._maintain_stream(int) RESET search_path'),
    ('R6', "CREATE FUNCTION stream._hidden() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    ('R7', "CREATE FUNCTION stream._hidden2() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    ('R8', 'GRANT EXECUTE ON FUNCTION stream.create_stream(text, int, int, text) TO PUBLIC'),
    ('R9', 'ALTER FUNCTION stream.hash_key(text) OWNER TO acl_reader'),
    ('R9', 'GRANT SELECT (key) ON stream.secret TO PUBLIC'),
]


def self_test(c):
    """Every break is reported by its rule, and only breaks are (the clean state passed)."""
    for rule, sql in BREAKS:
        q(c, 'BEGIN')
        try:
            q(c, sql)
            check_rules.quiet = True
            got = check_rules(c, collect(c))
        finally:
            check_rules.quiet = False
            q(c, 'ROLLBACK')
        check(any(m.startswith(rule + ':') for m in got), f'self-test: {rule} did not catch "{sql}" (got {got})')


def main():
    update = '--update' in sys.argv[1:]
    configure(DB, client_min_messages='warning')
    c = create_db(extension=True, roles=ROLES)
    try:
        q(c, "SET search_path = pg_catalog")       # regprocedure and regrole print qualified
        q(c, "CREATE ROLE acl_reader; CREATE ROLE acl_writer")
        q(c, "SELECT stream.create_stream('audited', 2)")
        q(c, "SELECT stream.grant_stream_access('audited', 'acl_reader', 'read')")
        q(c, "SELECT stream.grant_stream_access('audited', 'acl_writer', 'write')")
        q(c, "CREATE TABLE public.audit_sink (n int)")
        q(c, "SELECT stream.create_delivery_stream('audited-direct', destination_table => 'public.audit_sink')")
        q(c, "SELECT stream.grant_delivery_stream_access('audited-direct', 'acl_writer')")
        objs = collect(c)
        lines = sorted(set(render(o) for o in objs))
        log(f'{len(objs)} objects, {len(lines)} lines')
        if update:
            os.makedirs(os.path.dirname(EXPECTED), exist_ok=True)
            with open(EXPECTED, 'w', encoding='utf-8') as f:
                f.write('# Every object of the extension with its privileges: test/scripts/05_privilege_audit.py --update\n')
                f.write(''.join(line + '\n' for line in lines))
            log(f'wrote {os.path.relpath(EXPECTED, ROOT)}')
        else:
            try:
                with open(EXPECTED, encoding='utf-8') as f:
                    want = [x.rstrip('\n') for x in f if not x.startswith('#')]
            except FileNotFoundError:
                want = []
            if want != lines:
                diff = list(difflib.unified_diff(want, lines, 'test/expected/acl.txt', 'catalog', lineterm='', n=0))
                print('\n'.join(diff))
                check(False, f'the catalog differs from test/expected/acl.txt ({sum(1 for d in diff[2:] if d[:1] in "+-")} '
                             'lines): review the diff, then run test/scripts/05_privilege_audit.py --update')
        violations = check_rules(c, objs)
        for m in violations:
            check(False, m)
        if not violations:
            self_test(c)
            log(f'self-test: each of the {len(BREAKS)} breaks was caught by its rule')
    finally:
        c.close()
        drop_db(roles=ROLES, on_error=warn)
    finish()


if __name__ == '__main__':
    main()
