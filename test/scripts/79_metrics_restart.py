#!/usr/bin/python3
"""Metrics counted in shared memory survive a clean restart, a crash loses
at most what was not flushed (never counts twice), and a full slot table
never stops a put.

1. Clean restarts: seeded random batches of puts and reads (sizes 0 B to
   TOAST, multibyte keys, several streams), some flushed before the restart
   and some not; after each `cluster.sh restart` (fast shutdown) and
   stream.flush_metrics() the views hold exactly the counts produced.
2. Crashes (SIGKILL of a backend: the postmaster resets shared memory):
   what was flushed stays, what was put after the last flush is lost or
   kept as a whole (one put_records call counts under one lock), never
   doubled.
3. stream.metrics_slots = 16 (a restart): puts to 40 streams all succeed;
   _meter_status() counts the unmetered puts and the worker logs a WARNING;
   the setting is restored.
"""
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_metrics_restart'
st.configure(DB, statement_timeout='120s', client_min_messages='warning')
SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rng = random.Random(SEED)
SIZES = [0, 1, 126, 127, 128, 2000, 8200, 60000]
KEYS = ['a', 'ключ', 'é', '鍵', 'k']


def restart(extra=None):
    r = subprocess.run(['bash', os.path.join(st.ROOT, 'scripts', 'cluster.sh'), 'restart'],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError('restart failed: %s %s' % (r.stdout, r.stderr))


def batch(n):
    keys, datas, size = [], [], 0
    for _ in range(n):
        k = rng.choice(KEYS) + str(rng.randrange(1000))
        d = os.urandom(rng.choice(SIZES)) if rng.random() < 0.5 else b'x' * rng.choice(SIZES)
        keys.append(k)
        datas.append(d)
        size += len(k.encode()) + len(d)
    return keys, datas, size


class Expected:
    def __init__(self):
        self.counts = {}

    def add(self, stream, key, n, size):
        c = self.counts.setdefault(stream, {'in_r': 0, 'in_b': 0, 'out_r': 0, 'out_b': 0})
        c[key + '_r'] += n
        c[key + '_b'] += size


def put(conn, exp, stream):
    keys, datas, size = batch(rng.randrange(1, 60))
    q(conn, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[])',
      (stream, keys, [bytes(d) for d in datas]))
    exp.add(stream, 'in', len(keys), size)


def read(conn, exp, stream):
    rows = q(conn, "SELECT octet_length(r.partition_key) + octet_length(r.data) "
                   "FROM stream.list_shards(%s) l, LATERAL stream.read_shard(%s, l.shard_id) r",
             (stream, stream))
    exp.add(stream, 'out', len(rows), sum(r[0] for r in rows))


def views(conn):
    check(q1(conn, 'SELECT stream.flush_metrics(60)') is True, 'flush_metrics returned true')
    got = {}
    for s, ir, ib, orr, ob in q(conn, 'SELECT stream_name, sum(incoming_records), sum(incoming_bytes), '
                                      'sum(outgoing_records), sum(outgoing_bytes) '
                                      'FROM stream.stream_metrics GROUP BY 1'):
        got[s] = {'in_r': ir, 'in_b': ib, 'out_r': orr, 'out_b': ob}
    return got


def clean_restarts(conn):
    exp = Expected()
    streams = ['r1', 'r2', 'r3']
    for i, s in enumerate(streams):
        q(conn, 'SELECT stream.create_stream(%s, %s)', (s, i + 1))
    q(conn, "SELECT stream.enable_enhanced_monitoring('r2', ARRAY['ALL'])")
    for rnd in range(4):
        for _ in range(rng.randrange(3, 8)):
            s = rng.choice(streams)
            (put if rng.random() < 0.7 else read)(conn, exp, s)
        if rng.random() < 0.5:
            q(conn, 'SELECT stream.flush_metrics(60)')   # some counts flushed before, some not
        for _ in range(rng.randrange(1, 5)):
            put(conn, exp, rng.choice(streams))
        conn.close()
        restart()
        conn = st.connect()
        got = views(conn)
        for s in streams:
            e = exp.counts.get(s, {'in_r': 0, 'in_b': 0, 'out_r': 0, 'out_b': 0})
            g = got.get(s, {'in_r': 0, 'in_b': 0, 'out_r': 0, 'out_b': 0})
            check(g == e, f'round {rnd}, stream {s}: after a clean restart the metrics are {g}, expected {e}')
        # the shard rows of r2 add up to its stream row
        shard = q(conn, "SELECT sum(incoming_records), sum(incoming_bytes) FROM stream.shard_metrics "
                        "WHERE stream_name = 'r2'")[0]
        e = exp.counts.get('r2', {'in_r': 0, 'in_b': 0})
        check((shard[0] or 0, shard[1] or 0) == (e['in_r'], e['in_b']),
              f'round {rnd}: shard rows of r2 {shard} add up to {e["in_r"]}, {e["in_b"]}')
        say(f'clean restart {rnd}: metrics exact')
    return conn


def crashes(conn):
    q(conn, "SELECT stream.create_stream('c1', 1)")
    flushed_r = flushed_b = 0
    for rnd in range(3):
        keys, datas, size = batch(rng.randrange(1, 50))
        q(conn, "SELECT count(*) FROM stream.put_records('c1', %s, %s::bytea[])", (keys, datas))
        check(q1(conn, 'SELECT stream.flush_metrics(60)') is True, 'flush')
        flushed_r += len(keys)
        flushed_b += size
        keys2, datas2, size2 = batch(rng.randrange(1, 50))
        q(conn, "SELECT count(*) FROM stream.put_records('c1', %s, %s::bytea[])", (keys2, datas2))
        conn.close()
        st.crash('backend')
        conn = st.wait_for(lambda: _try_connect(), 60, 'reconnect after crash')
        got = q(conn, 'SELECT stream.flush_metrics(60), '
                      "(SELECT sum(incoming_records) FROM stream.stream_metrics WHERE stream_name = 'c1'), "
                      "(SELECT sum(incoming_bytes) FROM stream.stream_metrics WHERE stream_name = 'c1')")[0]
        r, b = int(got[1] or 0), int(got[2] or 0)
        if (r, b) == (flushed_r + len(keys2), flushed_b + size2):
            flushed_r, flushed_b = r, b          # the worker flushed it before the crash
        check((r, b) == (flushed_r, flushed_b),
              f'crash {rnd}: {r} records / {b} bytes counted, expected {flushed_r} / {flushed_b} '
              f'(or with the unflushed put: {flushed_r + len(keys2)} / {flushed_b + size2})')
        say(f'crash {rnd}: flushed counts kept, none doubled')
    return conn


def _try_connect():
    try:
        return st.connect()
    except Exception:  # noqa: BLE001
        return None


def full_table(conn):
    admin = st.connect('postgres')
    q(admin, 'ALTER SYSTEM SET stream.metrics_slots = 16')
    admin.close()
    conn.close()
    restart()
    try:
        conn = st.connect()
        check(q1(conn, 'SHOW stream.metrics_slots') == '16', 'stream.metrics_slots is 16')
        log_start = os.path.getsize(os.environ['STREAM_PGLOG'])
        for i in range(40):
            q(conn, 'SELECT stream.create_stream(%s, 1)', ('f%d' % i,))
            n = q1(conn, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[]) WHERE error_code IS NULL',
                   ('f%d' % i, ['k'] * 10, [b'\x01'] * 10))
            check(n == 10, f'stream f{i}: all 10 records put with the slot table full ({n})')
        status = q(conn, 'SELECT slots, slots_used, unmetered FROM stream_internal._meter_status()')[0]
        check(status[0] == 16 and status[1] <= 16 and status[2] > 0,
              f'slot table: {status} (16 slots, some puts unmetered)')
        check(q1(conn, 'SELECT stream.flush_metrics(60)') is True, 'flush with a full table')

        def warned():
            with open(os.environ['STREAM_PGLOG'], errors='replace') as f:
                f.seek(log_start)
                return 'no metrics slot was free' in f.read()
        st.wait_for(warned, 90, 'the worker to log the unmetered puts')
        metered = q1(conn, "SELECT count(DISTINCT stream_name) FROM stream.stream_metrics WHERE stream_name LIKE 'f%'")
        check(0 < metered < 40, f'{metered} of 40 streams metered with 16 slots')
        say(f'full table: {status[2]} puts unmetered, {metered} streams metered, none failed')
    finally:
        admin = st.connect('postgres')
        q(admin, 'ALTER SYSTEM RESET stream.metrics_slots')
        admin.close()
        restart()
    return st.connect()


def main():
    say(f'seed {SEED}')
    conn = st.create_db(extension=True)
    conn = clean_restarts(conn)
    conn = crashes(conn)
    conn = full_table(conn)
    conn.close()


st.main_wrapper(main, lambda: st.drop_db(on_error=st.warn))
