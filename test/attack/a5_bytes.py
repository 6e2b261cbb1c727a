#!/usr/bin/python3
"""ATTACK: byte-exact reads in one long session: get_records with random
limits 1..10000 and subscribe_to_shard, interleaved over many streams, sizes
0..1 MiB with varlena/TOAST/compression boundaries, compressible and random
data, multibyte keys; compared with a direct SELECT on the data."""
import os, sys, random, hashlib
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st
from streamtest import q, q1
import psycopg2

DB = 'stream_attack_bytes'
st.configure(DB, statement_timeout='120s', client_min_messages='warning')
SEED = int(os.environ.get('SEED', random.randrange(1 << 30)))
N = int(os.environ.get('N', 3000))
rnd = random.Random(SEED)
SIZES = [0, 1, 2, 3, 4, 7, 8, 125, 126, 127, 128, 129, 1000, 2000, 2031, 2032, 2033, 2040, 4096, 8000, 8159, 8160, 8161, 8192, 100000, 1 << 20]


def data():
    n = rnd.choice(SIZES) if rnd.random() < 0.7 else rnd.randrange(0, 20000)
    kind = rnd.random()
    if kind < 0.4:
        return os.urandom(n)
    if kind < 0.8:
        return bytes([rnd.randrange(256)]) * n          # compresses
    return (b'abc' + os.urandom(4)) * (n // 7) + b'z' * (n % 7)


def key():
    alpha = 'aZ9-_é日本𝄞'
    return ''.join(rnd.choice(alpha) for _ in range(rnd.randint(1, 256)))


def pair():
    k, d = key(), data()
    room = (1 << 20) - len(k.encode())
    return k, d[:room]


def main():
    print('SEED', SEED)
    conn = st.create_db(extension=True)
    streams = ['b%d' % i for i in range(6)]
    for s in streams:
        q(conn, "SELECT stream.create_stream(%s, 2)", (s,))
        q(conn, "SELECT stream.register_stream_consumer(%s, 'c')", (s,))
    put = 0
    while put < N:
        s = rnd.choice(streams)
        if rnd.random() < 0.5:
            k, d = pair()
            q(conn, "SELECT stream.put_record(%s, %s, %s)", (s, k, psycopg2.Binary(d)))
            put += 1
        else:
            m = rnd.randint(1, 40)
            ks = []
            ds = []
            tot = 0
            for _ in range(m):
                k, d = pair()
                ks.append(k)
                tot += len(k.encode())
                if tot + len(d) > 4 * 1024 * 1024:
                    d = b''
                tot += len(d)
                ds.append(psycopg2.Binary(d))
            q(conn, "SELECT count(*) FROM stream.put_records(%s, %s, %s::bytea[])", (s, ks, ds))
            put += m
    # truth from the table
    truth = {}
    for s in streams:
        sid = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name=%s", (s,))
        for sh in (0, 1):
            rows = q(conn, f"SELECT seq, partition_key, md5(data), length(data) FROM stream_data.s{sid} WHERE shard_id = %s ORDER BY seq", (sh,))
            truth[(s, sh)] = [(k, m, l) for _, k, m, l in rows]
    print('records:', sum(len(v) for v in truth.values()))
    bad = 0
    its = {}
    subs = {}
    got = {x: [] for x in truth}
    gots = {x: [] for x in truth}
    for x in truth:
        its[x] = q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'TRIM_HORIZON')", (x[0], st.shard_id(x[1])))
        subs[x] = None
    active = set(truth)
    calls = 0
    while active:
        x = rnd.choice(sorted(active))
        calls += 1
        if rnd.random() < 0.5:
            lim = rnd.choice([1, 2, 3, 7, 50, 10000, rnd.randint(1, 10000)])
            rows = q(conn, "SELECT g.next_shard_iterator, r.partition_key, md5(r.data), length(r.data) FROM stream.get_records(%s, %s) g "
                     "LEFT JOIN LATERAL unnest(g.records) WITH ORDINALITY AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true ORDER BY r.ord",
                     (its[x], lim))
            for nxt, k, m, l in rows:
                its[x] = nxt
                if k is not None:
                    got[x].append((k, m, l))
        else:
            if subs[x] is None:
                rows = q(conn, "SELECT f.continuation_sequence_number, r.partition_key, md5(r.data), length(r.data) FROM stream.subscribe_to_shard(%s, 'c', %s, 'TRIM_HORIZON', wait_timeout => '0') f "
                         "LEFT JOIN LATERAL unnest(f.records) WITH ORDINALITY AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true ORDER BY r.ord", (x[0], st.shard_id(x[1])))
            else:
                rows = q(conn, "SELECT f.continuation_sequence_number, r.partition_key, md5(r.data), length(r.data) FROM stream.subscribe_to_shard(%s, 'c', %s, 'AFTER_SEQUENCE_NUMBER', %s, wait_timeout => '0') f "
                         "LEFT JOIN LATERAL unnest(f.records) WITH ORDINALITY AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true ORDER BY r.ord", (x[0], st.shard_id(x[1]), subs[x]))
            for nxt, k, m, l in rows:
                subs[x] = nxt
                if k is not None:
                    gots[x].append((k, m, l))
        if len(got[x]) >= len(truth[x]) and len(gots[x]) >= len(truth[x]):
            active.discard(x)
        if calls > 100000:
            break
    for x in truth:
        if got[x] != truth[x]:
            bad += 1
            print('get_records mismatch', x, len(got[x]), len(truth[x]))
        if gots[x] != truth[x]:
            bad += 1
            print('subscribe mismatch', x, len(gots[x]), len(truth[x]))
    print('calls', calls)
    st.check(bad == 0, f'byte-exact reads (seed {SEED})')
    conn.close()
    st.drop_db()
    st.finish()


if __name__ == '__main__':
    main()
