#!/usr/bin/python3
"""Continuous queries (issue 13): records/s through a tumbling count/sum/avg
over 1,000 keys, computed incrementally by the worker, against re-running the
equivalent GROUP BY and against DuckDB over the same records, in one run.

    . scripts/env.sh; python3 bench/continuous_query.py      # on the cluster PGHOST/PGPORT name
    BENCH_CQ_RECORDS=200000 BENCH_CQ_WINDOWS=20 python3 bench/continuous_query.py

N JSON records {"k", "v", "ts"} (k one of 1,000 keys, v numeric, ts spread
over W one-minute windows, in order within a 10 s lag) go to a 2-shard
stream before anything runs.  Then, each timed from start to end:
  incremental  stream.create_continuous_query over the backlog (TRIM_HORIZON)
               until its watermark passes the last window (batch sizes 500
               and 5000); the state table is sampled meanwhile: its rows are
               the open (window, key) groups, bounded by open windows x keys;
  batch        one GROUP BY date_bin(...), k over every record of the stream
               table, decoding the JSON in SQL: what re-running the query
               costs per record if each window's records could be found
               without reading the others (arrival-time windows: contiguous
               sequence ranges);
  rerun        the same GROUP BY re-run for each window as it closes, each a
               scan of the retained records filtered to that window (event
               time has no index): what "re-run at window close" costs;
  duckdb       DuckDB's read_json + the same GROUP BY over an NDJSON file of
               the same records (one thread; best of 3, a node process's start subtracted).
Prints records/s and ratios, and checks the outputs agree.
"""
import json
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'test', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import q, q1  # noqa: E402

N = int(os.environ.get('BENCH_CQ_RECORDS', 200000))
W = int(os.environ.get('BENCH_CQ_WINDOWS', 20))
KEYS = 1000
DB = 'stream_bench_cq'
st.configure(DB, statement_timeout='3600s', client_min_messages='warning')
rng = random.Random(13)
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
QUERY = ("SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s, avg(v) AS a "
         "FROM stream.tumble('b', size => '1 minute', time_column => 'ts', watermark_lag => '10 seconds') "
         "AS t(k text, v numeric, ts timestamptz) GROUP BY k, window_start, window_end")
DECODED = ("SELECT j->>'k' AS k, (j->>'v')::numeric AS v, (j->>'ts')::timestamptz AS ts "
           "FROM (SELECT convert_from(data, 'UTF8')::jsonb AS j FROM {t}) r WHERE j->>'k' <> 'sentinel'")
GROUP = ("SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start, count(*) AS n, sum(v) AS s, avg(v) AS a "
         "FROM ({d}) x {w} GROUP BY 1, 2")


def records():
    span = W * 60.0
    out = []
    for i in range(N):
        t = BASE + timedelta(seconds=span * i / N - rng.uniform(0, 9.9))
        out.append(json.dumps({'k': f'key{rng.randrange(KEYS)}', 'v': rng.randint(0, 100000) / 100,
                               'ts': t.isoformat()}))
    return out


def put(conn, recs):
    keys = [r[0] for r in q(conn, "SELECT starting_hash_key::text FROM stream.shards ORDER BY shard_index")]
    for lo in range(0, len(recs), 500):
        chunk = recs[lo:lo + 500]
        q(conn, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[], %s)',
          ('b', ['pk'] * len(chunk), [r.encode() for r in chunk], [keys[(lo + i) % 2] for i in range(len(chunk))]))


def incremental(conn, name, batch):
    t0 = time.monotonic()
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => %s)',
      (name, QUERY, f'public.{name}', batch))
    state = q1(conn, 'SELECT state_table FROM stream.continuous_queries WHERE query_name = %s', (name,))
    end = BASE + timedelta(minutes=W + 1)
    peak = 0
    while True:
        wm = q1(conn, 'SELECT watermark FROM stream.continuous_queries WHERE query_name = %s', (name,))
        peak = max(peak, q1(conn, f'SELECT count(*) FROM {state}'))
        if wm is not None and wm >= end:
            break
        err = q1(conn, 'SELECT last_error FROM stream.continuous_query_status WHERE query_name = %s', (name,))
        if err:
            raise RuntimeError(err)
        time.sleep(0.05)
    return time.monotonic() - t0, peak


def main():
    conn = st.create_db(extension=True)
    q(conn, "SELECT stream.create_stream('b', 2)")
    recs = records()
    t0 = time.monotonic()
    put(conn, recs)
    put(conn, [json.dumps({'k': 'sentinel', 'v': 0, 'ts': (BASE + timedelta(days=1)).isoformat()})] * 2)
    put_s = time.monotonic() - t0
    table = q1(conn, "SELECT stream_internal._data_table(stream_id)::text FROM stream.streams WHERE stream_name = 'b'")
    res = {}

    for name, batch in (('inc_500', 500), ('inc_5000', 5000)):
        secs, peak = incremental(conn, name, batch)
        res[name] = (secs, peak)
        q(conn, 'SELECT stream.stop_continuous_query(%s)', (name,))

    t0 = time.monotonic()
    batch_rows = q(conn, GROUP.format(d=DECODED.format(t=table), w=''))
    res['batch'] = time.monotonic() - t0

    t0 = time.monotonic()
    rerun = 0
    for i in range(W + 1):
        ws = BASE + timedelta(minutes=i - 1)
        rerun += len(q(conn, GROUP.format(d=DECODED.format(t=table),
                                          w="WHERE ts >= %s AND ts < %s"), (ws, ws + timedelta(minutes=1))))
    res['rerun'] = time.monotonic() - t0

    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        f.write('\n'.join(recs) + '\n')
        path = f.name
    os.chmod(path, 0o644)
    def timed(sql):
        t0 = time.monotonic()
        rows = st.duckdb(sql)
        return time.monotonic() - t0, rows
    start = min(timed('SELECT 1')[0] for _ in range(3))
    runs = [timed(f"SELECT count(*) AS groups, sum(n) AS n FROM (SELECT k, time_bucket(INTERVAL '1 minute', ts) AS w, "
                  f"count(*) AS n, sum(v) AS s, avg(v) AS a FROM read_json('{path}', format = 'newline_delimited', "
                  "columns = {k: 'VARCHAR', v: 'DECIMAL(18,2)', ts: 'TIMESTAMPTZ'}) GROUP BY 1, 2)") for _ in range(3)]
    duck = runs[0][1]
    res['duckdb'] = max(min(r[0] for r in runs) - start, 1e-3)
    os.unlink(path)

    # the outputs agree
    for name in ('inc_500', 'inc_5000'):
        diff = q1(conn, f"SELECT count(*) FROM ((SELECT k, window_start, n, s, a FROM public.{name} EXCEPT "
                        f"{GROUP.format(d=DECODED.format(t=table), w='')}) UNION ALL "
                        f"({GROUP.format(d=DECODED.format(t=table), w='')} EXCEPT "
                        f"SELECT k, window_start, n, s, a FROM public.{name})) d")
        if diff:
            print(f'MISMATCH: {name} differs from the GROUP BY in {diff} rows')
    if int(duck[0]['n']) != N or int(duck[0]['groups']) != len(batch_rows) or rerun != len(batch_rows):
        print(f'MISMATCH: duckdb {duck}, batch {len(batch_rows)} groups, rerun {rerun}')

    cores = os.cpu_count()
    print(f'\n{N} records, {KEYS} keys, {W} one-minute windows, {len(batch_rows)} (window, key) groups; '
          f'{cores} CPUs; put took {put_s:.1f} s ({N / put_s:,.0f} records/s)\n')
    print('| computation | seconds | records/s | vs incremental (500) |')
    print('|---|---|---|---|')
    base = N / res['inc_500'][0]
    for name, secs in (('incremental, batch_size 500', res['inc_500'][0]),
                       ('incremental, batch_size 5000', res['inc_5000'][0]),
                       ('GROUP BY once over all records (batch)', res['batch']),
                       (f'GROUP BY re-run at each of {W + 1} window closes', res['rerun']),
                       ('DuckDB read_json + GROUP BY (1 thread)', res['duckdb'])):
        print(f'| {name} | {secs:.2f} | {N / secs:,.0f} | {N / secs / base:.2f} |')
    print(f'\nstate rows sampled at most: {res["inc_500"][1]} (batch 500), {res["inc_5000"][1]} (batch 5000); '
          f'keys x windows open at once is bounded by {KEYS} x (1 + lag/size + batch span)')
    conn.close()
    st.drop_db(on_error=st.warn)


main()
