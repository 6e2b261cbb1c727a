#!/usr/bin/python3
"""The consumer runtime: exactly once into a table across crashes.

The body of test/t/006_processor_crash_table.pl (formerly
test/scripts/68_processor_crash_table.py), which makes a throw-away node and
runs this against it: the SIGKILLs of the postmaster or of one backend and
the immediate shutdowns hit that node only.  It stays in Python, run by the
TAP test rather than rewritten in Perl, to share test/lib/streamtest.py's
crash and check helpers with the other crash loops; the TAP test owns the node.

No files are involved: two table delivery streams (one reading a stream of
two shards, one fed by direct puts) are processors of the runtime whose
units commit their rows, error rows, manifest and checkpoints in one
transaction.  Each round puts a seeded random number of records (committed,
each id once), then puts records in transactions that roll back (those ids
must never appear), and kills the server at a random moment while the
worker delivers: SIGKILL of the postmaster, immediate shutdown, or SIGKILL
of a client backend (the postmaster then resets every process, the worker's
too).  A seeded share of the records is invalid for the table (an integer
column given text): those become the processor's error rows.  At the end,
after a flush: every committed valid id is in the table exactly once, every
invalid one in the error rows exactly once, no rolled-back id anywhere, the
manifests add up, and the runtime shows no unit in flight and no back-off.
"""
import base64
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, main_wrapper, q, q1, warn, crash, start_cluster, wait_for  # noqa: E402
from streamtest import require_tap_node  # noqa: E402
from streamtest import log as say  # noqa: E402

require_tap_node()
DB = 'stream_processor_crash'
configure(DB, statement_timeout='120s', client_min_messages='warning')
ROUNDS = int(os.environ.get('STREAM_PROCESSOR_CRASH_ROUNDS', '7'))
SEED = int(os.environ.get('STREAM_PROCESSOR_CRASH_SEED', str(int(time.time()))))
rng = random.Random(SEED)
NAMES = ('crash_tsrc', 'crash_tdirect')


def setup(conn):
    q(conn, "CREATE TABLE public.sink_src (id bigint NOT NULL, n int, pad text)")
    q(conn, "CREATE TABLE public.sink_direct (id bigint NOT NULL, n int, pad text)")
    # a slow row trigger: a unit takes long enough for the kills to land inside it; the
    # sequence (not transactional) counts the rows every attempt inserted
    q(conn, "CREATE SEQUENCE public.attempted")
    q(conn, "CREATE FUNCTION public.slow_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_catalog.nextval('public.attempted'); PERFORM pg_catalog.pg_sleep(0.0001); "
            "RETURN NEW; END $$")
    for t in ('sink_src', 'sink_direct'):
        q(conn, "CREATE TRIGGER slow BEFORE INSERT ON public.%s FOR EACH ROW EXECUTE FUNCTION public.slow_row()" % t)
    q(conn, "SELECT stream.create_stream('tsrc', 2)")
    q(conn, "SELECT stream.create_delivery_stream('crash_tsrc', source_stream_name => 'tsrc', "
            "destination_table => 'public.sink_src', buffer_size_mb => 1, buffer_interval_seconds => 0, "
            "starting_position => 'TRIM_HORIZON')")
    q(conn, "SELECT stream.create_delivery_stream('crash_tdirect', destination_table => 'public.sink_direct', "
            "buffer_size_mb => 1, buffer_interval_seconds => 0)")


def record(i, valid):
    return json.dumps({'id': i, 'n': (i % 1000) if valid else 'not a number', 'pad': 'p' * 120}).encode()


def put(conn, ids, valid):
    for lo in range(0, len(ids), 500):
        chunk = ids[lo:lo + 500]
        data = [record(i, i in valid) for i in chunk]
        q(conn, "SELECT count(*) FROM stream.put_records('tsrc', %s, %s::bytea[])",
          (['k%d' % i for i in chunk], data))
        q(conn, "SELECT count(*) FROM stream.put_delivery_record_batch('crash_tdirect', %s::bytea[])", (data,))


def rolled_back(conn, first, n):
    """Puts in a transaction that rolls back, and one in a savepoint that rolls back."""
    ids = list(range(first, first + n))
    q(conn, "BEGIN")
    put(conn, ids[:n // 2], set(ids))
    q(conn, "ROLLBACK")
    q(conn, "BEGIN")
    q(conn, "SAVEPOINT s")
    put(conn, ids[n // 2:], set(ids))
    q(conn, "ROLLBACK TO SAVEPOINT s")
    q(conn, "COMMIT")
    return ids


def main():
    conn = create_db(extension=True)
    setup(conn)
    committed, invalid, ghosts = [], set(), []
    next_id = 0
    kills = {'kill': 0, 'immediate': 0, 'backend': 0}
    for rnd in range(ROUNDS):
        n = rng.randint(1000, 3000)
        ids = list(range(next_id, next_id + n))
        next_id += n
        bad = {i for i in ids if rng.random() < 0.02}
        put(conn, ids, set(ids) - bad)
        committed += ids
        invalid |= bad
        g = rng.randint(200, 800)
        ghosts += rolled_back(conn, next_id, g)
        next_id += g
        conn.close()
        delay = rng.uniform(0.0, 0.8)
        time.sleep(delay)
        how = rng.choice(('kill', 'kill', 'immediate', 'backend'))
        kills[how] += 1
        crash(how)
        conn = connect(DB, retries=30)
        say('round %d: %d committed (%d invalid), %d rolled back, %s after %.2f s'
            % (rnd + 1, n, len(bad), g, how, delay))

    for name in NAMES:
        ok = wait_for(lambda: q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,)), 180, 'flush of ' + name)
        check(ok, 'flush %s' % name)
    valid = sorted(set(committed) - invalid)
    for name, table in zip(NAMES, ('public.sink_src', 'public.sink_direct')):
        rows = [r[0] for r in q(conn, "SELECT id FROM %s" % table)]
        dup = len(rows) - len(set(rows))
        ghost = set(rows) & set(ghosts)
        check(dup == 0 and sorted(rows) == valid and not ghost,
              '%s: %d rows, %d duplicates, %d missing, %d rolled back ones' %
              (name, len(rows), dup, len(set(valid) - set(rows)), len(ghost)))
        errs = [json.loads(base64.b64decode(e['rawData']))['id']
                for (e,) in q(conn, "SELECT envelope FROM stream.delivery_failed_records WHERE delivery_stream_name = %s",
                              (name,))]
        check(sorted(errs) == sorted(invalid),
              '%s: %d error rows (%d distinct), expected %d' % (name, len(errs), len(set(errs)), len(invalid)))
        s = q(conn, "SELECT coalesce(sum(records_delivered), 0), coalesce(sum(records_failed), 0), count(*) "
                    "FROM stream.delivery_batches WHERE delivery_stream_name = %s", (name,))[0]
        check(s[0] == len(valid) and s[1] == len(invalid),
              '%s: manifests count %s delivered and %s failed in %s batches' % (name, s[0], s[1], s[2]))
        prog = q(conn, "SELECT records_delivered, records_failed FROM stream.delivery_stream_status "
                       "WHERE delivery_stream_name = %s", (name,))[0]
        check(tuple(prog) == (len(valid), len(invalid)), '%s: status counts %r' % (name, prog))
        say('%s: %d rows and %d error rows, each exactly once, in %s batches' % (name, len(rows), len(errs), s[2]))
    st = q(conn, "SELECT count(pending_unit), max(failed_attempts), count(last_error) FROM stream.processor_status")[0]
    check(st[0] == 0 and st[2] == 0, 'the runtime shows no unit in flight and no error: %r' % (st,))
    # the units were numbered without gaps the manifests do not explain
    gaps = q1(conn, "SELECT count(*) FROM stream.processor_status s WHERE s.units <> "
                    "(SELECT count(*) FROM stream.delivery_manifest m WHERE m.delivery_stream_id = s.processor_id)")
    check(gaps == 0, 'every unit begun is a delivered batch (%s processors differ)' % gaps)
    attempted = q1(conn, "SELECT last_value FROM public.attempted")
    say('seed %d: %d crashes (%r); %d rows inserted by attempts, %d delivered: about %d inserted by units '
        'a crash rolled back (a sequence may skip up to 32 per crash)'
        % (SEED, ROUNDS, kills, attempted, 2 * len(valid), attempted - 2 * len(valid)))
    conn.close()




def cleanup():
    try:
        start_cluster()         # if a crash left it down
    except Exception as e:      # noqa: BLE001
        warn('%s' % e)
    drop_db(DB, on_error=warn)


main_wrapper(main, cleanup)
