// DuckDB side of bench/parquet.sh: load the CSV exported by PostgreSQL into an
// in-memory table (not timed), then time COPY ... TO parquet on one thread.
// usage: node bench/parquet_duckdb.mjs <csv> <outdir> <codec>... ; prints JSON lines
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';

const [csv, outdir, ...codecs] = process.argv.slice(2);
const inst = await DuckDBInstance.create(':memory:');
const con = await inst.connect();
await con.run('SET threads = 1');
await con.run(`CREATE TABLE t AS SELECT * FROM read_csv('${csv}', header = true, columns = {
  'id': 'BIGINT', 'user_id': 'INTEGER', 'name': 'VARCHAR', 'ts': 'TIMESTAMPTZ', 'amount': 'DECIMAL(12,2)',
  'score': 'DOUBLE', 'flag': 'BOOLEAN', 'day': 'DATE', 'payload': 'JSON'})`);
const rows = Number((await con.runAndReadAll('SELECT count(*) AS n FROM t')).getRowObjectsJson()[0].n);
for (const codec of codecs) {
  const file = `${outdir}/duckdb_${codec}.parquet`;
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    fs.rmSync(file, { force: true });
    const t0 = process.hrtime.bigint();
    await con.run(`COPY t TO '${file}' (FORMAT parquet, COMPRESSION ${codec})`);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  console.log(JSON.stringify({ codec, rows, ms: best, bytes: fs.statSync(file).size }));
}
