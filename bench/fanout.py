#!/usr/bin/python3
"""Benchmark of issue 4: enhanced fan-out latency and consumer-application throughput.

    source scripts/env.sh && bench/fanout.py        # the server PGHOST/PGPORT point at
    bench/fanout.py                                 # default: the checkout's private cluster

A benchmark, not a test: it fails only when something errors out.  It drops and
recreates the database `stream_bench_fanout` and prints a Markdown table, also
written to bench/results/fanout.md.

1. Fan-out latency: a 4-shard stream, one producer process per shard putting
   records at a paced rate (BEGIN; put_record; COMMIT, total 100 and 1,000
   records/s), one subscriber process per shard following its continuation
   sequence number with subscribe_to_shard.  Latency of a record = the moment its
   subscriber holds it minus the moment its producer sent COMMIT (both
   CLOCK_MONOTONIC, same machine).  The first second is warm-up.  Also shown:
   the same minus the moment COMMIT returned to the producer.
2. Drain: a 12-shard stream loaded with FANOUT_DRAIN_RECORDS records (100-byte
   payloads), read from TRIM_HORIZON to the end by (a) 3 examples/kcl_worker
   processes of one application (leases balanced 4/4/4 before they start, so
   that the measurement is not about how fast leases spread), (b) 1 kcl_worker,
   (c) one plain get_records loop over all shards (bench/plain_drain.c, same
   columns fetched, no leases or checkpoints).  records/s = records / time from
   start until every shard is read (for the application: checkpointed) to its
   last record.

Environment: FANOUT_SECONDS (10, per rate), FANOUT_RATES ("100,1000"),
FANOUT_DRAIN_RECORDS (200000), FANOUT_LIMIT (10000, records per get_records).
"""

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = 'stream_bench_fanout'
SECONDS = float(os.environ.get('FANOUT_SECONDS', '10'))
RATES = [int(r) for r in os.environ.get('FANOUT_RATES', '100,1000').split(',')]
DRAIN_RECORDS = int(os.environ.get('FANOUT_DRAIN_RECORDS', '200000'))
LIMIT = int(os.environ.get('FANOUT_LIMIT', '10000'))
LAT_SHARDS = 4
DRAIN_SHARDS = 12
WARMUP = 1.0

if not os.environ.get('PGHOST'):
    os.environ['PGHOST'] = os.path.join(ROOT, '.pgsock')
    os.environ.setdefault('PGPORT', '5499')
os.environ.setdefault('PGUSER', 'postgres')


def log(msg):
    print(f'[fanout] {msg}', file=sys.stderr, flush=True)


def connect(dbname=DB):
    conn = psycopg2.connect(dbname=dbname)
    conn.autocommit = True
    return conn


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def pct(values, p):
    v = sorted(values)
    if not v:
        return float('nan')
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# ---------------------------------------------------------------- latency

def producer(stream, hash_key, rate, t_start, t_end, out):
    conn = psycopg2.connect(dbname=DB)
    cur = conn.cursor()
    cur.execute("PREPARE put(text, bytea, text) AS "
                "SELECT sequence_number FROM stream.put_record($1, 'pk', $2, $3)")
    conn.commit()
    sent = {}
    n = 0
    interval = 1.0 / rate
    while True:
        due = t_start + n * interval
        now = time.monotonic()
        if due >= t_end:
            break
        if due > now:
            time.sleep(due - now)
        cur.execute('EXECUTE put(%s, %s, %s)', (stream, psycopg2.Binary(b'x' * 100), hash_key))
        seq = cur.fetchone()[0]
        t_commit = time.monotonic()
        conn.commit()
        sent[seq] = (t_commit, time.monotonic())
        n += 1
    conn.close()
    out.put(('sent', sent))


def subscriber(stream, shard, start_seq, t_end, out):
    conn = connect()
    cur = conn.cursor()
    cur.execute("PREPARE sub(text, text, text) AS "
                "SELECT (SELECT array_agg(r.sequence_number) FROM unnest(s.records) r), s.continuation_sequence_number "
                "FROM stream.subscribe_to_shard($1, 'bench', $2, 'AFTER_SEQUENCE_NUMBER', $3, '1 second') s")
    got = {}
    cont = start_seq
    calls = 0
    while time.monotonic() < t_end + 2.0:
        cur.execute('EXECUTE sub(%s, %s, %s)', (stream, shard, cont))
        recs, cont = cur.fetchone()
        t = time.monotonic()
        calls += 1
        for seq in recs or ():
            got[seq] = t
    conn.close()
    out.put(('got', got, calls))


def latency_run(admin, rate):
    stream = f'lat{rate}'
    q(admin, 'SELECT stream.create_stream(%s, %s)', (stream, LAT_SHARDS))
    q(admin, "SELECT stream.register_stream_consumer(%s, 'bench')", (stream,))
    shards = q(admin, 'SELECT shard_id, starting_hash_key::text FROM stream.list_shards(%s) ORDER BY 1', (stream,))
    starts = {}
    for sh, _ in shards:
        starts[sh] = q(admin, "SELECT continuation_sequence_number FROM stream.subscribe_to_shard(%s, 'bench', %s, "
                              "'LATEST', wait_timeout => '0 s')", (stream, sh))[0][0]
    ctx = mp.get_context('spawn')     # children must not share the parent's connections
    out = ctx.Queue()
    t_start = time.monotonic() + 1.0
    t_end = t_start + WARMUP + SECONDS
    procs = [ctx.Process(target=subscriber, args=(stream, sh, starts[sh], t_end, out)) for sh, _ in shards]
    procs += [ctx.Process(target=producer, args=(stream, hk, rate / LAT_SHARDS, t_start, t_end, out)) for _, hk in shards]
    for p in procs:
        p.start()
    sent, got, calls = {}, {}, 0
    for _ in procs:
        msg = out.get(timeout=SECONDS + 60)
        if msg[0] == 'sent':
            sent.update(msg[1])
        else:
            got.update(msg[1])
            calls += msg[2]
    for p in procs:
        p.join()
    lat, lat_ack = [], []
    missing = 0
    for seq, (t_commit, t_ack) in sent.items():
        if seq not in got:
            missing += 1
            continue
        if t_commit < t_start + WARMUP:
            continue
        lat.append((got[seq] - t_commit) * 1000)
        lat_ack.append((got[seq] - t_ack) * 1000)
    achieved = len([1 for t, _ in sent.values() if t >= t_start + WARMUP]) / SECONDS
    return {
        'rate': rate, 'achieved': achieved, 'n': len(lat), 'missing': missing, 'calls': calls,
        'p50': pct(lat, 50), 'p99': pct(lat, 99), 'max': max(lat) if lat else float('nan'),
        'p50_ack': pct(lat_ack, 50), 'p99_ack': pct(lat_ack, 99),
    }


# ---------------------------------------------------------------- drain

def build(tmp):
    inc = subprocess.run(['pg_config', '--includedir'], capture_output=True, text=True, check=True).stdout.strip()
    exes = {}
    for name, src in (('kcl_worker', 'examples/kcl_worker.c'), ('plain_drain', 'bench/plain_drain.c')):
        exe = os.path.join(tmp, name)
        subprocess.run(['cc', '-O2', '-Wall', '-Wextra', '-o', exe, os.path.join(ROOT, src), f'-I{inc}', '-lpq'], check=True)
        exes[name] = exe
    return exes


def load_drain(admin):
    q(admin, 'SELECT stream.create_stream(%s, %s)', ('drain', DRAIN_SHARDS))
    t = time.monotonic()
    left = DRAIN_RECORDS
    while left > 0:
        k = min(500, left)
        q(admin, "SELECT count(*) FROM stream.put_records('drain', "
                 "ARRAY(SELECT 'pk-' || (random() * 1e9)::bigint FROM generate_series(1, %s)), "
                 "ARRAY(SELECT convert_to(left(repeat(md5(g::text), 4), 100), 'UTF8') FROM generate_series(1, %s) g))",
          (k, k))
        left -= k
    log(f'drain: loaded {DRAIN_RECORDS} records in {time.monotonic() - t:.1f} s')


def last_per_shard(admin):
    sid = q(admin, "SELECT stream_id FROM stream.streams WHERE stream_name = 'drain'")[0][0]
    rows = q(admin, f'SELECT shard_id, max(seq) FROM stream_data.s{sid} GROUP BY 1')
    return {f'shardId-{sh:012d}': q(admin, 'SELECT stream_internal._sequence_text(%s, %s, %s)', (sid, sh, seq))[0][0]
            for sh, seq in rows}


def plain_drain(exes):
    out = subprocess.run([exes['plain_drain'], f'dbname={DB}', 'drain', str(LIMIT)],
                         capture_output=True, text=True, check=True).stdout.split()
    n, secs = int(out[0]), float(out[1])
    return n, secs


def app_drain(admin, exes, nworkers, run):
    app = f'drain_{nworkers}w_{run}'
    q(admin, "SELECT stream.register_application(%s, 'drain')", (app,))
    names = [f'{app}-{i}' for i in range(1, nworkers + 1)]
    for _ in range(20):      # balance the leases first (the workers renew them when they start)
        for w in names:
            q(admin, "SELECT count(*) FROM stream.acquire_leases(%s, %s, '30 s')", (app, w))
        counts = q(admin, 'SELECT count(*) FROM stream.leases WHERE application_name = %s GROUP BY lease_owner', (app,))
        if max(c for c, in counts) - min(c for c, in counts) <= 1 and len(counts) == nworkers:
            break
    last = LAST
    tmp_err = [tempfile.TemporaryFile(mode='w+') for _ in names]
    t0 = time.monotonic()
    procs = [subprocess.Popen([exes['kcl_worker'], '-d', f'dbname={DB}', '-a', app, '-w', w, '-l', '30',
                               '-n', str(LIMIT), '-i', '20', '-t', '300'], stderr=err, stdout=subprocess.DEVNULL)
             for w, err in zip(names, tmp_err)]
    poll = connect()
    done = False
    while time.monotonic() - t0 < 300:
        cps = dict(q(poll, 'SELECT stream_internal._shard_id(shard_index), checkpoint FROM stream.leases WHERE application_name = %s', (app,)))
        if all(cps.get(sh) == seq for sh, seq in last.items()):
            done = True
            break
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.005)
    secs = time.monotonic() - t0
    poll.close()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    processed = 0
    for p, err in zip(procs, tmp_err):
        p.wait(timeout=30)
        err.seek(0)
        for line in err:
            if 'stopped:' in line:
                processed += int(line.split('stopped:')[1].split()[0])
    if not done:
        raise RuntimeError(f'{nworkers} kcl_worker(s) did not drain the stream')
    return processed, secs


def main():
    admin0 = connect('postgres')
    q(admin0, 'SET client_min_messages = warning')
    q(admin0, f'DROP DATABASE IF EXISTS {DB} WITH (FORCE)')
    q(admin0, f'CREATE DATABASE {DB}')
    admin = connect()
    q(admin, 'CREATE EXTENSION stream')
    settings = dict(q(admin, "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'shared_buffers', 'fsync')"))
    tmp = tempfile.mkdtemp(prefix='bench_fanout.')
    load = os.getloadavg()[0]
    try:
        lat = []
        for rate in RATES:
            log(f'latency: {rate} records/s for {SECONDS:.0f} s')
            r = latency_run(admin, rate)
            log(f'latency: {r}')
            lat.append(r)

        exes = build(tmp)
        load_drain(admin)
        global LAST
        LAST = last_per_shard(admin)
        plain_drain(exes)                    # warm-up: bring the stream into the cache
        res = {}
        for run in (1, 2, 3):
            for name, fn in (('plain', lambda: plain_drain(exes)),
                             ('app3', lambda: app_drain(admin, exes, 3, run)),
                             ('app1', lambda: app_drain(admin, exes, 1, run))):
                n, secs = fn()
                log(f'drain run {run}: {name}: {n} records in {secs:.2f} s = {n / secs:,.0f} records/s')
                if n < DRAIN_RECORDS:
                    raise RuntimeError(f'{name} read only {n} of {DRAIN_RECORDS} records')
                res.setdefault(name, []).append(DRAIN_RECORDS / secs)
    finally:
        admin.close()
        q(admin0, f'DROP DATABASE IF EXISTS {DB} WITH (FORCE)')
        admin0.close()
        shutil.rmtree(tmp, ignore_errors=True)

    lines = ['# Fan-out and consumer-application benchmark (bench/fanout.py)', '',
             f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}; {os.cpu_count()} CPUs; '
             f'synchronous_commit = {settings.get("synchronous_commit")}, fsync = {settings.get("fsync")}, '
             f'shared_buffers = {int(settings.get("shared_buffers", 0)) * 8 // 1024} MB; '
             f'load average {load:.2f} at the start (other work on the machine makes the figures noisy)', '',
             '## End-to-end latency: COMMIT of a put_record to a subscribed consumer holding the record', '',
             f'{LAT_SHARDS} shards, one producer and one subscriber (subscribe_to_shard following continuation '
             f'numbers) per shard, {SECONDS:.0f} s per rate after 1 s warm-up.', '',
             '| rate (records/s) | achieved | records | p50 | p99 | max | target | p50 / p99 after COMMIT returned | subscribe calls |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in lat:
        ok = 'met' if r['p50'] <= 5 and r['p99'] <= 25 else 'MISSED'
        lines.append(f"| {r['rate']:,} | {r['achieved']:,.0f} | {r['n']:,}{' (' + str(r['missing']) + ' missing)' if r['missing'] else ''} "
                     f"| {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['max']:.2f} ms | p50 ≤ 5 ms, p99 ≤ 25 ms: {ok} "
                     f"| {r['p50_ack']:.2f} / {r['p99_ack']:.2f} ms | {r['calls']:,} |")
    best = {k: max(v) for k, v in res.items()}
    lines += ['', f'## Draining a {DRAIN_SHARDS}-shard stream of {DRAIN_RECORDS:,} records (100-byte payloads), '
                  f'get_records limit {LIMIT:,}', '',
              '| reader | records/s (best of 3) | runs | vs plain loop |', '|---|---|---|---|']
    for key, label in (('app3', '3 × examples/kcl_worker (one application, leases + a checkpoint per batch)'),
                       ('app1', '1 × examples/kcl_worker'),
                       ('plain', '1 plain get_records loop over all shards (bench/plain_drain.c)')):
        lines.append(f"| {label} | {best[key]:,.0f} | {', '.join(f'{v:,.0f}' for v in res[key])} "
                     f"| {best[key] / best['plain']:.2f}× |")
    text = '\n'.join(lines) + '\n'
    print(text)
    os.makedirs(os.path.join(ROOT, 'bench', 'results'), exist_ok=True)
    with open(os.path.join(ROOT, 'bench', 'results', 'fanout.md'), 'w') as f:
        f.write(text)
    return 0


LAST = {}

if __name__ == '__main__':
    sys.exit(main())
