#!/usr/bin/python3
"""Delivery streams: exactly once across crashes.

The body of test/t/005_delivery_crash.pl (formerly
test/scripts/60_delivery_crash.py), which makes a throw-away node and runs
this against it: the SIGKILLs of the postmaster and the immediate shutdown
hit that node only.  It stays in Python, run by the TAP test rather than
rewritten in Perl, because it reads the delivered files back with Python's
gzip and json and with DuckDB (test/lib/streamtest.py), never with the
extension's code; the TAP test owns the node.

Three delivery streams (JSON lines from a stream source, Parquet with zstd
from the same stream, JSON lines by direct put) deliver 1 MiB batches as
fast as they can while the server is killed at random moments, round after
round.  At the end every record must be in exactly one delivered file
(read by Python and DuckDB), no temporary file may be visible outside the
staging directory, and the manifests must add up.  Recovery removes exactly
the staging directories the worker made: entries planted in each staging
directory beforehand (at the names of the old predictable staging paths,
database-id-batch, and a look-alike holding <n>.tmp files) are untouched,
and nothing else is left.
"""
import json
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import KEEP_DB, ROOT, check, configure, connect, create_db, delivered_files, drop_db  # noqa: E402
from streamtest import crash, duckdb, finish, q, q1, require_tap_node, start_cluster, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

require_tap_node()
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


STAGING = '.firehose-staging'


def plant_foreign(conn):
    """Entries in the staging directories that the worker did not create, as
    the server's OS user (so only the worker's own care keeps them)."""
    dboid = q1(conn, "SELECT oid FROM pg_database WHERE datname = current_database()")
    uid, gid = os.stat(WORK).st_uid, os.stat(WORK).st_gid
    planted = {}
    for ds_id, name in q(conn, "SELECT delivery_stream_id, delivery_stream_name FROM stream.delivery_streams"):
        sub = {'crash_json': 'json', 'crash_parquet': 'parquet', 'crash_direct': 'direct'}[name]
        st = os.path.join(WORK, sub, STAGING)
        names = ['%d-%d-%d' % (dboid, ds_id, b) for b in range(0, 80, 3)]
        names.append('%d-%d-%d-%016x' % (dboid, ds_id, 1, random.getrandbits(64)))
        for n in names:
            d = os.path.join(st, n)
            os.mkdir(d)
            for f in ('0.tmp', 'keep'):
                with open(os.path.join(d, f), 'w') as fh:
                    fh.write('not the worker\'s: %s/%s\n' % (n, f))
                os.chown(os.path.join(d, f), uid, gid)
            os.chown(d, uid, gid)
            os.chmod(d, 0o700)
            planted[d] = sorted(os.listdir(d))
    return planted


def check_staging(planted):
    for d, files in sorted(planted.items()):
        check(os.path.isdir(d) and sorted(os.listdir(d)) == files,
              'planted %s: %r, expected %r' % (d, sorted(os.listdir(d)) if os.path.isdir(d) else None, files))
    for sub in ('json', 'parquet', 'direct'):
        st = os.path.join(WORK, sub, STAGING)
        left = sorted(set(os.path.join(st, n) for n in os.listdir(st)) - set(planted))
        check(not left, 'staging directories left behind in %s: %r' % (sub, left[:5]))


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
    planted = plant_foreign(conn)
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
        pend, listed = q(conn, "SELECT count(*), count(d.files) FROM stream.processor_pending p "
                           "LEFT JOIN stream.delivery_pending d ON d.delivery_stream_id = p.processor_id")[0]
        pending_seen += pend
        say('round %d: %d records put, %s after %.2fs (%d files so far; pending at restart: %d batches, '
            '%d of them with their files written)'
            % (rnd + 1, total, 'SIGKILL of the postmaster' if how == 'kill' else 'immediate shutdown',
               delay, files_before, pend, listed))

    say('flushing')
    for name in ('crash_json', 'crash_parquet', 'crash_direct'):
        ok = wait_for(lambda: q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,)), 120, 'flush of ' + name)
        check(ok, 'flush %s' % name)
    check(q1(conn, "SELECT count(*) FROM stream.processor_pending") == 0, 'no batch left pending')
    check(q1(conn, "SELECT count(*) FROM stream.delivery_pending") == 0, 'no file state left pending')

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
    check_staging(planted)
    say('%d batches were pending at a restart and were finished by recovery; the staging directories hold '
        'only what was planted in them (%d entries)' % (pending_seen, len(planted)))
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
