#!/usr/bin/python3
"""A transform's response is capped at Lambda's 6 MB (src/delivery/delivery_transform.c).

The worker reads a transform call's rows through a cursor and fails the call
once the values returned (record ids, results, data, partition keys) exceed
6 MiB; such a call is not retried (it would return as much again) and the
chunk's records go to the error output as Lambda.FunctionError.  Before, the
worker held the whole response: 100 MB of rows of unknown record ids cost it
~330 MB, and a 100 MB value was delivered as a 100 MB record at ~620 MB.
What must hold (table destination of a non-superuser owner):
  - 5 records of 1 MiB of output each (5 MiB): delivered;
  - 7 records of 1 MiB each (7 MiB): the chunk fails, each record once in the
    error rows, one attempt, naming the limit;
  - STREAM_TRANSFORM_JUNK_MB (default 50) MB of rows with unknown record ids:
    the call fails, and the worker's peak memory grows by less than 64 MB;
  - one value of STREAM_TRANSFORM_BIG_MB (default 20) MB: fails (the growth of
    the worker's peak memory is reported: the owner's function and its result
    set hold copies of the value before the worker sees it);
  - the worker is the same process throughout and still serves another
    delivery stream.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, main_wrapper, q, q1, warn  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_transform_cap'
ROLES = ('tc_owner',)
configure(DB, statement_timeout='120s', client_min_messages='warning')
JUNK_MB = int(os.environ.get('STREAM_TRANSFORM_JUNK_MB', '50'))
BIG_MB = int(os.environ.get('STREAM_TRANSFORM_BIG_MB', '20'))
TF = 'stream.firehose_record[]'
CREATE_DS = ("stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, "
             "text, text, jsonb, regprocedure, text, text)")


def worker_pid(conn):
    return q1(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream worker' "
                    "AND datname = current_database()")


def peak_kb(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    q(conn, "CREATE ROLE tc_owner LOGIN")
    q(conn, "CREATE SCHEMA tc_owner AUTHORIZATION tc_owner")
    q(conn, f"GRANT EXECUTE ON FUNCTION {CREATE_DS} TO tc_owner")
    oc = connect(user='tc_owner')
    q(oc, "CREATE TABLE tc_owner.sink (n int, s text)")
    # each record's output: {"n": n, "s": "<mib MiB of x>"}
    q(oc, """CREATE FUNCTION tc_owner.grow(records %s) RETURNS SETOF stream.firehose_result LANGUAGE plpgsql AS $$
             BEGIN
                 RETURN QUERY SELECT r.record_id, 'Ok'::text,
                     convert_to(json_build_object('n', (convert_from(r.data, 'UTF8')::jsonb ->> 'n')::int,
                                's', repeat('x', ((convert_from(r.data, 'UTF8')::jsonb ->> 'kib')::int) * 1024
                                                 - 30))::text, 'UTF8'),
                     NULL::jsonb
                   FROM unnest(records) r;
             END $$""" % TF)
    q(oc, """CREATE FUNCTION tc_owner.junk(records %s) RETURNS SETOF stream.firehose_result LANGUAGE plpgsql AS $$
             BEGIN
                 RETURN QUERY SELECT 'junk-' || g, 'Ok'::text, convert_to(repeat('y', 90), 'UTF8'), NULL::jsonb
                   FROM generate_series(1, %d * 10000) g;
                 RETURN QUERY SELECT r.record_id, 'Ok'::text, r.data, NULL::jsonb FROM unnest(records) r;
             END $$""" % (TF, JUNK_MB))
    q(oc, """CREATE FUNCTION tc_owner.big(records %s) RETURNS SETOF stream.firehose_result LANGUAGE plpgsql AS $$
             BEGIN
                 RETURN QUERY SELECT r.record_id, 'Ok'::text,
                     convert_to('{"n": 1, "s": "' || repeat('z', %d * 1024 * 1024) || '"}', 'UTF8'), NULL::jsonb
                   FROM unnest(records) r;
             END $$""" % (TF, BIG_MB))
    for name, fn in (('tc_grow', 'grow'), ('tc_junk', 'junk'), ('tc_big', 'big')):
        q(oc, "SELECT stream.create_delivery_stream(%s, destination_table => 'tc_owner.sink', "
              "transform_function => %s, buffer_interval_seconds => 900)", (name, 'tc_owner.%s(%s)' % (fn, TF)))
    q(conn, "CREATE TABLE public.honest (n int)")
    q(conn, "SELECT stream.create_delivery_stream('tc_honest', destination_table => 'public.honest', "
            "buffer_interval_seconds => 900)")
    pid0 = worker_pid(conn)

    def run(name, docs):
        for d in docs:
            q(oc, "SELECT stream.put_delivery_record(%s, convert_to(%s, 'UTF8'))", (name, json.dumps(d)))
        before = peak_kb(worker_pid(conn))
        ok = q1(oc, "SELECT stream.flush_delivery_stream(%s, 90)", (name,))
        after = peak_kb(worker_pid(conn))
        errs = [e for (e,) in q(conn, "SELECT envelope FROM stream.delivery_failed_records "
                                      "WHERE delivery_stream_name = %s", (name,))]
        return ok, errs, (None if before is None or after is None else after - before)

    # many rows of unknown record ids
    ok, errs, grew = run('tc_junk', [{'n': 100}])
    check(ok and len(errs) == 1 and '6 MB response limit' in errs[0]['errorMessage'],
          'tc_junk (%d MB of rows): the call fails at the limit: %r' % (JUNK_MB, [e['errorMessage'] for e in errs]))
    if grew is not None:
        check(grew < 64 * 1024, 'tc_junk: the worker\'s peak memory grew by %d kB' % grew)
    say('tc_junk: %d MB of rows of unknown record ids; the worker\'s peak memory grew by %s kB' % (JUNK_MB, grew))

    # under the limit: 5 MiB delivered
    ok, errs, _ = run('tc_grow', [{'n': i, 'kib': 1024} for i in range(5)])
    check(ok and errs == [], 'tc_grow, 5 MiB: flushed %r, %d error rows' % (ok, len(errs)))
    check(q1(conn, "SELECT count(*) FROM tc_owner.sink WHERE n < 5 AND length(s) > 1000000") == 5,
          '5 records of 1 MiB of output delivered')
    # over it: 7 MiB fails the chunk, once, not retried
    ok, errs, _ = run('tc_grow', [{'n': 10 + i, 'kib': 1024} for i in range(7)])
    check(ok, 'tc_grow, 7 MiB: flushed')
    check(len(errs) == 7 and all(e['errorCode'] == 'Lambda.FunctionError' and '6 MB response limit' in e['errorMessage']
                                 and e['attemptsMade'] == 1 for e in errs),
          'tc_grow, 7 MiB: each record in the error rows once, one attempt, naming the limit: %r'
          % [(e['errorCode'], e['errorMessage'][:80], e['attemptsMade']) for e in errs][:2])
    check(q1(conn, "SELECT count(*) FROM tc_owner.sink WHERE n >= 10") == 0, 'nothing of the 7 MiB chunk delivered')

    # one huge value
    ok, errs, grew = run('tc_big', [{'n': 200}])
    check(ok and len(errs) == 1 and '6 MB response limit' in errs[0]['errorMessage'],
          'tc_big (%d MB value): the call fails at the limit: %r' % (BIG_MB, [e['errorMessage'] for e in errs]))
    say('tc_big: one value of %d MB; the worker\'s peak memory grew by %s kB (copies made by the owner\'s function '
        'and its result set before the worker reads it)' % (BIG_MB, grew))

    q(conn, "SELECT stream.put_delivery_record('tc_honest', convert_to('{\"n\": 1}', 'UTF8'))")
    check(q1(conn, "SELECT stream.flush_delivery_stream('tc_honest', 30)") is True, 'the honest delivery stream is served')
    check(worker_pid(conn) == pid0, 'the worker is the same process')
    st = q(conn, "SELECT count(last_error) FROM stream.processor_status")[0][0]
    check(st == 0, 'a capped transform is a record failure, not a unit failure (%d errors on progress rows)' % st)
    oc.close()


conn = create_db(roles=ROLES, extension=True)


def cleanup():
    conn.close()
    drop_db(roles=ROLES, on_error=warn)


main_wrapper(main, cleanup)
