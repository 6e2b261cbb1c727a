#!/usr/bin/python3
"""Anyone can NOTIFY a stream's channel: a notification is only a hint.

PostgreSQL has no privilege on NOTIFY channels, so a LOGIN role with no grants
sends notifications on stream.notification_channel('n1') with forged payloads
(a real shard id, a shard that does not exist, a fake sequence number, a JSON
"record", a long string, none).  Then:

* a LISTENing subscriber (a role with read access) wakes on each, and
  following the documented contract (read after a notification, with the
  payload at most a hint of which shard) gets no records and no error;
* subscribe_to_shard trusts no notification: while the forger notifies, a
  waiting subscriber is not woken (it waits its whole wait_timeout) and
  returns no records, also in a session that LISTENs on the channel itself;
  a real put still wakes it with exactly that record (so the test can fail);
* README.md and docs/reference.md say that a notification is a hint, carries
  no data and must be followed by a read.
"""
import os
import random
import re
import select
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import ROOT, check, configure, connect, create_db, drop_db, finish, log, q, q1  # noqa: E402
from streamtest import run_subtests, shard_id, warn  # noqa: E402

DB = 'stream_forged_notify_test'
ROLES = ('fn_reader', 'fn_forger')
SEED = int(os.environ.get('STREAM_TEST_SEED', random.randrange(1 << 30)))
rnd = random.Random(SEED)
WAIT = 2.0

configure(DB, statement_timeout='60s', client_min_messages='warning')
su = create_db(extension=True, roles=ROLES)
log(f'seed {SEED}')
q(su, "CREATE ROLE fn_reader LOGIN; CREATE ROLE fn_forger LOGIN")
q(su, "SELECT stream.create_stream('n1', 2)")
q(su, "SELECT stream.grant_stream_access('n1', 'fn_reader', 'read')")
q(su, "SELECT stream.register_stream_consumer('n1', 'c1')")
CHANNEL = q1(su, "SELECT stream.enable_stream_notifications('n1')")
check(CHANNEL == q1(su, "SELECT stream.notification_channel('n1')"), 'the channel')
q(su, "SELECT stream.put_record('n1', 'k', '\\x01')")


def payloads():
    fake_seq = '4' + ''.join(rnd.choice('0123456789') for _ in range(39))
    return [shard_id(0), shard_id(1), shard_id(rnd.randrange(2, 10000)), fake_seq,
            '{"sequence_number": "%s", "data": "AAEC"}' % fake_seq, 'x' * rnd.randrange(100, 7000), '']


def forge(conn, payload):
    q(conn, "SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def drain(conn, timeout):
    """Notifications on conn within timeout (at least one wait)."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([conn], [], [], max(0.0, end - time.monotonic())) != ([], [], []):
            conn.poll()
            got.extend(conn.notifies)
            conn.notifies.clear()
            if got:
                end = min(end, time.monotonic() + 0.2)
    return got


def read_all(conn, iterators):
    """One get_records per shard from its iterator: (records, next iterators)."""
    n, nxt = 0, {}
    for shard, it in iterators.items():
        cnt, nxt[shard] = q(conn, "SELECT cardinality(records), next_shard_iterator FROM stream.get_records(%s)", (it,))[0]
        n += cnt
    return n, nxt


def t_listener_wakes_reads_nothing():
    reader = connect(user='fn_reader')
    forger = connect(user='fn_forger')
    its = {s: q1(reader, "SELECT stream.get_shard_iterator('n1', %s, 'LATEST')", (shard_id(s),)) for s in (0, 1)}
    q(reader, f'LISTEN {CHANNEL}')
    for p in payloads():
        forge(forger, p)
        got = drain(reader, 5)
        check(len(got) == 1 and got[0].channel == CHANNEL and got[0].payload == p,
              f'the listener wakes on a forged notification ({p[:60]!r}): {[(n.channel, n.payload[:60]) for n in got]}')
        # the contract: a notification is a hint to read; the payload at most names a shard
        hinted = {s: its[s] for s in (0, 1) if p == shard_id(s)} or its
        try:
            n, nxt = read_all(reader, hinted)
            its.update(nxt)
            check(n == 0, f'a read after a forged notification ({p[:60]!r}) returned {n} records')
        except psycopg2.Error as e:
            check(False, f'a read after a forged notification ({p[:60]!r}) failed: {e.pgcode} {e.pgerror}')
    # the real thing still arrives, with its record
    q(su, "SELECT stream.put_record('n1', 'k', '\\x02')")
    got = drain(reader, 5)
    n, _ = read_all(reader, its)
    check(len(got) == 1 and n == 1, f'a real put: {len(got)} notifications, {n} records')
    reader.close()
    forger.close()


def subscribe(conn, cont, out):
    t = time.monotonic()
    try:
        out['row'] = q(conn, "SELECT cardinality(records), continuation_sequence_number FROM stream.subscribe_to_shard("
                             "'n1', 'c1', %s, 'AFTER_SEQUENCE_NUMBER', %s, wait_timeout => %s)",
                       (shard_id(0), cont, f'{WAIT} seconds'))[0]
    except psycopg2.Error as e:
        out['error'] = f'{e.pgcode} {e.pgerror}'
    out['seconds'] = time.monotonic() - t


def t_subscriber_trusts_no_notification():
    reader = connect(user='fn_reader')
    forger = connect(user='fn_forger')
    cont = q(reader, "SELECT continuation_sequence_number FROM stream.subscribe_to_shard("
                     "'n1', 'c1', %s, 'TRIM_HORIZON', wait_timeout => '0 seconds')", (shard_id(0),))[0][0]
    for listening in (False, True):
        if listening:
            q(reader, f'LISTEN {CHANNEL}')
        out = {}
        th = threading.Thread(target=subscribe, args=(reader, cont, out))
        th.start()
        time.sleep(0.3)
        for p in payloads() + [cont]:
            forge(forger, p)
            time.sleep(0.05)
        th.join()
        what = 'a LISTENing subscriber' if listening else 'a subscriber'
        check('error' not in out, f'{what}: {out.get("error")}')
        check(out.get('row', [None])[0] == 0, f'{what} returned records after forged notifications: {out}')
        check(out['seconds'] >= WAIT - 0.2, f'{what} was woken by a forged notification after {out["seconds"]:.2f}s')
        if listening:
            reader.poll()
            check(len(reader.notifies) > 0, 'the LISTENing subscriber got the forged notifications')
            reader.notifies.clear()
    # a real put wakes it at once, with exactly that record
    out = {}
    th = threading.Thread(target=subscribe, args=(reader, cont, out))
    th.start()
    time.sleep(0.3)
    q(su, "SELECT stream.put_record('n1', 'k', '\\x03', explicit_hash_key => '0')")
    th.join()
    check(out.get('row', [None])[0] == 1 and out['seconds'] < WAIT - 0.5, f'a real put: {out}')
    reader.close()
    forger.close()


def t_documented():
    """The README and the reference say it."""
    for path, section in (('README.md', r'### LISTEN/NOTIFY\n(.*?)\n#'),
                          ('docs/reference.md', r'### `stream\.notification_channel.*?\n(.*?)\n#')):
        text = open(os.path.join(ROOT, path), encoding='utf-8').read()
        m = re.search(section, text, re.S)
        body = ' '.join(m.group(1).split()) if m else ''
        for words in ('hint', 'no data', 'followed by a read', 'any role'):
            check(words in body, f'{path}: the notification section does not say "{words}"')
    ref = open(os.path.join(ROOT, 'docs', 'reference.md'), encoding='utf-8').read()
    m = re.search(r'### `stream\.subscribe_to_shard.*?\n(.*?)\n#', ref, re.S)
    check(m is not None and 'never' in m.group(1) and 'notification' in m.group(1),
          'docs/reference.md: subscribe_to_shard does not say it never uses notifications')


try:
    run_subtests([('listener_wakes_reads_nothing', t_listener_wakes_reads_nothing, ()),
                  ('subscriber_trusts_no_notification', t_subscriber_trusts_no_notification, ()),
                  ('documented', t_documented, ())])
finally:
    su.close()
    drop_db(roles=ROLES, on_error=warn)
finish()
