#!/usr/bin/python3
"""Maintenance is never wedged by users' transactions (issue 7, defect 5).

Creates and drops its own database and roles.  Expired chunks are made the
way a long-running stream would have them (as in test/pgtap/retention_chunks.sql):
as superuser, chunks for hours 30 to 60 hours ago, each with one record,
before any reader starts.  Sub-tests, in order:

  chunk_reader   a transaction (of an administrator: chunks are granted to
                 nobody) idles after reading one expired chunk directly: run_maintenance drops every other
                 expired chunk in that round, keeps the locked one, and drops
                 it in the first round after the reader commits.
  dump_and_idle  the chunks of the current and the next two hours are dropped
                 (as if maintenance had not run for longer than the premade
                 horizon), then, while
                   - a read-only role idles in a transaction after a SELECT on
                     the stream table (ACCESS SHARE on the parent and on the
                     chunks it did not prune),
                   - a pg_dump-like REPEATABLE READ transaction holds ACCESS
                     SHARE on the parent and on one expired chunk,
                   - a producer idles in a transaction after a put,
                 a producer's put_record and put_records succeed (the producer
                 makes its missing chunk), run_maintenance returns within a few
                 seconds having created the missing chunks up to
                 stream.chunk_premake ahead, keeps the locked expired chunk with
                 its record, and empties the unlocked expired ones (their
                 records are gone; a partition cannot be dropped while its
                 parent is locked); the pg_dump-like transaction still reads
                 its chunk.  Once the transactions end, the next round drops
                 every expired chunk.
  fallback_range  stream_internal._add_chunk_for_put makes only chunks in the range
                 sequence numbers are handed out in, and nobody may call it.
  churn          for 4 s (seeded random pauses, seed printed; STREAM_TEST_SEED
                 sets it): 3 producers, a read-only reader and a pg_dump-like
                 transaction opening and idling in transactions, and a session
                 calling run_maintenance in a loop, with the chunks of the
                 next hours dropped now and then: no error, no deadlock, no
                 maintenance call over 2 s, every committed put readable.

Each fails on 94f325e: there the LOCK on the parent recursed into every
chunk (one reader of any chunk stopped all trimming), CREATE TABLE ...
PARTITION OF needed ACCESS EXCLUSIVE on the parent (any reader or pg_dump
stopped chunk creation) and a put into a missing chunk failed.

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh).
Exit status 0 = pass, 1 = failure.
"""

import os
import random
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, expect_error  # noqa: E402
from streamtest import fail, log, main_wrapper, q, q1, run_subtests  # noqa: E402

DB = 'stream_test_maint_locks'
ROLE_R = 'stream_maint_reader'
ROLE_W = 'stream_maint_writer'
STREAM = 'maint_locks'
configure(DB, statement_timeout='30s')


def hour_now(conn):
    return q1(conn, "SELECT floor(extract(epoch FROM clock_timestamp()) / 3600)::bigint")


def chunk_exists(conn, sid, k):
    return q1(conn, "SELECT to_regclass(%s) IS NOT NULL", (f'stream_data.s{sid}_{k}',))


def make_expired_chunks(admin, sid, hours_ago):
    """Chunks (1-hour, retention 24 h) for the given hours in the past, one record each."""
    now_k = hour_now(admin)
    ks = []
    for h in hours_ago:
        k = now_k - h
        q(admin, f"CREATE TABLE IF NOT EXISTS stream_data.s{sid}_{k} PARTITION OF stream_data.s{sid} "
                 f"FOR VALUES FROM ({k << 32}) TO ({(k + 1) << 32})")
        q(admin, f"INSERT INTO stream_data.s{sid} VALUES (0, {(k << 32) + 7}, "
                 f"clock_timestamp() - interval '{h} hours', 'old', '\\x00') ON CONFLICT DO NOTHING")
        ks.append(k)
    return ks


def rows_in(conn, sid, k):
    return q1(conn, f"SELECT count(*) FROM ONLY stream_data.s{sid}_{k}")


def readable(conn):
    """Records read_shard returns from shard 0, paging through it."""
    n, last = 0, None
    while True:
        if last is None:
            rows = q(conn, "SELECT sequence_number FROM stream.read_shard(%s, 'shardId-000000000000', 'TRIM_HORIZON')",
                     (STREAM,))
        else:
            rows = q(conn, "SELECT sequence_number FROM stream.read_shard(%s, 'shardId-000000000000', "
                           "'AFTER_SEQUENCE_NUMBER', %s)", (STREAM, last))
        if not rows:
            return n
        n += len(rows)
        last = rows[-1][0]


def maintain(admin):
    """run_maintenance(); returns (seconds, {stream: row})."""
    t = time.monotonic()
    rows = q(admin, "SELECT * FROM stream.run_maintenance()")
    return time.monotonic() - t, {r[0]: r[1:] for r in rows}


def begin_idle(user, *stmts, iso=None):
    """A connection of user left idle in a transaction after stmts."""
    c = connect(user=user)
    c.autocommit = False
    if iso:
        q(c, f"SET TRANSACTION ISOLATION LEVEL {iso}")
    res = None
    for s in stmts:
        res = q(c, s)
    return c, res


def test_chunk_reader(admin, sid):
    ks = make_expired_chunks(admin, sid, (60, 50, 40, 30))
    locked = ks[0]                      # the oldest: trimming used to stop there
    r, res = begin_idle(None, f"SELECT count(*) FROM stream_data.s{sid}_{locked}")
    check(res[0][0] == 1, 'the reader sees the record of its chunk')
    try:
        secs, rows = maintain(admin)
        check(secs < 5, f'run_maintenance returned within 5 s with a reader holding a chunk ({secs:.1f} s)')
        check(chunk_exists(admin, sid, locked), 'the chunk a reader holds is kept')
        gone = [k for k in ks[1:] if not chunk_exists(admin, sid, k)]
        check(len(gone) == 3, f'every other expired chunk is dropped in the same round '
                              f'({len(gone)} of 3; maintenance said {rows.get(STREAM)})')
    finally:
        r.rollback()
        r.close()
    maintain(admin)
    check(not any(chunk_exists(admin, sid, k) for k in ks),
          'the first round after the reader ended drops the chunk it held')


def test_dump_and_idle(admin, sid):
    premake = int(q1(admin, "SELECT current_setting('stream.chunk_premake')"))
    ks = make_expired_chunks(admin, sid, (60, 50, 40, 30))
    # the premade horizon has run out: no chunk for this hour nor the next two
    now_k = hour_now(admin)
    missing = [now_k, now_k + 1, now_k + 2]
    with admin.cursor() as cur:
        cur.execute('BEGIN')
        for k in missing:
            cur.execute(f"DROP TABLE IF EXISTS stream_data.s{sid}_{k}")
        cur.execute('COMMIT')
    lo = now_k << 32
    sessions = []
    try:
        reader, res = begin_idle(ROLE_R, f"SELECT count(*) FROM stream_data.s{sid} WHERE seq >= {lo}")
        sessions.append(reader)
        dump, res = begin_idle(None, f"LOCK TABLE ONLY stream_data.s{sid} IN ACCESS SHARE MODE",
                               f"LOCK TABLE stream_data.s{sid}_{ks[0]} IN ACCESS SHARE MODE",
                               f"SELECT count(*) FROM stream_data.s{sid}_{ks[0]}", iso='REPEATABLE READ')
        sessions.append(dump)
        check(res[0][0] == 1, 'the pg_dump-like transaction sees the record of its chunk')
        locks = q1(admin, "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND granted",
                   (f'stream_data.s{sid}',))
        check(locks >= 2, f'the reader and the dump both hold a lock on the stream table ({locks})')

        w = connect(user=ROLE_W)
        t = time.monotonic()
        try:
            seq = q1(w, "SELECT sequence_number FROM stream.put_record(%s, 'pk', '\\x01')", (STREAM,))
            check(seq is not None, 'put_record returns a sequence number')
            n = q1(w, "SELECT count(*) FROM stream.put_records(%s, array_fill('k'::text, ARRAY[50]), "
                      "array_fill('\\x02'::bytea, ARRAY[50])) WHERE error_code IS NULL", (STREAM,))
            check(n == 50, f'put_records succeeds too ({n} of 50)')
        except psycopg2.Error as e:
            fail(f'a put with no premade chunk while readers hold the stream failed: {e.pgerror}')
        check(time.monotonic() - t < 5, 'the puts did not wait for the readers')
        w.close()
        # a producer idling in its transaction after a put
        try:
            idle_w, _ = begin_idle(ROLE_W, f"SELECT stream.put_record('{STREAM}', 'idle', '\\x03')")
            sessions.append(idle_w)
        except psycopg2.Error as e:
            fail(f'a put in an open transaction failed: {e.pgerror}')

        secs, rows = maintain(admin)
        log(f'maintenance with a dump, an idle reader and an idle producer: {secs:.2f} s, {rows.get(STREAM)}')
        check(secs < 5, f'run_maintenance returned within 5 s ({secs:.1f} s)')
        now_k = hour_now(admin)
        absent = [k for k in range(now_k, now_k + premake + 1) if not chunk_exists(admin, sid, k)]
        check(not absent, f'every chunk from this hour to stream.chunk_premake ({premake}) ahead exists '
                          f'while a dump and an idle reader hold the stream (missing: {absent})')
        check(chunk_exists(admin, sid, ks[0]) and rows_in(admin, sid, ks[0]) == 1,
              'the expired chunk the dump holds is kept with its record')
        left = {k: rows_in(admin, sid, k) for k in ks[1:] if chunk_exists(admin, sid, k)}
        check(all(v == 0 for v in left.values()),
              f'the unlocked expired chunks hold no record after the round (rows left: {left})')
        check(q1(dump, f"SELECT count(*) FROM stream_data.s{sid}_{ks[0]}") == 1,
              'the pg_dump-like transaction still reads its chunk')
        w = connect(user=ROLE_W)
        try:
            q(w, "SELECT stream.put_record(%s, 'pk', '\\x04')", (STREAM,))
        except psycopg2.Error as e:
            fail(f'a put after the round failed: {e.pgerror}')
        w.close()
    finally:
        for c in sessions:
            c.rollback()
            c.close()
    maintain(admin)
    check(not any(chunk_exists(admin, sid, k) for k in ks),
          'once the transactions ended the next round drops every expired chunk')
    got = readable(admin)
    check(got == 52, f'the committed puts are all readable ({got} of 52)')


def test_fallback_range(admin, sid):
    now_k = hour_now(admin)
    check(q1(admin, "SELECT stream_internal._add_chunk_for_put(%s, %s)", (sid, now_k + 100)) == 0,
          'no chunk far ahead of the sequence numbers handed out')
    check(not chunk_exists(admin, sid, now_k + 100), '... none was made')
    check(q1(admin, "SELECT stream_internal._add_chunk_for_put(%s, %s)", (sid, now_k - 5)) == 0,
          'no chunk in the past')
    w = connect(user=ROLE_W)
    expect_error(w, "SELECT stream_internal._add_chunk_for_put(%s, %s)", (sid, now_k), '42501',
                 'permission denied', 'a producer cannot call _add_chunk_for_put itself')
    w.close()


def test_churn(admin, sid):
    seed = int(os.environ.get('STREAM_TEST_SEED') or random.randrange(1 << 30))
    log(f'churn: seed {seed}')
    stop = time.monotonic() + 4
    errors = []
    put = [0]
    slow = []
    lock = threading.Lock()
    before = readable(admin)

    def guard(fn, name, rnd):
        def run():
            try:
                fn(rnd)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f'{name}: {e!r}')
        return run

    def producer(rnd):
        c = connect(user=ROLE_W)
        while time.monotonic() < stop:
            n = rnd.randint(1, 20)
            got = q1(c, "SELECT count(*) FROM stream.put_records(%s, array_fill('c'::text, ARRAY[%s]), "
                        "array_fill('\\x05'::bytea, ARRAY[%s])) WHERE error_code IS NULL", (STREAM, n, n))
            with lock:
                put[0] += got
        c.close()

    def reader(rnd, user=ROLE_R, dump=False):
        c = connect(user=user)
        c.autocommit = False
        while time.monotonic() < stop:
            if dump:
                q(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                q(c, f"LOCK TABLE stream_data.s{sid} IN ACCESS SHARE MODE")
            q(c, f"SELECT count(*) FROM stream_data.s{sid}")
            time.sleep(rnd.uniform(0.05, 0.6))
            c.rollback()
            time.sleep(rnd.uniform(0, 0.1))
        c.close()

    def maintainer(rnd):
        c = connect()
        q(c, 'SET client_min_messages = error')
        while time.monotonic() < stop:
            t = time.monotonic()
            q(c, "SELECT * FROM stream.run_maintenance()")
            if time.monotonic() - t > 2:
                with lock:
                    slow.append(time.monotonic() - t)
            if rnd.random() < 0.3:
                # a future chunk goes missing (never one a producer may write: those are this hour's and the next)
                k = hour_now(c) + 2 + rnd.randint(0, 1)
                try:
                    q(c, "SET lock_timeout = '200ms'")
                    q(c, f"DROP TABLE IF EXISTS stream_data.s{sid}_{k}")
                except psycopg2.errors.LockNotAvailable:
                    pass
                finally:
                    q(c, "RESET lock_timeout")
            time.sleep(rnd.uniform(0, 0.2))
        c.close()

    threads = [threading.Thread(target=guard(producer, f'producer {i}', random.Random(seed + i))) for i in range(3)]
    threads.append(threading.Thread(target=guard(reader, 'reader', random.Random(seed + 10))))
    threads.append(threading.Thread(target=guard(lambda r: reader(r, None, True), 'dump', random.Random(seed + 11))))
    threads.append(threading.Thread(target=guard(maintainer, 'maintainer', random.Random(seed + 12))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, f'no session failed (seed {seed}): {errors[:5]}')
    check(not slow, f'no maintenance call took over 2 s (seed {seed}): {slow}')
    after = readable(admin)
    check(after - before == put[0], f'every committed put is readable ({after - before} of {put[0]}, seed {seed})')
    log(f'churn: {put[0]} records put')


def main():
    admin = create_db(roles=(ROLE_R, ROLE_W), extension=True)
    q(admin, 'SET client_min_messages = warning')
    q(admin, f'CREATE ROLE {ROLE_R} LOGIN')
    q(admin, f'CREATE ROLE {ROLE_W} LOGIN')
    q(admin, "SELECT stream.create_stream(%s, 1)", (STREAM,))
    q(admin, "SELECT stream.grant_stream_access(%s, %s, 'read')", (STREAM, ROLE_R))
    q(admin, "SELECT stream.grant_stream_access(%s, %s, 'write')", (STREAM, ROLE_W))
    sid = q1(admin, "SELECT stream_id FROM stream.streams WHERE stream_name = %s", (STREAM,))
    run_subtests((('chunk_reader', test_chunk_reader, (admin, sid)),
                  ('dump_and_idle', test_dump_and_idle, (admin, sid)),
                  ('fallback_range', test_fallback_range, (admin, sid)),
                  ('churn', test_churn, (admin, sid))))
    admin.close()


main_wrapper(main, lambda: drop_db(roles=(ROLE_R, ROLE_W)))
