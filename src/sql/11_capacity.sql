---------------------------------------------------------------------------
-- Capacity modes (Kinesis' StreamModeDetails): PROVISIONED streams keep
-- the shards they are given; ON_DEMAND streams start with 4 and the
-- database's worker scales them from their measured write rate.
-- UpdateStreamMode switches a stream between the two, at most twice in
-- 24 hours; stream.on_demand_stream_limit bounds the on-demand streams of
-- the database (DescribeLimits' OnDemandStreamCountLimit).
--
-- The worker's scaling: src/bgw/autoscale.c measures and decides (the
-- rule is there and in the README, "Capacity"); the reshards it decides on
-- run here, each in a short transaction of its own, with the same
-- _split and _merge as split_shard and merge_shards.  They never wait on
-- a lock a user can hold: the stream's reshard lock, its row and the
-- shard quota's lock are only tried, and a stream busy with any of them
-- is left for the worker's next look ('busy').
---------------------------------------------------------------------------

CREATE FUNCTION stream_internal._on_demand_stream_limit() RETURNS int
    AS 'MODULE_PATHNAME', 'stream_on_demand_stream_limit_sql' LANGUAGE C STABLE;

-- Switches of a stream's mode, for Kinesis' limit of two a stream per 24 hours.
CREATE TABLE stream.stream_mode_updates (
    stream_id  int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ON stream.stream_mode_updates (stream_id, updated_at);
SELECT pg_catalog.pg_extension_config_dump('stream.stream_mode_updates', '');
REVOKE ALL ON stream.stream_mode_updates FROM PUBLIC;

CREATE FUNCTION stream_internal._on_demand_stream_count() RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*)::int FROM stream.streams s WHERE s.stream_mode = 'ON_DEMAND'
$$;

-- DescribeLimits: the database is the account.
CREATE FUNCTION stream.describe_limits() RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'ShardLimit', stream_internal._shard_limit(),
        'OpenShardCount', stream_internal._open_shard_count(),
        'OnDemandStreamCount', stream_internal._on_demand_stream_count(),
        'OnDemandStreamCountLimit', stream_internal._on_demand_stream_limit())
$$;

-- A StreamMode member: not null, one of Kinesis' two.
CREATE FUNCTION stream_internal._check_stream_mode(p_mode text, p_member text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_mode IS NULL THEN
        PERFORM stream_internal._raise_null(p_member);
    ELSIF p_mode NOT IN ('PROVISIONED', 'ON_DEMAND') THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''%s'' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]',
                                       p_mode, p_member));
    END IF;
END $$;

-- Refuse one more on-demand stream beyond stream.on_demand_stream_limit.
-- Requests that add one take turns with those that open shards (the same
-- lock as _check_shard_limit, to commit), so two cannot both pass the count.
CREATE FUNCTION stream_internal._check_on_demand_limit() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count int;
    v_limit int := stream_internal._on_demand_stream_limit();
BEGIN
    IF NOT stream_internal._xact_lock_within('shard_limit', 0, 1000) THEN
        PERFORM stream_internal._raise('LimitExceededException', 'Rate exceeded for account 000000000000: another request that adds on-demand streams or opens shards has not finished.', 'Retry the request.');
    END IF;
    v_count := stream_internal._on_demand_stream_count();
    IF v_count >= v_limit THEN
        PERFORM stream_internal._raise('LimitExceededException', format('This request would exceed the on-demand stream count limit for the account 000000000000 in local. Current on-demand stream count for the account: %s. Limit: %s.',
                                       v_count, v_limit),
                                       'The limit is the setting stream.on_demand_stream_limit (ALTER DATABASE ... SET stream.on_demand_stream_limit = ...).');
    END IF;
END $$;

-- The stream a StreamARN names, or a stream name (every other function of
-- the extension takes names; UpdateStreamMode takes only an ARN in
-- Kinesis): the ARN's pattern and length as Kinesis checks them
-- (ValidationException), another account's or region's ARN names no
-- stream here (ResourceNotFoundException).
CREATE FUNCTION stream_internal._stream_by_arn(p_arn text, p_member text) RETURNS stream.streams
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_prefix text := stream_internal._arn('');
BEGIN
    IF p_arn IS NULL THEN
        PERFORM stream_internal._raise_null(p_member);
    ELSIF left(p_arn, 4) <> 'arn:' THEN
        RETURN stream_internal._stream(p_arn);
    ELSIF char_length(p_arn) > 2048 THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''%s'' failed to satisfy constraint: Member must have length less than or equal to 2048',
                                       p_arn, p_member));
    ELSIF p_arn !~ '^arn:aws.*:kinesis:.*:[0-9]{12}:stream/\S+$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''%s'' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\d{12}:stream/\S+',
                                       p_arn, p_member));
    ELSIF left(p_arn, char_length(v_prefix)) <> v_prefix THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', p_arn),
                                       format('Streams of this database have ARNs %s<name>.', v_prefix));
    END IF;
    RETURN stream_internal._stream(substr(p_arn, char_length(v_prefix) + 1));
END $$;

-- UpdateStreamMode.  stream_arn: the stream's ARN (or its name);
-- stream_mode_details: {"StreamMode": "PROVISIONED" | "ON_DEMAND"}.  The
-- shards stay as they are: an on-demand stream is then scaled from them
-- (and merged down to no fewer than 4), a provisioned one keeps what it
-- has.  Asking for the mode the stream has changes nothing (and counts
-- for no switch).  Waits for a reshard under way (the stream shows
-- UPDATING), at most a second.
CREATE FUNCTION stream_internal.update_stream_mode(stream_arn text, stream_mode_details jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    v_mode text;
    v_switches int;
    v_now timestamptz := clock_timestamp();
BEGIN
    IF stream_mode_details IS NULL THEN
        PERFORM stream_internal._raise_null('streamModeDetails');
    ELSIF jsonb_typeof(stream_mode_details) <> 'object'
          OR jsonb_typeof(stream_mode_details -> 'StreamMode') NOT IN ('string', 'null') THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''streamModeDetails'' failed to satisfy constraint: Member must be a structure {"StreamMode": "PROVISIONED" | "ON_DEMAND"}',
                                       stream_mode_details));
    END IF;
    v_mode := stream_mode_details ->> 'StreamMode';
    PERFORM stream_internal._check_stream_mode(v_mode, 'streamModeDetails.streamMode');
    s := stream_internal._stream_by_arn(stream_arn, 'streamARN');
    IF s.stream_mode NOT IN ('PROVISIONED', 'ON_DEMAND') THEN     -- a delivery stream's buffer
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', s.stream_name));
    END IF;
    -- after a split, merge or scaling of the stream under way (the worker's too)
    s := stream_internal._stream_for_change(s);
    IF s.stream_mode = v_mode THEN
        RETURN;
    END IF;
    DELETE FROM stream.stream_mode_updates u WHERE u.stream_id = s.stream_id AND u.updated_at < v_now - interval '24 hours';
    SELECT count(*) INTO v_switches FROM stream.stream_mode_updates u WHERE u.stream_id = s.stream_id;
    IF v_switches >= stream_internal._limit('STREAM_MODE_SWITCHES_MAX') THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Stream %s under account 000000000000 has switched its capacity mode %s times in the last 24 hours; a stream may switch at most %s times in 24 hours.',
                                       s.stream_name, v_switches, stream_internal._limit('STREAM_MODE_SWITCHES_MAX')));
    END IF;
    IF v_mode = 'ON_DEMAND' THEN
        PERFORM stream_internal._check_on_demand_limit();
    END IF;
    UPDATE stream.streams x SET stream_mode = v_mode WHERE x.stream_id = s.stream_id;
    INSERT INTO stream.stream_mode_updates (stream_id, updated_at) VALUES (s.stream_id, v_now);
END $$;
SELECT stream_internal._api_entry('update_stream_mode');

-- Changing a stream's capacity is for administrators, as resharding is.
REVOKE ALL ON FUNCTION stream.update_stream_mode(text, jsonb) FROM PUBLIC;

---------------------------------------------------------------------------
-- The worker's reshards of on-demand streams (src/bgw/autoscale.c)
---------------------------------------------------------------------------

-- The stream of a worker's reshard, locked like _reshard_begin's but only
-- if no one holds the locks now; NULL when someone does ('busy'), when
-- it is gone, or is no active on-demand stream any more ('skipped').
CREATE FUNCTION stream_internal._on_demand_begin(p_stream_id int, OUT s stream.streams, OUT answer text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT stream_internal._xact_lock_within('reshard', p_stream_id, 0) THEN
        answer := 'busy';
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO s FROM stream.streams x WHERE x.stream_id = p_stream_id FOR NO KEY UPDATE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        s := NULL;
        answer := 'busy';
        RETURN;
    END;
    IF s.stream_id IS NULL OR s.stream_mode <> 'ON_DEMAND' OR s.stream_status <> 'ACTIVE' THEN
        s := NULL;
        answer := 'skipped';
    END IF;
END $$;

-- Where to split shard p: the hash key that halves the write load of its
-- latest p_sample records (each weighs its share of the shard's write
-- capacity: its bytes of 1 MiB or one of 1,000 records, the larger), put
-- between two neighbouring hash keys of the sample; the midpoint of the
-- range when the sample is too small (fewer than 16 records of the
-- range's own keys: explicit hash keys are not stored).  NULL when no
-- split would move a tenth of the load off: one hot partition key, which
-- no split can spread.
CREATE FUNCTION stream_internal._on_demand_split_key(s stream.streams, p stream.shards, p_sample int)
RETURNS numeric LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms' AS $$
DECLARE
    m record;
    v_measured bool := true;
    v_key numeric;
BEGIN
    IF s.stream_id IS NULL OR p.shard_index IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS SHARE MODE NOWAIT', stream_internal._data_table(s.stream_id));
        EXECUTE format($q$
            WITH r AS (
                SELECT x.h, x.w FROM (
                    SELECT stream.hash_key(d.partition_key) AS h,
                           greatest((octet_length(d.partition_key) + octet_length(d.data)) / 1048576.0, 1 / 1000.0)::float8 AS w
                      FROM %s d WHERE d.shard_id = $1 ORDER BY d.seq DESC LIMIT $2) x
                 WHERE x.h BETWEEN $3 AND $4),
            k AS (
                SELECT r.h, sum(r.w) AS w FROM r GROUP BY r.h),
            c AS (
                SELECT k.h, lag(k.h) OVER (ORDER BY k.h) AS prev_h,
                       sum(k.w) OVER (ORDER BY k.h) - k.w AS below, sum(k.w) OVER () AS total
                  FROM k),
            best AS (
                SELECT c.* FROM c WHERE c.prev_h IS NOT NULL ORDER BY abs(2 * c.below - c.total), c.h LIMIT 1)
            SELECT (SELECT count(*) FROM r) AS n, (SELECT sum(k.w) FROM k) AS total,
                   best.below, best.prev_h, best.h
              FROM (SELECT 1) one LEFT JOIN best ON true $q$, stream_internal._data_table(s.stream_id))
          INTO m
          USING p.shard_index, p_sample, p.starting_hash_key, p.ending_hash_key;
    EXCEPTION WHEN lock_not_available THEN      -- a chunk being dropped: measure nothing
        v_measured := false;
    END;
    IF NOT v_measured OR m.n < 16 THEN
        v_key := p.starting_hash_key + div(p.ending_hash_key - p.starting_hash_key + 1, 2);
    ELSIF m.prev_h IS NULL OR least(m.below, m.total - m.below) < 0.1 * m.total THEN
        RETURN NULL;
    ELSE
        v_key := m.prev_h + 1 + div(m.h - m.prev_h - 1, 2);      -- above prev_h, at most h
    END IF;
    -- split_shard's rule: start + 1 < key < end
    v_key := least(greatest(v_key, p.starting_hash_key + 2), p.ending_hash_key - 1);
    IF v_key <= p.starting_hash_key + 1 OR v_key >= p.ending_hash_key THEN
        RETURN NULL;
    END IF;
    RETURN v_key;
END $$;

-- Split a hot shard of an on-demand stream, within stream.shard_limit.
-- Answers 'split <key>', or why not: 'busy', 'skipped' (the shard or the
-- stream changed meanwhile), 'shard_limit', 'one_key'.
CREATE FUNCTION stream_internal._on_demand_split(p_stream_id int, p_shard_index int, p_sample int)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    p stream.shards;
    v_key numeric;
BEGIN
    SELECT * INTO b FROM stream_internal._on_demand_begin(p_stream_id);
    IF b.answer IS NOT NULL THEN
        RETURN b.answer;
    END IF;
    SELECT * INTO p FROM stream.shards x
     WHERE x.stream_id = p_stream_id AND x.shard_index = p_shard_index AND x.ending_seq IS NULL;
    IF NOT FOUND THEN
        RETURN 'skipped';
    END IF;
    IF NOT stream_internal._xact_lock_within('shard_limit', 0, 0) THEN
        RETURN 'busy';
    END IF;
    IF stream_internal._open_shard_count() + 1 > stream_internal._shard_limit() THEN
        RETURN 'shard_limit';
    END IF;
    v_key := stream_internal._on_demand_split_key(b.s, p, p_sample);
    IF v_key IS NULL THEN
        RETURN 'one_key';
    END IF;
    PERFORM stream_internal._split(b.s, p, v_key, clock_timestamp());
    RETURN 'split ' || v_key;
END $$;

-- Merge two adjacent cold shards of an on-demand stream (p_a's range
-- below p_b's), never below 4 open shards.  Answers 'merged', or why not:
-- 'busy', 'skipped', 'minimum'.
CREATE FUNCTION stream_internal._on_demand_merge(p_stream_id int, p_a int, p_b int)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b record;
    a stream.shards;
    c stream.shards;
BEGIN
    SELECT * INTO b FROM stream_internal._on_demand_begin(p_stream_id);
    IF b.answer IS NOT NULL THEN
        RETURN b.answer;
    END IF;
    SELECT * INTO a FROM stream.shards x WHERE x.stream_id = p_stream_id AND x.shard_index = p_a AND x.ending_seq IS NULL;
    SELECT * INTO c FROM stream.shards x WHERE x.stream_id = p_stream_id AND x.shard_index = p_b AND x.ending_seq IS NULL;
    IF a.shard_index IS NULL OR c.shard_index IS NULL OR a.ending_hash_key + 1 <> c.starting_hash_key THEN
        RETURN 'skipped';
    END IF;
    IF (SELECT count(*) FROM stream.shards x WHERE x.stream_id = p_stream_id AND x.ending_seq IS NULL)
       <= stream_internal._limit('ON_DEMAND_INITIAL_SHARDS') THEN
        RETURN 'minimum';
    END IF;
    PERFORM stream_internal._merge(b.s, a, c, clock_timestamp());
    RETURN 'merged';
END $$;
