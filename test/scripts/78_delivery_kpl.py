#!/usr/bin/python3
"""Delivery streams de-aggregate KPL records of a stream source, as Firehose does (docs/kpl.md).

Seeded random user records (JSON documents), put as aggregates of 1 to 300
(stream.aggregate_records) mixed with plain records, a damaged aggregate and
an aggregate with one sub-record that is no JSON:

  table       a table destination gets every user record exactly once, the
              damaged aggregate as one failed record (not JSON), the bad
              sub-record as a failed record whose error envelope carries the
              aggregate's sequence number and its subSequenceNumber; the
              manifest counts user records (records_in = rows + failed).
  redo        the destination table is dropped while aggregates wait: the unit
              fails and is redone after the table is back, and every user
              record is delivered once (a unit's ranges are stream records,
              so an aggregate is never split between units).
  transform   the transform gets each sub-record with its own partition key,
              the aggregate's sequence number, its sub_sequence_number and
              record_id '<sequence number>.<sub-sequence number>' (a plain
              record: its sequence number, 0); the ids are unique.
  direct put  a direct-put delivery stream delivers an aggregate as it is
              (Firehose de-aggregates Kinesis sources only).

    STREAM_DELIVERY_KPL_SEED=<n> test/scripts/78_delivery_kpl.py
"""

import base64
import json
import os
import random
import sys

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import check, configure, create_db, delivered_files, drop_db, log, main_wrapper  # noqa: E402
from streamtest import q, q1, run_subtests, workdir  # noqa: E402

DB = 'stream_delivery_kpl_test'
configure(DB, statement_timeout='120s', client_min_messages='warning')
SEED = int(os.environ.get('STREAM_DELIVERY_KPL_SEED', random.SystemRandom().randrange(2 ** 31)))
rng = random.Random(SEED)
conn = None


def docs(n, start):
    return [{'v': start + i, 'pad': 'x' * rng.choice([0, 1, 126, 127, 128, rng.randint(0, 500)]),
             'k': rng.choice(['k', 'ключ', '鍵', 'k' + str(rng.randrange(50))])} for i in range(n)]


def put_mixed(stream, first):
    """Aggregates and plain records of documents first.. ; returns the documents put."""
    put, v = [], first
    for _ in range(rng.randint(8, 16)):
        if rng.random() < 0.3:
            d = docs(1, v)[0]
            q(conn, 'SELECT stream.put_record(%s, %s, %s)', (stream, d['k'], psycopg2.Binary(json.dumps(d).encode())))
            put.append(d)
            v += 1
        else:
            batch = docs(rng.choice([1, 2, rng.randint(3, 40), rng.randint(40, 300)]), v)
            agg = q1(conn, 'SELECT stream.aggregate_records(%s, %s)',
                     ([d['k'] for d in batch], [psycopg2.Binary(json.dumps(d).encode()) for d in batch]))
            q(conn, "SELECT stream.put_record(%s, 'a', %s)", (stream, agg))
            put += batch
            v += len(batch)
    return put


def flush(name):
    check(q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,)) is True, f'{name}: flush did not finish')


def test_table():
    q(conn, 'CREATE TABLE public.sink (v int PRIMARY KEY, k text NOT NULL, pad text)')
    q(conn, "SELECT stream.create_stream('src', 2)")
    q(conn, "SELECT stream.create_delivery_stream('kpl_table', source_stream_name => 'src', destination_table => "
            "'public.sink', buffer_interval_seconds => 900, starting_position => 'TRIM_HORIZON')")
    put = put_mixed('src', 0)
    # a damaged aggregate: one record, and no JSON
    good = bytes(q1(conn, "SELECT stream.aggregate_records(ARRAY['a', 'b'], ARRAY[convert_to('{\"v\": -1}', 'UTF8'), "
                          "convert_to('{\"v\": -2}', 'UTF8')])"))
    damaged = good[:-1] + bytes([good[-1] ^ 1])
    q(conn, "SELECT stream.put_record('src', 'dmg', %s)", (psycopg2.Binary(damaged),))
    # an aggregate whose second sub-record is no JSON
    bad_seq = q(conn, "SELECT sequence_number FROM stream.put_record('src', 'a', stream.aggregate_records("
                      "ARRAY['x', 'y', 'z'], ARRAY[convert_to('{\"v\": 100000, \"k\": \"x\"}', 'UTF8'), "
                      "convert_to('not json', 'UTF8'), convert_to('{\"v\": 100001, \"k\": \"z\"}', 'UTF8')]))")[0][0]
    flush('kpl_table')
    rows = q(conn, 'SELECT v, k, pad FROM public.sink ORDER BY v')
    want = sorted([(d['v'], d['k'], d['pad']) for d in put] + [(100000, 'x', None), (100001, 'z', None)])
    check(rows == want, f'table: {len(rows)} rows delivered, {len(want)} user records put '
                        f'(first difference at {next((i for i, (a, b) in enumerate(zip(rows, want)) if a != b), None)})')
    envs = [e for (e,) in q(conn, "SELECT envelope FROM stream.delivery_failed_records "
                                  "WHERE delivery_stream_name = 'kpl_table' ORDER BY envelope->>'rawData'")]
    raws = sorted(base64.b64decode(e['rawData']) for e in envs)
    check(raws == sorted([damaged, b'not json']), f'table: failed records {raws}')
    sub = [e for e in envs if base64.b64decode(e['rawData']) == b'not json']
    check(len(sub) == 1 and sub[0].get('subSequenceNumber') == 1 and sub[0].get('sequenceNumber') == bad_seq,
          f'table: the failed sub-record\'s envelope {sub}')
    plain = [e for e in envs if base64.b64decode(e['rawData']) == damaged]
    check(len(plain) == 1 and 'subSequenceNumber' not in plain[0], f'table: the damaged record\'s envelope {plain}')
    log(f'table: {len(rows)} rows from {q1(conn, "SELECT count(*) FROM stream.read_shard(%s, %s)", ("src", "shardId-000000000000")) + q1(conn, "SELECT count(*) FROM stream.read_shard(%s, %s)", ("src", "shardId-000000000001"))} stream records, 2 failed')
    m = q(conn, "SELECT sum(records_in), sum(records_delivered), sum(records_failed) FROM stream.delivery_batches "
                "WHERE delivery_stream_name = 'kpl_table'")[0]
    check(tuple(int(x) for x in m) == (len(want) + 2, len(want), 2), f'table: manifest counts {m}, '
                                                                     f'{len(want) + 2} user records')
    return len(want)


def test_redo(delivered):
    q(conn, 'DROP TABLE public.sink')
    put = put_mixed('src', 200000)
    # a flush asks for the unit now: it fails on the missing table
    check(q1(conn, "SELECT stream.flush_delivery_stream('kpl_table', 3)") is False,
          'redo: a flush to a missing table finished')
    err = q1(conn, "SELECT last_error FROM stream.delivery_stream_status WHERE delivery_stream_name = 'kpl_table'")
    check('does not exist' in (err or ''), f'redo: the unit failed with {err!r}')
    q(conn, 'CREATE TABLE public.sink (v int PRIMARY KEY, k text NOT NULL, pad text)')
    flush('kpl_table')
    rows = q(conn, 'SELECT v, k, pad FROM public.sink ORDER BY v')
    check(rows == sorted((d['v'], d['k'], d['pad']) for d in put),
          f'redo: {len(rows)} rows after the unit was redone, {len(put)} user records put')


def test_transform():
    q(conn, """
CREATE FUNCTION public.tf(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
LANGUAGE sql AS $$
    SELECT r.record_id, 'Ok',
           convert_to(jsonb_build_object('id', r.record_id, 'sub', r.sub_sequence_number, 'pk', r.partition_key,
                                         'seq', r.sequence_number, 'v', (convert_from(r.data, 'UTF8')::jsonb)->'v')::text, 'UTF8'),
           NULL::jsonb
      FROM unnest(records) r
$$""")
    q(conn, 'CREATE TABLE public.seen (id text PRIMARY KEY, sub bigint, pk text, seq text, v int)')
    q(conn, "SELECT stream.create_stream('tsrc', 1)")
    q(conn, "SELECT stream.create_delivery_stream('kpl_tf', source_stream_name => 'tsrc', destination_table => "
            "'public.seen', transform_function => 'public.tf(stream.firehose_record[])', "
            "buffer_interval_seconds => 900, starting_position => 'TRIM_HORIZON')")
    put = put_mixed('tsrc', 0)
    flush('kpl_tf')
    rows = q(conn, 'SELECT id, sub, pk, seq, v FROM public.seen ORDER BY seq, sub')
    check(len(rows) == len(put), f'transform: {len(rows)} records transformed, {len(put)} put')
    by_v = {d['v']: d for d in put}
    for rid, sub, pk, seq, v in rows:
        d = by_v.get(v)
        if not check(d is not None and pk == d['k'], f'transform: record {rid} has key {pk!r}, put {d}'):
            break
        check(rid == seq or rid == f'{seq}.{sub}', f'transform: record id {rid} of {seq} sub {sub}')
    seqs = {}
    for rid, sub, pk, seq, v in rows:
        seqs.setdefault(seq, []).append((sub, rid))
    for seq, subs in seqs.items():
        if len(subs) > 1 or subs[0][1] != seq:
            check([s for s, _ in subs] == list(range(len(subs))) and all(r == f'{seq}.{s}' for s, r in subs),
                  f'transform: the sub-records of {seq} are {subs[:5]}')
        else:
            check(subs == [(0, seq)], f'transform: plain record {seq} is {subs}')


def test_direct_put():
    d = workdir('delivery_kpl')
    q(conn, "SELECT stream.create_delivery_stream('kpl_direct', destination => %s, format => 'raw', "
            "buffer_interval_seconds => 900)", (d,))
    agg = bytes(q1(conn, "SELECT stream.aggregate_records(ARRAY['a', 'b'], ARRAY['\\x41', '\\x42']::bytea[])"))
    q(conn, "SELECT stream.put_delivery_record('kpl_direct', %s)", (psycopg2.Binary(agg),))
    flush('kpl_direct')
    files = delivered_files(d)
    data = b''.join(open(f, 'rb').read() for f in files)
    check(data == agg, f'direct put: delivered {len(data)} bytes, the aggregate has {len(agg)}')


def main():
    global conn
    log(f'seed {SEED} (STREAM_DELIVERY_KPL_SEED={SEED} to repeat)')
    conn = create_db(extension=True)
    conn.autocommit = True
    state = {}
    run_subtests((('table', lambda: state.update(n=test_table()), ()),
                  ('redo', lambda: test_redo(state.get('n')), ()),
                  ('transform', test_transform, ()),
                  ('direct put', test_direct_put, ())))
    conn.close()


if __name__ == '__main__':
    main_wrapper(main, drop_db)
