---------------------------------------------------------------------------
-- Processors: the consumer runtime's catalog (src/runtime/runtime.h).
-- A processor is a registered consumer of one stream that the background
-- worker runs: a delivery stream today.  It reads through the readable
-- window, in units of fixed per-shard ranges, and checkpoints per shard
-- and lane in the transaction that records the unit's effects.
---------------------------------------------------------------------------

-- The kinds a client of the runtime registered (src/runtime/kind.c): the
-- one list of them.
CREATE FUNCTION stream_internal._processor_kind_known(kind text) RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_processor_kind_known' LANGUAGE C IMMUTABLE STRICT;

CREATE TABLE stream.processors (
    processor_id     serial PRIMARY KEY,
    processor_kind   text NOT NULL CHECK (stream_internal._processor_kind_known(processor_kind)),
    source_stream_id int NOT NULL,           -- the stream it reads
    owner            regrole NOT NULL,       -- its code runs as this role; a dump names the role
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON stream.processors (source_stream_id);

-- Per shard and lane, the next sequence number to process.  Lane 0 is the
-- whole shard; a client that splits a shard into lanes (by partition key)
-- keeps a checkpoint per lane.
CREATE TABLE stream.processor_checkpoints (
    processor_id int NOT NULL REFERENCES stream.processors ON DELETE CASCADE,
    shard_index  int NOT NULL,
    lane         int NOT NULL DEFAULT 0,
    next_seq     bigint NOT NULL,
    PRIMARY KEY (processor_id, shard_index, lane)
) WITH (fillfactor = 50);

-- The unit in flight of a processor whose units span transactions (at most
-- one): its fixed ranges, redone exactly after a crash.  A client's own
-- per-unit state references this row ON DELETE CASCADE.
CREATE TABLE stream.processor_pending (
    processor_id  int PRIMARY KEY REFERENCES stream.processors ON DELETE CASCADE,
    unit_no       bigint NOT NULL,
    shard_indexes int[] NOT NULL,
    lanes         int[] NOT NULL,
    from_seqs     bigint[] NOT NULL,
    to_seqs       bigint[] NOT NULL,
    min_arrival   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Unit numbers, the last unit, the last error and the back-off; one small
-- row per processor.
CREATE TABLE stream.processor_progress (
    processor_id    int PRIMARY KEY REFERENCES stream.processors ON DELETE CASCADE,
    next_unit_no    bigint NOT NULL DEFAULT 1,
    last_unit_at    timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    failed_attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz
) WITH (fillfactor = 50);

-- Records a unit gave up on (dead letters), each with the client's
-- envelope, written in the unit's transaction.
CREATE TABLE stream.processor_errors (
    processor_id int NOT NULL REFERENCES stream.processors ON DELETE CASCADE,
    unit_no      bigint NOT NULL,
    error_type   text NOT NULL,
    envelope     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON stream.processor_errors (processor_id, unit_no);

-- Progress rows hold the last error, error rows record data: a backstop
-- behind the revoke below, each role sees the rows of the processors it
-- owns only (superusers, and so the worker, all of them).
CREATE FUNCTION stream_internal._owns_processor(p_processor_id int) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM stream.processors p
                    WHERE p.processor_id = p_processor_id AND pg_catalog.pg_has_role(p.owner, 'USAGE'))
$$;
ALTER TABLE stream.processor_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.processor_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY progress_by_owner ON stream.processor_progress USING (stream_internal._owns_processor(processor_id));
CREATE POLICY errors_by_owner ON stream.processor_errors USING (stream_internal._owns_processor(processor_id));

SELECT pg_catalog.pg_extension_config_dump('stream.processors', '');
SELECT pg_catalog.pg_extension_config_dump('stream.processors_processor_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stream.processor_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('stream.processor_pending', '');
SELECT pg_catalog.pg_extension_config_dump('stream.processor_progress', '');
SELECT pg_catalog.pg_extension_config_dump('stream.processor_errors', '');
-- No privileges for PUBLIC: errors hold record data.  A role reads the
-- processors it may see through stream.processor_status.
REVOKE ALL ON stream.processors, stream.processors_processor_id_seq, stream.processor_checkpoints,
    stream.processor_pending, stream.processor_progress, stream.processor_errors FROM PUBLIC;

-- One row per processor whose owner the querying role is a member of
-- (superusers: all): its unit in flight, last unit, last error, back-off.
CREATE VIEW stream.processor_status WITH (security_barrier) AS
SELECT p.processor_id, p.processor_kind, p.owner, s.stream_name AS source_stream_name,
       pe.unit_no AS pending_unit, pe.created_at AS pending_since,
       g.next_unit_no - 1 AS units, g.last_unit_at, g.last_error, g.last_error_at,
       g.failed_attempts, g.next_attempt_at
  FROM stream.processors p
  JOIN stream.processor_progress g USING (processor_id)
  LEFT JOIN stream.streams s ON s.stream_id = p.source_stream_id
  LEFT JOIN stream.processor_pending pe USING (processor_id)
 WHERE pg_catalog.pg_has_role(current_user, p.owner, 'MEMBER');
GRANT SELECT ON stream.processor_status TO PUBLIC;

---------------------------------------------------------------------------
-- The runtime's bookkeeping, one function per step (called by the worker
-- through src/runtime/checkpoint.c and round.c; EXECUTE for the extension's
-- owner only, 99_finish.sql)
---------------------------------------------------------------------------

-- LATEST for a new processor: the shard's stable sequence now
CREATE FUNCTION stream_internal._stable_seq(stream_id int, shard_index int) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_stable_seq' LANGUAGE C VOLATILE STRICT;

-- A new processor of kind on a stream, with a checkpoint per shard from
-- starting_position (LATEST or TRIM_HORIZON).  Returns its id.
CREATE FUNCTION stream_internal._processor_register(p_kind text, p_stream_id int, p_owner regrole,
                                                    p_starting_position text, p_created_at timestamptz)
RETURNS int LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_id int;
BEGIN
    INSERT INTO stream.processors (processor_kind, source_stream_id, owner, created_at)
    VALUES (p_kind, p_stream_id, p_owner, p_created_at)
    RETURNING processor_id INTO v_id;
    INSERT INTO stream.processor_progress (processor_id) VALUES (v_id);
    INSERT INTO stream.processor_checkpoints (processor_id, shard_index, lane, next_seq)
    SELECT v_id, sh.shard_index, 0,
           CASE WHEN p_starting_position <> 'LATEST' THEN sh.starting_seq
                WHEN sh.ending_seq IS NULL THEN stream_internal._stable_seq(p_stream_id, sh.shard_index)
                ELSE sh.ending_seq + 1 END      -- LATEST of a closed shard: its end, nothing to read
      FROM stream.shards sh WHERE sh.stream_id = p_stream_id;
    RETURN v_id;
END $$;

-- Drop a processor (its checkpoints, unit in flight, progress, errors and
-- the client rows that reference it go with it), after a unit under way.
CREATE FUNCTION stream_internal._processor_drop(p_id int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- waits for a unit of it that is under way (src/locktag.h)
    PERFORM stream_internal._xact_lock('processor_unit', p_id);
    DELETE FROM stream.processors WHERE processor_id = p_id;
END $$;

-- Step 1 of a unit: its number, and with p_pending its ranges as the
-- processor's pending unit.
CREATE FUNCTION stream_internal._processor_begin_unit(p_id int, p_shards int[], p_lanes int[],
                                                      p_from bigint[], p_to bigint[],
                                                      p_min_arrival timestamptz, p_pending bool)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_unit bigint;
BEGIN
    UPDATE stream.processor_progress SET next_unit_no = next_unit_no + 1
     WHERE processor_id = p_id RETURNING next_unit_no - 1 INTO v_unit;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream.processor_progress has no row for processor %', p_id;
    END IF;
    IF p_pending THEN
        INSERT INTO stream.processor_pending (processor_id, unit_no, shard_indexes, lanes, from_seqs, to_seqs, min_arrival)
        VALUES (p_id, v_unit, p_shards, p_lanes, p_from, p_to, p_min_arrival);
    END IF;
    RETURN v_unit;
END $$;

-- The last step of a unit, in the transaction of its effects: the
-- checkpoints advance to the ends of its ranges, the pending unit goes, the
-- back-off ends.
CREATE FUNCTION stream_internal._processor_finish_unit(p_id int, p_unit bigint, p_shards int[], p_lanes int[],
                                                       p_to bigint[])
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO stream.processor_checkpoints AS c (processor_id, shard_index, lane, next_seq)
    SELECT p_id, r.s, r.l, r.t FROM unnest(p_shards, p_lanes, p_to) AS r(s, l, t)
        ON CONFLICT (processor_id, shard_index, lane) DO UPDATE SET next_seq = EXCLUDED.next_seq;
    DELETE FROM stream.processor_pending WHERE processor_id = p_id AND unit_no = p_unit;
    UPDATE stream.processor_progress SET last_unit_at = clock_timestamp(), failed_attempts = 0,
           next_attempt_at = NULL, last_error = NULL
     WHERE processor_id = p_id;
END $$;

-- A closed shard with nothing left to process ends without a unit
-- (runtime_finish_empty_ends): its checkpoint moves past its end, so its
-- children may be read.
CREATE FUNCTION stream_internal._processor_checkpoint_to(p_id int, p_shard int, p_lane int, p_next bigint)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO stream.processor_checkpoints AS c (processor_id, shard_index, lane, next_seq)
    VALUES (p_id, p_shard, p_lane, p_next)
        ON CONFLICT (processor_id, shard_index, lane) DO UPDATE SET next_seq = greatest(c.next_seq, EXCLUDED.next_seq)
$$;

-- A unit failed: the error shows, and the processor waits 1 s, doubling to
-- 30 s, before its next unit.
CREATE FUNCTION stream_internal._processor_failed(p_id int, p_message text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE stream.processor_progress SET last_error = p_message, last_error_at = clock_timestamp(),
           failed_attempts = failed_attempts + 1,
           next_attempt_at = clock_timestamp() + make_interval(secs => least(30, power(2, least(failed_attempts, 10))))
     WHERE processor_id = p_id
$$;
