#!/usr/bin/python3
"""Continuous queries: exactly once into tables across crashes.

The body of test/t/009_continuous_query_crash.pl, which makes a throw-away
node and runs this against it.  Tumbling, hopping and session windows on
event time (batch sizes 7 and 500) read a stream of two shards.  Each round
puts a seeded random number of records (event times within the watermark
lag, so none is late), puts more in transactions that roll back, and kills
the server at a random moment while the worker computes: SIGKILL of the
postmaster, immediate shutdown, or SIGKILL of a client backend.  The
destinations have a slow row trigger, so kills land inside units.  At the
end a sentinel per shard closes every window: each destination must equal
the plain-SQL reference over the committed records (so must the records a
fourth query puts into a stream) (test/lib/cqref.py), no
window twice, no rolled-back record counted, and the runtime shows no error.
"""
import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, main_wrapper, q, q1, warn, crash, start_cluster  # noqa: E402
from streamtest import require_tap_node  # noqa: E402
from streamtest import log as say  # noqa: E402
import cqref  # noqa: E402

require_tap_node()
DB = 'stream_cq_crash'
configure(DB, statement_timeout='120s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_CQ_CRASH_ROUNDS', '8'))
SEED = int(os.environ.get('STREAM_CQ_CRASH_SEED', str(int(time.time()))))
rng = random.Random(SEED)
BASE = datetime(2026, 1, 1, 10, 0, 0, tzinfo=timezone.utc)
QUERIES = [(k, bs) for k in ('tumble', 'hop', 'session') for bs in (7, 500)]


def name(kind, bs):
    return f'{kind}_{bs}'


def setup(conn):
    q(conn, "SELECT stream.create_stream('src', 2)")
    q(conn, "CREATE FUNCTION public.slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_catalog.pg_sleep(0.0005); RETURN NEW; END $$")
    for kind, bs in QUERIES:
        q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => %s)',
          (name(kind, bs), cqref.query_sql(cqref.window_fn(kind, 'src')), f'public.out_{name(kind, bs)}', bs))
        q(conn, f'CREATE TRIGGER slow BEFORE INSERT ON public.out_{name(kind, bs)} '
                'FOR EACH ROW EXECUTE FUNCTION public.slow_row()')
    # and into a stream: each window a record, exactly once
    q(conn, "SELECT stream.create_stream('out', 1)")
    q(conn, 'SELECT stream.create_continuous_query(%s, %s, %s, batch_size => 7)',
      ('tumble_stream', cqref.query_sql(cqref.window_fn('tumble', 'src')), 'stream:out'))


def records(n, t):
    out = []
    for _ in range(n):
        t += timedelta(milliseconds=rng.randint(0, 400))
        ts = t - timedelta(milliseconds=rng.randint(0, 9999))
        row = (rng.choice(['a', 'b', 'ключ', None] + [f'k{i}' for i in range(40)]),
               None if rng.random() < 0.1 else rng.randint(-1000, 1000) / 100, rng.randint(0, 100), ts)
        out.append((rng.randrange(2), json.dumps({'k': row[0], 'v': row[1], 'q': row[2], 'ts': ts.isoformat()}), row))
    return out, t


def main():
    conn = create_db(extension=True)
    setup(conn)
    keys = cqref.hash_keys(conn, 'src')
    committed = []
    t = BASE
    kills = {'kill': 0, 'immediate': 0, 'backend': 0}
    for rnd in range(ROUNDS):
        recs, t = records(rng.randint(300, 1500), t)
        cqref.put_all(conn, 'src', recs, keys)
        committed += [r[2] for r in recs]
        ghosts, t2 = records(rng.randint(50, 200), t)
        q(conn, 'BEGIN')
        cqref.put_all(conn, 'src', [(s, j.replace('"q": ', '"q": 1000 + ')) for s, j, _ in ghosts], keys)
        q(conn, 'ROLLBACK')
        conn.close()
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        how = rng.choice(('kill', 'kill', 'immediate', 'backend'))
        kills[how] += 1
        crash(how)
        conn = connect(DB, retries=30)
        say(f'round {rnd + 1}: {len(recs)} committed, {len(ghosts)} rolled back, {how} after {delay:.2f} s')

    cqref.load_reference_table(conn, 'ref', committed)
    end = BASE + timedelta(days=1)
    cqref.put_all(conn, 'src', cqref.sentinels(2, end), keys)
    names = [name(k, bs) for k, bs in QUERIES] + ['tumble_stream']
    cqref.wait_watermark(conn, names, end - timedelta(seconds=10), timeout=300)
    for kind, bs in QUERIES:
        n = cqref.compare(conn, name(kind, bs), f'public.out_{name(kind, bs)}', cqref.reference(kind, 'ref'))
        fin, late = q(conn, 'SELECT records_in, records_late FROM stream.continuous_query_status WHERE query_name = %s',
                      (name(kind, bs),))[0]
        check(fin == len(committed) + 2 and late == 0,
              f'{name(kind, bs)}: {fin} records in (expected {len(committed) + 2}), {late} late')
        say(f'{name(kind, bs)}: {n} rows equal the reference')
    q(conn, f"CREATE VIEW out_stream AS SELECT j->>'k' AS k, (j->>'window_start')::timestamptz AS window_start, "
            "(j->>'window_end')::timestamptz AS window_end, (j->>'n')::bigint AS n, (j->>'nv')::bigint AS nv, "
            "(j->>'s')::numeric AS s, (j->>'lo')::numeric AS lo, (j->>'hi')::numeric AS hi, (j->>'a')::numeric AS a, "
            "(j->>'sq')::bigint AS sq, j->>'mk' AS mk, (j->>'big')::bool AS big "
            "FROM (SELECT convert_from(data, 'UTF8')::jsonb AS j FROM stream.read_shard('out', 'shardId-000000000000', "
            "\"limit\" => 10000)) x")
    n = cqref.compare(conn, 'tumble_stream', 'out_stream', cqref.reference('tumble', 'ref'))
    say(f'tumble_stream: {n} records in the stream equal the reference')
    st = q(conn, "SELECT count(last_error) FROM stream.continuous_query_status")[0]
    check(st[0] == 0, f'no query shows an error: {st}')
    say(f'seed {SEED}: {ROUNDS} crashes ({kills}), {len(committed)} records')
    conn.close()


def cleanup():
    try:
        start_cluster()         # if a crash left it down
    except Exception as e:      # noqa: BLE001
        warn('%s' % e)
    drop_db(DB, on_error=warn)


main_wrapper(main, cleanup)
