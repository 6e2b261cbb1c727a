#!/usr/bin/python3
"""One subscription per consumer and shard, with concurrent callers (kinesis-semantics.md 1.13).

sql/subscriptions.sql has the rules one call after the other; this script
has what needs two sessions or five seconds (an isolation spec cannot wait
for a session that sleeps on a condition variable rather than a lock):

  active     while a call of consumer c to shard 0 waits, a second call of c
             to shard 0 gets ResourceInUseException (42710), also one that
             would continue the waiting call; c on shard 1, and consumer d
             on shard 0, are admitted meanwhile; the waiting call still
             returns the record committed afterwards.
  takeover   a call made 5 s after the waiting call began takes over: it is
             admitted, and the waiting call ends at once with
             ResourceInUseException (not at its wait_timeout); the new call
             is then the subscription (its continuation continues it).
  recent     5 s after the last successful call, starting over (TRIM_HORIZON)
             is admitted again.
  race       8 sessions start the same consumer's subscription to one shard
             at the same moment: exactly one is admitted.

    test/scripts/77_subscription_in_use.py
"""

import os
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, log, main_wrapper  # noqa: E402
from streamtest import q, q1, run_subtests, shard_id  # noqa: E402

DB = 'stream_subscription_test'
STREAM = 'subs'
configure(DB, statement_timeout='60s')
HASH = {0: '0', 1: '340282366920938463463374607431768211455'}
SUB = ('SELECT cardinality(records), continuation_sequence_number FROM stream.subscribe_to_shard('
       '%s, %s, %s, %s, %s, %s::interval)')


def subscribe(conn, consumer, shard, position='TRIM_HORIZON', seq=None, wait='0 s'):
    return q(conn, SUB, (STREAM, consumer, shard_id(shard), position, seq, wait))[0]


def in_use(conn, consumer, shard, position='TRIM_HORIZON', seq=None):
    try:
        subscribe(conn, consumer, shard, position, seq)
    except psycopg2.Error as e:
        return e.pgcode == '42710' and 'ResourceInUseException' in (e.pgerror or '')
    return False


class Call(threading.Thread):
    def __init__(self, *args, **kw):
        super().__init__(daemon=True)
        self.args, self.kw = args, kw
        self.result = self.error = None
        self.returned_at = None

    def run(self):
        conn = connect()
        try:
            self.result = subscribe(conn, *self.args, **self.kw)
        except psycopg2.Error as e:
            self.error = e
        finally:
            self.returned_at = time.monotonic()
            conn.close()


def waiting(admin, n):
    """Wait until n sessions wait inside subscribe_to_shard."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if q1(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                     "AND query LIKE '%%subscribe_to_shard%%' AND pid <> pg_backend_pid()", (DB,)) >= n:
            return True
        time.sleep(0.01)
    return False


def put(conn, shard):
    return q(conn, 'SELECT sequence_number FROM stream.put_record(%s, %s, %s, %s)',
             (STREAM, 'k', psycopg2.Binary(b'x'), HASH[shard]))[0][0]


def test_active_and_takeover(admin):
    a = connect()
    try:
        _, cont = subscribe(a, 'c', 0)
        # the continuing call waits; meanwhile nothing else of c on shard 0 is admitted
        w = Call('c', 0, 'AFTER_SEQUENCE_NUMBER', cont, wait='20 s')
        began = time.monotonic()
        w.start()
        check(waiting(admin, 1), 'active: the continuing call does not wait')
        check(in_use(a, 'c', 0), 'active: starting over while a call waits was admitted')
        check(in_use(a, 'c', 0, 'AFTER_SEQUENCE_NUMBER', cont),
              'active: a second call continuing the same position while one waits was admitted')
        check(not in_use(a, 'c', 1), 'active: c on another shard was refused')
        check(not in_use(a, 'd', 0), 'active: another consumer on shard 0 was refused')
        seq = put(admin, 0)
        w.join(10)
        check(w.result is not None and w.result[0] == 1 and w.result[1] == seq,
              f'active: the waiting call returned {w.result} / {w.error}, not the record put meanwhile')
        cont = w.result[1] if w.result else cont
        log('takeover: a call 5 s after the running one began takes over')
        w = Call('c', 0, 'AFTER_SEQUENCE_NUMBER', cont, wait='60 s')
        began = time.monotonic()
        w.start()
        check(waiting(admin, 1), 'takeover: the call does not wait')
        check(in_use(a, 'c', 0), 'takeover: starting over within 5 s of the running call was admitted')
        time.sleep(max(0.0, began + 5.2 - time.monotonic()))
        t = time.monotonic()
        got, cont2 = subscribe(a, 'c', 0, 'TRIM_HORIZON')
        check(got >= 2, f'takeover: the call that took over read {got} records from TRIM_HORIZON')
        w.join(10)
        check(w.error is not None and w.error.pgcode == '42710' and 'took over' in (w.error.pgerror or ''),
              f'takeover: the call taken over ended with {w.error!r} / {w.result}')
        check(w.returned_at is not None and w.returned_at - t < 3,
              'takeover: the call taken over did not end at once')
        # the new call is the subscription now
        check(not in_use(a, 'c', 0, 'AFTER_SEQUENCE_NUMBER', cont2), 'takeover: continuing the new call was refused')
    finally:
        a.close()


def test_recent(admin):
    a = connect()
    try:
        subscribe(a, 'r', 0)
        check(in_use(a, 'r', 0), 'recent: starting over at once was admitted')
        time.sleep(5.2)
        check(not in_use(a, 'r', 0), 'recent: starting over 5 s later was refused')
    finally:
        a.close()


def test_race(admin):
    conns = [connect() for _ in range(8)]
    outcome = []
    barrier = threading.Barrier(len(conns))

    def one(c):
        barrier.wait()
        try:
            subscribe(c, 'race', 0)
            outcome.append('ok')
        except psycopg2.Error as e:
            outcome.append(e.pgcode)

    threads = [threading.Thread(target=one, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    check(sorted(outcome) == ['42710'] * 7 + ['ok'], f'race: 8 simultaneous first calls gave {sorted(outcome)}')


def main():
    admin = create_db(extension=True)
    admin.autocommit = True
    q(admin, f"SELECT stream.create_stream('{STREAM}', 2)")
    for c in ('c', 'd', 'r', 'race'):
        q(admin, 'SELECT stream.register_stream_consumer(%s, %s)', (STREAM, c))
    put(admin, 0)
    try:
        run_subtests((('active', test_active_and_takeover, (admin,)),
                      ('recent', test_recent, (admin,)),
                      ('race', test_race, (admin,))))
    finally:
        admin.close()


if __name__ == '__main__':
    main_wrapper(main, drop_db)
