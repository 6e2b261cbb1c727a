-- Parquet export: the COPY (query) TO 'file' that writes Parquet.

CREATE FUNCTION stream.write_parquet(query text, path text, compression text DEFAULT 'snappy')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_write_parquet' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION stream.write_parquet(text, text, text) IS
    'Writes the result of query to the server file path as Parquet (compression none, gzip, snappy or zstd); returns the row count. Needs superuser or pg_write_server_files.';

-- For tests: row group and page sizes, dictionary on/off, columns written as REQUIRED.
CREATE FUNCTION stream_internal._write_parquet_with(query text, path text, compression text,
                                           row_group_bytes bigint, page_bytes int,
                                           dictionary boolean, required_columns text[])
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_write_parquet' LANGUAGE C VOLATILE;

-- For tests: whole-file compression as used for JSON and CSV deliveries.
CREATE FUNCTION stream_internal._compress(data bytea, compression text)
    RETURNS bytea
    AS 'MODULE_PATHNAME', 'stream_compress_file' LANGUAGE C IMMUTABLE STRICT;

REVOKE ALL ON FUNCTION stream_internal._write_parquet_with(text, text, text, bigint, int, boolean, text[]),
    stream_internal._compress(bytea, text) FROM PUBLIC;
