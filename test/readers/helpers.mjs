// Shared helpers of the Parquet tests: run SQL through psql, read files with
// DuckDB and hyparquet (never with our own code).
import { execFileSync } from 'node:child_process';
import { DuckDBInstance } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

export const DB = process.env.PQ_TEST_DB;
export const DIR = process.env.PQ_TEST_DIR;
if (!DB || !DIR) throw new Error('run through test/scripts/50_parquet.sh (PQ_TEST_DB, PQ_TEST_DIR)');

export const INT32_MAX = 2147483647;
export const INT64_MAX = 9223372036854775807n;

const PSQL = ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'];

export function sql(query, { db = DB, role } = {}) {
  // the statement goes through stdin: it may be larger than a command line
  const input = (role ? `SET ROLE ${role};\n` : '') + query;
  return execFileSync('psql', [...PSQL, '-d', db], { input, encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'pipe'] })
    .replace(/\n$/, '');
}

export function sqlFile(path) {
  execFileSync('psql', [...PSQL, '-d', DB, '-f', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Rows of a query as objects (through json_agg).
export function sqlRows(query) {
  return JSON.parse(sql(`SELECT coalesce(json_agg(x), '[]') FROM (${query}) x`));
}

// The error text of a failing statement (null if it succeeded).
export function sqlError(query, opts) {
  try {
    sql(query, opts);
    return null;
  } catch (e) {
    return String(e.stderr || e.message);
  }
}

export const lit = s => `'${String(s).replaceAll("'", "''")}'`;
const dollar = s => {
  if (s.includes('$q$')) throw new Error('query contains $q$');
  return `$q$${s}$q$`;
};

export function writeParquet(query, path, codec) {
  const c = codec === undefined ? '' : `, ${lit(codec)}`;
  return Number(sql(`SELECT stream.write_parquet(${dollar(query)}, ${lit(path)}${c})`));
}

export function writeParquetWith(query, path, { codec = 'snappy', rowGroupBytes = null, pageBytes = null,
  dictionary = null, required = null } = {}) {
  const req = required ? `ARRAY[${required.map(lit).join(',')}]` : 'NULL';
  return Number(sql(`SELECT stream_test.write_parquet_with(${dollar(query)}, ${lit(path)}, ${lit(codec)},
    ${rowGroupBytes ?? 'NULL'}, ${pageBytes ?? 'NULL'}, ${dictionary ?? 'NULL'}, ${req})`));
}

let duckCon;
export async function duck(query) {
  if (!duckCon) {
    const inst = await DuckDBInstance.create(':memory:');
    duckCon = await inst.connect();
    await duckCon.run('SET threads = 1');
  }
  const reader = await duckCon.runAndReadAll(query);
  return reader.getRowObjectsJson();
}

// hyparquet with raw dates (days) and timestamps (BigInt microseconds).
export async function hyparquetRows(path, options = {}) {
  const file = await asyncBufferFromFile(path);
  return parquetReadObjects({
    file, compressors, utf8: false,
    parsers: { dateFromDays: d => d, timestampFromMicroseconds: us => us },
    ...options,
  });
}

export async function hyparquetMetadata(path) {
  return parquetMetadataAsync(await asyncBufferFromFile(path));
}
