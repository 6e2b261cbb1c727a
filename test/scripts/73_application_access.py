#!/usr/bin/python3
"""Who may use applications and registered consumers: a model, checked on
random call sequences (issue items 11 and consumers).

Roles: owner O, member M (GRANT O TO M: owner rights on O's applications,
and O's stream grants through inheritance), G and R (readers, G the usual
grantee), X (no grant), and the superuser.  Two streams; the superuser
grants and revokes read access at random along the way.  Each step is one
call by one role, chosen at random (seeded: STREAM_ACCESS_SEED, steps:
STREAM_ACCESS_STEPS):

  register_application, deregister_application, grant_application_access,
  revoke_application_access, acquire_leases, get_lease_iterator,
  checkpoint, release_leases, list_applications, the view
  stream.application_leases, register_stream_consumer,
  deregister_stream_consumer, subscribe_to_shard, list_stream_consumers,
  describe_stream_consumer, and grant/revoke_stream_access.

The model says what each call must do:
  * an application exists for a role when the role is its owner, a member
    of the owner, or a grantee (or a member of one), and not otherwise:
    every lease call of anyone else gets exactly the ResourceNotFoundException
    of a name never registered (same message and hint);
  * one who may use it but cannot read its stream any more gets
    AccessDeniedException (42501); deregistering, granting and revoking are
    for the owner and its members (42501 for grantees);
  * registering needs read access to the stream (42501), a taken name is
    ResourceInUseException (42710); leases are held by the one worker id all
    roles use, so a checkpoint or iterator without a held lease is 55000;
  * list_applications and the view show exactly the applications the role
    may use and read, the grantees only to the owner's members;
  * consumers: readers of the stream see, register and subscribe with every
    consumer of it; only its registering role (and members) deregister it
    (42501 for other readers); to non-readers consumers do not exist (42704).
At the end the catalogs equal the model's state.

Exit status 0 = pass, 1 = failure.
"""

import os
import random
import sys

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, connect, create_db, drop_db, fail, finish, log, q, q1  # noqa: E402
from streamtest import shard_id  # noqa: E402

DB = 'stream_application_access'
configure(DB, statement_timeout='20s')
SEED = int(os.environ.get('STREAM_ACCESS_SEED', '20261201'))
STEPS = int(os.environ.get('STREAM_ACCESS_STEPS', '4000'))

PFX = 'stream_aa_'
O, M, G, R, X = (PFX + n for n in ('owner', 'member', 'grantee', 'reader', 'stranger'))
ROLES = (O, M, G, R, X)
SU = 'postgres'                     # the connections' default user (scripts/env.sh): superuser
ACTORS = ROLES + (SU,)
STREAMS = ('aa1', 'aa2')
APPS = [f'app{i}' for i in range(6)]
CONSUMERS = [f'con{i}' for i in range(4)]
WORKER = 'w'
NSHARDS = 2


class Model:
    def __init__(self):
        self.direct = {(r, s): False for r in ROLES for s in STREAMS}   # grant_stream_access 'read'
        self.apps = {}          # name -> {'owner', 'stream', 'grants': set, 'held': bool}
        self.consumers = {}     # (stream, name) -> owner

    def member(self, r, role):
        """pg_has_role(r, role, 'MEMBER')"""
        return r == SU or r == role or (r == M and role == O)

    def read(self, r, s):
        return r == SU or self.direct[(r, s)] or (r == M and self.direct[(O, s)])

    def may_use(self, r, a):
        return self.member(r, a['owner']) or any(self.member(r, g) for g in a['grants'])

    def visible(self, r):
        return sorted(n for n, a in self.apps.items() if self.may_use(r, a) and self.read(r, a['stream']))

    def app_access(self, r, name, owner_only=False):
        """None when the role may go on; else the SQLSTATE it must get."""
        a = self.apps.get(name)
        if a is None or not self.may_use(r, a):
            return '42704'
        if not self.read(r, a['stream']):
            return '42501'
        if owner_only and not self.member(r, a['owner']):
            return '42501'
        return None


class Run:
    def __init__(self, conns, seqs):
        self.conns, self.seqs = conns, seqs
        self.m = Model()
        self.rng = random.Random(SEED)
        self.outcomes = {}
        self.conts = {}     # (stream, consumer) -> the continuation its subscription is at

    def call(self, r, sql, args=None):
        """(sqlstate or 'ok', rows, error)"""
        try:
            return 'ok', q(self.conns[r], sql, args), None
        except psycopg2.Error as e:
            return e.pgcode, None, e

    def expect(self, step, r, what, got, want, err):
        self.outcomes[(what, want)] = self.outcomes.get((what, want), 0) + 1
        msg = (err.pgerror or '').strip().splitlines()[0] if err is not None and err.pgerror else ''
        return check(got == want, f'step {step}: {r} {what}: got {got} {msg}, the model says {want}')

    def not_found_exactly(self, step, r, what, name, err):
        """A hidden application's error is the one of a name never registered."""
        if err is None:
            return
        d = err.diag
        check(d.message_primary == f'ResourceNotFoundException: Application {name} not found.'
              and d.message_hint == 'Register it with stream.register_application(application_name, stream_name).'
              and d.message_detail is None,
              f'step {step}: {r} {what}: the not-found error differs from a never-registered name\'s: '
              f'{d.message_primary!r} {d.message_detail!r} {d.message_hint!r}')

    # ------------------------------------------------------------ steps
    def step(self, i):
        m, rng = self.m, self.rng
        r = rng.choice(ACTORS)
        name = rng.choice(APPS)
        s = rng.choice(STREAMS)
        kind = rng.choices(
            ['register', 'deregister', 'grant', 'revoke', 'acquire', 'iterator', 'checkpoint', 'release',
             'list', 'view', 'reg_consumer', 'dereg_consumer', 'subscribe', 'list_consumers',
             'describe_consumer', 'stream_access'],
            weights=[8, 3, 6, 3, 8, 6, 6, 3, 4, 4, 4, 3, 4, 2, 2, 5])[0]

        if kind == 'register':
            got, _, err = self.call(r, 'SELECT stream.register_application(%s, %s)', (name, s))
            want = '42501' if not m.read(r, s) else '42710' if name in m.apps else 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                m.apps[name] = {'owner': r, 'stream': s, 'grants': set(), 'held': False}
        elif kind == 'deregister':
            got, _, err = self.call(r, 'SELECT stream.deregister_application(%s)', (name,))
            want = m.app_access(r, name, owner_only=True) or 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                del m.apps[name]
            if want == '42704':
                self.not_found_exactly(i, r, kind, name, err)
        elif kind in ('grant', 'revoke'):
            target = rng.choice(ROLES)
            got, _, err = self.call(r, f'SELECT stream.{kind}_application_access(%s, %s)', (name, target))
            want = m.app_access(r, name, owner_only=True) or 'ok'
            if self.expect(i, r, f'{kind} to {target}', got, want, err) and want == 'ok':
                (m.apps[name]['grants'].add if kind == 'grant' else m.apps[name]['grants'].discard)(target)
            if want == '42704':
                self.not_found_exactly(i, r, kind, name, err)
        elif kind == 'acquire':
            got, rows, err = self.call(r, "SELECT count(*) FROM stream.acquire_leases(%s, %s, '1 hour')", (name, WORKER))
            want = m.app_access(r, name) or 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                check(rows[0][0] == NSHARDS, f'step {i}: {r} acquired {rows[0][0]} leases, expected {NSHARDS}')
                m.apps[name]['held'] = True
            if want == '42704':
                self.not_found_exactly(i, r, kind, name, err)
        elif kind in ('iterator', 'checkpoint'):
            a = m.apps.get(name)
            seq = self.seqs[a['stream'] if a else s]
            if kind == 'iterator':
                got, rows, err = self.call(r, 'SELECT stream.get_lease_iterator(%s, %s, %s)', (name, WORKER, shard_id(0)))
            else:
                got, rows, err = self.call(r, 'SELECT stream.checkpoint(%s, %s, %s, %s)', (name, WORKER, shard_id(0), seq))
            want = m.app_access(r, name) or ('ok' if a['held'] else '55000')
            if self.expect(i, r, kind, got, want, err) and want == 'ok' and kind == 'iterator':
                check(rows[0][0] is not None, f'step {i}: {r} got no lease iterator')
            if want == '42704':
                self.not_found_exactly(i, r, kind, name, err)
        elif kind == 'release':
            got, rows, err = self.call(r, 'SELECT stream.release_leases(%s, %s)', (name, WORKER))
            want = m.app_access(r, name) or 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                held = m.apps[name]['held']
                check(rows[0][0] == (NSHARDS if held else 0), f'step {i}: {r} released {rows[0][0]} leases')
                m.apps[name]['held'] = False
            if want == '42704':
                self.not_found_exactly(i, r, kind, name, err)
        elif kind == 'list':
            got, rows, err = self.call(r, 'SELECT application_name, stream_name, owner::text, grantees::text[] '
                                          'FROM stream.list_applications()')
            if self.expect(i, r, kind, got, 'ok', err):
                want = [(n, m.apps[n]['stream'], m.apps[n]['owner'],
                         sorted(m.apps[n]['grants']) if m.member(r, m.apps[n]['owner']) else None)
                        for n in m.visible(r)]
                rows = [(a, b, c, sorted(d) if d is not None else None) for a, b, c, d in rows]
                check(rows == want, f'step {i}: {r} list_applications gave {rows}, the model says {want}')
        elif kind == 'view':
            got, rows, err = self.call(r, 'SELECT application_name, count(*), bool_and(lease_owner IS NOT DISTINCT FROM %s) '
                                          'FROM stream.application_leases GROUP BY 1 ORDER BY 1', (WORKER,))
            if self.expect(i, r, kind, got, 'ok', err):
                names = [row[0] for row in rows]
                check(names == m.visible(r), f'step {i}: {r} sees leases of {names}, the model says {m.visible(r)}')
                check(all(row[1] == NSHARDS for row in rows), f'step {i}: {r} sees lease counts {rows}')
        elif kind == 'reg_consumer':
            c = rng.choice(CONSUMERS)
            got, _, err = self.call(r, 'SELECT stream.register_stream_consumer(%s, %s)', (s, c))
            want = '42501' if not m.read(r, s) else '42710' if (s, c) in m.consumers else 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                m.consumers[(s, c)] = r
        elif kind == 'dereg_consumer':
            c = rng.choice(CONSUMERS)
            got, _, err = self.call(r, 'SELECT stream.deregister_stream_consumer(%s, %s)', (s, c))
            owner = m.consumers.get((s, c))
            want = ('42704' if not m.read(r, s) or owner is None else
                    '42501' if not m.member(r, owner) else 'ok')
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                del m.consumers[(s, c)]
        elif kind == 'subscribe':
            # one subscription per consumer and shard: each call continues the last
            c = rng.choice(CONSUMERS)
            cont = self.conts.get((s, c))
            got, rows, err = self.call(r, "SELECT continuation_sequence_number FROM stream.subscribe_to_shard(%s, %s, %s, "
                                          "%s, %s, wait_timeout => '0 s')",
                                       (s, c, shard_id(0), 'TRIM_HORIZON' if cont is None else 'AFTER_SEQUENCE_NUMBER', cont))
            want = '42704' if not m.read(r, s) or (s, c) not in m.consumers else 'ok'
            if self.expect(i, r, kind, got, want, err) and want == 'ok':
                self.conts[(s, c)] = rows[0][0]
        elif kind == 'list_consumers':
            got, rows, err = self.call(r, 'SELECT consumer_name FROM stream.list_stream_consumers(%s)', (s,))
            if self.expect(i, r, kind, got, 'ok', err):
                want = sorted(c for (s2, c) in m.consumers if s2 == s) if m.read(r, s) else []
                check([x[0] for x in rows] == want, f'step {i}: {r} lists consumers {rows} of {s}, the model says {want}')
        elif kind == 'describe_consumer':
            c = rng.choice(CONSUMERS)
            got, _, err = self.call(r, 'SELECT stream.describe_stream_consumer(%s, %s)', (s, c))
            want = 'ok' if m.read(r, s) and (s, c) in m.consumers else '42704'
            self.expect(i, r, kind, got, want, err)
        elif kind == 'stream_access':
            target = rng.choice(ROLES)
            grant = rng.random() < 0.6
            q(self.conns[SU], f"SELECT stream.{'grant' if grant else 'revoke'}_stream_access(%s, %s, 'read')", (s, target))
            m.direct[(target, s)] = grant

    def final_state(self):
        m, su = self.m, self.conns[SU]
        apps = q(su, 'SELECT application_name, owner::text, s.stream_name FROM stream.applications a '
                     'JOIN stream.streams s USING (stream_id) ORDER BY 1')
        want = [(n, a['owner'], a['stream']) for n, a in sorted(m.apps.items())]
        check(apps == want, f'final: applications {apps}, the model says {want}')
        grants = q(su, 'SELECT application_name, grantee::text FROM stream.application_grants ORDER BY 1, 2')
        want = sorted((n, g) for n, a in m.apps.items() for g in a['grants'])
        check(grants == want, f'final: grants {grants}, the model says {want}')
        cons = q(su, 'SELECT s.stream_name, consumer_name, owner::text FROM stream.stream_consumers c '
                     'JOIN stream.streams s USING (stream_id) ORDER BY 1, 2')
        want = sorted((s, c, o) for (s, c), o in m.consumers.items())
        check(cons == want, f'final: consumers {cons}, the model says {want}')


def main():
    admin = create_db(roles=ROLES, extension=True)
    conns = {}
    try:
        for r in ROLES:
            q(admin, f'CREATE ROLE {r} LOGIN')
        q(admin, f'GRANT {O} TO {M}')
        seqs = {}
        for s in STREAMS:
            q(admin, 'SELECT stream.create_stream(%s, %s)', (s, NSHARDS))
            seqs[s] = q1(admin, "SELECT sequence_number FROM stream.put_record(%s, 'k', '\\x01', '0')", (s,))
        conns = {r: connect(user=r) for r in ROLES}
        conns[SU] = admin
        check(q1(admin, 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user') and
              q1(admin, 'SELECT current_user') == SU, f'the test connects as superuser {SU}')
        run = Run(conns, seqs)
        log(f'seed {SEED}, {STEPS} steps')
        for i in range(STEPS):
            run.step(i)
        run.final_state()
        tally = {}
        for (what, want), n in run.outcomes.items():
            tally[want] = tally.get(want, 0) + n
        log(f'outcomes by expected result: {dict(sorted(tally.items()))}; '
            f'{len(run.m.apps)} applications and {len(run.m.consumers)} consumers at the end')
        # every kind of refusal came up (else the sequence was too short to test the rules)
        for want in ('ok', '42704', '42501', '42710', '55000'):
            check(tally.get(want, 0) >= 5, f'only {tally.get(want, 0)} calls were expected to give {want}')
        for what in ('acquire', 'checkpoint', 'deregister', 'grant to ' + G, 'dereg_consumer', 'subscribe'):
            for want in ('ok', '42704', '42501'):
                if (what, want) not in run.outcomes and not (what == 'subscribe' and want == '42501'):
                    fail(f'no {what} call was expected to give {want}: raise STREAM_ACCESS_STEPS or change the seed')
    finally:
        for r, c in conns.items():
            if r != SU:
                c.close()
        admin.close()
        drop_db(roles=ROLES)
    finish()


if __name__ == '__main__':
    main()
