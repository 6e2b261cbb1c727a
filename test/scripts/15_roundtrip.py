#!/usr/bin/python3
"""Round-trip property test: every read returns exactly what was written.

Seeded random records are put with put_record and put_records (batches of
random size up to 500 records and 5 MiB, some with explicit hash keys) into
three streams: two of random bytes (4 and 3 shards) and one of random JSON
documents (2 shards).  Data sizes run from 0 bytes to 1 MiB and are weighted
to the varlena boundaries: 0, 1, 125-129 (the 1-byte header ends at 126 data
bytes), the TOAST threshold (~2000-2100), 8 KiB, 64 KiB and a few records
whose key + data is just under 1 MiB; a third of the data is compressible
(pglz), the rest random bytes.  Partition keys are 1 to 256 characters,
multibyte UTF-8 included.

Then everything is read back in ONE long session (so every read after the
first reuses the backend's result buffer), interleaving streams, shards and
read paths, one small step at a time:

  get_records    from TRIM_HORIZON and from AT_/AFTER_SEQUENCE_NUMBER of a
                 random record, random limits
  read_shard     random limits, resumed with AFTER_SEQUENCE_NUMBER
  subscribe      subscribe_to_shard of a registered consumer, wait 0 s,
                 resumed with the continuation sequence number
  lease          an application's lease iterators (acquire_leases,
                 get_lease_iterator, get_records, checkpoint; sometimes
                 restarting from the checkpoint)

and outside that session:

  kcl_worker     examples/kcl_worker.c, one process per byte stream, -v output
  raw / raw.gz   delivery of the byte streams to raw files (one gzip'd)
  json           delivery of the JSON stream to JSON-lines files
  parquet        delivery of the JSON stream to Parquet, read by DuckDB
  table          delivery of the JSON stream to a table

Every record is compared byte for byte (data, partition key), sequence
numbers must be strictly increasing per shard, the shard must be the one
whose hash key range holds MD5(partition key) (or the explicit hash key),
stream.hash_key must agree with MD5, and each path must return every record
exactly once (the kcl worker: at least once, always the same bytes).

Environment:
  STREAM_PROP_SEED      the seed (default: random; always printed)
  STREAM_PROP_RECORDS   number of records (default 5000; e.g. 50000 on demand)
  STREAM_PROP_TIMEOUT_SCALE  multiplies every timeout (default 1)

A failure names the record: seed, stream, shard, sequence number, size and
read path.  Exit status 0 = pass, 1 = failure.
"""

import base64
import gzip
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
import streamtest as st  # noqa: E402
from streamtest import check, fail, log, q, q1  # noqa: E402

DB = 'stream_roundtrip_test'
# STREAM_PROP_TIMEOUT_SCALE: multiplies every timeout (test/valgrind.sh runs the server under valgrind)
SCALE = float(os.environ.get('STREAM_PROP_TIMEOUT_SCALE') or 1)
st.configure(DB, statement_timeout='%ds' % (120 * SCALE), client_min_messages='warning')

SEED = int(os.environ.get('STREAM_PROP_SEED') or int.from_bytes(os.urandom(4), 'big'))
NRECORDS = int(os.environ.get('STREAM_PROP_RECORDS') or 5000)
rng = random.Random(SEED)

MiB = 1024 * 1024
RECORD_MAX = MiB                  # partition key + data
BATCH_MAX = 500
BATCH_MAX_BYTES = 5 * MiB
HASH_MAX = (1 << 128) - 1
STREAMS = {'prop_a': 4, 'prop_b': 3, 'prop_j': 2}     # name: shards
BYTE_STREAMS = ('prop_a', 'prop_b')
JSON_STREAM = 'prop_j'

counts = {}                       # read path: records verified
WORK = None
TMP = tempfile.mkdtemp(prefix='stream_roundtrip.')


def count(path, n=1):
    counts[path] = counts.get(path, 0) + n


# ---------------------------------------------------------------- generation

# (weight, lo, hi) data sizes in bytes
SIZE_CLASSES = [
    (3, 0, 0), (3, 1, 1), (14, 125, 129), (10, 2, 124), (6, 130, 1999),
    (12, 1990, 2110), (6, 2111, 8100), (7, 8180, 8210), (3, 8211, 65000),
    (4, 65520, 65560), (2, 65561, 300000),
]
NEAR_MAX_WEIGHT = 0.15            # key + data within a few bytes of 1 MiB

KEY_POOLS = [
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/ ',
    'éüßøñçÅÆ', 'αβγδεζηθλμπσω', 'жизньЯ', '日本語中文字', '한국어', '😀🚀🎉𝄞',
]
# JSON string characters: no quote, backslash or control characters, so the
# UTF-8 length of the encoded document is known in advance
STR_POOL = [c for c in ''.join(KEY_POOLS) if c not in '"\\'] + ['\u00a0', '\u2028', '\ufeff', 'x', '{', '}']


def random_key():
    r = rng.random()
    if r < 0.05:
        n = 256
    elif r < 0.10:
        n = 1
    elif r < 0.20:
        n = rng.randint(200, 256)
    else:
        n = rng.randint(1, 40)
    pool = rng.choice(KEY_POOLS) if rng.random() < 0.7 else ''.join(KEY_POOLS)
    return ''.join(rng.choice(pool) for _ in range(n))


def data_size(keylen):
    total = sum(w for w, _, _ in SIZE_CLASSES) + NEAR_MAX_WEIGHT
    x = rng.uniform(0, total)
    for w, lo, hi in SIZE_CLASSES:
        if x < w:
            return rng.randint(lo, hi)
        x -= w
    return RECORD_MAX - keylen - rng.randint(0, 3)


def random_bytes(n):
    if n > 16 and rng.random() < 0.33:      # compressible (pglz), still not ASCII
        unit = rng.randbytes(rng.randint(1, 24))
        return (unit * (n // len(unit) + 1))[:n - 8] + rng.randbytes(8)
    return rng.randbytes(n)


def random_text(nbytes):
    """A string of exactly nbytes UTF-8 bytes from STR_POOL."""
    out = []
    left = nbytes
    while left >= 4:
        c = rng.choice(STR_POOL)
        out.append(c)
        left -= len(c.encode())
    out.append('a' * left)
    return ''.join(out)


def random_json_value(depth=0):
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice([None, True, False, rng.randint(-10**12, 10**12), rng.random() * 1e6,
                           random_text(rng.randint(0, 12)), '\u00e9\n\t"\\'])
    if r < 0.6:
        return [random_json_value(depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng.randint(1, 8)): random_json_value(depth + 1) for _ in range(rng.randint(0, 4))}


def random_json(i, size):
    """A JSON document (UTF-8 bytes) of about size bytes, at least its skeleton."""
    doc = {'id': i, 'e': rng.choice(['', 'tab\there', 'quote " and \\ backslash', 'line\nbreak',
                                    'caf\u00e9 \u65e5\u672c \U0001f600', '\u0001\u001f']),
           'f': rng.choice([0.0, -1.5, 1e-300, 12345.678901, rng.random()]),
           'doc': random_json_value(), 's': ''}
    base = len(json.dumps(doc, ensure_ascii=False).encode())
    doc['s'] = random_text(max(0, size - base))
    return doc, json.dumps(doc, ensure_ascii=False).encode()


def random_ehk():
    r = rng.random()
    if r < 0.1:
        return '0'
    if r < 0.2:
        return str(HASH_MAX)
    return str(rng.randint(0, HASH_MAX))


class Rec:
    __slots__ = ('n', 'stream', 'key', 'data', 'ehk', 'doc', 'shard', 'seq', 'iseq', 'arrival', 'how')

    def __init__(self, n, stream):
        self.n = n
        self.stream = stream
        self.key = random_key()
        keylen = len(self.key.encode())
        size = min(data_size(keylen), RECORD_MAX - keylen)
        self.doc = None
        if stream == JSON_STREAM:
            self.doc, self.data = random_json(n, size)
            while keylen + len(self.data) > RECORD_MAX:
                size -= keylen + len(self.data) - RECORD_MAX
                self.doc, self.data = random_json(n, size)
        else:
            self.data = random_bytes(size)
        self.ehk = random_ehk() if rng.random() < 0.15 else None
        self.shard = self.seq = self.iseq = self.arrival = self.how = None

    def where(self):
        return (f'seed={SEED} stream={self.stream} shard={self.shard} sequence={self.seq} '
                f'size={len(self.data)} key_chars={len(self.key)} (record #{self.n}, {self.how})')


def generate():
    """Records grouped into put operations: (stream, [Rec], single?)."""
    ops = []
    n = 0
    weights = [('prop_a', 0.45), ('prop_b', 0.3), ('prop_j', 0.25)]
    while n < NRECORDS:
        stream = rng.choices([w[0] for w in weights], [w[1] for w in weights])[0]
        if len(ops) < len(weights):         # every stream gets records, however few in all
            stream = weights[len(ops)][0]
        if rng.random() < 0.35:
            ops.append((stream, [Rec(n, stream)], True))
            n += 1
            continue
        size = min(int(math.exp(rng.uniform(0, math.log(BATCH_MAX + 1)))), BATCH_MAX, NRECORDS - n)
        recs, total = [], 0
        while len(recs) < max(size, 1):
            r = Rec(n, stream)
            b = len(r.key.encode()) + len(r.data)
            if total + b > BATCH_MAX_BYTES:
                break
            recs.append(r)
            total += b
            n += 1
        if recs:
            ops.append((stream, recs, False))
    return ops


# ---------------------------------------------------------------- put

def put_all(conn, ops, ranges):
    """Put every operation; check shard routing and increasing sequence numbers."""
    last = {}                  # (stream, shard) -> last sequence number (int)
    for stream, recs, single in ops:
        if single:
            r = recs[0]
            r.how = 'put_record' + (' with explicit_hash_key' if r.ehk else '')
            rows = q(conn, 'SELECT shard_id, sequence_number, NULL, NULL FROM stream.put_record(%s, %s, %s, %s)',
                     (stream, r.key, psycopg2.Binary(r.data), r.ehk))
        else:
            ehks = [r.ehk for r in recs] if any(r.ehk for r in recs) else None
            for i, r in enumerate(recs):
                r.how = f'put_records batch of {len(recs)}, #{i}' + (' with explicit_hash_key' if r.ehk else '')
            rows = q(conn, 'SELECT shard_id, sequence_number, error_code, error_message '
                           'FROM stream.put_records(%s, %s, %s::bytea[], %s)',
                     (stream, [r.key for r in recs], [psycopg2.Binary(r.data) for r in recs], ehks))
        if not check(len(rows) == len(recs), f'{stream}: put returned {len(rows)} rows for {len(recs)} records'):
            continue
        for r, (shard, seq, err, msg) in zip(recs, rows):
            r.shard, r.seq = shard, seq
            if not check(err is None and seq is not None, f'put failed: {err} {msg}: {r.where()}'):
                continue
            h = int(r.ehk) if r.ehk is not None else int.from_bytes(hashlib.md5(r.key.encode()).digest(), 'big')
            want = [s for s, lo, hi in ranges[stream] if lo <= h <= hi]
            check(want == [shard], f'routing: hash key {h} belongs to {want}, record went to {shard}: {r.where()}')
            prev = last.get((stream, shard))
            check(prev is None or int(seq) > prev,
                  f'sequence numbers not increasing: {seq} after {prev}: {r.where()}')
            last[(stream, shard)] = int(seq)


# ---------------------------------------------------------------- readers



def random_limit():
    """Mostly small limits, so that the readers interleave in many steps."""
    r = rng.random()
    if r < 0.96:
        return rng.randint(1, 20)
    if r < 0.995:
        return rng.randint(21, 300)
    return rng.choice([1000, 10000])

RGET = ('SELECT g.next_shard_iterator, r.sequence_number, r.approximate_arrival_timestamp, '
        'r.partition_key, r.data FROM stream.get_records(%s, %s) AS g '
        'LEFT JOIN LATERAL unnest(g.records) WITH ORDINALITY '
        'AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true ORDER BY r.ord')
RSUB = ('SELECT s.continuation_sequence_number, r.sequence_number, r.approximate_arrival_timestamp, '
        'r.partition_key, r.data FROM stream.subscribe_to_shard(%s, %s, %s, %s, %s, %s::interval) AS s '
        'LEFT JOIN LATERAL unnest(s.records) WITH ORDINALITY '
        'AS r(sequence_number, approximate_arrival_timestamp, partition_key, data, ord) ON true ORDER BY r.ord')


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class Reader:
    """Reads one shard by one path, step by step, checking each record."""

    def __init__(self, path, stream, shard, expected, start=0):
        self.path, self.stream, self.shard = path, stream, shard
        self.expected = expected          # Recs of the shard in put order
        self.start = start
        self.idx = start                  # next expected record
        self.high = start                 # records verified so far
        self.done = False
        self.empty_steps = 0
        self.steps = 0
        self.confirming = False           # read everything: one more read must return nothing

    def label(self, limit=None):
        return f'{self.path}' + (f'(limit={limit})' if limit else '') + (f' from #{self.start}' if self.start else '')

    def verify(self, rows, limit):
        """rows: (seq, arrival, key, data) of the records returned."""
        for seq, arrival, key, data in rows:
            data = bytes(data) if data is not None else None
            if self.idx >= len(self.expected):
                fail(f'{self.label(limit)}: extra record {seq} after the last one of seed={SEED} '
                     f'stream={self.stream} shard={self.shard} ({len(data or b"")} bytes)')
                self.done = True
                return False
            r = self.expected[self.idx]
            if seq != r.seq:
                known = [x for x in self.expected if x.seq == seq]
                fail(f'{self.label(limit)}: got sequence {seq} '
                     f'({"a record of this shard, out of order" if known else "unknown"}), expected: {r.where()}')
                self.done = True
                return False
            bad = []
            if data != r.data:
                bad.append(f'data {"NULL" if data is None else len(data)} bytes != {len(r.data)} bytes, '
                           f'first difference at byte {first_difference(data or b"", r.data)}')
            if key != r.key:
                bad.append(f'partition key {key!r:.80} != {r.key!r:.80}')
            if r.arrival is None:
                r.arrival = arrival
            elif arrival != r.arrival:
                bad.append(f'arrival {arrival} != {r.arrival} seen before')
            if bad:
                fail(f'{self.label(limit)}: record mismatch ({"; ".join(bad)}): {r.where()}')
            self.idx += 1
            if self.idx > self.high:     # a lease reader may read records again after its checkpoint
                self.high = self.idx
                count(self.path)
        return True

    def finished_rows(self, rows, limit):
        if self.confirming:
            check(not rows, f'{self.label(limit)}: records after the last one of {self.stream} {self.shard}')
            self.done = True
            return
        if rows:
            self.empty_steps = 0
        else:
            self.empty_steps += 1
            if self.empty_steps > 30:
                nxt = self.expected[self.idx]
                fail(f'{self.label(limit)}: 30 reads returned nothing before {nxt.where()}')
                self.done = True
                return
        if self.idx >= len(self.expected):
            self.confirming = True

    def step(self, conn):
        self.steps += 1
        limit = random_limit()
        rows = self.read(conn, limit)
        if rows is None:
            return
        if self.verify(rows, limit):
            self.finished_rows(rows, limit)


class GetRecords(Reader):
    def __init__(self, path, stream, shard, expected, start=0, after=False):
        super().__init__(path, stream, shard, expected, start)
        self.after = after
        self.iterator = None

    def first_iterator(self, conn):
        if self.start == 0:
            return q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'TRIM_HORIZON')", (self.stream, self.shard))
        if self.after:      # start after the record before start
            return q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'AFTER_SEQUENCE_NUMBER', %s)",
                      (self.stream, self.shard, self.expected[self.start - 1].seq))
        return q1(conn, "SELECT stream.get_shard_iterator(%s, %s, 'AT_SEQUENCE_NUMBER', %s)",
                  (self.stream, self.shard, self.expected[self.start].seq))

    def read(self, conn, limit):
        if self.iterator is None:
            self.iterator = self.first_iterator(conn)
        rows = q(conn, RGET, (self.iterator, limit))
        self.iterator = rows[0][0]
        check(self.iterator is not None, f'{self.label(limit)}: no next iterator on an open shard')
        if self.iterator is None:
            self.done = True
        return [r[1:] for r in rows if r[1] is not None]


class ReadShard(Reader):
    def read(self, conn, limit):
        if self.idx == 0:
            rows = q(conn, "SELECT * FROM stream.read_shard(%s, %s, 'TRIM_HORIZON', NULL, NULL, %s)",
                     (self.stream, self.shard, limit))
        else:
            rows = q(conn, "SELECT * FROM stream.read_shard(%s, %s, 'AFTER_SEQUENCE_NUMBER', %s, NULL, %s)",
                     (self.stream, self.shard, self.expected[self.idx - 1].seq, limit))
        return rows


class Subscribe(Reader):
    def __init__(self, path, stream, shard, expected, consumer):
        super().__init__(path, stream, shard, expected)
        self.consumer = consumer
        self.cont = None

    def read(self, conn, limit):
        if self.cont is None:
            rows = q(conn, RSUB, (self.stream, self.consumer, self.shard, 'TRIM_HORIZON', None, '0 s'))
        else:
            rows = q(conn, RSUB, (self.stream, self.consumer, self.shard, 'AFTER_SEQUENCE_NUMBER', self.cont, '0 s'))
        self.cont = rows[0][0]
        if not check(self.cont is not None, f'{self.label()}: no continuation sequence number on an open shard'):
            self.done = True
        return [r[1:] for r in rows if r[1] is not None]


class Lease(Reader):
    def __init__(self, path, stream, shard, expected, app, worker):
        super().__init__(path, stream, shard, expected)
        self.app, self.worker = app, worker
        self.iterator = None
        self.checkpointed = 0

    def read(self, conn, limit):
        if self.iterator is None:
            self.iterator = q1(conn, 'SELECT stream.get_lease_iterator(%s, %s, %s)', (self.app, self.worker, self.shard))
            self.idx = self.checkpointed     # resume right after the checkpoint
        rows = q(conn, RGET, (self.iterator, limit))
        self.iterator = rows[0][0]
        return [r[1:] for r in rows if r[1] is not None]

    def step(self, conn):
        super().step(conn)
        if self.idx > self.checkpointed and not self.done:
            q(conn, 'SELECT stream.checkpoint(%s, %s, %s, %s)',
              (self.app, self.worker, self.shard, self.expected[self.idx - 1].seq))
            self.checkpointed = self.idx
            if rng.random() < 0.2:
                self.iterator = None         # start again from the lease's checkpoint


def run_readers(readers):
    conn = st.connect()
    pid = q1(conn, 'SELECT pg_backend_pid()')
    live = list(readers)
    steps = 0
    while live:
        r = rng.choice(live)
        try:
            r.step(conn)
        except psycopg2.Error as e:
            nxt = r.expected[r.idx].where() if r.idx < len(r.expected) else 'the end of the shard'
            fail(f'{r.label()}: {type(e).__name__} {e.pgcode}: {str(e).strip()[:300]} reading {nxt}')
            r.done = True
            if conn.closed or isinstance(e, psycopg2.OperationalError):
                log('the reading session was lost: reconnecting')
                conn = reconnect()
        steps += 1
        live = [x for x in live if not x.done]
    check(q1(conn, 'SELECT pg_backend_pid()') == pid, 'the reading session changed (a backend died)')
    conn.close()
    return steps


def reconnect():
    """A new connection once the server accepts them again (after a crash of a backend)."""
    end = time.monotonic() + 60 * SCALE
    while True:
        try:
            return st.connect()
        except psycopg2.Error:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


def alive(conn):
    """conn, or a new connection if a crash of the server ended it."""
    try:
        q(conn, 'SELECT 1')
        return conn
    except psycopg2.Error:
        log('the admin session was lost (a backend crashed): reconnecting')
        return reconnect()


# ---------------------------------------------------------------- kcl_worker

def start_kcl_workers(admin):
    src = os.path.join(st.ROOT, 'examples', 'kcl_worker.c')
    exe = os.path.join(TMP, 'kcl_worker')
    incdir = subprocess.run(['pg_config', '--includedir'], capture_output=True, text=True, check=True).stdout.strip()
    libdir = subprocess.run(['pg_config', '--libdir'], capture_output=True, text=True, check=True).stdout.strip()
    b = subprocess.run(['cc', '-O2', '-o', exe, src, f'-I{incdir}', f'-L{libdir}', '-lpq'], capture_output=True, text=True)
    if not check(b.returncode == 0, f'kcl_worker: build failed: {b.stderr}'):
        return []
    procs = []
    for stream in BYTE_STREAMS:
        app = f'{stream}_kcl'
        q(admin, 'SELECT stream.register_application(%s, %s)', (app, stream))
        out = open(os.path.join(TMP, f'{app}.out'), 'wb+')
        err = open(os.path.join(TMP, f'{app}.err'), 'w+')
        limit = str(rng.choice([1, 7, 100, 10000]))
        p = subprocess.Popen([exe, '-d', f'dbname={DB}', '-a', app, '-w', f'{app}-1', '-l', str(int(30 * SCALE)), '-n', limit,
                              '-i', '50', '-t', str(int(150 * SCALE)), '-v', '-q'], stdout=out, stderr=err)
        procs.append((stream, app, p, out, err, limit))
    return procs


def finish_kcl_workers(admin, procs, by_shard, by_seq):
    for stream, app, p, out, err, limit in procs:
        lasts = {sh: recs[-1].seq for (s, sh), recs in by_shard.items() if s == stream and recs}

        def drained():
            nonlocal admin
            try:
                cps = dict(q(admin, 'SELECT lease_key, checkpoint FROM stream.application_leases '
                                    'WHERE application_name = %s', (app,)))
            except psycopg2.Error:
                admin = alive(admin)        # the worker's reads may crash the server
                return False
            return all(cps.get(sh) == seq for sh, seq in lasts.items())
        st.wait_for(lambda: drained() or p.poll() is not None, 90 * SCALE, f'kcl_worker of {stream} to checkpoint every shard')
        check(p.poll() is None, f'kcl_worker of {stream} exited early with {p.poll()}')
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=20 * SCALE)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = 'killed'
        check(rc == 0, f'kcl_worker of {stream} exited with {rc}')
        err.seek(0)
        errtext = err.read()
        check('failed' not in errtext, f'kcl_worker of {stream} reported errors:\n{errtext[-2000:]}')
        out.seek(0)
        seen = set()
        for line in out.read().split(b'\n'):
            if not line:
                continue
            parts = line.split(b' ', 2)
            r = by_seq.get(parts[1].decode()) if len(parts) == 3 else None
            if r is None or r.stream != stream:
                fail(f'kcl_worker (limit {limit}) printed an unknown record: {line[:200]!r} (seed={SEED}, {stream})')
                continue
            prefix = f'{r.shard} {r.seq} {r.key} '.encode()
            rest = line[len(prefix):]
            ok = line.startswith(prefix) and (rest == r.data or rest == b'\\x' + r.data.hex().encode())
            if not ok:
                fail(f'kcl_worker (limit {limit}): record printed wrong '
                     f'({len(line) - len(prefix)} bytes after the key; {line[:120]!r}): {r.where()}')
            elif r.seq not in seen:
                count('kcl_worker')
            seen.add(r.seq)
        missing = [r for (s, sh), recs in by_shard.items() if s == stream for r in recs if r.seq not in seen]
        check(not missing, f'kcl_worker of {stream}: {len(missing)} records never printed, e.g. '
                           f'{missing[0].where() if missing else ""}')
    return admin


# ---------------------------------------------------------------- delivery

def create_delivery(admin):
    global WORK
    WORK = st.workdir('roundtrip')
    size_mb = rng.choice([1, 2, 4])
    interval = rng.choice([1, 3, 60])
    log(f'delivery streams: buffer {size_mb} MB, interval {interval} s')
    common = dict(b=size_mb, i=interval)
    q(admin, "SELECT stream.create_delivery_stream('prop_raw', source_stream_name => 'prop_a', "
             "destination => %(d)s, format => 'raw', buffer_size_mb => %(b)s, buffer_interval_seconds => %(i)s, "
             "starting_position => 'TRIM_HORIZON')", dict(common, d=os.path.join(WORK, 'raw')))
    q(admin, "SELECT stream.create_delivery_stream('prop_rawgz', source_stream_name => 'prop_b', "
             "destination => %(d)s, format => 'raw', compression => 'gzip', buffer_size_mb => %(b)s, "
             "buffer_interval_seconds => %(i)s, starting_position => 'TRIM_HORIZON')",
      dict(common, d=os.path.join(WORK, 'rawgz')))
    q(admin, "SELECT stream.create_delivery_stream('prop_json', source_stream_name => 'prop_j', "
             "destination => %(d)s, buffer_size_mb => %(b)s, buffer_interval_seconds => %(i)s, "
             "starting_position => 'TRIM_HORIZON')", dict(common, d=os.path.join(WORK, 'json')))
    q(admin, 'CREATE TYPE public.prop_row AS (id bigint, s text, e text, f float8, doc jsonb)')
    q(admin, "SELECT stream.create_delivery_stream('prop_parquet', source_stream_name => 'prop_j', "
             "destination => %(d)s, format => 'parquet', schema => 'public.prop_row', compression => 'snappy', "
             "buffer_size_mb => %(b)s, buffer_interval_seconds => %(i)s, starting_position => 'TRIM_HORIZON')",
      dict(common, d=os.path.join(WORK, 'parquet')))
    q(admin, 'CREATE TABLE public.prop_sink (id bigint PRIMARY KEY, s text, e text, f float8, doc jsonb)')
    q(admin, "SELECT stream.create_delivery_stream('prop_table', source_stream_name => 'prop_j', "
             "destination_table => 'public.prop_sink', buffer_size_mb => %(b)s, buffer_interval_seconds => %(i)s, "
             "starting_position => 'TRIM_HORIZON')", common)


def check_files(admin, name, directory, by_shard_index, line_mode, gz):
    """Each batch's data files hold exactly its source records, in order."""
    batches = q(admin, 'SELECT m.batch_no, m.shard_indexes, m.from_seqs, m.to_seqs, m.files, m.records_failed '
                       'FROM stream.delivery_manifest m JOIN stream.delivery_streams d USING (delivery_stream_id) '
                       'WHERE d.delivery_stream_name = %s ORDER BY m.batch_no', (name,))
    delivered = {}
    nfiles = 0
    for batch_no, shards, froms, tos, files, failed in batches:
        expected = []
        for sh, lo, hi in zip(shards, froms, tos):
            for r in by_shard_index.get(sh, []):
                if lo <= r.iseq < hi:
                    expected.append(r)
                    delivered[r.seq] = delivered.get(r.seq, 0) + 1
        check(failed == 0, f'{name}: batch {batch_no} has {failed} failed records')
        content = b''
        for f in files:
            if f['kind'] != 'data':
                fail(f'{name}: batch {batch_no} wrote a {f["kind"]} file {f["path"]}')
                continue
            with open(os.path.join(directory, f['path']), 'rb') as fh:
                b = fh.read()
            content += gzip.decompress(b) if gz else b
            nfiles += 1
        pos = 0
        for r in expected:
            want = r.data + (b'\n' if line_mode and not r.data.endswith(b'\n') else b'')
            got = content[pos:pos + len(want)]
            if got != want:
                fail(f'{name}: batch {batch_no} at byte {pos} of its files: {len(got)} bytes differ from the record '
                     f'(first difference at byte {first_difference(got, want)}): {r.where()}')
                break
            pos += len(want)
            count(name)
        else:
            check(pos == len(content), f'{name}: batch {batch_no} files hold {len(content) - pos} bytes more than '
                                       f'its {len(expected)} records (seed={SEED})')
    total = sum(len(v) for v in by_shard_index.values())
    dup = [s for s, n in delivered.items() if n > 1]
    check(len(delivered) == total and not dup,
          f'{name}: {len(delivered)} of {total} records in the manifest, {len(dup)} more than once (seed={SEED})')
    return nfiles


def check_json_rows(name, rows, recs):
    """rows: id -> (s, e, f, doc) as read from a table or by DuckDB."""
    check(len(rows) == len(recs), f'{name}: {len(rows)} rows for {len(recs)} records (seed={SEED})')
    for r in recs:
        got = rows.get(r.doc['id'])
        want = (r.doc['s'], r.doc['e'], r.doc['f'], r.doc['doc'])
        if got is None:
            fail(f'{name}: no row for {r.where()}')
        elif got != want:
            what = [c for c, a, b in zip(('s', 'e', 'f', 'doc'), got, want) if a != b]
            fail(f'{name}: row differs in {what} (s: {len(got[0] or "")} chars, expected {len(want[0])}): {r.where()}')
        else:
            count(name)


def check_delivery(admin, by_shard):
    for name in ('prop_raw', 'prop_rawgz', 'prop_json', 'prop_parquet', 'prop_table'):
        check(q1(admin, 'SELECT stream.flush_delivery_stream(%s, %s)', (name, int(90 * SCALE))) is True, f'flush {name}')
    by_index = {}
    for stream in STREAMS:
        by_index[stream] = {}
    for (stream, sh), recs in by_shard.items():
        by_index[stream][int(sh.split('-')[1])] = recs
    nf = check_files(admin, 'prop_raw', os.path.join(WORK, 'raw'), by_index['prop_a'], False, False)
    nf += check_files(admin, 'prop_rawgz', os.path.join(WORK, 'rawgz'), by_index['prop_b'], False, True)
    nf += check_files(admin, 'prop_json', os.path.join(WORK, 'json'), by_index[JSON_STREAM], True, False)
    jrecs = [r for recs in by_index[JSON_STREAM].values() for r in recs]
    rows = {i: (s, e, f, doc) for i, s, e, f, doc in q(admin, 'SELECT id, s, e, f, doc FROM public.prop_sink')}
    check_json_rows('prop_table', rows, jrecs)
    pq = st.delivered_files(os.path.join(WORK, 'parquet'), '**/*.parquet')
    nf += len(pq)
    # strings as base64 of their UTF-8 bytes: the JSON output of the node API drops a leading U+FEFF
    out = st.duckdb("SELECT id::VARCHAR AS id, to_base64(encode(s)) AS s, to_base64(encode(e)) AS e, f, "
                    "to_base64(encode(doc::VARCHAR)) AS doc FROM read_parquet('%s/**/*.parquet')"
                    % os.path.join(WORK, 'parquet'))

    def text(b64):
        return None if b64 is None else base64.b64decode(b64).decode()
    rows = {int(x['id']): (text(x['s']), text(x['e']), x['f'], json.loads(text(x['doc'])) if x['doc'] is not None else None)
            for x in out}
    check_json_rows('prop_parquet', rows, jrecs)
    return nf


# ---------------------------------------------------------------- main

def main():
    log(f'seed {SEED} (STREAM_PROP_SEED={SEED} to repeat), {NRECORDS} records (STREAM_PROP_RECORDS)')
    admin = st.create_db(extension=True)
    for s, n in STREAMS.items():
        q(admin, 'SELECT stream.create_stream(%s, %s)', (s, n))
    ranges = {}
    for s in STREAMS:
        ranges[s] = [(st.shard_id(i), int(lo), int(hi)) for i, lo, hi in q(
            admin, 'SELECT sh.shard_index, sh.starting_hash_key, sh.ending_hash_key FROM stream.shards sh '
                   'JOIN stream.streams x USING (stream_id) WHERE x.stream_name = %s ORDER BY 1', (s,))]
    create_delivery(admin)

    ops = generate()
    recs = [r for _, rs, _ in ops for r in rs]
    nbytes = sum(len(r.data) + len(r.key.encode()) for r in recs)
    sizes = [len(r.data) for r in recs]
    log(f'{len(recs)} records, {nbytes / MiB:.1f} MiB in {len(ops)} puts; data sizes: '
        f'0: {sizes.count(0)}, 125-129: {sum(125 <= x <= 129 for x in sizes)}, '
        f'1990-2110: {sum(1990 <= x <= 2110 for x in sizes)}, 8180-8210: {sum(8180 <= x <= 8210 for x in sizes)}, '
        f'65520-65560: {sum(65520 <= x <= 65560 for x in sizes)}, near 1 MiB: {sum(x > RECORD_MAX - 1100 for x in sizes)}; '
        f'keys of 256 chars: {sum(len(r.key) == 256 for r in recs)}, explicit hash keys: {sum(r.ehk is not None for r in recs)}')

    # stream.hash_key agrees with MD5 of the UTF-8 key
    keys = [r.key for r in recs]
    for k, h in zip(keys, [int(x[0]) for x in q(admin, 'SELECT stream.hash_key(k) FROM unnest(%s::text[]) '
                                                    'WITH ORDINALITY u(k, o) ORDER BY o', (keys,))]):
        if int.from_bytes(hashlib.md5(k.encode()).digest(), 'big') != h:
            fail(f'stream.hash_key({k!r}) = {h} is not MD5 of its UTF-8 bytes (seed={SEED})')
            break

    t = time.monotonic()
    put_all(st.connect(), ops, ranges)
    log(f'put: {time.monotonic() - t:.1f} s')
    by_shard = {}
    for r in recs:
        if r.seq is not None:
            by_shard.setdefault((r.stream, r.shard), []).append(r)
    by_seq = {r.seq: r for r in recs if r.seq is not None}
    for (s, sh), rs in by_shard.items():
        for r, (iseq,) in zip(rs, q(admin, 'SELECT (stream_internal._sequence_parts(x)).seq FROM unnest(%s::text[]) '
                                           'WITH ORDINALITY u(x, o) ORDER BY o', ([r.seq for r in rs],))):
            r.iseq = iseq

    procs = start_kcl_workers(admin)

    readers = []
    for s in STREAMS:
        q(admin, "SELECT stream.register_stream_consumer(%s, 'prop_consumer')", (s,))
        q(admin, "SELECT stream.register_application(%s, %s)", (s + '_app', s))
        got = q(admin, "SELECT shard_id FROM stream.acquire_leases(%s, 'prop-worker', '10 minutes')", (s + '_app',))
        check(len(got) == STREAMS[s], f'acquire_leases of {s}: {got}')
        for i in range(STREAMS[s]):
            sh = st.shard_id(i)
            exp = by_shard.get((s, sh), [])
            readers.append(GetRecords('get_records', s, sh, exp))
            if exp:
                k = rng.randrange(len(exp))
                readers.append(GetRecords('get_records@seq', s, sh, exp, start=k, after=k > 0 and rng.random() < 0.5))
            readers.append(ReadShard('read_shard', s, sh, exp))
            readers.append(Subscribe('subscribe_to_shard', s, sh, exp, 'prop_consumer'))
            readers.append(Lease('lease_iterator', s, sh, exp, s + '_app', 'prop-worker'))
    t = time.monotonic()
    steps = run_readers(readers)
    log(f'one session: {steps} interleaved reads by {len(readers)} readers in {time.monotonic() - t:.1f} s')

    admin = alive(admin)
    t = time.monotonic()
    admin = finish_kcl_workers(admin, procs, by_shard, by_seq)
    log(f'kcl_worker: {time.monotonic() - t:.1f} s more')
    admin = alive(admin)
    t = time.monotonic()
    nfiles = check_delivery(admin, by_shard)
    log(f'delivery: {nfiles} files checked in {time.monotonic() - t:.1f} s')

    log(f'figures: seed {SEED}, {len(recs)} records ({sum(r.stream in BYTE_STREAMS for r in recs)} bytes, '
        f'{sum(r.stream == JSON_STREAM for r in recs)} JSON), {nbytes / MiB:.1f} MiB')
    log('records verified per path: ' + ', '.join(f'{k} {v}' for k, v in sorted(counts.items())))
    admin.close()


def cleanup():
    st.drop_db(on_error=st.warn)
    if WORK:
        subprocess.run(['rm', '-rf', WORK, TMP])


st.main_wrapper(main, cleanup)
