#!/usr/bin/python3
"""Delivery streams: symbolic links planted in a destination are never followed.

The attacker is anyone who may write the destination directory (here: a
directory open to every OS user; the test process, as root, plays the
attacker and only does what such a user can do: create, rename and remove
entries of the destination itself and of the directories it created there).
Seeded random rounds (STREAM_TEST_SEED to repeat a run) plant, before a
batch or between two batches:

* a symbolic link in place of the staging directory, or a directory of the
  attacker's in its place holding links at the staging paths the old code
  used (database-id-batch);
* links at partition prefix directories (the first level, or the second
  level inside a directory of the attacker's), also swapped in for a
  directory the worker had created (renamed away);
* links at the final object paths of a batch whose files are written but
  not yet published (names read from stream.delivery_pending).

The links point into a decoy tree owned by the server's OS user.  After every
round: the decoy tree and everything else outside the destination are
unchanged (checksums), each delivery either published its files into real
directories (no symbolic link on the path) or failed with a recorded error
naming a path in the destination.  At the end, once the planted links are
gone, every record is delivered exactly once (JSON read by Python, Parquet
by DuckDB), nothing is pending and the staging directory is empty.
"""
import base64
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import KEEP_DB, check, configure, create_db, drop_db, duckdb, fail, finish, q, q1, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_delivery_links'
SEED = int(os.environ.get('STREAM_TEST_SEED', str(int(time.time()))))
ROUNDS = int(os.environ.get('STREAM_DELIVERY_LINK_ROUNDS', '40'))
rnd = random.Random(SEED)
configure(DB, statement_timeout='120s', client_min_messages='warning')
STAGING = '.firehose-staging'
STREAMS = ('lnk_json', 'lnk_gzip', 'lnk_parquet')
KS = ('a', 'b', 'c')
JS = ('x', 'y')

WORK = workdir('delivery_links')
DEST = os.path.join(WORK, 'dest')
DECOY = os.path.join(WORK, 'decoy')
PG_UID = os.stat(WORK).st_uid
PG_GID = os.stat(WORK).st_gid


def chown_pg(path):
    if os.getuid() == 0:
        os.lchown(path, PG_UID, PG_GID)


def make_decoy():
    """Directories and files the server's OS user could change: nothing may."""
    for d in ('t0', 't1', 't2', 'st', os.path.join('t1', 'deep'), 'empty'):
        os.makedirs(os.path.join(DECOY, d), exist_ok=True)
    for d in ('t0', 't1', 't2', os.path.join('t1', 'deep')):
        for i in range(3):
            with open(os.path.join(DECOY, d, 'keep-%d.txt' % i), 'w') as f:
                f.write('decoy %s %d\n' % (d, i))
    for dirpath, dirnames, filenames in os.walk(DECOY):
        chown_pg(dirpath)
        os.chmod(dirpath, 0o755)
        for n in filenames:
            chown_pg(os.path.join(dirpath, n))
            os.chmod(os.path.join(dirpath, n), 0o644)


def snapshot():
    """Everything below WORK except the destination: names, types, modes, contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(WORK, followlinks=False):
        if dirpath == WORK:
            dirnames[:] = [d for d in dirnames if os.path.join(WORK, d) != DEST]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ('link', os.readlink(p))
            elif os.path.isdir(p):
                out[p] = ('dir', st.st_mode, st.st_uid)
            else:
                with open(p, 'rb') as f:
                    out[p] = ('file', st.st_mode, st.st_uid, hashlib.sha256(f.read()).hexdigest())
    return out


def link_target():
    return rnd.choice([os.path.join(DECOY, d) for d in ('t0', 't1', 't2', 'empty', os.path.join('t1', 'deep'))] +
                      [os.path.join(DECOY, 't0', 'keep-0.txt'), WORK, DECOY])


def attacker_owned(path):
    return os.lstat(path).st_uid != PG_UID


def attacker_dir(path):
    """A directory of the attacker's, open to everyone (so deliveries into it can succeed)."""
    os.mkdir(path)
    os.chmod(path, 0o777)


moved = [0]


def move_away(path):
    """The attacker renames an entry of a directory it may write (kept: delivered files stay in DEST)."""
    moved[0] += 1
    os.rename(path, '%s.moved-%d' % (path, moved[0]))


def plant_link(path, target=None):
    """A link at path, replacing what is there (renamed away), if the attacker may write the parent."""
    parent = os.path.dirname(path)
    if parent != DEST and not attacker_owned(parent):
        return False
    if os.path.lexists(path):
        move_away(path)
    os.symlink(target or link_target(), path)
    return True


def plant_staging_link(ctx):
    p = os.path.join(DEST, STAGING)
    # the decoy holds real directories at the names the old code used
    for name in predicted_staging_names(ctx):
        d = os.path.join(DECOY, 'st', name)
        if not os.path.isdir(d):
            os.makedirs(d)      # (the old code removed what it found there)
            with open(os.path.join(d, '0.tmp'), 'w') as f:
                f.write('decoy staging\n')
            chown_pg(d)
            chown_pg(os.path.join(d, '0.tmp'))
    if os.path.lexists(p):
        move_away(p)
    os.symlink(os.path.join(DECOY, 'st'), p)
    return 'staging directory -> decoy'


def plant_staging_foreign(ctx):
    p = os.path.join(DEST, STAGING)
    if os.path.lexists(p):
        move_away(p)
    attacker_dir(p)
    for name in predicted_staging_names(ctx):
        os.symlink(link_target(), os.path.join(p, name))
    return "attacker's staging directory with links at the predictable staging paths"


def plant_prefix_top(ctx):
    k = rnd.choice(KS)
    plant_link(os.path.join(DEST, 'p=' + k))
    return 'p=%s -> decoy' % k


def plant_prefix_inner(ctx):
    k, j = rnd.choice(KS), rnd.choice(JS)
    top = os.path.join(DEST, 'p=' + k)
    if os.path.islink(top) or (os.path.lexists(top) and not attacker_owned(top)):
        move_away(top)
    if not os.path.lexists(top):
        attacker_dir(top)
    plant_link(os.path.join(top, 'q=' + j))
    return 'p=%s (attacker) / q=%s -> decoy' % (k, j)


def plant_error_prefix(ctx):
    plant_link(os.path.join(DEST, 'err'))
    return 'err -> decoy'


def plant_swap(ctx):
    """A directory the worker created is renamed away and a link takes its place."""
    cands = []
    for dirpath, dirnames, filenames in os.walk(DEST, followlinks=False):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if '.moved-' in p or STAGING in p:
                continue
            if not attacker_owned(p) and (dirpath == DEST or attacker_owned(dirpath)):
                cands.append(p)
    if not cands:
        return plant_prefix_top(ctx)
    p = rnd.choice(sorted(cands))
    plant_link(p)
    return 'swapped %s for a link' % os.path.relpath(p, DEST)


PLANTS = (plant_staging_link, plant_staging_foreign, plant_prefix_top, plant_prefix_inner,
          plant_error_prefix, plant_swap)


def predicted_staging_names(ctx):
    """The staging paths the old code used: <database oid>-<id>-<batch number>."""
    names = []
    for ds_id, next_batch in q(ctx['conn'], "SELECT processor_id, next_unit_no FROM stream.processor_progress"):
        for b in range(next_batch - 1, next_batch + 3):
            names.append('%d-%d-%d' % (ctx['dboid'], ds_id, b))
    return names


def plant_final_links(ctx):
    """For batches written but not published: links at their final object paths."""
    n = 0
    for (files,) in q(ctx['conn'], "SELECT files FROM stream.delivery_pending WHERE files IS NOT NULL"):
        for f in files:
            rel = f['path']
            parts = rel.split('/')
            cur = DEST
            ok = True
            for comp in parts[:-1]:
                nxt = os.path.join(cur, comp)
                if os.path.islink(nxt) or (os.path.lexists(nxt) and not os.path.isdir(nxt)):
                    if cur != DEST and not attacker_owned(cur):
                        ok = False
                        break
                    move_away(nxt)
                if not os.path.lexists(nxt):
                    if cur != DEST and not attacker_owned(cur):
                        ok = False
                        break
                    attacker_dir(nxt)
                cur = nxt
            if ok and plant_link(os.path.join(DEST, rel)):
                n += 1
    return n


def remove_plants():
    """The planted links and the attacker's staging directory go (its other directories stay)."""
    for dirpath, dirnames, filenames in os.walk(DEST, followlinks=False):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                os.unlink(p)
    st = os.path.join(DEST, STAGING)
    if os.path.lexists(st) and attacker_owned(st):
        shutil.rmtree(st)


def path_is_real(rel):
    """No symbolic link on DEST/rel, which is a regular file of the server's user."""
    cur = DEST
    for comp in rel.split('/'):
        cur = os.path.join(cur, comp)
        if os.path.islink(cur):
            return False
    return os.path.isfile(cur) and os.lstat(cur).st_uid == PG_UID


def put_records(ctx, n):
    recs = []
    for _ in range(n):
        i = ctx['next_id']
        ctx['next_id'] += 1
        rec = {'id': i, 'j': rnd.choice(JS), 'pad': 'r%d' % i}
        if rnd.random() < 0.9:
            rec['k'] = rnd.choice(KS)
        recs.append(rec)
    for s in STREAMS:
        # Parquet: every record has its keys (only the JSON streams get error output)
        rows = [r if s != 'lnk_parquet' or 'k' in r else dict(r, k='a') for r in recs]
        q(ctx['conn'], "SELECT count(*) FROM stream.put_delivery_record_batch(%s, %s::bytea[])",
          (s, [json.dumps(r).encode() for r in rows]))
    return [r['id'] for r in recs]


def read_ids(p):
    """(data ids, error ids) of one JSON lines file (error lines: Firehose's envelope)."""
    data, errors = [], []
    raw = open(p, 'rb').read()
    if raw[:2] == b'\x1f\x8b':       # gzip (a moved copy has lost its .gz)
        raw = gzip.decompress(raw)
    for line in raw.decode().splitlines():
        obj = json.loads(line)
        if 'rawData' in obj:
            errors.append(json.loads(base64.b64decode(obj['rawData']))['id'])
        else:
            data.append(obj['id'])
    return data, errors


def delivered(ctx, s):
    """The objects of stream s below DEST, found without following links: {file name: [paths]}.

    The attacker renames entries away (to <name>.moved-<n>), so an object may
    be found in a moved directory or under a moved name; one published but not
    yet committed when it was moved is published again (the worker finds it
    gone): two copies, one object.
    Each file name is checked against the manifest."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(DEST, followlinks=False):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if n.startswith(s + '-') and not os.path.islink(p) and not n.endswith('.tmp'):
                found.setdefault(re.sub(r'\.moved-\d+$', '', n), []).append(p)
    committed = set()
    for (files,) in q(ctx['conn'], "SELECT m.files FROM stream.delivery_manifest m JOIN stream.delivery_streams d "
                                   "USING (delivery_stream_id) WHERE d.delivery_stream_name = %s", (s,)):
        committed.update(os.path.basename(f['path']) for f in files)
    stray = sorted(set(found) - committed)
    lost = sorted(committed - set(found))
    check(not stray, '%s: published files no manifest lists: %r' % (s, stray[:3]))
    check(not lost, '%s: files of the manifest are gone: %r' % (s, lost[:3]))
    return found


def main():
    os.mkdir(DEST)
    chown_pg(DEST)
    os.chmod(DEST, 0o777)      # every OS user may write the destination
    os.mkdir(os.path.join(WORK, 'outside'))
    chown_pg(os.path.join(WORK, 'outside'))
    make_decoy()
    say('seed %d (STREAM_TEST_SEED=%d repeats this run); %d rounds; destination %s' % (SEED, SEED, ROUNDS, DEST))
    conn = create_db(extension=True)
    ctx = {'conn': conn, 'next_id': 0, 'dboid': q1(conn, "SELECT oid FROM pg_database WHERE datname = current_database()")}
    q(conn, "CREATE TYPE public.lnk_row AS (id bigint, k text, j text, pad text)")
    common = ("destination => %s, buffer_size_mb => 128, buffer_interval_seconds => 900, "
              "prefix => 'p=!{partitionKeyFromQuery:k}/q=!{partitionKeyFromQuery:j}/', "
              "error_output_prefix => 'err/!{firehose:error-output-type}/', "
              "partition_key_queries => '{\"k\": \".k\", \"j\": \".j\"}'")
    q(conn, "SELECT stream.create_delivery_stream('lnk_json', " + common + ")", (DEST,))
    q(conn, "SELECT stream.create_delivery_stream('lnk_gzip', compression => 'gzip', " + common + ")", (DEST,))
    q(conn, "SELECT stream.create_delivery_stream('lnk_parquet', format => 'parquet', schema => 'public.lnk_row', "
            "compression => 'zstd', " + common + ")", (DEST,))
    expected = []
    stats = {'ok': 0, 'refused': 0, 'final_links': 0, 'errors': {}}
    for rnd_no in range(ROUNDS):
        plants = [p(ctx) for p in rnd.sample(PLANTS, rnd.choice((0, 0, 1, 1, 2, 3)))]
        base = snapshot()
        expected += put_records(ctx, rnd.randint(1, 40))
        for s in STREAMS:
            seen = q1(conn, "SELECT coalesce(max(batch_no), -1) FROM stream.delivery_manifest m "
                            "JOIN stream.delivery_streams d USING (delivery_stream_id) WHERE d.delivery_stream_name = %s", (s,))
            ok = q1(conn, 'SELECT stream.flush_delivery_stream(%s, 30)', (s,))
            err = q1(conn, "SELECT last_error FROM stream.delivery_stream_status WHERE delivery_stream_name = %s", (s,))
            if ok:
                stats['ok'] += 1
                for (files,) in q(conn, "SELECT m.files FROM stream.delivery_manifest m JOIN stream.delivery_streams d "
                                        "USING (delivery_stream_id) WHERE d.delivery_stream_name = %s AND m.batch_no > %s",
                                  (s, seen)):
                    for f in files:
                        check(path_is_real(f['path']),
                              'round %d, %s: published %s through a symbolic link (or not as a regular file); plants: %s'
                              % (rnd_no, s, f['path'], plants))
            else:
                stats['refused'] += 1
                why = re.sub(r'"[^"]*"', '"…"', err or 'none')
                stats['errors'][why] = stats['errors'].get(why, 0) + 1
                check(err is not None and DEST in err,
                      'round %d, %s: the delivery failed without an error naming a path in the destination: %r'
                      % (rnd_no, s, err))
        now = snapshot()
        if now != base:
            changed = sorted(set(now.items()) ^ set(base.items()))
            fail('round %d: outside the destination something changed (plants: %s): %s' % (rnd_no, plants, changed[:6]))
        if rnd.random() < 0.5:
            stats['final_links'] += plant_final_links(ctx)
        if rnd.random() < 0.6:
            remove_plants()
        if rnd_no % 10 == 9:
            say('round %d: %d deliveries, %d refused, %d final-path links planted'
                % (rnd_no + 1, stats['ok'], stats['refused'], stats['final_links']))

    # an unpredictable staging directory of the worker's, recorded for recovery
    try:
        rows = q(conn, "SELECT staging FROM stream.delivery_pending WHERE staging IS NOT NULL")
    except Exception as e:  # noqa: BLE001
        rows = None
        fail('stream.delivery_pending records no staging directory: %s' % str(e).strip())
    for (name,) in rows or []:
        check(re.fullmatch(r'\d+-\d+-\d+-[0-9a-f]{16}', name) is not None, 'staging name %r has no random part' % name)

    say('removing the planted links')
    remove_plants()
    base = snapshot()
    for s in STREAMS:
        ok = False
        for _ in range(5):
            ok = q1(conn, 'SELECT stream.flush_delivery_stream(%s, 30)', (s,))
            if ok:
                break
        check(ok, '%s: not delivered once the planted links are gone: %s' % (s, q1(
            conn, "SELECT last_error FROM stream.delivery_stream_status WHERE delivery_stream_name = %s", (s,))))
    check(q1(conn, "SELECT count(*) FROM stream.processor_pending") == 0, 'no batch left pending')
    check(q1(conn, "SELECT count(*) FROM stream.delivery_pending") == 0, 'no file state left pending')
    now = snapshot()
    if now != base:
        fail('at the end: outside the destination something changed: %s' % sorted(set(now.items()) ^ set(base.items()))[:6])
    left = os.listdir(os.path.join(DEST, STAGING)) if os.path.isdir(os.path.join(DEST, STAGING)) else []
    check(not left, 'the staging directory is not empty: %r' % left[:5])

    exp = sorted(expected)
    for s in ('lnk_json', 'lnk_gzip'):
        data, errors = [], []
        for n, paths in sorted(delivered(ctx, s).items()):
            copies = [read_ids(p) for p in paths]
            check(all(c == copies[0] for c in copies), '%s: the copies of %s differ' % (s, n))
            data += copies[0][0]
            errors += copies[0][1]
        got = sorted(data + errors)
        check(got == exp, '%s: %d records delivered (%d as errors), %d distinct, expected %d'
              % (s, len(got), len(errors), len(set(got)), len(exp)))
        say('%s: %d records delivered exactly once (%d in the error output)' % (s, len(data) + len(errors), len(errors)))
    files = [paths[0] for n, paths in sorted(delivered(ctx, 'lnk_parquet').items())]
    if check(files, 'lnk_parquet: no Parquet file delivered'):
        r = duckdb("SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi FROM read_parquet([%s])"
                   % ', '.join("'%s'" % p for p in files))[0]
        check(int(r['n']) == len(exp) and int(r['d']) == len(exp) and int(r['lo']) == 0 and int(r['hi']) == len(exp) - 1,
              'lnk_parquet (DuckDB): %r, expected %d distinct ids' % (r, len(exp)))
        say('lnk_parquet: DuckDB reads %s rows in %d files, %s distinct' % (r['n'], len(files), r['d']))
    say('%d deliveries, %d refused with an error, %d final-path links planted'
        % (stats['ok'], stats['refused'], stats['final_links']))
    for why, n in sorted(stats['errors'].items(), key=lambda x: -x[1]):
        say('  %4d x %s' % (n, why))
    conn.close()


try:
    main()
except Exception as e:  # noqa: BLE001
    import traceback
    fail('unexpected error: %r\n%s' % (e, traceback.format_exc()))
finally:
    if not KEEP_DB:
        drop_db(on_error=lambda m: print('warning: ' + m))
        shutil.rmtree(WORK, ignore_errors=True)
finish()
