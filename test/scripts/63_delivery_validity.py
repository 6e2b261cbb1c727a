#!/usr/bin/python3
"""Delivery streams: nothing invalid reaches a destination, nothing stalls.

Seeded random inputs (STREAM_TEST_SEED to repeat a run), checked by
independent readers (Python's strict UTF-8 decoder, DuckDB, pg_dump | psql):

* JSON records mixing valid ASCII and multibyte text with invalid UTF-8
  (overlong forms, lone continuation bytes, UTF-8-encoded surrogates,
  truncated sequences, code points past U+10FFFF, NUL bytes) and lone
  surrogate escapes: every Parquet file is read whole by DuckDB, table rows
  survive pg_dump | psql, every file and directory name on disk is UTF-8,
  and every invalid record is in the error output with its error code;
* partition values that cannot name a directory ('/', '.', '..', empty,
  the staging directory's name, too long once encoded) go to the error
  output, the others are delivered; the delivery never stalls;
* prefixes whose longest evaluation has a path component over 255 bytes are
  refused at creation; the accepted ones deliver records with values of the
  maximal length;
* partition_key_queries in jq (.a.b, .a[0], .["k"], | strftime) and SQL/JSON
  path; 10,000 records over 3 days partitioned by day give at most 3 files
  per day per flush and no failed record;
* a destination the server cannot write is refused at creation;
* flush_delivery_stream works for a non-superuser owner and producer;
* write_parquet of a query without columns is refused;
* the server log names a failing delivery stream by name.
"""
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import KEEP_DB, check, configure, connect, create_db, delivered_files, drop_db, duckdb  # noqa: E402
from streamtest import expect_error, finish, q, q1, run_subtests, wait_for, warn, workdir  # noqa: E402
from streamtest import log as say  # noqa: E402

DB = 'stream_delivery_validity'
DB2 = 'stream_delivery_validity_restore'
ROLES = ('dv_owner', 'dv_producer')
SEED = int(os.environ.get('STREAM_TEST_SEED', str(int(time.time()))))
rnd = random.Random(SEED)
configure(DB, statement_timeout='120s', client_min_messages='warning')
WORK = workdir('validity')
conn = create_db(roles=ROLES, extension=True)
say('seed %d (STREAM_TEST_SEED=%d repeats this run)' % (SEED, SEED))

STAGING = '.firehose-staging'
VALUE_MAX = 128
VALUE_MIN = 16
COMPONENT_MAX = 255
OBJECT_NAME_MAX = 64 + 1 + 10 + 1 + 19 + 1 + 36 + 16
PREFIX_MAX = 512


def flush(name, c=None):
    return q1(c or conn, 'SELECT stream.flush_delivery_stream(%s, 60)', (name,))


def status(name):
    return q(conn, "SELECT records_delivered, records_failed, last_error, buffered_records "
                   "FROM stream.delivery_stream_status WHERE delivery_stream_name = %s", (name,))[0]


def read_bytes_lines(paths):
    out = []
    for p in paths:
        with open(p, 'rb') as f:
            out.extend(x for x in f.read().split(b'\n') if x)
    return out


def envelopes(root):
    return [json.loads(x) for x in read_bytes_lines(delivered_files(root))]


def put_stream(stream, payloads):
    """put_records in batches of 500 (payloads: bytes)."""
    for i in range(0, len(payloads), 500):
        chunk = payloads[i:i + 500]
        q(conn, "SELECT count(*) FROM stream.put_records(%s, %s::text[], %s::bytea[])",
          (stream, ['pk%d' % (i + j) for j in range(len(chunk))], chunk))


def names_on_disk_are_utf8(root):
    bad = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for n in dirnames + filenames:
            try:
                n.decode('utf-8')
            except UnicodeDecodeError:
                bad.append(os.path.join(dirpath, n))
    return bad


# ---------------------------------------------------------------------- inputs
INVALID_SEQS = [
    b'\xc0\xaf', b'\xc1\xbf', b'\xe0\x80\xaf', b'\xf0\x80\x80\xaf',     # overlong
    b'\x80', b'\xbf', b'a\x80b',                                        # lone continuation
    b'\xed\xa0\x80', b'\xed\xbf\xbf', b'\xed\xa0\xbd\xed\xb8\x80',      # surrogates in UTF-8
    b'\xe2\x82', b'\xf0\x9f\x98', b'\xc3',                              # truncated
    b'\xf4\x90\x80\x80', b'\xf5\x80\x80\x80', b'\xfe', b'\xff',         # past U+10FFFF, never UTF-8
    b'\x00', b'ab\x00cd',                                               # NUL
]
VALID_TEXT = ['plain', 'Grüße', '✓ 日本語', '😀🎉', 'ä' * 40, 'x"y\\z', 'tab\there', '']


def encoded(v):
    out = []
    for ch in v:
        for b in ch.encode():
            c = chr(b)
            if c.isascii() and (c.isalnum() or c in '-_=+,@.') or b >= 0x80:
                out.append(bytes([b]))
            else:
                out.append(('%%%02X' % b).encode())
    return b''.join(out)


def value_ok(v):
    return v not in ('', '.', '..', STAGING) and '/' not in v and len(encoded(v)) <= VALUE_MAX


def make_record(i):
    """(bytes, kind): kind 'ok', 'bad' (invalid UTF-8 or NUL), 'esc' (lone surrogate escape)."""
    r = rnd.random()
    text = rnd.choice(VALID_TEXT)
    if r < 0.45:
        body = json.dumps(text + rnd.choice(VALID_TEXT), ensure_ascii=rnd.random() < 0.3).encode()
        kind = 'ok'
    elif r < 0.92:
        seq = rnd.choice(INVALID_SEQS)
        cut = rnd.randint(0, len(text.encode()))
        raw = text.encode()
        body = b'"' + raw[:cut] + seq + raw[cut:] + b'"'
        kind = 'bad'
    else:
        body = rnd.choice([b'"\\ud800"', b'"x\\udc00y"', b'"\\ud83dz"'])
        kind = 'esc'
    data = b'{"id": %d, "name": %s, "k": "p%d"}' % (i, body, i % 3)
    if kind == 'bad':
        try:
            data.decode('utf-8')
            if b'\x00' not in data:
                kind = 'ok'     # the cut made it valid after all (cannot happen with these sequences)
        except UnicodeDecodeError:
            pass
    return data, kind


def t_write_parquet_no_columns():
    """defect 7"""
    say('write_parquet of a query without columns is refused')
    pq0 = os.path.join(WORK, 'nocols.parquet')
    expect_error(conn, "SELECT stream.write_parquet('SELECT FROM generate_series(1, 3)', %s)", (pq0,),
                 '22023', 'no columns', 'write_parquet without columns')
    check(not os.path.exists(pq0), 'a file was written for a query without columns')


def t_destination_checked():
    """destination checked at creation"""
    say('a destination the server cannot write is refused at creation')
    d_ro = os.path.join(WORK, 'not_writable')
    os.mkdir(d_ro, 0o755)
    if os.getuid() != 0:
        os.chmod(d_ro, 0o555)       # else owned by root: the server (postgres) cannot write
    expect_error(conn, "SELECT stream.create_delivery_stream('v_ro', destination => %s)", (d_ro + '/sub',),
                 '22023', 'cannot write destination', 'unwritable destination')
    expect_error(conn, "SELECT stream.create_delivery_stream('v_ro', destination => %s)", (d_ro,),
                 '22023', 'cannot write destination', 'unwritable destination itself')
    check(q1(conn, "SELECT count(*) FROM stream.delivery_streams WHERE delivery_stream_name = 'v_ro'") == 0,
          'refused delivery stream exists')


def t_utf8():
    """defect 4: UTF-8"""
    say('invalid UTF-8: Parquet, table and partitioned JSON destinations')
    recs = [make_record(i) for i in range(1500)]
    kinds = {}
    for d, k in recs:
        kinds[k] = kinds.get(k, 0) + 1
    say('records: %r' % kinds)
    q(conn, "SELECT stream.create_stream('u_src', 2)")
    q(conn, "CREATE TABLE public.u_schema (id int, name text, k text)")
    q(conn, "CREATE TABLE public.u_sink (id int PRIMARY KEY, name text, k text)")
    d_pq = os.path.join(WORK, 'u_parquet')
    d_js = os.path.join(WORK, 'u_json')
    q(conn, "SELECT stream.create_delivery_stream('u_parquet', source_stream_name => 'u_src', destination => %s, "
            "format => 'parquet', schema => 'public.u_schema', buffer_interval_seconds => 900, "
            "starting_position => 'TRIM_HORIZON')", (d_pq,))
    q(conn, "SELECT stream.create_delivery_stream('u_table', source_stream_name => 'u_src', "
            "destination_table => 'public.u_sink', buffer_interval_seconds => 900, starting_position => 'TRIM_HORIZON')")
    q(conn, "SELECT stream.create_delivery_stream('u_json', source_stream_name => 'u_src', destination => %s, "
            "partition_key_queries => '{\"k\": \".k\", \"n\": \".name\"}', "
            "prefix => 'k=!{partitionKeyFromQuery:k}/n=!{partitionKeyFromQuery:n}/', "
            "error_output_prefix => 'errors/!{firehose:error-output-type}/', buffer_interval_seconds => 900, "
            "starting_position => 'TRIM_HORIZON')", (d_js,))
    put_stream('u_src', [d for d, k in recs])
    for n in ('u_parquet', 'u_table', 'u_json'):
        check(flush(n) is True, 'flush %s' % n)
    ok_ids = sorted(i for i, (d, k) in enumerate(recs) if k == 'ok')
    ok_names = {i: json.loads(recs[i][0])['name'] for i in ok_ids}
    bad = {d for d, k in recs if k == 'bad'}
    rejected = {d for d, k in recs if k != 'ok'}

    # Parquet: DuckDB reads every file whole; exactly the valid records
    pq_files = delivered_files(d_pq, '**/*.parquet')
    check(len(pq_files) >= 1, 'parquet files %r' % pq_files)
    try:
        rows = duckdb("SELECT id, name FROM read_parquet('%s/**/*.parquet') ORDER BY id" % d_pq)
        check([int(r['id']) for r in rows] == ok_ids, 'parquet ids: %d rows, %d valid records' % (len(rows), len(ok_ids)))
        check(all(r['name'] == ok_names[int(r['id'])] for r in rows), 'parquet names differ from the records')
    except Exception as e:      # noqa: BLE001
        check(False, 'DuckDB cannot read the Parquet files: %s' % e)
    envs = envelopes(os.path.join(d_pq, 'format-conversion-failed'))
    raw = [base64.b64decode(e['rawData']) for e in envs]
    check(sorted(raw) == sorted(rejected), 'parquet error output: %d envelopes, %d rejected records' % (len(raw), len(rejected)))
    codes = {base64.b64decode(e['rawData']): e['errorCode'] for e in envs}
    check(all(codes.get(d) == 'DataFormatConversion.InvalidUTF8' for d in bad),
          'invalid UTF-8 error codes: %r' % sorted(set(codes.get(d) for d in bad), key=str))
    check(all('UTF-8' in e['errorMessage'] for e in envs if base64.b64decode(e['rawData']) in bad),
          'error messages name UTF-8')

    # table: exactly the valid rows; the database dumps and restores
    rows = q(conn, "SELECT id, name FROM public.u_sink ORDER BY id")
    check([r[0] for r in rows] == ok_ids and all(r[1] == ok_names[r[0]] for r in rows),
          'table rows: %d, valid records %d' % (len(rows), len(ok_ids)))
    errs = q(conn, "SELECT e.envelope FROM stream.processor_errors e JOIN stream.delivery_streams d ON d.delivery_stream_id = e.processor_id "
                   "WHERE d.delivery_stream_name = 'u_table'")
    check(sorted(base64.b64decode(e[0]['rawData']) for e in errs) == sorted(rejected),
          'table error output: %d rows, %d rejected records' % (len(errs), len(rejected)))
    dump = subprocess.run(['pg_dump', '-d', DB], capture_output=True, timeout=120)
    check(dump.returncode == 0, 'pg_dump: %s' % dump.stderr[-500:])
    try:
        dump.stdout.decode('utf-8')
    except UnicodeDecodeError as e:
        check(False, 'the dump holds invalid UTF-8: %s' % e)
    tdump = subprocess.run(['pg_dump', '-d', DB, '-t', 'public.u_sink'], capture_output=True, timeout=120)
    admin = connect('postgres')
    q(admin, 'DROP DATABASE IF EXISTS %s' % DB2)
    q(admin, 'CREATE DATABASE %s' % DB2)
    rest = subprocess.run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', DB2], input=tdump.stdout,
                          capture_output=True, timeout=120)
    check(rest.returncode == 0, 'pg_dump | psql of the table: %s' % rest.stderr[-500:])
    c2 = connect(DB2)
    check(q1(c2, "SELECT count(*) FROM public.u_sink") == len(ok_ids), 'restored rows')
    c2.close()
    q(admin, 'DROP DATABASE IF EXISTS %s' % DB2)
    admin.close()

    # partitioned JSON: files and names on disk are UTF-8, invalid records in the error output
    bad_names = names_on_disk_are_utf8(WORK)
    check(not bad_names, 'names on disk that are not UTF-8: %r' % bad_names[:5])
    data_files = [p for p in delivered_files(d_js) if '/errors/' not in p]
    got = []
    for line in read_bytes_lines(data_files):
        try:
            got.append(json.loads(line.decode('utf-8'))['id'])
        except (UnicodeDecodeError, ValueError) as e:
            check(False, 'a delivered line is not UTF-8 JSON: %r (%s)' % (line[:80], e))
    js_ok = sorted(i for i, (d, k) in enumerate(recs) if k == 'ok' and value_ok(ok_names[i]))
    check(sorted(got) == js_ok, 'partitioned JSON: %d delivered, %d expected' % (len(got), len(js_ok)))
    envs = envelopes(os.path.join(d_js, 'errors'))
    check(all(e['errorCode'] == 'DataFormatConversion.InvalidUTF8' for e in envs if base64.b64decode(e['rawData']) in bad) and
          sorted(base64.b64decode(e['rawData']) for e in envs if base64.b64decode(e['rawData']) in bad) == sorted(bad),
          'partitioned JSON: invalid records in the error output')
    check(len(envs) == len(recs) - len(js_ok), 'partitioned JSON: %d envelopes for %d failed records' %
          (len(envs), len(recs) - len(js_ok)))

    # what a transform returns is checked too (plain JSON lines, no schema)
    q(conn, """
CREATE FUNCTION public.tf_latin1(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
LANGUAGE sql AS $$
    SELECT r.record_id, 'Ok', CASE WHEN get_byte(r.data, 0) = 49 THEN convert_to('{"s": "é"}', 'LATIN1') ELSE r.data END, NULL::jsonb
      FROM unnest(records) r
$$""")
    d_tf = os.path.join(WORK, 'u_transform')
    q(conn, "SELECT stream.create_delivery_stream('u_transform', destination => %s, "
            "transform_function => 'public.tf_latin1(stream.firehose_record[])', buffer_interval_seconds => 900)", (d_tf,))
    q(conn, "SELECT count(*) FROM unnest(%s::text[]) r, LATERAL stream.put_delivery_record('u_transform', convert_to(r, 'UTF8'))",
      (['1', '{"s": "ok"}', '1', '{"s": "é"}'],))
    check(flush('u_transform') is True, 'flush u_transform')
    lines = read_bytes_lines([p for p in delivered_files(d_tf) if '/format-conversion-failed/' not in p])
    check(sorted(lines) == sorted([b'{"s": "ok"}', '{"s": "é"}'.encode()]), 'transformed lines %r' % lines)
    envs = envelopes(os.path.join(d_tf, 'format-conversion-failed'))
    check(len(envs) == 2 and all(e['errorCode'] == 'DataFormatConversion.InvalidUTF8' and
                                 'transform returned' in e['errorMessage'] for e in envs), 'transform envelopes %r' % envs)


def t_partition_values():
    """defect 6: partition values"""
    say('partition values that cannot name a directory go to the error output')
    d_pv = os.path.join(WORK, 'pvalues')
    q(conn, "SELECT stream.create_delivery_stream('v_values', destination => %s, "
            "partition_key_queries => '{\"v\": \".v\"}', prefix => 'v=!{partitionKeyFromQuery:v}/', "
            "error_output_prefix => 'err/!{firehose:error-output-type}/', buffer_interval_seconds => 900)", (d_pv,))
    alphabet = ['a', 'Z', '0', '-', '_', '.', '/', '%', ' ', ':', 'é', '日', '😀', '=', '+']
    values = ['/', '.', '..', '', STAGING, 'a' * VALUE_MAX, 'a' * (VALUE_MAX + 1), '%' * (VALUE_MAX // 3),
              '%' * (VALUE_MAX // 3 + 1), 'é' * (VALUE_MAX // 2), 'é' * (VALUE_MAX // 2) + 'a', '...', '.hidden', 'a/b']
    for _ in range(300):
        values.append(''.join(rnd.choice(alphabet) for _ in range(rnd.choice([0, 1, 2, 3, 10, 40, 60, 130]))))

    q(conn, "SELECT count(*) FROM generate_series(0, %s - 1) g, LATERAL stream.put_delivery_record('v_values', "
            "convert_to(json_build_object('i', g, 'v', (%s::text[])[g + 1])::text, 'UTF8'))", (len(values), values))
    t0 = time.time()
    check(flush('v_values') is True, 'flush v_values (a stall would time out)')
    say('flushed in %.1fs' % (time.time() - t0))
    st = status('v_values')
    check(st[2] is None and st[3] == 0, 'v_values: error %r, %r buffered' % (st[2], st[3]))
    where = {}
    for p in delivered_files(d_pv):
        rel = os.path.relpath(p, d_pv).split('/')
        for line in read_bytes_lines([p]):
            r = json.loads(line)
            if rel[0] == 'err':
                r = json.loads(base64.b64decode(r['rawData']))
            where[r['i']] = rel
    for i, v in enumerate(values):
        rel = where.get(i)
        if value_ok(v):
            check(rel is not None and rel[0] == 'v=' + encoded(v).decode(), 'value %r: delivered to %r' % (v, rel))
        else:
            check(rel is not None and rel[0] == 'err', 'value %r: expected the error output, got %r' % (v, rel))
    envs = envelopes(os.path.join(d_pv, 'err'))
    check(len(envs) == sum(1 for v in values if not value_ok(v)) and
          all(e['errorCode'] == 'DynamicPartitioning.InvalidPartitionKeyValue' for e in envs),
          'error envelopes %r' % sorted(set(e['errorCode'] for e in envs)))
    check(not os.path.exists(os.path.join(WORK, 'b')) and not names_on_disk_are_utf8(WORK), 'names on disk')

    # a value alone as the first directory: the staging directory's name must not swallow a file
    d_bare = os.path.join(WORK, 'pbare')
    q(conn, "SELECT stream.create_delivery_stream('v_bare', destination => %s, "
            "partition_key_queries => '{\"v\": \".v\"}', prefix => '!{partitionKeyFromQuery:v}/', "
            "error_output_prefix => 'err/!{firehose:error-output-type}/', buffer_interval_seconds => 900)", (d_bare,))
    bare = [STAGING, 'a', STAGING, 'b', 'err']
    q(conn, "SELECT count(*) FROM generate_series(0, %s - 1) g, LATERAL stream.put_delivery_record('v_bare', "
            "convert_to(json_build_object('i', g, 'v', (%s::text[])[g + 1])::text, 'UTF8'))", (len(bare), bare))
    check(flush('v_bare') is True, 'flush v_bare')
    found = {}
    for p in delivered_files(d_bare):
        top = os.path.relpath(p, d_bare).split('/')[0]
        for line in read_bytes_lines([p]):
            r = json.loads(line)
            if 'rawData' in r:
                r = json.loads(base64.b64decode(r['rawData']))
                top = 'error output'
            found[r['i']] = top
    exp = {i: ('error output' if v == STAGING else v) for i, v in enumerate(bare)}
    check(found == exp, 'staging-named values: %r, expected %r' % (found, exp))


def t_prefix_longest():
    """defect 6: prefixes at their longest"""
    say('prefixes whose longest evaluation does not fit the file system are refused')

    def components(parts, vlen):
        """(bytes, limit) of each path component, values of vlen bytes (None: keys apart), then the timestamp."""
        out = []
        fixed, nk = 0, 0
        for kind, x in parts + [('lit', '9999/12/31/23/')]:
            if kind == 'key':
                if vlen is None:
                    nk += 1
                else:
                    fixed += vlen
                continue
            for b in x.encode():
                if b == ord('/'):
                    out.append((fixed, nk, COMPONENT_MAX))
                    fixed, nk = 0, 0
                else:
                    fixed += 1
        out.append((fixed, nk, COMPONENT_MAX - OBJECT_NAME_MAX))
        return out

    def model(parts):
        """(accepted, room): room is the most bytes a value may have (keys share a directory name)."""
        room = VALUE_MAX
        for fixed, nk, limit in components(parts, None):
            if nk:
                room = min(room, int((limit - fixed) / nk))
            elif fixed > limit:
                return False, None
        if any(kind == 'key' for kind, x in parts) and room < VALUE_MIN:
            return False, None
        # and what creation evaluates once: the text within limits with one-byte values
        text = ''.join(x if kind == 'lit' else '!{partitionKeyFromQuery:a}' for kind, x in parts)
        trial = ''.join(x if kind == 'lit' else 'x' for kind, x in parts) + '2026/12/01/20/'
        return len(text.encode()) <= 1024 and len(trial.encode()) <= PREFIX_MAX, room

    def delivered(parts, vlen):
        """Whether a record with a value of vlen bytes makes a valid path (else: error output)."""
        total = len(''.join(x if kind == 'lit' else 'x' * vlen for kind, x in parts).encode()) + 14
        return total <= PREFIX_MAX and all(fixed <= limit for fixed, nk, limit in components(parts, vlen))

    cases = [
        [('lit', 'a' * 255 + '/')], [('lit', 'a' * 256 + '/')],
        [('lit', 'k='), ('key', 'a'), ('lit', '-'), ('key', 'a'), ('lit', '/')],
        [('lit', 'x' * 127), ('key', 'a'), ('lit', '/')], [('lit', 'x' * 128), ('key', 'a'), ('lit', '/')],
        [('lit', 'é' * 120 + '/')], [('lit', 'é' * 128 + '/')],
        [('lit', 'dt='), ('key', 'a'), ('lit', '-'), ('key', 'a'), ('lit', '-'), ('key', 'a'), ('lit', '/')],
        [('lit', 'x' * 239), ('key', 'a'), ('lit', '/')], [('lit', 'x' * 240), ('key', 'a'), ('lit', '/')],
        [('lit', 'p/'), ('key', 'a')], [('lit', 'p/' + 'y' * 92), ('key', 'a')], [('lit', 'p/' + 'y' * 91), ('key', 'a')],
    ]
    for _ in range(10):
        parts = []
        for _ in range(rnd.randint(1, 4)):
            if rnd.random() < 0.5:
                parts.append(('key', 'a'))
            else:
                parts.append(('lit', rnd.choice(['é', 'b']) * rnd.choice([5, 60, 100, 130, 200])))
            if rnd.random() < 0.5:
                parts.append(('lit', '/'))
        parts.append(('lit', '/'))
        cases.append(parts)
    for pfx, epfx in (('.firehose-staging/', None), ('a/', '.firehose-staging/!{firehose:error-output-type}/'),
                      ('!{timestamp:\'.firehose-staging\'}/', 'e/!{firehose:error-output-type}/')):
        expect_error(conn, "SELECT stream.create_delivery_stream('v_staging', destination => %s, prefix => %s, "
                           "error_output_prefix => %s)", (os.path.join(WORK, 'v_staging'), pfx, epfx),
                     '22023', 'reserved', 'prefix %r, error prefix %r' % (pfx, epfx))
    accepted = 0
    for n, parts in enumerate(cases):
        prefix = ''.join(x if kind == 'lit' else '!{partitionKeyFromQuery:a}' for kind, x in parts)
        has_key = any(kind == 'key' for kind, x in parts)
        name = 'v_prefix%d' % n
        dest = os.path.join(WORK, name)
        try:
            q(conn, "SELECT stream.create_delivery_stream(%s, destination => %s, prefix => %s, "
                    "error_output_prefix => 'err/!{firehose:error-output-type}/', buffer_interval_seconds => 900"
                    + (", partition_key_queries => '{\"a\": \".a\"}'" if has_key else "") + ")",
                    (name, dest, prefix))
            created = True
        except Exception as e:      # noqa: BLE001
            created = False
            msg = str(e)
        exp, room = model(parts)
        check(created == exp, 'prefix %r (%d bytes): created %r, expected %r%s' %
              (prefix[:80], len(prefix.encode()), created, exp, '' if created else ' (%s)' % msg.splitlines()[0][:200]))
        if not created:
            check('InvalidArgumentException' in msg, 'refusal is an InvalidArgumentException: %s' % msg[:200])
            continue
        accepted += 1
        if not has_key:
            continue
        # values of the most bytes allowed and of the room the prefix leaves: delivered, or in the error output
        lens = sorted({VALUE_MAX, room, 1})
        q(conn, "SELECT count(*) FROM unnest(%s::int[]) n, LATERAL stream.put_delivery_record(%s, "
                "convert_to(json_build_object('a', repeat('x', n), 'n', n)::text, 'UTF8'))", (lens, name))
        check(flush(name) is True, 'flush %s' % name)
        got = {}
        for p in delivered_files(dest):
            for line in read_bytes_lines([p]):
                r = json.loads(line)
                if 'rawData' in r:
                    got[json.loads(base64.b64decode(r['rawData']))['n']] = 'error output'
                else:
                    got[r['n']] = 'delivered'
        exp_got = {n: 'delivered' if delivered(parts, n) else 'error output' for n in lens}
        check(got == exp_got, '%s (room %d): %r, expected %r' % (name, room, got, exp_got))
        check(all(fixed <= limit for fixed, nk, limit in components(parts, room)),
              '%s: a value of its room (%d) does not fit its directory names' % (name, room))
        check(status(name)[2] is None, '%s: last_error %r' % (name, status(name)[2]))
    say('%d of %d prefixes accepted' % (accepted, len(cases)))


def t_jq_and_days():
    """jq and timestamps"""
    say('partition_key_queries in jq and SQL/JSON path; a timestamp partitioned by day')
    for expr, frag in [('.customer.id | bogus', 'bogus'), ('.a[]', '[...]'), ('{c: .customer.id}', 'one query per key'),
                       ('customer.id', "starts with '.'"), ('$.a..b', 'jsonpath'), ('.a | strftime(1)', 'string')]:
        expect_error(conn, "SELECT stream.create_delivery_stream('v_bad', destination => %s, partition_key_queries => %s, "
                           "prefix => '!{partitionKeyFromQuery:c}/', error_output_prefix => 'e/!{firehose:error-output-type}/')",
                     (os.path.join(WORK, 'v_bad'), json.dumps({'c': expr})), '22023', frag, 'query %r' % expr)
    d_jq = os.path.join(WORK, 'jq')
    q(conn, "SELECT stream.create_delivery_stream('v_jq', destination => %s, partition_key_queries => %s, "
            "prefix => 'c=!{partitionKeyFromQuery:c}/i=!{partitionKeyFromQuery:i}/l=!{partitionKeyFromQuery:l}/"
            "s=!{partitionKeyFromQuery:s}/p=!{partitionKeyFromQuery:p}/u=!{partitionKeyFromQuery:u}/"
            "d=!{partitionKeyFromQuery:d}/', "
            "error_output_prefix => 'err/!{firehose:error-output-type}/', buffer_interval_seconds => 900)",
      (d_jq, json.dumps({'c': '.customer.id', 'i': '.items[0]', 'l': '.items[-1]', 's': '.["key with space"]',
                         'p': '$.customer."id"', 'u': '.customer.name | ascii_upcase | tostring',
                         'd': '.when | fromdateiso8601 | todate'})))
    jq_recs = []
    for i in range(60):
        jq_recs.append({'i': i, 'customer': {'id': 'c%d' % (i % 4), 'name': 'n%d' % (i % 2)},
                        'items': [i % 5, 7, i % 3], 'key with space': 'v%d' % (i % 2),
                        'when': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(1700000000 + 86400 * (i % 2)))})
    q(conn, "SELECT count(*) FROM unnest(%s::text[]) r, LATERAL stream.put_delivery_record('v_jq', convert_to(r, 'UTF8'))",
      ([json.dumps(r) for r in jq_recs],))
    check(flush('v_jq') is True, 'flush v_jq')
    seen = {}
    for p in delivered_files(d_jq):
        rel = os.path.relpath(p, d_jq).split('/')
        for line in read_bytes_lines([p]):
            r = json.loads(line)
            if 'rawData' in r:
                check(False, 'jq: a record in the error output: %r' % r)
                continue
            seen[r['i']] = rel[:7]
    for r in jq_recs:
        i = r['i']
        exp = ['c=c%d' % (i % 4), 'i=%d' % (i % 5), 'l=%d' % (i % 3), 's=v%d' % (i % 2), 'p=c%d' % (i % 4), 'u=N%d' % (i % 2),
               'd=' + time.strftime('%Y-%m-%dT%H%%3A%M%%3A%SZ', time.gmtime(1700000000 + 86400 * (i % 2)))]
        check(seen.get(i) == exp, 'jq record %d in %r, expected %r' % (i, seen.get(i), exp))

    # 10,000 records over 3 days: ISO strings (with and without zone), epoch seconds and milliseconds
    d_day = os.path.join(WORK, 'day')
    q(conn, "SELECT stream.create_stream('day_src', 4)")
    q(conn, "SELECT stream.create_delivery_stream('v_day', source_stream_name => 'day_src', destination => %s, "
            "partition_key_queries => '{\"day\": \".ts | strftime(\\\"%%Y-%%m-%%d\\\")\", \"cust\": \".customer.id\"}', "
            "prefix => 'day=!{partitionKeyFromQuery:day}/', "
            "error_output_prefix => 'err/!{firehose:error-output-type}/', buffer_interval_seconds => 900, "
            "starting_position => 'TRIM_HORIZON')", (d_day,))
    base = 1704067200          # 2024-01-01T00:00:00Z
    day_recs = []
    for i in range(10000):
        t = base + rnd.randrange(3 * 86400)
        form = i % 4
        if form == 0:
            ts = t
        elif form == 3:
            ts = t * 1000 + rnd.randrange(1000)     # epoch milliseconds
        elif form == 1:
            ts = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))
        else:
            ts = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t)) + '.%03d' % rnd.randrange(1000)
        day_recs.append((i, time.strftime('%Y-%m-%d', time.gmtime(t)),
                         json.dumps({'i': i, 'ts': ts, 'customer': {'id': i % 7}}).encode()))
    put_stream('day_src', [r[2] for r in day_recs])
    t0 = time.time()
    check(flush('v_day') is True, 'flush v_day')
    say('10,000 records partitioned in %.1fs' % (time.time() - t0))
    files = delivered_files(d_day)
    per_day = {}
    got = {}
    for p in files:
        rel = os.path.relpath(p, d_day).split('/')
        per_day.setdefault(rel[0], []).append(p)
        for line in read_bytes_lines([p]):
            got[json.loads(line)['i']] = rel[0]
    check(sorted(per_day) == ['day=2024-01-01', 'day=2024-01-02', 'day=2024-01-03'], 'day partitions %r' % sorted(per_day))
    check(all(len(v) <= 3 for v in per_day.values()), 'files per day %r' % {k: len(v) for k, v in per_day.items()})
    check(all(got.get(i) == 'day=' + day for i, day, _ in day_recs), 'records in the wrong day: %d' %
          sum(1 for i, day, _ in day_recs if got.get(i) != 'day=' + day))
    st = status('v_day')
    check(st[0] == 10000 and st[1] == 0, 'v_day delivered %r, failed %r' % (st[0], st[1]))


def t_flush_non_superuser():
    """defect 10: non-superuser owner"""
    say('flush_delivery_stream as a non-superuser owner and producer')
    q(conn, "CREATE ROLE dv_owner LOGIN; CREATE ROLE dv_producer LOGIN")
    q(conn, "GRANT USAGE, CREATE ON SCHEMA public TO dv_owner; GRANT USAGE ON SCHEMA stream TO dv_owner, dv_producer")
    q(conn, "GRANT EXECUTE ON FUNCTION stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int, "
            "text, text, jsonb, regprocedure, text, text) TO dv_owner")
    q(conn, "GRANT pg_write_server_files TO dv_owner")
    oc = connect(user='dv_owner')
    q(oc, "CREATE TABLE public.dv_sink (n int)")
    q(oc, "SELECT stream.create_delivery_stream('v_owned', destination_table => 'public.dv_sink', buffer_interval_seconds => 900)")
    d_own = os.path.join(WORK, 'owned')
    q(oc, "SELECT stream.create_delivery_stream('v_owned_files', destination => %s, buffer_interval_seconds => 900)", (d_own,))
    q(oc, "SELECT stream.grant_delivery_stream_access('v_owned', 'dv_producer')")
    pc = connect(user='dv_producer')
    for c, who in ((oc, 'owner'), (pc, 'producer')):
        q(c, "SELECT stream.put_delivery_record('v_owned', convert_to('{\"n\": 1}', 'UTF8'))")
        try:
            check(flush('v_owned', c) is True, 'flush as the %s' % who)
        except Exception as e:      # noqa: BLE001
            check(False, 'flush as the %s: %s' % (who, str(e).splitlines()[0]))
    q(oc, "SELECT stream.put_delivery_record('v_owned_files', convert_to('{\"n\": 1}', 'UTF8'))")
    try:
        check(flush('v_owned_files', oc) is True, 'flush of a directory destination as the owner')
    except Exception as e:      # noqa: BLE001
        check(False, 'flush of a directory destination as the owner: %s' % str(e).splitlines()[0])
    check(q1(oc, "SELECT count(*) FROM public.dv_sink") == 2, 'rows delivered for the non-superuser owner')
    check(len(delivered_files(d_own)) == 1, 'file delivered for the non-superuser owner')
    q(conn, "SELECT stream.create_delivery_stream('v_not_owned', destination_table => 'public.dv_sink', "
            "buffer_interval_seconds => 900)")
    expect_error(pc, "SELECT stream.flush_delivery_stream('v_not_owned')", None, '42501', 'AccessDeniedException',
                 'flush of another role\'s delivery stream')
    oc.close()
    pc.close()


def t_log_names():
    """the log names delivery streams"""
    say('the server log names a failing delivery stream')
    logf = os.environ.get('STREAM_PGLOG')
    if logf and os.path.exists(logf):
        start = os.path.getsize(logf)
        q(conn, "CREATE TABLE public.v_gone (n int)")
        q(conn, "SELECT stream.create_delivery_stream('v_named_in_log', destination_table => 'public.v_gone', "
                "buffer_interval_seconds => 0)")
        q(conn, "DROP TABLE public.v_gone")
        q(conn, "SELECT stream.put_delivery_record('v_named_in_log', convert_to('{\"n\": 1}', 'UTF8'))")

        def logged():
            with open(logf, 'rb') as f:
                f.seek(start)
                return b'delivery of Firehose v_named_in_log failed' in f.read()
        check(wait_for(logged, 20, 'the failure in the server log') is True, 'the log names the delivery stream')
        q(conn, "SELECT stream.delete_delivery_stream('v_named_in_log')")
    else:
        warn('STREAM_PGLOG not set: log check skipped')


try:
    run_subtests([(n, f, ()) for n, f in [
        ('write_parquet_no_columns', t_write_parquet_no_columns),
        ('destination_checked', t_destination_checked),
        ('utf8', t_utf8),
        ('partition_values', t_partition_values),
        ('prefix_longest', t_prefix_longest),
        ('jq_and_days', t_jq_and_days),
        ('flush_non_superuser', t_flush_non_superuser),
        ('log_names', t_log_names),
    ]])
finally:
    conn.close()
    if not KEEP_DB:
        drop_db(roles=ROLES, on_error=warn)
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        print('kept database %s and files in %s' % (DB, WORK))

finish()
