---------------------------------------------------------------------------
-- JSON conveniences for clients: put JSON documents, read records as rows
-- with the data as jsonb and text.  See src/streams/json.c.
---------------------------------------------------------------------------

CREATE FUNCTION stream.data_to_text(data bytea) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_data_to_text' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION stream.data_to_text(bytea) IS
    'The record data as text when it is valid UTF-8 (converted to the database encoding), else NULL.';

CREATE FUNCTION stream.data_to_jsonb(data bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'stream_data_to_jsonb' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION stream.data_to_jsonb(bytea) IS
    'The record data as jsonb when it is valid UTF-8 JSON that jsonb can hold, else NULL (never an error).';

CREATE FUNCTION stream.put_record_json(stream_name text, partition_key text, data jsonb,
                                       explicit_hash_key text DEFAULT NULL)
    RETURNS stream.put_record_result
    AS 'MODULE_PATHNAME', 'stream_put_record_json' LANGUAGE C VOLATILE;

CREATE FUNCTION stream.put_records_json(stream_name text, records jsonb)
    RETURNS TABLE(shard_id text, sequence_number text, error_code text, error_message text)
    AS 'MODULE_PATHNAME', 'stream_put_records_json' LANGUAGE C VOLATILE ROWS 500;

CREATE FUNCTION stream.get_records_json(shard_iterator text, "limit" int DEFAULT 10000)
    RETURNS TABLE(sequence_number text, approximate_arrival_timestamp timestamptz,
                  partition_key text, data bytea, data_text text, data_json jsonb,
                  next_shard_iterator text, millis_behind_latest bigint, child_shards jsonb)
    AS 'MODULE_PATHNAME', 'stream_get_records_json' LANGUAGE C VOLATILE ROWS 1000;
