-- Parquet export: the COPY (query) TO 'file' that writes Parquet.

CREATE FUNCTION stream.write_parquet(query text, path text, compression text DEFAULT 'snappy')
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_write_parquet' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION stream.write_parquet(text, text, text) IS
    'Writes the result of query to the server file path as Parquet (compression none, gzip, snappy or zstd); returns the row count. Needs superuser or pg_write_server_files.';
