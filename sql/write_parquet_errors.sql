--
-- write_parquet_errors: stream.write_parquet refuses what it cannot write
-- before it writes anything.  (What it writes: test/scripts/50_parquet.sh.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/try.psql

-- write_parquet: a file name the file system cannot take is refused up front
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 AS a', '/tmp/' || repeat('f', 256)));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 AS a', '/tmp/' || repeat('d', 300) || '/x.parquet'));
