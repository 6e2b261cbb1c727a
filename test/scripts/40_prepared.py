#!/usr/bin/python3
"""Two-phase commit and cross-shard independence.

1. A put inside a transaction followed by PREPARE TRANSACTION is refused with a
   clear error (DESIGN.md: "Puts inside PREPARE TRANSACTION are refused"); no
   prepared transaction is left behind, the record never becomes visible, and
   the shard is not left stuck (a later committed put is readable at once).
   If the PREPARE is accepted instead, the prepared put must be handled
   correctly: invisible and not skipped by readers until COMMIT PREPARED,
   then read exactly once in order.
   A transaction that did not put can still be prepared and committed, also
   one that only read a stream.
2. A reader of one shard is not delayed by an open producer transaction on a
   different shard; a reader of the same shard returns promptly (no blocking)
   and does not skip the open transaction's record once it commits.

Connection parameters come from PGHOST/PGPORT/PGUSER (scripts/env.sh).
"""

import os
import sys
import time
import traceback

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import configure, connect, create_db, drop_db, fail, get_records_sql, log  # noqa: E402
from streamtest import main_wrapper, q, q1  # noqa: E402

DB = 'stream_2pc_test'
LATENCY_LIMIT = 1.0
SH0 = 'shardId-000000000000'
SH1 = 'shardId-000000000001'
GID = 'stream_2pc_test_gid'

configure(DB, statement_timeout='20s', lock_timeout='20s')

GET_RECORDS_SQL = get_records_sql('g.next_shard_iterator, r.sequence_number, r.data')


class Follower:
    """Follows one shard with get_records, remembering everything read."""

    def __init__(self, conn, stream, shard):
        self.conn = conn
        self.stream = stream
        self.shard = shard
        self.it = q1(conn, 'SELECT stream.get_shard_iterator(%s, %s, %s)', (stream, shard, 'TRIM_HORIZON'))
        self.seen = []

    def get(self, limit=10000):
        """Follow next_shard_iterator until two calls in a row return nothing.
        Returns (new records, slowest call in seconds)."""
        new, slowest, empties, calls = [], 0.0, 0, 0
        while empties < 2 and calls < 20:
            t0 = time.monotonic()
            rows = q(self.conn, GET_RECORDS_SQL, (self.it, limit))
            slowest = max(slowest, time.monotonic() - t0)
            calls += 1
            self.it = rows[0][0]
            got = [(r[1], bytes(r[2])) for r in rows if r[1] is not None]
            empties = 0 if got else empties + 1
            new.extend(got)
        self.seen.extend(new)
        return new, slowest


def put(conn, stream, pk, data, ehk=None, shard=None):
    t0 = time.monotonic()
    row = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s, %s)',
            (stream, pk, psycopg2.Binary(data), ehk))[0]
    dt = time.monotonic() - t0
    if shard is not None and row[0] != shard:
        raise AssertionError(f'put_record({stream!r}, {pk!r}, explicit_hash_key => {ehk}) went to '
                             f'{row[0]}, expected {shard} (the shard starting at that hash key)')
    return row[0], row[1], dt


def setup():
    conn = create_db(extension=True)
    q(conn, "SELECT stream.create_stream('twopc', 2)")
    q(conn, "SELECT stream.create_stream('indep', 2)")
    rows = q(conn, "SELECT shard_id, starting_hash_key FROM stream.list_shards('indep') ORDER BY shard_id")
    starts = {sid: str(int(lo)) for sid, lo in rows}
    q(conn, 'CREATE TABLE plain(x int)')
    conn.close()
    return starts


def cleanup_prepared(conn):
    for (gid,) in q(conn, 'SELECT gid FROM pg_prepared_xacts WHERE database = current_database()'):
        log(f'  cleaning up left-over prepared transaction {gid!r}')
        q(conn, f"ROLLBACK PREPARED '{gid}'")


def test_prepare(starts):
    log('part 1: put + PREPARE TRANSACTION')
    c = connect()
    other = connect()
    try:
        mpt = int(q1(c, 'SHOW max_prepared_transactions'))
        if mpt <= 0:
            fail('max_prepared_transactions is 0 on this cluster: PREPARE TRANSACTION cannot be tested '
                 '(scripts/cluster.sh sets it to 10)')
            return
        ehk0 = starts[SH0]
        # a reader positioned before anything
        f = Follower(other, 'twopc', SH0)

        q(c, 'BEGIN')
        sid, seq_p, _ = put(c, 'twopc', 'k', b'prepared-put', ehk0, SH0)
        prepared = False
        try:
            q(c, f"PREPARE TRANSACTION '{GID}'")
            prepared = True
        except psycopg2.Error as e:
            msg = (e.pgerror or str(e)).strip()
            log(f'  PREPARE TRANSACTION refused: SQLSTATE {e.pgcode}: {msg.splitlines()[0] if msg else msg}')
            if not any(w in msg.lower() for w in ('prepare', 'two-phase', '2pc')):
                fail(f'PREPARE TRANSACTION after put_record was refused, but the message does not say why '
                     f'(expected it to mention PREPARE TRANSACTION): {msg!r}')
            try:
                q(c, 'ROLLBACK')
            except psycopg2.Error:
                pass
        gids = [g for (g,) in q(other, 'SELECT gid FROM pg_prepared_xacts')]
        if not prepared:
            if GID in gids:
                fail(f'PREPARE TRANSACTION raised an error but prepared transaction {GID!r} exists')
            # the refused record must never become visible, and the shard must not be stuck
            sid2, seq2, _ = put(c, 'twopc', 'k', b'after-refused', ehk0, SH0)
            got, dt = f.get()
            if got != [(seq2, b'after-refused')]:
                fail(f'after a refused PREPARE (put seq {seq_p} on {SH0}) and a committed put (seq {seq2}), '
                     f'a TRIM_HORIZON reader of {SH0} read {got}, expected only [({seq2!r}, '
                     f"b'after-refused')] (record of the refused transaction must be gone; the shard "
                     f'must not be held back by it)')
            elif not seq2 > seq_p:
                fail(f'sequence number {seq2} after the refused transaction is not greater than {seq_p}')
            else:
                log('  refused transaction left nothing visible and did not hold the shard back')
            if dt > LATENCY_LIMIT:
                fail(f'get_records after refused PREPARE took {dt:.2f}s')
        else:
            log(f'  PREPARE TRANSACTION accepted (gid {GID}); checking it is handled correctly')
            if GID not in gids:
                fail(f'PREPARE TRANSACTION succeeded but {GID!r} is not in pg_prepared_xacts')
            sid2, seq2, dt = put(other, 'twopc', 'k', b'after-prepared', ehk0, SH0)
            if dt > LATENCY_LIMIT:
                fail(f'put while a prepared transaction holds a record on the same shard took {dt:.2f}s')
            if not seq2 > seq_p:
                fail(f'sequence number {seq2} put after the prepared one ({seq_p}) is not greater')
            new, dt = f.get()
            if dt > LATENCY_LIMIT:
                fail(f'get_records while a prepared transaction is open took {dt:.2f}s')
            if (seq_p, b'prepared-put') in new:
                fail('record of a prepared (not yet committed) transaction is visible')
            if (seq2, b'after-prepared') in new:
                fail(f'reader returned seq {seq2} while prepared seq {seq_p} on the same shard is not yet '
                     f'committed: the prepared record would be skipped after COMMIT PREPARED')
            q(other, f"COMMIT PREPARED '{GID}'")
            f.get()
            exp = [(seq_p, b'prepared-put'), (seq2, b'after-prepared')]
            if f.seen != exp:
                fail(f'after COMMIT PREPARED the reader of {SH0} read {f.seen}, expected {exp}')
            # a prepared-and-rolled-back put must never appear
            q(c, 'BEGIN')
            _s, seq_r, _ = put(c, 'twopc', 'k', b'prepared-rolled-back', ehk0, SH0)
            q(c, f"PREPARE TRANSACTION '{GID}'")
            q(other, f"ROLLBACK PREPARED '{GID}'")
            _s, seq4, _ = put(other, 'twopc', 'k', b'final', ehk0, SH0)
            f.get()
            exp.append((seq4, b'final'))
            if f.seen != exp:
                fail(f'after ROLLBACK PREPARED (seq {seq_r}) the reader read {f.seen}, expected {exp}')

        # a transaction without any put can still be prepared (reads of a stream included)
        q(c, 'BEGIN')
        q(c, 'INSERT INTO plain VALUES (1)')
        q(c, "SELECT count(*) FROM stream.read_shard('twopc', %s)", (SH0,))
        try:
            q(c, f"PREPARE TRANSACTION '{GID}_noput'")
            q(other, f"COMMIT PREPARED '{GID}_noput'")
            if q1(other, 'SELECT count(*) FROM plain') != 1:
                fail('prepared+committed transaction without puts: row not visible')
            else:
                log('  a transaction that only read the stream can be prepared and committed')
        except psycopg2.Error as e:
            fail(f'PREPARE TRANSACTION of a transaction that did not put (INSERT into a plain table + '
                 f'read_shard) failed: {e.pgcode}: {(e.pgerror or str(e)).strip()}')
            try:
                q(c, 'ROLLBACK')
            except psycopg2.Error:
                pass
    finally:
        try:
            cleanup_prepared(other)
        except psycopg2.Error as e:
            fail(f'could not clean up prepared transactions: {e}')
        c.close()
        other.close()


def test_independence(starts):
    log('part 2: open producer transaction on one shard vs readers')
    p = connect()      # producer with an open transaction on shard 0
    w = connect()      # autocommit producer
    r = connect()      # reader
    try:
        f0 = Follower(r, 'indep', SH0)
        f1 = Follower(r, 'indep', SH1)
        q(p, 'BEGIN')
        _s, seq_open, _ = put(p, 'indep', 'open', b'open-txn', starts[SH0], SH0)
        # committed puts after the open one, on both shards
        _s, seq0b, dt0 = put(w, 'indep', 'w', b'shard0-after', starts[SH0], SH0)
        _s, seq1a, dt1 = put(w, 'indep', 'w', b'shard1-after', starts[SH1], SH1)
        for what, dt in (('put to the same shard', dt0), ('put to the other shard', dt1)):
            if dt > LATENCY_LIMIT:
                fail(f'{what} while a transaction is open on shard 0 took {dt:.2f}s')
        if not seq0b > seq_open:
            fail(f'{SH0}: later put got {seq0b}, not greater than the open transaction\'s {seq_open}')

        new1, dt = f1.get()
        log(f'  reader of {SH1}: {len(new1)} record(s) in {dt * 1000:.0f} ms while {SH0} has an open transaction')
        if dt > LATENCY_LIMIT:
            fail(f'get_records on {SH1} took {dt:.2f}s while a transaction was open on {SH0}')
        if new1 != [(seq1a, b'shard1-after')]:
            fail(f'reader of {SH1} was delayed by an open transaction on {SH0}: put+commit of seq {seq1a} '
                 f'on {SH1} after the other transaction began; first get_records from TRIM_HORIZON '
                 f'returned {new1}, expected [({seq1a!r}, b\'shard1-after\')]')
        # also with a GetShardIterator AFTER_SEQUENCE_NUMBER / read_shard
        n = q1(r, "SELECT count(*) FROM stream.read_shard('indep', %s)", (SH1,))
        if n != 1:
            fail(f'read_shard on {SH1} returned {n} records while {SH0} has an open transaction, expected 1')

        new0, dt = f0.get()
        log(f'  reader of {SH0}: {len(new0)} record(s) in {dt * 1000:.0f} ms while its open transaction runs')
        if dt > LATENCY_LIMIT:
            fail(f'get_records on {SH0} blocked for {dt:.2f}s behind the open transaction')
        if any(s == seq_open for s, _d in new0):
            fail('uncommitted record visible')
        q(p, 'COMMIT')
        f0.get()
        exp = [(seq_open, b'open-txn'), (seq0b, b'shard0-after')]
        if f0.seen != exp:
            fail(f'{SH0}: open transaction put seq {seq_open}, then another session committed seq {seq0b}; '
                 f'reader read {new0} before the first transaction committed and {f0.seen} in total, '
                 f'expected {exp} (no skip, no duplicate, in order)')
        else:
            log(f'  reader of {SH0} read both records in order after the commit')
    finally:
        for c in (p, w, r):
            c.close()


def main():
    print(__doc__.strip(), flush=True)
    log(f'PGHOST={os.environ.get("PGHOST")} PGPORT={os.environ.get("PGPORT")} database {DB}')
    starts = setup()
    for part in (test_prepare, test_independence):
        try:
            part(starts)
        except Exception as e:  # noqa: BLE001
            fail(f'{part.__name__}: {e!r}\n{traceback.format_exc()}')


if __name__ == '__main__':
    main_wrapper(main, drop_db)
