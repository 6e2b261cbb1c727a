#!/usr/bin/python3
"""Flush requests: more concurrent flush_delivery_stream() calls than a
worker slot holds request keys.

flush_delivery_stream() posts a request (its delivery stream's id) to the
database's worker and waits until the worker reports its ticket done
(src/bgw/worker.h).  A slot holds 16 pending keys; more make the request
stand for every delivery stream.  Here N_STREAMS direct-put delivery
streams with a 900-second interval (the cadence alone delivers nothing
during the test) each get one record, then every one is flushed at once,
each from a connection of its own:

  overflow  every flush returns true within its timeout, and the sink holds
            each record exactly once;
  again     a second round of puts and concurrent flushes, two per delivery
            stream (the same key twice), works as well: tickets and the
            done watermark move on.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db  # noqa: E402
from streamtest import main_wrapper, q, q1, run_subtests  # noqa: E402

DB = 'stream_flush_requests'
N_STREAMS = 24                # above the 16 keys a slot holds
FLUSH_TIMEOUT_S = 30
configure(DB, statement_timeout='120s', client_min_messages='warning')
conn = create_db(extension=True)


def name(i):
    return f'fr-{i:02d}'


def flush_all(copies):
    """Flush every delivery stream `copies` times at once; the results."""
    results = {}
    lock = threading.Lock()
    conns = [connect() for _ in range(N_STREAMS * copies)]

    def run(c, i, k):
        try:
            ok = q1(c, 'SELECT stream.flush_delivery_stream(%s, %s)', (name(i), FLUSH_TIMEOUT_S))
        except Exception as e:  # noqa: BLE001
            ok = repr(e)
        with lock:
            results[(i, k)] = ok

    threads = [threading.Thread(target=run, args=(conns[i * copies + k], i, k))
               for i in range(N_STREAMS) for k in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return results


def put_round(r):
    for i in range(N_STREAMS):
        q(conn, 'SELECT stream.put_delivery_record(%s, %s)', (name(i), f'{{"ds": {i}, "r": {r}}}'.encode()))


def delivered(r):
    rows = q(conn, 'SELECT ds, count(*) FROM public.sink WHERE r = %s GROUP BY ds', (r,))
    return dict(rows)


def check_round(r, results):
    bad = {k: v for k, v in results.items() if v is not True}
    check(not bad, f'round {r}: every flush returns true, got {sorted(bad.items())[:5]} '
                   f'({len(bad)} of {len(results)})')
    got = delivered(r)
    wrong = {i: got.get(i, 0) for i in range(N_STREAMS) if got.get(i, 0) != 1}
    check(not wrong, f'round {r}: each delivery stream delivered its record once, counts {wrong}')


def test_overflow():
    put_round(1)
    check(delivered(1) == {}, 'nothing is delivered before the flush (900 s interval)')
    check_round(1, flush_all(1))


def test_again():
    put_round(2)
    check_round(2, flush_all(2))


def main():
    q(conn, 'CREATE TABLE public.sink (ds int, r int)')
    for i in range(N_STREAMS):
        q(conn, "SELECT stream.create_delivery_stream(%s, destination_table => 'public.sink', "
                "buffer_interval_seconds => 900)", (name(i),))
    run_subtests([('overflow', test_overflow, ()), ('again', test_again, ())])


def cleanup():
    conn.close()
    drop_db()


main_wrapper(main, cleanup)
