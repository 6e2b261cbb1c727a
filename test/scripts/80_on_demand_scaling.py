#!/usr/bin/python3
"""On-demand scaling by the worker (src/bgw/autoscale.c), with its settings
shortened (ALTER SYSTEM, reset at the end).  Creates and drops its own
database.

  hot     producers put keyed records (a counter per key) whose keys all
          hash into shard 0 of a new ON_DEMAND stream: the worker splits
          shard 0's lineage within a bounded wait, and only it (the other
          shards are cold: at most merged).
  cold    the producers stop: the worker merges the stream back to 4 open
          shards and never below 4 (checked at every poll); while an
          administrator's open transaction holds the stream's row lock
          (add_tags_to_stream) the worker never waits on a lock and merges
          nothing, and goes on once it commits.
  reader  meanwhile one reader follows the shards from TRIM_HORIZON, each
          shard to its end and then its child shards once all their parents
          are done: it reads every committed record exactly once, each key's
          counters in order.
  attack  a role without grants, and one granted read_write on the stream,
          cannot update_stream_mode (nor the worker's internal functions).
"""
import os
import random
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, connect, fail, log, q, q1  # noqa: E402

DB = 'stream_on_demand_test'
st.configure(DB, statement_timeout='60s')
SEED = int(os.environ.get('STREAM_SCALING_SEED', str(int(time.time()))))
QUARTER = 2 ** 126
STREAM = 'od'
SETTINGS = {
    'stream.on_demand_scaling_interval': '200ms',
    'stream.on_demand_split_after': '1s',
    'stream.on_demand_merge_after': '2s',
    'stream.on_demand_split_threshold': '0.05',     # 50 records/s
    'stream.on_demand_merge_threshold': '0.01',     # 10 records/s
}
ROLES = ('od_plain', 'od_reader')


def set_settings(conn, on):
    for k, v in SETTINGS.items():
        q(conn, f"ALTER SYSTEM SET {k} = '{v}'" if on else f'ALTER SYSTEM RESET {k}')
    q(conn, 'SELECT pg_reload_conf()')


def hot_keys(conn, n):
    """n partition keys hashing into shard 0 of 4 (the first quarter of the range)."""
    keys = []
    i = 0
    while len(keys) < n:
        cand = [f'hot-{j}' for j in range(i, i + 500)]
        i += 500
        for k, h in q(conn, 'SELECT k, stream.hash_key(k)::text FROM unnest(%s::text[]) k', (cand,)):
            if int(h) < QUARTER and len(keys) < n:
                keys.append(k)
    return keys


def open_shards(conn):
    return q(conn, "SELECT shard_id, parent_shard_id, adjacent_parent_shard_id FROM stream.list_shards(%s) "
                   "WHERE ending_sequence_number IS NULL ORDER BY starting_hash_key", (STREAM,))


def all_shards(conn):
    return q(conn, 'SELECT shard_id, parent_shard_id, adjacent_parent_shard_id, starting_hash_key::text, '
                   '       ending_sequence_number IS NOT NULL FROM stream.list_shards(%s) ORDER BY shard_id', (STREAM,))


class Producers:
    """Threads putting records of their own keys; what committed, per key, in counter order."""

    def __init__(self, keys, nthreads, rng):
        self.stop = threading.Event()
        self.put = {}               # key -> committed counters
        self.lock = threading.Lock()
        self.errors = []
        self.threads = []
        per = len(keys) // nthreads
        for t in range(nthreads):
            mine = keys[t * per:(t + 1) * per]
            self.threads.append(threading.Thread(target=self.run, args=(mine, random.Random(rng.random())), daemon=True))

    def run(self, keys, rng):
        conn = connect()
        counters = {k: 0 for k in keys}
        try:
            while not self.stop.is_set():
                batch = [rng.choice(keys) for _ in range(rng.randint(1, 40))]
                recs = []
                for k in batch:
                    counters[k] += 1
                    recs.append((k, counters[k]))
                try:
                    if len(recs) == 1 or rng.random() < 0.2:
                        for k, c in recs:
                            q(conn, 'SELECT stream.put_record(%s, %s, %s)', (STREAM, k, f'{k}:{c}'.encode()))
                    else:
                        rows = q(conn, 'SELECT error_code FROM stream.put_records(%s, %s, %s)',
                                 (STREAM, [k for k, _ in recs], [f'{k}:{c}'.encode() for k, c in recs]))
                        if any(r[0] is not None for r in rows):
                            self.errors.append(f'put_records failed records: {rows}')
                            return
                except psycopg2.Error as e:
                    self.errors.append(f'put failed: {e}')
                    return
                with self.lock:
                    for k, c in recs:
                        self.put.setdefault(k, []).append(c)
                time.sleep(rng.uniform(0.005, 0.03))
        finally:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


class Reader:
    """Follows every shard from TRIM_HORIZON; a child once all its parents are read to their end."""

    def __init__(self):
        self.stop = threading.Event()
        self.got = {}               # key -> counters in read order
        self.errors = []
        self.done = set()           # shards read to their end
        self._idle = {}             # shard -> its last read returned nothing
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        conn = connect()
        iters = {}
        waiting = {}                # child -> its parents
        try:
            for (sh,) in q(conn, 'SELECT shard_id FROM stream.list_shards(%s) ORDER BY shard_id', (STREAM,)):
                iters[sh] = q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'TRIM_HORIZON')", (STREAM, sh))
            while not self.stop.is_set() or iters:
                if self.stop.is_set() and all(self._idle.get(s, False) for s in iters):
                    break
                for sh in list(iters):
                    rows = q(conn, st.get_records_sql('r.partition_key, r.data, g.next_shard_iterator, g.child_shards'),
                             (iters[sh], 1000))
                    self._idle[sh] = all(r[0] is None for r in rows)
                    for key, data, _, _ in rows:
                        if key is not None:
                            k, c = bytes(data).decode().split(':')
                            check(k == key, f'reader: record of {key} carries {k}')
                            self.got.setdefault(key, []).append(int(c))
                    nxt, children = rows[-1][2], rows[-1][3]
                    if nxt is None:
                        del iters[sh]
                        self.done.add(sh)
                        for ch in children or []:
                            waiting[ch['ShardId']] = ch['ParentShards']
                    else:
                        iters[sh] = nxt
                for ch, parents in list(waiting.items()):
                    if all(p in self.done for p in parents):
                        del waiting[ch]
                        if ch not in self.done and ch not in iters:
                            iters[ch] = q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'TRIM_HORIZON')", (STREAM, ch))
                time.sleep(0.02)
            if waiting:
                self.errors.append(f'children never started: {waiting}')
        except Exception as e:  # noqa: BLE001
            self.errors.append(f'reader: {e!r}')
        finally:
            conn.close()


def worker_waits_on_lock(conn):
    return q1(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type <> 'client backend' AND application_name = 'stream worker' "
                    "AND wait_event_type = 'Lock'")


def test_scaling(admin, rng):
    q(admin, 'SELECT stream.create_stream(%s, stream_mode => %s)', (STREAM, 'ON_DEMAND'))
    first = [s[0] for s in open_shards(admin)]
    check(len(first) == 4, f'an on-demand stream starts with 4 shards, not {first}')
    keys = hot_keys(admin, 60)
    reader = Reader()
    reader.thread.start()
    prod = Producers(keys, 3, rng)
    prod.start()

    # hot: shard 0's lineage is split
    def split_seen():
        return [s for s in all_shards(admin) if s[1] is not None and s[2] is None]
    splits = st.wait_for(split_seen, 90, 'the worker to split the hot shard')
    log(f'hot: split children {[s[0] for s in splits or []]}')
    time.sleep(1.5)
    prod.finish()
    check(not prod.errors, f'producers: {prod.errors[:3]}')
    rows = all_shards(admin)
    parents = {r[0]: r for r in rows}

    def lineage_root(sh):
        while parents[sh][1] is not None and parents[sh][2] is None:
            sh = parents[sh][1]
        return sh
    for r in rows:
        if r[1] is not None and r[2] is None:
            check(lineage_root(r[0]) == first[0], f'hot: {r[1]} was split, but only shard 0 was hot')

    # cold: merged back to 4, never fewer
    lowest = [99]

    def back_to_four():
        n = len(open_shards(admin))
        lowest[0] = min(lowest[0], n)
        return n == 4 and any(r[2] is not None for r in all_shards(admin))
    # an administrator's transaction holds the stream's row: the worker skips, never waits
    holder = connect()
    holder.autocommit = False
    q(holder, 'SELECT stream.add_tags_to_stream(%s, %s)', (STREAM, '{"held": "by a test"}'))
    before = len(all_shards(admin))
    t_end = time.monotonic() + 4
    while time.monotonic() < t_end:
        check(worker_waits_on_lock(admin) == 0, 'cold: the worker waits on a lock a user holds')
        lowest[0] = min(lowest[0], len(open_shards(admin)))
        time.sleep(0.1)
    check(len(all_shards(admin)) == before, 'cold: the worker resharded a stream whose row a user held')
    holder.commit()
    holder.close()
    st.wait_for(back_to_four, 90, 'the worker to merge the cold shards back to 4')
    t_end = time.monotonic() + 3           # and no further
    while time.monotonic() < t_end:
        lowest[0] = min(lowest[0], len(open_shards(admin)))
        time.sleep(0.2)
    check(lowest[0] >= 4, f'cold: the stream had {lowest[0]} open shards, fewer than 4')
    check(len(open_shards(admin)) == 4, f'cold: {len(open_shards(admin))} open shards at the end, not 4')
    log(f'cold: shards {[(r[0], r[1], r[2], r[4]) for r in all_shards(admin)]}')

    # reader: everything committed, once, in order per key
    want = sum(len(v) for v in prod.put.values())

    def read_all():
        return sum(len(v) for v in reader.got.values()) >= want
    st.wait_for(read_all, 60, f'the reader to read all {want} records')
    time.sleep(1)
    reader.stop.set()
    reader.thread.join(60)
    check(not reader.errors, f'reader: {reader.errors[:3]}')
    for k, cs in prod.put.items():
        got = reader.got.get(k, [])
        check(sorted(got) == sorted(cs), f'reader: key {k} read {len(got)} records, put {len(cs)} (lost or doubled)')
        check(got == sorted(got) and len(set(got)) == len(got), f'reader: key {k} out of order: {got[:20]}')
    check(set(reader.got) <= set(prod.put), 'reader: records of keys never put')
    log(f'reader: {want} records of {len(prod.put)} keys, {len(reader.done)} shards read to their end')


def test_attack(admin):
    for r in ROLES:
        q(admin, f'CREATE ROLE {r} LOGIN')
    q(admin, "SELECT stream.grant_stream_access(%s, 'od_reader', 'read_write')", (STREAM,))
    for role in ROLES:
        c = connect(user=role)
        try:
            for sql in ("SELECT stream.update_stream_mode(%s, '{\"StreamMode\": \"PROVISIONED\"}')",
                        "SELECT stream_internal.update_stream_mode(%s, '{\"StreamMode\": \"PROVISIONED\"}')"):
                st.expect_error(c, sql, (STREAM,), '42501', 'permission denied', f'attack: {role}')
            st.expect_error(c, 'SELECT stream_internal._on_demand_merge(1, 0, 1)', None, '42501', 'permission denied',
                            f'attack: {role} merges')
            st.expect_error(c, "UPDATE stream.streams SET stream_mode = 'PROVISIONED'", None, '42501',
                            'permission denied', f'attack: {role} updates the catalog')
        finally:
            c.close()
    check(q1(admin, 'SELECT stream.describe_stream_summary(%s) #>> %s', (STREAM, '{StreamModeDetails,StreamMode}'))
          == 'ON_DEMAND', 'attack: the mode changed')
    q(admin, 'SELECT stream.revoke_stream_access(%s, %s)', (STREAM, 'od_reader'))


def main():
    log(f'seed {SEED}')
    rng = random.Random(SEED)
    admin = st.create_db(extension=True, roles=ROLES)
    pg = connect('postgres')
    set_settings(pg, True)
    try:
        time.sleep(0.5)
        st.run_subtests([('scaling', test_scaling, (admin, rng)),
                         ('attack', test_attack, (admin,))])
    finally:
        set_settings(pg, False)
        pg.close()
    admin.close()


st.main_wrapper(main, lambda: st.drop_db(roles=ROLES))
