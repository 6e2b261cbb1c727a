#!/usr/bin/python3
"""Enhanced fan-out (subscribe_to_shard) and LISTEN/NOTIFY (issue 4).

Creates and drops its own database.  Sub-tests, in order:

  consumers    register/list/describe/deregister_stream_consumer; a duplicate
               name is refused (42710); subscribing with an unregistered,
               deregistered or other stream's consumer fails with
               ResourceNotFoundException (42704); wait_timeout outside
               0..5 min is refused (22023).
  wake         a subscriber waiting on a shard returns as soon as a put to it
               commits (commit-to-return latency: median < 20 ms, max < 100 ms
               over 20 trials), not while the put is uncommitted, with that
               record and a continuation sequence number to resume from.
  rollback     a rolled-back put (whole transaction, and a rolled-back
               savepoint) wakes no subscriber: it waits the full wait_timeout
               and returns no records; commits to another shard do not wake
               it either; the next committed put is delivered, alone.
  held_back    a subscriber whose shard is held back by an open transaction
               (lower sequence number in flight) does not return the records
               committed after it; when that transaction rolls back, the
               subscriber wakes at once (< 100 ms) with the committed records.
  cancel       a statement_timeout during the wait cancels it promptly
               (57014); the session subscribes and wakes normally afterwards.
  fanout       8 consumers subscribed to one shard, each following its
               continuation sequence number, all receive every committed
               record of ~300 transactions (some rolled back) exactly once,
               in order.
  independent  consumers keep no shared position: a second consumer reading
               from TRIM_HORIZON gets every record regardless of what the first
               read (the first starting over at once is refused,
               ResourceInUseException), and deregistering one consumer leaves
               the other working.
  shard_end    subscribing to a closed shard returns its records at once and
               a NULL continuation once it is read to its end.
  notify       LISTEN on stream.notification_channel(): nothing before
               enable_stream_notifications; then exactly one notification per
               shard per transaction (50 records to 2 shards: 2), payload the
               shard id, delivered at commit; none for a rolled-back
               transaction or savepoint; other streams do not notify the
               channel; sessions opened before enabling notify too; none
               after disabling.
  privileges   a role with read access to the stream registers a consumer and
               subscribes; a role without access sees no consumers and cannot
               subscribe.

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh).
Exit status 0 = pass, 1 = failure.
"""

import os
import select
import statistics
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, expect_error, fail  # noqa: E402
from streamtest import finish, log, q, q1, run_subtests, shard_id  # noqa: E402

DB = 'stream_fanout_test'
STREAM = 'fan'
NSHARDS = 4

configure(DB, statement_timeout='30s')


HASH = {}   # shard index -> an explicit hash key inside it


def put(conn, shard, data, stream=STREAM):
    return q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s, %s)',
             (stream, 'pk', psycopg2.Binary(data.encode()), HASH[shard]))[0][1]


SUB_SQL = ('SELECT (SELECT array_agg(r.sequence_number ORDER BY o) FROM unnest(s.records) WITH ORDINALITY '
           'r(sequence_number, a, pk, d, o)), continuation_sequence_number, millis_behind_latest '
           'FROM stream.subscribe_to_shard(%s, %s, %s, %s, %s, %s::interval) s')


def subscribe(conn, consumer, shard, position, seq=None, timeout='5 s', stream=STREAM):
    recs, cont, behind = q(conn, SUB_SQL, (stream, consumer, shard_id(shard), position, seq, timeout))[0]
    return recs or [], cont, behind


def position(conn, consumer, shard):
    """A continuation number at the current end of the shard."""
    recs, cont, _ = subscribe(conn, consumer, shard, 'LATEST', timeout='0 s')
    return cont


class Sub(threading.Thread):
    """Run one subscribe_to_shard call in the background, timing its return."""

    def __init__(self, conn, *args, **kw):
        super().__init__(daemon=True)
        self.conn, self.args, self.kw = conn, args, kw
        self.result = self.error = self.t_return = None
        self.t_start = time.perf_counter()

    def run(self):
        try:
            self.result = subscribe(self.conn, *self.args, **self.kw)
        except Exception as e:
            self.error = e
        self.t_return = time.perf_counter()


def wait_waiting(admin, n, timeout=5.0):
    """Wait until n sessions are inside subscribe_to_shard."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        k = q1(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                      "AND query LIKE '%%subscribe_to_shard%%' AND pid <> pg_backend_pid()", (DB,))
        if k >= n:
            return True
        time.sleep(0.01)
    return False


# ---------------------------------------------------------------- sub-tests

def test_consumers(admin):
    log('consumers: registration and ResourceNotFoundException')
    j = q1(admin, "SELECT stream.register_stream_consumer(%s, 'c1')", (STREAM,))
    check(j['ConsumerName'] == 'c1' and j['ConsumerStatus'] == 'ACTIVE' and '/consumer/c1:' in j['ConsumerARN'],
          f'consumers: register_stream_consumer returned {j}')
    for c in ('c2', 'gone'):
        q(admin, 'SELECT stream.register_stream_consumer(%s, %s)', (STREAM, c))
    expect_error(admin, "SELECT stream.register_stream_consumer(%s, 'c1')", (STREAM,), '42710',
                 'ResourceInUseException', 'consumers: duplicate consumer name')
    names = [r[0] for r in q(admin, 'SELECT consumer_name FROM stream.list_stream_consumers(%s)', (STREAM,))]
    check(names == ['c1', 'c2', 'gone'], f'consumers: list_stream_consumers returned {names}')
    d = q1(admin, "SELECT stream.describe_stream_consumer(%s, 'c2')", (STREAM,))
    check(d['ConsumerName'] == 'c2', f'consumers: describe_stream_consumer returned {d}')
    q(admin, "SELECT stream.deregister_stream_consumer(%s, 'gone')", (STREAM,))
    expect_error(admin, "SELECT stream.deregister_stream_consumer(%s, 'gone')", (STREAM,), '42704',
                 'ResourceNotFoundException', 'consumers: deregistering twice')
    q(admin, "SELECT stream.create_stream('other', 1)")
    q(admin, "SELECT stream.register_stream_consumer('other', 'elsewhere')")
    for name, what in (('nobody', 'unregistered'), ('gone', 'deregistered'), ('elsewhere', "another stream's")):
        t = time.perf_counter()
        expect_error(admin, SUB_SQL, (STREAM, name, shard_id(0), 'LATEST', None, '2 s'), '42704',
                     'ResourceNotFoundException', f'consumers: subscribe with an {what} consumer')
        check(time.perf_counter() - t < 1.0, f'consumers: the {what} consumer waited before failing')
    expect_error(admin, SUB_SQL, (STREAM, 'c1', shard_id(0), 'LATEST', None, '6 min'), '22023',
                 'InvalidArgumentException', 'consumers: wait_timeout over 5 minutes')
    expect_error(admin, SUB_SQL, (STREAM, 'c1', shard_id(0), 'LATEST', None, '-1 s'), '22023',
                 'InvalidArgumentException', 'consumers: negative wait_timeout')
    expect_error(admin, SUB_SQL, (STREAM, 'c1', shard_id(99), 'LATEST', None, '1 s'), '42704',
                 'ResourceNotFoundException', 'consumers: unknown shard')


def test_wake(admin):
    log('wake: a commit wakes the subscriber at once')
    sc, pc = connect(), connect()
    lat = []
    try:
        cont = position(sc, 'c1', 0)
        for trial in range(20):
            s = Sub(sc, 'c1', 0, 'AFTER_SEQUENCE_NUMBER', cont, timeout='5 s')
            s.start()
            check(wait_waiting(admin, 1), 'wake: the subscriber never started waiting')
            pc.autocommit = False
            seq = put(pc, 0, f'wake-{trial}')
            if trial < 3:
                time.sleep(0.3)      # uncommitted: the subscriber must keep waiting
                check(s.is_alive(), f'wake: the subscriber returned before the commit: {s.result}')
            t_commit = time.perf_counter()
            pc.commit()
            pc.autocommit = True
            s.join(6)
            if not check(s.result is not None, f'wake: no result ({s.error})'):
                return
            recs, cont, behind = s.result
            check(recs == [seq], f'wake: trial {trial} got {recs}, expected [{seq}]')
            check(cont == seq, f'wake: continuation {cont}, expected the record\'s sequence number {seq}')
            lat.append((s.t_return - t_commit) * 1000)
        med, mx = statistics.median(lat), max(lat)
        log(f'wake: commit -> return latency median {med:.2f} ms, max {mx:.2f} ms over {len(lat)} trials')
        check(med < 20 and mx < 100, f'wake: latency median {med:.1f} ms, max {mx:.1f} ms (want < 20 / < 100 ms)')
    finally:
        sc.close()
        pc.close()


def test_rollback(admin):
    log('rollback: rolled-back puts wake no one')
    sc, pc = connect(), connect()
    try:
        cont = position(sc, 'c1', 0)
        for how in ('rollback', 'savepoint', 'other shard'):
            s = Sub(sc, 'c1', 0, 'AFTER_SEQUENCE_NUMBER', cont, timeout='1.5 s')
            s.start()
            check(wait_waiting(admin, 1), f'rollback ({how}): the subscriber never started waiting')
            pc.autocommit = False
            if how == 'rollback':
                put(pc, 0, 'rolled-back')
                time.sleep(0.2)
                pc.rollback()
            elif how == 'savepoint':
                q(pc, 'SAVEPOINT a')
                put(pc, 0, 'rolled-back-savepoint')
                q(pc, 'ROLLBACK TO SAVEPOINT a')
                put(pc, 1, 'kept-other-shard')
                pc.commit()
            else:
                for _ in range(5):
                    put(pc, 2, 'other-shard')
                    pc.commit()
            pc.autocommit = True
            s.join(5)
            recs, c2, _ = s.result
            waited = s.t_return - s.t_start
            check(recs == [], f'rollback ({how}): got records {recs}')
            check(waited >= 1.4, f'rollback ({how}): returned after {waited:.3f} s, before the 1.5 s timeout')
            check(c2 is not None and c2 >= cont, f'rollback ({how}): continuation {c2} went back from {cont}')
            cont = c2
        # the next committed put is delivered, alone
        s = Sub(sc, 'c1', 0, 'AFTER_SEQUENCE_NUMBER', cont, timeout='5 s')
        s.start()
        wait_waiting(admin, 1)
        seq = put(pc, 0, 'committed')
        s.join(6)
        check(s.result is not None and s.result[0] == [seq], f'rollback: after the rollbacks got {s.result}, expected [{seq}]')
        allrecs = q(admin, "SELECT array_agg(convert_from(data, 'UTF8')) FROM stream.read_shard(%s, %s)", (STREAM, shard_id(0)))[0][0]
        check(not any(d.startswith('rolled-back') for d in allrecs), 'rollback: a rolled-back record is readable')
    finally:
        sc.close()
        pc.close()


def test_held_back(admin):
    log('held_back: an aborting transaction that held back the shard wakes the subscriber')
    sc, long_tx, pc = connect(), connect(), connect()
    try:
        cont = position(sc, 'c1', 0)
        long_tx.autocommit = False
        put(long_tx, 0, 'rolled-back-long')             # lowest number in flight on shard 0
        s = Sub(sc, 'c1', 0, 'AFTER_SEQUENCE_NUMBER', cont, timeout='5 s')
        s.start()
        check(wait_waiting(admin, 1), 'held_back: the subscriber never started waiting')
        seqs = [put(pc, 0, f'after-long-{i}') for i in range(3)]     # committed, but behind the open one
        time.sleep(0.5)
        check(s.is_alive(), f'held_back: returned while an older put was still in flight: {s.result}')
        t = time.perf_counter()
        long_tx.rollback()
        s.join(6)
        if check(s.result is not None, f'held_back: no result ({s.error})'):
            check(s.result[0] == seqs, f'held_back: got {s.result[0]}, expected {seqs}')
            lat = (s.t_return - t) * 1000
            log(f'held_back: woke {lat:.2f} ms after the rollback')
            check(lat < 100, f'held_back: the subscriber returned {lat:.0f} ms after the rollback '
                             f'that made the committed records readable (want < 100 ms)')
    finally:
        sc.close()
        long_tx.close()
        pc.close()


def test_cancel(admin):
    log('cancel: statement_timeout ends a waiting subscription')
    sc = connect()
    try:
        cont = position(sc, 'c1', 0)
        q(sc, "SET statement_timeout = '300ms'")
        t = time.perf_counter()
        expect_error(sc, SUB_SQL, (STREAM, 'c1', shard_id(0), 'AFTER_SEQUENCE_NUMBER', cont, '5 s'), '57014',
                     'statement timeout', 'cancel: statement_timeout during the wait')
        took = time.perf_counter() - t
        check(took < 1.5, f'cancel: the cancelled wait took {took:.2f} s')
        q(sc, "SET statement_timeout = '30s'")
        s = Sub(sc, 'c1', 0, 'AFTER_SEQUENCE_NUMBER', cont, timeout='5 s')
        s.start()
        wait_waiting(admin, 1)
        seq = put(admin, 0, 'after-cancel')
        s.join(6)
        check(s.result is not None and s.result[0] == [seq] and s.t_return - s.t_start < 2,
              f'cancel: after a cancelled wait the next subscription got {s.result}')
    finally:
        sc.close()


def test_fanout(admin):
    nsub = 8
    log(f'fanout: {nsub} consumers on one shard follow their continuation numbers')
    for i in range(nsub):
        q(admin, 'SELECT stream.register_stream_consumer(%s, %s)', (STREAM, f'f{i}'))
    pc = connect()
    start = position(pc, 'f0', 3)
    done = threading.Event()
    results = {}

    def follow(i):
        conn = connect()
        got, calls, cont = [], 0, start
        try:
            while time.monotonic() < deadline:
                recs, cont, _ = subscribe(conn, f'f{i}', 3, 'AFTER_SEQUENCE_NUMBER', cont, timeout='1 s')
                calls += 1
                got += recs
                if done.is_set() and len(got) >= len(expected) and not recs:
                    break
        except Exception as e:
            fail(f'fanout: subscriber f{i}: {e}')
        finally:
            conn.close()
        results[i] = (got, calls)

    expected = []
    deadline = time.monotonic() + 30
    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(nsub)]
    for t in threads:
        t.start()
    wait_waiting(admin, nsub)
    try:
        pc.autocommit = False
        for n in range(300):
            seqs = [put(pc, 3, f'fan-{n}-{k}') for k in range(1 + n % 3)]
            if n % 5 == 4:
                pc.rollback()
            else:
                pc.commit()
                expected += seqs
            time.sleep(0.002)
        pc.autocommit = True
    finally:
        done.set()
        pc.close()
    for t in threads:
        t.join(max(1, deadline - time.monotonic() + 2))
    calls = []
    for i in range(nsub):
        got, c = results.get(i, ([], 0))
        calls.append(c)
        check(got == expected, f'fanout: f{i} got {len(got)} records, expected {len(expected)} in order'
                               f' (missing {len(set(expected) - set(got))}, extra {len(got) - len(set(got) & set(expected))})')
    log(f'fanout: {len(expected)} records in 240 commits; subscribe calls per consumer {calls}')
    check(min(calls) >= 20, f'fanout: subscribers made only {calls} calls: they did not follow many commits')


def test_independent(admin):
    log('independent: consumers do not share a position')
    a, b = connect(), connect()
    try:
        q(admin, "SELECT stream.register_stream_consumer(%s, 'i1')", (STREAM,))
        q(admin, "SELECT stream.register_stream_consumer(%s, 'i2')", (STREAM,))
        all1 = [r[0] for r in q(admin, 'SELECT sequence_number FROM stream.read_shard(%s, %s)', (STREAM, shard_id(1)))]
        r1, c1, _ = subscribe(a, 'i1', 1, 'TRIM_HORIZON', timeout='0 s')
        r2, c2, _ = subscribe(b, 'i2', 1, 'TRIM_HORIZON', timeout='0 s')
        check(r1 == all1 and r2 == all1, f'independent: i1 got {len(r1)}, i2 got {len(r2)}, shard has {len(all1)}')
        # a consumer has one subscription to a shard: starting over within 5 s is refused (76_subscription_in_use)
        expect_error(a, SUB_SQL, (STREAM, 'i1', shard_id(1), 'TRIM_HORIZON', None, '0 s'), '42710',
                     'ResourceInUseException', 'independent: i1 starting over at once')
        # one waits while the other is deregistered; the commit still reaches the first
        s = Sub(b, 'i2', 1, 'AFTER_SEQUENCE_NUMBER', c2, timeout='5 s')
        s.start()
        wait_waiting(admin, 1)
        q(admin, "SELECT stream.deregister_stream_consumer(%s, 'i1')", (STREAM,))
        seq = put(admin, 1, 'independent')
        s.join(6)
        check(s.result is not None and s.result[0] == [seq], f'independent: i2 got {s.result} after i1 was deregistered')
        expect_error(a, SUB_SQL, (STREAM, 'i1', shard_id(1), 'AFTER_SEQUENCE_NUMBER', c1, '0 s'), '42704',
                     'ResourceNotFoundException', 'independent: deregistered i1')
    finally:
        a.close()
        b.close()


def test_shard_end(admin):
    log('shard_end: a closed shard ends the subscription')
    q(admin, "SELECT stream.create_stream('closing', 2)")
    q(admin, "SELECT stream.register_stream_consumer('closing', 'ce')")
    sid = q1(admin, "SELECT stream_id FROM stream.streams WHERE stream_name = 'closing'")
    seqs = [q(admin, "SELECT sequence_number FROM stream.put_record('closing', 'k', '\\x01', '0')")[0][0] for _ in range(5)]
    last = q1(admin, 'SELECT seq FROM stream_internal._sequence_parts(%s)', (seqs[-1],))
    q(admin, 'UPDATE stream.shards SET ending_seq = %s, closed_at = now() WHERE stream_id = %s AND shard_index = 0', (last, sid))
    q(admin, 'SELECT stream_internal._catalog_changed()')
    c = connect()
    try:
        t = time.perf_counter()
        recs, cont, _ = subscribe(c, 'ce', 0, 'TRIM_HORIZON', timeout='3 s', stream='closing')
        check(recs == seqs and cont is None, f'shard_end: got {len(recs)} records, continuation {cont}; expected 5, NULL')
        recs, cont, _ = subscribe(c, 'ce', 0, 'AFTER_SEQUENCE_NUMBER', seqs[-1], timeout='3 s', stream='closing')
        check(recs == [] and cont is None, f'shard_end: after the last record got {recs}, continuation {cont}')
        check(time.perf_counter() - t < 1.0, 'shard_end: subscribing to a finished shard waited for the timeout')
    finally:
        c.close()


def drain_notifies(conn, wait):
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        select.select([conn], [], [], left)
        conn.poll()
    out = [(n.channel, n.payload) for n in conn.notifies]
    conn.notifies.clear()
    return out


def test_notify(admin):
    log('notify: one notification per shard per transaction')
    q(admin, "SELECT stream.create_stream('notif', 4)")
    q(admin, "SELECT stream.create_stream('notif2', 4)")
    chan = q1(admin, "SELECT stream.notification_channel('notif')")
    chan2 = q1(admin, "SELECT stream.notification_channel('notif2')")
    check(chan != chan2 and chan.startswith('stream_'), f'notify: channels {chan}, {chan2}')
    lc, pc = connect(), connect()       # pc is opened before notifications are enabled
    try:
        q(lc, f'LISTEN "{chan}"')
        q(pc, "SELECT count(*) FROM stream.put_records('notif', %s, %s::bytea[])",
          ([f'k{i}' for i in range(20)], [psycopg2.Binary(b'x')] * 20))
        got = drain_notifies(lc, 0.5)
        check(got == [], f'notify: {len(got)} notifications before enable_stream_notifications: {got[:4]}')

        ret = q1(admin, "SELECT stream.enable_stream_notifications('notif')")
        check(ret == chan, f'notify: enable_stream_notifications returned {ret}, channel is {chan}')

        # 50 records to 2 shards in one transaction: 2 notifications, at commit
        pc.autocommit = False
        for i in range(25):
            put(pc, 0, f'n{i}', stream='notif')
        q(pc, "SELECT count(*) FROM stream.put_records('notif', %s, %s::bytea[], %s)",
          ([f'k{i}' for i in range(25)], [psycopg2.Binary(b'y')] * 25, [HASH[2]] * 25))
        early = drain_notifies(lc, 0.3)
        check(early == [], f'notify: notifications before commit: {early}')
        pc.commit()
        got = drain_notifies(lc, 0.5)
        check(sorted(got) == [(chan, shard_id(0)), (chan, shard_id(2))],
              f'notify: a transaction of 50 records to 2 shards gave {got}')

        # rolled back: nothing; rolled-back savepoint: only what was kept
        put(pc, 1, 'r', stream='notif')
        pc.rollback()
        check(drain_notifies(lc, 0.4) == [], 'notify: a rolled-back transaction notified')
        put(pc, 0, 'kept', stream='notif')
        q(pc, 'SAVEPOINT s')
        put(pc, 3, 'dropped', stream='notif')
        q(pc, 'ROLLBACK TO SAVEPOINT s')
        pc.commit()
        got = drain_notifies(lc, 0.4)
        check(got == [(chan, shard_id(0))], f'notify: savepoint case gave {got}, expected only shard 0')
        pc.autocommit = True

        # one put_records over every shard: one per shard
        q(pc, "SELECT count(*) FROM stream.put_records('notif', %s, %s::bytea[], %s)",
          ([f'k{i}' for i in range(100)], [psycopg2.Binary(b'z')] * 100, [HASH[i % 4] for i in range(100)]))
        got = drain_notifies(lc, 0.4)
        check(sorted(got) == [(chan, shard_id(i)) for i in range(4)], f'notify: put_records over 4 shards gave {got}')

        # another stream, with notifications off or on, does not notify this channel
        q(admin, "SELECT stream.enable_stream_notifications('notif2')")
        put(pc, 0, 'other', stream='notif2')
        check(drain_notifies(lc, 0.4) == [], 'notify: a put to another stream notified this channel')

        q(admin, "SELECT stream.enable_stream_notifications('notif', false)")
        put(pc, 0, 'off', stream='notif')
        check(drain_notifies(lc, 0.4) == [], 'notify: notified after notifications were disabled')
    finally:
        lc.close()
        pc.close()


ROLE_R, ROLE_N = 'stream_fanout_test_reader', 'stream_fanout_test_nobody'


def test_privileges(admin):
    log('privileges: consumers follow stream read access')
    q(admin, f'CREATE ROLE {ROLE_R} LOGIN')
    q(admin, f'CREATE ROLE {ROLE_N} LOGIN')
    q(admin, "SELECT stream.grant_stream_access(%s, %s, 'read')", (STREAM, ROLE_R))
    r, n = connect(user=ROLE_R), connect(user=ROLE_N)
    try:
        try:
            q(r, "SELECT stream.register_stream_consumer(%s, 'by_reader')", (STREAM,))
        except psycopg2.Error as e:
            fail(f'privileges: a role with read access cannot register a consumer: {e.pgcode}: {e.pgerror.strip()}')
            q(admin, "SELECT stream.register_stream_consumer(%s, 'by_reader')", (STREAM,))
        recs, cont, _ = subscribe(r, 'by_reader', 0, 'TRIM_HORIZON', timeout='0 s')
        check(len(recs) > 0, 'privileges: the reader got no records')
        check(q(n, 'SELECT count(*) FROM stream.list_stream_consumers(%s)', (STREAM,))[0][0] == 0,
              'privileges: a role without access lists the stream\'s consumers')
        try:
            recs, _, _ = subscribe(n, 'by_reader', 0, 'TRIM_HORIZON', timeout='0 s')
            fail(f'privileges: a role without access subscribed and got {len(recs)} records')
        except psycopg2.Error as e:
            check(e.pgcode in ('42704', '42501'), f'privileges: no-access subscribe failed with {e.pgcode}: {e.pgerror}')
    finally:
        r.close()
        n.close()


def main():
    admin = create_db(roles=(ROLE_R, ROLE_N), extension=True)
    try:
        q(admin, 'SELECT stream.create_stream(%s, %s)', (STREAM, NSHARDS))
        for sh, lo in q(admin, 'SELECT shard_index, starting_hash_key::text FROM stream.shards s '
                               'JOIN stream.streams USING (stream_id) WHERE stream_name = %s', (STREAM,)):
            HASH[sh] = lo
        for i in range(40):
            put(admin, i % NSHARDS, f'initial-{i}')
        run_subtests((name, fn, (admin,)) for name, fn in (
            ('consumers', test_consumers), ('wake', test_wake), ('rollback', test_rollback),
            ('held_back', test_held_back), ('cancel', test_cancel),
            ('fanout', test_fanout), ('independent', test_independent),
            ('shard_end', test_shard_end), ('notify', test_notify),
            ('privileges', test_privileges)))
    finally:
        admin.close()
        drop_db(roles=(ROLE_R, ROLE_N))
    finish()


if __name__ == '__main__':
    main()
