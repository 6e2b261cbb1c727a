#!/usr/bin/python3
"""One role's open transactions cannot deny puts to other sessions.

Idle transactions of one `write` grantee, each with puts in flight on as many
shards as stream.max_shards_per_transaction allows, use up the pool of
in-flight registrations that sessions share.  Every other session must still
be able to put (each process has registrations of its own), in this and in
another database; only transactions beyond their own share may be refused,
with LimitExceededException.
"""
import os
import sys

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, q, q1  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_inflight_share'
DB2 = 'stream_inflight_share2'
ROLE = 'inflight_hog'
st.configure(DB, statement_timeout='60s', client_min_messages='warning')
SHARDS = 2048


def fill_transaction(conn, per_xact, start):
    """Open a transaction with puts in flight on up to per_xact distinct shards
    (fewer once the pool is used up: a refused put is rolled back to its
    savepoint, which keeps the rest in flight).  Returns (shards held, refused)."""
    q(conn, 'BEGIN')
    keys = [str((i * 2 ** 128) // SHARDS + 1) for i in range(SHARDS)]
    done, step, refused = 0, 256, False
    while done < per_xact:
        batch = [keys[(start + done + j) % SHARDS] for j in range(min(step, per_xact - done))]
        q(conn, 'SAVEPOINT s')
        try:
            q(conn, "SELECT count(*) FROM stream.put_records('wide', %s, array_fill('\\x01'::bytea, ARRAY[%s]), %s)",
              (['k'] * len(batch), len(batch), batch))
            done += len(batch)
        except psycopg2.Error as e:
            check(e.pgcode == '54000' and 'LimitExceededException' in e.pgerror,
                  'pool exhaustion error is LimitExceededException 54000, got %s %s' % (e.pgcode, e.pgerror))
            q(conn, 'ROLLBACK TO SAVEPOINT s')
            refused = True
            if step == 1:
                break
            step = 1
    return done, refused


def main():
    admin = st.create_db(roles=(ROLE,))
    q(admin, f'DROP DATABASE IF EXISTS {DB2} WITH (FORCE)')
    q(admin, f'CREATE DATABASE {DB2}')
    q(admin, f'CREATE ROLE {ROLE} LOGIN')
    admin.close()
    conn = st.connect()
    q(conn, 'CREATE EXTENSION stream')
    q(conn, "SELECT stream.create_stream('wide', %s)", (SHARDS,))
    q(conn, "SELECT stream.create_stream('other', 4)")
    q(conn, "SELECT stream.grant_stream_access('wide', %s, 'write')", (ROLE,))
    per_xact = int(q1(conn, 'SHOW stream.max_shards_per_transaction'))
    other = st.connect(DB2)
    q(other, 'CREATE EXTENSION stream')
    q(other, "SELECT stream.create_stream('elsewhere', 8)")

    hogs = []
    held = 0
    for i in range(12):
        h = st.connect(user=ROLE)
        n, refused = fill_transaction(h, per_xact, i * per_xact)
        hogs.append(h)
        held += n
        if refused:
            break
    say('%d idle transactions of %s hold puts in flight on %d (transaction, shard) pairs' % (len(hogs), ROLE, held))
    check(len(hogs) < 12, 'the shared pool was not used up by 12 transactions: raise the test\'s count')

    # every other session can still put, on up to its own share of shards
    for db, stream, n in ((DB, 'other', 4), (DB2, 'elsewhere', 8), (DB, 'wide', 32)):
        c = st.connect(db)
        try:
            q(c, 'BEGIN')
            keys = ['%d' % ((i * 2 ** 128) // (SHARDS if stream == 'wide' else n) + 1) for i in range(n)]
            q(c, "SELECT count(*) FROM stream.put_records(%s, array_fill('k'::text, ARRAY[%s]), "
                 "array_fill('\\x02'::bytea, ARRAY[%s]), %s)", (stream, n, n, keys))
            q(c, 'COMMIT')
            say('%s.%s: a put on %d shards succeeds while the pool is used up' % (db, stream, n))
        except psycopg2.Error as e:
            check(False, '%s.%s: put on %d shards refused while another role hogs the pool: %s'
                  % (db, stream, n, e.pgerror))
        c.close()
    for h in hogs:
        h.close()
    other.close()
    conn.close()


def cleanup():
    admin = st.connect('postgres')
    q(admin, 'SET client_min_messages = warning')
    q(admin, f'DROP DATABASE IF EXISTS {DB2} WITH (FORCE)')
    admin.close()
    st.drop_db(roles=(ROLE,), on_error=st.warn)


st.main_wrapper(main, cleanup)
