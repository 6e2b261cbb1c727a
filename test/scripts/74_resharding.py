#!/usr/bin/python3
"""Resharding under load: splits, merges and update_shard_count while
producers put and consumers read.  Creates and drops its own database.

Sub-tests, in order:

  load       4 producer threads put keyed records with a counter per key
             (put_record, put_records, and transactions of several puts in
             READ COMMITTED and REPEATABLE READ, some rolled back) while a
             resharder splits, merges and scales the stream and a 3-worker
             consumer application (acquire_leases, get_lease_iterator,
             get_records, checkpoint, SHARD_END) reads it.  A record counts
             as processed once the checkpoint after it succeeded (so a batch
             a worker lost the lease on is counted by the next owner only).
             Then: every committed record processed exactly once, none
             rolled back, the counters of every key in processing order
             (parent before child across every split and merge), every read
             of a closed shard to its end got the shard's children (ids and
             parents as list_shards shows them), and no stored record lies
             outside its shard's sequence range.
  example    one examples/kcl_worker process reads a stream that is split
             and merged while records arrive: it prints every committed
             record once, each key's records in order.
  delivery   a delivery stream into a table follows a split and a merge
             while records arrive: every record lands once, each key's rows
             (in insertion order) in counter order.
  subscribe  a subscription waiting on a shard (wait_timeout 5 minutes)
             returns at the commit of the split that closes it, with no
             continuation and the children (statement_timeout 60 s would
             end it otherwise); one waiting while the split rolls back keeps
             waiting for records and gets the next one.
  dump       pg_dump and pg_restore of a resharded stream: the same shards
             (lineage, ranges, ending sequence numbers) and records; in the
             restored database closed shards stay closed (puts of their
             ranges go to the children, reads end with the children) and
             can be split and merged further.

STREAM_RESHARD_SEED fixes the random choices (printed at the start).
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import ROOT, check, connect, fail, log, q, q1  # noqa: E402

DB = 'stream_resharding_test'
st.configure(DB, statement_timeout='60s')
SEED = int(os.environ.get('STREAM_RESHARD_SEED', str(int(time.time()))))
MAX_KEY = 340282366920938463463374607431768211455


class Acked:
    """Committed records: (shard id, sequence number) -> (key, counter)."""
    def __init__(self):
        self.lock = threading.Lock()
        self.records = {}
        self.rolled_back = set()
        self.errors = []

    def add(self, rows, items):
        with self.lock:
            for (sh, seq), (key, n) in zip(rows, items):
                self.records[(sh, seq)] = (key, n)


def open_shards(conn, stream):
    return [(r[0], int(r[1]), int(r[2])) for r in
            q(conn, "SELECT shard_id, starting_hash_key, ending_hash_key FROM stream.list_shards(%s, shard_filter => 'AT_LATEST') "
                    "ORDER BY starting_hash_key", (stream,))]


def reshard_once(conn, stream, rng, allow_scale=True):
    """One random split, merge or update_shard_count; returns what it did."""
    shards = open_shards(conn, stream)
    n = len(shards)
    choice = rng.random()
    if allow_scale and choice < 0.2:
        target = rng.randint(max(1, (n + 1) // 2), min(2 * n, 6))
        q(conn, 'SELECT stream.update_shard_count(%s, %s)', (stream, target))
        return f'update_shard_count {n} -> {target}'
    if (choice < 0.6 and n < 6) or n < 2:
        sh, lo, hi = rng.choice([s for s in shards if s[2] - s[1] > 4])
        key = rng.randint(lo + 2, hi - 1)
        q(conn, 'SELECT stream.split_shard(%s, %s, %s)', (stream, sh, str(key)))
        return f'split {sh}'
    i = rng.randrange(n - 1)
    q(conn, 'SELECT stream.merge_shards(%s, %s, %s)', (stream, shards[i][0], shards[i + 1][0]))
    return f'merge {shards[i][0]} {shards[i + 1][0]}'


def producer(idx, stream, acked, stop, rng):
    """Keys p<idx>-k<j>, each with its own counter; several kinds of puts."""
    conn = connect()
    counters = {}
    keys = [f'p{idx}-k{j}' for j in range(30)]

    def nxt(key):
        counters[key] = counters.get(key, 0) + 1
        return key, counters[key]

    try:
        while not stop.is_set():
            kind = rng.random()
            try:
                if kind < 0.4:
                    item = nxt(rng.choice(keys))
                    rows = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s)',
                             (stream, item[0], f'{item[0]}:{item[1]}'.encode()))
                    acked.add(rows, [item])
                elif kind < 0.7:
                    items = [nxt(rng.choice(keys)) for _ in range(rng.randint(1, 25))]
                    rows = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_records(%s, %s, %s::bytea[])',
                             (stream, [k for k, _ in items], [psycopg2.Binary(f'{k}:{n}'.encode()) for k, n in items]))
                    check(all(r[0] is not None for r in rows), f'producer {idx}: put_records failed records {rows}')
                    acked.add(rows, items)
                else:
                    conn.autocommit = False
                    iso = rng.choice(['READ COMMITTED', 'REPEATABLE READ'])
                    q(conn, f'SET TRANSACTION ISOLATION LEVEL {iso}')
                    q(conn, 'SELECT count(*) FROM stream.shards')      # the snapshot, before puts
                    rows, items = [], []
                    for _ in range(rng.randint(2, 5)):
                        item = nxt(rng.choice(keys))
                        rows += q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s)',
                                  (stream, item[0], f'{item[0]}:{item[1]}'.encode()))
                        items.append(item)
                        time.sleep(rng.random() * 0.02)
                    if rng.random() < 0.15:
                        conn.rollback()
                        with acked.lock:
                            acked.rolled_back.update(items)
                    else:
                        conn.commit()
                        acked.add(rows, items)
                    conn.autocommit = True
            except psycopg2.Error as e:
                with acked.lock:
                    acked.errors.append(f'producer {idx}: {e.pgcode} {str(e).strip()}')
                conn.rollback()
                conn.autocommit = True
    finally:
        conn.close()


class App:
    """A 3-worker consumer application; processed records in processing order."""
    def __init__(self, app, stream):
        self.app, self.stream = app, stream
        self.lock = threading.Lock()
        self.processed = []          # (shard, seq, key, counter)
        self.child_problems = []
        self.errors = []
        self.shard_ends = 0
        self.stop = threading.Event()

    def worker(self, name):
        conn = connect()
        its = {}
        last_acquire = 0
        try:
            while not self.stop.is_set():
                if time.monotonic() - last_acquire > 0.3:
                    held = {r[0] for r in q(conn, "SELECT shard_id FROM stream.acquire_leases(%s, %s, '3 seconds')",
                                            (self.app, name))}
                    last_acquire = time.monotonic()
                    for sh in list(its):
                        if sh not in held:
                            del its[sh]
                    for sh in held:
                        its.setdefault(sh, None)
                if not its:
                    time.sleep(0.05)
                    continue
                busy = False
                for sh in list(its):
                    busy |= self.step(conn, name, sh, its)
                if not busy:
                    time.sleep(0.05)
        except psycopg2.Error as e:
            with self.lock:
                self.errors.append(f'worker {name}: {e.pgcode} {str(e).strip()}')
        finally:
            conn.close()

    def step(self, conn, name, sh, its):
        """Read and process one batch of a held shard; True if it had records."""
        try:
            if its.get(sh) is None:
                it = q1(conn, 'SELECT stream.get_lease_iterator(%s, %s, %s)', (self.app, name, sh))
                if it is None:          # checkpointed at SHARD_END
                    its.pop(sh, None)
                    return False
                its[sh] = it
            recs, nxt, children = q(conn, 'SELECT (SELECT array_agg(ARRAY[r.sequence_number, convert_from(r.data, \'UTF8\')]) '
                                          '        FROM unnest(g.records) r), g.next_shard_iterator, g.child_shards '
                                          'FROM stream.get_records(%s, 200) g', (its[sh],))[0]
            if recs:
                q(conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', (self.app, name, sh, recs[-1][0]))
                with self.lock:
                    for seq, data in recs:
                        key, n = data.rsplit(':', 1)
                        self.processed.append((sh, seq, key, int(n)))
            if nxt is None:
                expected = sorted((r[0], sorted(x for x in (r[1], r[2]) if x)) for r in
                                  q(conn, 'SELECT shard_id, parent_shard_id, adjacent_parent_shard_id FROM stream.list_shards(%s) '
                                          'WHERE %s IN (parent_shard_id, adjacent_parent_shard_id)', (self.stream, sh)))
                got = sorted((c['ShardId'], sorted(c['ParentShards'])) for c in (children or []))
                if not expected or got != expected:
                    with self.lock:
                        self.child_problems.append(f'{sh}: child_shards {got}, list_shards {expected}')
                q(conn, "SELECT stream.checkpoint(%s, %s, %s, 'SHARD_END')", (self.app, name, sh))
                with self.lock:
                    self.shard_ends += 1
                its.pop(sh, None)
                return True
            its[sh] = nxt
            return bool(recs)
        except psycopg2.Error as e:
            if e.pgcode == '55000':                  # LeaseLostException: another worker has it
                its.pop(sh, None)
                return False
            if e.pgcode == '22023' and 'behind' in str(e):   # another owner checkpointed further
                its[sh] = None
                return False
            raise


def no_record_outside_shard(conn, stream, what):
    sid = q1(conn, 'SELECT stream_id FROM stream.streams WHERE stream_name = %s', (stream,))
    bad = q1(conn, f'SELECT count(*) FROM stream_data.s{sid} d JOIN stream.shards sh '
                   f'ON sh.stream_id = {sid} AND sh.shard_index = d.shard_id '
                   'WHERE d.seq > sh.ending_seq OR d.seq < sh.starting_seq')
    check(bad == 0, f'{what}: {bad} stored records lie outside their shard\'s sequence range')


def check_key_order(seq_of_items, what):
    """seq_of_items: (key, counter) in processing order; counters must grow per key."""
    last = {}
    bad = 0
    for key, n in seq_of_items:
        if key in last and n <= last[key]:
            bad += 1
            if bad <= 5:
                fail(f'{what}: key {key} counter {n} after {last[key]}')
        last[key] = max(n, last.get(key, 0))
    check(bad == 0, f'{what}: {bad} records out of order per key')


def test_load(admin, rng):
    stream, app = 'rsload', 'rsload_app'
    q(admin, 'SELECT stream.create_stream(%s, 2)', (stream,))
    q(admin, 'SELECT stream.register_application(%s, %s)', (app, stream))
    acked = Acked()
    stop = threading.Event()
    a = App(app, stream)
    prods = [threading.Thread(target=producer, args=(i, stream, acked, stop, random.Random(rng.random())))
             for i in range(4)]
    workers = [threading.Thread(target=a.worker, args=(f'w{i}',)) for i in range(3)]
    for t in prods + workers:
        t.start()
    ops = []
    try:
        for i in range(14):
            time.sleep(0.4 + rng.random() * 0.4)
            if i in (5, 11):
                n = len(open_shards(admin, stream))
                target = n + 1 if n < 5 else n - 1
                q(admin, 'SELECT stream.update_shard_count(%s, %s)', (stream, target))
                ops.append(f'update_shard_count {n} -> {target}')
            else:
                ops.append(reshard_once(admin, stream, rng, allow_scale=False))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in prods:
            t.join()
    log(f'load: {len(ops)} reshards ({", ".join(ops)}), {len(acked.records)} records committed, '
        f'{len(acked.rolled_back)} rolled back')
    total = len(acked.records)
    st.wait_for(lambda: len({(p[0], p[1]) for p in a.processed}) >= total or a.errors, 120,
                'the application to process every committed record')
    time.sleep(0.5)
    a.stop.set()
    for t in workers:
        t.join()
    check(not acked.errors, f'load: producer errors {acked.errors[:5]}')
    check(not a.errors, f'load: worker errors {a.errors[:5]}')
    check(not a.child_problems, f'load: child shards {a.child_problems[:5]}')
    seen = {}
    for sh, seq, key, n in a.processed:
        seen[(sh, seq)] = seen.get((sh, seq), 0) + 1
    dups = [k for k, v in seen.items() if v > 1]
    check(not dups, f'load: {len(dups)} records processed twice, e.g. {dups[:3]}')
    missing = set(acked.records) - set(seen)
    check(not missing, f'load: {len(missing)} committed records never processed, e.g. {sorted(missing)[:3]}')
    extra = set(seen) - set(acked.records)
    check(not extra, f'load: {len(extra)} processed records were never committed, e.g. {sorted(extra)[:3]}')
    for sh, seq, key, n in a.processed:
        if (key, n) in acked.rolled_back:
            fail(f'load: rolled-back record {key}:{n} was read')
            break
    check_key_order([(p[2], p[3]) for p in a.processed], 'load')
    no_record_outside_shard(admin, stream, 'load')
    closed = q1(admin, "SELECT count(*) FROM stream.list_shards(%s) WHERE ending_sequence_number IS NOT NULL", (stream,))
    check(a.shard_ends >= closed, f'load: {a.shard_ends} shard ends read, {closed} shards closed')
    q(admin, 'SELECT stream.delete_stream(%s, true)', (stream,))


def build_example(tmp):
    src = os.path.join(ROOT, 'examples', 'kcl_worker.c')
    exe = os.path.join(tmp, 'kcl_worker')
    incdir = subprocess.run(['pg_config', '--includedir'], capture_output=True, text=True, check=True).stdout.strip()
    b = subprocess.run(['cc', '-Wall', '-Wextra', '-Werror', '-O2', '-o', exe, src, f'-I{incdir}', '-lpq'],
                       capture_output=True, text=True)
    return exe if check(b.returncode == 0, f'example: build failed: {b.stderr}') else None


def test_example(admin, rng):
    stream, app = 'rsex', 'rsex_app'
    tmp = tempfile.mkdtemp(prefix='rs_example.')
    exe = build_example(tmp)
    if exe is None:
        return
    q(admin, 'SELECT stream.create_stream(%s, 2)', (stream,))
    q(admin, 'SELECT stream.register_application(%s, %s)', (app, stream))
    acked = Acked()
    stop = threading.Event()
    out = open(os.path.join(tmp, 'out'), 'w+')
    err = open(os.path.join(tmp, 'err'), 'w+')
    p = subprocess.Popen([exe, '-d', f'dbname={DB}', '-a', app, '-w', 'ex1', '-l', '2', '-n', '50',
                          '-i', '20', '-t', '120', '-v', '-q'], stdout=out, stderr=err)
    prods = [threading.Thread(target=producer, args=(i, stream, acked, stop, random.Random(rng.random())))
             for i in range(2)]
    for t in prods:
        t.start()
    try:
        time.sleep(1.0)
        sh = open_shards(admin, stream)[0]
        q(admin, 'SELECT stream.split_shard(%s, %s, %s)', (stream, sh[0], str((sh[1] + sh[2]) // 2)))
        time.sleep(1.0)
        s = open_shards(admin, stream)
        q(admin, 'SELECT stream.merge_shards(%s, %s, %s)', (stream, s[1][0], s[2][0]))
        time.sleep(1.0)
        stop.set()
        for t in prods:
            t.join()
        want = len(acked.records)

        def printed():
            out.flush()
            with open(out.name) as f:
                return [ln.split(' ', 3) for ln in f.read().splitlines() if ln.startswith('shardId-')]
        st.wait_for(lambda: len(printed()) >= want or p.poll() is not None, 60, 'the example worker to print every record')
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    lines = printed()
    got = {}
    for ln in lines:
        got[(ln[0], ln[1])] = got.get((ln[0], ln[1]), 0) + 1
    check(set(got) == set(acked.records), f'example: printed {len(got)} distinct records, committed {want}')
    check(all(v == 1 for v in got.values()), f'example: {sum(1 for v in got.values() if v > 1)} records printed twice')
    check_key_order([(ln[3].rsplit(':', 1)[0], int(ln[3].rsplit(':', 1)[1])) for ln in lines], 'example')
    check(not acked.errors, f'example: producer errors {acked.errors[:5]}')
    ls = q(admin, "SELECT lease_key, checkpoint FROM stream.application_leases WHERE application_name = %s", (app,))
    closed = {r[0] for r in q(admin, "SELECT shard_id FROM stream.list_shards(%s) WHERE ending_sequence_number IS NOT NULL", (stream,))}
    check(all(c == 'SHARD_END' for k, c in ls if k in closed), f'example: closed shards not at SHARD_END: {ls}')
    q(admin, 'SELECT stream.delete_stream(%s, true)', (stream,))


def test_delivery(admin, rng):
    stream = 'rsdel'
    q(admin, 'CREATE TABLE public.rs_sink (id bigserial PRIMARY KEY, k text NOT NULL, n int NOT NULL)')
    q(admin, 'SELECT stream.create_stream(%s, 2)', (stream,))
    q(admin, "SELECT stream.create_delivery_stream('rs_fh', source_stream_name => %s, destination_table => 'public.rs_sink', "
             "buffer_interval_seconds => 1, starting_position => 'TRIM_HORIZON')", (stream,))
    acked = {}
    conn = connect()
    counters = {}

    def put(nrec, c=None):
        keys = [f'd{rng.randrange(25)}' for _ in range(nrec)]
        items = []
        for k in keys:
            counters[k] = counters.get(k, 0) + 1
            items.append((k, counters[k]))
        rows = q(c or conn, 'SELECT shard_id, sequence_number FROM stream.put_records(%s, %s, %s::bytea[])',
                 (stream, keys, [psycopg2.Binary(json.dumps({'k': k, 'n': n}).encode()) for k, n in items]))
        out = {(r[0], r[1]): it for r, it in zip(rows, items)}
        acked.update(out)
        return out

    for _ in range(10):
        put(30)
        time.sleep(0.1)
    # a transaction puts to both parents and stays open across the split and
    # the merge: the children (newer records of the same keys) must wait
    # until it commits and the parents are delivered to their end
    held = connect()
    held.autocommit = False
    held_items = put(50, held)
    for k in held_items:
        del acked[k]
    sh = open_shards(admin, stream)[1]
    q(admin, 'SELECT stream.split_shard(%s, %s, %s)', (stream, sh[0], str((sh[1] + sh[2]) // 2)))
    for _ in range(10):
        put(30)
        time.sleep(0.1)
    s = open_shards(admin, stream)
    q(admin, 'SELECT stream.merge_shards(%s, %s, %s)', (stream, s[0][0], s[1][0]))
    for _ in range(10):
        put(30)
        time.sleep(0.05)
    time.sleep(2.5)             # delivery rounds while the parents' tails are in flight
    early = q1(admin, 'SELECT count(*) FROM public.rs_sink')
    held.commit()
    held.close()
    acked.update(held_items)
    check(q1(admin, "SELECT stream.flush_delivery_stream('rs_fh', 60)") is True, 'delivery: flush did not finish')
    log(f'delivery: {early} rows delivered while a transaction held the parents back, {len(acked)} in all')
    st.wait_for(lambda: q1(admin, 'SELECT count(*) FROM public.rs_sink') >= len(acked), 60, 'every record in the table')
    rows = q(admin, 'SELECT k, n FROM public.rs_sink ORDER BY id')
    check(len(rows) == len(acked) and len(set(rows)) == len(rows),
          f'delivery: {len(rows)} rows ({len(set(rows))} distinct) for {len(acked)} records')
    check(set(rows) == set(acked.values()), 'delivery: the rows are not the records put')
    check_key_order(rows, 'delivery')
    cps = q(admin, "SELECT c.shard_index, c.next_seq > sh.ending_seq FROM stream.processor_checkpoints c "
                   "JOIN stream.shards sh ON sh.stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = %s) "
                   "AND sh.shard_index = c.shard_index WHERE sh.ending_seq IS NOT NULL", (stream,))
    check(len(cps) == 3 and all(r[1] for r in cps), f'delivery: closed shards not finished by the delivery stream: {cps}')
    # retention: the closed shards go, with their checkpoints, once their records expired
    # (test shortcut: they closed 25 hours ago); delivery goes on from the children
    sid = q1(admin, 'SELECT stream_id FROM stream.streams WHERE stream_name = %s', (stream,))
    q(admin, "UPDATE stream.shards SET closed_at = now() - interval '25 hours' WHERE stream_id = %s AND ending_seq IS NOT NULL", (sid,))
    q(admin, 'SELECT count(*) FROM stream.run_maintenance()')
    left = q(admin, 'SELECT shard_index FROM stream.shards WHERE stream_id = %s AND ending_seq IS NOT NULL', (sid,))
    check(not left, f'delivery: expired closed shards still in stream.shards: {left}')
    gone = q1(admin, 'SELECT count(*) FROM stream.processor_checkpoints c WHERE NOT EXISTS '
                     '(SELECT 1 FROM stream.shards sh WHERE sh.stream_id = %s AND sh.shard_index = c.shard_index) '
                     'AND c.processor_id = (SELECT delivery_stream_id FROM stream.delivery_streams WHERE delivery_stream_name = %s)',
             (sid, 'rs_fh'))
    check(gone == 0, f'delivery: {gone} checkpoints of expired shards left')
    check(q1(admin, 'SELECT count(*) FROM stream.list_shards(%s)', (stream,)) == 2, 'delivery: list_shards still lists expired shards')
    put(40)
    check(q1(admin, "SELECT stream.flush_delivery_stream('rs_fh', 60)") is True, 'delivery: flush after expiry did not finish')
    rows = q(admin, 'SELECT k, n FROM public.rs_sink ORDER BY id')
    check(len(rows) == len(acked) and set(rows) == set(acked.values()), 'delivery: records after expiry not delivered once')
    conn.close()
    q(admin, 'SELECT stream.delete_stream(%s, true)', (stream,))


def test_subscribe(admin, rng):
    stream = 'rssub'
    q(admin, 'SELECT stream.create_stream(%s, 1)', (stream,))
    q(admin, "SELECT stream.register_stream_consumer(%s, 'sub')", (stream,))
    q(admin, "SELECT count(*) FROM stream.put_record(%s, 'a', '\\x01')", (stream,))
    res = {}

    def subscribe(tag):
        c = connect()
        try:
            res[tag] = q(c, "SELECT cardinality(records), continuation_sequence_number, child_shards "
                            "FROM stream.subscribe_to_shard(%s, 'sub', 'shardId-000000000000', 'LATEST', "
                            "wait_timeout => '5 minutes')", (stream,))[0]
        except psycopg2.Error as e:
            res[tag] = e
        finally:
            c.close()

    # a split rolled back: the subscriber keeps waiting, then gets the next record
    t = threading.Thread(target=subscribe, args=('rolled back',))
    t.start()
    time.sleep(0.5)
    splitter = connect()
    splitter.autocommit = False
    q(splitter, "SELECT stream.split_shard(%s, 'shardId-000000000000', '170141183460469231731687303715884105728')", (stream,))
    splitter.rollback()
    time.sleep(0.5)
    check(t.is_alive(), 'subscribe: a rolled-back split ended the subscription')
    q(admin, "SELECT count(*) FROM stream.put_record(%s, 'b', '\\x02')", (stream,))
    t.join(70)
    r = res.get('rolled back')
    check(isinstance(r, tuple) and r[0] == 1 and r[1] is not None and r[2] is None,
          f'subscribe: after a rolled-back split the next record was expected, got {r}')
    # a committed split: the waiting subscription ends with the children
    t = threading.Thread(target=subscribe, args=('split',))
    t.start()
    time.sleep(0.5)
    q(splitter, "SELECT stream.split_shard(%s, 'shardId-000000000000', '170141183460469231731687303715884105728')", (stream,))
    splitter.commit()
    t.join(70)
    r = res.get('split')
    check(isinstance(r, tuple) and r[1] is None and r[2] and len(r[2]) == 2,
          f'subscribe: a split while subscribed should end it with two children, got {r}')
    splitter.close()
    q(admin, 'SELECT stream.delete_stream(%s, true)', (stream,))


def shard_rows(conn, stream):
    return q(conn, 'SELECT shard_id, parent_shard_id, adjacent_parent_shard_id, starting_hash_key, ending_hash_key, '
                   'starting_sequence_number, ending_sequence_number FROM stream.list_shards(%s) ORDER BY shard_id', (stream,))


def all_records(conn, stream):
    out = []
    for (sh,) in q(conn, 'SELECT shard_id FROM stream.list_shards(%s) ORDER BY shard_id', (stream,)):
        out += [(sh,) + tuple(r) for r in q(conn, "SELECT sequence_number, partition_key, encode(data, 'hex') "
                                                "FROM stream.read_shard(%s, %s)", (stream, sh))]
    return out


def test_dump(admin, rng):
    stream = 'rsdump'
    q(admin, 'SELECT stream.create_stream(%s, 2)', (stream,))
    keys = [f'dk{i}' for i in range(200)]
    q(admin, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[])',
      (stream, keys, [psycopg2.Binary(k.encode()) for k in keys]))
    sh = open_shards(admin, stream)[0]
    q(admin, 'SELECT stream.split_shard(%s, %s, %s)', (stream, sh[0], str((sh[1] + sh[2]) // 2)))
    s = open_shards(admin, stream)
    q(admin, 'SELECT stream.merge_shards(%s, %s, %s)', (stream, s[1][0], s[2][0]))
    q(admin, 'SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[])',
      (stream, keys, [psycopg2.Binary(k.encode()) for k in keys]))
    before_shards, before_records = shard_rows(admin, stream), all_records(admin, stream)
    dst = DB + '_restored'
    work = tempfile.mkdtemp(prefix='rs_dump.')
    d = subprocess.run(['pg_dump', '-Fc', '-f', os.path.join(work, 'db.dump'), DB], capture_output=True, text=True)
    if not check(d.returncode == 0, f'dump: pg_dump failed: {d.stderr}'):
        return
    pg = connect('postgres')
    q(pg, f'DROP DATABASE IF EXISTS {dst}')
    q(pg, f'CREATE DATABASE {dst}')
    r = subprocess.run(['pg_restore', '-d', dst, os.path.join(work, 'db.dump')], capture_output=True, text=True)
    check(r.returncode == 0, f'dump: pg_restore failed: {r.stderr[-2000:]}')
    rc = connect(dst)
    try:
        check(shard_rows(rc, stream) == before_shards, 'dump: the restored shards differ')
        check(all_records(rc, stream) == before_records, 'dump: the restored records differ')
        closed = [r for r in shard_rows(rc, stream) if r[6] is not None]
        for row in closed:
            it = q1(rc, "SELECT stream.get_shard_iterator(%s, %s, 'LATEST')", (stream, row[0]))
            nxt, children = q(rc, 'SELECT next_shard_iterator, child_shards FROM stream.get_records(%s)', (it,))[0]
            check(nxt is None and children, f'dump: restored closed {row[0]} does not end with children')
            for key in (int(row[3]), int(row[4])):
                got = q1(rc, "SELECT shard_id FROM stream.put_record(%s, 'x', '\\x00', %s)", (stream, str(key)))
                check(got not in {c[0] for c in closed}, f'dump: a put in the restored database went to closed {got}')
        no_record_outside_shard(rc, stream, 'dump (restored)')
        s = open_shards(rc, stream)
        q(rc, 'SELECT stream.merge_shards(%s, %s, %s)', (stream, s[0][0], s[1][0]))
        sh = open_shards(rc, stream)[0]
        q(rc, 'SELECT stream.split_shard(%s, %s, %s)', (stream, sh[0], str((sh[1] + sh[2]) // 2)))
        check(len({r[0] for r in shard_rows(rc, stream)}) == len(before_shards) + 3,
              'dump: resharding the restored stream made the wrong shards')
    finally:
        rc.close()
        q(pg, f'DROP DATABASE IF EXISTS {dst} WITH (FORCE)')
        pg.close()
    q(admin, 'SELECT stream.delete_stream(%s, true)', (stream,))


def main():
    log(f'seed {SEED}')
    rng = random.Random(SEED)
    admin = st.create_db(extension=True)
    st.run_subtests([('load', test_load, (admin, rng)),
                     ('example', test_example, (admin, rng)),
                     ('delivery', test_delivery, (admin, rng)),
                     ('subscribe', test_subscribe, (admin, rng)),
                     ('dump', test_dump, (admin, rng))])
    admin.close()


st.main_wrapper(main, lambda: st.drop_db())
