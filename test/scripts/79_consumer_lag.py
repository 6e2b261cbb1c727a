#!/usr/bin/python3
"""stream.consumer_lag and millis_behind_latest against a shard held back by
an open producer transaction, for every kind of consumer; who sees what.

A producer opens a transaction and puts one record on shard 0 (the lowest
number in flight); other producers then commit a seeded random number of
records (multibyte keys, sizes 0 B to TOAST) above it.  Nothing of shard 0
is readable, yet:
  - get_records and subscribe_to_shard return no record and a
    millis_behind_latest of at least the time waited (it used to say 0);
  - consumer_lag shows, for an application's lease, a registered fan-out
    consumer and a delivery stream, exactly the committed records and bytes
    behind, the same count held back, the open transaction's pid and an
    age of at least the time waited; shard 1 is not behind.
When the producer commits, every consumer reads the records and, once it
has checkpointed (or subscribed again, or delivered), is 0 behind.

Attacks: a role that may not read the stream sees no row (the leaky
function sees nothing either) and the functions behind the view answer
NULL or nothing; a reader sees the fan-out consumers but not other roles'
applications or delivery streams; an application's owner who loses read
access loses its rows.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_consumer_lag'
ROLES = ('lag_reader', 'lag_owner', 'lag_stranger')
st.configure(DB, statement_timeout='120s', client_min_messages='warning')
SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rng = random.Random(SEED)
SHARD0 = '0'
SHARD1 = '340282366920938463463374607431768211455'
WAIT = 0.4


def lag_rows(conn, where='', args=()):
    return q(conn, 'SELECT consumer_type, consumer_name, shard_id, worker_id, records_behind, bytes_behind, '
                   'lag_exact, millis_behind_latest, held_back_records, held_back_millis, oldest_producer_pid, '
                   'extract(epoch FROM oldest_producer_xact_age) '
                   "FROM stream.consumer_lag WHERE stream_name = 'lg' " + where + ' ORDER BY 1, 2, 3', args)


def main():
    say(f'seed {SEED}')
    conn = st.create_db(roles=ROLES, extension=True)
    for r in ROLES:
        q(conn, f'CREATE ROLE {r} LOGIN')
    q(conn, "SELECT stream.create_stream('lg', 2)")
    q(conn, "SELECT stream.grant_stream_access('lg', 'lag_reader', 'read')")
    q(conn, "SELECT stream.grant_stream_access('lg', 'lag_owner', 'read')")
    q(conn, "SELECT stream.register_application('app', 'lg')")
    q(conn, "SELECT stream.register_stream_consumer('lg', 'efo')")
    q(conn, 'CREATE TABLE public.sink (v int, k text)')
    q(conn, "SELECT stream.create_delivery_stream('dl', source_stream_name => 'lg', destination_table => 'public.sink', "
            "buffer_size_mb => 1, buffer_interval_seconds => 0, starting_position => 'TRIM_HORIZON')")
    owner = st.connect(user='lag_owner')
    q(owner, "SELECT stream.register_application('owned_app', 'lg')")

    # the open transaction: the lowest number in flight on shard 0
    holder = st.connect()
    holder.autocommit = False
    held = q1(holder, "SELECT sequence_number FROM stream.put_record('lg', 'held', convert_to('{\"v\": 0}', 'UTF8'), %s)",
              (SHARD0,))
    holder_pid = q1(holder, 'SELECT pg_backend_pid()')
    t_open = time.monotonic()

    # committed above it
    n = rng.randrange(1, 40)
    keys = [rng.choice(['k', 'ключ', '鍵', 'é' * rng.randrange(1, 100)]) + str(i) for i in range(n)]
    datas = [json.dumps({'v': i + 1, 'k': 'x' * rng.choice([0, 1, 126, 127, 3000])}).encode() for i in range(n)]
    size = sum(len(k.encode()) + len(d) for k, d in zip(keys, datas))
    q(conn, "SELECT count(*) FROM stream.put_records('lg', %s, %s::bytea[], %s)", (keys, datas, [SHARD0] * n))
    say(f'{n} records ({size} bytes) committed above the open transaction')

    # nothing is readable, but the readers are behind, and say so
    it = q1(conn, "SELECT stream.get_shard_iterator('lg', 'shardId-000000000000', 'TRIM_HORIZON')")
    time.sleep(WAIT)
    rec, behind = q(conn, 'SELECT cardinality(records), millis_behind_latest FROM stream.get_records(%s)', (it,))[0]
    check(rec == 0, f'get_records returned {rec} records past an open transaction')
    check(behind >= WAIT * 1000, f'get_records: millis_behind_latest {behind} while held back for {WAIT} s')
    t_subscribed = time.monotonic()
    rec, behind = q(conn, "SELECT cardinality(records), millis_behind_latest FROM stream.subscribe_to_shard("
                          "'lg', 'efo', 'shardId-000000000000', 'TRIM_HORIZON', wait_timeout => '0')")[0]
    check(rec == 0 and behind >= WAIT * 1000, f'subscribe_to_shard: {rec} records, millis_behind_latest {behind}')
    q(conn, "SELECT cardinality(records) FROM stream.subscribe_to_shard("
            "'lg', 'efo', 'shardId-000000000001', 'TRIM_HORIZON', wait_timeout => '0')")

    rows = lag_rows(conn)
    kinds = {(r[0], r[1]) for r in rows}
    check(kinds == {('application', 'app'), ('application', 'owned_app'), ('consumer', 'efo'),
                    ('delivery_stream', 'dl')}, f'consumer kinds {sorted(kinds)}')
    waited = time.monotonic() - t_open
    for (kind, name, shard, worker, r_b, b_b, exact, ms, h_r, h_ms, pid, age) in rows:
        what = f'{kind} {name} {shard}'
        if shard == 'shardId-000000000000':
            check((r_b, b_b, exact, h_r) == (n, size, True, n),
                  f'{what}: {r_b} records / {b_b} bytes behind ({exact}), {h_r} held back; expected {n} / {size}')
            check(ms >= WAIT * 1000 and h_ms >= WAIT * 1000, f'{what}: millis behind {ms}, held back {h_ms}')
            check(pid == holder_pid and age is not None and float(age) >= WAIT and float(age) <= waited + 5,
                  f'{what}: holder pid {pid} (expected {holder_pid}), age {age}')
        else:
            check((r_b, b_b, h_r, ms, pid) == (0, 0, 0, 0, None), f'{what}: not behind: {r_b} {b_b} {h_r} {ms} {pid}')
    say('held back: every consumer behind by exactly the committed records, with the holder')

    # privileges while it is held back
    stranger = st.connect(user='lag_stranger')
    check(lag_rows(stranger) == [], 'a role that may not read the stream sees no lag row')
    q(stranger, 'SET client_min_messages = notice')
    q(stranger, "CREATE FUNCTION pg_temp.leak(t text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS "
                "$$ BEGIN RAISE NOTICE 'leaked %', t; RETURN true; END $$")
    stranger.notices.clear()
    q(stranger, 'SELECT count(*) FROM stream.consumer_lag WHERE pg_temp.leak(consumer_name)')
    check(not any('leaked' in m for m in stranger.notices), f'leaky function saw {stranger.notices[:3]}')
    sid = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name = 'lg'")
    check(q(stranger, 'SELECT records_behind, oldest_producer_pid FROM stream_internal._shard_lag(%s, 0, 0)', (sid,))
          == [(None, None)], 'the stranger gets NULL from _shard_lag')
    check(q(stranger, 'SELECT * FROM stream_internal._fanout_positions()') == [], 'no fan-out positions for a stranger')
    check(q1(stranger, "SELECT stream_internal._checkpoint_next_seq(%s, 0, 'TRIM_HORIZON', NULL)", (sid,)) is None,
          'no positions for a stranger')
    for sql in ('SELECT * FROM stream.leases', 'SELECT * FROM stream.processor_checkpoints'):
        st.expect_error(stranger, sql, None, '42501', 'permission denied', f'stranger: {sql}')
    reader = st.connect(user='lag_reader')
    check({(r[0], r[1]) for r in lag_rows(reader)} == {('consumer', 'efo')},
          f'a reader sees the fan-out consumer only: {sorted({(r[0], r[1]) for r in lag_rows(reader)})}')
    check({(r[0], r[1]) for r in lag_rows(owner)} == {('application', 'owned_app'), ('consumer', 'efo')},
          'the owner sees its application and the consumer')
    q(conn, "SELECT stream.revoke_stream_access('lg', 'lag_owner')")
    check(lag_rows(owner) == [], 'an owner that lost read access sees nothing')
    say('privileges: strangers see nothing, readers and owners their own')

    # the producer commits: everything becomes readable
    holder.commit()
    rec, behind = q(conn, 'SELECT cardinality(records), millis_behind_latest FROM stream.get_records(%s)', (it,))[0]
    check(rec == n + 1 and behind == 0, f'after the commit get_records returned {rec} of {n + 1}, behind {behind}')
    rows = lag_rows(conn, "AND consumer_type = 'application' AND consumer_name = 'app' AND shard_id = %s",
                    ('shardId-000000000000',))
    check(rows[0][4] == n + 1 and rows[0][8] == 0 and rows[0][10] is None,
          f'before checkpointing: {rows[0][4]} behind, {rows[0][8]} held back, holder {rows[0][10]}')
    last = q1(conn, "SELECT max(sequence_number) FROM stream.read_shard('lg', 'shardId-000000000000')")
    q(conn, "SELECT count(*) FROM stream.acquire_leases('app', 'w1')")
    q(conn, "SELECT stream.checkpoint('app', 'w1', 'shardId-000000000000', %s)", (last,))
    # a new subscription of the same consumer and shard is taken 5 s after the last began (ResourceInUseException before)
    time.sleep(max(0.0, 5.2 - (time.monotonic() - t_subscribed)))
    q(conn, "SELECT cardinality(records) FROM stream.subscribe_to_shard("
            "'lg', 'efo', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', %s, wait_timeout => '0')", (last,))
    check(q1(conn, "SELECT stream.flush_delivery_stream('dl', 60)") is True, 'delivery flushed')
    check(q1(conn, 'SELECT count(*) FROM public.sink') == n + 1, 'delivered every record')
    rows = lag_rows(conn, "AND shard_id = 'shardId-000000000000' AND consumer_name IN ('app', 'efo', 'dl')")
    for r in rows:
        check(r[4] == 0 and r[5] == 0 and r[7] == 0 and r[8] == 0, f'{r[0]} {r[1]}: caught up: {r}')
    check(all(r[3] == 'w1' for r in rows if r[0] == 'application'), 'the lease owner is shown')
    check(held is not None, 'the held record got a number')
    say('after the commit every consumer catches up to 0')
    for c in (stranger, reader, owner, holder, conn):
        c.close()


st.main_wrapper(main, lambda: st.drop_db(roles=ROLES, on_error=st.warn))
