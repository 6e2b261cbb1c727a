#!/usr/bin/python3
"""The consumer runtime: exactly once when the server dies at chosen points inside a unit.

The body of test/t/007_processor_crash_points.pl, which makes a throw-away
node and runs this against it, so the SIGKILLs of the postmaster, the stream
worker or a backend hit that node only (formerly
test/scripts/69_processor_crash_points.py).  It stays in Python for the
same reasons as test/t/delivery_crash.py.

delivery_crash and processor_crash_table kill at random moments; this
one stops a unit at a chosen point first, then kills, round after round:
  transform   the transform sleeps (owner code running, step 2 of a file
              batch, or inside the table's one transaction);
  file-list   the batch's temporary files are written and fsynced, and the
              worker waits to commit their names (a row lock the test holds
              on stream.delivery_pending);
  publish     the file list is committed: kill as soon as it shows (the
              worker is renaming files into place, or just done);
  checkpoint  effects made (files published, table rows inserted), the
              worker waits to advance the checkpoints (a row lock the test
              holds on stream.processor_checkpoints);
  random      a seeded random moment.
Kills rotate between SIGKILL of the postmaster, an immediate shutdown,
SIGKILL of the stream worker and SIGKILL of a client backend.  Before each
round, puts that roll back (a transaction, a savepoint).  Inputs are seeded:
sizes 0 B to 1 MiB with the 126/127-byte varlena and ~2 KiB / 8 KiB TOAST
boundaries, random bytes (mostly invalid UTF-8) and multibyte text, 8
partition keys; NULL data or keys are refused without a trace.  Two delivery
streams of a non-superuser owner read the stream through one transform that
describes each record as JSON (sequence number, key, length, md5) and fails
the records whose md5 begins with 0: files partitioned by key (Lambda
partition keys) and a table.  A reader keeps a shard iterator per shard
across the crashes.  At the end, after a flush: every committed record is
delivered or in the error output exactly once, never a rolled-back one, in
sequence order per partition key; the reader saw each exactly once, in order;
manifests, status views and the runtime's rows agree; no temporary file is
visible and no staging directory is left.

STREAM_PROCESSOR_POINTS_ROUNDS (default 10) and _SEED set the loop.
"""
import base64
import hashlib
import json
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, crash, delivered_files, drop_db  # noqa: E402
from streamtest import get_records_sql, main_wrapper, require_tap_node, q, q1, start_cluster, wait_for  # noqa: E402
from streamtest import warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402
import psycopg2  # noqa: E402

DB = 'stream_crash_points'
ROLES = ('cp_owner',)
configure(DB, statement_timeout='120s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_PROCESSOR_POINTS_ROUNDS', '10'))
SEED = int(os.environ.get('STREAM_PROCESSOR_POINTS_SEED', str(int(time.time()))))
rng = random.Random(SEED)
WORK = workdir('crash_points')
LAKE = os.path.join(WORK, 'lake')
KEYS = ['pk%d' % i for i in range(8)]
POINTS = ('transform', 'file-list', 'publish', 'checkpoint', 'random')
KILLS = ('kill', 'worker', 'immediate', 'backend')
SIZES = [0, 1, 2, 126, 127, 128, 129, 2000, 2031, 2032, 2033, 2047, 2048, 4096, 8000, 8159, 8160, 8191, 8192,
         8193, 16384, 65535, 65536]
MAX_DATA = 1024 * 1024


def gen_data(n):
    if n == 0:
        return b''
    if rng.random() < 0.5:
        return rng.randbytes(n)
    # multibyte text, cut to n bytes (the cut may split a character: invalid UTF-8 at the end)
    text = ''.join(rng.choice('aé€𝄞ж\n"\\') for _ in range(n // 2 + 1)).encode()
    return text[:n]


def gen_size():
    r = rng.random()
    if r < 0.6:
        return rng.choice(SIZES)
    if r < 0.97:
        return rng.randint(0, 9000)
    return rng.randint(0, MAX_DATA - 8)


def setup(conn):
    q(conn, "CREATE ROLE cp_owner LOGIN")
    q(conn, "GRANT pg_write_server_files TO cp_owner")
    q(conn, "CREATE SCHEMA cp_owner AUTHORIZATION cp_owner")
    q(conn, "GRANT EXECUTE ON FUNCTION stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, "
            "int, int, text, text, jsonb, regprocedure, text, text) TO cp_owner")
    q(conn, "SELECT stream.create_stream('cp_src', 2)")
    q(conn, "SELECT stream.grant_stream_access('cp_src', 'cp_owner', 'read')")
    oc = connect(user='cp_owner')
    q(oc, "CREATE TABLE cp_owner.knob (nap float8 NOT NULL)")
    q(oc, "INSERT INTO cp_owner.knob VALUES (0)")
    q(oc, """CREATE FUNCTION cp_owner.describe(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_sleep(nap) FROM cp_owner.knob;
                 RETURN QUERY
                 SELECT r.record_id,
                        CASE WHEN md5(r.data) LIKE '0%' THEN 'ProcessingFailed' ELSE 'Ok' END,
                        convert_to(json_build_object('seq', r.sequence_number, 'pk', r.partition_key,
                                                     'len', length(r.data), 'md5', md5(r.data))::text, 'UTF8'),
                        jsonb_build_object('pk', r.partition_key)
                   FROM unnest(records) r;
             END $$""")
    q(oc, "CREATE TABLE cp_owner.sink (ord bigserial, seq text, pk text, len int, md5 text)")
    tf = 'cp_owner.describe(stream.firehose_record[])'
    q(oc, "SELECT stream.create_delivery_stream('cp_files', source_stream_name => 'cp_src', destination => %s, "
          "prefix => 'pk=!{partitionKeyFromLambda:pk}/', error_output_prefix => 'err/!{firehose:error-output-type}/', "
          "transform_function => %s, buffer_size_mb => 1, buffer_interval_seconds => 0, "
          "starting_position => 'TRIM_HORIZON')", (LAKE, tf))
    q(oc, "SELECT stream.create_delivery_stream('cp_table', source_stream_name => 'cp_src', "
          "destination_table => 'cp_owner.sink', transform_function => %s, buffer_size_mb => 1, "
          "buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')", (tf,))
    oc.close()
    # NULLs are refused and leave nothing
    for sql, args in (("SELECT * FROM stream.put_record('cp_src', 'pk0', NULL)", None),
                      ("SELECT * FROM stream.put_record('cp_src', NULL, '\\x01')", None),
                      ("SELECT * FROM stream.put_records('cp_src', ARRAY['pk0', 'pk1'], ARRAY['\\x01', NULL]::bytea[])", None),
                      ("SELECT * FROM stream.put_records('cp_src', ARRAY['pk0', NULL], ARRAY['\\x01', '\\x02']::bytea[])", None)):
        try:
            q(conn, sql, args)
            check(False, 'a NULL was accepted: %s' % sql)
        except psycopg2.Error:
            pass


def put(conn, recs, committed):
    """recs: (pk, data); committed: dict seq -> (pk, len, md5) to fill, or None for puts that roll back."""
    i = 0
    while i < len(recs):
        chunk, size = [], 0
        while i < len(recs) and len(chunk) < 500 and (not chunk or size + len(recs[i][1]) < 4 * MAX_DATA):
            chunk.append(recs[i])
            size += len(recs[i][1]) + len(recs[i][0])
            i += 1
        rows = q(conn, "SELECT shard_id, sequence_number, error_code FROM stream.put_records('cp_src', %s, %s::bytea[])",
                 ([k for k, _ in chunk], [psycopg2.Binary(d) for _, d in chunk]))
        for (shard, seq, err), (k, d) in zip(rows, chunk):
            check(err is None, 'put failed: %s' % err)
            if committed is not None:
                committed[seq] = (k, len(d), hashlib.md5(d).hexdigest(), shard)
    return [r for r in recs]


def ghost_round(conn, n):
    recs = [('ghost', gen_data(rng.choice(SIZES))) for _ in range(n)]
    q(conn, "BEGIN")
    put(conn, recs[:n // 2], None)
    q(conn, "ROLLBACK")
    q(conn, "BEGIN")
    q(conn, "SAVEPOINT s")
    put(conn, recs[n // 2:], None)
    q(conn, "ROLLBACK TO SAVEPOINT s")
    q(conn, "COMMIT")


def worker_state(conn):
    return q(conn, "SELECT pid, wait_event_type, wait_event FROM pg_stat_activity WHERE backend_type = 'stream worker' "
                   "AND datname = current_database()")


def staged_tmp():
    st = os.path.join(LAKE, '.firehose-staging')
    n = 0
    for root, _, files in os.walk(st):
        n += sum(1 for f in files if f.endswith('.tmp'))
    return n


def reach(conn, point, holder):
    """Bring a unit to point; True if it is there (else the kill lands where the worker is)."""
    end = time.monotonic() + 10
    if point == 'transform':
        q(conn, "UPDATE cp_owner.knob SET nap = 0.5")
        return bool(wait_for(lambda: any(w[2] == 'PgSleep' for w in worker_state(conn)), 10, 'the transform to sleep'))
    if point == 'file-list':
        q(conn, "UPDATE cp_owner.knob SET nap = 0.3")
        while time.monotonic() < end:
            q(holder, "BEGIN")
            got = q(holder, "SELECT 1 FROM stream.delivery_pending p JOIN stream.delivery_streams d USING "
                            "(delivery_stream_id) WHERE d.delivery_stream_name = 'cp_files' AND p.files IS NULL "
                            "FOR UPDATE OF p")
            if got:
                ok = wait_for(lambda: staged_tmp() > 0 and any(w[1] == 'Lock' for w in worker_state(conn)), 6,
                              'the worker to wait with its files written')
                return bool(ok)
            q(holder, "ROLLBACK")
            time.sleep(0.02)
        return False
    if point == 'publish':
        q(conn, "UPDATE cp_owner.knob SET nap = 0")
        while time.monotonic() < end:
            if q1(conn, "SELECT count(*) FROM stream.delivery_pending WHERE files IS NOT NULL"):
                return True
            time.sleep(0.002)
        return False
    if point == 'checkpoint':
        q(conn, "UPDATE cp_owner.knob SET nap = 0")
        q(holder, "BEGIN")
        q(holder, "SELECT 1 FROM stream.processor_checkpoints FOR UPDATE")
        return bool(wait_for(lambda: any(w[1] == 'Lock' for w in worker_state(conn)), 10,
                             'the worker to wait at its checkpoints'))
    q(conn, "UPDATE cp_owner.knob SET nap = %s", (rng.choice((0, 0.05)),))
    time.sleep(rng.uniform(0, 1.0))
    return True


def kill(conn, how):
    pids = [w[0] for w in worker_state(conn)]
    conn.close()
    crash(how, child=pids[0] if pids else None)


def reader_catch_up(conn, its, seen):
    """Follow each shard's iterator to the end of what is there; its is kept across crashes."""
    sql = get_records_sql('r.sequence_number, r.partition_key, length(r.data), md5(r.data), '
                          'g.next_shard_iterator, g.millis_behind_latest')
    for shard in sorted(its):
        for _ in range(1000):
            rows = q(conn, sql, (its[shard], 10000))
            got = [r for r in rows if r[0] is not None]
            for r in got:
                seen.setdefault(shard, []).append((r[0], r[1], r[2], r[3]))
            its[shard] = rows[-1][4]
            if not got or rows[-1][5] == 0:
                break


def main():
    require_tap_node()
    conn = create_db(roles=ROLES, extension=True)
    setup(conn)
    its = {}
    for shard in ('shardId-000000000000', 'shardId-000000000001'):
        its[shard] = q1(conn, "SELECT stream.get_shard_iterator('cp_src', %s, 'TRIM_HORIZON')", (shard,))
    seen = {}
    committed = {}
    reached = {p: 0 for p in POINTS}
    tried = {p: 0 for p in POINTS}
    kills = {k: 0 for k in KILLS}
    expired = 0
    for rnd in range(ROUNDS):
        ghost_round(conn, rng.randint(5, 40))
        n = rng.randint(60, 160)
        recs = [(rng.choice(KEYS), gen_data(gen_size())) for _ in range(n)]
        put(conn, recs, committed)
        point = POINTS[rnd % len(POINTS)]
        how = KILLS[(rnd // len(POINTS) + rnd) % len(KILLS)]
        holder = connect()
        tried[point] += 1
        try:
            at = reach(conn, point, holder)
        except psycopg2.Error as e:
            at = False
            warn('round %d: %s' % (rnd + 1, e))
        reached[point] += bool(at)
        kills[how] += 1
        pend_before = q1(conn, "SELECT count(*) FROM stream.processor_pending")
        kill(conn, how)
        try:
            holder.close()
        except Exception:  # noqa: BLE001
            pass
        conn = connect(DB, retries=60)
        pend = q(conn, "SELECT count(*), count(d.files) FROM stream.processor_pending p "
                       "LEFT JOIN stream.delivery_pending d ON d.delivery_stream_id = p.processor_id")[0]
        try:
            reader_catch_up(conn, its, seen)
        except psycopg2.Error as e:
            expired += 1
            warn('round %d: the reader\'s iterator after the crash: %s' % (rnd + 1, str(e).strip()))
            conn = connect(DB, retries=60)
        say('round %d: %d records (%d bytes), stopped at %s%s, %s; pending before %d, after restart %d (%d with files)'
            % (rnd + 1, n, sum(len(d) for _, d in recs), point, '' if at else ' (not reached)', how, pend_before,
               pend[0], pend[1]))

    q(conn, "UPDATE cp_owner.knob SET nap = 0")
    for name in ('cp_files', 'cp_table'):
        ok = wait_for(lambda: q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,)), 180, 'flush of ' + name)
        check(ok, 'flush %s' % name)
    reader_catch_up(conn, its, seen)
    verify(conn, committed, seen)
    # the points a lock or a sleep holds the unit at are reached for sure; publish is a race (logged)
    check(all(reached[p] for p in ('transform', 'file-list', 'checkpoint') if tried[p]),
          'every held stop point was reached at least once: %r of %r' % (reached, tried))
    check(expired == 0, '%d times the reader\'s iterator was refused after a crash' % expired)
    say('seed %d: %d rounds, stops reached %r of %r, kills %r; %d records committed'
        % (SEED, ROUNDS, reached, tried, kills, len(committed)))
    conn.close()


def failed_by_transform(md5):
    return md5.startswith('0')


def verify(conn, committed, seen):
    seq_num = lambda s: int(s)  # noqa: E731
    # the reader: each committed record once, in order per shard, nothing rolled back
    got = {}
    for shard, rows in seen.items():
        seqs = [seq_num(r[0]) for r in rows]
        check(seqs == sorted(seqs) and len(seqs) == len(set(seqs)), 'reader: %s out of order or repeated' % shard)
        for s, k, ln, md in rows:
            got[s] = (k, ln, md, shard)
    check(got == committed, 'reader: %d records seen, %d committed, %d differ' %
          (len(got), len(committed), len(set(got.items()) ^ set(committed.items()))))

    # files: data lines by batch and file, error envelopes
    batch_of = {}
    for batch_no, files in q(conn, "SELECT batch_no, files FROM stream.delivery_batches "
                                   "WHERE delivery_stream_name = 'cp_files'"):
        for f in files:
            batch_of[os.path.join(LAKE, f['path']) if not f['path'].startswith('/') else f['path']] = batch_no
    on_disk = delivered_files(LAKE)
    check(set(on_disk) == set(batch_of), 'files on disk and in the manifest differ: %d on disk, %d listed, e.g. %r'
          % (len(on_disk), len(batch_of), sorted(set(on_disk) ^ set(batch_of))[:3]))
    data_lines, err_seqs = [], []
    for p in on_disk:
        lines = open(p, 'rb').read().decode().splitlines()
        if '/err/' in p:
            for ln in lines:
                env = json.loads(ln)
                err_seqs.append(env['sequenceNumber'])
                raw = base64.b64decode(env['rawData'])
                c = committed.get(env['sequenceNumber'])
                check(c is not None and hashlib.md5(raw).hexdigest() == c[2], 'error envelope of %s does not match'
                      % env['sequenceNumber'])
        else:
            for i, ln in enumerate(lines):
                data_lines.append((batch_of.get(p, -1), p, i, json.loads(ln)))
    exactly_once('cp_files', committed, [d['seq'] for _, _, _, d in data_lines], err_seqs)
    for _, p, _, d in data_lines:
        c = committed.get(d['seq'])
        check(c is not None and (d['pk'], d['len'], d['md5']) == c[:3] and ('pk=%s/' % d['pk']) in p,
              'cp_files: line %r does not describe its record (%r) or is in the wrong partition %s' % (d, c, p))
    in_order('cp_files', [(d['pk'], d['seq']) for _, _, _, d in sorted(data_lines, key=lambda x: (x[0], x[1], x[2]))])

    # the table
    rows = q(conn, "SELECT seq, pk, len, md5 FROM cp_owner.sink ORDER BY ord")
    errs = [e['sequenceNumber'] for (e,) in q(conn, "SELECT envelope FROM stream.delivery_failed_records "
                                                    "WHERE delivery_stream_name = 'cp_table'")]
    exactly_once('cp_table', committed, [r[0] for r in rows], errs)
    for s, k, ln, md in rows:
        c = committed.get(s)
        check(c is not None and (k, ln, md) == c[:3], 'cp_table: row %r does not describe its record %r' % ((s, k, ln, md), c))
    in_order('cp_table', [(r[1], r[0]) for r in rows])

    # bookkeeping
    for name, delivered in (('cp_files', len(data_lines)), ('cp_table', len(rows))):
        failed = len(err_seqs) if name == 'cp_files' else len(errs)
        s = q(conn, "SELECT coalesce(sum(records_delivered), 0), coalesce(sum(records_failed), 0), count(*) "
                    "FROM stream.delivery_batches WHERE delivery_stream_name = %s", (name,))[0]
        check((s[0], s[1]) == (delivered, failed), '%s: manifests count %s delivered, %s failed; found %d and %d'
              % (name, s[0], s[1], delivered, failed))
        st = q(conn, "SELECT records_delivered, records_failed FROM stream.delivery_stream_status "
                     "WHERE delivery_stream_name = %s", (name,))[0]
        check(tuple(st) == (delivered, failed), '%s: status counts %r' % (name, st))
        say('%s: %d delivered, %d failed by the transform, each exactly once, in %d batches'
            % (name, delivered, failed, s[2]))
    st = q(conn, "SELECT count(pending_unit), count(last_error), coalesce(max(failed_attempts), 0) FROM stream.processor_status")[0]
    check(st == (0, 0, 0), 'processor_status: units in flight, errors, failed attempts: %r' % (st,))
    gaps = q1(conn, "SELECT count(*) FROM stream.processor_status s WHERE s.units <> "
                    "(SELECT count(*) FROM stream.delivery_manifest m WHERE m.delivery_stream_id = s.processor_id)")
    check(gaps == 0, 'every unit begun is a delivered batch (%s processors differ)' % gaps)
    check(q1(conn, "SELECT count(*) FROM stream.delivery_pending") == 0, 'no file state left pending')
    stray = [p for p in delivered_files(LAKE) if p.endswith('.tmp')]
    check(not stray, 'temporary files outside staging: %r' % stray[:3])
    st = os.path.join(LAKE, '.firehose-staging')
    left = os.listdir(st) if os.path.isdir(st) else []
    check(not left, 'staging directories left behind: %r' % left[:3])


def exactly_once(name, committed, delivered, failed):
    want_ok = {s for s, c in committed.items() if not failed_by_transform(c[2])}
    want_failed = set(committed) - want_ok
    dup = len(delivered) - len(set(delivered)) + len(failed) - len(set(failed))
    check(dup == 0, '%s: %d duplicates' % (name, dup))
    check(set(delivered) == want_ok, '%s: %d delivered, %d expected, %d missing, %d unknown (rolled back?)'
          % (name, len(set(delivered)), len(want_ok), len(want_ok - set(delivered)), len(set(delivered) - set(committed))))
    check(set(failed) == want_failed, '%s: %d in the error output, %d expected' % (name, len(set(failed)), len(want_failed)))


def in_order(name, pairs):
    last = {}
    bad = 0
    for k, s in pairs:
        if k in last and int(s) <= last[k]:
            bad += 1
        last[k] = int(s)
    check(bad == 0, '%s: %d records out of sequence order within their partition key' % (name, bad))


def cleanup():
    try:
        start_cluster()         # if a crash left it down
    except Exception as e:      # noqa: BLE001
        warn('%s' % e)
    drop_db(roles=ROLES, on_error=warn)
    shutil.rmtree(WORK, ignore_errors=True)


main_wrapper(main, cleanup)
