// Every PostgreSQL type write_parquet maps, with NULLs, extremes, empty and
// non-ASCII strings, in each codec; each file read back by DuckDB and by
// hyparquet and compared value by value with PostgreSQL's own values.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { DIR, INT32_MAX, INT64_MAX, sql, sqlFile, sqlRows, duck, lit, hyparquetRows, hyparquetMetadata, writeParquet } from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CODECS = ['none', 'snappy', 'gzip', 'zstd'];

// PostgreSQL's values in a form both readers can be brought to.
const PG_CANONICAL = `
  SELECT id, b::text AS b, i2::text AS i2, i4::text AS i4, i8::text AS i8, f4::text AS f4, f8::text AS f8,
         round(n, 9)::text AS n, n52::text AS n52, n184::text AS n184, n3010::text AS n3010, nbig::text AS nbig,
         t, vc::text AS vc, CASE WHEN bp IS NOT NULL THEN format('%s', bp) END AS bp, encode(bin, 'hex') AS bin,
         CASE WHEN isfinite(d) THEN (d - date '1970-01-01')::text ELSE d::text END AS d,
         CASE WHEN isfinite(ts) THEN (extract(epoch FROM ts) * 1000000)::bigint::text ELSE ts::text END AS ts,
         CASE WHEN isfinite(tstz) THEN (extract(epoch FROM tstz) * 1000000)::bigint::text ELSE tstz::text END AS tstz,
         u::text AS u, j::text AS j, jb::text AS jb, iv::text AS iv, arr::text AS arr, mood::text AS mood, nm::text AS nm
    FROM pq_alltypes ORDER BY id`;

const duckInf = (col, zero) =>
  `CASE WHEN isinf(${col}) THEN (CASE WHEN ${col} > ${zero} THEN 'infinity' ELSE '-infinity' END)`;
const duckCanonical = file => `
  SELECT id, b::VARCHAR AS b, i2::VARCHAR AS i2, i4::VARCHAR AS i4, i8::VARCHAR AS i8, f4, f8,
         n::VARCHAR AS n, n52::VARCHAR AS n52, n184::VARCHAR AS n184, n3010::VARCHAR AS n3010, nbig,
         t, vc, bp, lower(hex(bin)) AS bin,
         ${duckInf('d', "DATE '1970-01-01'")} ELSE (d - DATE '1970-01-01')::VARCHAR END AS d,
         ${duckInf('ts', "TIMESTAMP '1970-01-01'")} ELSE epoch_us(ts)::VARCHAR END AS ts,
         ${duckInf('tstz', "TIMESTAMPTZ '1970-01-01 00:00:00+00'")} ELSE epoch_us(tstz)::VARCHAR END AS tstz,
         u::VARCHAR AS u, j::VARCHAR AS j, jb::VARCHAR AS jb, iv, arr, mood, nm
    FROM read_parquet(${lit(file)}) ORDER BY id`;

const FLOATS = new Set(['f4', 'f8']);
const DECIMALS = new Set(['n', 'n52', 'n184', 'n3010']);

function pgFloat(text, col) {
  if (text === null) return null;
  const x = Number(text);        // 'NaN', 'Infinity', '-Infinity', '-0' parse too
  return col === 'f4' ? Math.fround(x) : x;
}

function sameFloat(actual, expected, what) {
  if (expected === null) return assert.equal(actual, null, what);
  const a = typeof actual === 'string' ? Number(actual) : actual;
  assert.ok(Object.is(a, expected), `${what}: got ${actual}, want ${expected}`);
}

let expected;
before(() => {
  sqlFile(path.join(HERE, 'fixtures.sql'));
  expected = sqlRows(PG_CANONICAL);
  assert.equal(expected.length, 3000);
  for (const e of expected) e.id = String(e.id);
});

test('schema: physical types and annotations', async () => {
  const file = path.join(DIR, 'schema.parquet');
  writeParquet('SELECT * FROM pq_alltypes', file);
  const rows = await duck(`SELECT name, type, repetition_type, converted_type, logical_type, type_length,
                                  precision, scale FROM parquet_schema(${lit(file)})`);
  const by = Object.fromEntries(rows.map(r => [r.name, r]));
  const want = {
    b: ['BOOLEAN', null, null], i2: ['INT32', 'INT_16', /IntType/], i4: ['INT32', 'INT_32', /IntType/],
    i8: ['INT64', 'INT_64', /IntType/], f4: ['FLOAT', null, null], f8: ['DOUBLE', null, null],
    n: ['FIXED_LEN_BYTE_ARRAY', 'DECIMAL', /DecimalType\(scale=9, precision=38\)/],
    n52: ['INT32', 'DECIMAL', /DecimalType\(scale=2, precision=5\)/],
    n184: ['INT64', 'DECIMAL', /DecimalType\(scale=4, precision=18\)/],
    n3010: ['FIXED_LEN_BYTE_ARRAY', 'DECIMAL', /DecimalType\(scale=10, precision=30\)/],
    nbig: ['BYTE_ARRAY', 'UTF8', /StringType/], t: ['BYTE_ARRAY', 'UTF8', /StringType/],
    vc: ['BYTE_ARRAY', 'UTF8', /StringType/], bp: ['BYTE_ARRAY', 'UTF8', /StringType/],
    bin: ['BYTE_ARRAY', null, null], d: ['INT32', 'DATE', /DateType/],
    ts: ['INT64', 'TIMESTAMP_MICROS', /isAdjustedToUTC=0.*MICROS=MicroSeconds/],
    tstz: ['INT64', 'TIMESTAMP_MICROS', /isAdjustedToUTC=1.*MICROS=MicroSeconds/],
    u: ['FIXED_LEN_BYTE_ARRAY', null, /UUIDType/], j: ['BYTE_ARRAY', 'JSON', /JsonType/],
    jb: ['BYTE_ARRAY', 'JSON', /JsonType/], iv: ['BYTE_ARRAY', 'UTF8', /StringType/],
    arr: ['BYTE_ARRAY', 'UTF8', /StringType/], mood: ['BYTE_ARRAY', 'UTF8', /StringType/],
    nm: ['BYTE_ARRAY', 'UTF8', /StringType/],
  };
  for (const [col, [type, conv, logical]] of Object.entries(want)) {
    const r = by[col];
    assert.ok(r, `column ${col} in the schema`);
    assert.equal(r.type, type, `${col} type`);
    assert.equal(r.repetition_type, 'OPTIONAL', `${col} repetition`);
    assert.equal(r.converted_type, conv, `${col} converted type`);
    if (logical) assert.match(r.logical_type, logical, `${col} logical type`);
    else assert.equal(r.logical_type, null, `${col} logical type`);
  }
  assert.equal(by.u.type_length, '16');
  assert.equal(by.n.type_length, '16');
  const meta = await duck(`SELECT num_rows, num_row_groups, created_by, format_version
                             FROM parquet_file_metadata(${lit(file)})`);
  assert.equal(meta[0].num_rows, '3000');
  assert.match(meta[0].created_by, /^stream version \d+\.\d+\.\d+ \(build .+\)$/);
  assert.equal(meta[0].format_version, '1');
  const duckTypes = await duck(`DESCRIBE SELECT * FROM read_parquet(${lit(file)})`);
  const dt = Object.fromEntries(duckTypes.map(r => [r.column_name, r.column_type]));
  assert.equal(dt.tstz, 'TIMESTAMP WITH TIME ZONE');
  assert.equal(dt.ts, 'TIMESTAMP');
  assert.equal(dt.u, 'UUID');
  assert.equal(dt.n, 'DECIMAL(38,9)');
  assert.equal(dt.i2, 'SMALLINT');
});

for (const codec of CODECS) {
  test(`every value of every type, codec ${codec}: DuckDB`, async () => {
    const file = path.join(DIR, `alltypes_${codec}.parquet`);
    assert.equal(writeParquet('SELECT * FROM pq_alltypes ORDER BY id', file, codec), 3000);
    const meta = await duck(`SELECT DISTINCT compression FROM parquet_metadata(${lit(file)})`);
    assert.deepEqual(meta.map(r => r.compression), [codec === 'none' ? 'UNCOMPRESSED' : codec.toUpperCase()]);

    const got = await duck(duckCanonical(file));
    assert.equal(got.length, expected.length);
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i], g = got[i];
      for (const col of Object.keys(e)) {
        const what = `row id=${e.id} column ${col}`;
        if (FLOATS.has(col)) sameFloat(g[col], pgFloat(e[col], col), what);
        else assert.equal(g[col] === null ? null : String(g[col]), e[col], what);
      }
    }
  });

  test(`every value of every type, codec ${codec}: hyparquet`, async () => {
    const file = path.join(DIR, `alltypes_${codec}.parquet`);
    const got = await hyparquetRows(file);
    assert.equal(got.length, expected.length);
    for (let i = 0; i < expected.length; i++) {
      const e = expected[i], g = got[i];
      for (const col of Object.keys(e)) {
        const what = `row id=${e.id} column ${col}`;
        const v = g[col];
        if (e[col] === null && !['j', 'jb'].includes(col)) {
          assert.ok(v === null || v === undefined, `${what}: got ${v}, want NULL`);
          continue;
        }
        if (FLOATS.has(col)) sameFloat(v, pgFloat(e[col], col), what);
        else if (DECIMALS.has(col)) {
          // hyparquet converts DECIMAL to a JS number
          const want = Number(e[col]);
          assert.ok(Math.abs(v - want) <= 1e-12 * Math.max(1, Math.abs(want)), `${what}: got ${v}, want ${want}`);
        } else if (col === 'bin') assert.equal(Buffer.from(v).toString('hex'), e[col], what);
        else if (col === 'd') {
          const s = v === INT32_MAX ? 'infinity' : v === -INT32_MAX ? '-infinity' : String(v);
          assert.equal(s, e[col], what);
        } else if (col === 'ts' || col === 'tstz') {
          const s = v === INT64_MAX ? 'infinity' : v === -INT64_MAX ? '-infinity' : String(v);
          assert.equal(s, e[col], what);
        } else if (col === 'j' || col === 'jb') {
          // JSON columns come back parsed; SQL NULL and JSON null both give null
          const want = e[col] === null ? null : JSON.parse(e[col]);
          assert.deepEqual(v ?? null, want, what);
        } else if (col === 'i8') assert.equal(String(v), e[col], what);
        else assert.equal(String(v), e[col], what);
      }
    }
  });
}

test('statistics: min, max and null count per column', async () => {
  const file = path.join(DIR, 'alltypes_zstd.parquet');
  const stats = await duck(`SELECT path_in_schema AS col, stats_min_value AS min, stats_max_value AS max,
                                   stats_null_count AS nulls, min_is_exact, max_is_exact
                              FROM parquet_metadata(${lit(file)})`);
  const s = Object.fromEntries(stats.map(r => [r.col, r]));
  const pg = sqlRows(`SELECT count(*) FILTER (WHERE i4 IS NULL) AS i4_nulls, min(i4)::text AS i4_min, max(i4)::text AS i4_max,
                             count(*) FILTER (WHERE i8 IS NULL) AS i8_nulls, min(i8)::text AS i8_min, max(i8)::text AS i8_max,
                             count(*) FILTER (WHERE t IS NULL) AS t_nulls,
                             min(t COLLATE "C") AS t_min, max(t COLLATE "C") AS t_max,
                             count(*) FILTER (WHERE b IS NULL) AS b_nulls,
                             count(*) FILTER (WHERE f8 IS NULL) AS f8_nulls,
                             min(n52)::text AS n52_min, max(n52)::text AS n52_max,
                             min(u::text) AS u_min, max(u::text) AS u_max
                        FROM pq_alltypes`)[0];
  assert.equal(s.i4.min, pg.i4_min);
  assert.equal(s.i4.max, pg.i4_max);
  assert.equal(s.i4.nulls, String(pg.i4_nulls));
  assert.equal(s.i8.min, pg.i8_min);
  assert.equal(s.i8.max, pg.i8_max);
  assert.equal(s.i8.nulls, String(pg.i8_nulls));
  assert.equal(s.t.min, pg.t_min);          // '' is the smallest string
  assert.equal(s.t.nulls, String(pg.t_nulls));
  assert.equal(s.t.max, pg.t_max);
  assert.equal(s.b.min, 'false');
  assert.equal(s.b.max, 'true');
  assert.equal(s.b.nulls, String(pg.b_nulls));
  assert.equal(s.f8.nulls, String(pg.f8_nulls));
  // NaN never becomes a bound; the infinities do (DuckDB hides infinite
  // float bounds, so read them with hyparquet)
  const md = await hyparquetMetadata(file);
  const cols = md.row_groups[0].columns.map(c => c.meta_data);
  const f8 = cols.find(c => c.path_in_schema[0] === 'f8').statistics;
  assert.equal(f8.min_value, -Infinity);
  assert.equal(f8.max_value, Infinity);
  assert.equal(f8.null_count, BigInt(pg.f8_nulls));
  assert.equal(s.n52.min, pg.n52_min);
  assert.equal(s.n52.max, pg.n52_max);
  assert.equal(s.u.min, pg.u_min);
  assert.equal(s.u.max, pg.u_max);
  assert.equal(s.d.min, '-infinity');
  assert.equal(s.d.max, 'infinity');
  for (const col of ['i4', 'i8', 't', 'u']) {
    assert.equal(s[col].min_is_exact, true, `${col} min exact`);
    assert.equal(s[col].max_is_exact, true, `${col} max exact`);
  }
  // column_orders: TYPE_ORDER for every column (readers only trust min_value/max_value then)
  const fm = await duck(`SELECT column_orders FROM parquet_file_metadata(${lit(file)})`);
  assert.match(String(fm[0].column_orders ?? ''), /TYPE_ORDER|TypeDefinedOrder|^$/);
  // and DuckDB uses the statistics to skip row groups, which must not lose rows
  const cnt = await duck(`SELECT count(*) AS c FROM read_parquet(${lit(file)}) WHERE i4 = 7919 * 100`);
  assert.equal(cnt[0].c, sql('SELECT count(*) FROM pq_alltypes WHERE i4 = 7919 * 100'));
});
