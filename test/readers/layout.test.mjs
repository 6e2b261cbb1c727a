// Row groups, pages, dictionary and PLAIN columns, statistics per row group,
// large values, REQUIRED columns, empty results, errors, privileges, atomic
// files, and the whole-file compression used by JSON/CSV deliveries.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { compressors } from 'hyparquet-compressors';
import { snappyUncompress } from 'hyparquet';
import {
  DIR, sql, sqlRows, sqlError, duck, lit, hyparquetRows, hyparquetMetadata, writeParquet, writeParquetWith,
} from './helpers.mjs';

const N = 60000;

before(() => {
  sql(`DROP TABLE IF EXISTS pq_big;
       CREATE TABLE pq_big AS
       SELECT g AS id,
              'group ' || (g % 20) AS grp,
              'row-' || g || '-' || repeat('x', 40) AS uniq,
              CASE WHEN g % 3 = 0 THEN NULL ELSE g * 0.25 END::float8 AS val,
              timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS ts,
              g % 2 = 0 AS flag
         FROM generate_series(1, ${N}) g`);
});

const pgBig = () => sqlRows(`SELECT id, grp, uniq, val, (extract(epoch FROM ts) * 1000000)::bigint::text AS ts, flag
                               FROM pq_big ORDER BY id`);

async function checkBig(file, rows) {
  const got = await duck(`SELECT id, grp, uniq, val, epoch_us(ts)::VARCHAR AS ts, flag FROM read_parquet(${lit(file)}) ORDER BY id`);
  assert.equal(got.length, rows.length);
  for (let i = 0; i < rows.length; i++) {
    const e = rows[i], g = got[i];
    assert.deepEqual([g.id, g.grp, g.uniq, g.val, g.ts, g.flag], [e.id, e.grp, e.uniq, e.val, e.ts, e.flag], `DuckDB row ${e.id}`);
  }
  const hy = await hyparquetRows(file);
  assert.equal(hy.length, rows.length);
  for (let i = 0; i < rows.length; i++) {
    const e = rows[i], h = hy[i];
    assert.deepEqual([h.id, h.grp, h.uniq, h.val ?? null, String(h.ts), h.flag],
      [e.id, e.grp, e.uniq, e.val, e.ts, e.flag], `hyparquet row ${e.id}`);
  }
}

test('several row groups and pages, statistics per row group', async () => {
  const file = path.join(DIR, 'big_rg.parquet');
  const rows = pgBig();
  assert.equal(writeParquetWith('SELECT * FROM pq_big ORDER BY id', file,
    { codec: 'zstd', rowGroupBytes: 1 << 20, pageBytes: 32 << 10 }), N);
  await checkBig(file, rows);

  const md = await hyparquetMetadata(file);
  assert.ok(md.row_groups.length >= 3, `row groups: ${md.row_groups.length}`);
  assert.equal(md.row_groups.reduce((s, rg) => s + Number(rg.num_rows), 0), N);
  let start = 0;
  for (const rg of md.row_groups) {
    const n = Number(rg.num_rows);
    const slice = rows.slice(start, start + n);
    start += n;
    const col = name => rg.columns.find(c => c.meta_data.path_in_schema[0] === name).meta_data;
    const id = col('id');
    assert.equal(id.num_values, BigInt(n));
    assert.equal(id.statistics.min_value, slice[0].id);
    assert.equal(id.statistics.max_value, slice[n - 1].id);
    assert.equal(id.statistics.null_count, 0n);
    const val = col('val');
    assert.equal(val.statistics.null_count, BigInt(slice.filter(r => r.val === null).length));
    const nonNull = slice.filter(r => r.val !== null).map(r => r.val);
    assert.equal(val.statistics.min_value, Math.min(...nonNull));
    assert.equal(val.statistics.max_value, Math.max(...nonNull));
    const grps = slice.map(r => r.grp).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.equal(col('grp').statistics.min_value, grps[0]);
    assert.equal(col('grp').statistics.max_value, grps[grps.length - 1]);
    // pages of about 32 kB: several data pages per chunk
    const pages = col('uniq').encoding_stats.filter(s => s.page_type === 'DATA_PAGE')
      .reduce((s, e) => s + e.count, 0);
    assert.ok(pages > 1, `data pages in a chunk: ${pages}`);
    // offsets the readers rely on
    assert.ok(id.data_page_offset >= 4n);
    assert.equal(rg.file_offset, rg.columns[0].file_offset);
  }
  // DuckDB agrees on the layout and prunes with the statistics without losing rows
  const dm = await duck(`SELECT count(DISTINCT row_group_id) AS rgs, sum(num_values) AS vals
                           FROM parquet_metadata(${lit(file)}) WHERE path_in_schema = 'id'`);
  assert.equal(Number(dm[0].rgs), md.row_groups.length);
  assert.equal(dm[0].vals, String(N));
  const c = await duck(`SELECT count(*) AS c FROM read_parquet(${lit(file)}) WHERE id BETWEEN 30000 AND 30010`);
  assert.equal(c[0].c, '11');
});

test('dictionary encoding, fallback to PLAIN, and PLAIN only', async () => {
  const file = path.join(DIR, 'big_dict.parquet');
  const rows = pgBig();
  assert.equal(writeParquet('SELECT * FROM pq_big ORDER BY id', file, 'snappy'), N);
  await checkBig(file, rows);
  const md = await hyparquetMetadata(file);
  assert.equal(md.row_groups.length, 1);
  const col = name => md.row_groups[0].columns.find(c => c.meta_data.path_in_schema[0] === name).meta_data;
  // 20 distinct values: dictionary only
  assert.ok(col('grp').encodings.includes('RLE_DICTIONARY'));
  assert.ok(col('grp').dictionary_page_offset > 0n);
  assert.ok(col('grp').encoding_stats.every(s => s.page_type !== 'DATA_PAGE' || s.encoding === 'RLE_DICTIONARY'));
  // 60000 distinct 50-byte strings pass the 1 MB dictionary limit: dictionary pages, then PLAIN
  const uniq = col('uniq');
  assert.ok(uniq.encoding_stats.some(s => s.page_type === 'DATA_PAGE' && s.encoding === 'RLE_DICTIONARY'));
  assert.ok(uniq.encoding_stats.some(s => s.page_type === 'DATA_PAGE' && s.encoding === 'PLAIN'));
  assert.ok(uniq.data_page_offset > uniq.dictionary_page_offset);
  // booleans are never dictionary-encoded
  assert.equal(col('flag').dictionary_page_offset, undefined);

  const plain = path.join(DIR, 'big_plain.parquet');
  writeParquetWith('SELECT * FROM pq_big ORDER BY id', plain, { codec: 'gzip', dictionary: false });
  await checkBig(plain, rows);
  const pm = await hyparquetMetadata(plain);
  for (const c of pm.row_groups[0].columns) {
    assert.equal(c.meta_data.dictionary_page_offset, undefined, c.meta_data.path_in_schema[0]);
    assert.ok(!c.meta_data.encodings.includes('RLE_DICTIONARY'));
  }
});

test('repeated jsonb values: dictionary entries reused, across row groups and the PLAIN fallback', async () => {
  // few distinct documents (printed once per chunk), then distinct ones (dictionary gives up)
  const q = `SELECT id, CASE WHEN id <= 40000 THEN jsonb_build_object('k', id % 7, 'tag', 'v' || (id % 3), 'n', NULL)
                            ELSE jsonb_build_object('id', id, 'pad', repeat('y', id % 50)) END AS j
               FROM pq_big ORDER BY id`;
  const want = sqlRows(`SELECT id, j::text AS j FROM (${q}) s`);
  for (const [name, opts] of [['json_rg', { codec: 'zstd', rowGroupBytes: 200000, pageBytes: 8192 }],
                              ['json_one', { codec: 'none' }]]) {
    const file = path.join(DIR, `${name}.parquet`);
    assert.equal(writeParquetWith(q, file, opts), N);
    const got = await duck(`SELECT id::BIGINT AS id, j::VARCHAR AS j FROM read_parquet(${lit(file)}) ORDER BY id`);
    assert.equal(got.length, N);
    for (let i = 0; i < N; i += 997)
      assert.deepEqual({ id: Number(got[i].id), j: got[i].j }, want[i], name);
    assert.deepEqual(got.map(r => r.j), want.map(r => r.j), name);
  }
});

test('only SELECT, TABLE, VALUES and WITH queries are written', () => {
  const f = path.join(DIR, 'kinds.parquet');
  for (const q of ['INSERT INTO pq_big (id) VALUES (-1) RETURNING id',
                   'WITH d AS (DELETE FROM pq_big WHERE id = 1 RETURNING id) SELECT * FROM d',
                   'SELECT 1 INTO pq_into', 'SELECT 1; SELECT 2', '']) {
    assert.match(sqlError(`SELECT stream.write_parquet(${lit(q)}, ${lit(f)})`) ?? '',
      /needs a single query that returns rows/, q);
    assert.ok(!fs.existsSync(f));
  }
  assert.equal(sql('SELECT count(*) FROM pq_big'), String(N));
  assert.equal(writeParquet('TABLE pq_big', f), N);
  assert.equal(writeParquet('VALUES (1), (2)', path.join(DIR, 'kinds2.parquet')), 2);
  assert.equal(writeParquet('WITH x AS (SELECT 1 AS a) SELECT * FROM x', path.join(DIR, 'kinds3.parquet')), 1);
  // rows written earlier in the same transaction are seen
  assert.equal(sql(`BEGIN; CREATE TEMP TABLE pq_tx (a int); INSERT INTO pq_tx VALUES (1), (2), (3);
                    SELECT stream.write_parquet('TABLE pq_tx', ${lit(path.join(DIR, 'kinds4.parquet'))}); COMMIT`)
    .split('\n').filter(l => /^\d+$/.test(l)).pop(), '3');
});

test('large values: 1 MB texts and bytea, truncated statistics', async () => {
  const file = path.join(DIR, 'large.parquet');
  const q = `SELECT g AS id, repeat(chr(233) || 'x', 350000 + g) AS t, decode(repeat('ff', 1048576), 'hex') AS b
               FROM generate_series(1, 6) g
             UNION ALL SELECT 7, 'small', '\\x00' ORDER BY id`;
  assert.equal(writeParquetWith(q, file, { codec: 'snappy', pageBytes: 1 << 20 }), 7);
  const want = sqlRows(`SELECT id, md5(t) AS t, octet_length(t) AS tl, md5(b) AS b FROM (${q}) x`);
  const got = await duck(`SELECT id, md5(t) AS t, strlen(t) AS tl, md5(b) AS b FROM read_parquet(${lit(file)}) ORDER BY id`);
  assert.deepEqual(got.map(r => [r.id, r.t, Number(r.tl), r.b]), want.map(r => [r.id, r.t, r.tl, r.b]));
  const hy = await hyparquetRows(file);
  const crypto = await import('node:crypto');
  const md5 = x => crypto.createHash('md5').update(x).digest('hex');
  assert.deepEqual(hy.map(r => [r.id, md5(Buffer.from(r.t, 'utf8')), md5(Buffer.from(r.b))]),
    want.map(r => [r.id, r.t, r.b]));
  const st = await duck(`SELECT path_in_schema AS c, stats_min_value AS min, stats_max_value AS max, min_is_exact, max_is_exact
                           FROM parquet_metadata(${lit(file)})`);
  const t = st.find(r => r.c === 't');
  // 'small' < 'éx…' in byte order; the largest value is cut to a short upper bound:
  // a prefix ending on a character with its last ASCII byte incremented ('x' -> 'y')
  assert.equal(t.min, 'small');
  assert.equal(t.min_is_exact, true);
  assert.ok(Buffer.byteLength(t.max) <= 64, t.max);
  assert.match(t.max, /^(éx)+éy$/);
  assert.equal(t.max_is_exact, false);
  const b = st.find(r => r.c === 'b');
  // 0xff… has no ASCII byte to bump: no max at all; the min is the one-byte \x00
  assert.equal(b.max, null);
  assert.equal(b.min_is_exact, true);
});

test('REQUIRED columns for NOT NULL attributes', async () => {
  const file = path.join(DIR, 'required.parquet');
  writeParquetWith('SELECT id, grp, val FROM pq_big WHERE id <= 1000 ORDER BY id', file, { required: ['id', 'grp'] });
  const sch = await duck(`SELECT name, repetition_type FROM parquet_schema(${lit(file)}) WHERE name <> 'schema'`);
  assert.deepEqual(sch.map(r => [r.name, r.repetition_type]),
    [['id', 'REQUIRED'], ['grp', 'REQUIRED'], ['val', 'OPTIONAL']]);
  const got = await duck(`SELECT sum(id) AS s, count(val) AS v, count(DISTINCT grp) AS g FROM read_parquet(${lit(file)})`);
  assert.deepEqual(got[0], { s: '500500', v: '667', g: '20' });
  const hy = await hyparquetRows(file);
  assert.equal(hy.length, 1000);
  assert.equal(hy[999].id, 1000);
  assert.equal(hy[2].val ?? null, null);

  const bad = path.join(DIR, 'required_null.parquet');
  const err = sqlError(`SELECT stream_test.write_parquet_with('SELECT NULL::int AS id', ${lit(bad)}, 'none', NULL, NULL, NULL, ARRAY['id'])`);
  assert.match(err, /null value in column "id" of a REQUIRED Parquet column/);
  assert.ok(!fs.existsSync(bad));
});

test('empty result and one row', async () => {
  const file = path.join(DIR, 'empty.parquet');
  assert.equal(writeParquet('SELECT * FROM pq_big WHERE false', file, 'zstd'), 0);
  const got = await duck(`SELECT count(*) AS c FROM read_parquet(${lit(file)})`);
  assert.equal(got[0].c, '0');
  const cols = await duck(`DESCRIBE SELECT * FROM read_parquet(${lit(file)})`);
  assert.deepEqual(cols.map(c => c.column_name), ['id', 'grp', 'uniq', 'val', 'ts', 'flag']);
  assert.equal((await hyparquetRows(file)).length, 0);

  const one = path.join(DIR, 'one.parquet');
  assert.equal(writeParquet(`SELECT 1 AS a, NULL::text AS b`, one), 1);
  assert.deepEqual(await duck(`SELECT * FROM read_parquet(${lit(one)})`), [{ a: 1, b: null }]);
  assert.deepEqual((await hyparquetRows(one)).map(r => [r.a, r.b ?? null]), [[1, null]]);
});

test('values that cannot be written give clear errors and no file', () => {
  const f = path.join(DIR, 'bad.parquet');
  const cases = [
    [`SELECT 'NaN'::numeric AS n`, /numeric value NaN cannot be written to Parquet column "n"/],
    [`SELECT 'Infinity'::numeric AS n`, /numeric value Infinity cannot be written/],
    [`SELECT 1e29::numeric AS n`, /does not fit Parquet column "n" of type DECIMAL\(38,9\)/],
    [`SELECT 1000::numeric(6,2) / 1 AS n`, null],
    [`SELECT 12345.678::numeric(8,3) AS n UNION ALL SELECT 'NaN'`, /NaN/],
    [`SELECT timestamp '294276-12-31 23:59:59' AS ts`, /timestamp out of range for Parquet column "ts"/],
  ];
  for (const [q, re] of cases) {
    const err = sqlError(`SELECT stream.write_parquet(${lit(q)}, ${lit(f)})`);
    if (re === null) {
      assert.equal(err, null, q);
      fs.rmSync(f);
    } else {
      assert.match(err ?? '', re, q);
      assert.ok(!fs.existsSync(f), `no file after: ${q}`);
    }
  }
  assert.match(sqlError(`SELECT stream.write_parquet('SELECT 1', ${lit(f)}, 'lz4')`),
    /InvalidArgumentException: Unknown compression "lz4"/);
  assert.match(sqlError(`SELECT stream.write_parquet('SELECT 1', 'relative.parquet')`),
    /InvalidArgumentException: relative path/);
  assert.match(sqlError(`SELECT stream.write_parquet('CREATE TABLE pq_nope ()', ${lit(f)})`),
    /needs a single query that returns rows/);
  assert.match(sqlError(`SELECT stream.write_parquet(NULL, ${lit(f)})`), /query must not be null/);
  assert.match(sqlError(`SELECT stream.write_parquet('SELECT 1', ${lit(path.join(DIR, 'no/such/dir.parquet'))})`),
    /could not create file/);
  // numeric with a typmod rounds like a cast, half away from zero
  const ok = path.join(DIR, 'round.parquet');
  writeParquet(`SELECT 0.005::numeric AS a, -0.0000000005::numeric AS b`, ok);
  return duck(`SELECT a::VARCHAR AS a, b::VARCHAR AS b FROM read_parquet(${lit(ok)})`).then(r =>
    assert.deepEqual(r, [{ a: '0.005000000', b: '-0.000000001' }]));
});

test('privileges: superuser or pg_write_server_files, query runs as the caller', () => {
  const f = path.join(DIR, 'priv.parquet');
  sql(`DROP ROLE IF EXISTS pq_nobody; DROP ROLE IF EXISTS pq_writer;
       CREATE ROLE pq_nobody; CREATE ROLE pq_writer IN ROLE pg_write_server_files;
       GRANT USAGE ON SCHEMA stream TO pq_nobody, pq_writer;
       REVOKE ALL ON pq_big FROM PUBLIC`);
  assert.match(sqlError(`SELECT stream.write_parquet('SELECT 1', ${lit(f)})`, { role: 'pq_nobody' }),
    /AccessDeniedException: must be superuser or have privileges of the pg_write_server_files role/);
  assert.ok(!fs.existsSync(f));
  // allowed to write files, but the query still needs SELECT on the table
  assert.match(sqlError(`SELECT stream.write_parquet('SELECT * FROM pq_big', ${lit(f)})`, { role: 'pq_writer' }),
    /permission denied for table pq_big/);
  assert.ok(!fs.existsSync(f));
  assert.equal(sql(`SELECT stream.write_parquet('SELECT 42 AS x', ${lit(f)})`, { role: 'pq_writer' }), '1');
  assert.ok(fs.existsSync(f));
  // the test helpers are not for everyone
  assert.match(sqlError(`SELECT stream_test.compress('\\x00', 'gzip')`, { role: 'pq_nobody' }), /permission denied/);
});

test('atomic files: only complete files appear, failures leave the old file', async () => {
  const dir = path.join(DIR, 'atomic');
  fs.mkdirSync(dir, { mode: 0o777 });
  fs.chmodSync(dir, 0o777);
  const f = path.join(dir, 'data.parquet');
  assert.equal(writeParquet('SELECT id FROM pq_big WHERE id <= 10', f), 10);
  const before = fs.readFileSync(f);
  // fails after 50000 rows, with row groups already written to the temp file
  const err = sqlError(`SELECT stream_test.write_parquet_with('SELECT id, 1 / (50000 - id) AS x FROM pq_big ORDER BY id',
                          ${lit(f)}, 'none', 65536, NULL, NULL, NULL)`);
  assert.match(err, /division by zero/);
  assert.deepEqual(fs.readFileSync(f), before);
  assert.deepEqual(fs.readdirSync(dir), ['data.parquet']);
  // success replaces the file (like COPY TO) and leaves no temp file behind
  assert.equal(writeParquet('SELECT id FROM pq_big WHERE id <= 20', f), 20);
  assert.deepEqual(fs.readdirSync(dir), ['data.parquet']);
  const c = await duck(`SELECT count(*) AS c FROM read_parquet(${lit(f)})`);
  assert.equal(c[0].c, '20');
  // cancelled by statement_timeout: no partial file either
  const err2 = sqlError(`SET statement_timeout = '300ms';
    SELECT stream.write_parquet('SELECT a.id, b.id FROM pq_big a, pq_big b', ${lit(path.join(dir, 'slow.parquet'))})`);
  assert.match(err2, /statement timeout/);
  assert.deepEqual(fs.readdirSync(dir), ['data.parquet']);
});

// CRC-32C (Castagnoli), as the snappy framing format masks it.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82F63B78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32c(buf) {
  let c = 0xFFFFFFFF;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}
const masked = crc => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

// Snappy framing format (google/snappy framing_format.txt), decoded here from the spec.
function unframeSnappy(buf) {
  assert.deepEqual([...buf.subarray(0, 10)], [0xff, 6, 0, 0, ...Buffer.from('sNaPpY')], 'stream identifier');
  const out = [];
  let p = 10;
  while (p < buf.length) {
    const type = buf[p];
    const len = buf[p + 1] | (buf[p + 2] << 8) | (buf[p + 3] << 16);
    const chunk = buf.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    assert.ok(type === 0 || type === 1, `chunk type ${type}`);
    const crc = chunk.readUInt32LE(0);
    let data = chunk.subarray(4);
    if (type === 0) {
      let size = 0, shift = 0, i = 0, b;   // the block starts with its length as a varint
      do { b = data[i++]; size |= (b & 0x7f) << shift; shift += 7; } while (b & 0x80);
      const o = new Uint8Array(size);
      snappyUncompress(data, o);
      data = Buffer.from(o);
    }
    assert.ok(data.length <= 65536, 'at most 64 KiB per chunk');
    assert.equal(crc, masked(crc32c(data)), 'masked CRC-32C');
    out.push(data);
  }
  return Buffer.concat(out);
}

test('whole-file compression: gzip member, zstd frame, snappy framing format', () => {
  const texts = [
    '',
    'x',
    Array.from({ length: 20000 }, (_, i) => `{"n": ${i}, "s": "línea ${i % 97}"}\n`).join(''),
  ];
  const random = sql(`SELECT encode(string_agg(decode(md5(g::text), 'hex'), ''), 'hex') FROM generate_series(1, 10000) g`);
  const inputs = [...texts.map(t => Buffer.from(t)), Buffer.from(random, 'hex')];
  for (const input of inputs) {
    const comp = codec => Buffer.from(sql(`SELECT encode(stream_test.compress(decode(${lit(input.toString('hex'))}, 'hex'),
                                                 ${lit(codec)}), 'hex')`), 'hex');
    assert.deepEqual(comp('none'), input);
    const gz = comp('gzip');
    assert.deepEqual(gz.subarray(0, 2), Buffer.from([0x1f, 0x8b]));
    assert.deepEqual(zlib.gunzipSync(gz), input, 'gzip');
    const zst = comp('zstd');
    assert.deepEqual(zst.subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    if (input.length > 0) assert.deepEqual(Buffer.from(compressors.ZSTD(zst, input.length)), input, 'zstd');
    assert.deepEqual(unframeSnappy(comp('snappy')), input, 'snappy framing');
    if (input.length > 100000) assert.ok(comp('snappy').length < input.length * 0.6 || input === inputs[3]);
  }
});
