---------------------------------------------------------------------------
-- Metrics (the CloudWatch analogue) and consumer lag
---------------------------------------------------------------------------
-- Puts and reads count per shard and minute in shared memory
-- (src/streams/meter.c); the database's worker flushes the counts here
-- every stream.metrics_flush_interval (src/bgw/metrics_flush.c), and
-- stream.flush_metrics() makes it flush now.  Stream-level sums are always
-- kept; per-shard rows only for the metrics enable_enhanced_monitoring
-- switched on for the stream.  Minutes older than stream.metrics_retention
-- (24 h) are deleted.  No foreign key ties the rows to stream.streams, so
-- that the worker's writes never wait for a user's transaction that
-- deletes a stream: the views show rows of existing streams only, and
-- retention deletes the rest.
--
-- Access: a role sees the metrics and the lag of the streams it may read,
-- and the lag of the applications and processors it may see; no role has
-- privileges on the tables.

CREATE TABLE stream.stream_metric_data (
    stream_id   int NOT NULL,
    minute      timestamptz NOT NULL,
    incoming_bytes   bigint NOT NULL DEFAULT 0,
    incoming_records bigint NOT NULL DEFAULT 0,
    outgoing_bytes   bigint NOT NULL DEFAULT 0,
    outgoing_records bigint NOT NULL DEFAULT 0,
    write_provisioned_throughput_exceeded bigint NOT NULL DEFAULT 0,
    read_provisioned_throughput_exceeded  bigint NOT NULL DEFAULT 0,
    iterator_age_milliseconds bigint,           -- the minute's largest; NULL: no read
    PRIMARY KEY (stream_id, minute)
);
CREATE INDEX ON stream.stream_metric_data (minute);

-- NULL in a metric column: that metric was not enabled for the stream.
CREATE TABLE stream.shard_metric_data (
    stream_id   int NOT NULL,
    shard_index int NOT NULL,
    minute      timestamptz NOT NULL,
    incoming_bytes   bigint,
    incoming_records bigint,
    outgoing_bytes   bigint,
    outgoing_records bigint,
    write_provisioned_throughput_exceeded bigint,
    read_provisioned_throughput_exceeded  bigint,
    iterator_age_milliseconds bigint,
    PRIMARY KEY (stream_id, shard_index, minute)
);
CREATE INDEX ON stream.shard_metric_data (minute);
REVOKE ALL ON stream.stream_metric_data, stream.shard_metric_data FROM PUBLIC;
ALTER TABLE stream.stream_metric_data ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.shard_metric_data ENABLE ROW LEVEL SECURITY;

-- The metric names of Kinesis, in its order (ALL stands for every one).
CREATE FUNCTION stream_internal._metric_names() RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY['IncomingBytes', 'IncomingRecords', 'OutgoingBytes', 'OutgoingRecords',
                 'WriteProvisionedThroughputExceeded', 'ReadProvisionedThroughputExceeded',
                 'IteratorAgeMilliseconds']
$$;

CREATE VIEW stream.stream_metrics WITH (security_barrier) AS
WITH readable AS MATERIALIZED (
    SELECT st.stream_id, st.stream_name FROM stream.streams st WHERE stream_internal._can_read(st.stream_id)
)
SELECT r.stream_name, m.minute, m.incoming_bytes, m.incoming_records, m.outgoing_bytes, m.outgoing_records,
       m.write_provisioned_throughput_exceeded, m.read_provisioned_throughput_exceeded,
       m.iterator_age_milliseconds
  FROM readable r JOIN stream.stream_metric_data m ON m.stream_id = r.stream_id;
GRANT SELECT ON stream.stream_metrics TO PUBLIC;

CREATE VIEW stream.shard_metrics WITH (security_barrier) AS
WITH readable AS MATERIALIZED (
    SELECT st.stream_id, st.stream_name FROM stream.streams st WHERE stream_internal._can_read(st.stream_id)
)
SELECT r.stream_name, stream_internal._shard_id(m.shard_index) AS shard_id, m.minute,
       m.incoming_bytes, m.incoming_records, m.outgoing_bytes, m.outgoing_records,
       m.write_provisioned_throughput_exceeded, m.read_provisioned_throughput_exceeded,
       m.iterator_age_milliseconds
  FROM readable r JOIN stream.shard_metric_data m ON m.stream_id = r.stream_id;
GRANT SELECT ON stream.shard_metrics TO PUBLIC;

-- The worker's flush (src/bgw/metrics_flush.c): one row per shard and
-- minute of unflushed counts, added to the stream's row of the minute and,
-- for the enabled metrics, to the shard's.  Counts of a stream that was
-- deleted, or whose id now names another table, are dropped.  Only the
-- worker writes these tables, so the upserts wait for nothing but each
-- other; lock_timeout guards against a superuser's LOCK TABLE.
CREATE FUNCTION stream_internal._metrics_write(p_relids oid[], p_stream_ids int[], p_shards int[],
        p_minutes timestamptz[], p_in_bytes bigint[], p_in_records bigint[], p_out_bytes bigint[],
        p_out_records bigint[], p_write_throttled bigint[], p_read_throttled bigint[], p_ages bigint[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s' AS $$
    WITH d AS MATERIALIZED (
        SELECT u.*
          FROM unnest(p_relids, p_stream_ids, p_shards, p_minutes, p_in_bytes, p_in_records, p_out_bytes,
                      p_out_records, p_write_throttled, p_read_throttled, p_ages)
               AS u(relid, stream_id, shard_index, minute, ib, ir, ob, orc, wt, rt, age)
          JOIN stream.streams s ON s.stream_id = u.stream_id
         WHERE to_regclass(stream_internal._data_table(u.stream_id)) = u.relid
    ), streams AS (
        INSERT INTO stream.stream_metric_data AS m
               (stream_id, minute, incoming_bytes, incoming_records, outgoing_bytes, outgoing_records,
                write_provisioned_throughput_exceeded, read_provisioned_throughput_exceeded,
                iterator_age_milliseconds)
        SELECT d.stream_id, d.minute, sum(d.ib), sum(d.ir), sum(d.ob), sum(d.orc), sum(d.wt), sum(d.rt), max(d.age)
          FROM d GROUP BY d.stream_id, d.minute
        ON CONFLICT (stream_id, minute) DO UPDATE SET
            incoming_bytes = m.incoming_bytes + EXCLUDED.incoming_bytes,
            incoming_records = m.incoming_records + EXCLUDED.incoming_records,
            outgoing_bytes = m.outgoing_bytes + EXCLUDED.outgoing_bytes,
            outgoing_records = m.outgoing_records + EXCLUDED.outgoing_records,
            write_provisioned_throughput_exceeded = m.write_provisioned_throughput_exceeded + EXCLUDED.write_provisioned_throughput_exceeded,
            read_provisioned_throughput_exceeded = m.read_provisioned_throughput_exceeded + EXCLUDED.read_provisioned_throughput_exceeded,
            iterator_age_milliseconds = greatest(m.iterator_age_milliseconds, EXCLUDED.iterator_age_milliseconds)
    )
    INSERT INTO stream.shard_metric_data AS m
           (stream_id, shard_index, minute, incoming_bytes, incoming_records, outgoing_bytes, outgoing_records,
            write_provisioned_throughput_exceeded, read_provisioned_throughput_exceeded, iterator_age_milliseconds)
    SELECT d.stream_id, d.shard_index, d.minute,
           CASE WHEN 'IncomingBytes' = ANY (e.shard_level_metrics) THEN sum(d.ib) END,
           CASE WHEN 'IncomingRecords' = ANY (e.shard_level_metrics) THEN sum(d.ir) END,
           CASE WHEN 'OutgoingBytes' = ANY (e.shard_level_metrics) THEN sum(d.ob) END,
           CASE WHEN 'OutgoingRecords' = ANY (e.shard_level_metrics) THEN sum(d.orc) END,
           CASE WHEN 'WriteProvisionedThroughputExceeded' = ANY (e.shard_level_metrics) THEN sum(d.wt) END,
           CASE WHEN 'ReadProvisionedThroughputExceeded' = ANY (e.shard_level_metrics) THEN sum(d.rt) END,
           CASE WHEN 'IteratorAgeMilliseconds' = ANY (e.shard_level_metrics) THEN max(d.age) END
      FROM d JOIN stream.streams e ON e.stream_id = d.stream_id AND cardinality(e.shard_level_metrics) > 0
     GROUP BY d.stream_id, d.shard_index, d.minute, e.shard_level_metrics
    ON CONFLICT (stream_id, shard_index, minute) DO UPDATE SET
        incoming_bytes = CASE WHEN EXCLUDED.incoming_bytes IS NULL THEN m.incoming_bytes
                              ELSE coalesce(m.incoming_bytes, 0) + EXCLUDED.incoming_bytes END,
        incoming_records = CASE WHEN EXCLUDED.incoming_records IS NULL THEN m.incoming_records
                                ELSE coalesce(m.incoming_records, 0) + EXCLUDED.incoming_records END,
        outgoing_bytes = CASE WHEN EXCLUDED.outgoing_bytes IS NULL THEN m.outgoing_bytes
                              ELSE coalesce(m.outgoing_bytes, 0) + EXCLUDED.outgoing_bytes END,
        outgoing_records = CASE WHEN EXCLUDED.outgoing_records IS NULL THEN m.outgoing_records
                                ELSE coalesce(m.outgoing_records, 0) + EXCLUDED.outgoing_records END,
        write_provisioned_throughput_exceeded = CASE WHEN EXCLUDED.write_provisioned_throughput_exceeded IS NULL
                THEN m.write_provisioned_throughput_exceeded
                ELSE coalesce(m.write_provisioned_throughput_exceeded, 0) + EXCLUDED.write_provisioned_throughput_exceeded END,
        read_provisioned_throughput_exceeded = CASE WHEN EXCLUDED.read_provisioned_throughput_exceeded IS NULL
                THEN m.read_provisioned_throughput_exceeded
                ELSE coalesce(m.read_provisioned_throughput_exceeded, 0) + EXCLUDED.read_provisioned_throughput_exceeded END,
        iterator_age_milliseconds = greatest(m.iterator_age_milliseconds, EXCLUDED.iterator_age_milliseconds)
$$;

-- Minutes past retention go (the index on minute finds them).
CREATE FUNCTION stream_internal._metrics_trim(p_keep interval) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s' AS $$
    DELETE FROM stream.stream_metric_data WHERE minute < now() - p_keep;
    DELETE FROM stream.shard_metric_data WHERE minute < now() - p_keep;
$$;

-- Make this database's worker flush the metrics counted so far; true once
-- they are in the tables, false when no worker runs or the timeout passed.
CREATE FUNCTION stream.flush_metrics(timeout_seconds int DEFAULT 60) RETURNS boolean
    AS 'MODULE_PATHNAME', 'stream_flush_metrics' LANGUAGE C VOLATILE;

-- Administrators: each shard's counts of a minute as shared memory holds
-- them (what an on-demand scaler reads), and the slot table.
CREATE FUNCTION stream_internal._live_metrics(stream_id int, minute timestamptz)
RETURNS TABLE(shard_index int, incoming_bytes bigint, incoming_records bigint, outgoing_bytes bigint,
              outgoing_records bigint, write_provisioned_throughput_exceeded bigint,
              read_provisioned_throughput_exceeded bigint, iterator_age_milliseconds bigint)
    AS 'MODULE_PATHNAME', 'stream_live_metrics' LANGUAGE C VOLATILE;
CREATE FUNCTION stream_internal._meter_status(OUT slots int, OUT slots_used int, OUT unmetered bigint)
    AS 'MODULE_PATHNAME', 'stream_meter_status' LANGUAGE C VOLATILE;

---------------------------------------------------------------------------
-- EnableEnhancedMonitoring / DisableEnhancedMonitoring
---------------------------------------------------------------------------

-- The metrics a request names, ALL expanded; ValidationException as Kinesis.
CREATE FUNCTION stream_internal._requested_metrics(p_metrics text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_bad text;
BEGIN
    IF p_metrics IS NULL THEN
        PERFORM stream_internal._raise_null('shardLevelMetrics');
    END IF;
    IF cardinality(p_metrics) < 1 OR cardinality(p_metrics) > 7 THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''shardLevelMetrics'' failed to satisfy constraint: Member must have length %s',
            p_metrics, CASE WHEN cardinality(p_metrics) < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to 7' END));
    END IF;
    SELECT m INTO v_bad FROM unnest(p_metrics) m
     WHERE m IS NULL OR NOT (m = 'ALL' OR m = ANY (stream_internal._metric_names())) LIMIT 1;
    IF FOUND THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''shardLevelMetrics'' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, OutgoingRecords, IteratorAgeMilliseconds, IncomingRecords, ReadProvisionedThroughputExceeded, WriteProvisionedThroughputExceeded, OutgoingBytes, ALL]]',
            p_metrics));
    END IF;
    IF 'ALL' = ANY (p_metrics) THEN
        RETURN stream_internal._metric_names();
    END IF;
    RETURN p_metrics;
END $$;

-- Switch shard-level metrics on (p_enable) or off; Kinesis' answer.
CREATE FUNCTION stream_internal._enhanced_monitoring(p_stream text, p_metrics text[], p_enable bool)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(p_stream);
    v_req text[] := stream_internal._requested_metrics(p_metrics);
    v_current text[];
    v_desired text[];
BEGIN
    SELECT st.shard_level_metrics INTO v_current FROM stream.streams st WHERE st.stream_id = s.stream_id FOR UPDATE;
    SELECT coalesce(array_agg(n ORDER BY o), '{}') INTO v_desired
      FROM unnest(stream_internal._metric_names()) WITH ORDINALITY AS t(n, o)
     WHERE CASE WHEN p_enable THEN n = ANY (v_current) OR n = ANY (v_req)
                ELSE n = ANY (v_current) AND NOT n = ANY (v_req) END;
    UPDATE stream.streams SET shard_level_metrics = v_desired WHERE stream_id = s.stream_id;
    RETURN jsonb_build_object('StreamName', s.stream_name,
                              'CurrentShardLevelMetrics', to_jsonb(v_current),
                              'DesiredShardLevelMetrics', to_jsonb(v_desired),
                              'StreamARN', stream_internal._arn(s.stream_name));
END $$;

CREATE FUNCTION stream_internal.enable_enhanced_monitoring(stream_name text, shard_level_metrics text[])
RETURNS jsonb LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._enhanced_monitoring(stream_name, shard_level_metrics, true) $$;
SELECT stream_internal._api_entry('enable_enhanced_monitoring');

CREATE FUNCTION stream_internal.disable_enhanced_monitoring(stream_name text, shard_level_metrics text[])
RETURNS jsonb LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._enhanced_monitoring(stream_name, shard_level_metrics, false) $$;
SELECT stream_internal._api_entry('disable_enhanced_monitoring');

-- Configuring a stream is for administrators, as its retention is.
REVOKE ALL ON FUNCTION stream.enable_enhanced_monitoring(text, text[]),
    stream.disable_enhanced_monitoring(text, text[]) FROM PUBLIC;

---------------------------------------------------------------------------
-- stream.consumer_lag: every kind of consumer, per shard
---------------------------------------------------------------------------

-- The next number a lease's holder reads (src/streams/lag.c).
CREATE FUNCTION stream_internal._checkpoint_next_seq(stream_id int, shard_index int, checkpoint text,
                                                     initial_timestamp timestamptz) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_checkpoint_next_seq' LANGUAGE C STABLE;
-- How far next_seq is behind the shard's newest committed record, and what
-- holds the shard's stable sequence back (src/streams/lag.c).
CREATE FUNCTION stream_internal._shard_lag(stream_id int, shard_index int, next_seq bigint,
        OUT records_behind bigint, OUT bytes_behind bigint, OUT lag_exact boolean,
        OUT millis_behind_latest bigint, OUT held_back_records bigint, OUT held_back_millis bigint,
        OUT oldest_producer_pid int, OUT oldest_producer_xact_age interval)
    AS 'MODULE_PATHNAME', 'stream_shard_lag' LANGUAGE C STABLE;
-- Where registered consumers last read, from their subscribe_to_shard calls
-- (shared memory; src/streams/consumer_position.c).
CREATE FUNCTION stream_internal._fanout_positions()
RETURNS TABLE(stream_id int, consumer_name text, shard_index int, next_seq bigint, noted_at timestamptz)
    AS 'MODULE_PATHNAME', 'stream_fanout_positions' LANGUAGE C STABLE;

-- One row per consumer and shard: applications per lease (worker_id the
-- lease owner), registered fan-out consumers per shard (position of their
-- last subscribe_to_shard; NULL before the first since the server
-- started), and processors of the worker (delivery streams; later kinds
-- too) per shard.  Each with the rights of the view it comes from:
-- application_leases, stream_consumers, processor_status; and only for
-- streams the role may read.  The functions run as the querying role
-- (they check its read access again).
CREATE VIEW stream.consumer_lag WITH (security_barrier) AS
WITH positions AS MATERIALIZED (
    SELECT 'application'::text AS consumer_type, l.application_name AS consumer_name, l.stream_id,
           l.shard_index, l.lease_owner AS worker_id,
           stream_internal._checkpoint_next_seq(l.stream_id, l.shard_index, l.checkpoint, a.initial_timestamp) AS next_seq,
           NULL::timestamptz AS position_at
      FROM stream.leases l
      JOIN stream.applications a ON a.application_name = l.application_name
     WHERE (pg_catalog.pg_has_role(a.owner, 'MEMBER')
            OR EXISTS (SELECT 1 FROM stream.application_grants g
                        WHERE g.application_name = a.application_name AND pg_catalog.pg_has_role(g.grantee, 'MEMBER')))
       AND stream_internal._can_read(l.stream_id)
    UNION ALL
    SELECT 'consumer', c.consumer_name, c.stream_id, sh.shard_index, NULL, p.next_seq, p.noted_at
      FROM stream.stream_consumers c
      JOIN stream.shards sh ON sh.stream_id = c.stream_id
      LEFT JOIN stream_internal._fanout_positions() p
             ON p.stream_id = c.stream_id AND p.consumer_name = c.consumer_name AND p.shard_index = sh.shard_index
     WHERE stream_internal._can_read(c.stream_id)
    UNION ALL
    SELECT CASE pr.processor_kind WHEN 'delivery' THEN 'delivery_stream' ELSE pr.processor_kind END,
           coalesce(d.delivery_stream_name, 'processor ' || pr.processor_id), pr.source_stream_id,
           cp.shard_index, NULL, cp.next_seq, g.last_unit_at
      FROM stream.processors pr
      JOIN stream.processor_checkpoints cp ON cp.processor_id = pr.processor_id AND cp.lane = 0
      LEFT JOIN stream.processor_progress g ON g.processor_id = pr.processor_id
      LEFT JOIN stream.delivery_streams d ON d.delivery_stream_id = pr.processor_id
     WHERE pg_catalog.pg_has_role(pr.owner, 'MEMBER')
       AND stream_internal._can_read(pr.source_stream_id)
)
SELECT p.consumer_type, p.consumer_name, s.stream_name, stream_internal._shard_id(p.shard_index) AS shard_id,
       p.worker_id,
       stream_internal._sequence_text(p.stream_id, p.shard_index, p.next_seq) AS next_sequence_number,
       p.position_at,
       l.records_behind, l.bytes_behind, l.lag_exact, l.millis_behind_latest,
       l.held_back_records, l.held_back_millis, l.oldest_producer_pid, l.oldest_producer_xact_age
  FROM positions p
  JOIN stream.streams s ON s.stream_id = p.stream_id
  LEFT JOIN LATERAL stream_internal._shard_lag(p.stream_id, p.shard_index, p.next_seq) l ON true;
GRANT SELECT ON stream.consumer_lag TO PUBLIC;
