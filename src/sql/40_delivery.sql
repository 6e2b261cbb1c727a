---------------------------------------------------------------------------
-- Delivery streams (Firehose): batches of a stream's records delivered as
-- files in a server directory or as rows of a table.  See src/delivery/.
-- A delivery stream is a processor of kind 'delivery' (35_processors.sql):
-- its id, source stream, owner, checkpoints, unit in flight, back-off and
-- failed records are the runtime's; the tables here keep what is
-- delivery's own.
---------------------------------------------------------------------------

-- What a transform function gets and returns (Firehose's Lambda contract;
-- a stream source's KPL aggregates arrive de-aggregated, each sub-record
-- with its own partition key, its aggregate's sequence number, its
-- sub-sequence number and record_id '<sequence number>.<sub-sequence number>'):
--   f(records stream.firehose_record[]) RETURNS SETOF stream.firehose_result
-- with one result per input record_id: result 'Ok' (data replaced),
-- 'Dropped' or 'ProcessingFailed'; partition_keys feeds
-- !{partitionKeyFromLambda:key}.
CREATE TYPE stream.firehose_record AS (
    record_id text,
    approximate_arrival_timestamp timestamptz,
    data bytea,
    partition_key text,         -- stream sources only
    sequence_number text,       -- stream sources only
    shard_id text,              -- stream sources only
    sub_sequence_number bigint  -- stream sources only: a KPL sub-record's number (0 for a plain record)
);

CREATE TYPE stream.firehose_result AS (
    record_id text,
    result text,
    data bytea,
    partition_keys jsonb
);

-- The configuration; the source stream (an internal one for DirectPut) and
-- the owner are the processor's (stream.processors).
CREATE TABLE stream.delivery_streams (
    delivery_stream_id      int PRIMARY KEY REFERENCES stream.processors ON DELETE CASCADE,
    delivery_stream_name    text NOT NULL UNIQUE,
    delivery_stream_type    text NOT NULL,          -- DirectPut | KinesisStreamAsSource
    delivery_stream_status  text NOT NULL DEFAULT 'ACTIVE',
    destination             text,                   -- server directory (S3 bucket analogue)
    destination_table       text,                   -- qualified table name (resolved at each delivery)
    format                  text NOT NULL,
    schema                  regtype,
    compression             text NOT NULL,
    buffer_size_mb          int NOT NULL,
    buffer_interval_seconds int NOT NULL,
    prefix                  text NOT NULL,
    error_output_prefix     text,
    partition_key_queries   jsonb,                  -- {"key": "jsonpath", ...}
    transform_function      regprocedure,
    backup_prefix           text,                   -- not NULL: source record backup
    version_id              int NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now()
);

-- A file batch in flight, what is delivery's own of the processor's pending
-- unit (stream.processor_pending holds its ranges, and this row goes with
-- it): staging, the batch's own staging directory (random name), recorded
-- before it is created so that recovery removes exactly that directory;
-- then, once its temporary files are written and fsynced, their names.
CREATE TABLE stream.delivery_pending (
    delivery_stream_id int PRIMARY KEY REFERENCES stream.processor_pending ON DELETE CASCADE,
    staging       text,
    files         jsonb
);

-- One row per delivered batch, committed together with the checkpoints.
CREATE TABLE stream.delivery_manifest (
    delivery_stream_id int NOT NULL REFERENCES stream.delivery_streams ON DELETE CASCADE,
    batch_no          bigint NOT NULL,
    shard_indexes     int[] NOT NULL,
    from_seqs         bigint[] NOT NULL,
    to_seqs           bigint[] NOT NULL,
    files             jsonb NOT NULL,
    records_in        bigint NOT NULL,
    records_delivered bigint NOT NULL,
    records_dropped   bigint NOT NULL,
    records_failed    bigint NOT NULL,
    delivered_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (delivery_stream_id, batch_no)
);

-- Counters; one small row per delivery stream (batch numbers, the last
-- error and the back-off are the processor's: stream.processor_progress).
-- Failed records of table destinations are the processor's error rows
-- (stream.processor_errors), with Firehose's error envelope; files
-- destinations write them under the error prefix.
CREATE TABLE stream.delivery_progress (
    delivery_stream_id int PRIMARY KEY REFERENCES stream.delivery_streams ON DELETE CASCADE,
    files_delivered   bigint NOT NULL DEFAULT 0,
    bytes_delivered   bigint NOT NULL DEFAULT 0,
    records_delivered bigint NOT NULL DEFAULT 0,
    records_failed    bigint NOT NULL DEFAULT 0,
    last_delivery_at  timestamptz
) WITH (fillfactor = 50);

-- Manifest rows name the files of a batch, and file names hold partition key
-- values (record data).  Like the status view, they show each role the
-- delivery streams it owns only (superusers, and so the worker, all of them);
-- the processor's tables have the same backstop (35_processors.sql).
ALTER TABLE stream.delivery_manifest ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.delivery_progress ENABLE ROW LEVEL SECURITY;
CREATE POLICY manifest_by_owner ON stream.delivery_manifest USING (stream_internal._owns_processor(delivery_stream_id));
CREATE POLICY progress_by_owner ON stream.delivery_progress USING (stream_internal._owns_processor(delivery_stream_id));

SELECT pg_catalog.pg_extension_config_dump('stream.delivery_streams', '');
SELECT pg_catalog.pg_extension_config_dump('stream.delivery_pending', '');
SELECT pg_catalog.pg_extension_config_dump('stream.delivery_manifest', '');
SELECT pg_catalog.pg_extension_config_dump('stream.delivery_progress', '');
-- No privileges for PUBLIC on the delivery catalogs: partition values end up
-- in manifest paths (cust=...), record content in errors.  A role reads the
-- delivery streams it may see through the security_barrier views below.
REVOKE ALL ON stream.delivery_streams, stream.delivery_pending, stream.delivery_manifest,
    stream.delivery_progress FROM PUBLIC;

-- The delivery streams the querying role may see: those whose owner it is a
-- member of (superusers: all).  A view reads the table with its owner's
-- rights but evaluates current_user as the querying role (also inside an
-- API function running as the caller, and as the owner inside a SECURITY
-- DEFINER function, where every row shows).  security_barrier: the
-- caller's own conditions cannot see rows before this filter.
-- With the processor's source stream and owner.
CREATE VIEW stream_internal.visible_delivery_streams WITH (security_barrier) AS
SELECT d.*, p.source_stream_id, p.owner
  FROM stream.delivery_streams d
  JOIN stream.processors p ON p.processor_id = d.delivery_stream_id
 WHERE pg_catalog.pg_has_role(current_user, p.owner, 'MEMBER');
GRANT SELECT ON stream_internal.visible_delivery_streams TO PUBLIC;

-- One row per delivered batch (its files, or for a table the rows' count,
-- and the source ranges), of the delivery streams the caller may see.
CREATE VIEW stream.delivery_batches WITH (security_barrier) AS
SELECT d.delivery_stream_name, m.batch_no, m.shard_indexes, m.from_seqs, m.to_seqs, m.files,
       m.records_in, m.records_delivered, m.records_dropped, m.records_failed, m.delivered_at
  FROM stream_internal.visible_delivery_streams d
  JOIN stream.delivery_manifest m ON m.delivery_stream_id = d.delivery_stream_id;
GRANT SELECT ON stream.delivery_batches TO PUBLIC;

-- The failed records of table destinations, with Firehose's error envelope,
-- of the delivery streams the caller may see.
CREATE VIEW stream.delivery_failed_records WITH (security_barrier) AS
SELECT d.delivery_stream_name, e.unit_no AS batch_no, e.error_type AS error_output_type, e.envelope, e.created_at
  FROM stream_internal.visible_delivery_streams d
  JOIN stream.processor_errors e ON e.processor_id = d.delivery_stream_id;
GRANT SELECT ON stream.delivery_failed_records TO PUBLIC;

---------------------------------------------------------------------------
-- C functions
---------------------------------------------------------------------------

CREATE FUNCTION stream.put_delivery_record(delivery_stream_name text, data bytea)
    RETURNS text
    AS 'MODULE_PATHNAME', 'stream_put_delivery_record' LANGUAGE C VOLATILE;

CREATE FUNCTION stream.put_delivery_record_batch(delivery_stream_name text, data bytea[])
    RETURNS TABLE(record_id text, error_code text, error_message text)
    AS 'MODULE_PATHNAME', 'stream_put_delivery_record_batch' LANGUAGE C VOLATILE ROWS 500;

CREATE FUNCTION stream.flush_delivery_stream(delivery_stream_name text, timeout_seconds int DEFAULT 60)
    RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_flush_delivery_stream' LANGUAGE C VOLATILE;

CREATE FUNCTION stream_internal._delivery_buffer(delivery_stream_id int,
                                        OUT buffered_records bigint, OUT buffered_bytes bigint,
                                        OUT oldest_buffered timestamptz)
    RETURNS SETOF record
    -- runs as the caller (the status view's querying role), who must be a
    -- member of the delivery stream's owner; reads the catalogs as their owner
    AS 'MODULE_PATHNAME', 'stream_delivery_buffer' LANGUAGE C VOLATILE STRICT ROWS 1;
CREATE FUNCTION stream_internal._delivery_validate(prefix text, error_output_prefix text, backup_prefix text,
                                          partition_keys text[], has_transform bool) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_delivery_validate' LANGUAGE C VOLATILE;
CREATE FUNCTION stream_internal._delivery_check_keys(partition_key_queries jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_delivery_check_keys' LANGUAGE C STABLE STRICT;
CREATE FUNCTION stream_internal._delivery_check_destination(destination text) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_delivery_check_destination' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION stream_internal._delivery_check_keys(jsonb), stream_internal._delivery_check_destination(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION stream_internal._delivery_validate(text, text, text, text[], bool) FROM PUBLIC;
-- the fast JSON decoder against the jsonb path, for the differential test (json_decode_check.c)
CREATE FUNCTION stream_internal._json_decode_check(schema regtype, record bytea) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_json_decode_check' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION stream_internal._json_decode_check(regtype, bytea) FROM PUBLIC;

---------------------------------------------------------------------------
-- The protocol's bookkeeping, one function per step (src/delivery/delivery_batch.c)
---------------------------------------------------------------------------

-- Step 1 (and again after a crash before step 2): the staging directory's
-- name, recorded before it is created.
CREATE FUNCTION stream_internal._delivery_stage(p_id int, p_staging text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO stream.delivery_pending (delivery_stream_id, staging) VALUES (p_id, p_staging)
        ON CONFLICT (delivery_stream_id) DO UPDATE SET staging = EXCLUDED.staging, files = NULL
$$;

-- Step 2: the names of the written, fsynced files (NULL: write the batch again).
CREATE FUNCTION stream_internal._delivery_set_files(p_id int, p_files jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE stream.delivery_pending SET files = p_files WHERE delivery_stream_id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery stream % has no pending batch', p_id;
    END IF;
END $$;

-- The last step, with the runtime's _processor_finish_unit in the same
-- transaction: the manifest row and the counters.
CREATE FUNCTION stream_internal._delivery_finish_batch(p_id int, p_batch bigint, p_shards int[], p_from bigint[],
                                                       p_to bigint[], p_files jsonb, p_in bigint, p_delivered bigint,
                                                       p_dropped bigint, p_failed bigint, p_nfiles int, p_bytes bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO stream.delivery_manifest (delivery_stream_id, batch_no, shard_indexes, from_seqs, to_seqs,
        files, records_in, records_delivered, records_dropped, records_failed)
    VALUES (p_id, p_batch, p_shards, p_from, p_to, p_files, p_in, p_delivered, p_dropped, p_failed);
    UPDATE stream.delivery_progress SET files_delivered = files_delivered + p_nfiles,
           bytes_delivered = bytes_delivered + p_bytes, records_delivered = records_delivered + p_delivered,
           records_failed = records_failed + p_failed, last_delivery_at = clock_timestamp()
     WHERE delivery_stream_id = p_id;
$$;

---------------------------------------------------------------------------
-- Control plane
---------------------------------------------------------------------------

CREATE FUNCTION stream_internal._delivery_arn(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'arn:aws:firehose:local:000000000000:deliverystream/' || name $$;

CREATE FUNCTION stream_internal._delivery_stream(p_name text) RETURNS stream_internal.visible_delivery_streams
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d stream_internal.visible_delivery_streams;
BEGIN
    PERFORM stream_internal._check_name(p_name, 'deliveryStreamName', stream_internal._limit('FIREHOSE_NAME_MAX')::int);
    -- one not visible to the caller is not found, exactly as a missing one
    SELECT * INTO d FROM stream_internal.visible_delivery_streams v WHERE v.delivery_stream_name = p_name;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Firehose %s under account 000000000000 not found.', p_name));
    END IF;
    RETURN d;
END $$;

CREATE FUNCTION stream_internal.create_delivery_stream(
    delivery_stream_name    text,
    source_stream_name      text DEFAULT NULL,
    destination             text DEFAULT NULL,
    destination_table       regclass DEFAULT NULL,
    format                  text DEFAULT 'json',
    schema                  regtype DEFAULT NULL,
    compression             text DEFAULT 'none',
    buffer_size_mb          int DEFAULT 5,
    buffer_interval_seconds int DEFAULT 300,
    prefix                  text DEFAULT NULL,
    error_output_prefix     text DEFAULT NULL,
    partition_key_queries   jsonb DEFAULT NULL,
    transform_function      regprocedure DEFAULT NULL,
    backup_prefix           text DEFAULT NULL,
    starting_position       text DEFAULT 'LATEST')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_invoker oid := stream_internal._caller();
    v_src stream.streams;
    v_stream_id int;
    v_id int;
    v_now timestamptz := clock_timestamp();
    v_table text;
    v_schema regtype := schema;
    v_keys text[];
    v_fn record;
    v_rectype oid := 'stream.firehose_record[]'::regtype;
    v_restype oid := 'stream.firehose_result'::regtype;
BEGIN
    IF delivery_stream_name IS NULL THEN
        PERFORM stream_internal._raise_null('deliveryStreamName');
    END IF;
    IF length(delivery_stream_name) < 1 OR length(delivery_stream_name) > stream_internal._limit('FIREHOSE_NAME_MAX')
       OR delivery_stream_name !~ '^[a-zA-Z0-9_.-]+$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''deliveryStreamName'' failed to satisfy constraint: Member must have length less than or equal to %s and satisfy regular expression pattern: [a-zA-Z0-9_.-]+',
                                       delivery_stream_name, stream_internal._limit('FIREHOSE_NAME_MAX')));
    END IF;
    IF EXISTS (SELECT 1 FROM stream.delivery_streams d WHERE d.delivery_stream_name = create_delivery_stream.delivery_stream_name) THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Firehose %s under account 000000000000 already exists.', delivery_stream_name));
    END IF;

    -- destination: exactly one of a directory and a table
    IF (destination IS NULL) = (destination_table IS NULL) THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'Specify exactly one of destination (a server directory) and destination_table.');
    END IF;
    IF destination IS NOT NULL THEN
        IF destination !~ '^/' OR destination ~ '(^|/)\.\.?(/|$)' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('destination %L must be an absolute directory path without . or .. components', destination));
        END IF;
        destination := rtrim(destination, '/');
        IF destination = '' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'destination must not be the root directory');
        END IF;
        -- writing files on the server is for roles that may do so anyway
        IF NOT (SELECT rolsuper FROM pg_roles WHERE oid = v_invoker)
           AND NOT pg_has_role(v_invoker, 'pg_write_server_files', 'MEMBER') THEN
            PERFORM stream_internal._raise('AccessDeniedException', 'only superusers and members of pg_write_server_files may deliver to a server directory');
        END IF;
    ELSE
        IF NOT has_table_privilege(v_invoker, destination_table, 'INSERT') THEN
            PERFORM stream_internal._raise('AccessDeniedException', format('permission denied to insert into %s', destination_table));
        END IF;
        SELECT format('%I.%I', n.nspname, c.relname) INTO v_table
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = destination_table;
        IF v_schema IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'schema is taken from destination_table; do not give both');
        END IF;
        IF prefix IS NOT NULL OR error_output_prefix IS NOT NULL OR partition_key_queries IS NOT NULL OR backup_prefix IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'a table destination takes no prefix, error_output_prefix, partition_key_queries or backup_prefix (failed records go to stream.delivery_failed_records)');
        END IF;
        IF format IS DISTINCT FROM 'json' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'a table destination reads JSON records (format ''json'')');
        END IF;
    END IF;

    IF format IS NULL OR format NOT IN ('json', 'csv', 'parquet', 'raw') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('format %L is not one of json, csv, parquet, raw', format));
    END IF;
    IF compression IS NULL OR compression NOT IN ('none', 'gzip', 'snappy', 'zstd') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('compression %L is not one of none, gzip, snappy, zstd', compression));
    END IF;
    IF format IN ('csv', 'parquet') AND v_schema IS NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('format %s needs a schema: a table or composite type whose columns define the output', format));
    END IF;
    IF format = 'raw' AND v_schema IS NOT NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'format raw takes no schema');
    END IF;
    IF v_schema IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_type WHERE oid = v_schema AND typtype = 'c') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('schema %s is not a table or composite type', v_schema));
    END IF;
    IF buffer_size_mb IS NULL OR buffer_size_mb < stream_internal._limit('FIREHOSE_BUFFER_MB_MIN')
       OR buffer_size_mb > stream_internal._limit('FIREHOSE_BUFFER_MB_MAX') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('BufferingHints.SizeInMBs must be between %s and %s, got %s',
                                       stream_internal._limit('FIREHOSE_BUFFER_MB_MIN'), stream_internal._limit('FIREHOSE_BUFFER_MB_MAX'),
                                       coalesce(buffer_size_mb::text, 'null')));
    END IF;
    IF buffer_interval_seconds IS NULL OR buffer_interval_seconds < stream_internal._limit('FIREHOSE_BUFFER_SECONDS_MIN')
       OR buffer_interval_seconds > stream_internal._limit('FIREHOSE_BUFFER_SECONDS_MAX') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('BufferingHints.IntervalInSeconds must be between %s and %s, got %s',
                                       stream_internal._limit('FIREHOSE_BUFFER_SECONDS_MIN'), stream_internal._limit('FIREHOSE_BUFFER_SECONDS_MAX'),
                                       coalesce(buffer_interval_seconds::text, 'null')));
    END IF;
    IF starting_position IS NULL OR starting_position NOT IN ('LATEST', 'TRIM_HORIZON') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'starting_position must be LATEST or TRIM_HORIZON');
    END IF;

    -- dynamic partitioning
    IF partition_key_queries IS NOT NULL THEN
        IF jsonb_typeof(partition_key_queries) <> 'object' OR EXISTS (
               SELECT 1 FROM jsonb_each(partition_key_queries) e WHERE jsonb_typeof(e.value) <> 'string') THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'partition_key_queries must be a JSON object of key name to JSON path, e.g. {"customer_id": "$.customer_id"}');
        END IF;
        SELECT array_agg(k ORDER BY k) INTO v_keys FROM jsonb_object_keys(partition_key_queries) k;
        -- queries: SQL/JSON paths, or the jq subset Firehose users write (src/delivery/delivery_partition.c)
        PERFORM stream_internal._delivery_check_keys(partition_key_queries);
    END IF;
    IF (partition_key_queries IS NOT NULL OR coalesce(prefix, '') ~ '!\{partitionKeyFrom')
       AND error_output_prefix IS NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'ErrorOutputPrefix is required when dynamic partitioning is used');
    END IF;

    -- transform function: Firehose's contract
    IF transform_function IS NOT NULL THEN
        SELECT p.pronargs, p.proargtypes[0] AS arg0, p.prorettype, p.proretset INTO v_fn FROM pg_proc p WHERE p.oid = transform_function;
        IF v_fn.pronargs <> 1 OR v_fn.arg0 <> v_rectype OR v_fn.prorettype <> v_restype OR NOT v_fn.proretset THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('transform_function %s must take (stream.firehose_record[]) and return SETOF stream.firehose_result', transform_function));
        END IF;
        IF NOT has_function_privilege(v_invoker, transform_function, 'EXECUTE') THEN
            PERFORM stream_internal._raise('AccessDeniedException', format('permission denied for function %s', transform_function));
        END IF;
    END IF;

    IF destination IS NOT NULL THEN
        PERFORM stream_internal._delivery_validate(prefix, error_output_prefix, backup_prefix, v_keys, transform_function IS NOT NULL);
        -- the server must be able to write there now, not fail at the first delivery
        PERFORM stream_internal._delivery_check_destination(destination);
    END IF;

    -- the source: a stream read as a consumer, or an internal stream for direct put
    IF source_stream_name IS NOT NULL THEN
        v_src := stream_internal._stream(source_stream_name);
        -- against a concurrent delete_stream, which refuses while delivery streams read the stream
        PERFORM 1 FROM stream.streams st WHERE st.stream_id = v_src.stream_id FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', source_stream_name));
        END IF;
        IF NOT (SELECT rolsuper FROM pg_roles WHERE oid = v_invoker)
           AND NOT has_table_privilege(v_invoker, stream_internal._data_table(v_src.stream_id), 'SELECT') THEN
            PERFORM stream_internal._raise('AccessDeniedException', format('User is not authorized to read records from stream %s', source_stream_name));
        END IF;
        v_stream_id := v_src.stream_id;
    ELSE
        -- named by its id: stream.streams is readable by every role, delivery stream names are not
        v_stream_id := nextval('stream.streams_stream_id_seq');
        INSERT INTO stream.streams (stream_id, stream_name, retention_hours, chunk_hours, stream_mode, created_at, next_shard_index)
        VALUES (v_stream_id, 'firehose:' || v_stream_id, 24, 1, 'FIREHOSE_DIRECT_PUT', v_now, 1);
        INSERT INTO stream.shards (stream_id, shard_index, starting_hash_key, ending_hash_key, starting_seq, created_at)
        VALUES (v_stream_id, 0, 0, 340282366920938463463374607431768211455,
                stream_internal._first_seq(stream_internal._hour_bucket(v_now)), v_now);
        PERFORM stream_internal._create_stream_table(v_stream_id, 'records put to a delivery stream (direct put)');
        PERFORM stream_internal._make_chunks(x) FROM stream.streams x WHERE x.stream_id = v_stream_id;
        PERFORM stream_internal._catalog_changed();
        IF NOT (SELECT rolsuper FROM pg_roles WHERE oid = v_invoker) THEN
            EXECUTE format('GRANT INSERT ON %s TO %I', stream_internal._data_table(v_stream_id),
                           (SELECT rolname FROM pg_roles WHERE oid = v_invoker));
        END IF;
        starting_position := 'TRIM_HORIZON';
    END IF;

    -- the processor reads the source from starting_position on, as the owner
    v_id := stream_internal._processor_register('delivery', v_stream_id, v_invoker::regrole, starting_position, v_now);
    INSERT INTO stream.delivery_streams (delivery_stream_id, delivery_stream_name, delivery_stream_type,
        destination, destination_table, format, schema, compression, buffer_size_mb,
        buffer_interval_seconds, prefix, error_output_prefix, partition_key_queries,
        transform_function, backup_prefix, created_at)
    VALUES (v_id, delivery_stream_name, CASE WHEN source_stream_name IS NULL THEN 'DirectPut' ELSE 'KinesisStreamAsSource' END,
        destination, v_table, format, v_schema, compression, buffer_size_mb,
        buffer_interval_seconds, coalesce(prefix, ''), error_output_prefix, partition_key_queries,
        transform_function, backup_prefix, v_now);
    INSERT INTO stream.delivery_progress (delivery_stream_id) VALUES (v_id);
    -- every session's delivery name cache (delivery_catalog.c) drops the name
    PERFORM stream_internal._catalog_changed();
    PERFORM stream_internal._wake_worker();
    RETURN stream_internal._delivery_arn(delivery_stream_name);
END $$;
SELECT stream_internal._api_entry('create_delivery_stream');


CREATE FUNCTION stream_internal.delete_delivery_stream(delivery_stream_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d stream_internal.visible_delivery_streams := stream_internal._delivery_stream(delivery_stream_name);
BEGIN
    IF NOT pg_has_role(stream_internal._caller(), d.owner, 'MEMBER') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('only the owner of Firehose %s may delete it', d.delivery_stream_name));
    END IF;
    -- after a delivery of it under way; its catalog rows go with the processor
    PERFORM stream_internal._processor_drop(d.delivery_stream_id);
    IF d.delivery_stream_type = 'DirectPut' THEN
        EXECUTE format('DROP TABLE IF EXISTS %s', stream_internal._data_table(d.source_stream_id));
        DELETE FROM stream.streams WHERE stream_id = d.source_stream_id;
        PERFORM stream_internal._forget_stream(d.source_stream_id);
    END IF;
    -- every session's stream and delivery name caches drop it
    PERFORM stream_internal._catalog_changed();
END $$;
SELECT stream_internal._api_entry('delete_delivery_stream');


CREATE FUNCTION stream.list_delivery_streams(delivery_stream_type text DEFAULT NULL)
RETURNS TABLE(delivery_stream_name text, delivery_stream_arn text, delivery_stream_type text,
              delivery_stream_status text, create_timestamp timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT d.delivery_stream_name, stream_internal._delivery_arn(d.delivery_stream_name), d.delivery_stream_type,
           d.delivery_stream_status, d.created_at
      FROM stream_internal.visible_delivery_streams d
     WHERE $1 IS NULL OR d.delivery_stream_type = $1
     ORDER BY d.delivery_stream_name
$$;

CREATE FUNCTION stream.describe_delivery_stream(delivery_stream_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d stream_internal.visible_delivery_streams := stream_internal._delivery_stream(delivery_stream_name);
    v_source jsonb;
    v_dest jsonb;
    v_comp text := CASE d.compression WHEN 'none' THEN 'UNCOMPRESSED' WHEN 'gzip' THEN 'GZIP'
                                      WHEN 'snappy' THEN 'Snappy' ELSE 'ZSTD' END;
BEGIN
    IF d.delivery_stream_type = 'KinesisStreamAsSource' THEN
        v_source := jsonb_build_object('KinesisStreamSourceDescription', jsonb_build_object(
            'KinesisStreamARN', (SELECT stream_internal._arn(s.stream_name) FROM stream.streams s WHERE s.stream_id = d.source_stream_id),
            'DeliveryStartTimestamp', round(extract(epoch FROM d.created_at), 3)));
    END IF;
    IF d.destination IS NOT NULL THEN
        v_dest := jsonb_build_object('ExtendedS3DestinationDescription', jsonb_strip_nulls(jsonb_build_object(
            'BucketARN', 'file://' || d.destination,
            'Prefix', d.prefix,
            'ErrorOutputPrefix', d.error_output_prefix,
            'BufferingHints', jsonb_build_object('SizeInMBs', d.buffer_size_mb, 'IntervalInSeconds', d.buffer_interval_seconds),
            'CompressionFormat', CASE WHEN d.format = 'parquet' THEN 'UNCOMPRESSED' ELSE v_comp END,
            'ProcessingConfiguration', jsonb_build_object('Enabled', d.transform_function IS NOT NULL,
                'Processors', CASE WHEN d.transform_function IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(jsonb_build_object(
                    'Type', 'Lambda', 'Parameters', jsonb_build_array(jsonb_build_object(
                        'ParameterName', 'LambdaArn', 'ParameterValue', d.transform_function::text)))) END),
            'DataFormatConversionConfiguration', CASE WHEN d.format IN ('parquet', 'csv') OR d.schema IS NOT NULL THEN jsonb_build_object(
                'Enabled', true,
                'SchemaConfiguration', jsonb_build_object('TableName', d.schema::text),
                'InputFormatConfiguration', jsonb_build_object('Deserializer', jsonb_build_object('OpenXJsonSerDe', '{}'::jsonb)),
                'OutputFormatConfiguration', jsonb_build_object('Serializer',
                    CASE d.format WHEN 'parquet' THEN jsonb_build_object('ParquetSerDe', jsonb_build_object('Compression', upper(CASE WHEN d.compression = 'none' THEN 'UNCOMPRESSED' ELSE d.compression END)))
                                  WHEN 'csv' THEN jsonb_build_object('CsvSerDe', '{}'::jsonb)
                                  ELSE jsonb_build_object('JsonSerDe', '{}'::jsonb) END)) END,
            'DynamicPartitioningConfiguration', CASE WHEN d.partition_key_queries IS NOT NULL OR d.prefix ~ '!\{partitionKeyFrom'
                THEN jsonb_build_object('Enabled', true, 'PartitionKeyQueries', d.partition_key_queries) END,
            'S3BackupMode', CASE WHEN d.backup_prefix IS NULL THEN 'Disabled' ELSE 'Enabled' END,
            'S3BackupDescription', CASE WHEN d.backup_prefix IS NOT NULL THEN jsonb_build_object('Prefix', d.backup_prefix) END,
            'FileFormat', d.format)));
    ELSE
        v_dest := jsonb_build_object('TableDestinationDescription', jsonb_build_object(
            'DataTableName', d.destination_table,
            'BufferingHints', jsonb_build_object('SizeInMBs', d.buffer_size_mb, 'IntervalInSeconds', d.buffer_interval_seconds),
            'ProcessingConfiguration', jsonb_build_object('Enabled', d.transform_function IS NOT NULL)));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'DeliveryStreamName', d.delivery_stream_name,
        'DeliveryStreamARN', stream_internal._delivery_arn(d.delivery_stream_name),
        'DeliveryStreamStatus', d.delivery_stream_status,
        'DeliveryStreamType', d.delivery_stream_type,
        'VersionId', d.version_id::text,
        'CreateTimestamp', round(extract(epoch FROM d.created_at), 3),
        'Source', v_source,
        'Destinations', jsonb_build_array(jsonb_build_object('DestinationId', 'destinationId-000000000001') || v_dest),
        'HasMoreDestinations', false));
END $$;

-- Direct put privileges, per delivery stream: INSERT on its internal stream.
-- Granting on a stream-fed delivery stream is refused; revoking there is a no-op.
CREATE FUNCTION stream_internal._delivery_access(p_grant bool, p_name text, p_role regrole)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d stream_internal.visible_delivery_streams := stream_internal._delivery_stream(p_name);
BEGIN
    IF NOT pg_has_role(stream_internal._caller(), d.owner, 'MEMBER') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('only the owner of Firehose %s may %s access to it',
                              d.delivery_stream_name, CASE WHEN p_grant THEN 'grant' ELSE 'revoke' END));
    END IF;
    IF d.delivery_stream_type <> 'DirectPut' THEN
        IF p_grant THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'This operation is not permitted on KinesisStreamAsSource delivery stream type.');
        END IF;
        RETURN;
    END IF;
    EXECUTE format(CASE WHEN p_grant THEN 'GRANT INSERT ON %s TO %I' ELSE 'REVOKE INSERT ON %s FROM %I' END,
                   stream_internal._data_table(d.source_stream_id), stream_internal._role_name(p_role));
END $$;
REVOKE ALL ON FUNCTION stream_internal._delivery_access(bool, text, regrole) FROM PUBLIC;

CREATE FUNCTION stream_internal.grant_delivery_stream_access(delivery_stream_name text, role regrole)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._delivery_access(true, delivery_stream_name, role) $$;
SELECT stream_internal._api_entry('grant_delivery_stream_access');


CREATE FUNCTION stream_internal.revoke_delivery_stream_access(delivery_stream_name text, role regrole)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._delivery_access(false, delivery_stream_name, role) $$;
SELECT stream_internal._api_entry('revoke_delivery_stream_access');


-- One row per delivery stream the caller may see (it is a member of its
-- owner; superusers: all): what is buffered, what was delivered, the last error.
CREATE VIEW stream.delivery_stream_status WITH (security_barrier) AS
SELECT d.delivery_stream_name,
       d.delivery_stream_type,
       d.delivery_stream_status,
       b.buffered_records,
       b.buffered_bytes,
       clock_timestamp() - b.oldest_buffered AS oldest_buffered_age,
       p.files_delivered,
       p.bytes_delivered,
       p.records_delivered,
       p.records_failed,
       p.last_delivery_at,
       g.last_error,
       g.last_error_at,
       g.failed_attempts,
       g.next_attempt_at,
       (SELECT pe.unit_no FROM stream.processor_pending pe WHERE pe.processor_id = d.delivery_stream_id) AS pending_batch
  FROM stream_internal.visible_delivery_streams d
  JOIN stream.delivery_progress p USING (delivery_stream_id)
  JOIN stream.processor_progress g ON g.processor_id = d.delivery_stream_id
  LEFT JOIN LATERAL stream_internal._delivery_buffer(d.delivery_stream_id) b ON true;
GRANT SELECT ON stream.delivery_stream_status TO PUBLIC;

-- Creating and deleting delivery streams is for administrators.
REVOKE ALL ON FUNCTION stream.create_delivery_stream(text, text, text, regclass, text, regtype, text, int, int,
                                                      text, text, jsonb, regprocedure, text, text),
    stream.delete_delivery_stream(text) FROM PUBLIC;
