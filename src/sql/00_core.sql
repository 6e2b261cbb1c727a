-- stream 0.1: Kinesis-style data streams inside PostgreSQL
\echo Use "CREATE EXTENSION stream" to load this file. \quit

-- Record chunks live here; they are ordinary tables (not extension
-- members), so pg_dump saves them with their data.
CREATE SCHEMA stream_data;
-- The extension's own functions, which only its API calls: EXECUTE on them
-- is revoked from PUBLIC in 99_finish.sql, and granted back only for the few
-- that API functions running as the caller need.  Users see the API alone in
-- schema stream.
CREATE SCHEMA stream_internal;
-- the role that called the API function under way (src/caller.c)
CREATE FUNCTION stream_internal._caller() RETURNS oid
    AS 'MODULE_PATHNAME', 'stream_caller' LANGUAGE C STABLE;
-- Install time only (dropped in 99_finish.sql): the API entry stream.<name>
-- of each stream_internal.<name> - the same arguments, defaults, result,
-- volatility and row estimate - as the C entry point stream_api_call, which
-- notes the caller and runs the stream_internal function (src/caller.c).
-- So a control-plane function is declared once, where its body is.
CREATE FUNCTION stream_internal._api_entry(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f record;
    n int := 0;
BEGIN
    FOR f IN SELECT p.oid, p.provolatile, p.proretset, p.prorows
               FROM pg_proc p
              WHERE p.pronamespace = 'stream_internal'::regnamespace AND p.proname = name
    LOOP
        EXECUTE format('CREATE FUNCTION stream.%I(%s) RETURNS %s AS %L, %L LANGUAGE C %s%s',
                       name, pg_get_function_arguments(f.oid), pg_get_function_result(f.oid),
                       'MODULE_PATHNAME', 'stream_api_call',
                       CASE f.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
                       CASE WHEN f.proretset THEN format(' ROWS %s', f.prorows) ELSE '' END);
        n := n + 1;
    END LOOP;
    IF n = 0 THEN
        RAISE EXCEPTION 'no function stream_internal.% to make an API entry for', name;
    END IF;
END $$;
GRANT USAGE ON SCHEMA stream TO PUBLIC;
GRANT USAGE ON SCHEMA stream_data TO PUBLIC;
GRANT USAGE ON SCHEMA stream_internal TO PUBLIC;

CREATE TABLE stream.streams (
    stream_id       serial PRIMARY KEY,
    stream_name     text NOT NULL UNIQUE,
    retention_hours int NOT NULL,
    chunk_hours     int NOT NULL,
    stream_mode     text NOT NULL DEFAULT 'PROVISIONED',
    stream_status   text NOT NULL DEFAULT 'ACTIVE',
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_shard_index int NOT NULL,
    notify          bool NOT NULL DEFAULT false,   -- NOTIFY on the stream's channel at commit
    shard_level_metrics text[] NOT NULL DEFAULT '{}' -- enhanced monitoring (45_metrics.sql)
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

-- The durable high-water mark of sequence numbers (seqalloc.c): every
-- number handed out in this database lies below it, so none is handed out
-- again after a crash.  Moved only by the extension's C code.
CREATE SEQUENCE stream.sequence_mark AS bigint MINVALUE 0 START 0 CACHE 1 NO CYCLE;
REVOKE ALL ON stream.sequence_mark FROM PUBLIC;
-- dumped: a restored database's counters start above every number its
-- dumped checkpoints (delivery, applications) may have passed
SELECT pg_catalog.pg_extension_config_dump('stream.sequence_mark', '');

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

-- The extension's own locks (src/locktag.h): no role can take them to
-- stall maintenance, delivery or consumer registration.
CREATE FUNCTION stream_internal._xact_lock(kind text, id int) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_xact_lock' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION stream_internal._xact_lock(text, int) FROM PUBLIC;

CREATE FUNCTION stream.hash_key(partition_key text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'stream_hash_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Named result types: the server caches their descriptors, which matters
-- for a function called once per record.
CREATE TYPE stream.put_record_result AS (shard_id text, sequence_number text);
-- child_shards: at the end of a closed shard (next_shard_iterator NULL), the
-- shards to read next, as Kinesis' ChildShards (jsonb array of ShardId,
-- ParentShards, HashKeyRange); NULL otherwise.
CREATE TYPE stream.get_records_result AS (records stream.record[], next_shard_iterator text,
                                          millis_behind_latest bigint, child_shards jsonb);

-- sequence_number_for_ordering: the sequence number of the producer's
-- previous record (SequenceNumberForOrdering); the new record's is greater.
CREATE FUNCTION stream.put_record(stream_name text, partition_key text, data bytea,
                                  explicit_hash_key text DEFAULT NULL,
                                  sequence_number_for_ordering text DEFAULT NULL)
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

-- The hour bucket of a time and the first sequence number of a bucket
-- (sequence numbers are bucket << 32): streams/seqno.c's rule, not a copy.
CREATE FUNCTION stream_internal._hour_bucket(t timestamptz) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_hour_bucket_sql' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION stream_internal._first_seq(bucket bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_first_seq_sql' LANGUAGE C IMMUTABLE STRICT;

-- A stream's data table and its chunk tables, schema-qualified and quoted,
-- and the number of the chunk a relation name is (NULL for none of the
-- stream's): the names are spelled once, in C (src/streams/chunk.c), for
-- the C and the SQL parts alike.
CREATE FUNCTION stream_internal._data_table(stream_id int) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_data_table_sql' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION stream_internal._chunk_table(stream_id int, k bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_chunk_table_sql' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION stream_internal._chunk_number(stream_id int, relname text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_chunk_number_sql' LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION stream_internal._check_name(name text, member text, max_length int) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_check_name_sql' LANGUAGE C IMMUTABLE;
CREATE FUNCTION stream_internal._catalog_changed() RETURNS void
    AS 'MODULE_PATHNAME', 'stream_catalog_changed' LANGUAGE C VOLATILE;
CREATE FUNCTION stream_internal._sequence_text(stream_id int, shard_index int, seq bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_sequence_text' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION stream_internal._forget_stream(stream_id int) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_forget_stream' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION stream_internal._wake_worker() RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_wake_worker' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION stream_internal._catalog_changed(), stream_internal._forget_stream(int),
    stream_internal._wake_worker() FROM PUBLIC;

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Raises "<exception>: <message>" without the CONTEXT lines of the
-- extension's internal plpgsql callers (src/raise.c); the SQLSTATE is the
-- exception's own, from the one table in src/kinesis.h.
CREATE FUNCTION stream_internal._raise(exception text, message text, hint text DEFAULT NULL,
                                       detail text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_raise' LANGUAGE C VOLATILE;

-- ValidationException (22004): the member must not be null, in the words of
-- the C functions (src/raise.c).
CREATE FUNCTION stream_internal._raise_null(member text) RETURNS void
    AS 'MODULE_PATHNAME', 'stream_raise_null_sql' LANGUAGE C VOLATILE;

-- A limit of src/kinesis.h by its C name (KINESIS_SQL_LIMITS): SQL checks and
-- messages quote the one constant.
CREATE FUNCTION stream_internal._limit(name text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_limit_sql' LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION stream_internal._shard_id(shard_index int) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'shardId-' || lpad(shard_index::text, 12, '0') $$;

-- The shard index a shard id names, NULL when it names none; the shard-id
-- parser of the C functions (src/streams/shard.c), so SQL reads ids alike.
CREATE FUNCTION stream_internal._shard_index(shard_id text) RETURNS int
    AS 'MODULE_PATHNAME', 'stream_shard_index_sql' LANGUAGE C IMMUTABLE;

CREATE FUNCTION stream_internal._arn(stream_name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'arn:aws:kinesis:local:000000000000:stream/' || stream_name $$;

-- The stream's row, or ResourceNotFoundException (after name validation).
CREATE FUNCTION stream_internal._stream(p_name text) RETURNS stream.streams
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
BEGIN
    PERFORM stream_internal._check_name(p_name, 'streamName', stream_internal._limit('STREAM_NAME_MAX')::int);
    SELECT * INTO s FROM stream.streams WHERE stream_name = p_name;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', p_name));
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION stream_internal._check_retention(p_hours int) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_hours IS NULL THEN
        PERFORM stream_internal._raise_null('retentionPeriodHours');
    ELSIF p_hours < 1 THEN      -- the member's range (Coral), before the service's own limits
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''retentionPeriodHours'' failed to satisfy constraint: Member must have value greater than or equal to 1', p_hours));
    ELSIF p_hours < stream_internal._limit('RETENTION_HOURS_MIN') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Minimum allowed retention period is %s hours. Requested retention period (%s hours) is too short.',
                                       stream_internal._limit('RETENTION_HOURS_MIN'), p_hours));
    ELSIF p_hours > stream_internal._limit('RETENTION_HOURS_MAX') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Maximum allowed retention period is %s hours. Requested retention period (%s hours) is too long.',
                                       stream_internal._limit('RETENTION_HOURS_MAX'), p_hours));
    END IF;
END $$;

---------------------------------------------------------------------------
-- Chunks: created ahead of need, dropped whole when expired
---------------------------------------------------------------------------

-- Create chunk k of stream s unless it exists; the caller holds SHARE UPDATE
-- EXCLUSIVE on the parent.  The chunk is made as a table of its own and then
-- attached: ATTACH PARTITION needs only SHARE UPDATE EXCLUSIVE on the parent,
-- which the ACCESS SHARE of readers and pg_dump does not conflict with,
-- whereas CREATE TABLE ... PARTITION OF needs ACCESS EXCLUSIVE on the parent
-- and would wait for every open transaction that has read the stream table.
-- The CHECK constraint proves the partition bound, so ATTACH scans nothing.
CREATE FUNCTION stream_internal._add_chunk(s stream.streams, k bigint) RETURNS int
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    chunk text := stream_internal._chunk_table(s.stream_id, k);
    lo bigint;
    hi bigint;
BEGIN
    IF s.stream_id IS NULL OR s.chunk_hours IS NULL THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', 'Stream under account 000000000000 not found.');
    END IF;
    -- hour buckets are 31 bits (sequence numbers are bucket << 32)
    IF k < 0 OR k >= (1::bigint << 31) / s.chunk_hours - 1 THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('chunk %s is outside the sequence number range', k));
    END IF;
    lo := stream_internal._first_seq(k * s.chunk_hours);
    hi := stream_internal._first_seq((k + 1) * s.chunk_hours);
    IF to_regclass(chunk) IS NOT NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format('CREATE TABLE %s (LIKE %s, '
                   'CONSTRAINT chunk_bounds CHECK (seq >= %s AND seq < %s), PRIMARY KEY (shard_id, seq)) '
                   'WITH (fillfactor = 100, autovacuum_enabled = off, toast.autovacuum_enabled = off)',
                   chunk, stream_internal._data_table(s.stream_id), lo, hi);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)',
                   stream_internal._data_table(s.stream_id), chunk, lo, hi);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT chunk_bounds', chunk);
    RETURN 1;
END $$;

-- Make sure the chunks from the current one to stream.chunk_premake ahead
-- exist.  Never waits: if another maintainer (or a producer making its own
-- chunk, see _add_chunk_for_put) holds the parent's SHARE UPDATE EXCLUSIVE
-- lock, which serialises chunk creation, this round makes nothing.
CREATE FUNCTION stream_internal._make_chunks(s stream.streams) RETURNS int
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k bigint;
    k_now bigint;
    ahead int := coalesce(nullif(current_setting('stream.chunk_premake', true), '')::int, 4);
    made int := 0;
    locked bool := false;
BEGIN
    k_now := stream_internal._hour_bucket(clock_timestamp()) / s.chunk_hours;
    k := k_now;
    WHILE k <= k_now + ahead LOOP     -- not FOR: its loop variable is always int4
        IF to_regclass(stream_internal._chunk_table(s.stream_id, k)) IS NULL THEN
            IF NOT locked THEN
                BEGIN
                    EXECUTE format('LOCK TABLE ONLY %s IN SHARE UPDATE EXCLUSIVE MODE NOWAIT',
                                   stream_internal._data_table(s.stream_id));
                EXCEPTION WHEN lock_not_available THEN
                    RAISE NOTICE 'stream %: chunks are being created by another session; retrying next round', s.stream_name;
                    RETURN 0;
                END;
                locked := true;
            END IF;
            made := made + stream_internal._add_chunk(s, k);
        END IF;
        k := k + 1;
    END LOOP;
    RETURN made;
END $$;

-- A producer found no chunk for its records (maintenance has not run for
-- stream.chunk_premake chunks): streams/chunk_insert.c has a one-shot chunk maker
-- (bgw/chunk_maker.c) run this in a transaction of its own, or, when it cannot, calls
-- it itself, bypassing EXECUTE checks, in the producer's transaction.  Only chunks
-- from one before the current one to stream.chunk_premake ahead, the range
-- sequence numbers are handed out in; waits for the parent's SHARE UPDATE
-- EXCLUSIVE lock, which only chunk creation, VACUUM/ANALYZE of the parent
-- and DDL take, never readers or producers.
CREATE FUNCTION stream_internal._add_chunk_for_put(p_stream_id int, k bigint) RETURNS int
LANGUAGE plpgsql STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    k_now bigint;
    ahead int := coalesce(nullif(current_setting('stream.chunk_premake', true), '')::int, 4);
BEGIN
    SELECT * INTO s FROM stream.streams WHERE stream_id = p_stream_id;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    k_now := stream_internal._hour_bucket(clock_timestamp()) / s.chunk_hours;
    IF k < k_now - 1 OR k > k_now + greatest(ahead, 0) + 1 THEN
        RETURN 0;
    END IF;
    EXECUTE format('LOCK TABLE ONLY %s IN SHARE UPDATE EXCLUSIVE MODE', stream_internal._data_table(s.stream_id));
    RETURN stream_internal._add_chunk(s, k);
END $$;

-- Drop the chunks whose every record is past retention, one by one, never
-- waiting for a lock.  A chunk someone holds a lock on (a reader's open
-- transaction, pg_dump) is skipped and retried next round; the others are
-- dropped.  Dropping a partition needs ACCESS EXCLUSIVE on the parent too;
-- while a reader holds the parent (an open transaction that read the
-- stream table) an unlocked expired chunk is emptied with TRUNCATE, which
-- needs the chunk's lock only, and dropped in a later round.
CREATE FUNCTION stream_internal._trim_chunks(s stream.streams, OUT dropped int, OUT emptied int)
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p_stream_id int := s.stream_id;
    parent text := stream_internal._data_table(p_stream_id);
    parent_locked bool := false;
    cutoff bigint;
    c record;
    chunk text;
BEGIN
    dropped := 0;
    emptied := 0;
    cutoff := stream_internal._hour_bucket(clock_timestamp() - make_interval(hours => s.retention_hours));
    FOR c IN
        SELECT cl.oid, cl.relname, n.k
          FROM pg_inherits i JOIN pg_class cl ON cl.oid = i.inhrelid
         CROSS JOIN LATERAL (SELECT stream_internal._chunk_number(p_stream_id, cl.relname::text) AS k) n
         WHERE i.inhparent = parent::regclass
           AND n.k IS NOT NULL      -- chunks only
         ORDER BY n.k
    LOOP
        EXIT WHEN (c.k + 1) * s.chunk_hours > cutoff;
        chunk := stream_internal._chunk_table(p_stream_id, c.k);
        BEGIN
            EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE NOWAIT', chunk);
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE NOTICE 'stream %: chunk % is in use; trimming it next round', s.stream_name, c.relname;
                CONTINUE;
            WHEN undefined_table THEN   -- dropped meanwhile by another maintainer
                CONTINUE;
        END;
        IF NOT parent_locked THEN
            BEGIN
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE NOWAIT', parent);
                parent_locked := true;
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END IF;
        BEGIN
            IF parent_locked THEN
                EXECUTE format('DROP TABLE %s', chunk);
                dropped := dropped + 1;
            ELSIF pg_relation_size(c.oid) > 0 THEN
                EXECUTE format('TRUNCATE %s', chunk);
                emptied := emptied + 1;
            END IF;
        EXCEPTION WHEN lock_not_available THEN     -- lock_timeout on some other lock
            RAISE NOTICE 'stream %: chunk % is in use; trimming it next round', s.stream_name, c.relname;
        END;
    END LOOP;
END $$;

-- One stream's maintenance: the unit the background worker runs in a
-- transaction of its own, one stream after the other.
CREATE FUNCTION stream_internal._maintain_stream(p_stream_id int, OUT stream_name text, OUT chunks_created int,
                                        OUT chunks_dropped int, OUT chunks_emptied int)
LANGUAGE plpgsql STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s' AS $$
DECLARE
    s stream.streams;
BEGIN
    SELECT * INTO s FROM stream.streams st WHERE st.stream_id = p_stream_id;
    IF NOT FOUND THEN
        RETURN;                 -- deleted meanwhile: a row of NULLs
    END IF;
    stream_name := s.stream_name;
    chunks_created := 0;
    chunks_dropped := 0;
    chunks_emptied := 0;
    -- a lock wait over lock_timeout (a catalog or index lock) skips that part only
    BEGIN
        chunks_created := stream_internal._make_chunks(s);
    EXCEPTION WHEN lock_not_available THEN
        RAISE WARNING 'stream %: chunk creation skipped this round: %', s.stream_name, SQLERRM;
    END;
    BEGIN
        SELECT t.dropped, t.emptied INTO chunks_dropped, chunks_emptied FROM stream_internal._trim_chunks(s) t;
    EXCEPTION WHEN lock_not_available THEN
        RAISE WARNING 'stream %: trimming skipped this round: %', s.stream_name, SQLERRM;
    END;
    -- closed shards whose records all expired (src/sql/10_shards.sql)
    BEGIN
        PERFORM stream_internal._expire_shards(s);
    EXCEPTION WHEN lock_not_available THEN
        RAISE WARNING 'stream %: expiring closed shards skipped this round: %', s.stream_name, SQLERRM;
    END;
END $$;

-- Every stream's maintenance, as the background worker runs it each round
-- (one stream per transaction); schedule it with pg_cron where the library
-- cannot be preloaded.  Chunk creation and trimming take
-- their table locks with NOWAIT, so no user's transaction can make a round
-- wait; lock_timeout bounds the remaining (catalog) waits, keeping a round
-- short (DROP DATABASE waits for the worker at most 5 s); what is busy is
-- retried next round.
CREATE FUNCTION stream.run_maintenance()
RETURNS TABLE(stream_name text, chunks_created int, chunks_dropped int, chunks_emptied int)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.* FROM stream.streams st, LATERAL stream_internal._maintain_stream(st.stream_id) m
     WHERE m.stream_name IS NOT NULL
     ORDER BY st.stream_id
$$;

---------------------------------------------------------------------------
-- Control plane
---------------------------------------------------------------------------

-- Records enter a stream only through the put functions, which insert in
-- C and fire no triggers: a role granted 'write' (INSERT on the stream's
-- table) must not INSERT rows itself, with sequence numbers, sizes and
-- arrival times of its choosing.  The table's owner (the extension, and a
-- superuser restoring a dump) still may.
CREATE FUNCTION stream_internal._refuse_direct_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'USAGE') THEN
        PERFORM stream_internal._raise('AccessDeniedException',
            format('records enter stream table %s only through stream.put_record and stream.put_records', TG_TABLE_NAME),
            'Call stream.put_records(stream_name, partition_keys, data).');
    END IF;
    RETURN NEW;
END $$;

-- The partitioned table of a stream's records (chunks are its partitions).
CREATE FUNCTION stream_internal._create_stream_table(p_stream_id int, p_comment text) RETURNS void
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('CREATE TABLE %s ('
                   'shard_id int4 NOT NULL, seq int8 NOT NULL, arrival timestamptz NOT NULL, '
                   'partition_key text NOT NULL, data bytea NOT NULL, '
                   'PRIMARY KEY (shard_id, seq)) PARTITION BY RANGE (seq)', stream_internal._data_table(p_stream_id));
    EXECUTE format('COMMENT ON TABLE %s IS %L', stream_internal._data_table(p_stream_id), p_comment);
    -- cloned onto every chunk as it is attached
    EXECUTE format('CREATE TRIGGER records_only_through_put BEFORE INSERT OR UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION stream_internal._refuse_direct_write()', stream_internal._data_table(p_stream_id));
END $$;
REVOKE ALL ON FUNCTION stream_internal._create_stream_table(int, text) FROM PUBLIC;

-- stream_mode is Kinesis' StreamModeDetails.StreamMode: PROVISIONED (the
-- default) takes shard_count shards; ON_DEMAND takes none, starts with 4
-- and is scaled by the worker (src/sql/11_capacity.sql,
-- src/bgw/autoscale.c), within stream.on_demand_stream_limit streams.
CREATE FUNCTION stream_internal.create_stream(stream_name text, shard_count int DEFAULT NULL,
                                              retention_hours int DEFAULT 24, stream_mode text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id int;
    v_max numeric := 340282366920938463463374607431768211455;
    v_width numeric;
    v_now timestamptz := clock_timestamp();
    v_start bigint;
    v_mode text := coalesce(stream_mode, 'PROVISIONED');
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', stream_internal._limit('STREAM_NAME_MAX')::int);
    PERFORM stream_internal._check_stream_mode(v_mode, 'streamModeDetails.streamMode');
    IF v_mode = 'ON_DEMAND' THEN
        IF shard_count IS NOT NULL THEN
            PERFORM stream_internal._raise('ValidationException', 'ShardCount is not expected when StreamMode=ON_DEMAND',
                                           'An on-demand stream starts with 4 shards and is scaled by the stream worker; leave shard_count out.');
        END IF;
        shard_count := stream_internal._limit('ON_DEMAND_INITIAL_SHARDS');
    ELSIF shard_count IS NULL THEN
        PERFORM stream_internal._raise_null('shardCount');
    ELSIF shard_count < 1 THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''shardCount'' failed to satisfy constraint: Member must have value greater than or equal to 1', shard_count));
    END IF;
    -- the database's open shards, every stream's (stream.shard_limit)
    PERFORM stream_internal._check_shard_limit(shard_count);
    IF v_mode = 'ON_DEMAND' THEN
        PERFORM stream_internal._check_on_demand_limit();
    END IF;
    PERFORM stream_internal._check_retention(retention_hours);
    IF EXISTS (SELECT 1 FROM stream.streams s WHERE s.stream_name = create_stream.stream_name) THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Stream %s under account 000000000000 already exists.', stream_name));
    END IF;

    BEGIN
        INSERT INTO stream.streams (stream_name, retention_hours, chunk_hours, stream_mode, created_at, next_shard_index)
        VALUES (create_stream.stream_name, create_stream.retention_hours,
                greatest(1, create_stream.retention_hours / 24), v_mode, v_now, shard_count)
        RETURNING stream_id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Stream %s under account 000000000000 already exists.', stream_name));
    END;

    -- Kinesis' initial split: shard i owns [i*w, (i+1)*w - 1], w = floor(2^128 / N)
    v_width := div(v_max + 1, shard_count);     -- numeric '/' would round first
    v_start := stream_internal._first_seq(stream_internal._hour_bucket(v_now));
    INSERT INTO stream.shards (stream_id, shard_index, starting_hash_key, ending_hash_key, starting_seq, created_at)
    SELECT v_id, i, i * v_width,
           CASE WHEN i = shard_count - 1 THEN v_max ELSE (i + 1) * v_width - 1 END,
           v_start, v_now
      FROM generate_series(0, shard_count - 1) AS i;

    PERFORM stream_internal._create_stream_table(v_id, 'records of stream ' || stream_name);
    PERFORM stream_internal._make_chunks(x) FROM stream.streams x WHERE x.stream_id = v_id;
    PERFORM stream_internal._catalog_changed();
    PERFORM stream_internal._wake_worker();
END $$;
SELECT stream_internal._api_entry('create_stream');


-- Like Kinesis, refuses (ResourceInUseException) while consumers are
-- associated with the stream unless enforce_consumer_deletion: registered
-- (enhanced fan-out) consumers, consumer applications with their leases and
-- checkpoints, and delivery streams reading the stream.  Enforced, they are
-- deleted with it: a delivery stream whose source is gone could only fail,
-- and Firehose has no state for it but deletion.
CREATE FUNCTION stream_internal.delete_stream(stream_name text, enforce_consumer_deletion boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
    v_consumers text;
    v_apps text;
    v_delivery text;
    d record;
BEGIN
    -- registering a consumer or an application (their foreign keys) and
    -- creating a delivery stream lock the row too: none can slip in
    PERFORM 1 FROM stream.streams st WHERE st.stream_id = s.stream_id FOR UPDATE;
    IF NOT FOUND THEN       -- deleted meanwhile
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', s.stream_name));
    END IF;
    SELECT string_agg(c.consumer_name, ', ' ORDER BY c.consumer_name) INTO v_consumers
      FROM stream.stream_consumers c WHERE c.stream_id = s.stream_id;
    SELECT string_agg(a.application_name, ', ' ORDER BY a.application_name) INTO v_apps
      FROM stream.applications a WHERE a.stream_id = s.stream_id;
    SELECT string_agg(x.delivery_stream_name, ', ' ORDER BY x.delivery_stream_name) INTO v_delivery
      FROM stream.delivery_streams x JOIN stream.processors p ON p.processor_id = x.delivery_stream_id
     WHERE p.source_stream_id = s.stream_id AND x.delivery_stream_type = 'KinesisStreamAsSource';
    IF NOT coalesce(enforce_consumer_deletion, false) AND num_nonnulls(v_consumers, v_apps, v_delivery) > 0 THEN
        PERFORM stream_internal._raise('ResourceInUseException',
            format('DeleteStream can''t delete 000000000000:%s because there are consumers associated with this data stream. To delete %s anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it.',
                   s.stream_name, s.stream_name),
            hint => format('SELECT stream.delete_stream(%L, enforce_consumer_deletion => true) deletes them with the stream.', s.stream_name),
            detail => concat_ws(' ', 'Registered consumers: ' || v_consumers || '.',
                                'Consumer applications: ' || v_apps || '.',
                                'Delivery streams reading it: ' || v_delivery || '.'));
    END IF;
    FOR d IN SELECT x.delivery_stream_id, x.delivery_stream_name
               FROM stream.delivery_streams x JOIN stream.processors p ON p.processor_id = x.delivery_stream_id
              WHERE p.source_stream_id = s.stream_id AND x.delivery_stream_type = 'KinesisStreamAsSource'
              ORDER BY x.delivery_stream_id LOOP
        -- after a delivery of it under way; its catalog rows go with the processor
        PERFORM stream_internal._processor_drop(d.delivery_stream_id);
        RAISE NOTICE 'delivery stream % read stream % and was deleted with it', d.delivery_stream_name, s.stream_name;
    END LOOP;
    EXECUTE format('DROP TABLE %s', stream_internal._data_table(s.stream_id));
    -- registered consumers, applications, leases and shards go with the row (ON DELETE CASCADE)
    DELETE FROM stream.streams WHERE stream_id = s.stream_id;
    PERFORM stream_internal._forget_stream(s.stream_id);
    PERFORM stream_internal._catalog_changed();
END $$;
SELECT stream_internal._api_entry('delete_stream');


-- The signed NextToken of the list functions (src/streams/next_token.c):
-- kind S for list_streams, C for list_stream_consumers, L for list_shards;
-- the position is the last key of the page (list_shards: a jsonb object).
CREATE FUNCTION stream_internal._next_token(kind text, "position" text) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_next_token' LANGUAGE C STABLE STRICT;
CREATE FUNCTION stream_internal._next_token_position(kind text, token text) RETURNS text
    AS 'MODULE_PATHNAME', 'stream_next_token_position' LANGUAGE C STABLE STRICT;

-- A list function's paging arguments, checked as Kinesis checks them: the
-- limit member (1 to 10000; above p_max a page holds p_max), the exclusive
-- start name, and not both it and a NextToken.  Returns the position the
-- page starts after (NULL: the first), from the token or the start name.
CREATE FUNCTION stream_internal._page_start(p_kind text, p_limit int, p_limit_member text,
                                            p_exclusive_start text, p_start_member text,
                                            p_next_token text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_limit < 1 OR p_limit > stream_internal._limit('LIST_LIMIT_MAX') THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''%s'' failed to satisfy constraint: Member must have value %s',
                                       p_limit, p_limit_member,
                                       CASE WHEN p_limit < 1 THEN 'greater than or equal to 1'
                                            ELSE 'less than or equal to ' || stream_internal._limit('LIST_LIMIT_MAX') END));
    END IF;
    IF p_exclusive_start IS NOT NULL THEN
        PERFORM stream_internal._check_name(p_exclusive_start, p_start_member, stream_internal._limit('STREAM_NAME_MAX')::int);
    END IF;
    IF p_next_token IS NULL THEN
        RETURN p_exclusive_start;
    END IF;
    IF p_exclusive_start IS NOT NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('NextToken and %s cannot be provided together.',
                                       upper(left(p_start_member, 1)) || substr(p_start_member, 2)));
    END IF;
    RETURN stream_internal._next_token_position(p_kind, p_next_token);
END $$;

-- ListStreams: names in code point order, at most "limit" (default and at
-- most 100) after exclusive_start_stream_name or where next_token says;
-- every row carries has_more_streams and, when there are more, the
-- next_token to go on with (valid 300 s).  No row: no more streams.
CREATE FUNCTION stream.list_streams(exclusive_start_stream_name text DEFAULT NULL, "limit" int DEFAULT NULL,
                                    next_token text DEFAULT NULL)
RETURNS TABLE(stream_name text, stream_arn text, stream_status text, stream_mode text,
              stream_creation_timestamp timestamptz, has_more_streams boolean, next_token text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH args AS (
        SELECT stream_internal._page_start('S', $2, 'limit', $1, 'exclusiveStartStreamName', $3) AS after,
               least(coalesce($2, stream_internal._limit('LIST_PAGE_MAX')), stream_internal._limit('LIST_PAGE_MAX')) AS n),
    page AS (
        SELECT s.stream_name, stream_internal._stream_status(s) AS stream_status, s.stream_mode, s.created_at
          FROM stream.streams s, args
         WHERE s.stream_mode <> 'FIREHOSE_DIRECT_PUT'     -- internal buffers of delivery streams
           AND (args.after IS NULL OR s.stream_name COLLATE "C" > args.after COLLATE "C")
         ORDER BY s.stream_name COLLATE "C"
         LIMIT (SELECT n + 1 FROM args)),
    shown AS (
        SELECT p.* FROM page p ORDER BY p.stream_name COLLATE "C" LIMIT (SELECT n FROM args)),
    -- one token a call: it carries the time it was made
    more AS MATERIALIZED (
        SELECT x.more, CASE WHEN x.more THEN stream_internal._next_token('S', x.last) END AS token
          FROM (SELECT (SELECT count(*) FROM page) > (SELECT n FROM args) AS more,
                       (SELECT max(stream_name COLLATE "C") FROM shown) AS last) x)
    SELECT sh.stream_name, stream_internal._arn(sh.stream_name), sh.stream_status, sh.stream_mode, sh.created_at,
           m.more, m.token
      FROM shown sh, more m
     ORDER BY sh.stream_name COLLATE "C"
$$;

-- stream.list_shards: src/sql/10_shards.sql, with resharding.

-- Every shard not expired, closed ones with their ending sequence number,
-- "limit" of them (default 100, as Kinesis) after exclusive_start_shard_id;
-- HasMoreShards says whether more follow.
CREATE FUNCTION stream.describe_stream(stream_name text, "limit" int DEFAULT 100,
                                       exclusive_start_shard_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
    v_after int := -1;
    v_shards jsonb;
    v_count int;
BEGIN
    IF "limit" IS NOT NULL AND ("limit" < 1 OR "limit" > 10000) THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''limit'' failed to satisfy constraint: Member must have value %s',
                                       "limit", CASE WHEN "limit" < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to 10000' END));
    END IF;
    IF exclusive_start_shard_id IS NOT NULL THEN
        PERFORM stream_internal._check_name(exclusive_start_shard_id, 'exclusiveStartShardId', 128);
        v_after := coalesce(stream_internal._shard_index(exclusive_start_shard_id), -1);
    END IF;
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'ShardId', stream_internal._shard_id(p.shard_index),
               'ParentShardId', stream_internal._shard_id(p.parent_shard_index),
               'AdjacentParentShardId', stream_internal._shard_id(p.adjacent_parent_shard_index),
               'HashKeyRange', jsonb_build_object('StartingHashKey', p.starting_hash_key::text,
                                                  'EndingHashKey', p.ending_hash_key::text),
               'SequenceNumberRange', jsonb_strip_nulls(jsonb_build_object(
                   'StartingSequenceNumber', stream_internal._sequence_text(s.stream_id, p.shard_index, p.starting_seq),
                   'EndingSequenceNumber', stream_internal._sequence_text(s.stream_id, p.shard_index, p.ending_seq)))))
             ORDER BY p.shard_index),
           count(*)
      INTO v_shards, v_count
      FROM (SELECT sh.* FROM stream.shards sh
             WHERE sh.stream_id = s.stream_id AND sh.shard_index > v_after
               AND NOT stream_internal._shard_expired(sh, s)
             ORDER BY sh.shard_index LIMIT least(coalesce("limit", 100), 100) + 1) p;
    IF v_count > least(coalesce("limit", 100), 100) THEN
        v_shards := v_shards - (jsonb_array_length(v_shards) - 1);   -- the one beyond the page
    END IF;
    RETURN jsonb_build_object(
        'StreamName', s.stream_name,
        'StreamARN', stream_internal._arn(s.stream_name),
        'StreamStatus', stream_internal._stream_status(s),
        'StreamModeDetails', jsonb_build_object('StreamMode', s.stream_mode),
        'Shards', coalesce(v_shards, '[]'::jsonb),
        'HasMoreShards', v_count > least(coalesce("limit", 100), 100),
        'RetentionPeriodHours', s.retention_hours,
        'StreamCreationTimestamp', round(extract(epoch FROM s.created_at), 3),
        'EnhancedMonitoring', jsonb_build_array(jsonb_build_object('ShardLevelMetrics', to_jsonb(s.shard_level_metrics))),
        'EncryptionType', 'NONE');
END $$;

CREATE FUNCTION stream.describe_stream_summary(stream_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
BEGIN
    RETURN jsonb_build_object(
        'StreamName', s.stream_name,
        'StreamARN', stream_internal._arn(s.stream_name),
        'StreamStatus', stream_internal._stream_status(s),
        'StreamModeDetails', jsonb_build_object('StreamMode', s.stream_mode),
        'RetentionPeriodHours', s.retention_hours,
        'StreamCreationTimestamp', round(extract(epoch FROM s.created_at), 3),
        'EnhancedMonitoring', jsonb_build_array(jsonb_build_object('ShardLevelMetrics', to_jsonb(s.shard_level_metrics))),
        'EncryptionType', 'NONE',
        'OpenShardCount', (SELECT count(*) FROM stream.shards sh
                            WHERE sh.stream_id = s.stream_id AND sh.ending_seq IS NULL),
        'ConsumerCount', (SELECT count(*) FROM stream.stream_consumers c WHERE c.stream_id = s.stream_id),
        'MaxRecordSizeInKiB', 1024);
END $$;

-- Change a stream's retention; p_increase says which way it may move.
CREATE FUNCTION stream_internal._set_retention(p_stream text, p_hours int, p_increase bool)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(p_stream);
BEGIN
    PERFORM stream_internal._check_retention(p_hours);
    IF p_increase AND p_hours < s.retention_hours THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Requested retention period (%s hours) for stream %s can not be shorter than existing retention period (%s hours). Use DecreaseRetentionPeriod API.',
            p_hours, s.stream_name, s.retention_hours));
    ELSIF NOT p_increase AND p_hours > s.retention_hours THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Requested retention period (%s hours) for stream %s can not be longer than existing retention period (%s hours). Use IncreaseRetentionPeriod API.',
            p_hours, s.stream_name, s.retention_hours));
    END IF;
    UPDATE stream.streams SET retention_hours = p_hours WHERE stream_id = s.stream_id;
    PERFORM stream_internal._catalog_changed();
END $$;

CREATE FUNCTION stream_internal.increase_stream_retention_period(stream_name text, retention_period_hours int)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._set_retention(stream_name, retention_period_hours, true) $$;
SELECT stream_internal._api_entry('increase_stream_retention_period');


CREATE FUNCTION stream_internal.decrease_stream_retention_period(stream_name text, retention_period_hours int)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._set_retention(stream_name, retention_period_hours, false) $$;
SELECT stream_internal._api_entry('decrease_stream_retention_period');


-- The name of a role given as regrole: NULL and OIDs of no role are refused
-- here, not by the GRANT built from it.
CREATE FUNCTION stream_internal._role_name(p_role regrole) RETURNS name
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name name;
BEGIN
    IF p_role IS NULL THEN
        PERFORM stream_internal._raise_null('role');
    END IF;
    SELECT rolname INTO v_name FROM pg_roles WHERE oid = p_role;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('role with OID %s does not exist', p_role::oid));
    END IF;
    RETURN v_name;
END $$;

-- Per-stream privileges: 'read' (get_shard_iterator, get_records),
-- 'write' (put_record, put_records) or 'read_write'.
CREATE FUNCTION stream_internal._stream_access(p_grant bool, p_stream text, p_role regrole, p_access text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(p_stream);
    privs text := CASE p_access WHEN 'read' THEN 'SELECT' WHEN 'write' THEN 'INSERT'
                                WHEN 'read_write' THEN 'SELECT, INSERT' END;
BEGIN
    IF p_grant IS NULL THEN
        PERFORM stream_internal._raise_null('grant');
    ELSIF p_access IS NULL THEN
        PERFORM stream_internal._raise_null('access');
    ELSIF privs IS NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('access must be ''read'', ''write'' or ''read_write'', not %L', p_access));
    END IF;
    EXECUTE format(CASE WHEN p_grant THEN 'GRANT %s ON %s TO %I' ELSE 'REVOKE %s ON %s FROM %I' END,
                   privs, stream_internal._data_table(s.stream_id), stream_internal._role_name(p_role));
END $$;

CREATE FUNCTION stream_internal.grant_stream_access(stream_name text, role regrole, access text DEFAULT 'read')
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._stream_access(true, stream_name, role, access) $$;
SELECT stream_internal._api_entry('grant_stream_access');


CREATE FUNCTION stream_internal.revoke_stream_access(stream_name text, role regrole, access text DEFAULT 'read_write')
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._stream_access(false, stream_name, role, access) $$;
SELECT stream_internal._api_entry('revoke_stream_access');


-- Managing streams is for administrators; they grant it on as they see fit.
REVOKE ALL ON FUNCTION stream.create_stream(text, int, int, text), stream.delete_stream(text, boolean),
    stream.increase_stream_retention_period(text, int), stream.decrease_stream_retention_period(text, int),
    stream.grant_stream_access(text, regrole, text), stream.revoke_stream_access(text, regrole, text),
    stream.run_maintenance(), stream_internal._make_chunks(stream.streams), stream_internal._trim_chunks(stream.streams),
    stream_internal._add_chunk(stream.streams, bigint), stream_internal._add_chunk_for_put(int, bigint), stream_internal._maintain_stream(int),
    stream_internal._set_retention(text, int, bool), stream_internal._stream_access(bool, text, regrole, text) FROM PUBLIC;
-- helpers only the SECURITY DEFINER functions above call (and 40_delivery.sql's, also SECURITY DEFINER)
REVOKE ALL ON FUNCTION stream_internal._check_retention(int), stream_internal._role_name(regrole) FROM PUBLIC;
