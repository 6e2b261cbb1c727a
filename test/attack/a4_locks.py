#!/usr/bin/python3
"""ATTACK: hostile roles hold locks; puts into a missing chunk and
maintenance (chunk creation, trimming) must neither fail nor wait long."""
import os, sys, time, threading
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st
from streamtest import q, q1
import psycopg2

DB = 'stream_attack_locks'
st.configure(DB, statement_timeout='20s', client_min_messages='warning')
ROLES = ('atl_r', 'atl_w', 'atl_n')

HOSTILE = [
    ('atl_r', 'select idle', ['BEGIN', 'SELECT count(*) FROM stream_data.{t}']),
    ('atl_r', 'lock access share', ['BEGIN', 'LOCK TABLE stream_data.{t} IN ACCESS SHARE MODE']),
    ('atl_r', 'repeatable read read_shard', ['BEGIN ISOLATION LEVEL REPEATABLE READ', "SELECT count(*) FROM stream.read_shard('{s}', 'shardId-000000000000')"]),
    ('atl_w', 'lock row exclusive', ['BEGIN', 'LOCK TABLE stream_data.{t} IN ROW EXCLUSIVE MODE']),
    ('atl_w', 'open put', ['BEGIN', "SELECT stream.put_record('{s}', 'h', '\\x01')"]),
    ('atl_n', 'analyze in txn', ['BEGIN', 'ANALYZE stream_data.{t}']),
    ('atl_r', 'analyze in txn (reader)', ['BEGIN', 'ANALYZE stream_data.{t}']),
    ('atl_n', 'catalog select', ['BEGIN', 'SELECT * FROM stream.streams', 'SELECT * FROM stream.shards']),
    ('atl_n', 'consumers for update', ['BEGIN', 'SELECT * FROM stream.stream_consumers FOR UPDATE']),
    ('atl_n', 'pg_class rows', ['BEGIN', "SELECT * FROM pg_class WHERE relnamespace = 'stream_data'::regnamespace"]),
    ('atl_r', 'lock chunks access share', ['BEGIN', 'DO_CHUNKS']),
]


def main():
    admin = st.create_db(roles=ROLES)
    for r in ROLES:
        q(admin, f'CREATE ROLE {r} LOGIN')
    admin.close()
    conn = st.connect()
    q(conn, 'CREATE EXTENSION stream')
    results = []
    for i, (role, what, stmts) in enumerate(HOSTILE):
        s = f'h{i}'
        q(conn, "SELECT stream.create_stream(%s, 1)", (s,))
        q(conn, "SELECT stream.grant_stream_access(%s, 'atl_r', 'read')", (s,))
        q(conn, "SELECT stream.grant_stream_access(%s, 'atl_w', 'write')", (s,))
        sid = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name = %s", (s,))
        t = f's{sid}'
        q(conn, "SELECT stream.put_record(%s, 'pre', '\\x01')", (s,))
        # an expired chunk to trim
        k_now = q1(conn, "SELECT floor(extract(epoch FROM now()) / 3600)::bigint")
        q(conn, "SELECT stream_internal._add_chunk(x, %s) FROM stream.streams x WHERE stream_id = %s", (k_now - 200, sid))
        q(conn, f"INSERT INTO stream_data.{t} VALUES (0, %s, now() - interval '200 hours', 'old', '\\x01')", ((k_now - 200) << 32,))
        # drop the current chunk and those ahead: puts must make theirs
        chunks = [r[0] for r in q(conn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", ('stream_data.' + t,))]
        for c in chunks:
            if int(c.split('_')[1]) >= k_now:
                q(conn, f'DROP TABLE stream_data.{c}')
        h = st.connect(user=role)
        h.autocommit = True
        err = None
        try:
            for x in stmts:
                if x == 'DO_CHUNKS':
                    for c in chunks:
                        if int(c.split('_')[1]) < k_now:
                            q(h, f'LOCK TABLE stream_data.{c} IN ACCESS SHARE MODE')
                    continue
                q(h, x.format(t=t, s=s))
        except psycopg2.Error as e:
            err = str(e).split('\n')[0]
        t0 = time.time()
        perr = None
        try:
            n = q1(conn, "SELECT count(*) FROM stream.put_records(%s, array_fill('k'::text, array[500]), array_fill('\\x00'::bytea, array[500])) WHERE error_code IS NULL", (s,))
        except psycopg2.Error as e:
            perr = str(e).split('\n')[0]
            n = 0
        tput = time.time() - t0
        t0 = time.time()
        merr = None
        try:
            m = q(conn, "SELECT chunks_created, chunks_dropped, chunks_emptied FROM stream_internal._maintain_stream(%s)", (sid,))
        except psycopg2.Error as e:
            merr = str(e).split('\n')[0]
            m = None
        tm = time.time() - t0
        time.sleep(1.5)
        after = [int(r[0].split('_')[1]) - k_now for r in q(conn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", ('stream_data.' + t,))]
        oldrows = q1(conn, f"SELECT count(*) FROM stream_data.{t}_{k_now - 200}") if -200 in after else None
        print('   chunks rel. to now:', sorted(after), 'old chunk rows:', oldrows)
        st.check(all(x in after for x in range(0, 5)), f'{what}: chunks 0..4 ahead exist')
        print(f'{what:32s} hostile_err={err!s:.60} put={n} {tput:.2f}s {perr or ""} maint={m} {tm:.2f}s {merr or ""}')
        st.check(n == 500 and tput < 5, f'{what}: put of 500 in {tput:.1f}s ({perr})')
        st.check(merr is None and tm < 5, f'{what}: maintenance in {tm:.1f}s ({merr})')
        try:
            h.close()
        except Exception:
            pass
    conn.close()
    st.drop_db(roles=ROLES)
    st.finish()


if __name__ == '__main__':
    main()
