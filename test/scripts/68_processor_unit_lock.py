#!/usr/bin/python3
"""The consumer runtime: one unit of a processor at a time.

A processor's units run under its unit lock (runtime/round.c), which the
round only tries: while another session holds it (as delete_delivery_stream
does), the worker runs no unit of that processor, counts no failure and
does not back off, and delivers at once when the lock goes; while a unit
runs, the worker holds the lock, so a session that wants it waits for the
unit to end, and delete_delivery_stream returns only after the unit under
way committed.  Other processors are served meanwhile.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, main_wrapper, q, q1, warn, wait_for  # noqa: E402
from streamtest import log as say  # noqa: E402
import psycopg2  # noqa: E402

DB = 'stream_unit_lock'
configure(DB, statement_timeout='60s', client_min_messages='warning')


def put(conn, name, doc):
    q(conn, "SELECT stream.put_delivery_record(%s, convert_to(%s, 'UTF8'))", (name, doc))


def ds_id(conn, name):
    return q1(conn, "SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name = %s", (name,))


def main():
    conn = create_db(extension=True)
    q(conn, "CREATE TABLE public.ul_sink (n int, s text)")
    q(conn, "CREATE TABLE public.other_sink (n int, s text)")
    q(conn, "CREATE FUNCTION public.nap() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.s = 'nap' THEN PERFORM pg_catalog.pg_sleep(3); END IF; RETURN NEW; END $$")
    q(conn, "CREATE TRIGGER nap BEFORE INSERT ON public.ul_sink FOR EACH ROW EXECUTE FUNCTION public.nap()")
    q(conn, "SELECT stream.create_delivery_stream('ul', destination_table => 'public.ul_sink', buffer_interval_seconds => 0)")
    q(conn, "SELECT stream.create_delivery_stream('other', destination_table => 'public.other_sink', "
            "buffer_interval_seconds => 0)")
    uid = ds_id(conn, 'ul')

    # 1. a session holds the unit lock: no unit runs, nothing fails, the other processor is served
    holder = connect(DB)
    q(holder, "BEGIN")
    q(holder, "SELECT stream_internal._xact_lock('processor_unit', %s)", (uid,))
    put(conn, 'ul', '{"n": 1, "s": "a"}')
    put(conn, 'other', '{"n": 1, "s": "a"}')
    check(q1(conn, "SELECT stream.flush_delivery_stream('other', 20)") is True, 'the other processor is delivered')
    check(q1(conn, "SELECT stream.flush_delivery_stream('ul', 3)") is False,
          'no unit of a processor whose lock another session holds: the flush times out')
    check(q1(conn, "SELECT count(*) FROM public.ul_sink") == 0, 'nothing delivered while the lock is held')
    st = q(conn, "SELECT failed_attempts, last_error, next_attempt_at FROM stream.processor_status "
                 "WHERE processor_id = %s", (uid,))[0]
    check(st == (0, None, None), 'a skipped unit is no failure and starts no back-off: %r' % (st,))
    q(holder, "COMMIT")
    t0 = time.monotonic()
    check(q1(conn, "SELECT stream.flush_delivery_stream('ul', 20)") is True, 'delivered once the lock is released')
    check(q1(conn, "SELECT count(*) FROM public.ul_sink") == 1, 'the row is there')
    say('1: a held unit lock skips the processor; delivered %.1f s after its release' % (time.monotonic() - t0))

    # 2. while a unit runs, the worker holds the lock: a session waits for the unit to end
    put(conn, 'ul', '{"n": 2, "s": "nap"}')
    q(conn, "SELECT stream.flush_delivery_stream('ul', 0)")
    wait_for(lambda: q1(conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                              "AND backend_type LIKE 'stream worker%%'") == 1, 20, 'the unit to run the trigger')
    other = connect(DB)
    q(other, "SET lock_timeout = '500ms'")
    try:
        q(other, "BEGIN")
        q(other, "SELECT stream_internal._xact_lock('processor_unit', %s)", (uid,))
        took = True
    except psycopg2.Error as e:
        check('lock timeout' in str(e), 'the unit lock times out: %s' % str(e).strip())
        took = False
    other.rollback()
    check(took is False, 'a session cannot take the unit lock while the unit runs')
    # a flush of the other processor is served once the unit is over (one worker, units in turn)
    put(conn, 'other', '{"n": 2, "s": "b"}')
    check(q1(conn, "SELECT stream.flush_delivery_stream('other', 20)") is True, 'the other processor after the unit')

    # 3. delete_delivery_stream during a unit waits for it; the unit's rows and batch stand
    put(conn, 'ul', '{"n": 3, "s": "nap"}')
    q(conn, "SELECT stream.flush_delivery_stream('ul', 0)")
    wait_for(lambda: q1(conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                              "AND backend_type LIKE 'stream worker%%'") == 1, 20, 'the unit to run the trigger')
    t0 = time.monotonic()
    q(conn, "SELECT stream.delete_delivery_stream('ul')")
    waited = time.monotonic() - t0
    check(waited > 0.5, 'delete_delivery_stream waited for the unit under way (%.1f s)' % waited)
    rows = sorted(r[0] for r in q(conn, "SELECT n FROM public.ul_sink"))
    check(rows == [1, 2, 3], 'every unit committed once, the last before the delete: %r' % rows)
    check(q1(conn, "SELECT count(*) FROM stream.processors WHERE processor_id = %s", (uid,)) == 0,
          'the processor is gone with its delivery stream')
    for t in ('processor_checkpoints', 'processor_pending', 'processor_progress', 'processor_errors'):
        check(q1(conn, "SELECT count(*) FROM stream.%s WHERE processor_id = %%s" % t, (uid,)) == 0,
              'no %s row of it is left' % t)
    say('2, 3: the worker holds the lock for a unit; delete waited %.1f s for it' % waited)
    holder.close()
    other.close()
    conn.close()


main_wrapper(main, lambda: drop_db(DB, on_error=warn))
