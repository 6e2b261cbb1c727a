-- Test-only entry points into the stream library, kept out of the install
-- script so that a production install has none of them.  They point at C
-- symbols of $libdir/stream that the extension's own functions do not
-- expose with these arguments.  Load as superuser into a database that has
-- the extension (the tests that need them do: test/scripts/50_parquet.sh):
--     psql -d <db> -f test/sql/test_functions.sql
-- They live in a schema of their own, not in the extension's, so that
-- DROP EXTENSION and pg_dump of the extension are unaffected.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS stream_test;
GRANT USAGE ON SCHEMA stream_test TO PUBLIC;

-- stream.write_parquet with row group and page sizes, dictionary on/off and
-- columns written as REQUIRED (src/parquet/write_parquet.c).
CREATE OR REPLACE FUNCTION stream_test.write_parquet_with(query text, path text, compression text,
                                                          row_group_bytes bigint, page_bytes int,
                                                          dictionary boolean, required_columns text[])
    RETURNS bigint
    AS '$libdir/stream', 'stream_write_parquet' LANGUAGE C VOLATILE;

-- Whole-file compression as used for JSON and CSV deliveries (src/codec.c).
CREATE OR REPLACE FUNCTION stream_test.compress(data bytea, compression text)
    RETURNS bytea
    AS '$libdir/stream', 'stream_compress_file' LANGUAGE C IMMUTABLE STRICT;

-- the superuser who loads them (and members of pg_write_server_files for the
-- Parquet file, which the C function checks) and nobody else
REVOKE ALL ON FUNCTION stream_test.write_parquet_with(text, text, text, bigint, int, boolean, text[]),
    stream_test.compress(bytea, text) FROM PUBLIC;
