#!/usr/bin/python3
"""The unit lock survives owner code that calls pg_advisory_unlock_all().

A processor's unit runs under its unit lock (runtime/round.c), an
advisory-type lock the worker holds at session level across the unit's
transactions; delete_delivery_stream (stream_internal._processor_drop)
waits for it, so it returns only after the unit under way is over, and
nothing of a deleted delivery stream is written after it returned.
pg_advisory_unlock_all() in owner code releases every session-level
advisory lock of the worker, the unit lock with them.  The attack: a
hostile owner's transform calls it and then keeps running (sleeps 3 s)
while another session deletes the delivery stream.  What must hold, for a
file destination (the transform runs in step 2, between the transaction
that records the batch as pending and the one that commits its file
list; publishing follows outside any transaction) and for a table
destination (one transaction):
  - delete_delivery_stream waits for the unit: it returns after the
    transform's sleep is over, not while the unit runs;
  - no file of the deleted delivery stream appears after the delete
    returned (files of a batch under way either were published before the
    delete returned, with their manifest row gone with the catalog, or are
    never published), and no staging left behind by the worker's unit;
  - the worker stays the same process and goes on serving another
    delivery stream; it holds no advisory lock afterwards.
Also checked with the lock in place: the unit lock shows in pg_locks as
held by the worker while the transform sleeps after the unlock.
"""
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, delivered_files, drop_db, main_wrapper  # noqa: E402
from streamtest import q, q1, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_unlock_all'
ROLES = ('ua_owner',)
configure(DB, statement_timeout='60s', client_min_messages='warning')
LAKE = workdir('unlock_all')
TF = 'stream.firehose_record[]'
CREATE_DS = ("stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, "
             "text, text, jsonb, regprocedure, text, text)")
UNIT_LOCK = "locktype = 'advisory' AND objsubid = %d" % 0x5356


def worker_pid(conn):
    return q1(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'stream worker' "
                    "AND datname = current_database()")


def sleeping(conn):
    return q1(conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                    "AND backend_type = 'stream worker' AND datname = current_database()") == 1


def attack(conn, oc, name, file_dest):
    dest = os.path.join(LAKE, name)
    if file_dest:
        q(oc, "SELECT stream.create_delivery_stream(%s, destination => %s, transform_function => %s, "
              "buffer_interval_seconds => 900)", (name, dest, 'ua_owner.tf(%s)' % TF))
    else:
        q(oc, "CREATE TABLE ua_owner.%s (n int)" % name)
        q(oc, "SELECT stream.create_delivery_stream(%s, destination_table => %s, transform_function => %s, "
              "buffer_interval_seconds => 900)", (name, 'ua_owner.' + name, 'ua_owner.tf(%s)' % TF))
    ds_id = q1(conn, "SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name = %s", (name,))
    for i in range(5):
        q(oc, "SELECT stream.put_delivery_record(%s, convert_to(%s, 'UTF8'))", (name, '{"n": %d}' % i))
    q(oc, "SELECT stream.flush_delivery_stream(%s, 0)", (name,))
    if not wait_for(lambda: sleeping(conn), 20, '%s: the transform to sleep after pg_advisory_unlock_all()' % name):
        return
    held = q1(conn, "SELECT count(*) FROM pg_locks WHERE %s AND classid = %%s AND objid = 0 AND pid = %%s AND granted" % UNIT_LOCK,
              (ds_id, worker_pid(conn)))
    check(held == 1, '%s: the worker holds the unit lock while its owner code sleeps after '
                     'pg_advisory_unlock_all() (%d)' % (name, held))
    t0 = time.monotonic()
    q(conn, "SELECT stream.delete_delivery_stream(%s)", (name,))
    returned = time.monotonic()
    still = sleeping(conn)
    check(not still, '%s: delete_delivery_stream returned after %.2f s while the unit was still running '
                     '(the owner dropped the unit lock)' % (name, returned - t0))
    # let the unit run to its end, whatever it does
    wait_for(lambda: not sleeping(conn), 20, '%s: the transform to end' % name)
    time.sleep(1.5)
    if file_dest:
        late = [p for p in delivered_files(dest) if os.path.getmtime(p) > time.time() - (time.monotonic() - returned)]
        check(not late, '%s: %d files published after delete_delivery_stream returned: %r'
              % (name, len(late), late[:3]))
        staging = os.path.join(dest, '.firehose-staging')
        left = os.listdir(staging) if os.path.isdir(staging) else []
        check(not left or not still, '%s: staging left by the unit of a deleted delivery stream: %r' % (name, left))
    else:
        rows = q1(conn, "SELECT count(*) FROM ua_owner.%s" % name)
        check(rows in (0, 5), '%s: %d rows of a batch of 5' % (name, rows))
    for t in ('processors', 'processor_checkpoints', 'processor_pending', 'processor_progress', 'processor_errors',
              'delivery_pending', 'delivery_manifest'):
        col = 'delivery_stream_id' if t.startswith('delivery') else 'processor_id'
        check(q1(conn, "SELECT count(*) FROM stream.%s WHERE %s = %%s" % (t, col), (ds_id,)) == 0,
              '%s: a stream.%s row is left of the deleted delivery stream' % (name, t))
    say('%s: delete_delivery_stream returned after %.2f s%s' % (name, returned - t0,
                                                                ' while the unit still ran' if still else ''))


def main():
    global conn
    for r in ROLES:
        q(conn, "CREATE ROLE %s LOGIN" % r)
    q(conn, "GRANT pg_write_server_files TO ua_owner")
    q(conn, "CREATE SCHEMA ua_owner AUTHORIZATION ua_owner")
    q(conn, f"GRANT EXECUTE ON FUNCTION {CREATE_DS}, stream.delete_delivery_stream(text) TO ua_owner")
    oc = connect(user='ua_owner')
    q(oc, """CREATE FUNCTION ua_owner.tf(records %s) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_advisory_unlock_all();
                 PERFORM pg_sleep(3);
                 RETURN QUERY SELECT r.record_id, 'Ok'::text, r.data, NULL::jsonb FROM unnest(records) r;
             END $$""" % TF)
    q(conn, "CREATE TABLE public.honest (n int)")
    q(conn, "SELECT stream.create_delivery_stream('honest', destination_table => 'public.honest', "
            "buffer_interval_seconds => 900)")
    pid0 = worker_pid(conn)
    attack(conn, oc, 'files_unlock', True)
    attack(conn, oc, 'table_unlock', False)
    q(conn, "SELECT stream.put_delivery_record('honest', convert_to('{\"n\": 1}', 'UTF8'))")
    check(q1(conn, "SELECT stream.flush_delivery_stream('honest', 30)") is True, 'the honest delivery stream is served')
    check(worker_pid(conn) == pid0, 'the worker is the same process')
    left = q(conn, "SELECT objid, objsubid, mode FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
             (worker_pid(conn),))
    check(left == [], 'the worker holds advisory locks between units: %r' % left)
    oc.close()


conn = create_db(roles=ROLES, extension=True)


def cleanup():
    conn.close()
    drop_db(roles=ROLES, on_error=warn)
    shutil.rmtree(LAKE, ignore_errors=True)


main_wrapper(main, cleanup)
