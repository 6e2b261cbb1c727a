#!/usr/bin/python3
"""Delivery streams (Firehose): functional test.

Every file is read back by independent readers (Python's json/csv/gzip and
DuckDB through @duckdb/node-api), never by the extension's own code.

Covers: the interval and the size trigger, direct put (single and batch,
limits, privileges), a stream source read as a consumer, JSON / CSV / raw /
Parquet with a schema, whole-file gzip, transform results (Ok / Dropped /
ProcessingFailed) and Firehose's error envelope, format-conversion errors,
dynamic partitioning with Hive-style prefixes and timestamp expressions,
the table destination (defaults, rejected rows), a failing directory and a
missing table that recover without losing or duplicating a record,
describe / list / delete and the status view.
"""
import base64
import csv
import gzip
import io
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import KEEP_DB, check, configure, create_db, delivered_files, drop_db, duckdb  # noqa: E402
from streamtest import expect_error_mentioning, finish, q, q1, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_delivery_test'
configure(DB, statement_timeout='120s', client_min_messages='warning')
WORK = workdir('delivery')
conn = create_db(extension=True)


def status(name):
    rows = q(conn, "SELECT buffered_records, buffered_bytes, files_delivered, records_delivered, "
                   "records_failed, last_error, failed_attempts FROM stream.delivery_stream_status "
                   "WHERE delivery_stream_name = %s", (name,))
    return dict(zip(['buffered_records', 'buffered_bytes', 'files_delivered', 'records_delivered',
                     'records_failed', 'last_error', 'failed_attempts'], rows[0]))


def flush(name):
    return q1(conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,))


def read_lines(paths):
    out = []
    for p in paths:
        with open(p, 'rb') as f:
            data = f.read()
        if p.endswith('.gz'):
            data = gzip.decompress(data)
        out.extend(data.decode('utf-8').splitlines())
    return out


def put_batch(name, payloads):
    return q(conn, 'SELECT record_id FROM stream.put_delivery_record_batch(%s, %s::bytea[])',
             (name, [p.encode() if isinstance(p, str) else p for p in payloads]))


try:
    # ------------------------------------------------------------------ control plane
    say('control plane: validation, create, describe, list')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, buffer_size_mb => 0)",
                 (WORK,), 'SizeInMBs', 'buffer_size_mb 0')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, buffer_interval_seconds => 901)",
                 (WORK,), 'IntervalInSeconds', 'interval 901')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, format => 'parquet')",
                 (WORK,), 'needs a schema', 'parquet without schema')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => 'relative/dir')",
                 None, 'absolute', 'relative destination')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, prefix => '!{timestamp:yyyy}/')",
                 (WORK,), 'ErrorOutputPrefix', 'expressions without error prefix')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, prefix => 'x/', "
                       "error_output_prefix => 'err/')", (WORK,), 'error-output-type', 'error prefix without type')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, prefix => '!{partitionKeyFromQuery:k}/', "
                       "error_output_prefix => 'e/!{firehose:error-output-type}/')", (WORK,),
                 'partition_key_queries', 'undefined partition key')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', destination => %s, prefix => '!{timestamp:''..''}/', "
                       "error_output_prefix => 'e/!{firehose:error-output-type}/')", (WORK,),
                 "'..'", 'prefix climbing out')
    expect_error_mentioning(conn, "SELECT stream.create_delivery_stream('bad', source_stream_name => 'nope', destination => %s)",
                 (WORK,), 'ResourceNotFoundException', 'missing source stream')
    expect_error_mentioning(conn, "SELECT stream.describe_delivery_stream('nope')", None, 'ResourceNotFoundException',
                 'describe missing')

    # ------------------------------------------------------------------ interval trigger
    say('interval trigger (direct put, JSON lines)')
    d_int = os.path.join(WORK, 'interval')
    q(conn, "SELECT stream.create_delivery_stream('a_interval', destination => %s, buffer_interval_seconds => 2)", (d_int,))
    desc = q1(conn, "SELECT stream.describe_delivery_stream('a_interval')")
    check(desc['DeliveryStreamType'] == 'DirectPut' and
          desc['Destinations'][0]['ExtendedS3DestinationDescription']['BufferingHints'] ==
          {'SizeInMBs': 5, 'IntervalInSeconds': 2}, 'describe: %r' % desc)
    check([r[0] for r in q(conn, "SELECT delivery_stream_name FROM stream.list_delivery_streams()")] == ['a_interval'],
          'list_delivery_streams')
    t_put = time.time()
    rid = q1(conn, "SELECT stream.put_delivery_record('a_interval', convert_to('{\"i\": 0}', 'UTF8'))")
    check(len(rid) == 40, 'record id %r' % rid)
    put_batch('a_interval', ['{"i": %d}' % i for i in range(1, 10)])
    time.sleep(0.5)
    check(delivered_files(d_int) == [], 'interval: a file before the interval passed')
    st = status('a_interval')
    check(st['buffered_records'] == 10, 'interval: view shows %r buffered, expected 10' % st['buffered_records'])
    files = wait_for(lambda: delivered_files(d_int), 15, 'the interval-triggered file')
    dt = time.time() - t_put
    check(files is not None and 1.5 <= dt <= 10, 'interval file after %.1fs (interval 2 s)' % dt)
    if files:
        check(len(files) == 1, 'interval: %d files' % len(files))
        lines = read_lines(files)
        check(sorted(json.loads(x)['i'] for x in lines) == list(range(10)), 'interval file content %r' % lines)
        rel = os.path.relpath(files[0], d_int)
        parts = rel.split('/')
        check(len(parts) == 5 and parts[0] == time.strftime('%Y', time.gmtime()) and
              parts[4].startswith('a_interval-1-') and parts[4].endswith('.json'),
              'default prefix yyyy/MM/dd/HH/ and Firehose object name: %s' % rel)

    # ------------------------------------------------------------------ size trigger
    say('size trigger (1 MiB buffer, 900 s interval)')
    d_size = os.path.join(WORK, 'size')
    q(conn, "SELECT stream.create_delivery_stream('b_size', destination => %s, format => 'raw', "
            "buffer_size_mb => 1, buffer_interval_seconds => 900)", (d_size,))
    rec = 'x' * 9999 + '\n'
    for b in range(15):     # 150 records of 10,000 bytes = 1.43 MiB
        put_batch('b_size', [rec] * 10)
    files = wait_for(lambda: delivered_files(d_size), 15, 'the size-triggered file')
    if files:
        size = sum(os.path.getsize(p) for p in files)
        check(len(files) == 1 and 1024 * 1024 - 10000 <= size <= 1024 * 1024 + 10000,
              'size trigger: %d files, %d bytes' % (len(files), size))
        time.sleep(1.5)
        check(len(delivered_files(d_size)) == 1, 'size trigger: the rest must wait for the interval')
        st = status('b_size')
        check(st['buffered_records'] == 150 - size // 10000, 'size: buffered %r' % st['buffered_records'])
    check(flush('b_size') is True, 'flush b_size')
    files = delivered_files(d_size)
    check(sum(os.path.getsize(p) for p in files) == 150 * 10000 and len(files) == 2,
          'after flush: %d files, %d bytes' % (len(files), sum(os.path.getsize(p) for p in files)))

    # ------------------------------------------------------------------ direct put limits and privileges
    say('direct put limits and privileges')
    expect_error_mentioning(conn, "SELECT stream.put_delivery_record('b_size', %s)", (b'x' * (1000 * 1024 + 1),),
                 'less than or equal to 1024000', 'record over 1000 KiB')
    expect_error_mentioning(conn, "SELECT * FROM stream.put_delivery_record_batch('b_size', %s::bytea[])", ([b'x'] * 501,),
                 'less than or equal to 500', 'batch of 501')
    expect_error_mentioning(conn, "SELECT * FROM stream.put_delivery_record_batch('b_size', %s::bytea[])",
                 ([b'x' * 900000] * 5,), '4 MiB', 'batch over 4 MiB')
    expect_error_mentioning(conn, "SELECT stream.put_delivery_record('nope', 'x')", None, 'ResourceNotFoundException',
                 'put to missing')
    q(conn, "DROP ROLE IF EXISTS dl_app; CREATE ROLE dl_app")
    q(conn, "GRANT USAGE ON SCHEMA stream TO dl_app")
    expect_error_mentioning(conn, "SET ROLE dl_app; SELECT stream.put_delivery_record('b_size', 'x')", None,
                 'AccessDeniedException', 'put without grant')
    q(conn, "RESET ROLE")
    q(conn, "SELECT stream.grant_delivery_stream_access('b_size', 'dl_app')")
    q(conn, "SET ROLE dl_app; SELECT stream.put_delivery_record('b_size', convert_to(repeat('y', 9999) || chr(10), 'UTF8')); RESET ROLE")
    # a rolled-back put is never delivered
    q(conn, "BEGIN; SELECT stream.put_delivery_record('b_size', 'rolled back'); ROLLBACK")
    check(flush('b_size') is True, 'flush b_size again')
    total = sum(os.path.getsize(p) for p in delivered_files(d_size))
    check(total == 151 * 10000, 'granted put delivered, rolled-back one not: %d bytes' % total)

    # ------------------------------------------------------------------ stream source, CSV, gzip, conversion errors
    say('stream source, CSV with schema, gzip, format-conversion errors')
    q(conn, "SELECT stream.create_stream('src', 2)")
    q(conn, "CREATE TYPE public.event AS (id int, name text, amount numeric(10,2), ts timestamptz, tags jsonb, ok boolean)")
    d_csv = os.path.join(WORK, 'csv')
    q(conn, "SELECT stream.create_delivery_stream('c_csv', source_stream_name => 'src', destination => %s, "
            "format => 'csv', schema => 'public.event', compression => 'gzip', buffer_interval_seconds => 900, "
            "prefix => 'events/', starting_position => 'TRIM_HORIZON')", (d_csv,))
    events = [
        {'id': 1, 'name': 'plain', 'amount': 1.5, 'ts': '2024-01-02T03:04:05Z', 'tags': {'a': [1, 2]}, 'ok': True},
        {'id': 2, 'name': 'comma, "quote"\nnewline', 'amount': -0.25, 'ts': 1700000000, 'tags': None, 'ok': False},
        {'id': 3, 'name': 'Grüße ✓ 日本', 'AMOUNT': 12345678.91, 'ts': 1700000000123},
        {'id': 4, 'name': '', 'extra': 'ignored'},
    ]
    bad = ['not json at all', '{"id": "not a number"}', '[1, 2]']
    payloads = [json.dumps(e, ensure_ascii=False) for e in events] + bad
    for i, p in enumerate(payloads):
        q(conn, "SELECT stream.put_record('src', %s, %s)", ('pk-%d' % i, p.encode()))
    check(flush('c_csv') is True, 'flush c_csv')
    data_files = [p for p in delivered_files(d_csv) if '/events/' in p and 'failed' not in p]
    check(len(data_files) == 1 and data_files[0].endswith('.csv.gz'), 'csv files: %r' % data_files)
    rows = []
    for p in data_files:
        rows.extend(csv.reader(io.StringIO(gzip.decompress(open(p, 'rb').read()).decode())))
    rows.sort(key=lambda r: int(r[0]))
    check(len(rows) == 4, 'csv rows: %r' % rows)
    if len(rows) == 4:
        check(rows[0] == ['1', 'plain', '1.50', '2024-01-02 03:04:05+00', '{"a": [1, 2]}', 'true'], 'csv row 1 %r' % rows[0])
        check(rows[1] == ['2', 'comma, "quote"\nnewline', '-0.25', '2023-11-14 22:13:20+00', '', 'false'], 'csv row 2 %r' % rows[1])
        check(rows[2] == ['3', 'Grüße ✓ 日本', '12345678.91', '2023-11-14 22:13:20.123+00', '', ''], 'csv row 3 %r' % rows[2])
        check(rows[3] == ['4', '', '', '', '', ''], 'csv row 4 %r' % rows[3])
    # DuckDB reads the same file
    try:
        r = duckdb("SELECT count(*) AS n, sum(column0) AS s FROM read_csv('%s/events/**/*.csv.gz', header=false, "
                   "columns={'column0': 'INTEGER', 'name': 'VARCHAR', 'amount': 'DECIMAL(10,2)', 'ts': 'VARCHAR', "
                   "'tags': 'VARCHAR', 'ok': 'BOOLEAN'})" % d_csv)
        check(len(r) == 1 and int(r[0]['n']) == 4 and int(r[0]['s']) == 10, 'duckdb csv: %r' % r)
    except Exception as e:      # noqa: BLE001
        check(False, 'duckdb csv: %s' % e)
    err_files = [p for p in delivered_files(d_csv) if '/format-conversion-failed/' in p]
    check(len(err_files) == 1 and err_files[0].endswith('.json.gz'), 'conversion error files: %r' % err_files)
    envs = [json.loads(x) for x in read_lines(err_files)]
    check(sorted(base64.b64decode(e['rawData']).decode() for e in envs) == sorted(bad),
          'error envelopes carry the raw records: %r' % envs)
    for e in envs:
        check(set(['attemptsMade', 'arrivalTimestamp', 'errorCode', 'errorMessage', 'rawData']) <= set(e) and
              e['errorCode'] == 'DataFormatConversion.MalformedData' and e['attemptsMade'] == 1 and
              abs(e['arrivalTimestamp'] / 1000 - time.time()) < 600, 'envelope %r' % e)
    st = status('c_csv')
    check(st['records_delivered'] == 4 and st['records_failed'] == 3 and st['buffered_records'] == 0,
          'c_csv status %r' % st)

    # ------------------------------------------------------------------ parquet
    say('Parquet with schema, read by DuckDB')
    d_pq = os.path.join(WORK, 'parquet')
    q(conn, "CREATE TABLE public.pq_schema (id bigint, name text, amount numeric(12,3), ts timestamptz, "
            "flag boolean, score float8, raw jsonb)")
    q(conn, "SELECT stream.create_stream('pqsrc', 3)")
    q(conn, "SELECT stream.create_delivery_stream('d_parquet', source_stream_name => 'pqsrc', destination => %s, "
            "format => 'parquet', schema => 'public.pq_schema', compression => 'snappy', "
            "buffer_interval_seconds => 900, starting_position => 'TRIM_HORIZON')", (d_pq,))
    n_pq = 3000
    q(conn, "SELECT count(*) FROM generate_series(0, %s - 1) g, LATERAL stream.put_record('pqsrc', 'k' || g, "
            "convert_to(json_build_object('id', g, 'name', CASE WHEN g %% 7 = 0 THEN NULL ELSE 'n-' || g || '-é' END, "
            "'amount', round(g * 1.001, 3), 'ts', '2024-05-01T00:00:00Z'::timestamptz + g * interval '1 second', "
            "'flag', g %% 2 = 0, 'score', g / 4.0, 'raw', json_build_object('g', g))::text, 'UTF8'))", (n_pq,))
    check(flush('d_parquet') is True, 'flush d_parquet')
    pq_files = delivered_files(d_pq, '**/*.parquet')
    check(len(pq_files) == 1, 'parquet files %r' % pq_files)
    try:
        r = duckdb("SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s, count(name) AS names, "
                   "sum(amount)::VARCHAR AS amount, min(ts)::VARCHAR AS mints, max(ts)::VARCHAR AS maxts, "
                   "sum(CASE WHEN flag THEN 1 ELSE 0 END) AS flags, sum(score) AS score, "
                   "max(name) FILTER (WHERE id = 1) AS name1, max(raw) FILTER (WHERE id = 5) AS raw5 "
                   "FROM read_parquet('%s/**/*.parquet')" % d_pq)[0]
        exp_amount = sum(round(g * 1.001, 3) for g in range(n_pq))
        check(int(r['n']) == n_pq and int(r['d']) == n_pq and int(r['s']) == n_pq * (n_pq - 1) // 2, 'parquet ids %r' % r)
        check(int(r['names']) == n_pq - len(range(0, n_pq, 7)) and r['name1'] == 'n-1-é', 'parquet names %r' % r)
        check(abs(float(r['amount']) - exp_amount) < 0.01, 'parquet amount %r vs %r' % (r['amount'], exp_amount))
        check(r['mints'].startswith('2024-05-01 00:00:00') and r['maxts'].startswith('2024-05-01 00:49:59') and
              int(r['flags']) == (n_pq + 1) // 2, 'parquet ts/flags %r' % r)
        check(abs(float(r['score']) - sum(g / 4.0 for g in range(n_pq))) < 1e-6, 'parquet score %r' % r)
        check(json.loads(r['raw5']) == {'g': 5}, 'parquet json %r' % r['raw5'])
    except Exception as e:      # noqa: BLE001
        check(False, 'duckdb parquet: %s' % e)

    # ------------------------------------------------------------------ transform
    say('transform: Ok, Dropped, ProcessingFailed; error output')
    q(conn, """
CREATE FUNCTION public.tf(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
LANGUAGE sql AS $$
    SELECT r.record_id,
           CASE (x->>'n')::int % 3 WHEN 0 THEN 'Dropped' WHEN 1 THEN 'Ok' ELSE 'ProcessingFailed' END,
           convert_to(jsonb_build_object('n', (x->>'n')::int, 'up', upper(x->>'s'))::text, 'UTF8'),
           jsonb_build_object('parity', CASE WHEN (x->>'n')::int % 2 = 0 THEN 'even' ELSE 'odd' END)
      FROM unnest(records) r, LATERAL (SELECT convert_from(r.data, 'UTF8')::jsonb AS x) j
$$""")
    d_tf = os.path.join(WORK, 'transform')
    q(conn, "SELECT stream.create_delivery_stream('e_transform', destination => %s, transform_function => 'public.tf(stream.firehose_record[])', "
            "prefix => 'data/!{partitionKeyFromLambda:parity}/', error_output_prefix => 'err/!{firehose:error-output-type}/!{timestamp:yyyy}/', "
            "backup_prefix => 'backup/', buffer_interval_seconds => 900)", (d_tf,))
    put_batch('e_transform', ['{"n": %d, "s": "v%d"}\n' % (i, i) for i in range(30)])
    check(flush('e_transform') is True, 'flush e_transform')
    ok_lines = [json.loads(x) for x in read_lines(delivered_files(os.path.join(d_tf, 'data')))]
    check(sorted(r['n'] for r in ok_lines) == [i for i in range(30) if i % 3 == 1] and
          all(r['up'] == 'V%d' % r['n'] for r in ok_lines), 'transformed records %r' % ok_lines)
    for parity in ('even', 'odd'):
        ns = [json.loads(x)['n'] for x in read_lines(delivered_files(os.path.join(d_tf, 'data', parity)))]
        check(ns and all((n % 2 == 0) == (parity == 'even') for n in ns), 'lambda partition %s: %r' % (parity, ns))
    err = delivered_files(os.path.join(d_tf, 'err', 'processing-failed', time.strftime('%Y', time.gmtime())))
    envs = [json.loads(x) for x in read_lines(err)]
    check(sorted(json.loads(base64.b64decode(e['rawData']))['n'] for e in envs) == [i for i in range(30) if i % 3 == 2],
          'processing-failed records %r' % envs)
    check(all(e['errorCode'] == 'Lambda.ProcessingFailed' and 'lambdaArn' in e for e in envs), 'envelopes %r' % envs[:1])
    backup = read_lines(delivered_files(os.path.join(d_tf, 'backup')))
    check(sorted(json.loads(x)['n'] for x in backup) == list(range(30)), 'source record backup %r' % backup[:3])

    # a transform that raises: retried, then every record is ProcessingFailed
    q(conn, """
CREATE FUNCTION public.tf_broken(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'transform is broken'; END $$""")
    d_tfb = os.path.join(WORK, 'transform_broken')
    q(conn, "SELECT stream.create_delivery_stream('e_broken', destination => %s, "
            "transform_function => 'public.tf_broken(stream.firehose_record[])', buffer_interval_seconds => 900)", (d_tfb,))
    put_batch('e_broken', ['{"n": 1}', '{"n": 2}'])
    check(flush('e_broken') is True, 'flush e_broken')
    envs = [json.loads(x) for x in read_lines(delivered_files(os.path.join(d_tfb, 'processing-failed')))]
    check(len(envs) == 2 and all(e['errorCode'] == 'Lambda.FunctionError' and e['attemptsMade'] == 4 and
                                 'transform is broken' in e['errorMessage'] for e in envs), 'broken transform %r' % envs)

    # ------------------------------------------------------------------ dynamic partitioning
    say('dynamic partitioning: partitionKeyFromQuery, Hive-style prefix')
    d_dp = os.path.join(WORK, 'dynamic')
    q(conn, "SELECT stream.create_delivery_stream('f_dynamic', destination => %s, "
            "partition_key_queries => '{\"customer\": \"$.customer_id\", \"dev\": \".device.kind\"}', "
            "prefix => 'customer_id=!{partitionKeyFromQuery:customer}/device=!{partitionKeyFromQuery:dev}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/', "
            "error_output_prefix => 'errors/!{firehose:error-output-type}/', buffer_interval_seconds => 900)", (d_dp,))
    recs = []
    for i in range(40):
        recs.append(json.dumps({'customer_id': ['acme', 'globex', 42][i % 3], 'device': {'kind': ['mobile', 'web'][i % 2]}, 'i': i}))
    recs.append(json.dumps({'device': {'kind': 'web'}, 'i': 100}))                 # no customer: error output
    recs.append(json.dumps({'customer_id': '../escape', 'device': {'kind': 'web'}, 'i': 101}))
    put_batch('f_dynamic', recs)
    check(flush('f_dynamic') is True, 'flush f_dynamic')
    yyyy, mm = time.strftime('%Y', time.gmtime()), time.strftime('%m', time.gmtime())
    seen = {}
    for p in delivered_files(d_dp, 'customer_id=*/**/*'):
        rel = os.path.relpath(p, d_dp).split('/')
        check(len(rel) == 5 and rel[2] == 'year=' + yyyy and rel[3] == 'month=' + mm, 'dynamic path %s' % p)
        for line in read_lines([p]):
            r = json.loads(line)
            seen[r['i']] = (rel[0], rel[1])
    for i in range(40):
        exp = ('customer_id=%s' % ['acme', 'globex', '42'][i % 3], 'device=%s' % ['mobile', 'web'][i % 2])
        check(seen.get(i) == exp, 'record %d in %r, expected %r' % (i, seen.get(i), exp))
    check(101 not in seen, 'a key with a / was delivered: %r' % (seen.get(101),))
    check(not os.path.exists(os.path.join(WORK, 'escape')), 'a key escaped the destination')
    envs = sorted([json.loads(x) for x in read_lines(delivered_files(os.path.join(d_dp, 'errors')))],
                  key=lambda e: json.loads(base64.b64decode(e['rawData']))['i'])
    check(len(envs) == 2 and json.loads(base64.b64decode(envs[0]['rawData']))['i'] == 100 and
          envs[0]['errorCode'] == 'DynamicPartitioning.MetadataExtractionFailed' and
          json.loads(base64.b64decode(envs[1]['rawData']))['i'] == 101 and
          envs[1]['errorCode'] == 'DynamicPartitioning.InvalidPartitionKeyValue', 'partitioning errors %r' % envs)

    # ------------------------------------------------------------------ table destination
    say('table destination')
    q(conn, "CREATE TABLE public.sink (id bigserial PRIMARY KEY, name text NOT NULL, amount numeric, "
            "received_at timestamptz NOT NULL DEFAULT now(), doc jsonb)")
    q(conn, "SELECT stream.create_stream('tsrc', 2)")
    q(conn, "SELECT stream.create_delivery_stream('g_table', source_stream_name => 'tsrc', destination_table => 'public.sink', "
            "buffer_interval_seconds => 1, starting_position => 'TRIM_HORIZON')")
    good = [{'name': 'n%d' % i, 'amount': i * 0.5, 'doc': {'i': i}} for i in range(50)]
    good.append({'id': 1000, 'name': 'explicit id'})
    badt = ['{"amount": 1}', '{not json}']
    for i, p in enumerate([json.dumps(g) for g in good] + badt):
        q(conn, "SELECT stream.put_record('tsrc', %s, convert_to(%s, 'UTF8'))", ('k%d' % i, p))
    wait_for(lambda: q1(conn, "SELECT count(*) FROM public.sink") == len(good), 15, 'rows in the table')
    rows = q(conn, "SELECT name, amount, doc, received_at IS NOT NULL FROM public.sink WHERE id < 1000 ORDER BY (doc->>'i')::int")
    check(len(rows) == 50 and all(r[0] == 'n%d' % i and float(r[1]) == i * 0.5 and r[2] == {'i': i} and r[3]
                                  for i, r in enumerate(rows)), 'table rows %r' % rows[:3])
    check(q1(conn, "SELECT name FROM public.sink WHERE id = 1000") == 'explicit id', 'explicit id row')
    wait_for(lambda: q1(conn, "SELECT count(*) FROM stream.processor_errors") == 2, 10, 'rejected rows')
    errs = q(conn, "SELECT error_type, envelope FROM stream.processor_errors ORDER BY envelope->>'rawData'")
    check(sorted(base64.b64decode(e[1]['rawData']).decode() for e in errs) == sorted(badt) and
          set(e[0] for e in errs) == {'table-insert-failed', 'format-conversion-failed'}, 'table errors %r' % errs)

    # ------------------------------------------------------------------ missing table recovers
    say('missing table: retried with back-off, then delivered exactly once')
    q(conn, "DROP TABLE public.sink")
    for i in range(20):
        q(conn, "SELECT stream.put_record('tsrc', %s, convert_to(%s, 'UTF8'))", ('m%d' % i, json.dumps({'name': 'late%d' % i})))
    wait_for(lambda: (status('g_table')['last_error'] or '').find('does not exist') >= 0, 15, 'the missing-table error in the view')
    st = status('g_table')
    check(st['buffered_records'] == 20 and st['failed_attempts'] >= 1, 'missing table status %r' % st)
    q(conn, "CREATE TABLE public.sink (id bigserial PRIMARY KEY, name text NOT NULL, amount numeric, "
            "received_at timestamptz NOT NULL DEFAULT now(), doc jsonb)")
    wait_for(lambda: q1(conn, "SELECT count(*) FROM public.sink") == 20, 45, 'rows after the table came back')
    time.sleep(1.5)
    check(sorted(r[0] for r in q(conn, "SELECT name FROM public.sink")) == sorted('late%d' % i for i in range(20)),
          'recovered rows exactly once')
    check(status('g_table')['last_error'] is None, 'error cleared after recovery')

    # ------------------------------------------------------------------ failing directory recovers
    say('unwritable destination: retried with back-off, then delivered exactly once')
    d_ro = os.path.join(WORK, 'readonly')
    # writable when the delivery stream is created (creation checks that), then not
    q(conn, "SELECT stream.create_delivery_stream('h_failing', destination => %s, buffer_interval_seconds => 0)", (d_ro,))
    if os.getuid() == 0:
        os.chown(d_ro, 0, 0)        # owned by root, 0755: the server cannot write here
    else:
        os.chmod(d_ro, 0o555)
    put_batch('h_failing', ['{"k": %d}' % i for i in range(100)])
    wait_for(lambda: status('h_failing')['failed_attempts'] >= 2, 20, 'two failed attempts')
    st = status('h_failing')
    check('ServiceUnavailableException' in (st['last_error'] or '') and st['buffered_records'] == 100 and
          st['files_delivered'] == 0, 'failing destination status %r' % st)
    put_batch('h_failing', ['{"k": %d}' % i for i in range(100, 150)])
    if os.getuid() == 0:
        import pwd
        pw = pwd.getpwnam('postgres')
        os.chown(d_ro, pw.pw_uid, pw.pw_gid)
    else:
        os.chmod(d_ro, 0o755)
    wait_for(lambda: status('h_failing')['buffered_records'] == 0, 45, 'delivery after the directory was fixed')
    ks = [json.loads(x)['k'] for x in read_lines(delivered_files(d_ro))]
    check(sorted(ks) == list(range(150)), 'recovered records exactly once: %d lines, %d distinct' % (len(ks), len(set(ks))))
    check(status('h_failing')['last_error'] is None, 'error cleared')

    # ------------------------------------------------------------------ manifest and delete
    say('manifest, delete')
    man = q(conn, "SELECT count(*), sum(records_in), bool_and(jsonb_array_length(files) >= 1) FROM stream.delivery_manifest m "
                  "JOIN stream.delivery_streams d USING (delivery_stream_id) WHERE d.delivery_stream_name = 'h_failing'")[0]
    check(man[1] == 150 and man[2], 'manifest %r' % (man,))
    expect_error_mentioning(conn, "SELECT stream.put_delivery_record('c_csv', 'x')", None, 'KinesisStreamAsSource', 'put to stream-sourced')
    internal = q1(conn, "SELECT p.source_stream_id FROM stream.delivery_streams d JOIN stream.processors p "
                        "ON p.processor_id = d.delivery_stream_id WHERE d.delivery_stream_name = 'a_interval'")
    q(conn, "SELECT stream.delete_delivery_stream('a_interval')")
    check(q1(conn, "SELECT count(*) FROM stream.streams WHERE stream_id = %s", (internal,)) == 0, 'internal stream dropped')
    check(q1(conn, "SELECT to_regclass('stream_data.s%s')" % internal) is None, 'internal stream table dropped')
    expect_error_mentioning(conn, "SELECT stream.put_delivery_record('a_interval', 'x')", None, 'ResourceNotFoundException', 'put after delete')
    check(delivered_files(d_int) != [], 'delete keeps delivered files')
    check(not [p for p in delivered_files(WORK) if p.endswith('.tmp')], 'no temporary file outside staging')
finally:
    conn.close()
    if not KEEP_DB:
        drop_db(roles=('dl_app',), on_error=warn)
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        print('kept database %s and files in %s' % (DB, WORK))

finish()
