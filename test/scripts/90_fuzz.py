#!/usr/bin/python3
"""Fuzz every SQL function of the extension (issue 7, "Fuzz in CI").

The functions are enumerated from the catalog (pg_proc members of the
extension through pg_depend), so a new function is fuzzed without touching
this file.  Each function is called

  * with plausible values in every argument (names of fixtures this test
    creates: a stream with records, a consumer, an application, a delivery
    stream), then
  * with NULL in every argument position, one at a time,
  * with every hostile value of each argument's type in each position
    (empty, 1 MiB, 128/129-character names, garbage, invalid UTF-8 in bytea,
    INT_MIN/INT_MAX, NaN and huge numerics, infinite timestamps, arrays with
    NULL elements, empty, 1000-element and 2-D arrays, malformed iterators,
    sequence numbers, shard ids and hash keys), and
  * with seeded random combinations of those values until the call budget,

as an unprivileged LOGIN role and as superuser.  Every call runs in its own
transaction (rolled back, or committed for a random quarter of the calls to
functions that cannot destroy the fixtures) with a statement_timeout.

It fails when a call loses the connection (backend crash), when the server
log written during the test shows "terminated by signal", PANIC or TRAP, when
a call fails with an internal error (SQLSTATE class XX), a syntax error
(42601, from dynamic SQL built with an argument; except in SQL text the
caller passed, write_parquet's query) or one of PostgreSQL's own cast errors
("integer out of range", "invalid input syntax for type ...": a cast inside
the extension where the API's error belongs), or warns of a leaked resource.  The summary line
gives calls, errors by SQLSTATE and crashes.

Against 57c2543 (before issue 7's fixes) the default run fails with 22
crashes (stream_internal._check_name with a NULL member, stream_internal._delivery_validate
with NULL array elements behind a prefix that names a key), 42601 from
grant/revoke_(delivery_)stream_access with a NULL role or role OIDs of no
role, and XX000 from write_parquet's over-long file names.

Environment: STREAM_FUZZ_SEED (default fixed, printed), STREAM_FUZZ_CALLS
(total budget, systematic passes included; default 16000), STREAM_FUZZ_TIMEOUT_MS (statement_timeout,
default 3000), STREAM_FUZZ_VERBOSE=1 (print every call), STREAM_FUZZ_REPORT=1
(errors by function and SQLSTATE with an example message and call).
"""

import os
import random
import re
import shutil
import sys
import time
import traceback

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from streamtest import configure, connect, create_db, drop_db, fail, log  # noqa: E402
from streamtest import main_wrapper, q, q1, workdir  # noqa: E402

DB = 'stream_fuzz_test'
ROLE = 'stream_fuzz_user'
SEED = int(os.environ.get('STREAM_FUZZ_SEED', '20260701'))
BUDGET = int(os.environ.get('STREAM_FUZZ_CALLS', '16000'))
TIMEOUT_MS = int(os.environ.get('STREAM_FUZZ_TIMEOUT_MS', '3000'))
VERBOSE = os.environ.get('STREAM_FUZZ_VERBOSE') == '1'
REPORT = os.environ.get('STREAM_FUZZ_REPORT') == '1'     # errors by function and SQLSTATE, with an example
PGLOG = os.environ.get('STREAM_PGLOG')

configure(DB)

# Functions not called at all, and why.  Everything else in the extension is.
SKIP = {
    # a trigger function: PostgreSQL refuses to call it outside a trigger
    # (it returns "trigger"); it is covered through inserts into stream_consumers.
    'stream_internal._consumer_limit',
}

# Functions whose effects destroy or disable the fixtures the other calls need
# (the test's streams, the fuzz role's grants): always rolled back, never
# committed.  Compared by name alone: the API's entry in schema stream and
# the function of the same name in stream_internal that it calls alike.
NEVER_COMMIT = {
    'stream.delete_stream', 'stream.delete_delivery_stream', 'stream.deregister_application',
    'stream.deregister_stream_consumer', 'stream.revoke_stream_access', 'stream.revoke_delivery_stream_access',
    'stream.revoke_application_access', 'stream_internal._application_access',
    'stream_internal._stream_access', 'stream_internal._delivery_access', 'stream_internal._forget_stream', 'stream.release_leases',
    'stream.decrease_stream_retention_period', 'stream_internal._set_retention', 'stream_internal._trim_chunks',
    'stream.create_stream', 'stream.create_delivery_stream',   # would pile up streams and tables
    # the consumer runtime's bookkeeping (the worker's alone): drops, registers,
    # begins and finishes units, moves checkpoints
    'stream_internal._processor_drop', 'stream_internal._processor_register', 'stream_internal._processor_begin_unit',
    'stream_internal._processor_finish_unit', 'stream_internal._processor_failed',
    'stream_internal._delivery_stage', 'stream_internal._delivery_set_files', 'stream_internal._delivery_finish_batch',
    'stream_internal._processor_checkpoint_to',
    # resharding (the fixtures' shards would close) and its steps
    'stream.split_shard', 'stream.merge_shards', 'stream.update_shard_count', 'stream_internal._split',
    'stream_internal._merge', 'stream_internal._reshard_close', 'stream_internal._close_shard',
    'stream_internal._next_shard_index', 'stream_internal._expire_shards',
    # capacity modes: a switch would make the fixtures on-demand (and count against 2 a day), the worker's reshards
    'stream.update_stream_mode', 'stream_internal.update_stream_mode',
    'stream_internal._on_demand_split', 'stream_internal._on_demand_merge',
}

# Errors that mean a bug wherever they come from.
BUG_STATES = re.compile(r'^(XX...|42601)$')
# PostgreSQL's own cast errors: every argument is built with a valid CAST, so
# these come from a cast inside the extension's code (e.g. a shard id's digits
# cast to int), where the caller should get the API's error instead.
CAST_ERROR = re.compile(r'^ERROR:\s+(integer out of range|bigint out of range|smallint out of range|'
                        r'invalid input syntax for type|value "[^"]*" is out of range for type)')

# Known bugs outside this test's scope: (function, SQLSTATE) -> why.  Empty:
# every bug found so far is fixed.
KNOWN = {}

ONE_MIB = 1024 * 1024


# ------------------------------------------------------------------ values
#
# A value is (sql, params): an SQL expression with %s placeholders, so that
# composite rows and casts can be given as expressions.

def lit(v, typ):
    # CAST, not ::, so that -2147483648 is one constant, not -(2147483648::integer)
    return ('CAST(%s AS ' + typ + ')', [v])


def null(typ):
    return ('NULL::' + typ, [])


class Fixtures:
    """Names and values of the objects the fuzzed calls refer to."""

    def __init__(self, conn, root):
        self.root = root
        q(conn, "SELECT stream.create_stream('fz_s', 2)")
        q(conn, "SELECT stream.create_stream('fz_t', 1)")
        q(conn, "SELECT stream.put_records('fz_s', ARRAY['a','b','c','d'], "
                "ARRAY['\\x01', convert_to(repeat('x', 300), 'UTF8'), '\\x', '\\xff']::bytea[])")
        q(conn, "SELECT stream.put_record('fz_t', 'k', '{\"a\": 1}')")
        q(conn, f"SELECT stream.grant_stream_access('fz_s', '{ROLE}', 'read_write')")
        q(conn, f"SELECT stream.grant_stream_access('fz_t', '{ROLE}', 'read')")
        q(conn, "SELECT stream.register_stream_consumer('fz_s', 'fz_c')")
        q(conn, "SELECT stream.register_application('fz_app', 'fz_s')")
        q(conn, "SELECT * FROM stream.acquire_leases('fz_app', 'w1', '1 hour')")
        q(conn, f"SELECT stream.grant_application_access('fz_app', '{ROLE}')")   # the user's lease calls reach the leases
        q(conn, "SELECT stream.create_delivery_stream('fz_d', destination => %s, buffer_interval_seconds => 0)",
          [os.path.join(root, 'd')])
        q(conn, f"SELECT stream.grant_delivery_stream_access('fz_d', '{ROLE}')")
        self.stream_id = q1(conn, "SELECT stream_id FROM stream.streams WHERE stream_name = 'fz_s'")
        self.seqs = [r[0] for r in q(conn, "SELECT sequence_number FROM stream.read_shard('fz_s', 'shardId-000000000000') "
                                           "UNION ALL SELECT sequence_number FROM stream.read_shard('fz_s', 'shardId-000000000001')")]
        self.seq_other = q1(conn, "SELECT sequence_number FROM stream.read_shard('fz_t', 'shardId-000000000000')")
        self.iterators = [q1(conn, "SELECT stream.get_shard_iterator('fz_s', %s, 'TRIM_HORIZON')", [s])
                          for s in ('shardId-000000000000', 'shardId-000000000001')]
        self.iter_other = q1(conn, "SELECT stream.get_shard_iterator('fz_t', 'shardId-000000000000', 'LATEST')")
        self.parquet = os.path.join(root, 'out.parquet')

    # plausible values by argument name (substring match, first wins)
    def plausible(self, name, typ):
        n = (name or '').lower()
        if typ.startswith('stream.') or typ in ('jsonb', 'json', 'bytea', 'boolean', 'timestamp with time zone',
                                               'regtype', 'regprocedure'):
            return self.plausible_by_type(typ)
        seq = self.seqs[0] if self.seqs else '0'
        table = [
            ('delivery_stream_name', lambda: lit('fz_d', typ)),
            ('source_stream_name', lambda: lit('fz_t', typ)),
            ('consumer_name', lambda: lit('fz_c', typ)),
            ('application_name', lambda: lit('fz_app', typ)),
            ('p_app', lambda: lit('fz_app', typ)),
            ('worker', lambda: lit('w1', typ)),
            ('stream_name', lambda: lit('fz_s', typ)),
            ('stream_id', lambda: lit(self.stream_id, typ)),
            ('p_stream', lambda: lit('fz_s', typ)),
            ('p_name', lambda: lit('fz_s', typ)),
            ('shard_iterator_type', lambda: lit('TRIM_HORIZON', typ)),
            ('starting_position', lambda: lit('TRIM_HORIZON', typ)),
            ('initial_position', lambda: lit('TRIM_HORIZON', typ)),
            ('shard_iterator', lambda: lit(self.iterators[0], typ)),
            ('shard_id', lambda: lit('shardId-000000000000', typ)),
            ('sub_sequence_number', lambda: lit(0, typ)),
            ('sequence_number', lambda: lit(seq, typ)),
            ('hash_key', lambda: lit('1' if not typ.endswith('[]') else '{1}', typ)),
            ('partition_key', lambda: lit('k' if not typ.endswith('[]') else '{k}', typ)),
            ('member', lambda: lit('streamName', typ)),
            ('max_length', lambda: lit(128, typ)),
            ('query', lambda: lit('SELECT 1 AS a, \'x\'::text AS b', typ)),
            ('path', lambda: lit(self.parquet, typ)),
            ('destination_table', lambda: null(typ)),
            ('destination', lambda: lit(os.path.join(self.root, 'd2'), typ)),
            ('compression', lambda: lit('snappy', typ)),
            ('format', lambda: lit('json', typ)),
            ('access', lambda: lit('read', typ)),
            ('role', lambda: (f'CAST(CAST(%s AS regrole) AS {typ})', [ROLE]) if typ == 'oid' else lit(ROLE, typ)),
            ('exception', lambda: lit('FuzzException', typ)),
            ('message', lambda: lit('fuzz', typ)),
            ('sqlstate', lambda: lit('22023', typ)),
            ('wait_timeout', lambda: lit('50 ms', typ)),
            ('timeout_seconds', lambda: lit(0, typ)),
            ('lease_duration', lambda: lit('10 s', typ)),
            ('stream_id', lambda: lit(self.stream_id, typ)),
            ('shard_index', lambda: lit(0, typ)),
            ('limit', lambda: lit(5, typ)),
            ('retention', lambda: lit(48, typ)),
            ('shard_count', lambda: lit(1, typ)),
            ('buffer_size', lambda: lit(1, typ)),
            ('buffer_interval', lambda: lit(0, typ)),
        ]
        for key, make in table:
            if key in n:
                return make()
        return self.plausible_by_type(typ)

    def plausible_by_type(self, typ):
        simple = {
            'text': 'x', 'integer': 1, 'bigint': 1, 'smallint': 1, 'boolean': True, 'numeric': 1,
            'bytea': psycopg2.Binary(b'\x01'), 'timestamp with time zone': 'now',
            'interval': '1 s', 'jsonb': '{}', 'json': '{}', 'text[]': '{x}', 'bytea[]': '{"\\\\x01"}',
            'integer[]': '{1}', 'bigint[]': '{1}', 'regrole': ROLE, 'regclass': 'stream.streams',
            'regtype': 'integer', 'regprocedure': 'stream.hash_key(text)', 'oid': 0, 'name': 'x',
        }
        if typ in simple:
            return lit(simple[typ], typ)
        rows = {
            'stream.streams': "(SELECT s FROM stream.streams s WHERE stream_name = 'fz_s')",
            'stream.applications': "(SELECT a FROM stream.applications a WHERE application_name = 'fz_app')",
            'stream.stream_consumers': "(SELECT c FROM stream.stream_consumers c WHERE consumer_name = 'fz_c')",
            'stream.leases': "(SELECT l FROM stream.leases l LIMIT 1)",
            'stream.delivery_streams': "(SELECT d FROM stream.delivery_streams d WHERE delivery_stream_name = 'fz_d')",
        }
        if typ in rows:
            return (rows[typ], [])
        return null(typ)

    # hostile values by argument name, in addition to those of its type
    def hostile_by_name(self, name, typ):
        n = (name or '').lower()
        if typ != 'text':
            return []
        out = []
        if 'iterator' in n and 'type' not in n:
            it = self.iterators[0]
            out += [it[:-1], it[:len(it) // 2], it[:-2] + ('A' if it[-2] != 'A' else 'B') + it[-1],
                    self.iter_other, self.iterators[1], 'A' * 512, 'A' * 513, 'AAAA', '====',
                    'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']
        if 'sequence' in n or n == 'checkpoint':
            s = self.seqs[0] if self.seqs else '0'
            out += [s[:-1], s + '0', s[:-1] + str((int(s[-1]) + 1) % 10), '0' * len(s), self.seq_other,
                    self.seqs[-1] if self.seqs else '1', '0', '-1', '1' * 129, '1' * 130, '9' * 56,
                    '1e10', ' ' + s, s + ' ', 'SHARD_END', 'TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP']
        if 'shard_id' in n:
            out += ['shardId-', 'shardId-0000000000001', 'shardId-000000000001', 'shardId-99999999999',
                    'shardId-2147483647', 'shardId-2147483648', 'shardId-' + '9' * 40, 'shardId--1',
                    '-1', '1', 'foo-1', '0', 'shardId-000000000000x', 'a' * 128, 'a' * 129,
                    'shardId-' + '0' * 120 + '1']
        if 'hash_key' in n:
            out += ['-1', '340282366920938463463374607431768211455', '340282366920938463463374607431768211456',
                    '01', '1.5', 'abc', ' 1', '9' * 40, '9' * 1000, 'NaN', 'Infinity', '1e38']
        if 'type' in n or 'position' in n:
            out += ['AT_SEQUENCE_NUMBER', 'AFTER_SEQUENCE_NUMBER', 'AT_TIMESTAMP', 'LATEST', 'trim_horizon',
                    'SHARD_END']
        if 'compression' in n or 'format' in n:
            out += ['none', 'gzip', 'zstd', 'snappy', 'GZIP', 'parquet', 'csv', 'raw', 'lz4']
        if 'query' in n:
            out += ['SELECT', 'SELECT FROM generate_series(1, 3)', 'SELECT 1 AS a WHERE false',
                    'SELECT NULL AS n', 'SELECT * FROM stream.streams', 'SELECT repeat(\'x\', 1048576) AS t',
                    'SELECT 1 AS a; SELECT 2 AS b', 'VALUES (1, 2), (3, NULL)', 'SELECT 1/0 AS a',
                    'SELECT ARRAY[1, NULL] AS a, \'{"a": 1}\'::jsonb AS j, now() AS t, 1.5::numeric AS n',
                    'SELECT x AS a FROM generate_series(1, 100000) x', 'SELECT pg_sleep(0) AS a',
                    'SELECT \'NaN\'::numeric AS n, \'infinity\'::timestamptz AS t']
        if n == 'path' or n.endswith('_path'):
            r = self.root
            out += [r + '/' + 'f' * 255, r + '/' + 'f' * 256, r + '/' + 'f' * 300 + '/x', r + '/no/such/dir/x',
                    r, r + '/', r + '/d', 'relative.parquet', r + '/ü.parquet']
        if 'destination' in n and 'table' not in n:
            r = self.root
            out += ['/', 'relative', r + '/../x', r + '/./x', r + '/' + 'f' * 300, r + '/d']
        if 'prefix' in n:
            out += ['!{timestamp:yyyy}/', '!{timestamp:', '!{partitionKeyFromQuery:k}/', '!{partitionKeyFromLambda:k}/',
                    '!{firehose:error-output-type}/', '!{firehose:random-string}/', '../', '/abs/', 'a' * 300 + '/',
                    '!{timestamp:' + 'y' * 300 + '}/', '!{unknown:x}/', '.firehose-staging/']
        if 'role' in n or n == 'access':
            out += ['read_write', 'write', 'postgres', 'public']
        if n in ('exception', 'message', 'hint'):
            out += ['%s %n %x', '%%']
        return out


def element_of(name, typ, fx):
    """A plausible element of an array argument, as (sql, params)."""
    n = (name or '').lower()
    et = typ[:-2]
    if 'partition_key' in n:
        return ('%s::' + et, ['k'])
    if 'hash_key' in n:
        return ('%s::' + et, ['1'])
    plaus = fx.plausible_by_type(et)
    return plaus if plaus[0] != 'NULL::' + et else ('NULL', [])


def hostile_by_type(typ, fx, name=''):
    """Hostile values of a type: list of (sql, params)."""
    b = psycopg2.Binary
    texts = ['', ' ', 'x', 'a' * 128, 'a' * 129, 'a' * 256, 'a' * 257, 'ü' * 200, 'x' * ONE_MIB,
             "'; SELECT 1; --", '%s%n%x%d', '\\', '"', "'", 'NULL', 'null', '\t\n', '$1', '日本語',
             '\U0001F600', 'a-b.c_d', '-', '.', '..', '/', 'shardId-000000000000', 'fz_s', 'fz_d']
    out = []
    if typ in ('text', 'name'):
        # (invalid UTF-8 cannot be text in a UTF-8 database: it goes in as bytea)
        out += [lit(t, typ) for t in texts]
    elif typ in ('integer', 'smallint'):
        lo, hi = (-2 ** 31, 2 ** 31 - 1) if typ == 'integer' else (-2 ** 15, 2 ** 15 - 1)
        out += [lit(v, typ) for v in (0, -1, 1, 2, 24, 127, 128, 129, 500, 501, 10000, 10001, 8760, 8761, lo, hi)]
    elif typ == 'bigint':
        out += [lit(v, typ) for v in (0, -1, 1, 2 ** 31, -2 ** 63, 2 ** 63 - 1, 2 ** 32 - 1)]
    elif typ == 'numeric':
        out += [lit(v, typ) for v in ('NaN', '0', '-1', '1e1000', '-1e1000', '340282366920938463463374607431768211456',
                                      '0.5', 'Infinity', '-Infinity')]
    elif typ == 'boolean':
        out += [lit(True, typ), lit(False, typ)]
    elif typ == 'bytea':
        out += [lit(b(v), typ) for v in (b'', b'\x00', b'\xff\xfe\xfd', b'\xc3\x28', b'\xed\xa0\x80', b'{"a":1}',
                                         b'{"a":"\xff"}', b'x' * 126, b'x' * 127, b'x' * 8192, b'\x00' * ONE_MIB,
                                         b'x' * (ONE_MIB + 1))]
    elif typ == 'timestamp with time zone':
        out += [lit(v, typ) for v in ('infinity', '-infinity', '4713-11-24 00:00:00+00 BC',
                                      '294276-12-31 23:59:59+00', '2000-01-01', 'epoch')]
        out.append(("now() + interval '1 day'", []))
    elif typ == 'interval':
        out += [lit(v, typ) for v in ('0', '-1 s', '1 microsecond', '100 ms', '-178000000 years', '178000000 years', '1 month')]
    elif typ in ('jsonb', 'json'):
        out += [lit(v, typ) for v in ('null', '[]', '1', '"s"', '{"a": 1}', '{"a": "$.a"}', '{"a": ".a"}',
                                      '{"a": "$$$"}', '{"": "$.a"}', '{"a": "$.a", "b": ".b[0]"}',
                                      '{"' + 'k' * 300 + '": "$.a"}', '[' * 1000 + ']' * 1000)]
    elif typ.endswith('[]'):
        et = typ[:-2]
        elem_sql, elem_params = element_of(name, typ, fx)
        out += [lit('{}', typ), lit('{NULL}', typ), lit('{NULL,NULL}', typ),
                ('ARRAY[' + elem_sql + ', NULL]::' + typ, elem_params),
                ('ARRAY[NULL, ' + elem_sql + ']::' + typ, elem_params),
                ('array_fill(' + elem_sql + ', ARRAY[1000])::' + typ, elem_params),
                ('array_fill(' + elem_sql + ', ARRAY[501])::' + typ, elem_params),
                ('(SELECT array_agg(CASE WHEN mod(i, 7) = 0 THEN NULL ELSE ' + elem_sql + ' END) '
                 'FROM generate_series(1, 1000) i)::' + typ, elem_params),
                ('array_fill(' + elem_sql + ', ARRAY[2, 2])::' + typ, elem_params),
                ('array_fill(' + elem_sql + ', ARRAY[2], ARRAY[0])::' + typ, elem_params)]
        if et == 'text':
            out += [lit('{"",""}', typ), ('ARRAY[repeat(\'k\', 257)]::' + typ, []),
                    ('ARRAY[%s, %s]::' + typ, ['!{timestamp:yyyy}', 'a' * 300])]
        if et == 'bytea':
            out += [('ARRAY[\'\\xff\'::bytea, \'\\x\'::bytea]', [])]
    elif typ == 'regrole':
        out += [('0::oid::regrole', []), ('4294967295::oid::regrole', []), ('123456::oid::regrole', []),
                lit('postgres', typ), lit('pg_monitor', typ), lit(ROLE, typ)]
    elif typ == 'regclass':
        out += [('0::oid::regclass', []), ('123456::oid::regclass', []), lit('pg_class', typ),
                lit('stream.streams', typ)]
    elif typ == 'regtype':
        out += [('0::oid::regtype', []), ('123456::oid::regtype', []), lit('stream.record', typ),
                lit('integer', typ), lit('stream.streams', typ)]
    elif typ == 'regprocedure':
        out += [('0::oid::regprocedure', []), ('123456::oid::regprocedure', []), lit('now()', typ)]
    elif typ == 'oid':
        out += [lit(v, typ) for v in (0, 1, 4294967295)]
    elif typ.startswith('stream.'):
        # a row of the type with every field NULL, and rows that do not exist
        out.append(('ROW(' + ','.join(['NULL'] * ncols(typ)) + ')::' + typ, []))
        if typ == 'stream.streams':
            out.append(("(SELECT s FROM stream.streams s WHERE stream_name = 'fz_t')", []))
            out.append(("(SELECT (s.stream_id + 1000, 'nope', 24, 1, 'PROVISIONED', 'ACTIVE', now(), 1, false)"
                        "::stream.streams FROM stream.streams s WHERE stream_name = 'fz_s')", []))
            out.append(("(SELECT (s.stream_id, s.stream_name, -1, 0, 'x', 'x', 'infinity', -1, NULL)"
                        "::stream.streams FROM stream.streams s WHERE stream_name = 'fz_s')", []))
    return out


_ncols = {}


def ncols(typ):
    return _ncols[typ]


# ------------------------------------------------------------------ calls

class Fuzzer:
    def __init__(self, fx, conns):
        self.fx = fx
        self.conns = conns            # label -> connection factory result
        self.calls = 0
        self.errors = {}              # sqlstate -> count
        self.crashes = 0
        self.bugs = {}                # (function, sqlstate, message) -> example call
        self.rng = random.Random(SEED)
        self.per_fn = {}
        self.examples = {}            # (function, sqlstate) -> [count, message, call]

    def reconnect(self, label):
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = self.connect(label)
                q(conn, 'SELECT 1')
                conn.rollback()
                self.conns[label] = conn
                return
            except psycopg2.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def after_crash(self):
        """A crashed backend makes the postmaster end every session and
        recover: wait for that, then reconnect every role."""
        time.sleep(1.0)
        for label, conn in list(self.conns.items()):
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.reconnect(label)

    def connect(self, label):
        conn = connect(user=(ROLE if label == 'user' else None), retries=20)
        conn.autocommit = False
        return conn

    def call(self, label, fn, args):
        """Call fn with args ((sql, params) each) as label; record the outcome."""
        qual = fn['qual']
        # a syntax error in SQL text the caller passed (write_parquet's query) is the right answer
        self.user_sql = any(n == 'query' and a != self.fx.plausible(n, t)
                            for n, t, a in zip(fn['argnames'], fn['argtypes'], args))
        sql = 'SELECT %s(%s)' % (qual, ', '.join(a[0] for a in args))
        params = [p for a in args for p in a[1]]
        commit = not ({qual, 'stream.' + qual.split('.', 1)[1]} & NEVER_COMMIT) and self.rng.random() < 0.25
        conn = self.conns[label]
        self.calls += 1
        self.per_fn[qual] = self.per_fn.get(qual, 0) + 1
        shown = describe(sql, params)
        if VERBOSE:
            print(f'[{label}] {shown}', flush=True)
        try:
            with conn.cursor() as cur:
                cur.execute('SET LOCAL statement_timeout = %s', [TIMEOUT_MS])
                cur.execute('SET LOCAL lock_timeout = %s', [TIMEOUT_MS])
                cur.execute(sql, params)
                if cur.description:
                    cur.fetchall()
            if commit:
                conn.commit()
            else:
                conn.rollback()
            self.errors['ok'] = self.errors.get('ok', 0) + 1
            self.check_notices(label, qual, conn, shown)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            if conn.closed or e.pgcode is None:
                self.crashes += 1
                self.bugs[(qual, 'crash', 'connection lost')] = shown
                fail(f'[{label}] connection lost (backend crash?) in {shown}: {str(e).strip()}')
                self.after_crash()
                return
            self.error(label, qual, e, shown, conn)
        except psycopg2.Error as e:
            self.error(label, qual, e, shown, conn)

    def check_notices(self, label, qual, conn, shown):
        """Warnings of leaked resources (buffer pins, relcache, snapshots,
        files, memory contexts...) mean a bug in the code that ran."""
        for n in conn.notices:
            if n.startswith('WARNING') and re.search(r'leak|not closed|still referenced|was not released', n):
                key = (qual, 'WARNING', re.sub(r'\d+', 'N', n.strip())[:120])
                if key not in self.bugs:
                    self.bugs[key] = shown
                    fail(f'[{label}] {n.strip()} from {shown}')
        del conn.notices[:]

    def error(self, label, qual, e, shown, conn):
        code = e.pgcode or '?????'
        self.errors[code] = self.errors.get(code, 0) + 1
        ex = self.examples.setdefault((qual, code), [0, (e.pgerror or '').strip().split('\n')[0][:200], shown[:200]])
        ex[0] += 1
        try:
            conn.rollback()
        except psycopg2.Error:
            self.reconnect(label)
            conn = self.conns[label]
        self.check_notices(label, qual, conn, shown)
        if (BUG_STATES.match(code) and not (code == '42601' and self.user_sql)) or \
                (CAST_ERROR.match(e.pgerror or '') and not self.user_sql):
            msg = (e.pgerror or '').strip().split('\n')[0]
            key = (qual, code, re.sub(r'\d+', 'N', msg)[:120])
            if (qual, code) in KNOWN:
                return
            if key not in self.bugs:
                self.bugs[key] = shown
                fail(f'[{label}] SQLSTATE {code} from {shown}: {msg}')

    def fuzz_function(self, fn, label):
        fx = self.fx
        names, types = fn['argnames'], fn['argtypes']
        base = [fx.plausible(n, t) for n, t in zip(names, types)]
        self.call(label, fn, base)
        for i, t in enumerate(types):
            args = list(base)
            args[i] = null(t)
            self.call(label, fn, args)
        if len(types) > 1:
            self.call(label, fn, [null(t) for t in types])
        for i, (n, t) in enumerate(zip(names, types)):
            vals = hostile_by_type(t, fx, n) + [lit(v, t) for v in fx.hostile_by_name(n, t)]
            for v in vals:
                args = list(base)
                args[i] = v
                self.call(label, fn, args)
        # arrays holding NULL elements together with every hostile value of
        # each other argument: a NULL element is often reached only on a
        # path that another argument opens (e.g. a prefix naming a key)
        for i, (n, t) in enumerate(zip(names, types)):
            if not t.endswith('[]'):
                continue
            esql, eparams = element_of(n, t, fx)
            with_nulls = [('ARRAY[' + esql + ', NULL]::' + t, eparams),
                          ('ARRAY[NULL, ' + esql + ']::' + t, eparams), lit('{NULL}', t)]
            for j, (n2, t2) in enumerate(zip(names, types)):
                if j == i:
                    continue
                others = hostile_by_type(t2, fx, n2) + [lit(v, t2) for v in fx.hostile_by_name(n2, t2)]
                for k, v2 in enumerate(others):
                    args = list(base)
                    args[i] = with_nulls[k % len(with_nulls)]
                    args[j] = v2
                    self.call(label, fn, args)

    def random_call(self, fn, label):
        fx = self.fx
        args = []
        for n, t in zip(fn['argnames'], fn['argtypes']):
            r = self.rng.random()
            if r < 0.4:
                args.append(fx.plausible(n, t))
            elif r < 0.55:
                args.append(null(t))
            else:
                vals = hostile_by_type(t, fx, n) + [lit(v, t) for v in fx.hostile_by_name(n, t)]
                args.append(self.rng.choice(vals) if vals else null(t))
        self.call(label, fn, args)


def describe(sql, params):
    def short(p):
        s = repr(p if not isinstance(p, psycopg2.Binary) else bytes(p.adapted))
        return s if len(s) <= 60 else s[:40] + f'...<{len(s)} chars>'
    return sql.replace('%s', '{}').format(*[short(p) for p in params])


def functions(conn):
    """Every function of the extension: qualified name, argument names and types."""
    rows = q(conn, """
        SELECT n.nspname || '.' || p.proname, p.oid::regprocedure::text,
               coalesce(p.proargnames, '{}'), p.proargmodes,
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, o) ORDER BY o),
               format_type(p.prorettype, NULL)
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'stream'
         WHERE p.prokind = 'f'
         ORDER BY 2""")
    out = []
    for qual, sig, argnames, modes, argtypes, rettype in rows:
        # input argument names: skip OUT and TABLE columns
        if modes:
            innames = [nm for nm, m in zip(argnames, modes) if m in ('i', 'b', 'v')]
        else:
            innames = list(argnames) + [''] * (len(argtypes) - len(argnames))
        out.append({'qual': qual, 'sig': sig, 'argnames': innames[:len(argtypes)], 'argtypes': list(argtypes),
                    'rettype': rettype})
    return out


def server_log_from(offset):
    if not PGLOG or not os.path.exists(PGLOG):
        return ''
    with open(PGLOG, 'rb') as f:
        f.seek(offset)
        return f.read().decode('utf-8', 'replace')   # the test's own part of the log


def main():
    log(f'seed {SEED} (STREAM_FUZZ_SEED), budget {BUDGET} calls (STREAM_FUZZ_CALLS), '
        f'statement_timeout {TIMEOUT_MS} ms')
    log_start = os.path.getsize(PGLOG) if PGLOG and os.path.exists(PGLOG) else 0
    if not PGLOG:
        fail('STREAM_PGLOG is not set: cannot check the server log for crashes (source scripts/env.sh)')
    admin = create_db(roles=[ROLE])
    q(admin, f'CREATE ROLE {ROLE} LOGIN')
    # Errors quote the hostile values (1 MiB names...): keep them out of the
    # server log, which would grow by hundreds of MB.  Crashes are still
    # logged (by the postmaster; PANIC and TRAP too), and warnings reach the
    # client, which checks them (see Fuzzer.call).
    q(admin, f'ALTER DATABASE {DB} SET log_min_messages = fatal')
    q(admin, f'ALTER DATABASE {DB} SET log_min_error_statement = panic')
    admin.close()
    root = workdir('fuzz')
    _state['root'] = root
    conn = connect()
    q(conn, 'CREATE EXTENSION stream')
    q(conn, f'GRANT CREATE ON SCHEMA public TO {ROLE}')
    fx = Fixtures(conn, root)
    for typ, n in q(conn, """SELECT format_type(t.oid, NULL), count(a.attnum) FROM pg_type t
                              JOIN pg_namespace s ON s.oid = t.typnamespace AND s.nspname = 'stream'
                              JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                             WHERE t.typtype = 'c' GROUP BY 1"""):
        _ncols[typ] = n
    fns = [f for f in functions(conn) if f['qual'] not in SKIP]
    if len(fns) < 20:
        fail(f'only {len(fns)} functions found through pg_depend: the enumeration is broken')
    conn.close()
    log(f'{len(fns)} functions to fuzz (skipped: {", ".join(sorted(SKIP))})')

    fz = Fuzzer(fx, {})
    fz.conns = {'user': fz.connect('user'), 'superuser': fz.connect('superuser')}
    # systematic pass, as each role
    for label in ('user', 'superuser'):
        t = time.monotonic()
        for fn in fns:
            fz.fuzz_function(fn, label)
        log(f'systematic pass as {label}: {fz.calls} calls so far ({time.monotonic() - t:.1f} s)')
    # random combinations up to the budget
    t = time.monotonic()
    n_random = 0
    while fz.calls < BUDGET:
        fz.random_call(fz.rng.choice(fns), fz.rng.choice(('user', 'superuser')))
        n_random += 1
    log(f'random pass: {n_random} calls ({time.monotonic() - t:.1f} s)')
    # the fixtures survived (else most calls tested only "not found")
    c = fz.conns['superuser']
    left = q(c, "SELECT (SELECT count(*) FROM stream.streams WHERE stream_name IN ('fz_s', 'fz_t')), "
                "(SELECT count(*) FROM stream.delivery_streams WHERE delivery_stream_name = 'fz_d'), "
                "(SELECT count(*) FROM stream.applications WHERE application_name = 'fz_app')")[0]
    c.rollback()
    if tuple(left) != (2, 1, 1):
        fail(f'fixtures lost during the test (streams, delivery streams, applications): {left}')
    if fz.errors.get('ok', 0) < fz.calls // 20:
        fail(f'only {fz.errors.get("ok", 0)} of {fz.calls} calls succeeded: the plausible values no longer fit')
    for c in fz.conns.values():
        c.close()

    bad = [ln for ln in server_log_from(log_start).split('\n')
           if 'terminated by signal' in ln or 'PANIC:' in ln or 'TRAP:' in ln]
    for ln in bad[:20]:
        fail(f'server log: {ln.strip()}')
    never = [f['qual'] for f in fns if fz.per_fn.get(f['qual'], 0) == 0]
    if never:
        fail('functions never called: ' + ', '.join(never))
    if fz.bugs:
        log(f'{len(fz.bugs)} distinct bug errors (function, SQLSTATE, message), one example call each:')
        for (qual, code, msg), shown in sorted(fz.bugs.items()):
            print(f'  {qual} {code} {msg}\n      e.g. {shown[:300]}', flush=True)
    if REPORT:
        for (qual, code), (n, msg, shown) in sorted(fz.examples.items()):
            print(f'  {qual} {code} x{n}: {msg}\n      e.g. {shown}', flush=True)
    errs = ', '.join(f'{k}={v}' for k, v in sorted(fz.errors.items(), key=lambda kv: (-kv[1], kv[0])))
    log(f'summary: seed={SEED} functions={len(fns)} calls={fz.calls} crashes={fz.crashes} '
        f'server_log_crash_lines={len(bad)} bug_errors={len(fz.bugs)} outcomes: {errs}')


_state = {}


def cleanup():
    drop_db(roles=[ROLE], on_error=lambda m: log(m))
    if 'root' in _state:
        shutil.rmtree(_state['root'], ignore_errors=True)


if __name__ == '__main__':
    try:
        main_wrapper(main, cleanup)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
