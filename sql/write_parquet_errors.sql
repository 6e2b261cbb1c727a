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

-- bad arguments and queries; the file is never made, not even when the
-- query fails while it is written (in the data directory: no shared path)
SELECT current_setting('data_directory') || '/wp_errors.parquet' AS wp_path \gset
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L, %L)', 'SELECT 1 AS a', :'wp_path', 'lz4'));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L, NULL)', 'SELECT 1 AS a', :'wp_path'));
SELECT pg_temp.try(format('SELECT stream.write_parquet(NULL, %L)', :'wp_path'));
SELECT stream.write_parquet('SELECT 1 AS a', NULL);
SELECT stream.write_parquet('SELECT 1 AS a', 'relative.parquet');
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'CREATE TABLE wp_x (a int)', :'wp_path'));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 AS a; SELECT 2', :'wp_path'));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT', :'wp_path'));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 / (3 - i) AS a FROM generate_series(1, 5) i', :'wp_path'));
SELECT count(*) AS files_left FROM pg_ls_dir(current_setting('data_directory')) f WHERE f LIKE '%wp_errors%';
SELECT to_regclass('wp_x') IS NULL AS no_table_made;
