-- stream 0.1: Kinesis-style data streams inside PostgreSQL
\echo Use "CREATE EXTENSION stream" to load this file. \quit

-- Record chunks live here; they are ordinary tables (not extension
-- members), so pg_dump saves them with their data.
CREATE SCHEMA stream_data;
GRANT USAGE ON SCHEMA stream TO PUBLIC;
GRANT USAGE ON SCHEMA stream_data TO PUBLIC;

CREATE TABLE stream.streams (
    stream_id       serial PRIMARY KEY,
    stream_name     text NOT NULL UNIQUE,
    retention_hours int NOT NULL,
    chunk_hours     int NOT NULL,
    stream_mode     text NOT NULL DEFAULT 'PROVISIONED',
    stream_status   text NOT NULL DEFAULT 'ACTIVE',
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_shard_index int NOT NULL,
    notify          bool NOT NULL DEFAULT false    -- NOTIFY on the stream's channel at commit
);

CREATE TABLE stream.shards (
    stream_id       int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    shard_index     int NOT NULL,
    parent_shard_index int,
    adjacent_parent_shard_index int,
    starting_hash_key numeric(39,0) NOT NULL,
    ending_hash_key numeric(39,0) NOT NULL,
    starting_seq    bigint NOT NULL,
    ending_seq      bigint,             -- set when the shard closes
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (stream_id, shard_index)
);

SELECT pg_catalog.pg_extension_config_dump('stream.streams', '');
SELECT pg_catalog.pg_extension_config_dump('stream.shards', '');
SELECT pg_catalog.pg_extension_config_dump('stream.streams_stream_id_seq', '');
GRANT SELECT ON stream.streams, stream.shards TO PUBLIC;

-- The key that signs shard iterators.  Not dumped: a restored database
-- gets a new key, so old iterators stop working, as they would expire anyway.
CREATE TABLE stream.secret (key bytea NOT NULL);
INSERT INTO stream.secret
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
REVOKE ALL ON stream.secret FROM PUBLIC;

CREATE TYPE stream.record AS (
    sequence_number text,
    approximate_arrival_timestamp timestamptz,
    partition_key text,
    data bytea
);

---------------------------------------------------------------------------
-- C functions
---------------------------------------------------------------------------

CREATE FUNCTION stream.hash_key(partition_key text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'stream_hash_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Named result types: the server caches their descriptors, which matters
-- for a function called once per record.
CREATE TYPE stream.put_record_result AS (shard_id text, sequence_number text);
CREATE TYPE stream.get_records_result AS (records stream.record[], next_shard_iterator text,
                                          millis_behind_latest bigint);

CREATE FUNCTION stream.put_record(stream_name text, partition_key text, data bytea,
                                  explicit_hash_key text DEFAULT NULL)
    RETURNS stream.put_record_result
    AS 'MODULE_PATHNAME', 'stream_put_record' LANGUAGE C VOLATILE;

CREATE FUNCTION stream.put_records(stream_name text, partition_keys text[], data bytea[],
                                   explicit_hash_keys text[] DEFAULT NULL)
    RETURNS TABLE(shard_id text, sequence_number text, error_code text, error_message text)
    AS 'MODULE_PATHNAME', 'stream_put_records' LANGUAGE C VOLATILE ROWS 500;

CREATE FUNCTION stream.get_shard_iterator(stream_name text, shard_id text, shard_iterator_type text,
                                          starting_sequence_number text DEFAULT NULL,
                                          "timestamp" timestamptz DEFAULT NULL)
    RETURNS text
    AS 'MODULE_PATHNAME', 'stream_get_shard_iterator' LANGUAGE C VOLATILE;

CREATE FUNCTION stream.get_records(shard_iterator text, "limit" int DEFAULT 10000)
    RETURNS stream.get_records_result
    AS 'MODULE_PATHNAME', 'stream_get_records' LANGUAGE C VOLATILE;

CREATE FUNCTION stream.read_shard(stream_name text, shard_id text,
                                  shard_iterator_type text DEFAULT 'TRIM_HORIZON',
                                  starting_sequence_number text DEFAULT NULL,
                                  "timestamp" timestamptz DEFAULT NULL,
                                  "limit" int DEFAULT 10000)
    RETURNS SETOF stream.record
    AS 'MODULE_PATHNAME', 'stream_read_shard' LANGUAGE C VOLATILE ROWS 1000;

CREATE FUNCTION stream._check_name(name text, member text, max_length int) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_check_name_sql' LANGUAGE C IMMUTABLE;
CREATE FUNCTION stream._catalog_changed() RETURNS void
    AS 'MODULE_PATHNAME', 'stream_catalog_changed' LANGUAGE C VOLATILE;
CREATE FUNCTION stream._sequence_text(stream_id int, shard_index int, seq bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_sequence_text' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION stream._forget_stream(stream_id int) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_forget_stream' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION stream._wake_worker() RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_wake_worker' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION stream._catalog_changed(), stream._forget_stream(int),
    stream._wake_worker() FROM PUBLIC;

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

CREATE FUNCTION stream._raise(exception text, message text, sqlstate text DEFAULT '22023',
                              hint text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = exception || ': ' || message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = exception || ': ' || message, HINT = hint;
END $$;

CREATE FUNCTION stream._shard_id(shard_index int) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'shardId-' || lpad(shard_index::text, 12, '0') $$;

CREATE FUNCTION stream._arn(stream_name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'arn:aws:kinesis:local:000000000000:stream/' || stream_name $$;

-- The stream's row, or ResourceNotFoundException (after name validation).
CREATE FUNCTION stream._stream(p_name text) RETURNS stream.streams
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
BEGIN
    PERFORM stream._check_name(p_name, 'streamName', 128);
    SELECT * INTO s FROM stream.streams WHERE stream_name = p_name;
    IF NOT FOUND THEN
        PERFORM stream._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', p_name), '42704');
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION stream._check_retention(p_hours int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_hours IS NULL THEN
        PERFORM stream._raise('ValidationException', '1 validation error detected: Value null at ''retentionPeriodHours'' failed to satisfy constraint: Member must not be null', '22004');
    ELSIF p_hours < 1 THEN      -- the member's range (Coral), before the service's own limits
        PERFORM stream._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''retentionPeriodHours'' failed to satisfy constraint: Member must have value greater than or equal to 1', p_hours));
    ELSIF p_hours < 24 THEN
        PERFORM stream._raise('InvalidArgumentException', format('Minimum allowed retention period is 24 hours. Requested retention period (%s hours) is too short.', p_hours));
    ELSIF p_hours > 8760 THEN
        PERFORM stream._raise('InvalidArgumentException', format('Maximum allowed retention period is 8760 hours. Requested retention period (%s hours) is too long.', p_hours));
    END IF;
END $$;

---------------------------------------------------------------------------
-- Chunks: created ahead of need, dropped whole when expired
---------------------------------------------------------------------------

-- Make sure the chunks from the current one to stream.chunk_premake ahead exist.
CREATE FUNCTION stream._make_chunks(s stream.streams) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p_stream_id int := s.stream_id;
    k bigint;
    k_now bigint;
    ahead int := coalesce(nullif(current_setting('stream.chunk_premake', true), '')::int, 4);
    made int := 0;
    chunk text;
BEGIN
    -- one maintainer per stream at a time
    PERFORM pg_advisory_xact_lock(1398034002, p_stream_id);
    k_now := (floor(extract(epoch FROM clock_timestamp()) / 3600)::bigint) / s.chunk_hours;
    k := k_now;
    WHILE k <= k_now + ahead LOOP     -- not FOR: its loop variable is always int4
        chunk := format('s%s_%s', p_stream_id, k);
        IF to_regclass(format('stream_data.%I', chunk)) IS NULL THEN
            EXECUTE format('CREATE TABLE stream_data.%I PARTITION OF stream_data.%I '
                           'FOR VALUES FROM (%s) TO (%s) '
                           'WITH (fillfactor = 100, autovacuum_enabled = off, toast.autovacuum_enabled = off)',
                           chunk, 's' || p_stream_id,
                           (k * s.chunk_hours) << 32, ((k + 1) * s.chunk_hours) << 32);
            made := made + 1;
        END IF;
        k := k + 1;
    END LOOP;
    RETURN made;
END $$;

-- Drop the chunks whose every record is past retention.  A chunk that is
-- in use right now (a reader, pg_dump) is left for the next round.
CREATE FUNCTION stream._trim_chunks(s stream.streams) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p_stream_id int := s.stream_id;
    cutoff bigint;
    dropped int := 0;
    c record;
BEGIN
    cutoff := floor(extract(epoch FROM clock_timestamp() - make_interval(hours => s.retention_hours)) / 3600)::bigint;
    FOR c IN
        SELECT cl.relname, substring(cl.relname FROM '_([0-9]+)$')::bigint AS k
          FROM pg_inherits i JOIN pg_class cl ON cl.oid = i.inhrelid
         WHERE i.inhparent = format('stream_data.%I', 's' || p_stream_id)::regclass
         ORDER BY 2
    LOOP
        EXIT WHEN (c.k + 1) * s.chunk_hours > cutoff;
        BEGIN
            EXECUTE format('LOCK TABLE stream_data.%I, stream_data.%I IN ACCESS EXCLUSIVE MODE NOWAIT',
                           's' || p_stream_id, c.relname);
            EXECUTE format('DROP TABLE stream_data.%I', c.relname);
            dropped := dropped + 1;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'stream %: chunk % is in use; trimming it next round', s.stream_name, c.relname;
            EXIT;
        END;
    END LOOP;
    RETURN dropped;
END $$;

-- What the background worker runs each round; schedule it with pg_cron
-- where the library cannot be preloaded.  Short lock waits keep a round
-- short (DROP DATABASE waits for the worker at most 5 s); a stream whose
-- locks are busy is retried next round.
CREATE FUNCTION stream.run_maintenance()
RETURNS TABLE(stream_name text, chunks_created int, chunks_dropped int)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s' AS $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT st FROM stream.streams st ORDER BY st.stream_id LOOP
        stream_name := (s.st).stream_name;
        BEGIN
            chunks_created := stream._make_chunks(s.st);
            chunks_dropped := stream._trim_chunks(s.st);
        EXCEPTION WHEN lock_not_available THEN
            RAISE WARNING 'stream %: maintenance skipped this round: %', (s.st).stream_name, SQLERRM;
            chunks_created := 0;
            chunks_dropped := 0;
        END;
        RETURN NEXT;
    END LOOP;
END $$;

---------------------------------------------------------------------------
-- Control plane
---------------------------------------------------------------------------

CREATE FUNCTION stream.create_stream(stream_name text, shard_count int, retention_hours int DEFAULT 24)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id int;
    v_max numeric := 340282366920938463463374607431768211455;
    v_width numeric;
    v_now timestamptz := clock_timestamp();
    v_start bigint;
BEGIN
    PERFORM stream._check_name(stream_name, 'streamName', 128);
    IF shard_count IS NULL THEN
        PERFORM stream._raise('ValidationException', '1 validation error detected: Value null at ''shardCount'' failed to satisfy constraint: Member must not be null', '22004');
    ELSIF shard_count < 1 THEN
        PERFORM stream._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''shardCount'' failed to satisfy constraint: Member must have value greater than or equal to 1', shard_count));
    ELSIF shard_count > 10000 THEN
        PERFORM stream._raise('LimitExceededException', format('This request would exceed the shard limit for the account 000000000000 in local. Current shard count for the account: %s. Limit: 10000. Number of additional shards that would have resulted from this request: %s.',
            (SELECT count(*) FROM stream.shards WHERE ending_seq IS NULL), shard_count), '54000');
    END IF;
    PERFORM stream._check_retention(retention_hours);
    IF EXISTS (SELECT 1 FROM stream.streams s WHERE s.stream_name = create_stream.stream_name) THEN
        PERFORM stream._raise('ResourceInUseException', format('Stream %s under account 000000000000 already exists.', stream_name), '42710');
    END IF;

    BEGIN
        INSERT INTO stream.streams (stream_name, retention_hours, chunk_hours, created_at, next_shard_index)
        VALUES (create_stream.stream_name, create_stream.retention_hours,
                greatest(1, create_stream.retention_hours / 24), v_now, shard_count)
        RETURNING stream_id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        PERFORM stream._raise('ResourceInUseException', format('Stream %s under account 000000000000 already exists.', stream_name), '42710');
    END;

    -- Kinesis' initial split: shard i owns [i*w, (i+1)*w - 1], w = floor(2^128 / N)
    v_width := div(v_max + 1, shard_count);     -- numeric '/' would round first
    v_start := (floor(extract(epoch FROM v_now) / 3600)::bigint) << 32;
    INSERT INTO stream.shards (stream_id, shard_index, starting_hash_key, ending_hash_key, starting_seq, created_at)
    SELECT v_id, i, i * v_width,
           CASE WHEN i = shard_count - 1 THEN v_max ELSE (i + 1) * v_width - 1 END,
           v_start, v_now
      FROM generate_series(0, shard_count - 1) AS i;

    EXECUTE format('CREATE TABLE stream_data.%I ('
                   'shard_id int4 NOT NULL, seq int8 NOT NULL, arrival timestamptz NOT NULL, '
                   'partition_key text NOT NULL, data bytea NOT NULL, '
                   'PRIMARY KEY (shard_id, seq)) PARTITION BY RANGE (seq)', 's' || v_id);
    EXECUTE format('COMMENT ON TABLE stream_data.%I IS %L', 's' || v_id, 'records of stream ' || stream_name);
    PERFORM stream._make_chunks(x) FROM stream.streams x WHERE x.stream_id = v_id;
    PERFORM stream._catalog_changed();
    PERFORM stream._wake_worker();
END $$;

CREATE FUNCTION stream.delete_stream(stream_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream._stream(stream_name);
BEGIN
    EXECUTE format('DROP TABLE stream_data.%I', 's' || s.stream_id);
    DELETE FROM stream.streams WHERE stream_id = s.stream_id;
    PERFORM stream._forget_stream(s.stream_id);
    PERFORM stream._catalog_changed();
END $$;

CREATE FUNCTION stream.list_streams()
RETURNS TABLE(stream_name text, stream_arn text, stream_status text, stream_mode text,
              stream_creation_timestamp timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.stream_name, stream._arn(s.stream_name), s.stream_status, s.stream_mode, s.created_at
      FROM stream.streams s
     WHERE s.stream_mode <> 'FIREHOSE_DIRECT_PUT'     -- internal buffers of delivery streams
     ORDER BY s.stream_name
$$;

CREATE FUNCTION stream.list_shards(stream_name text)
RETURNS TABLE(shard_id text, parent_shard_id text, adjacent_parent_shard_id text,
              starting_hash_key numeric, ending_hash_key numeric,
              starting_sequence_number text, ending_sequence_number text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
BEGIN
    IF list_shards.stream_name IS NULL THEN     -- ListShards takes StreamName or NextToken
        PERFORM stream._raise('InvalidArgumentException', 'Either NextToken or StreamName should be provided.');
    END IF;
    s := stream._stream(list_shards.stream_name);
    RETURN QUERY
    SELECT stream._shard_id(sh.shard_index), stream._shard_id(sh.parent_shard_index),
           stream._shard_id(sh.adjacent_parent_shard_index),
           sh.starting_hash_key, sh.ending_hash_key,
           stream._sequence_text(s.stream_id, sh.shard_index, sh.starting_seq),
           stream._sequence_text(s.stream_id, sh.shard_index, sh.ending_seq)
      FROM stream.shards sh
     WHERE sh.stream_id = s.stream_id
     ORDER BY sh.shard_index;
END $$;

CREATE FUNCTION stream.describe_stream(stream_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream._stream(stream_name);
BEGIN
    RETURN jsonb_build_object(
        'StreamName', s.stream_name,
        'StreamARN', stream._arn(s.stream_name),
        'StreamStatus', s.stream_status,
        'StreamModeDetails', jsonb_build_object('StreamMode', s.stream_mode),
        'Shards', coalesce((
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'ShardId', l.shard_id,
                       'ParentShardId', l.parent_shard_id,
                       'AdjacentParentShardId', l.adjacent_parent_shard_id,
                       'HashKeyRange', jsonb_build_object('StartingHashKey', l.starting_hash_key::text,
                                                          'EndingHashKey', l.ending_hash_key::text),
                       'SequenceNumberRange', jsonb_strip_nulls(jsonb_build_object(
                           'StartingSequenceNumber', l.starting_sequence_number,
                           'EndingSequenceNumber', l.ending_sequence_number)))) ORDER BY l.shard_id)
              FROM stream.list_shards(s.stream_name) l), '[]'::jsonb),
        'HasMoreShards', false,
        'RetentionPeriodHours', s.retention_hours,
        'StreamCreationTimestamp', round(extract(epoch FROM s.created_at), 3),
        'EnhancedMonitoring', jsonb_build_array(jsonb_build_object('ShardLevelMetrics', '[]'::jsonb)),
        'EncryptionType', 'NONE');
END $$;

CREATE FUNCTION stream.describe_stream_summary(stream_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream._stream(stream_name);
BEGIN
    RETURN jsonb_build_object(
        'StreamName', s.stream_name,
        'StreamARN', stream._arn(s.stream_name),
        'StreamStatus', s.stream_status,
        'StreamModeDetails', jsonb_build_object('StreamMode', s.stream_mode),
        'RetentionPeriodHours', s.retention_hours,
        'StreamCreationTimestamp', round(extract(epoch FROM s.created_at), 3),
        'EnhancedMonitoring', jsonb_build_array(jsonb_build_object('ShardLevelMetrics', '[]'::jsonb)),
        'EncryptionType', 'NONE',
        'OpenShardCount', (SELECT count(*) FROM stream.shards sh
                            WHERE sh.stream_id = s.stream_id AND sh.ending_seq IS NULL),
        'ConsumerCount', (SELECT count(*) FROM stream.stream_consumers c WHERE c.stream_id = s.stream_id),
        'MaxRecordSizeInKiB', 1024);
END $$;

-- Change a stream's retention; p_increase says which way it may move.
CREATE FUNCTION stream._set_retention(p_stream text, p_hours int, p_increase bool)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream._stream(p_stream);
BEGIN
    PERFORM stream._check_retention(p_hours);
    IF p_increase AND p_hours < s.retention_hours THEN
        PERFORM stream._raise('InvalidArgumentException', format('Requested retention period (%s hours) for stream %s can not be shorter than existing retention period (%s hours). Use DecreaseRetentionPeriod API.',
            p_hours, s.stream_name, s.retention_hours));
    ELSIF NOT p_increase AND p_hours > s.retention_hours THEN
        PERFORM stream._raise('InvalidArgumentException', format('Requested retention period (%s hours) for stream %s can not be longer than existing retention period (%s hours). Use IncreaseRetentionPeriod API.',
            p_hours, s.stream_name, s.retention_hours));
    END IF;
    UPDATE stream.streams SET retention_hours = p_hours WHERE stream_id = s.stream_id;
    PERFORM stream._catalog_changed();
END $$;

CREATE FUNCTION stream.increase_stream_retention_period(stream_name text, retention_period_hours int)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream._set_retention(stream_name, retention_period_hours, true) $$;

CREATE FUNCTION stream.decrease_stream_retention_period(stream_name text, retention_period_hours int)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream._set_retention(stream_name, retention_period_hours, false) $$;

-- The name of a role given as regrole: NULL and OIDs of no role are refused
-- here, not by the GRANT built from it.
CREATE FUNCTION stream._role_name(p_role regrole) RETURNS name
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name name;
BEGIN
    IF p_role IS NULL THEN
        PERFORM stream._raise('ValidationException', '1 validation error detected: Value null at ''role'' failed to satisfy constraint: Member must not be null', '22004');
    END IF;
    SELECT rolname INTO v_name FROM pg_roles WHERE oid = p_role;
    IF NOT FOUND THEN
        PERFORM stream._raise('InvalidArgumentException', format('role with OID %s does not exist', p_role::oid), '42704');
    END IF;
    RETURN v_name;
END $$;

-- Per-stream privileges: 'read' (get_shard_iterator, get_records),
-- 'write' (put_record, put_records) or 'read_write'.
CREATE FUNCTION stream._stream_access(p_grant bool, p_stream text, p_role regrole, p_access text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream._stream(p_stream);
    privs text := CASE p_access WHEN 'read' THEN 'SELECT' WHEN 'write' THEN 'INSERT'
                                WHEN 'read_write' THEN 'SELECT, INSERT' END;
BEGIN
    IF p_grant IS NULL THEN
        PERFORM stream._raise('ValidationException', '1 validation error detected: Value null at ''grant'' failed to satisfy constraint: Member must not be null', '22004');
    ELSIF p_access IS NULL THEN
        PERFORM stream._raise('ValidationException', '1 validation error detected: Value null at ''access'' failed to satisfy constraint: Member must not be null', '22004');
    ELSIF privs IS NULL THEN
        PERFORM stream._raise('InvalidArgumentException', format('access must be ''read'', ''write'' or ''read_write'', not %L', p_access));
    END IF;
    EXECUTE format(CASE WHEN p_grant THEN 'GRANT %s ON stream_data.%I TO %I' ELSE 'REVOKE %s ON stream_data.%I FROM %I' END,
                   privs, 's' || s.stream_id, stream._role_name(p_role));
END $$;

CREATE FUNCTION stream.grant_stream_access(stream_name text, role regrole, access text DEFAULT 'read')
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream._stream_access(true, stream_name, role, access) $$;

CREATE FUNCTION stream.revoke_stream_access(stream_name text, role regrole, access text DEFAULT 'read_write')
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream._stream_access(false, stream_name, role, access) $$;

-- Managing streams is for administrators; they grant it on as they see fit.
REVOKE ALL ON FUNCTION stream.create_stream(text, int, int), stream.delete_stream(text),
    stream.increase_stream_retention_period(text, int), stream.decrease_stream_retention_period(text, int),
    stream.grant_stream_access(text, regrole, text), stream.revoke_stream_access(text, regrole, text),
    stream.run_maintenance(), stream._make_chunks(stream.streams), stream._trim_chunks(stream.streams),
    stream._set_retention(text, int, bool), stream._stream_access(bool, text, regrole, text) FROM PUBLIC;
-- helpers only the SECURITY DEFINER functions above call (and 40_delivery.sql's, also SECURITY DEFINER)
REVOKE ALL ON FUNCTION stream._check_retention(int), stream._role_name(regrole) FROM PUBLIC;
