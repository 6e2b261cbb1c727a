#!/usr/bin/python3
"""Hostile roles cannot write or lock the consumer catalogs (issue item 4).

Two sessions.  A hostile role opens a transaction and tries one statement on
one of the catalogs behind leases and consumers (stream.applications,
stream.leases, stream.application_grants, stream.stream_consumers, the view
stream.application_leases, and stream.streams / stream.shards, which they
reference): LOCK TABLE in each of the eight modes, SELECT ... FOR UPDATE /
NO KEY UPDATE / SHARE / KEY SHARE, UPDATE, DELETE, TRUNCATE and INSERT.  It
keeps whatever it got while a victim role, in another session, runs a worker
round (acquire_leases, get_lease_iterator, checkpoint, release_leases),
registers and deregisters an application and a consumer, subscribes to a
shard and lists what it may see.  Every victim call must succeed within
3 seconds (lock_timeout 2 s: a call that would wait fails instead).  The
matrix of attacks is generated; each runs twice: as a role that reads and
writes the stream (and owns an application and a consumer of its own) and
as a role with no grant at all.

Also expected, per attack: on the catalogs the hostile statement fails with
42501 (the view, not updatable, may refuse writes before checking), except SELECT privileges' own lock
(LOCK ... IN ACCESS SHARE MODE) on stream.stream_consumers, streams, shards
and the view, which conflicts only with ACCESS EXCLUSIVE, which the API
never takes.  The victim's application, leases, checkpoint and consumer are
unchanged at the end.

API-level holds by the reading hostile role, each in an open transaction:
registering its own application, a round of its own workers, registering a
consumer (other registrations on the stream then fail fast with
LimitExceededException 54000 instead of waiting, which is allowed), reading
and LOCKing the stream's data table.

Exit status 0 = pass, 1 = failure.
"""

import os
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, fail, finish, log, q, q1  # noqa: E402
from streamtest import run_subtests, shard_id  # noqa: E402

DB = 'stream_catalog_locks'
configure(DB, statement_timeout='20s')
VICTIM, READER, NOBODY = 'stream_cl_victim', 'stream_cl_reader', 'stream_cl_nobody'
ROLES = (VICTIM, READER, NOBODY)
STREAM = 'cl'
VICTIM_LIMIT = 3.0        # seconds a victim call may take

CATALOGS = ['stream.applications', 'stream.leases', 'stream.application_grants', 'stream.stream_consumers',
            'stream.application_leases', 'stream.streams', 'stream.shards']
PRIVATE = {'stream.applications', 'stream.leases', 'stream.application_grants'}
MODES = ['ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE',
         'SHARE ROW EXCLUSIVE', 'EXCLUSIVE', 'ACCESS EXCLUSIVE']
ROW_LOCKS = ['FOR UPDATE', 'FOR NO KEY UPDATE', 'FOR SHARE', 'FOR KEY SHARE']
# a column every catalog and the view has, for UPDATE and INSERT
COLUMN = {'stream.applications': 'application_name', 'stream.leases': 'application_name',
          'stream.application_grants': 'application_name', 'stream.stream_consumers': 'consumer_name',
          'stream.application_leases': 'application_name', 'stream.streams': 'stream_name',
          'stream.shards': 'shard_index'}


def attacks():
    """(catalog, label, statement) for every catalog and kind of attack."""
    for cat in CATALOGS:
        col = COLUMN[cat]
        val = '0' if col == 'shard_index' else "'x'"
        for m in MODES:
            yield cat, f'LOCK {m}', f'LOCK TABLE {cat} IN {m} MODE'
        for r in ROW_LOCKS:
            yield cat, f'SELECT {r}', f'SELECT * FROM {cat} {r}'
        yield cat, 'UPDATE', f'UPDATE {cat} SET {col} = {col}'
        yield cat, 'DELETE', f'DELETE FROM {cat}'
        yield cat, 'TRUNCATE', f'TRUNCATE {cat} CASCADE'
        yield cat, 'INSERT', f'INSERT INTO {cat} ({col}) VALUES ({val})'


def may_succeed(cat, label):
    """Which hostile statements the privileges allow (all harmless to the API)."""
    return label == 'LOCK ACCESS SHARE' and cat not in PRIVATE


class Victim:
    """A role using its own application and consumer, timing every call."""

    cont = None     # its consumer's subscription: one per consumer and shard, each call continuing the last

    def __init__(self):
        self.conn = connect(user=VICTIM)
        q(self.conn, "SET lock_timeout = '2s'")
        self.n = 0

    def calls(self):
        self.n += 1
        n = self.n
        sh = shard_id(0)
        return [
            ('acquire_leases', "SELECT count(*) FROM stream.acquire_leases('va', 'vw', '1 hour')", None),
            ('get_lease_iterator', "SELECT stream.get_lease_iterator('va', 'vw', %s)", (sh,)),
            ('checkpoint', "SELECT stream.checkpoint('va', 'vw', %s, %s)", (sh, SEQ0)),
            ('release_leases', "SELECT stream.release_leases('va', 'vw')", None),
            ('register_application', "SELECT stream.register_application(%s, %s)", (f'vapp{n}', STREAM)),
            ('deregister_application', "SELECT stream.deregister_application(%s)", (f'vapp{n}',)),
            ('register_stream_consumer', "SELECT stream.register_stream_consumer(%s, %s)", (STREAM, f'vc{n}')),
            ('deregister_stream_consumer', "SELECT stream.deregister_stream_consumer(%s, %s)", (STREAM, f'vc{n}')),
            ('subscribe_to_shard', "SELECT continuation_sequence_number FROM stream.subscribe_to_shard(%s, 'vc', %s, "
                                   "%s, %s, wait_timeout => '0 s')",
             (STREAM, sh, 'TRIM_HORIZON' if self.cont is None else 'AFTER_SEQUENCE_NUMBER', self.cont)),
            ('list_applications', 'SELECT count(*) FROM stream.list_applications()', None),
            ('application_leases', 'SELECT count(*) FROM stream.application_leases', None),
            ('list_stream_consumers', 'SELECT count(*) FROM stream.list_stream_consumers(%s)', (STREAM,)),
            ('describe_stream_summary', 'SELECT stream.describe_stream_summary(%s)', (STREAM,)),
        ]

    def round(self, what, allow=()):
        """Run every victim call; each must succeed (or fail with an allowed SQLSTATE) in time."""
        for name, sql, args in self.calls():
            t = time.monotonic()
            try:
                rows = q(self.conn, sql, args)
                if name == 'subscribe_to_shard':
                    Victim.cont = rows[0][0]
                err = None
            except psycopg2.Error as e:
                err = e
            took = time.monotonic() - t
            if err is not None and err.pgcode in allow:
                continue
            if err is not None:
                fail(f'{what}: the victim\'s {name} failed after {took:.2f} s: {err.pgcode} '
                     f'{(err.pgerror or "").strip().splitlines()[0] if err.pgerror else err}')
            elif took > VICTIM_LIMIT:
                fail(f'{what}: the victim\'s {name} took {took:.2f} s')

    def close(self):
        self.conn.close()


def hostile_statement(role, cat, label, sql, victim):
    h = connect(user=role)
    h.autocommit = False
    try:
        try:
            q(h, sql)
            got = None
        except psycopg2.Error as e:
            got = e.pgcode
            h.rollback()     # nothing held; the victim must pass all the same
        what = f'{role} {label} on {cat}'
        if got is None:
            check(may_succeed(cat, label), f'{what}: the hostile statement succeeded')
        else:
            # the view is not updatable: writes to it fail before any privilege check
            ok = ('42501', '55000', '42809') if cat == 'stream.application_leases' else ('42501',)
            check(got in ok, f'{what}: refused with {got}, expected {" or ".join(ok)}')
        victim.round(what + (' (held)' if got is None else ' (refused)'))
        return got is None
    finally:
        h.rollback()
        h.close()


def test_matrix(admin):
    victim = Victim()
    held = 0
    total = 0
    try:
        victim.round('before any attack')
        for role in (READER, NOBODY):
            for cat, label, sql in attacks():
                total += 1
                held += hostile_statement(role, cat, label, sql, victim)
    finally:
        victim.close()
    log(f'matrix: {total} hostile statements, {held} of them granted and held while the victim ran '
        f'{total * 13} calls')
    check(held > 0, 'matrix: no hostile statement was ever granted (the test would not notice a lock)')


def test_api_holds(admin):
    victim = Victim()
    sid = q1(admin, 'SELECT stream_id FROM stream.streams WHERE stream_name = %s', (STREAM,))
    holds = [
        ('register_application', [f"SELECT stream.register_application('h_open', '{STREAM}')"], ()),
        ('own worker round', ["SELECT count(*) FROM stream.acquire_leases('ha', 'hw', '1 hour')",
                              f"SELECT stream.checkpoint('ha', 'hw', '{shard_id(0)}', '{SEQ0}')"], ()),
        # the victim's registration may fail fast (and so then its deregistration)
        ('register_stream_consumer', [f"SELECT stream.register_stream_consumer('{STREAM}', 'h_open')"],
         ('54000', '42704')),
        ('deregister own consumer', [f"SELECT stream.deregister_stream_consumer('{STREAM}', 'hc')"], ()),
        ('read the data table', [f'SELECT count(*) FROM stream_data.s{sid}'], ()),
        ('lock the data table', [f'LOCK TABLE stream_data.s{sid} IN ACCESS SHARE MODE',
                                 f'LOCK TABLE stream_data.s{sid} IN ROW EXCLUSIVE MODE'], ()),
        ('open put', [f"SELECT stream.put_record('{STREAM}', 'h', '\\x01')"], ()),
    ]
    try:
        for what, stmts, allow in holds:
            h = connect(user=READER)
            h.autocommit = False
            try:
                for sql in stmts:
                    q(h, sql)
                victim.round(f'reader holding an open {what}', allow)
            except psycopg2.Error as e:
                fail(f'api holds: the reader could not {what}: {e.pgcode} {e.pgerror}')
            finally:
                h.rollback()
                h.close()
    finally:
        victim.close()


def test_unchanged(admin):
    rows = q(admin, "SELECT application_name, owner::text FROM stream.applications ORDER BY 1")
    check(rows == [('ha', READER), ('va', VICTIM)], f'unchanged: applications are {rows}')
    cps = q(admin, "SELECT shard_index, checkpoint FROM stream.leases WHERE application_name = 'va' ORDER BY 1")
    check(cps == [(0, SEQ0), (1, 'TRIM_HORIZON')], f'unchanged: the victim\'s checkpoints are {cps}')
    cons = q(admin, 'SELECT consumer_name, owner::text FROM stream.stream_consumers ORDER BY 1')
    check(cons == [('hc', READER), ('vc', VICTIM)], f'unchanged: consumers are {cons}')


SEQ0 = None


def main():
    global SEQ0
    admin = create_db(roles=ROLES, extension=True)
    try:
        for r in ROLES:
            q(admin, f'CREATE ROLE {r} LOGIN')
        q(admin, 'SELECT stream.create_stream(%s, 2)', (STREAM,))
        q(admin, "SELECT stream.grant_stream_access(%s, %s, 'read')", (STREAM, VICTIM))
        q(admin, "SELECT stream.grant_stream_access(%s, %s, 'read_write')", (STREAM, READER))
        SEQ0 = q1(admin, "SELECT sequence_number FROM stream.put_record(%s, 'k', '\\x01', '0')", (STREAM,))
        v, r = connect(user=VICTIM), connect(user=READER)
        q(v, 'SELECT stream.register_application(%s, %s)', ('va', STREAM))
        q(v, 'SELECT stream.register_stream_consumer(%s, %s)', (STREAM, 'vc'))
        q(r, 'SELECT stream.register_application(%s, %s)', ('ha', STREAM))
        q(r, 'SELECT stream.register_stream_consumer(%s, %s)', (STREAM, 'hc'))
        v.close()
        r.close()
        run_subtests((('matrix', test_matrix, (admin,)),
                      ('api_holds', test_api_holds, (admin,)),
                      ('unchanged', test_unchanged, (admin,))))
    finally:
        admin.close()
        drop_db(roles=ROLES)
    finish()


if __name__ == '__main__':
    main()
