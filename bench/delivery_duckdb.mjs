// DuckDB side of bench/delivery.sh: JSON lines -> Parquet (snappy, zstd) and -> CSV on one
// thread, reading the file each time (read_json with the schema's columns), best of 2.
// usage: node bench/delivery_duckdb.mjs <jsonl> <outdir> <columns-json>   prints JSON lines
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';

const [jsonl, outdir, columns] = process.argv.slice(2);
const cols = Object.entries(JSON.parse(columns)).map(([k, v]) => `'${k}': '${v}'`).join(', ');
const inst = await DuckDBInstance.create(':memory:');
const con = await inst.connect();
await con.run('SET threads = 1');
const src = `SELECT * FROM read_json('${jsonl}', format = 'newline_delimited', columns = {${cols}})`;
for (const [label, ext, opts] of [['parquet snappy', 'parquet', 'FORMAT parquet, COMPRESSION snappy'],
                                  ['parquet zstd', 'parquet', 'FORMAT parquet, COMPRESSION zstd'],
                                  ['csv', 'csv', 'FORMAT csv, HEADER false']]) {
  const file = `${outdir}/duckdb_${label.replace(' ', '_')}.${ext}`;
  let best = Infinity;
  for (let i = 0; i < 2; i++) {
    fs.rmSync(file, { force: true });
    const t0 = process.hrtime.bigint();
    await con.run(`COPY (${src}) TO '${file}' (${opts})`);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(JSON.stringify({ label, seconds: best, bytes: fs.statSync(file).size }));
}
