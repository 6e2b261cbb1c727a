#!/usr/bin/python3
"""KPL aggregates between stream and the npm package aws-kinesis-agg (docs/kpl.md).

Seeded random batches of user records (0-byte data, 126/127/128-byte fields,
up to 20 KB, ASCII, multibyte and 256-character keys, digit-only keys,
explicit hash keys in a third of the records, batches of 1 to 3000 records)
go both ways through test/kpl/kpl_node.mjs:

  theirs   aws-kinesis-agg aggregates each batch (RecordAggregator); the
           record is put to a stream and read back with read_shard(...,
           deaggregate => true) and get_records(it, limit, deaggregate =>
           true): our user records must equal aws-kinesis-agg's own
           de-aggregation of the same bytes (partition key, data,
           sub-sequence number; explicit hash key wherever a sub-record has
           one), and the batch put in, except where aws-kinesis-agg encodes
           wrongly (below); the enclosing sequence number on each.
  ours     stream.aggregate_records aggregates each batch; aws-kinesis-agg
           de-aggregates it (MD5 checked): the batch put in, exactly.
  damaged  truncated and bit-flipped aws-kinesis-agg aggregates come back
           from us as one plain record each, byte for byte (the KCL's rule).

Two faults of aws-kinesis-agg 4.2.8 are counted and reported, not failed on:
its aggregator writes the partition key and explicit hash key tables in
JavaScript object key order (integer-like keys first, ascending) while it
numbered the keys in order of use, so a batch with digit-only partition keys,
or with explicit hash keys below 2^32 - 1, names the wrong keys (we read what
it wrote, as its own de-aggregation does); and its de-aggregation gives a
sub-record without an explicit hash key the table's first one (we give none,
as the KCL does).

    STREAM_KPL_INTEROP_SEED=<n> test/scripts/76_kpl_interop.py
"""

import base64
import json
import os
import random
import subprocess
import sys

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import ROOT, check, configure, connect, create_db, drop_db, fail  # noqa: E402
from streamtest import log, main_wrapper, q, q1  # noqa: E402

DB = 'stream_kpl_interop'
configure(DB, statement_timeout='120s')
SEED = int(os.environ.get('STREAM_KPL_INTEROP_SEED', random.SystemRandom().randrange(2 ** 31)))
rng = random.Random(SEED)
NODE_HELPER = os.path.join(ROOT, 'test', 'kpl', 'kpl_node.mjs')
NBATCHES = 40

MULTIBYTE = ['é', 'ß', 'Ω', 'ж', '鍵', '中', '😀', '\u0301']


def random_key(digits):
    r = rng.random()
    if r < 0.1:
        # digit-only keys (aws-kinesis-agg's fault) in some batches only, so that the others check it strictly
        return str(rng.randrange(1000)) if digits else 'd' + str(rng.randrange(1000))
    if r < 0.2:
        return ''.join(rng.choice(MULTIBYTE) for _ in range(rng.randint(1, 20)))
    if r < 0.25:
        return ''.join(rng.choice('abcdefghij') for _ in range(256))      # the longest
    if r < 0.3:
        return rng.choice(MULTIBYTE) * 256                                # 256 characters, up to 1 KiB
    return 'key-' + ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz0123456789_.-') for _ in range(rng.randint(1, 12)))


def random_data():
    r = rng.random()
    if r < 0.1:
        n = 0
    elif r < 0.4:
        n = rng.choice([1, 126, 127, 128, 129, 255, 256, 16383, 16384])
    elif r < 0.45:
        n = rng.randint(1000, 20000)
    else:
        n = rng.randint(1, 200)
    return bytes(rng.getrandbits(8) for _ in range(n))


def random_ehk(small):
    if rng.random() < 2 / 3:
        return None
    return str(rng.randrange(2 ** 32 if small else 2 ** 128))


def random_batch():
    size = rng.choice([1, 2, 3, rng.randint(4, 50), rng.randint(50, 300), 3000]) if rng.random() < 0.9 else 1
    odd = rng.random() < 0.25
    keys = [random_key(odd) for _ in range(max(1, size // 4))]      # keys repeat, as they do
    batch, total = [], 0
    for _ in range(size):
        rec = {'pk': rng.choice(keys), 'ehk': random_ehk(odd), 'data': random_data()}
        total += len(rec['pk'].encode()) + len(rec['data']) + 60
        if total > 900_000:
            break
        batch.append(rec)
    return batch


def node(request):
    p = subprocess.run(['node', NODE_HELPER], input=json.dumps(request).encode(), capture_output=True,
                       cwd=ROOT, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f'kpl_node.mjs failed: {p.stderr.decode()[:2000]}')
    return json.loads(p.stdout)


def b64(b):
    return base64.b64encode(b).decode()


def encode_batch(batch):
    return [{'pk': r['pk'], 'ehk': r['ehk'], 'data': b64(r['data'])} for r in batch]


def integer_like(key):
    # JavaScript orders an object's array-index keys first: canonical integers below 2^32 - 1
    return key.isdigit() and str(int(key)) == key and int(key) < 2 ** 32 - 1


def user_records(conn, stream, shard, seq):
    rows = q(conn, 'SELECT sub_sequence_number, partition_key, explicit_hash_key, data, aggregated '
                   'FROM stream.read_shard(%s, %s, deaggregate => true, shard_iterator_type => %s, '
                   'starting_sequence_number => %s, "limit" => 1)', (stream, shard, 'AT_SEQUENCE_NUMBER', seq))
    return [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]


def test_theirs(conn, batches):
    log(f'theirs: aws-kinesis-agg aggregates {len(batches)} batches, we de-aggregate')
    answer = node({'aggregate': [encode_batch(b) for b in batches]})
    puts = []
    for i, (batch, a) in enumerate(zip(batches, answer['aggregated'])):
        if 'error' in a:
            fail(f'theirs: aws-kinesis-agg could not aggregate batch {i} ({len(batch)} records): {a["error"]}')
            continue
        data = base64.b64decode(a['data'])
        shard, seq = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s, %s)',
                       ('interop', a['pk'], psycopg2.Binary(data), a['ehk']))[0]
        puts.append((i, batch, data, a['pk'], shard, seq))
    theirs = node({'deaggregate': [{'data': b64(d), 'pk': pk, 'seq': seq} for _, _, d, pk, _, seq in puts]})
    misnamed = misnamed_ehk = ehk_misreported = records = 0
    for (i, batch, data, pk, shard, seq), t in zip(puts, theirs['deaggregated']):
        ours = user_records(conn, 'interop', shard, seq)
        records += len(ours)
        if 'error' in t:
            fail(f'theirs: aws-kinesis-agg could not de-aggregate its own batch {i}: {t["error"]}')
            continue
        if not check(len(ours) == len(t['records']) == len(batch) and all(u[4] for u in ours),
                     f'theirs: batch {i}: we read {len(ours)} user records, aws-kinesis-agg {len(t["records"])}, '
                     f'{len(batch)} were put'):
            continue
        for n, (u, tr, orig) in enumerate(zip(ours, t['records'], batch)):
            sub, key, ehk, d, _ = u
            check(sub == n == tr['sub'], f'theirs: batch {i} record {n}: sub-sequence numbers {sub}, theirs {tr["sub"]}')
            check(key == tr['pk'], f'theirs: batch {i} record {n}: partition key {key!r}, theirs {tr["pk"]!r}')
            check(d == base64.b64decode(tr['data']), f'theirs: batch {i} record {n}: data differs from theirs')
            check(d == orig['data'], f'theirs: batch {i} record {n}: data differs from what was put')
            check((ehk is None) == (orig['ehk'] is None),
                  f'theirs: batch {i} record {n}: explicit hash key {ehk!r}, put {orig["ehk"]!r}')
            if orig['ehk'] is not None:
                check(ehk == tr['ehk'], f'theirs: batch {i} record {n}: explicit hash key {ehk!r}, theirs {tr["ehk"]!r}')
                if ehk != orig['ehk']:
                    misnamed_ehk += 1
                    check(any(r['ehk'] is not None and integer_like(r['ehk']) for r in batch),
                          f'theirs: batch {i} record {n}: explicit hash key {ehk!r}, put {orig["ehk"]!r}, in a batch '
                          f'without integer-like hash keys')
            elif tr['ehk'] is not None:
                ehk_misreported += 1
            if key != orig['pk']:
                misnamed += 1
                check(any(integer_like(r['pk']) for r in batch),
                      f'theirs: batch {i} record {n}: partition key {key!r}, put {orig["pk"]!r}, in a batch '
                      f'without integer-like keys')
        # the enclosing record's sequence number on every one
        check(q1(conn, 'SELECT bool_and(sequence_number = %s) FROM stream.read_shard(%s, %s, deaggregate => true, '
                       'shard_iterator_type => %s, starting_sequence_number => %s, "limit" => 1)',
                 (seq, 'interop', shard, 'AT_SEQUENCE_NUMBER', seq)) is True,
              f'theirs: batch {i}: a user record has another sequence number')
    log(f'theirs: {records} user records of {len(puts)} aggregates identical to aws-kinesis-agg\'s reading; '
        f'its faults: {misnamed} records under another partition key and {misnamed_ehk} under another explicit '
        f'hash key (integer-like keys), {ehk_misreported} without an explicit hash key given its table\'s first')
    return puts


def test_get_records(conn, puts):
    log('theirs: the same through get_records(it, limit, deaggregate => true)')
    by_shard = {}
    for i, batch, data, pk, shard, seq in puts:
        by_shard.setdefault(shard, []).append((seq, batch))
    for shard, items in by_shard.items():
        it = q1(conn, "SELECT stream.get_shard_iterator('interop', %s, 'TRIM_HORIZON')", (shard,))
        got = []
        while it is not None:
            rows = q(conn, 'SELECT g.next_shard_iterator, g.millis_behind_latest, r.sequence_number, '
                           'r.sub_sequence_number, r.data FROM stream.get_records(%s, %s, deaggregate => true) g '
                           'LEFT JOIN LATERAL unnest(g.records) WITH ORDINALITY r ON true ORDER BY r.ordinality',
                     (it, rng.randint(1, 5)))
            got += [(r[2], r[3], bytes(r[4])) for r in rows if r[2] is not None]
            it = rows[0][0]
            if rows[0][2] is None and rows[0][1] == 0:
                break
        want = [(seq, n, rec['data']) for seq, batch in sorted(items) for n, rec in enumerate(batch)]
        check(got == want, f'theirs: get_records on {shard} read {len(got)} user records, {len(want)} were put')


def test_ours(conn, batches):
    log(f'ours: aggregate_records aggregates {len(batches)} batches, aws-kinesis-agg de-aggregates')
    reqs = []
    for i, batch in enumerate(batches):
        data = q1(conn, 'SELECT stream.aggregate_records(%s, %s, %s)',
                  ([r['pk'] for r in batch], [psycopg2.Binary(r['data']) for r in batch], [r['ehk'] for r in batch]))
        reqs.append({'data': b64(bytes(data)), 'pk': 'a', 'seq': str(i)})
    theirs = node({'deaggregate': reqs})
    records = ehk_misreported = 0
    for i, (batch, t) in enumerate(zip(batches, theirs['deaggregated'])):
        if 'error' in t:
            fail(f'ours: aws-kinesis-agg could not de-aggregate our batch {i}: {t["error"]}')
            continue
        if not check(len(t['records']) == len(batch), f'ours: batch {i}: aws-kinesis-agg read {len(t["records"])} '
                                                       f'user records, {len(batch)} were aggregated'):
            continue
        for n, (tr, orig) in enumerate(zip(t['records'], batch)):
            records += 1
            check(tr['sub'] == n, f'ours: batch {i} record {n}: sub-sequence number {tr["sub"]}')
            check(tr['pk'] == orig['pk'], f'ours: batch {i} record {n}: partition key {tr["pk"]!r}, put {orig["pk"]!r}')
            check(base64.b64decode(tr['data']) == orig['data'], f'ours: batch {i} record {n}: data differs')
            if orig['ehk'] is not None:
                check(tr['ehk'] == orig['ehk'], f'ours: batch {i} record {n}: explicit hash key {tr["ehk"]!r}, '
                                                f'put {orig["ehk"]!r}')
            elif tr['ehk'] is not None:
                ehk_misreported += 1
    log(f'ours: {records} user records identical in aws-kinesis-agg ({ehk_misreported} without an explicit hash '
        f'key given its table\'s first, its fault)')


def test_damaged(conn, puts):
    log('damaged: truncated and bit-flipped aws-kinesis-agg aggregates are plain records')
    n = 0
    for i, batch, data, pk, shard, seq in rng.sample(puts, min(8, len(puts))):
        cuts = sorted({0, 1, 3, 4, 5, 19, 20, 21, len(data) - 17, len(data) - 16, len(data) - 1} |
                      {rng.randrange(len(data)) for _ in range(6)})
        variants = [data[:c] for c in cuts if 0 <= c < len(data)]
        for _ in range(6):
            b = bytearray(data)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            variants.append(bytes(b))
        for v in variants:
            s, sq = q(conn, 'SELECT shard_id, sequence_number FROM stream.put_record(%s, %s, %s)',
                      ('damaged', 'dmg', psycopg2.Binary(v)))[0]
            ours = user_records(conn, 'damaged', s, sq)
            n += 1
            check(len(ours) == 1 and ours[0] == (0, 'dmg', None, v, False),
                  f'damaged: a {len(v)}-byte variant of batch {i} came back as {len(ours)} user records '
                  f'{[u[4] for u in ours]}')
    log(f'damaged: {n} variants, each one plain record')


def main():
    log(f'seed {SEED} (STREAM_KPL_INTEROP_SEED={SEED} to repeat)')
    create_db(extension=True).close()
    conn = connect()
    conn.autocommit = True
    try:
        q(conn, "SELECT stream.create_stream('interop', 3)")
        q(conn, "SELECT stream.create_stream('damaged', 1)")
        batches = [random_batch() for _ in range(NBATCHES)]
        # every batch kind at least once: digit-only keys, and none at all
        batches.append([{'pk': k, 'ehk': None, 'data': b'\x01'} for k in ('a', '1', 'b', '0', '10')])
        batches.append([{'pk': 'k', 'ehk': e, 'data': b''} for e in (None, '5', None, '0')])
        log(f'{sum(len(b) for b in batches)} user records in {len(batches)} batches')
        puts = test_theirs(conn, batches)
        test_get_records(conn, puts)
        test_ours(conn, batches)
        test_damaged(conn, puts)
    finally:
        conn.close()


if __name__ == '__main__':
    main_wrapper(main, drop_db)
