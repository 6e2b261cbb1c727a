#!/usr/bin/env python3
"""Shard ids are read one way everywhere.

Seeded generated shard ids (prefixes, leading zeros, indexes at and past
2^31 - 1, empty digits, letters among the digits, non-ASCII digits, bad
characters, empty and over-long ids, NULL) are resolved by the data API
(get_shard_iterator, C) and by the lease API (get_lease_iterator, plpgsql
over stream_internal._shard_index), and stream_internal._shard_index is
asked directly.  All three must agree with the documented rule: 1 to 128
characters of [a-zA-Z0-9_.-] (else ValidationException), the digits after
the last '-' name the shard (else "Could not find shard", both
ResourceNotFoundException); an existing shard is read, the iterator then
returns that shard's record.

    STREAM_SHARD_ID_SEED=7 STREAM_SHARD_ID_N=400 python3 test/scripts/72_shard_ids.py
"""
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402

import psycopg2  # noqa: E402

SEED = int(os.environ.get('STREAM_SHARD_ID_SEED', '20261202'))
N = int(os.environ.get('STREAM_SHARD_ID_N', '400'))
SHARDS = 4
st.configure('stream_shard_id_test', statement_timeout='30s')
rnd = random.Random(SEED)


def reference(shard_id):
    """('validation' | 'unknown' | 'missing' | index) as the README's rule says."""
    if shard_id is None or not re.fullmatch(r'[a-zA-Z0-9_.-]{1,128}', shard_id):
        return 'validation'
    digits = shard_id.rsplit('-', 1)[-1]
    if not re.fullmatch(r'[0-9]+', digits) or int(digits) > 2**31 - 1:
        return 'unknown'
    return int(digits) if int(digits) < SHARDS else 'missing'


def generated_ids():
    prefixes = ['', 'shardId-', 'x-', 'a-b-', '-', 'shardId-0', '--', 'shard_Id.', 'shardId']
    bodies = ['', 'abc', '1a', 'a1', '\u0661', '/1', ' 1', '1 ', '+1', '-1']
    out = [None, '', 'x' * 129, 'shardId-' + '0' * 120 + '1', 'shardId-2147483647', 'shardId-2147483648',
           'shardId-99999999999', '0', '3', '4']
    for _ in range(N):
        if rnd.random() < 0.75:
            n = rnd.choice([0, 1, 2, 3, SHARDS, rnd.randint(0, 10**rnd.randint(1, 12)), 2**31 - 1, 2**31])
            body = '0' * rnd.choice([0, 0, 1, 3, 12, 30]) + str(n)
        else:
            body = rnd.choice(bodies)
        out.append(rnd.choice(prefixes) + body)
    return out


def outcome(conn, sql, args):
    """('ok', shard index of the first record read) or the error's kind."""
    try:
        it = st.q1(conn, sql, args)
        seq = st.q1(conn, 'SELECT (g.records[1]).sequence_number FROM stream.get_records(%s, 1) g', (it,))
        return st.q1(conn, 'SELECT (stream_internal._sequence_parts(%s)).shard_index', (seq,))
    except psycopg2.Error as e:
        msg = e.pgerror or ''
        if 'ValidationException' in msg and e.pgcode in ('22023', '22004'):
            return 'validation'
        if e.pgcode == '42704' and 'Could not find shard' in msg:
            return 'unknown'
        if e.pgcode == '42704' and ('does not exist' in msg or 'has no lease' in msg):
            return 'missing'
        return f'{e.pgcode}: {msg.strip()}'


def main():
    conn = st.create_db(extension=True)
    st.q(conn, 'SELECT stream.create_stream(%s, %s)', ('ids', SHARDS))
    for (start,) in st.q(conn, 'SELECT starting_hash_key::text FROM stream.list_shards(%s)', ('ids',)):
        st.q(conn, "SELECT stream.put_record('ids', 'k', '\\x01', %s)", (start,))
    st.q(conn, "SELECT stream.register_application('ids_app', 'ids')")
    held = st.q1(conn, "SELECT count(*) FROM stream.acquire_leases('ids_app', 'w', '1 minute')")
    st.check(held == SHARDS, f'the one worker holds every lease: {held}')

    ids = generated_ids()
    for shard_id in ids:
        want = reference(shard_id)
        by_data = outcome(conn, "SELECT stream.get_shard_iterator('ids', %s, 'TRIM_HORIZON')", (shard_id,))
        by_lease = outcome(conn, "SELECT stream.get_lease_iterator('ids_app', 'w', %s)", (shard_id,))
        st.check(by_data == want and by_lease == want,
                 f'shard id {shard_id!r}: rule says {want!r}, get_shard_iterator {by_data!r}, '
                 f'get_lease_iterator {by_lease!r}')
        if want != 'validation':
            idx = st.q1(conn, 'SELECT stream_internal._shard_index(%s)', (shard_id,))
            st.check(idx == (None if want == 'unknown' else int(shard_id.rsplit('-', 1)[-1])),
                     f'_shard_index({shard_id!r}) = {idx!r}')
    st.log(f'{len(ids)} shard ids, seed {SEED}')
    conn.close()


st.main_wrapper(main, lambda: st.drop_db())
