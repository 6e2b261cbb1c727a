// Run one SQL query in an in-memory DuckDB and print its rows as JSON.
// An independent reader of the files delivery streams write (never our own code).
//   node test/readers/duckdb_query.mjs "SELECT count(*) AS n FROM read_parquet('/x/**/*.parquet')"
import { DuckDBInstance } from '@duckdb/node-api';

const sql = process.argv[2];
const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
const conn = await instance.connect();
const reader = await conn.runAndReadAll(sql);
process.stdout.write(JSON.stringify(reader.getRowObjectsJson()) + '\n');
