#!/usr/bin/python3
"""Fairness between owners in the worker's rounds (src/runtime/round.c).

One worker serves every delivery stream of a database.  Owner X has N busy
delivery streams, owner Y one; all of them have several units of work
waiting, committed at the same moment.  Rounds share the worker by owner
first: however large N is, at most 2 * (owners - 1) units of X run before
Y's first unit and between two of Y's units (with a round per owner and
stream in turn, N of X's units would).

The order of units is read back from the destinations, not from timing:
every destination table takes its rows' `ord` from one sequence and `xid`
from the inserting transaction, and a unit inserts its batch in one
transaction of its own, so the rows in `ord` order, grouped by (table, xid),
are the units in the order the worker ran them.
Record sizes, N and the units per stream come from a seed (printed).
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, main_wrapper  # noqa: E402
from streamtest import q, q1, wait_for, warn  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_fairness_test'
ROLES = ('fair_x', 'fair_y')
configure(DB, statement_timeout='300s', client_min_messages='warning')

SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rng = random.Random(SEED)
N_X = rng.randint(5, 8)                 # X's delivery streams
UNITS = rng.randint(3, 4)               # units of work waiting per stream
REC_BYTES = rng.randint(200, 300) * 1000
PER_UNIT = (1024 * 1024) // REC_BYTES   # records that fit a 1 MB buffer
BOUND = 2 * (len(ROLES) - 1)            # UNITS_PER_OWNER = 1


def main():
    say('seed %d: owner X has %d delivery streams, Y has 1; %d units of ~%d records of %d bytes each'
        % (SEED, N_X, UNITS, PER_UNIT, REC_BYTES))
    admin = create_db(roles=ROLES)
    for r in ROLES:
        q(admin, 'CREATE ROLE %s' % r)
    admin.close()
    conn = connect(DB)
    q(conn, 'CREATE EXTENSION stream')
    q(conn, 'CREATE SEQUENCE public.fair_ord')
    q(conn, 'GRANT USAGE ON SEQUENCE public.fair_ord TO %s' % ', '.join(ROLES))
    q(conn, q1(conn, "SELECT format('GRANT EXECUTE ON FUNCTION %%s TO %s', oid::regprocedure) FROM pg_proc "
                     "WHERE proname = 'create_delivery_stream' AND pronamespace = 'stream'::regnamespace"
               % ', '.join(ROLES)))
    streams = [('fair_x', 'fx%d' % i) for i in range(N_X)] + [('fair_y', 'fy0')]
    for owner, name in streams:
        q(conn, "CREATE TABLE public.%s (ord bigint NOT NULL DEFAULT nextval('public.fair_ord'), "
                "xid bigint NOT NULL DEFAULT txid_current(), s text, k text)" % name)
        q(conn, 'GRANT INSERT ON public.%s TO %s' % (name, owner))
        q(conn, 'SET ROLE %s' % owner)
        q(conn, "SELECT stream.create_delivery_stream(%s, destination_table => %s, buffer_size_mb => 1, "
                "buffer_interval_seconds => 0)", (name, 'public.' + name))
        q(conn, 'RESET ROLE')
    owners = dict(q(conn, "SELECT d.delivery_stream_name, p.owner::text FROM stream.delivery_streams d "
                          "JOIN stream.processors p ON p.processor_id = d.delivery_stream_id"))
    check(owners == {name: owner for owner, name in streams}, 'each delivery stream is owned by its creator: %r' % owners)

    # every stream's backlog becomes visible at one commit
    per_stream = UNITS * PER_UNIT
    q(conn, 'BEGIN')
    for _, name in streams:
        recs = [json.dumps({'s': '%s-%d' % (name, i), 'k': 'x' * REC_BYTES}) for i in range(per_stream)]
        rows = q(conn, "SELECT count(*) FILTER (WHERE error_code IS NULL) FROM "
                       "stream.put_delivery_record_batch(%s, %s::bytea[])",
                 (name, [r.encode() for r in recs]))
        check(rows[0][0] == per_stream, '%s: %d records put' % (name, per_stream))
    q(conn, 'COMMIT')

    total = per_stream * len(streams)
    union = ' UNION ALL '.join("SELECT '%s' AS t, ord, xid FROM public.%s" % (n, n) for _, n in streams)
    wait_for(lambda: q1(conn, 'SELECT count(*) FROM (%s) u' % union) == total, 240, 'every record delivered')

    units, last = [], None
    for t, xid in q(conn, 'SELECT t, xid FROM (%s) u ORDER BY ord' % union):
        if (t, xid) != last:
            units.append(t)
            last = (t, xid)
    say('units in order: %s' % ' '.join(units))
    check(len(set(units)) == len(streams), 'every stream ran units')
    y_at = [i for i, t in enumerate(units) if t == 'fy0']
    check(len(y_at) >= UNITS, "Y's backlog took %d units or more (%d)" % (UNITS, len(y_at)))
    check(sum(1 for t in units if t != 'fy0') >= N_X, "X's streams all ran")
    waits = [y_at[0]] + [b - a - 1 for a, b in zip(y_at, y_at[1:])]
    say("units of X before Y's first unit and between Y's units: %r (bound %d)" % (waits, BOUND))
    check(max(waits) <= BOUND, "owner Y waits for at most %d units of owner X at a time, not for X's %d streams: %r"
          % (BOUND, N_X, waits))
    for _, name in streams:
        got = q1(conn, 'SELECT count(DISTINCT s) FROM public.%s' % name)
        check(got == per_stream, '%s: each record delivered once (%d)' % (name, got))
    conn.close()


main_wrapper(main, lambda: drop_db(DB, roles=ROLES, on_error=warn))
