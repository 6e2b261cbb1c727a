#!/usr/bin/python3
"""Crash loop: no sequence number is reused, no reader skips, delivery is exactly once.

The body of test/t/004_crash_loop.pl (formerly test/scripts/22_crash_loop.py),
which makes a throw-away node and runs this against it; this kills that node
with SIGKILL, round after round, and nothing else.  It stays in Python, run by
the TAP test rather than rewritten in Perl, because its producer thread keeps
committing while the main thread crashes the server, and its readers decode
JSON: threads and psycopg2 say that plainly; the TAP test owns the node.

Each round, inside one wall-clock hour: a producer thread commits puts
(some through savepoints rolled back halfway), rolls back others, and keeps
going while the main thread
  1. rolls back puts of its own, so that the highest numbers handed out
     belong to aborted transactions,
  2. lets readers, one per shard, advance their iterators to the shard's
     stable sequence (past those aborted numbers), keeping the iterators
     across the crash,
  3. crashes the server at a random moment: SIGKILL of the postmaster, of a
     client backend (crash recovery by the postmaster) or an immediate stop.
After the last round every record stored must have been read exactly once
by the readers holding their iterators (a reused number puts a new record
behind an iterator: it is never read), sequence numbers must increase, no
rolled-back record may exist, and a delivery stream reading the same
stream must have delivered each stored record exactly once.

    make prove_installcheck PROVE_TESTS=test/t/004_crash_loop.pl                         # CI: 12 rounds
    STREAM_CRASH_ROUNDS=40 make prove_installcheck PROVE_TESTS=test/t/004_crash_loop.pl  # the full loop
STREAM_CRASH_SEED fixes the random schedule (printed at the start, in
tmp_check/log/regress_log_004_crash_loop).
"""
import json
import os
import random
import shutil
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, fail, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

st.require_tap_node()
DB = 'stream_crash_loop'
st.configure(DB, statement_timeout='60s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_CRASH_ROUNDS', '12'))
SEED = int(os.environ.get('STREAM_CRASH_SEED', str(int(time.time()))))
SHARDS = 3
rng = random.Random(SEED)
WORK = st.workdir('crash_loop')


class Ids:
    """Record ids by fate; a record's id is in its JSON data."""
    def __init__(self):
        self.lock = threading.Lock()
        self.next = 0
        self.committed = set()
        self.uncertain = set()      # COMMIT sent, the server died before answering
        self.rolled_back = set()

    def take(self, n):
        with self.lock:
            lo = self.next
            self.next += n
            return list(range(lo, lo + n))


ids = Ids()


def record(i):
    return json.dumps({'id': i, 'pad': 'x' * (i % 300)}).encode()


def put(cur, batch):
    cur.execute("SELECT count(*) FROM stream.put_records('cl', %s, %s::bytea[])",
                (['k%d' % i for i in batch], [record(i) for i in batch]))


def one_transaction(conn, r):
    """A random transaction; returns after recording the fate of its ids."""
    kind = r.random()
    with conn.cursor() as cur:
        cur.execute('BEGIN')
        if kind < 0.55:             # commit, part of it through a rolled-back savepoint
            keep = ids.take(r.randint(1, 40))
            lost = []
            put(cur, keep[:len(keep) // 2])
            if r.random() < 0.5:
                cur.execute('SAVEPOINT s')
                lost = ids.take(r.randint(1, 20))
                put(cur, lost)
                cur.execute('ROLLBACK TO SAVEPOINT s')
            put(cur, keep[len(keep) // 2:])
            with ids.lock:
                ids.rolled_back.update(lost)
                ids.uncertain.update(keep)
            cur.execute('COMMIT')
            with ids.lock:
                ids.uncertain.difference_update(keep)
                ids.committed.update(keep)
        else:                       # roll back
            lost = ids.take(r.randint(1, 40))
            put(cur, lost)
            with ids.lock:
                ids.rolled_back.update(lost)
            cur.execute('ROLLBACK')


class Producer(threading.Thread):
    def __init__(self, seed):
        super().__init__(daemon=True)
        self.r = random.Random(seed)
        self.stop = threading.Event()
        self.transactions = 0

    def run(self):
        st.reconnecting_loop(self.stop, self.step)

    def step(self, conn):
        one_transaction(conn, self.r)
        self.transactions += 1


class Reader:
    """Follows one shard with get_records, keeping its iterator across crashes."""
    def __init__(self, conn, shard):
        self.shard = shard
        self.it = q1(conn, "SELECT stream.get_shard_iterator('cl', %s, 'TRIM_HORIZON')", (st.shard_id(shard),))
        self.seen = []              # (sequence number, id)

    def catch_up(self, conn):
        """Read until the shard is drained up to its stable sequence."""
        for _ in range(1000):
            rows = q(conn, st.get_records_sql('g.next_shard_iterator, g.millis_behind_latest, '
                                              'r.sequence_number, r.data'), (self.it, 10000))
            got = 0
            for nxt, _behind, seq, data in rows:
                self.it = nxt
                if seq is not None:
                    self.seen.append((seq, json.loads(bytes(data))['id']))
                    got += 1
            if got == 0:
                return


def main():
    say('seed %d, %d rounds, %d shards' % (SEED, ROUNDS, SHARDS))
    conn = st.create_db(extension=True)
    q(conn, "SELECT stream.create_stream('cl', %s)", (SHARDS,))
    q(conn, "SELECT stream.create_delivery_stream('cl_json', source_stream_name => 'cl', destination => %s, "
            "buffer_size_mb => 1, buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')",
      (os.path.join(WORK, 'json'),))
    readers = [Reader(conn, s) for s in range(SHARDS)]
    producer = Producer(rng.random())
    producer.start()
    hour = time.strftime('%H', time.gmtime())
    kinds = {'kill': 0, 'backend': 0, 'immediate': 0}
    for rnd in range(ROUNDS):
        time.sleep(rng.uniform(0.1, 0.6))
        # aborted numbers on top, then readers move past them and hold their iterators
        try:
            with conn.cursor() as cur:
                cur.execute('BEGIN')
                lost = ids.take(rng.randint(SHARDS, 60))
                put(cur, lost)
                with ids.lock:
                    ids.rolled_back.update(lost)
                cur.execute('ROLLBACK')
            for rd in readers:
                rd.catch_up(conn)
        except psycopg2.Error as e:
            fail('round %d: before the crash: %s' % (rnd + 1, e))
        time.sleep(rng.uniform(0.0, 0.3))
        how = rng.choice(['kill', 'kill', 'backend', 'immediate'])
        kinds[how] += 1
        conn.close()
        st.crash(how)
        conn = st.connect_when_up()
        say('round %d: %s; %d committed, %d rolled back, %d uncertain so far'
            % (rnd + 1, how, len(ids.committed), len(ids.rolled_back), len(ids.uncertain)))
    producer.stop.set()
    producer.join(60)
    for rd in readers:
        rd.catch_up(conn)

    # what is stored, read afresh from the start of every shard
    stored = {}
    for s in range(SHARDS):
        last = None
        while True:
            rows = q(conn, "SELECT sequence_number, data FROM stream.read_shard('cl', %s, %s, %s, NULL, 10000)",
                     (st.shard_id(s), 'AFTER_SEQUENCE_NUMBER' if last else 'TRIM_HORIZON', last))
            for seq, data in rows:
                i = json.loads(bytes(data))['id']
                check(i not in stored, 'id %d stored twice' % i)
                stored[i] = (s, seq)
                check(last is None or seq > last, 'shard %d: sequence %s after %s' % (s, seq, last))
                last = seq
            if not rows:
                break
    stored_ids = set(stored)
    check(ids.committed <= stored_ids, '%d committed records are missing, e.g. %r'
          % (len(ids.committed - stored_ids), sorted(ids.committed - stored_ids)[:5]))
    check(not (stored_ids & ids.rolled_back), '%d rolled-back records are stored, e.g. %r'
          % (len(stored_ids & ids.rolled_back), sorted(stored_ids & ids.rolled_back)[:5]))
    check(stored_ids <= ids.committed | ids.uncertain, 'records stored that were never committed')

    skipped = 0
    for rd in readers:
        seqs = [x[0] for x in rd.seen]
        check(all(a < b for a, b in zip(seqs, seqs[1:])), 'shard %d: reader saw numbers out of order' % rd.shard)
        got = [x[1] for x in rd.seen]
        mine = {i for i, (s, _) in stored.items() if s == rd.shard}
        check(len(got) == len(set(got)), 'shard %d: reader saw %d duplicates' % (rd.shard, len(got) - len(set(got))))
        miss = mine - set(got)
        skipped += len(miss)
        check(not miss, 'shard %d: the reader holding its iterator across crashes skipped %d of %d records '
              '(sequence number reused), e.g. %r' % (rd.shard, len(miss), len(mine),
                                                      sorted((stored[i][1], i) for i in miss)[:3]))

    ok = st.wait_for(lambda: q1(conn, "SELECT stream.flush_delivery_stream('cl_json', 60)"), 180, 'flush')
    check(ok, 'flush of cl_json')
    delivered = []
    for p in st.delivered_files(os.path.join(WORK, 'json')):
        for line in open(p, 'rb').read().decode().splitlines():
            delivered.append(json.loads(line)['id'])
    dset = set(delivered)
    check(len(delivered) == len(dset), 'delivery: %d duplicates' % (len(delivered) - len(dset)))
    check(dset == stored_ids, 'delivery: %d stored records never delivered, %d delivered that are not stored'
          % (len(stored_ids - dset), len(dset - stored_ids)))
    say('%d rounds (%s) in hour %s..%s: %d producer transactions, %d records stored '
        '(%d committed, %d of %d uncertain), %d rolled back; readers skipped %d; delivered %d exactly once'
        % (ROUNDS, ', '.join('%d %s' % (v, k) for k, v in kinds.items()), hour, time.strftime('%H', time.gmtime()),
           producer.transactions, len(stored_ids), len(ids.committed), len(stored_ids & ids.uncertain),
           len(ids.uncertain), len(ids.rolled_back), skipped, len(dset)))
    conn.close()


def cleanup():
    try:
        st.start_cluster()
    except Exception as e:  # noqa: BLE001
        st.warn(str(e))
    st.drop_db(on_error=st.warn)
    shutil.rmtree(WORK, ignore_errors=True)


st.main_wrapper(main, cleanup)
