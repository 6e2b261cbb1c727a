#!/usr/bin/python3
"""Concurrency test for the stream extension.

Several producers put records (put_record and put_records) inside explicit
transactions, ~20% of which roll back (fully, or a part via ROLLBACK TO
SAVEPOINT).  One extra connection holds a long open transaction that put a
record on every shard.  Two readers follow shard iterators while all this
happens and until drained.  Checks, per reader:

  * every committed record is seen exactly once, with the shard, sequence
    number, partition key and data returned by the put;
  * nothing from a rolled-back transaction or savepoint is ever seen;
  * sequence numbers are strictly increasing per shard (text comparison);
  * per partition key, the order of the records equals the put order;
  * the records of the long transaction are seen, after it committed;
  * one reader does several get_records calls in a row inside REPEATABLE READ
    transactions: it must not skip records either (final tally);
  * producers never block on another producer's open transaction: while the
    long transaction is open, every put to the same shards returns in < 1 s.

Finally a deterministic check: a REPEATABLE READ reader whose snapshot was
taken before another session committed a record must not skip that record.

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh).
Exit status 0 = pass, 1 = failure.
"""

import hashlib
import os
import random
import sys
import threading
import time
import traceback

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import T0 as T_START, configure, connect, fail, failures, log  # noqa: E402
from streamtest import create_db, drop_db, get_records_sql, main_wrapper  # noqa: E402

DB = 'stream_conc_test'
STREAM = 'conc'
NSHARDS = 4
NPRODUCERS = 4
NREADERS = 2
PRODUCE_SECONDS = float(os.environ.get('CONC_PRODUCE_SECONDS', '14'))
LONG_TXN_DELAY = 3.0        # long transaction starts this long after the producers
LONG_TXN_SECONDS = 5.0      # and stays open this long
PUT_LATENCY_LIMIT = 1.0     # seconds, for puts while the long transaction is open
READ_LATENCY_LIMIT = 2.0    # seconds, for any get_records call
DRAIN_SECONDS = 30.0
DEADLINE = T_START + 110.0  # nothing may run past this

configure(DB, statement_timeout='30s', lock_timeout='30s')
abort = threading.Event()


def seq_ok(seq, shard_index):
    """DESIGN.md: 40 decimal digits, '4' + 19-digit seq + 10-digit stream id + 10-digit shard index."""
    return (isinstance(seq, str) and len(seq) == 40 and seq.isdigit() and seq[0] == '4'
            and int(seq[30:]) == shard_index)


def shard_index(shard_id):
    return int(shard_id.rsplit('-', 1)[1])


# --------------------------------------------------------------------------
# set-up

def setup():
    conn = create_db(extension=True)
    with conn.cursor() as cur:
        cur.execute('SELECT stream.create_stream(%s, %s)', (STREAM, NSHARDS))
        cur.execute('SELECT shard_id, starting_hash_key, ending_hash_key '
                    'FROM stream.list_shards(%s) ORDER BY shard_id', (STREAM,))
        shards = [(r[0], int(r[1]), int(r[2])) for r in cur.fetchall()]
    conn.close()
    if len(shards) != NSHARDS:
        raise SystemExit(f'FAIL: list_shards returned {len(shards)} shards, expected {NSHARDS}')
    return shards


# --------------------------------------------------------------------------
# shared state

class State:
    def __init__(self, shards):
        self.shards = shards                      # [(shard_id, start, end)]
        self.shard_ids = [s[0] for s in shards]
        self.lock = threading.Lock()
        self.committed = {}                       # (pid, counter) -> rec
        self.rolled = {}                          # (pid, counter) -> rec
        self.put_calls = []                       # (t_start, t_end, shard_ids)
        self.produce_start = None
        self.long_open_at = None                  # monotonic, after its puts returned
        self.long_commit_at = None                # monotonic, just before COMMIT
        self.long_committed_at = None             # monotonic, after COMMIT returned
        self.writers_done = threading.Event()
        self.stop_readers = threading.Event()

    def shard_of(self, key):
        h = int.from_bytes(hashlib.md5(key.encode()).digest(), 'big')
        for sid, lo, hi in self.shards:
            if lo <= h <= hi:
                return sid
        raise AssertionError(f'hash of {key!r} not covered by list_shards ranges')


def keys_for_producer(state, pid):
    """Three partition keys for producer pid, on shards pid, pid+1, pid+2 (mod 4)."""
    keys = []
    for j in range(3):
        want = state.shard_ids[(pid + j) % NSHARDS]
        n = 0
        while True:
            k = f'p{pid}-k{j}-{n}'
            if state.shard_of(k) == want:
                keys.append(k)
                break
            n += 1
    return keys


# --------------------------------------------------------------------------
# producers

def make_data(pid, counter, intent, pk, rnd):
    pad = rnd.randbytes(rnd.randint(0, 64))
    return f'{pid}|{counter}|{intent}|{pk}|'.encode() + pad


def producer(state, pid):
    rnd = random.Random(1000 + pid)
    keys = keys_for_producer(state, pid)
    counter = 0
    last_seq = {}
    n_txn = {'commit': 0, 'rollback': 0, 'sp_rollback': 0, 'sp_release': 0, 'sp_error': 0}
    try:
        conn = connect()
        cur = conn.cursor()
        end = state.produce_start + PRODUCE_SECONDS
        while time.monotonic() < end and not abort.is_set():
            r = rnd.random()
            if r < 0.10:
                kind = 'rollback'
            elif r < 0.20:
                kind = 'sp_rollback'
            elif r < 0.30:
                kind = 'sp_release'
            else:
                kind = 'commit'
            n_txn[kind] += 1
            recs = []          # records of this transaction, in put order

            def do_ops(intent, n_ops):
                nonlocal counter
                for _ in range(n_ops):
                    batch = []
                    nrec = 1 if rnd.random() < 0.5 else rnd.randint(2, 6)
                    for _ in range(nrec):
                        counter += 1
                        pk = rnd.choice(keys)
                        batch.append({'pid': pid, 'counter': counter, 'intent': intent, 'pk': pk,
                                      'data': make_data(pid, counter, intent, pk, rnd),
                                      'exp_shard': state.shard_of(pk)})
                    t0 = time.monotonic()
                    if nrec == 1 and rnd.random() < 0.8:
                        b = batch[0]
                        cur.execute('SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s)',
                                    (STREAM, b['pk'], psycopg2.Binary(b['data'])))
                        rows = [(*row, None, None) for row in cur.fetchall()]
                    else:
                        cur.execute('SELECT shard_id, sequence_number, error_code, error_message '
                                    'FROM stream.put_records(%s, %s::text[], %s::bytea[])',
                                    (STREAM, [b['pk'] for b in batch],
                                     [psycopg2.Binary(b['data']) for b in batch]))
                        rows = cur.fetchall()
                    t1 = time.monotonic()
                    with state.lock:
                        state.put_calls.append((t0, t1, {b['exp_shard'] for b in batch}))
                    if len(rows) != len(batch):
                        fail(f'producer {pid}: put returned {len(rows)} rows for {len(batch)} records')
                        abort.set()
                        return
                    for b, (sid, seq, ecode, emsg) in zip(batch, rows):
                        if ecode is not None or emsg is not None:
                            fail(f'producer {pid}: put_records entry failed: {ecode}: {emsg}')
                        if sid != b['exp_shard']:
                            fail(f'producer {pid}: pk {b["pk"]!r} went to {sid}, expected {b["exp_shard"]} '
                                 f'(MD5 hash key routing)')
                        if not seq_ok(seq, shard_index(sid or 'x-0')):
                            fail(f'producer {pid}: malformed sequence number {seq!r} for shard {sid}')
                        if sid in last_seq and not seq > last_seq[sid]:
                            fail(f'producer {pid}: sequence number {seq} on {sid} not greater than this '
                                 f'producer\'s previous one {last_seq[sid]}')
                        last_seq[sid] = seq
                        b['shard'] = sid
                        b['seq'] = seq
                        recs.append(b)

            cur.execute('BEGIN')
            if kind == 'rollback':
                do_ops('R', rnd.randint(1, 4))
                cur.execute('ROLLBACK')
            elif kind == 'commit':
                do_ops('C', rnd.randint(1, 4))
                cur.execute('COMMIT')
            else:
                do_ops('C', rnd.randint(0, 2))
                cur.execute('SAVEPOINT sp1')
                if kind == 'sp_release':
                    do_ops('C', rnd.randint(1, 2))
                    cur.execute('RELEASE SAVEPOINT sp1')
                else:
                    do_ops('R', rnd.randint(1, 2))
                    if rnd.random() < 0.5:
                        # an error inside the savepoint part: subtransaction abort path
                        n_txn['sp_error'] += 1
                        try:
                            cur.execute('SELECT * FROM stream.put_record(%s, %s, %s)',
                                        ('no_such_stream_x', 'k', psycopg2.Binary(b'x')))
                            fail('put_record to a nonexistent stream did not raise')
                        except psycopg2.Error:
                            pass
                    cur.execute('ROLLBACK TO SAVEPOINT sp1')
                do_ops('C', rnd.randint(0, 2))
                cur.execute('COMMIT')
            with state.lock:
                for b in recs:
                    key = (pid, b['counter'])
                    if kind == 'rollback' or b['intent'] == 'R':
                        state.rolled[key] = b
                    else:
                        state.committed[key] = b
            time.sleep(rnd.random() * 0.01)
        conn.close()
        log(f'producer {pid} done: {counter} records put, transactions {n_txn}')
    except Exception as e:  # noqa: BLE001
        fail(f'producer {pid} raised: {e!r}\n{traceback.format_exc()}')
        abort.set()


def long_transaction(state):
    """Open a transaction that puts one record per shard and stays open for a while."""
    try:
        conn = connect()
        cur = conn.cursor()
        while time.monotonic() < state.produce_start + LONG_TXN_DELAY:
            time.sleep(0.05)
        if abort.is_set():
            return
        cur.execute('BEGIN')
        recs = []
        for i, (sid, lo, _hi) in enumerate(state.shards):
            pk = f'long-{i}'
            data = f'L|{i}|C|{pk}|'.encode()
            # explicit_hash_key = the shard's starting hash key: routes to shard i
            cur.execute('SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s, %s)',
                        (STREAM, pk, psycopg2.Binary(data), str(lo)))
            got_sid, seq = cur.fetchone()
            if got_sid != sid:
                fail(f'long transaction: explicit_hash_key {lo} went to {got_sid}, expected {sid}')
            recs.append({'pid': 'L', 'counter': i, 'intent': 'C', 'pk': pk, 'data': data,
                         'exp_shard': sid, 'shard': got_sid, 'seq': seq})
        state.long_open_at = time.monotonic()
        log(f'long transaction open with one record on each shard: '
            f'{[(r["shard"], r["seq"]) for r in recs]}')
        end = state.long_open_at + LONG_TXN_SECONDS
        while time.monotonic() < end and not abort.is_set():
            time.sleep(0.05)
        state.long_commit_at = time.monotonic()
        cur.execute('COMMIT')
        state.long_committed_at = time.monotonic()
        with state.lock:
            for r in recs:
                state.committed[('L', r['counter'])] = r
        log(f'long transaction committed after {state.long_commit_at - state.long_open_at:.2f}s open')
        conn.close()
    except Exception as e:  # noqa: BLE001
        fail(f'long transaction raised: {e!r}\n{traceback.format_exc()}')
        abort.set()


# --------------------------------------------------------------------------
# readers

GET_RECORDS_SQL = get_records_sql(
    'g.next_shard_iterator, g.millis_behind_latest, '
    'r.sequence_number, r.approximate_arrival_timestamp, r.partition_key, r.data')


class Reader:
    def __init__(self, state, name, use_rr):
        self.state = state
        self.name = name
        self.use_rr = use_rr
        self.rnd = random.Random(name)
        self.iters = {}
        self.last_mbl = {}
        self.last_seq = {}
        self.ncalls = {sid: 0 for sid in state.shard_ids}
        self.seen = []          # (shard, seq, pk, data, arrival, seen_at)
        self.max_latency = 0.0
        self.rr_txns = 0
        self.rr_calls = 0
        self.restarts = 0
        self.thread = None

    def count(self):
        return len(self.seen)

    def new_iterator(self, cur, sid):
        t0 = time.monotonic()
        if sid in self.last_seq:
            cur.execute('SELECT stream.get_shard_iterator(%s, %s, %s, %s)',
                        (STREAM, sid, 'AFTER_SEQUENCE_NUMBER', self.last_seq[sid]))
            self.restarts += 1
        else:
            cur.execute('SELECT stream.get_shard_iterator(%s, %s, %s)', (STREAM, sid, 'TRIM_HORIZON'))
        it = cur.fetchone()[0]
        self.note_latency(time.monotonic() - t0, 'get_shard_iterator')
        if not it:
            raise AssertionError(f'{self.name}: get_shard_iterator returned {it!r} for open shard {sid}')
        self.iters[sid] = it

    def note_latency(self, dt, what):
        self.max_latency = max(self.max_latency, dt)
        if dt > READ_LATENCY_LIMIT:
            fail(f'{self.name}: {what} took {dt:.2f}s (> {READ_LATENCY_LIMIT}s)')

    def get(self, cur, sid, limit):
        """One get_records call on shard sid; returns the number of records."""
        if sid not in self.iters:
            self.new_iterator(cur, sid)
        t0 = time.monotonic()
        cur.execute(GET_RECORDS_SQL, (self.iters[sid], limit))
        rows = cur.fetchall()
        now = time.monotonic()
        self.note_latency(now - t0, 'get_records')
        self.ncalls[sid] += 1
        if not rows:
            raise AssertionError(f'{self.name}: get_records returned no row')
        nxt = rows[0][0]
        self.last_mbl[sid] = rows[0][1]
        if rows[0][1] is None or rows[0][1] < 0:
            fail(f'{self.name}: millis_behind_latest is {rows[0][1]!r}')
        if not nxt:
            raise AssertionError(f'{self.name}: next_shard_iterator is {nxt!r} on open shard {sid}')
        self.iters[sid] = nxt
        n = 0
        for _nxt, _mbl, seq, arrival, pk, data in rows:
            if seq is None:
                continue
            n += 1
            self.seen.append((sid, seq, pk, bytes(data) if data is not None else None, arrival, now))
            self.last_seq[sid] = seq
        if n > limit:
            fail(f'{self.name}: get_records(limit={limit}) returned {n} records')
        return n

    def one_round(self, cur):
        for sid in self.state.shard_ids:
            if self.ncalls[sid] % 5 == 4:
                # periodically restart from AFTER_SEQUENCE_NUMBER of the last record seen
                self.new_iterator(cur, sid)
            self.get(cur, sid, self.rnd.choice([1, 3, 10, 50, 10000]))

    def rr_round(self, cur):
        """Several get_records calls in a row inside one REPEATABLE READ transaction."""
        cur.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
        cur.execute('SELECT 1')   # take the transaction snapshot now
        try:
            for k in range(3):
                for sid in self.state.shard_ids:
                    self.get(cur, sid, self.rnd.choice([2, 5, 10000]))
                    self.rr_calls += 1
                time.sleep(0.01)
            cur.execute('COMMIT')
        except Exception:
            try:
                cur.execute('ROLLBACK')
            except psycopg2.Error:
                pass
            raise
        self.rr_txns += 1

    def drain(self, cur):
        """After the stop signal: read every shard until a call returns nothing."""
        for sid in self.state.shard_ids:
            empties = 0
            while empties < 2 and time.monotonic() < DEADLINE:
                if self.get(cur, sid, 10000) == 0:
                    empties += 1
            if self.last_mbl.get(sid) != 0:
                fail(f'{self.name}: after reading {sid} to its end (no more records), '
                     f'millis_behind_latest is {self.last_mbl.get(sid)!r}, expected 0')

    def run(self):
        try:
            conn = connect()
            cur = conn.cursor()
            rounds = 0
            while not self.state.stop_readers.is_set() and not abort.is_set() and time.monotonic() < DEADLINE:
                rounds += 1
                if self.use_rr and rounds % 2 == 0:
                    self.rr_round(cur)
                else:
                    self.one_round(cur)
                time.sleep(0.005)
            self.drain(cur)
            conn.close()
        except Exception as e:  # noqa: BLE001
            fail(f'{self.name} raised: {e!r}\n{traceback.format_exc()}')
            abort.set()


# --------------------------------------------------------------------------
# checks

def check_reader(state, rd):
    name = rd.name
    committed = state.committed
    rolled = state.rolled
    seen_keys = {}
    bad = 0

    def bad_msg(msg):
        nonlocal bad
        bad += 1
        if bad <= 15:
            fail(f'{name}: {msg}')

    # parse and classify
    per_shard_last = {}
    per_pk = {}
    for sid, seq, pk, data, arrival, seen_at in rd.seen:
        if sid in per_shard_last and not seq > per_shard_last[sid]:
            bad_msg(f'sequence numbers not strictly increasing on {sid}: {seq} after {per_shard_last[sid]}')
        per_shard_last[sid] = seq
        try:
            fields = data.split(b'|', 4)
            pid = fields[0].decode()
            pid = 'L' if pid == 'L' else int(pid)
            counter = int(fields[1])
            intent = fields[2].decode()
        except Exception:  # noqa: BLE001
            bad_msg(f'unparsable record data {data!r} (seq {seq} on {sid})')
            continue
        key = (pid, counter)
        if key in seen_keys:
            bad_msg(f'record {key} (seq {seq} on {sid}) seen twice')
            continue
        seen_keys[key] = (sid, seq)
        if key in rolled:
            bad_msg(f'record {key} from a rolled-back transaction/savepoint is visible '
                    f'(seq {seq} on {sid}, intent {intent})')
            continue
        if key not in committed:
            bad_msg(f'record {key} (seq {seq} on {sid}, intent {intent}) was never committed by a producer')
            continue
        rec = committed[key]
        if intent != 'C':
            bad_msg(f'record {key} carries intent {intent!r} but was committed')
        if (rec['shard'], rec['seq']) != (sid, seq):
            bad_msg(f'record {key}: read at {sid}/{seq}, put returned {rec["shard"]}/{rec["seq"]}')
        if rec['pk'] != pk:
            bad_msg(f'record {key}: partition key {pk!r}, put {rec["pk"]!r}')
        if rec['data'] != data:
            bad_msg(f'record {key}: data differs from what was put')
        if arrival is None:
            bad_msg(f'record {key}: approximate_arrival_timestamp is NULL')
        if pid == 'L' and state.long_commit_at is not None and seen_at < state.long_commit_at:
            bad_msg(f'long-transaction record {key} seen before the transaction committed')
        per_pk.setdefault(pk, []).append(counter)

    missing = [k for k in committed if k not in seen_keys]
    if missing:
        missing.sort(key=lambda k: (committed[k]['shard'], committed[k]['seq']))
        details = ', '.join(f'{k}@{committed[k]["shard"]}/{committed[k]["seq"]}' for k in missing[:10])
        bad_msg(f'{len(missing)} of {len(committed)} committed records never seen, e.g. {details}')
        # context for the first missing record: what the reader saw around it
        k = missing[0]
        sid, seq = committed[k]['shard'], committed[k]['seq']
        around = [s for (sh, s, *_rest) in rd.seen if sh == sid]
        before = [s for s in around if s < seq][-3:]
        after = [s for s in around if s > seq][:3]
        fail(f'{name}: around missing {sid}/{seq} the reader saw ... {before} | {after} ...')

    # per partition key order = put order
    expected_pk = {}
    for (pid, counter), rec in committed.items():
        expected_pk.setdefault(rec['pk'], []).append((rec['seq'], counter))
    for pk, lst in expected_pk.items():
        by_counter = [c for _s, c in sorted(lst, key=lambda x: x[1])]
        by_seq = [c for _s, c in sorted(lst)]
        if by_counter != by_seq:
            bad_msg(f'partition key {pk!r}: put order and sequence number order differ')
        got = per_pk.get(pk, [])
        if not missing and got != by_counter:
            bad_msg(f'partition key {pk!r}: read order {got[:20]}... differs from put order {by_counter[:20]}...')

    long_seen = sum(1 for k in seen_keys if k[0] == 'L')
    log(f'{name}: {len(rd.seen)} records read, {len(seen_keys)} distinct, {long_seen}/{NSHARDS} '
        f'long-transaction records; calls per shard {rd.ncalls}; AFTER_SEQUENCE_NUMBER restarts '
        f'{rd.restarts}; REPEATABLE READ transactions {rd.rr_txns} ({rd.rr_calls} calls); '
        f'max read latency {rd.max_latency * 1000:.0f} ms')
    return bad == 0


def check_latency(state):
    lo, hi = state.long_open_at, state.long_commit_at
    if lo is None or hi is None:
        fail('long transaction did not run')
        return
    overall = max((t1 - t0 for t0, t1, _ in state.put_calls), default=0.0)
    window = [(t0, t1, shards) for t0, t1, shards in state.put_calls if t0 < hi and t1 > lo]
    wmax = max((t1 - t0 for t0, t1, _ in window), default=0.0)
    per_shard = {sid: 0 for sid in state.shard_ids}
    slow = []
    for t0, t1, shards in window:
        for s in shards:
            per_shard[s] += 1
        if t1 - t0 >= PUT_LATENCY_LIMIT:
            slow.append((round(t0 - lo, 2), round(t1 - t0, 2), sorted(shards)))
    log(f'put calls: {len(state.put_calls)} total, max latency {overall * 1000:.0f} ms; '
        f'{len(window)} while the long transaction was open ({hi - lo:.1f}s), '
        f'max latency {wmax * 1000:.0f} ms, calls per shard {per_shard}')
    if slow:
        fail(f'{len(slow)} put calls took >= {PUT_LATENCY_LIMIT}s while the long transaction was open '
             f'(offset into window, seconds, shards): {slow[:10]}')
    for sid, n in per_shard.items():
        if n < 5:
            fail(f'only {n} put calls to {sid} while the long transaction was open: producers were '
                 f'blocked or too slow (need >= 5 to show they keep going)')


def rr_deterministic_check():
    """A REPEATABLE READ reader whose snapshot predates a commit must not skip that record."""
    log('deterministic REPEATABLE READ check')
    r = connect()
    w = connect()
    rc, wc = r.cursor(), w.cursor()
    sid = 'shardId-000000000000'
    wc.execute("SELECT stream.create_stream('conc_rr', 1)")
    wc.execute("SELECT sequence_number FROM stream.put_record('conc_rr', 'a', 'before'::bytea)")
    s1 = wc.fetchone()[0]
    rc.execute("SELECT stream.get_shard_iterator('conc_rr', %s, 'TRIM_HORIZON')", (sid,))
    it = rc.fetchone()[0]
    seen = []

    def get(limit=10000):
        nonlocal it
        rc.execute(GET_RECORDS_SQL, (it, limit))
        rows = rc.fetchall()
        it = rows[0][0]
        for row in rows:
            if row[2] is not None:
                seen.append((row[2], bytes(row[5])))

    rc.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
    get()                                   # snapshot taken here; sees 'before'
    wc.execute("SELECT sequence_number FROM stream.put_record('conc_rr', 'a', 'after'::bytea)")
    s2 = wc.fetchone()[0]                   # committed (autocommit) after the reader's snapshot
    get()                                   # same RR transaction: may or may not see it, must not skip it
    get()
    rc.execute('COMMIT')
    get()                                   # new transaction: must see it now if not before
    get()
    wc.execute("SELECT sequence_number FROM stream.put_record('conc_rr', 'a', 'later'::bytea)")
    s3 = wc.fetchone()[0]
    for _ in range(3):
        get()
    expected = [(s1, b'before'), (s2, b'after'), (s3, b'later')]
    ok = seen == expected
    if not ok:
        fail(f'REPEATABLE READ reader: put "before" (seq {s1}), reader BEGIN ISOLATION LEVEL REPEATABLE '
             f'READ + get_records, another session put+committed "after" (seq {s2}), reader get_records x2, '
             f'COMMIT, get_records x2, put "later" (seq {s3}), get_records: expected to read '
             f'{expected}, read {seen}')
    else:
        log('  REPEATABLE READ reader did not skip the record committed after its snapshot')
    r.close()
    w.close()


# --------------------------------------------------------------------------

def main():
    print(__doc__.strip(), flush=True)
    log(f'PGHOST={os.environ.get("PGHOST")} PGPORT={os.environ.get("PGPORT")} database {DB}')
    shards = setup()
    state = State(shards)
    log(f'stream {STREAM!r} with {NSHARDS} shards; {NPRODUCERS} producers for {PRODUCE_SECONDS:.0f}s, '
        f'{NREADERS} readers (reader-2 uses REPEATABLE READ transactions), one long transaction '
        f'open for {LONG_TXN_SECONDS:.0f}s')
    readers = [Reader(state, 'reader-1', False), Reader(state, 'reader-2', True)]
    for rd in readers:
        rd.thread = threading.Thread(target=rd.run, name=rd.name, daemon=True)
        rd.thread.start()
    state.produce_start = time.monotonic()
    writers = [threading.Thread(target=producer, args=(state, p), name=f'producer-{p}', daemon=True)
               for p in range(NPRODUCERS)]
    writers.append(threading.Thread(target=long_transaction, args=(state,), name='long', daemon=True))
    for t in writers:
        t.start()
    for t in writers:
        t.join(max(0.0, DEADLINE - time.monotonic()))
        if t.is_alive():
            fail(f'{t.name} still running at the deadline (blocked?)')
            abort.set()
    state.writers_done.set()
    ncommitted = len(state.committed)
    log(f'writers done: {ncommitted} committed records, {len(state.rolled)} rolled back')

    # let the readers catch up, then stop them (they do a final drain pass)
    drain_end = min(DEADLINE - 15, time.monotonic() + DRAIN_SECONDS)
    while time.monotonic() < drain_end and not abort.is_set():
        if all(rd.count() >= ncommitted for rd in readers):
            break
        time.sleep(0.2)
    state.stop_readers.set()
    for rd in readers:
        rd.thread.join(max(0.0, DEADLINE - time.monotonic()))
        if rd.thread.is_alive():
            fail(f'{rd.name} still running at the deadline (blocked?)')
            abort.set()

    if abort.is_set():
        if not failures:
            fail('aborted')
    else:
        # sanity: the workload must be meaningful
        nsp = sum(1 for r in state.rolled.values() if r['pid'] != 'L')
        if ncommitted < 200:
            fail(f'only {ncommitted} committed records: workload too small to be meaningful')
        if nsp == 0:
            fail('no rolled-back records: workload did not exercise rollbacks')
        check_latency(state)
        for rd in readers:
            check_reader(state, rd)
        rr_deterministic_check()


if __name__ == '__main__':
    main_wrapper(main, drop_db)
