#!/usr/bin/python3
"""Counters dropped from a full shared table never hand out a number again.

Restarts the cluster of scripts/env.sh with stream.max_shards = 16 (and
restores the setting).  A shard's counter hands out numbers to rolled-back
puts, a reader moves past them, then puts on many other shards evict the
counter; the rebuilt counter must start above every number it handed out,
so the reader (holding its iterator) reads every record put afterwards.
Repeated with a crash between the eviction and the next put.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_counter_eviction'
st.configure(DB, statement_timeout='60s', client_min_messages='warning')
OTHERS = 40


def restart():
    r = subprocess.run(['bash', os.path.join(st.ROOT, 'scripts', 'cluster.sh'), 'restart'],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError('restart failed: %s %s' % (r.stdout, r.stderr))


def read_all(conn, it):
    got = []
    while True:
        rows = q(conn, st.get_records_sql('g.next_shard_iterator, r.partition_key'), (it, 10000))
        n = 0
        for nxt, key in rows:
            it = nxt
            if key is not None:
                got.append(key)
                n += 1
        if n == 0:
            return it, got


def main():
    admin = st.connect('postgres')
    q(admin, 'ALTER SYSTEM SET stream.max_shards = 16')
    admin.close()
    restart()
    conn = st.create_db(extension=True)
    check(q1(conn, 'SHOW stream.max_shards') == '16', 'stream.max_shards is 16')
    q(conn, "SELECT stream.create_stream('a', 1)")
    for i in range(OTHERS):
        q(conn, "SELECT stream.create_stream(%s, 1)", ('o%d' % i,))
    it = q1(conn, "SELECT stream.get_shard_iterator('a', 'shardId-000000000000', 'TRIM_HORIZON')")
    expected = []
    for rnd, crash in enumerate((False, True, False, True)):
        key = 'c%d' % rnd
        q(conn, "SELECT stream.put_record('a', %s, '\\x01')", (key,))
        expected.append(key)
        q(conn, 'BEGIN')
        q(conn, "SELECT count(*) FROM stream.put_records('a', array_fill('lost'::text, ARRAY[50]), array_fill('\\x02'::bytea, ARRAY[50]))")
        q(conn, 'ROLLBACK')
        it, got = read_all(conn, it)       # the iterator passes the rolled-back numbers
        check(got == [key], 'round %d: read %r, expected %r' % (rnd, got, [key]))
        for i in range(OTHERS):            # evict a's counter
            q(conn, "SELECT stream.put_record(%s, 'k', '\\x03')", ('o%d' % i,))
        if crash:
            conn.close()
            st.crash('kill')
            conn = st.connect(retries=60)
        key = 'd%d' % rnd
        q(conn, "SELECT stream.put_record('a', %s, '\\x04')", (key,))
        expected.append(key)
        it, got = read_all(conn, it)
        check(got == [key], 'round %d%s: after eviction the reader read %r, expected %r '
              '(a rebuilt counter reused a number)' % (rnd, ' and a crash' if crash else '', got, [key]))
    stored = [r[0] for r in q(conn, "SELECT partition_key FROM stream.read_shard('a', 'shardId-000000000000')")]
    check(stored == expected, 'stored %r, expected %r' % (stored, expected))
    say('%d rounds of eviction (2 with a crash): the reader read every record' % 4)
    conn.close()


def cleanup():
    try:
        st.start_cluster()
        admin = st.connect('postgres', retries=30)
        q(admin, 'ALTER SYSTEM RESET stream.max_shards')
        admin.close()
        restart()
    except Exception as e:  # noqa: BLE001
        st.warn(str(e))
    st.drop_db(on_error=st.warn)


st.main_wrapper(main, cleanup)
