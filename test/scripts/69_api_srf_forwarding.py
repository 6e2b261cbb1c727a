#!/usr/bin/python3
"""Attacks on the control plane's forwarding of set-returning functions (src/caller.c).

stream.list_applications() and stream.acquire_leases() are the C entry
stream_api_call, which notes the calling role and runs the same-named
SECURITY DEFINER plpgsql function of stream_internal, which fills the
caller's ReturnSetInfo (materialize mode).  Roles: sa_a and sa_b each own an
application on a stream they may read; sa_h is hostile (owns SECURITY
DEFINER wrappers around the API, reads nothing).  What must hold, for calls
in FROM, in the select list (ProjectSet), in LATERAL (one call per outer row),
in ROWS FROM with ordinality, inside a cursor fetched partially and closed,
with SET ROLE between a cursor's fetches, nested (a forwarded call inside
the scan of another, through a hostile SECURITY DEFINER wrapper and through
an invoker plpgsql loop), and with an error in the middle of a scan:
  - every call answers for the role current when it ran (a wrapper's owner
    inside the wrapper), never for a stale or an outer caller;
  - after any error, stream_internal._caller() outside the API raises
    again (no caller left noted);
  - a NULL argument, for every forwarded function, errors or returns
    nothing, never crashes the backend;
  - memory: 40,000 forwarded calls in one session grow the backend's
    memory contexts by less than 2 MB;
  - the stream worker's sandbox refuses a forwarded SRF called by a transform.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, expect_error, main_wrapper  # noqa: E402
from streamtest import q, q1, warn  # noqa: E402
from streamtest import log as say  # noqa: E402
import psycopg2  # noqa: E402

DB = 'stream_api_srf'
ROLES = ('sa_a', 'sa_b', 'sa_h')
configure(DB, statement_timeout='60s', client_min_messages='warning')
CALLS = int(os.environ.get('STREAM_API_SRF_CALLS', '40000'))


def apps(c, sql='SELECT application_name FROM stream.list_applications()'):
    return sorted(r[0] for r in q(c, sql))


def no_caller_left(admin, what):
    try:
        q(admin, "SELECT stream_internal._caller()")
        check(False, '%s: stream_internal._caller() outside the API answered (a caller was left noted)' % what)
    except psycopg2.Error as e:
        check('only inside the stream API' in str(e), '%s: unexpected error %s' % (what, e))


def mem(c):
    return q1(c, "SELECT sum(total_bytes) FROM pg_backend_memory_contexts")


def main():
    admin = conn
    for r in ROLES:
        q(admin, "CREATE ROLE %s LOGIN" % r)
    q(admin, "CREATE SCHEMA sa_h AUTHORIZATION sa_h")
    q(admin, "SELECT stream.create_stream('srf_s', 3)")
    for r in ('sa_a', 'sa_b'):
        q(admin, "SELECT stream.grant_stream_access('srf_s', %s, 'read')", (r,))
    a, b, h = (connect(user=r) for r in ROLES)
    q(a, "SELECT stream.register_application('app_a', 'srf_s')")
    q(b, "SELECT stream.register_application('app_b', 'srf_s')")
    check(apps(a) == ['app_a'] and apps(b) == ['app_b'] and apps(h) == [], 'each role sees its own application')

    # FROM, select list, LATERAL, ROWS FROM ... WITH ORDINALITY
    forms = {
        'select list': "SELECT (stream.list_applications()).application_name",
        'LATERAL x100': "SELECT l.application_name FROM generate_series(1, 100) g, "
                        "LATERAL stream.list_applications() l WHERE g = 1 OR g = 100",
        'ROWS FROM': "SELECT x.application_name FROM ROWS FROM (stream.list_applications(), "
                     "generate_series(1, 1)) WITH ORDINALITY AS x(application_name, s, o, gi, it, ts, ca, g, ord) "
                     "WHERE x.application_name IS NOT NULL",
        'subquery': "SELECT (SELECT min(application_name) FROM stream.list_applications())",
        'CTE': "WITH x AS MATERIALIZED (SELECT * FROM stream.list_applications()) SELECT application_name FROM x",
    }
    for form, sql in forms.items():
        for c, want in ((a, ['app_a']), (b, ['app_b'])):
            got = apps(c, sql)
            exp = want * 2 if form == 'LATERAL x100' else want
            check(got == exp, '%s: %r, expected %r' % (form, got, exp))
        got = [r for r in apps(h, sql) if r is not None]
        check(got == [], '%s: sa_h sees %r' % (form, got))
    # acquire_leases in FROM, the select list and LATERAL (volatile: one call per outer row)
    got = q(a, "SELECT count(*) FROM stream.acquire_leases('app_a', 'w1')")[0][0]
    check(got == 3, 'acquire_leases in FROM: %r leases' % got)
    got = q(a, "SELECT count(*) FROM (SELECT stream.acquire_leases('app_a', 'w' || g) FROM generate_series(1, 3) g) x")[0][0]
    check(got >= 3, 'acquire_leases in the select list, 3 workers: %r leases' % got)
    # another role's application does not exist for it (the name says no more)
    expect_error(b, "SELECT * FROM generate_series(1, 3) g, LATERAL stream.acquire_leases('app_a', 'w' || g)", None,
                 '42704', 'Application app_a not found', 'sa_b takes leases of app_a in LATERAL')
    expect_error(h, "SELECT stream.acquire_leases('app_a', 'wh')", None, '42704', 'Application app_a not found',
                 'sa_h takes leases of app_a in the select list')
    no_caller_left(admin, 'after refused lease calls')

    # a cursor fetched partially, then closed; SET ROLE between fetches
    # (a call that depends on the outer row runs again for each; the role is the fetch's)
    q(admin, "BEGIN")
    q(admin, "DECLARE c CURSOR FOR SELECT g, l.n FROM generate_series(1, 4) g, "
             "LATERAL (SELECT count(*) AS n FROM stream.acquire_leases(CASE WHEN g % 2 = 1 THEN 'app_a' "
             "ELSE 'app_b' END, 'cw' || g)) l")
    seen = []
    for role in ('sa_a', 'sa_b', 'sa_b'):
        q(admin, "SET ROLE %s" % role)
        try:
            q(admin, "SAVEPOINT f")
            seen.append(q(admin, "FETCH 1 FROM c")[0][0])
            q(admin, "RELEASE SAVEPOINT f")
        except psycopg2.Error as e:
            seen.append(e.pgcode)
            q(admin, "ROLLBACK TO SAVEPOINT f")
        q(admin, "RESET ROLE")
    q(admin, "CLOSE c")
    q(admin, "COMMIT")
    check(seen == [1, 2, '42704'], 'a cursor\'s LATERAL calls act for the role of each fetch '
                                   '(sa_a app_a, sa_b app_b, sa_b app_a refused): %r' % seen)
    # a call that does not depend on the outer row is computed once; a later fetch under another
    # role rereads that set (PostgreSQL's rescan of any function scan), shown for the record
    q(admin, "BEGIN")
    q(admin, "DECLARE c CURSOR FOR SELECT g, l.application_name FROM generate_series(1, 2) g, "
             "LATERAL (SELECT * FROM stream.list_applications()) l")
    q(admin, "SET ROLE sa_a")
    first = q(admin, "FETCH 1 FROM c")
    q(admin, "RESET ROLE")
    q(admin, "SET ROLE sa_b")
    second = q(admin, "FETCH 1 FROM c")
    q(admin, "RESET ROLE")
    q(admin, "CLOSE c")
    q(admin, "COMMIT")
    say('a row-independent call in a cursor: fetched as sa_a %r, then as sa_b %r (one set, computed at the first '
        'fetch)' % (first, second))
    q(admin, "BEGIN")
    q(admin, "SET LOCAL ROLE sa_a")
    q(admin, "DECLARE c2 CURSOR FOR SELECT * FROM stream.list_applications()")
    q(admin, "FETCH 0 FROM c2")
    q(admin, "RESET ROLE")
    q(admin, "CLOSE c2")
    q(admin, "COMMIT")
    no_caller_left(admin, 'after cursors')

    # nested: a hostile SECURITY DEFINER wrapper inside another forwarded call's scan
    q(h, """CREATE FUNCTION sa_h.mine() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
            SET search_path = pg_catalog AS $$ SELECT application_name FROM stream.list_applications() $$""")
    q(h, """CREATE FUNCTION sa_h.who() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog AS $$
            BEGIN RETURN coalesce((SELECT string_agg(application_name, ',') FROM stream.list_applications()), '-'); END $$""")
    q(h, "GRANT USAGE ON SCHEMA sa_h TO PUBLIC")
    got = q(a, "SELECT l.application_name, sa_h.who(), (SELECT count(*) FROM sa_h.mine()) "
               "FROM stream.list_applications() l")
    check(got == [('app_a', '-', 0)], 'a hostile wrapper inside the scan answers for its owner: %r' % got)
    got = q(a, "SELECT (stream.list_applications()).application_name, sa_h.mine()")
    check(got == [('app_a', None)], 'SRFs side by side in the select list: the wrapper answers for sa_h: %r' % got)
    got = q(a, "SELECT l.application_name, x FROM stream.list_applications() l LEFT JOIN LATERAL sa_h.mine() x ON true")
    check(got == [('app_a', None)], 'LATERAL wrapper: %r' % got)
    # the wrapper's owner becomes a member of sa_a's nothing: a hostile wrapper that takes leases fails as sa_h
    q(h, """CREATE FUNCTION sa_h.take(app text) RETURNS SETOF text LANGUAGE sql SECURITY DEFINER
            SET search_path = pg_catalog AS $$ SELECT shard_id FROM stream.acquire_leases(app, 'hostile') $$""")
    expect_error(a, "SELECT l.application_name, t FROM stream.list_applications() l, LATERAL sa_h.take(l.application_name) t",
                 None, '42704', 'Application app_a not found',
                 'sa_a calls sa_h\'s wrapper that takes leases of app_a: acts for sa_h')
    check(q1(admin, "SELECT count(*) FROM stream.leases WHERE lease_owner = 'hostile'") == 0, 'sa_h holds no lease')
    # an invoker plpgsql loop: a forwarded call inside the materialized scan of another
    q(a, """CREATE FUNCTION pg_temp.loop() RETURNS TABLE(app text, shard text) LANGUAGE plpgsql AS $$
            DECLARE r record;
            BEGIN
                FOR r IN SELECT * FROM stream.list_applications() LOOP
                    RETURN QUERY SELECT r.application_name,
                        (SELECT count(*) FROM stream.acquire_leases(r.application_name, 'wl'))::text;
                END LOOP;
            END $$""")
    got = q(a, "SELECT count(*), min(app), max(app) FROM pg_temp.loop()")[0]
    check(got[0] >= 1 and got[1] == got[2] == 'app_a', 'nested forwarded calls in an invoker loop: %r' % (got,))
    no_caller_left(admin, 'after nested calls')

    # an error in the middle of a scan, caught or not; the next call answers for its own caller
    expect_error(a, "SELECT 1 / (g - 50) FROM generate_series(1, 100) g, LATERAL stream.list_applications() l", None,
                 '22012', 'division by zero', 'an error in the middle of a LATERAL scan')
    check(apps(b) == ['app_b'], 'after sa_a\'s failed scan, sa_b\'s call answers for sa_b')
    got = q(a, """DO $$ DECLARE n int := 0; r record; BEGIN
                    FOR i IN 1..20 LOOP
                        BEGIN
                            FOR r IN SELECT * FROM stream.acquire_leases('app_a', CASE WHEN i % 3 = 0 THEN '' ELSE 'we' END) LOOP
                                n := n + 1;
                            END LOOP;
                        EXCEPTION WHEN OTHERS THEN NULL;
                        END;
                    END LOOP;
                    RAISE NOTICE 'n=%', n;
                  END $$""")
    no_caller_left(admin, 'after errors in the middle of scans')
    check(apps(h) == [] and apps(a) == ['app_a'], 'after caught errors each role still sees its own')
    # SET ROLE inside a function between calls, and an error raised by the target mid-loop
    q(admin, """CREATE FUNCTION pg_temp.flip() RETURNS TABLE(r text, app text) LANGUAGE plpgsql AS $$
                BEGIN
                    SET LOCAL ROLE sa_a;
                    RETURN QUERY SELECT 'a'::text, application_name FROM stream.list_applications();
                    RESET ROLE; SET LOCAL ROLE sa_b;
                    RETURN QUERY SELECT 'b'::text, application_name FROM stream.list_applications();
                    RESET ROLE;
                END $$""")
    got = q(admin, "SELECT * FROM pg_temp.flip()")
    check(sorted(got) == [('a', 'app_a'), ('b', 'app_b')], 'SET ROLE between calls in one function: %r' % got)

    # NULL arguments, for every forwarded function, as a role without rights: no crash
    fns = q(admin, "SELECT p.oid::regprocedure::text, p.pronargs FROM pg_proc p WHERE p.pronamespace = 'stream'::regnamespace "
                   "AND p.prosrc = 'stream_api_call' ORDER BY 1")
    check(len(fns) >= 15, 'found %d forwarded functions' % len(fns))
    crashed = []
    for sig, nargs in fns:
        name = sig.split('(')[0]
        types = sig[sig.index('(') + 1:-1]
        args = ', '.join('NULL::%s' % t for t in types.split(', ')) if types else ''
        sql = 'SELECT * FROM %s(%s)' % (name, args)
        try:
            q(h, sql)
        except psycopg2.OperationalError as e:
            crashed.append((sig, str(e)))
            h = connect(user='sa_h', retries=30)
        except psycopg2.Error:
            pass
    check(not crashed, 'forwarded functions called with NULLs crashed the backend: %r' % crashed)
    no_caller_left(admin, 'after NULL arguments')

    # memory across many calls in one session
    for c in (admin,):
        q(c, "SET ROLE sa_a")
        q(c, "SELECT count(*) FROM generate_series(1, 200) g, LATERAL stream.list_applications() l")
        q(c, "RESET ROLE")
        before = mem(c)
        q(c, "SET ROLE sa_a")
        q(c, "SELECT count(*) FROM generate_series(1, %d) g, LATERAL stream.list_applications() l" % (CALLS // 2))
        q(c, "SELECT count(*) FROM (SELECT stream.list_applications() FROM generate_series(1, %d)) x" % (CALLS // 4))
        for _ in range(50):
            q(c, "SELECT count(*) FROM stream.acquire_leases('app_a', 'wm')")
        q(c, """DO $$ DECLARE r record; BEGIN
                    FOR i IN 1..%d LOOP
                        FOR r IN SELECT * FROM stream.list_applications() LOOP END LOOP;
                    END LOOP; END $$""" % (CALLS // 4))
        q(c, "RESET ROLE")
        after = mem(c)
        check(after - before < 2 * 1024 * 1024, 'memory grew by %d bytes over %d forwarded calls' % (after - before, CALLS))
        say('memory: %d -> %d bytes over %d forwarded calls' % (before, after, CALLS))

    # the worker's sandbox refuses a forwarded SRF in a transform
    q(admin, "CREATE TABLE public.srf_sink (n int)")
    q(admin, """CREATE FUNCTION public.srf_tf(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM count(*) FROM stream.list_applications();
                    RETURN QUERY SELECT r.record_id, 'Ok'::text, r.data, NULL::jsonb FROM unnest(records) r;
                END $$""")
    q(admin, "SELECT stream.create_delivery_stream('srf_ds', destination_table => 'public.srf_sink', "
             "transform_function => 'public.srf_tf(stream.firehose_record[])', buffer_interval_seconds => 900)")
    q(admin, "SELECT stream.put_delivery_record('srf_ds', convert_to('{\"n\": 1}', 'UTF8'))")
    q(admin, "SELECT stream.flush_delivery_stream('srf_ds', 30)")
    env = q1(admin, "SELECT envelope::text FROM stream.processor_errors")
    check(q1(admin, "SELECT count(*) FROM public.srf_sink") == 0 and env is not None and
          'cannot be called from code that the stream worker runs' in env,
          'a transform calling stream.list_applications() is refused: %r' % env)
    for c in (a, b, h):
        c.close()


conn = create_db(roles=ROLES, extension=True)


def cleanup():
    conn.close()
    drop_db(roles=ROLES, on_error=warn)


main_wrapper(main, cleanup)
