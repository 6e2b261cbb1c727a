#!/usr/bin/python3
"""Delivery streams: exactly once across crashes.

WARNING: this test kills the postmaster of the cluster described by the
environment (scripts/env.sh: STREAM_PGDATA / STREAM_PGPORT / STREAM_PGSOCK)
with SIGKILL, and once stops it with an immediate shutdown.  Run it against
a private cluster, e.g.
    STREAM_PGPORT=5482 STREAM_PGDATA=/tmp/dl/data STREAM_PGSOCK=/tmp/dl/sock \\
        bash scripts/cluster.sh start
    STREAM_PGPORT=5482 STREAM_PGDATA=/tmp/dl/data STREAM_PGSOCK=/tmp/dl/sock \\
        test/scripts/60_delivery_crash.py

Three delivery streams (JSON lines from a stream source, Parquet with zstd
from the same stream, JSON lines by direct put) deliver 1 MiB batches as
fast as they can while the server is killed at random moments, round after
round.  At the end every record must be in exactly one delivered file
(read by Python and DuckDB), no temporary file may be visible outside the
staging directory, and the manifests must add up.
"""
import json
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import KEEP_DB, ROOT, check, configure, connect, create_db, delivered_files, drop_db  # noqa: E402
from streamtest import crash, duckdb, finish, q, q1, start_cluster, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_delivery_crash'
configure(DB, statement_timeout='120s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_DELIVERY_CRASH_ROUNDS', '6'))
PER_ROUND = int(os.environ.get('STREAM_DELIVERY_CRASH_RECORDS', '12000'))
WORK = workdir('delivery_crash')
random.seed(int(os.environ.get('STREAM_DELIVERY_CRASH_SEED', str(int(time.time())))))


def setup(conn):
    q(conn, "CREATE TABLE public.crash_row (id bigint, pad text)")
    q(conn, "SELECT stream.create_stream('csrc', 2)")
    q(conn, "SELECT stream.create_delivery_stream('crash_json', source_stream_name => 'csrc', destination => %s, "
            "buffer_size_mb => 1, buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')",
      (os.path.join(WORK, 'json'),))
    q(conn, "SELECT stream.create_delivery_stream('crash_parquet', source_stream_name => 'csrc', destination => %s, "
            "format => 'parquet', schema => 'public.crash_row', compression => 'zstd', "
            "buffer_size_mb => 1, buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')",
      (os.path.join(WORK, 'parquet'),))
    q(conn, "SELECT stream.create_delivery_stream('crash_direct', destination => %s, compression => 'gzip', "
            "buffer_size_mb => 1, buffer_interval_seconds => 0)", (os.path.join(WORK, 'direct'),))


def put_round(conn, first, n):
    pad = 'p' * 150
    for lo in range(first, first + n, 500):
        hi = min(lo + 500, first + n)
        q(conn, "SELECT count(*) FROM stream.put_records('csrc', %s, %s::bytea[])",
          (['k%d' % i for i in range(lo, hi)],
           [json.dumps({'id': i, 'pad': pad}).encode() for i in range(lo, hi)]))
        q(conn, "SELECT count(*) FROM stream.put_delivery_record_batch('crash_direct', %s::bytea[])",
          ([json.dumps({'id': i, 'pad': pad}).encode() for i in range(lo, hi)],))


def read_ids(root):
    import gzip
    ids = []
    for p in delivered_files(root):
        data = open(p, 'rb').read()
        if p.endswith('.gz'):
            data = gzip.decompress(data)
        for line in data.decode().splitlines():
            ids.append(json.loads(line)['id'])
    return ids


try:
    conn = create_db(extension=True)
    setup(conn)
    total = 0
    pending_seen = 0
    for rnd in range(ROUNDS):
        put_round(conn, total, PER_ROUND)
        total += PER_ROUND
        conn.close()
        delay = random.uniform(0.05, 1.2)
        time.sleep(delay)
        how = 'immediate' if rnd == ROUNDS - 1 else 'kill'
        files_before = len(delivered_files(WORK))
        crash(how)
        conn = connect(DB, retries=20)
        pend, listed = q(conn, "SELECT count(*), count(files) FROM stream.delivery_pending")[0]
        pending_seen += pend
        say('round %d: %d records put, %s after %.2fs (%d files so far; pending at restart: %d batches, '
            '%d of them with their files written)'
            % (rnd + 1, total, 'SIGKILL of the postmaster' if how == 'kill' else 'immediate shutdown',
               delay, files_before, pend, listed))

    say('flushing')
    for name in ('crash_json', 'crash_parquet', 'crash_direct'):
        ok = wait_for(lambda: q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,)), 120, 'flush of ' + name)
        check(ok, 'flush %s' % name)
    check(q1(conn, "SELECT count(*) FROM stream.delivery_pending") == 0, 'no batch left pending')

    for name, sub in (('crash_json', 'json'), ('crash_direct', 'direct')):
        ids = read_ids(os.path.join(WORK, sub))
        dup = len(ids) - len(set(ids))
        missing = total - len(set(ids))
        check(dup == 0 and missing == 0 and set(ids) == set(range(total)),
              '%s: %d lines, %d duplicates, %d missing of %d' % (name, len(ids), dup, missing, total))
        say('%s: %d records in %d files, each exactly once' % (name, len(ids), len(delivered_files(os.path.join(WORK, sub)))))
    r = duckdb("SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi "
               "FROM read_parquet('%s/**/*.parquet')" % os.path.join(WORK, 'parquet'))[0]
    check(int(r['n']) == total and int(r['d']) == total and int(r['lo']) == 0 and int(r['hi']) == total - 1,
          'crash_parquet (DuckDB): %r, expected %d distinct ids' % (r, total))
    say('crash_parquet: DuckDB reads %s rows, %s distinct' % (r['n'], r['d']))
    stray = [p for p in delivered_files(WORK) if p.endswith('.tmp')]
    check(not stray, 'temporary files outside staging: %r' % stray[:5])
    for name in ('crash_json', 'crash_parquet', 'crash_direct'):
        s = q1(conn, "SELECT sum(records_delivered) FROM stream.delivery_manifest m JOIN stream.delivery_streams d "
                     "USING (delivery_stream_id) WHERE d.delivery_stream_name = %s", (name,))
        check(s == total, '%s: manifest counts %r records, expected %d' % (name, s, total))
        files = q1(conn, "SELECT count(*) FROM stream.delivery_manifest m, jsonb_array_elements(m.files) f, stream.delivery_streams d "
                         "WHERE d.delivery_stream_id = m.delivery_stream_id AND d.delivery_stream_name = %s", (name,))
        sub = {'crash_json': 'json', 'crash_parquet': 'parquet', 'crash_direct': 'direct'}[name]
        check(files == len(delivered_files(os.path.join(WORK, sub))),
              '%s: %d files in the manifest, %d on disk' % (name, files, len(delivered_files(os.path.join(WORK, sub)))))
    say('%d batches were pending at a restart and were finished by recovery' % pending_seen)
    conn.close()
finally:
    try:
        start_cluster()
    except Exception as e:      # noqa: BLE001
        print('warning: %s' % e)
    if not KEEP_DB:
        drop_db(on_error=warn)
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        print('kept database %s and files in %s' % (DB, WORK))

finish()
