#!/usr/bin/python3
"""Consumer applications: KCL-style leases and checkpoints (issue 4).

Creates and drops its own database.  (Fencing, a worker whose lease was
taken or released cannot checkpoint, is specs/lease_fencing.spec, with the
race of a takeover and a checkpoint.)  Sub-tests, in order:

  convergence  3 workers calling acquire_leases in rounds on a 12-shard stream
               reach 4/4/4 within a few rounds, every shard held by exactly
               one worker, and the assignment then stays put.
  failover     3 simulated workers (lease 2 s) process and checkpoint; one
               crashes after reading a batch it never checkpoints; its leases
               are held by the other two within two lease durations of its
               last renewal; processing resumes exactly after its checkpoints
               (its unchecked batch is processed again); in the end every
               record was processed and each shard's checkpoint is its last
               record; leases end 6/6.
  monotonic    a checkpoint behind the current one, one from another shard and
               garbage are refused (22023) and change nothing; the same one
               again is accepted.
  shard_end    SHARD_END on an open shard is refused (22023).
  parents      a split (0 -> 3, 4) and a merge (1 + 2 -> 5), simulated in
               stream.shards: child leases exist (TRIM_HORIZON, parent ids) but
               are not handed out until every parent is checkpointed at
               SHARD_END; a closed shard's iterator ends (NULL next iterator);
               children then read exactly the records put after the split.
  concurrency  8 workers call acquire_leases (lease 1 s), checkpoint and now and
               then release_leases concurrently for 5 s: the only errors are
               LeaseLostException (55000) and a checkpoint behind one written
               by another owner meanwhile; no deadlock (40P01) or other error.
  hot          many acquire/checkpoint rounds: n_tup_hot_upd >= 90% of
               n_tup_upd for stream.leases.  Also measured (reported, not
               asserted) with a transaction holding back the xmin horizon.
  privileges   a role with read access to the stream runs the whole worker
               loop (register, acquire, iterator, read, checkpoint, release);
               a role without access cannot read stream.leases or
               stream.applications at all (42501), sees no leases in the view
               stream.application_leases, and cannot acquire, checkpoint or
               update them.  (Owners and grants: 73_application_access.py.)
  example      examples/kcl_worker.c builds without warnings (-Wall -Wextra
               -Werror); 3 instances drain the stream (every record printed,
               checkpoints at each shard's last record) while more records
               arrive, leases end 4/4/4, SIGTERM releases the leases, exit 0.
  example_split  one kcl_worker on a 1-shard stream whose shard was split
               (closed with 300 records, two children with 300 more): it
               prints every parent record before any child record,
               checkpoints the parent at SHARD_END, then drains both children.

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh).
Exit status 0 = pass, 1 = failure.
"""

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import ROOT, check, configure, connect, create_db, drop_db, expect_error  # noqa: E402
from streamtest import fail, finish, log, q, q1, run_subtests, shard_id  # noqa: E402

DB = 'stream_leases_test'
STREAM = 'leases'
NSHARDS = 12

configure(DB, statement_timeout='20s')


# ---------------------------------------------------------------- records

PUTS = {}          # shard id -> sorted list of sequence numbers (text)
RECORDS = {}       # sequence number -> (partition key, data text)
_put_counter = 0


def put_many(conn, n, stream=STREAM, track=True):
    """Put n records with random partition keys; remember them."""
    global _put_counter
    out = []
    while n > 0:
        k = min(n, 500)
        keys, datas = [], []
        for _ in range(k):
            _put_counter += 1
            keys.append(f'pk{_put_counter}-{random.randrange(1 << 30)}')
            datas.append(f'rec-{_put_counter}'.encode())
        rows = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_records(%s, %s, %s::bytea[])',
                 (stream, keys, [psycopg2.Binary(d) for d in datas]))
        for (sh, seq), key, data in zip(rows, keys, datas):
            out.append((sh, seq))
            if track:
                PUTS.setdefault(sh, []).append(seq)
                RECORDS[seq] = (key, data.decode())
        n -= k
    for v in PUTS.values():
        v.sort()
    return out


def last_seq(sh):
    return PUTS[sh][-1] if PUTS.get(sh) else None


# ---------------------------------------------------------------- workers

class Worker:
    """A worker of an application, driven step by step by the test."""

    def __init__(self, app, name, lease='2 seconds', limit=40):
        self.app, self.name, self.lease, self.limit = app, name, lease, limit
        self.conn = connect()
        self.its = {}            # held shard -> iterator or None
        self.processed = []      # (shard, seq) in processing order
        self.first_read = {}     # shard -> first sequence number read after taking the lease
        self.last_acquire = None
        self.lost = 0
        self.dead = False

    def acquire(self):
        rows = q(self.conn, 'SELECT shard_id, checkpoint, lease_counter, parent_shard_ids '
                            'FROM stream.acquire_leases(%s, %s, %s::interval)', (self.app, self.name, self.lease))
        self.last_acquire = time.monotonic()
        held = {r[0] for r in rows}
        for sh in list(self.its):
            if sh not in held:
                del self.its[sh]
                self.lost += 1
        for sh in held:
            if sh not in self.its:
                self.its[sh] = None
                self.first_read.pop(sh, None)
        return rows

    def checkpoint(self, sh, seq):
        q(self.conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', (self.app, self.name, sh, seq))

    def process(self, do_checkpoint=True):
        """One get_records per held shard, then checkpoint the last record."""
        n = 0
        for sh in sorted(self.its):
            try:
                if self.its[sh] is None:
                    self.its[sh] = q1(self.conn, 'SELECT stream.get_lease_iterator(%s, %s, %s)',
                                      (self.app, self.name, sh))
                    if self.its[sh] is None:
                        del self.its[sh]
                        continue
                recs, nxt = q(self.conn, 'SELECT (SELECT array_agg(r.sequence_number ORDER BY ord) '
                                         'FROM unnest(g.records) WITH ORDINALITY r(sequence_number, a, pk, d, ord)), '
                                         'g.next_shard_iterator FROM stream.get_records(%s, %s) g',
                              (self.its[sh], self.limit))[0]
                recs = recs or []
                for seq in recs:
                    self.processed.append((sh, seq))
                    self.first_read.setdefault(sh, seq)
                n += len(recs)
                self.its[sh] = nxt
                if recs and do_checkpoint:
                    self.checkpoint(sh, recs[-1])
            except psycopg2.Error as e:
                if e.pgcode == '55000':
                    self.lost += 1
                    del self.its[sh]
                else:
                    raise
        return n

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def leases(conn, app):
    """shard id -> (owner, held, checkpoint, owner switches, lease counter)"""
    rows = q(conn, 'SELECT lease_key, lease_owner, held, checkpoint, owner_switches_since_checkpoint, lease_counter '
                   'FROM stream.application_leases WHERE application_name = %s', (app,))
    return {r[0]: r[1:] for r in rows}


def owner_counts(conn, app, workers):
    ls = leases(conn, app)
    return {w: sum(1 for v in ls.values() if v[0] == w and v[1]) for w in workers}


# ---------------------------------------------------------------- sub-tests

def test_convergence(admin):
    log('convergence: 3 workers, 12 shards, acquire_leases in rounds')
    q(admin, "SELECT stream.register_application('conv', %s)", (STREAM,))
    ws = [Worker('conv', f'w{i}', lease='60 seconds') for i in (1, 2, 3)]
    converged = None
    history = []
    try:
        for rnd in range(1, 13):
            for w in ws:
                w.acquire()
            ls = leases(admin, 'conv')
            check(len(ls) == NSHARDS, f'convergence: {len(ls)} leases, expected {NSHARDS}')
            check(all(v[0] in ('w1', 'w2', 'w3') and v[1] for v in ls.values()),
                  f'convergence round {rnd}: a lease is not held by a worker: {ls}')
            counts = [sum(1 for v in ls.values() if v[0] == w.name) for w in ws]
            history.append(counts)
            if sorted(counts) == [4, 4, 4]:
                converged = rnd
                break
        log(f'convergence: lease counts per round {history}')
        if not check(converged is not None and converged <= 8,
                     f'convergence: no 4/4/4 after {len(history)} rounds: {history}'):
            return
        before = {k: v[0] for k, v in leases(admin, 'conv').items()}
        for _ in range(3):
            for w in ws:
                w.acquire()
        after = {k: v[0] for k, v in leases(admin, 'conv').items()}
        check(before == after, f'convergence: assignment changed after 4/4/4 was reached: {before} -> {after}')
        for w in ws:
            mine = {k for k, v in after.items() if v == w.name}
            check(set(w.its) == mine, f'convergence: {w.name} acquire_leases returned {sorted(w.its)}, '
                                      f'the lease table says {sorted(mine)}')
    finally:
        for w in ws:
            w.close()


def test_failover(admin, producer):
    log('failover: lease 2 s, one worker crashes between read and checkpoint')
    dur = 2.0
    q(admin, "SELECT stream.register_application('fo', %s)", (STREAM,))
    ws = [Worker('fo', f'f{i}', lease=f'{dur} seconds', limit=40) for i in (1, 2, 3)]
    w1, w2, w3 = ws
    try:
        for _ in range(8):
            for w in ws:
                w.acquire()
            if sorted(owner_counts(admin, 'fo', ['f1', 'f2', 'f3']).values()) == [4, 4, 4]:
                break
        check(sorted(owner_counts(admin, 'fo', ['f1', 'f2', 'f3']).values()) == [4, 4, 4],
              f'failover: leases did not reach 4/4/4: {owner_counts(admin, "fo", ["f1", "f2", "f3"])}')

        for _ in range(2):     # two batches per shard, checkpointed
            for w in ws:
                w.process()
        put_many(producer, 120)
        for w in ws:
            w.acquire()                      # renew: f3's lease now runs 2 s from here
        w3_shards = sorted(w3.its)
        cp_at_crash = {sh: v[2] for sh, v in leases(admin, 'fo').items() if sh in w3_shards}
        n_before = len(w3.processed)
        w3.process(do_checkpoint=False)      # processed, never checkpointed: must be processed again
        unchecked = w3.processed[n_before:]
        w3.dead = True
        crash_renewal = w3.last_acquire
        log(f'failover: f3 crashed holding {w3_shards} with {len(unchecked)} records not checkpointed')
        check(len(unchecked) > 0, 'failover: the crashed worker had no unchecked records (test set-up)')

        takeover_at = None
        balanced = False
        deadline = time.monotonic() + 25
        puts_left = 6
        next_acq = time.monotonic()
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_acq:
                for w in (w1, w2):
                    w.acquire()
                next_acq = now + dur / 3
            for w in (w1, w2):
                w.process()
            if puts_left > 0:
                put_many(producer, 40)
                puts_left -= 1
            ls = leases(admin, 'fo')
            if takeover_at is None and all(ls[sh][0] in ('f1', 'f2') and ls[sh][1] for sh in w3_shards):
                takeover_at = time.monotonic()
                log(f'failover: f3\'s leases held by f1/f2 {takeover_at - crash_renewal:.2f} s after its last renewal')
            counts = owner_counts(admin, 'fo', ['f1', 'f2'])
            balanced = balanced or sorted(counts.values()) == [6, 6]
            drained = puts_left == 0 and all(ls[sh][2] == last_seq(sh) for sh in PUTS)
            if takeover_at and drained and balanced:
                break
            time.sleep(0.05)

        if check(takeover_at is not None, 'failover: f3\'s leases were never taken over'):
            check(takeover_at - crash_renewal <= 2 * dur,
                  f'failover: takeover took {takeover_at - crash_renewal:.2f} s after the last renewal, '
                  f'more than two lease durations ({2 * dur} s)')
        check(balanced, f'failover: f1/f2 never reached 6/6: {owner_counts(admin, "fo", ["f1", "f2"])}')
        ls = leases(admin, 'fo')
        for sh in PUTS:
            check(ls[sh][2] == last_seq(sh), f'failover: {sh} checkpoint {ls[sh][2]}, last record {last_seq(sh)}')
        processed = {seq for w in ws for _, seq in w.processed}
        missing = [s for v in PUTS.values() for s in v if s not in processed]
        check(not missing, f'failover: {len(missing)} records never processed, e.g. {missing[:3]}')
        # resume exactly after the crashed worker's checkpoint
        for sh in w3_shards:
            firsts = [w.first_read[sh] for w in (w1, w2) if sh in w.first_read]
            cp = cp_at_crash[sh]
            expected = next((s for s in PUTS[sh] if cp in ('TRIM_HORIZON',) or s > cp), None)
            check(firsts and min(firsts) == expected,
                  f'failover: after taking {sh} (checkpoint {cp}) the new owner started at {firsts}, expected {expected}')
        reprocessed = {seq for w in (w1, w2) for _, seq in w.processed}
        check(all(seq in reprocessed for _, seq in unchecked),
              'failover: records the crashed worker read but did not checkpoint were not processed again')
    finally:
        for w in ws:
            w.close()


def test_monotonic(admin):
    log('monotonic: checkpoints never go backwards')
    sh, other = shard_id(1), shard_id(2)
    s = PUTS[sh]
    q(admin, "SELECT stream.register_application('mono', %s)", (STREAM,))
    w = Worker('mono', 'M', lease='60 seconds')
    try:
        w.acquire()
        w.checkpoint(sh, s[5])
        expect_error(w.conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', ('mono', 'M', sh, s[4]),
                     '22023', 'InvalidArgumentException', 'monotonic: a checkpoint behind the current one')
        check(leases(admin, 'mono')[sh][2] == s[5], 'monotonic: a backwards checkpoint moved the checkpoint')
        w.checkpoint(sh, s[5])          # the same again is fine
        expect_error(w.conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', ('mono', 'M', sh, PUTS[other][-1]),
                     '22023', 'InvalidArgumentException', 'monotonic: a sequence number of another shard')
        expect_error(w.conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', ('mono', 'M', sh, 'garbage'),
                     '22023', 'InvalidArgumentException', 'monotonic: a malformed sequence number')
        check(leases(admin, 'mono')[sh][2] == s[5], 'monotonic: a refused checkpoint moved the checkpoint')
        w.checkpoint(sh, s[6])
        check(leases(admin, 'mono')[sh][2] == s[6], 'monotonic: a forward checkpoint did not move the checkpoint')
        # SHARD_END on an open shard
        log('shard_end: refused on an open shard')
        expect_error(w.conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)', ('mono', 'M', sh, 'SHARD_END'),
                     '22023', 'InvalidArgumentException', 'shard_end: SHARD_END on an open shard')
        check(leases(admin, 'mono')[sh][2] == s[6], 'shard_end: a refused SHARD_END moved the checkpoint')
        check(sh in {r[0] for r in w.acquire()}, 'shard_end: the open shard\'s lease was finished by a refused SHARD_END')
    finally:
        w.close()


def test_parents(admin, producer):
    log('parents: split 0 -> 3, 4 and merge 1 + 2 -> 5; children wait for SHARD_END of every parent')
    q(admin, "SELECT stream.create_stream('split', 3)")
    sid = q1(admin, "SELECT stream_id FROM stream.streams WHERE stream_name = 'split'")
    shards = {r[0]: (int(r[1]), int(r[2])) for r in
              q(admin, "SELECT shard_index, starting_hash_key, ending_hash_key FROM stream.shards WHERE stream_id = %s", (sid,))}
    q(admin, "SELECT stream.register_application('split_app', 'split')")

    def put_split(n, tag):
        keys = [f'{tag}{i}-{random.randrange(1 << 30)}' for i in range(n)]
        rows = q(producer, "SELECT shard_id, sequence_number FROM stream.put_records('split', %s, %s::bytea[])",
                 (keys, [psycopg2.Binary(k.encode()) for k in keys]))
        by = {}
        for sh, seq in rows:
            by.setdefault(sh, []).append(seq)
        return {k: sorted(v) for k, v in by.items()}

    before = put_split(60, 'pre')
    check(set(before) == {shard_id(i) for i in range(3)}, f'parents: pre-split records went to {sorted(before)}')
    p1, p2 = Worker('split_app', 'P1', lease='60 seconds'), Worker('split_app', 'P2', lease='60 seconds')
    try:
        for _ in range(3):
            p1.acquire()
            p2.acquire()

        # close 0, 1, 2 at their last records; 3 and 4 split 0; 5 merges 1 and 2
        for i in range(3):
            last = q1(admin, 'SELECT seq FROM stream_internal._sequence_parts(%s)', (before[shard_id(i)][-1],))
            q(admin, 'UPDATE stream.shards SET ending_seq = %s, closed_at = now() WHERE stream_id = %s AND shard_index = %s',
              (last, sid, i))
        start_seq = q1(admin, 'SELECT max(ending_seq) + 1 FROM stream.shards WHERE stream_id = %s', (sid,))
        lo0, hi0 = shards[0]
        mid = (lo0 + hi0) // 2
        children = [(3, 0, None, lo0, mid), (4, 0, None, mid + 1, hi0), (5, 1, 2, shards[1][0], shards[2][1])]
        for idx, parent, adj, lo, hi in children:
            q(admin, 'INSERT INTO stream.shards (stream_id, shard_index, parent_shard_index, adjacent_parent_shard_index, '
                     'starting_hash_key, ending_hash_key, starting_seq) VALUES (%s, %s, %s, %s, %s, %s, %s)',
              (sid, idx, parent, adj, lo, hi, start_seq))
        q(admin, 'SELECT stream_internal._catalog_changed()')
        after = put_split(60, 'post')
        check(set(after) <= {shard_id(i) for i in (3, 4, 5)}, f'parents: post-split records went to {sorted(after)}')

        def handed_out():
            got = set()
            for _ in range(3):
                for w in (p1, p2):
                    got |= {r[0] for r in w.acquire()}
            return got

        got = handed_out()
        ls = leases(admin, 'split_app')
        check(all(shard_id(i) in ls for i in (3, 4, 5)), f'parents: child leases missing: {sorted(ls)}')
        for i, parents in ((3, [0]), (4, [0]), (5, [1, 2])):
            row = q(admin, 'SELECT checkpoint, parent_shard_ids, lease_owner FROM stream.application_leases '
                           'WHERE application_name = %s AND lease_key = %s', ('split_app', shard_id(i)))[0]
            check(row[0] == 'TRIM_HORIZON' and row[1] == [shard_id(p) for p in parents] and row[2] is None,
                  f'parents: child {shard_id(i)} lease is {row}, expected TRIM_HORIZON, parents {parents}, no owner')
        check(not (got & {shard_id(i) for i in (3, 4, 5)}),
              f'parents: child leases handed out before any parent finished: {sorted(got)}')

        def finish(i):
            sh = shard_id(i)
            owner = p1 if sh in p1.its else p2
            it = q1(owner.conn, 'SELECT stream.get_lease_iterator(%s, %s, %s)', ('split_app', owner.name, sh))
            seen = []
            for _ in range(10):
                recs, it = q(owner.conn, 'SELECT (SELECT array_agg(r.sequence_number) FROM unnest(g.records) r), '
                                         'g.next_shard_iterator FROM stream.get_records(%s, 1000) g', (it,))[0]
                seen += recs or []
                if it is None:
                    break
            check(it is None, f'parents: closed {sh} read to its end still has a next iterator')
            check(seen == before[sh], f'parents: closed {sh} returned {len(seen)} records, expected {len(before[sh])}')
            owner.checkpoint(sh, seen[-1])
            owner.checkpoint(sh, 'SHARD_END')
            check(leases(admin, 'split_app')[sh][2] == 'SHARD_END', f'parents: {sh} not at SHARD_END')

        finish(0)
        got = handed_out()
        check(shard_id(0) not in got, 'parents: a lease at SHARD_END is still returned by acquire_leases')
        check({shard_id(3), shard_id(4)} <= got, f'parents: split children not handed out after SHARD_END of 0: {sorted(got)}')
        check(shard_id(5) not in got, 'parents: merge child 5 handed out with both parents open')
        finish(1)
        got = handed_out()
        check(shard_id(5) not in got, 'parents: merge child 5 handed out while its adjacent parent 2 is open')
        finish(2)
        got = handed_out()
        check({shard_id(i) for i in (3, 4, 5)} == got,
              f'parents: after every parent finished the workers hold {sorted(got)}, expected 3, 4, 5')
        check(sorted([len(p1.its), len(p2.its)]) == [1, 2], f'parents: child leases split {len(p1.its)}/{len(p2.its)}')
        for i in (3, 4, 5):
            sh = shard_id(i)
            owner = p1 if sh in p1.its else p2
            rows = q(owner.conn, 'SELECT array_agg(parent_shard_ids) FILTER (WHERE shard_id = %s) '
                                 'FROM stream.acquire_leases(%s, %s, %s::interval)',
                     (sh, 'split_app', owner.name, '60 seconds'))
            check(rows[0][0] == [[shard_id(p) for p in ((0,) if i < 5 else (1, 2))]],
                  f'parents: acquire_leases parent_shard_ids for {sh}: {rows[0][0]}')
            it = q1(owner.conn, 'SELECT stream.get_lease_iterator(%s, %s, %s)', ('split_app', owner.name, sh))
            recs = q1(owner.conn, 'SELECT (SELECT array_agg(r.sequence_number) FROM unnest(g.records) r) '
                                  'FROM stream.get_records(%s, 1000) g', (it,)) or []
            check(recs == after.get(sh, []), f'parents: child {sh} read {len(recs)} records, expected {len(after.get(sh, []))}')
    finally:
        p1.close()
        p2.close()


def test_concurrency(admin):
    log('concurrency: acquire, checkpoint and release from 8 workers at once')
    q(admin, "SELECT stream.register_application('conc', %s)", (STREAM,))
    errors = collections.Counter()
    lock = threading.Lock()
    nxt = collections.Counter()
    stop = time.monotonic() + 5
    calls = collections.Counter()

    def run(i):
        w = Worker('conc', f'c{i}', lease='1 second')
        rnd = random.Random(i)
        try:
            while time.monotonic() < stop:
                try:
                    held = [r[0] for r in w.acquire()]
                    calls['acquire'] += 1
                    for sh in held:
                        with lock:
                            nxt[sh] = min(nxt[sh] + 1, len(PUTS[sh]) - 1)
                            seq = PUTS[sh][nxt[sh]]
                        w.checkpoint(sh, seq)
                        calls['checkpoint'] += 1
                    if rnd.random() < 0.3:
                        q(w.conn, 'SELECT stream.release_leases(%s, %s)', ('conc', w.name))
                        calls['release'] += 1
                except psycopg2.Error as e:
                    msg = (e.pgerror or '').strip().splitlines()[0] if e.pgerror else str(e)
                    if e.pgcode == '55000' or (e.pgcode == '22023' and 'never move backwards' in msg):
                        continue
                    with lock:
                        errors[(e.pgcode, msg[:120])] += 1
        finally:
            w.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(f'concurrency: calls {dict(calls)}')
    for (code, msg), n in errors.most_common(5):
        fail(f'concurrency: {n} x {code} {msg}')


def hot_stats(admin):
    q(admin, 'SELECT pg_stat_clear_snapshot()')
    return q(admin, "SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size('stream.leases') "
                    "FROM pg_stat_user_tables WHERE relid = 'stream.leases'::regclass")[0]


def hot_rounds(app, rounds, admin):
    ws = [Worker(app, f'{app}-{i}', lease='60 seconds') for i in (1, 2, 3)]
    pos = {}
    try:
        for r in range(rounds):
            for w in ws:
                w.acquire()
                for sh in sorted(w.its):
                    i = pos.get(sh, 0)
                    if i < len(PUTS[sh]):
                        w.checkpoint(sh, PUTS[sh][i])
                        pos[sh] = i + 1
    finally:
        for w in ws:
            w.close()      # backends flush their statistics when they exit
    time.sleep(1.0)


def test_hot(admin):
    log('hot: updates of stream.leases are HOT')
    q(admin, "SELECT pg_stat_reset_single_table_counters('stream.leases'::regclass)")
    q(admin, "SELECT stream.register_application('hot', %s)", (STREAM,))
    hot_rounds('hot', 60, admin)
    upd, hot, size = hot_stats(admin)
    ratio = hot / upd if upd else 0
    log(f'hot: n_tup_upd {upd}, n_tup_hot_upd {hot} ({100 * ratio:.1f}%), stream.leases {size // 8192} pages')
    check(upd >= 60 * 12, f'hot: only {upd} updates counted')
    check(ratio >= 0.9, f'hot: only {100 * ratio:.1f}% of {upd} lease updates were HOT')

    # informational: while another transaction holds back the xmin horizon
    q(admin, "SELECT pg_stat_reset_single_table_counters('stream.leases'::regclass)")
    q(admin, "SELECT stream.register_application('hot_xmin', %s)", (STREAM,))
    holder = connect()
    holder.autocommit = False
    q(holder, 'SELECT txid_current()')        # keeps its xid (and xmin) until rollback
    size0 = hot_stats(admin)[2]
    hot_rounds('hot_xmin', 60, admin)
    upd, hot, size = hot_stats(admin)
    holder.rollback()
    holder.close()
    log(f'hot (info, xmin held back): n_tup_upd {upd}, n_tup_hot_upd {hot} '
        f'({100 * hot / max(upd, 1):.1f}%), stream.leases {size0 // 8192} -> {size // 8192} pages')


ROLE_R, ROLE_N = 'stream_leases_test_reader', 'stream_leases_test_nobody'


def test_privileges(admin):
    log('privileges: leases follow stream read access')
    q(admin, f'CREATE ROLE {ROLE_R} LOGIN')
    q(admin, f'CREATE ROLE {ROLE_N} LOGIN')
    q(admin, "SELECT stream.grant_stream_access(%s, %s, 'read')", (STREAM, ROLE_R))
    r = psycopg2.connect(dbname=DB, user=ROLE_R)
    n = psycopg2.connect(dbname=DB, user=ROLE_N)
    r.autocommit = n.autocommit = True
    sh = shard_id(5)
    try:
        q(r, "SELECT stream.register_application('by_reader', %s)", (STREAM,))
        held = [row[0] for row in q(r, "SELECT shard_id FROM stream.acquire_leases('by_reader', 'rw', '60 s')")]
        check(len(held) == NSHARDS, f'privileges: the reader acquired {len(held)} leases')
        it = q1(r, "SELECT stream.get_lease_iterator('by_reader', 'rw', %s)", (sh,))
        recs = q1(r, 'SELECT (SELECT array_agg(x.sequence_number) FROM unnest(g.records) x) FROM stream.get_records(%s, 5) g', (it,))
        check(recs == PUTS[sh][:5], 'privileges: the reader read the wrong records')
        q(r, "SELECT stream.checkpoint('by_reader', 'rw', %s, %s)", (sh, recs[-1]))
        check(q1(r, "SELECT count(*) FROM stream.application_leases WHERE application_name = 'by_reader'") == NSHARDS,
              'privileges: the reader does not see its leases in stream.application_leases')

        total = q1(admin, 'SELECT count(*) FROM stream.leases')
        for table in ('stream.leases', 'stream.applications'):
            try:
                seen_table = q1(n, f'SELECT count(*) FROM {table}')
                fail(f'privileges: a role without access reads {table} ({seen_table} rows)')
            except psycopg2.Error as e:
                check(e.pgcode == '42501', f'privileges: reading {table} without access failed with {e.pgcode}')
        seen_view = q1(n, 'SELECT count(*) FROM stream.application_leases')
        check(seen_view == 0, f'privileges: a role without access sees {seen_view} of {total} leases (owners, checkpoints) '
                              f'in the view stream.application_leases')
        try:
            q(n, "SELECT count(*) FROM stream.acquire_leases('by_reader', 'intruder', '60 s')")
            fail('privileges: a role without access acquired leases')
        except psycopg2.Error as e:
            check(e.pgcode in ('42704', '42501'), f'privileges: acquire without access failed with {e.pgcode}')
        try:
            q(n, "SELECT stream.checkpoint('by_reader', 'rw', %s, %s)", (sh, PUTS[sh][6]))
            fail('privileges: a role without access checkpointed')
        except psycopg2.Error as e:
            check(e.pgcode in ('42704', '42501'), f'privileges: checkpoint without access failed with {e.pgcode}')
        try:
            q(n, "UPDATE stream.leases SET lease_owner = 'intruder'")
        except psycopg2.Error:
            pass
        check(q1(admin, "SELECT count(*) FROM stream.leases WHERE lease_owner = 'intruder'") == 0,
              'privileges: a role without access changed lease owners')
        check(q1(admin, "SELECT checkpoint FROM stream.leases WHERE application_name = 'by_reader' AND shard_index = 5")
              == PUTS[sh][4], 'privileges: the checkpoint moved')
        q(r, "SELECT stream.release_leases('by_reader', 'rw')")
    finally:
        r.close()
        n.close()


EXE = None
TMP = tempfile.mkdtemp(prefix='kcl_worker_test.')


def build_example(tmp):
    global EXE
    src = os.path.join(ROOT, 'examples', 'kcl_worker.c')
    exe = os.path.join(tmp, 'kcl_worker')
    incdir = subprocess.run(['pg_config', '--includedir'], capture_output=True, text=True, check=True).stdout.strip()
    build = subprocess.run(['cc', '-Wall', '-Wextra', '-Werror', '-O2', '-o', exe, src, f'-I{incdir}', '-lpq'],
                           capture_output=True, text=True)
    if check(build.returncode == 0, f'example: build failed:\n{build.stdout}{build.stderr}'):
        EXE = exe
    return EXE


def test_example(admin, producer):
    log('example: 3 kcl_worker processes drain the stream')
    procs = []
    try:
        exe = build_example(TMP)
        if exe is None:
            return
        q(admin, "SELECT stream.register_application('example', %s)", (STREAM,))
        put_many(producer, 3000)
        outs = []
        for i in (1, 2, 3):
            out = open(os.path.join(TMP, f'w{i}.out'), 'w+')
            err = open(os.path.join(TMP, f'w{i}.err'), 'w+')
            outs.append((out, err))
            procs.append(subprocess.Popen(
                [exe, '-d', f'dbname={DB}', '-a', 'example', '-w', f'ex{i}', '-l', '3', '-n', '200',
                 '-i', '50', '-t', '50', '-v'], stdout=out, stderr=err))
        deadline = time.monotonic() + 35
        more = 6
        done = False
        while time.monotonic() < deadline:
            if more > 0:
                put_many(producer, 100)     # records keep arriving while the workers run
                more -= 1
            ls = leases(admin, 'example')
            drained = more == 0 and all(ls[sh][2] == last_seq(sh) for sh in PUTS)
            counts = sorted(sum(1 for v in ls.values() if v[0] == f'ex{i}' and v[1]) for i in (1, 2, 3))
            if drained and counts == [4, 4, 4]:
                done = True
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.3)
        ls = leases(admin, 'example')
        counts = sorted(sum(1 for v in ls.values() if v[0] == f'ex{i}' and v[1]) for i in (1, 2, 3))
        log(f'example: lease counts {counts}')
        check(all(p.poll() is None for p in procs), 'example: a worker exited early')
        check(done, f'example: not drained and balanced in time: counts {counts}, '
                    f'behind: {[sh for sh in PUTS if ls[sh][2] != last_seq(sh)]}')
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for i, p in enumerate(procs, 1):
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = 'killed'
            check(rc == 0, f'example: worker ex{i} exited with {rc}')
        seen = {}
        for i, (out, err) in enumerate(outs, 1):
            out.flush()
            out.seek(0)
            for line in out:
                parts = line.rstrip('\n').split(' ')
                if len(parts) == 4:
                    seen[parts[1]] = (parts[0], parts[2], parts[3])
            err.seek(0)
            errtext = err.read()
            check('released' in errtext, f'example: worker ex{i} did not report releasing its leases:\n{errtext[-2000:]}')
            check('failed' not in errtext, f'example: worker ex{i} reported errors:\n{errtext[-2000:]}')
        missing = [s for v in PUTS.values() for s in v if s not in seen]
        check(not missing, f'example: {len(missing)} of {len(RECORDS)} records never printed by a worker, e.g. {missing[:3]}')
        wrong = [s for s, (sh, pk, data) in seen.items()
                 if s in RECORDS and (RECORDS[s] != (pk, data) or s not in PUTS.get(sh, ()))]
        check(not wrong, f'example: {len(wrong)} records printed with the wrong shard, key or data, e.g. {wrong[:3]}')
        check(all(v[0] is None for v in leases(admin, 'example').values()),
              'example: leases still owned after the workers released them')
        log(f'example: {len(seen)} distinct records processed of {len(RECORDS)}')
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_example_split(admin, producer):
    log('example_split: the example worker finishes a parent before its children')
    if EXE is None:
        fail('example_split: no kcl_worker binary')
        return
    q(admin, "SELECT stream.create_stream('wsplit', 1)")
    sid = q1(admin, "SELECT stream_id FROM stream.streams WHERE stream_name = 'wsplit'")
    q(admin, "SELECT stream.register_application('wsplit_app', 'wsplit')")

    def put_w(n, tag):
        keys = [f'{tag}{i}' for i in range(n)]
        return q(producer, "SELECT shard_id, sequence_number FROM stream.put_records('wsplit', %s, %s::bytea[])",
                 (keys, [psycopg2.Binary(f'{tag}-data-{i}'.encode()) for i in range(n)]))

    pre = put_w(300, 'pre')
    last = q1(admin, 'SELECT seq FROM stream_internal._sequence_parts(%s)', (pre[-1][1],))
    q(admin, 'UPDATE stream.shards SET ending_seq = %s, closed_at = now() WHERE stream_id = %s AND shard_index = 0', (last, sid))
    lo, hi = [int(x) for x in q(admin, 'SELECT starting_hash_key, ending_hash_key FROM stream.shards '
                                       'WHERE stream_id = %s AND shard_index = 0', (sid,))[0]]
    mid = (lo + hi) // 2
    for idx, a, b in ((1, lo, mid), (2, mid + 1, hi)):
        q(admin, 'INSERT INTO stream.shards (stream_id, shard_index, parent_shard_index, starting_hash_key, '
                 'ending_hash_key, starting_seq) VALUES (%s, %s, 0, %s, %s, %s)', (sid, idx, a, b, last + 1))
    q(admin, 'SELECT stream_internal._catalog_changed()')
    post = put_w(300, 'post')
    last_child = {}
    for sh, seq in post:
        last_child[sh] = max(last_child.get(sh, seq), seq)
    check(set(last_child) == {shard_id(1), shard_id(2)}, f'example_split: post-split records went to {sorted(last_child)}')
    out = tempfile.TemporaryFile(mode='w+')
    err = tempfile.TemporaryFile(mode='w+')
    p = subprocess.Popen([EXE, '-d', f'dbname={DB}', '-a', 'wsplit_app', '-w', 'ws', '-l', '1.5', '-n', '40',
                          '-i', '20', '-t', '30', '-v'], stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 20
        done = False
        while time.monotonic() < deadline and p.poll() is None:
            ls = leases(admin, 'wsplit_app')
            if ls.get(shard_id(0), (None,) * 3)[2] == 'SHARD_END' and \
                    all(ls.get(sh, (None,) * 3)[2] == seq for sh, seq in last_child.items()):
                done = True
                break
            time.sleep(0.2)
        check(done, f'example_split: not drained: {leases(admin, "wsplit_app")}')
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=10) == 0, 'example_split: the worker did not exit cleanly')
        out.seek(0)
        lines = [line.split(' ') for line in out.read().splitlines()]
        shards_in_order = [parts[0] for parts in lines]
        seen = {parts[1] for parts in lines}
        check(all(seq in seen for _, seq in pre + post), 'example_split: records missing from the worker output')
        first_child = next((i for i, sh in enumerate(shards_in_order) if sh != shard_id(0)), len(shards_in_order))
        check(shard_id(0) not in shards_in_order[first_child:],
              'example_split: the worker printed a child record before the last parent record')
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    admin = create_db(roles=(ROLE_R, ROLE_N), extension=True)
    producer = None
    try:
        q(admin, 'SELECT stream.create_stream(%s, %s)', (STREAM, NSHARDS))
        producer = connect()
        put_many(producer, 1200)
        run_subtests((('convergence', test_convergence, (admin,)),
                      ('failover', test_failover, (admin, producer)),
                      ('monotonic', test_monotonic, (admin,)),
                      ('parents', test_parents, (admin, producer)),
                      ('concurrency', test_concurrency, (admin,)),
                      ('hot', test_hot, (admin,)),
                      ('privileges', test_privileges, (admin,)),
                      ('example', test_example, (admin, producer)),
                      ('example_split', test_example_split, (admin, producer))))
    finally:
        for c in (admin, producer):
            if c is not None:
                c.close()
        shutil.rmtree(TMP, ignore_errors=True)
        drop_db(roles=(ROLE_R, ROLE_N))
    finish()


if __name__ == '__main__':
    main()
