#!/usr/bin/python3
"""Crash loop around splits and merges: nothing lands after a parent's end.

The body of test/t/008_resharding_crash.pl, which makes a throw-away node and
runs this against it; this kills that node with SIGKILL, round after round,
and nothing else (threads of producers keep committing while the main thread
reshards and crashes: Python, run by the TAP test).

Each round two producer threads put keyed records (a counter per key;
put_record, put_records, small transactions) while the main thread splits
or merges the stream, sometimes leaving the resharding transaction open,
and crashes the server at a random moment: SIGKILL of the postmaster, of a
client backend (crash recovery by the postmaster) or an immediate stop.
After every restart:
  - no stored record lies outside its shard's sequence range (none after a
    closed parent's ending sequence number, none before a shard's start),
    and children start above their parents' ends;
  - the open shards partition the hash key space, and puts at the edges of
    every open shard (explicit hash keys) land in that shard;
  - every committed record is stored, none rolled back;
  - per key, every record of a parent has a smaller counter than every
    record of its children (the close is exact also across crashes).
In the end every shard is read from TRIM_HORIZON to its end: each stored
record once, closed shards end with their children.

    make prove_installcheck PROVE_TESTS=test/t/008_resharding_crash.pl                         # 10 rounds
    STREAM_CRASH_ROUNDS=40 make prove_installcheck PROVE_TESTS=test/t/008_resharding_crash.pl  # longer
STREAM_CRASH_SEED fixes the random schedule (printed at the start, in
tmp_check/log/regress_log_008_resharding_crash).
"""
import os
import random
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, fail, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

st.require_tap_node()
DB = 'stream_reshard_crash'
st.configure(DB, statement_timeout='60s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_CRASH_ROUNDS', '10'))
SEED = int(os.environ.get('STREAM_CRASH_SEED', str(int(time.time()))))
rng = random.Random(SEED)
SPACE = 1 << 128


class Fates:
    def __init__(self):
        self.lock = threading.Lock()
        self.committed = {}         # (key, counter) -> (shard, seq)
        self.uncertain = set()      # (key, counter): COMMIT sent, no answer
        self.rolled_back = set()


fates = Fates()


class Producer(threading.Thread):
    def __init__(self, idx, seed):
        super().__init__(daemon=True)
        self.idx = idx
        self.r = random.Random(seed)
        self.stop = threading.Event()
        self.counters = {}
        self.done = 0

    def nxt(self):
        key = f'p{self.idx}-k{self.r.randrange(20)}'
        self.counters[key] = self.counters.get(key, 0) + 1
        return key, self.counters[key]

    def one(self, conn):
        items = [self.nxt() for _ in range(self.r.randint(1, 12))]
        rollback = self.r.random() < 0.1
        with conn.cursor() as cur:
            cur.execute('BEGIN')
            rows = []
            if self.r.random() < 0.5:
                cur.execute('SELECT shard_id, sequence_number FROM stream.put_records(%s, %s, %s::bytea[])',
                            ('rc', [k for k, _ in items], [psycopg2.Binary(f'{k}:{n}'.encode()) for k, n in items]))
                rows = cur.fetchall()
            else:
                for k, n in items:
                    cur.execute('SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s)',
                                ('rc', k, f'{k}:{n}'.encode()))
                    rows += cur.fetchall()
            if rollback:
                cur.execute('ROLLBACK')
                with fates.lock:
                    fates.rolled_back.update(items)
                return
            with fates.lock:
                fates.uncertain.update(items)
            cur.execute('COMMIT')
            with fates.lock:
                fates.uncertain.difference_update(items)
                for it, row in zip(items, rows):
                    fates.committed[it] = row
        self.done += 1

    def run(self):
        st.reconnecting_loop(self.stop, self.one)


def open_shards(conn):
    return [(r[0], int(r[1]), int(r[2])) for r in
            q(conn, "SELECT shard_id, starting_hash_key, ending_hash_key FROM stream.list_shards('rc', shard_filter => 'AT_LATEST') "
                    "ORDER BY starting_hash_key")]


def reshard(conn, keep_open):
    """A random split or merge; with keep_open the transaction stays open (the crash ends it)."""
    shards = open_shards(conn)
    conn.autocommit = False
    with conn.cursor() as cur:
        if len(shards) < 2 or (len(shards) < 6 and rng.random() < 0.55):
            sh, lo, hi = rng.choice(shards)
            cur.execute('SELECT stream.split_shard(%s, %s, %s)', ('rc', sh, str(rng.randint(lo + 2, hi - 1))))
            what = f'split {sh}'
        else:
            i = rng.randrange(len(shards) - 1)
            cur.execute('SELECT stream.merge_shards(%s, %s, %s)', ('rc', shards[i][0], shards[i + 1][0]))
            what = f'merge {shards[i][0]} {shards[i + 1][0]}'
    if not keep_open:
        conn.commit()
        conn.autocommit = True
    return what + (' (left open)' if keep_open else '')


def check_invariants(conn, rnd):
    where = f'round {rnd}'
    sid = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name = 'rc'")
    bad = q(conn, f'SELECT sh.shard_index, d.seq, sh.starting_seq, sh.ending_seq FROM stream_data.s{sid} d '
                  f'JOIN stream.shards sh ON sh.stream_id = {sid} AND sh.shard_index = d.shard_id '
                  'WHERE d.seq > sh.ending_seq OR d.seq < sh.starting_seq LIMIT 5')
    check(not bad, f'{where}: records outside their shard\'s range (shard, seq, start, end): {bad}')
    bad = q1(conn, 'SELECT count(*) FROM stream.shards c JOIN stream.shards p ON p.stream_id = c.stream_id '
                   'AND p.shard_index IN (c.parent_shard_index, c.adjacent_parent_shard_index) '
                   'WHERE c.stream_id = %s AND (p.ending_seq IS NULL OR c.starting_seq <= p.ending_seq)', (sid,))
    check(bad == 0, f'{where}: {bad} children start at or below an open or later-ending parent')
    shards = open_shards(conn)
    pos = 0
    for sh, lo, hi in shards:
        check(lo == pos, f'{where}: open shards leave a gap or overlap at {pos} ({sh} starts at {lo})')
        pos = hi + 1
    check(pos == SPACE, f'{where}: open shards end at {pos}, not 2^128')
    for sh, lo, hi in shards:
        for key in (lo, hi):
            got = q1(conn, "SELECT shard_id FROM stream.put_record('rc', 'edge', '\\x00', %s)", (str(key),))
            check(got == sh, f'{where}: explicit hash key {key} went to {got}, not the open shard {sh}')
    with fates.lock:        # before reading what is stored: later commits are not looked for
        committed = dict(fates.committed)
        rolled = set(fates.rolled_back)
    stored = {r[0] for r in q(conn, f'SELECT stream_internal._sequence_text({sid}, shard_id, seq) FROM stream_data.s{sid}')}
    lost = [it for it, (sh, seqtext) in committed.items() if seqtext not in stored]
    check(not lost, f'{where}: {len(lost)} committed records are missing, e.g. {lost[:3]}')
    keys = q(conn, f"SELECT d.shard_id, convert_from(d.data, 'UTF8') FROM stream_data.s{sid} d WHERE d.partition_key <> 'edge'")
    back = [d for _, d in keys if tuple((d.rsplit(':', 1)[0], int(d.rsplit(':', 1)[1]))) in rolled]
    check(not back, f'{where}: rolled-back records stored: {back[:3]}')
    # per key: a parent's counters below its children's
    by = {}
    for shard, d in keys:
        k, n = d.rsplit(':', 1)
        lo_hi = by.setdefault((k, shard), [int(n), int(n)])
        lo_hi[0] = min(lo_hi[0], int(n))
        lo_hi[1] = max(lo_hi[1], int(n))
    lineage = q(conn, 'SELECT shard_index, parent_shard_index, adjacent_parent_shard_index FROM stream.shards WHERE stream_id = %s', (sid,))
    wrong = []
    for child, p1, p2 in lineage:
        for par in (p1, p2):
            if par is None:
                continue
            for (k, shard), (lo, hi) in by.items():
                if shard == par and (k, child) in by and hi >= by[(k, child)][0]:
                    wrong.append((k, par, hi, child, by[(k, child)][0]))
    check(not wrong, f'{where}: a parent holds a counter at or above its child\'s (key, parent, max, child, min): {wrong[:3]}')


def read_everything(conn):
    shards = q(conn, "SELECT shard_id, ending_sequence_number IS NOT NULL FROM stream.list_shards('rc') ORDER BY shard_id")
    total = 0
    for sh, closed in shards:
        it = q1(conn, "SELECT stream.get_shard_iterator('rc', %s, 'TRIM_HORIZON')", (sh,))
        seen = []
        for _ in range(10000):
            recs, it, children = q(conn, 'SELECT (SELECT array_agg(r.sequence_number) FROM unnest(g.records) r), '
                                         'g.next_shard_iterator, g.child_shards FROM stream.get_records(%s, 5000) g', (it,))[0]
            seen += recs or []
            if it is None or not recs:
                break
        check(len(seen) == len(set(seen)), f'read: {sh} returned a record twice')
        check((it is None) == closed, f'read: {sh} closed={closed} but next iterator {"NULL" if it is None else "set"}')
        if closed:
            check(bool(children), f'read: closed {sh} ended without child shards')
        total += len(seen)
    sid = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name = 'rc'")
    stored = q1(conn, f'SELECT count(*) FROM stream_data.s{sid}')
    check(total == stored, f'read: {total} records read from TRIM_HORIZON, {stored} stored')


def main():
    say(f'seed {SEED}, {ROUNDS} rounds')
    conn = st.create_db(extension=True)
    q(conn, "SELECT stream.create_stream('rc', 2)")
    prods = [Producer(i, rng.random()) for i in range(2)]
    for p in prods:
        p.start()
    kinds = {}
    for rnd in range(1, ROUNDS + 1):
        time.sleep(rng.uniform(0.2, 0.8))
        try:
            did = [reshard(conn, keep_open=False) for _ in range(rng.randint(0, 2))]
            did.append(reshard(conn, keep_open=rng.random() < 0.4))
        except psycopg2.Error as e:
            fail(f'round {rnd}: reshard failed: {e}')
            did = []
        time.sleep(rng.uniform(0.0, 0.3))
        how = rng.choice(['kill', 'kill', 'backend', 'immediate'])
        kinds[how] = kinds.get(how, 0) + 1
        st.crash(how)
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        conn = st.connect_when_up()
        say(f'round {rnd}: {", ".join(did)}; crash by {how}')
        with fates.lock:
            # commits whose answer was lost: stored or not, either is right
            fates.uncertain.clear()
        check_invariants(conn, rnd)
    for p in prods:
        p.stop.set()
    for p in prods:
        p.join(timeout=30)
    conn.close()
    conn = st.connect_when_up()
    check_invariants(conn, 'end')
    read_everything(conn)
    say(f'crashes: {kinds}; committed records: {len(fates.committed)}; '
        f'open shards at the end: {len(open_shards(conn))}; producer transactions: {sum(p.done for p in prods)}')
    conn.close()


st.main_wrapper(main, lambda: st.drop_db(on_error=st.warn))
