---------------------------------------------------------------------------
-- Shards: listing them (paged and filtered, as ListShards), resharding
-- (SplitShard, MergeShards, UpdateShardCount), the database's open-shard
-- quota (DescribeLimits) and the expiry of closed shards.
--
-- A reshard runs in the caller's transaction, one at a time per stream
-- (the stream's reshard lock; the stream shows UPDATING to others while it
-- is held).  A parent is closed in shared memory first
-- (stream_internal._close_shard, src/streams/seqalloc.c): from then on it
-- refuses new sequence numbers, and its ending sequence number lies above
-- every number it ever handed out.  Producers of its hash range wait for
-- the resharding transaction and then route to the children; records put
-- before the close still commit below the parent's end, and readers finish
-- the parent (they wait for those) before the children.  Children start
-- numbering above the parents' ends, so numbers grow along a key's lineage.
---------------------------------------------------------------------------

CREATE FUNCTION stream_internal._close_shard(stream_id int, shard_index int) RETURNS bigint
    AS 'MODULE_PATHNAME', 'stream_close_shard' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION stream_internal._resharding(stream_id int) RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_resharding' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION stream_internal._xact_lock_within(kind text, id int, timeout_ms int) RETURNS bool
    AS 'MODULE_PATHNAME', 'stream_xact_lock_within' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION stream_internal._shard_limit() RETURNS int
    AS 'MODULE_PATHNAME', 'stream_shard_limit_sql' LANGUAGE C STABLE;

-- A stream's status as others see it: UPDATING while a reshard is under way.
CREATE FUNCTION stream_internal._stream_status(s stream.streams) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN s.stream_status = 'ACTIVE' AND stream_internal._resharding(s.stream_id)
                THEN 'UPDATING' ELSE s.stream_status END
$$;

-- A closed shard whose every record is past retention: no longer listed,
-- and dropped by maintenance (_expire_shards).  Its records all arrived
-- before it closed.
CREATE FUNCTION stream_internal._shard_expired(sh stream.shards, s stream.streams) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT sh.closed_at IS NOT NULL
       AND sh.closed_at < clock_timestamp() - make_interval(hours => s.retention_hours)
$$;

-- Scaling operations of update_shard_count, for its limit of 10 per 24 hours.
CREATE TABLE stream.shard_count_updates (
    stream_id  int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ON stream.shard_count_updates (stream_id, updated_at);
SELECT pg_catalog.pg_extension_config_dump('stream.shard_count_updates', '');
REVOKE ALL ON stream.shard_count_updates FROM PUBLIC;

---------------------------------------------------------------------------
-- The open-shard quota
---------------------------------------------------------------------------

-- Open shards of every stream of the database (delivery streams' internal
-- buffers are no Kinesis shards).
CREATE FUNCTION stream_internal._open_shard_count() RETURNS int
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*)::int FROM stream.shards sh JOIN stream.streams s USING (stream_id)
     WHERE sh.ending_seq IS NULL AND s.stream_mode <> 'FIREHOSE_DIRECT_PUT'
$$;

-- Refuse a request that would open p_additional shards beyond
-- stream.shard_limit.  Requests that add shards take turns (a lock held to
-- commit, waited for at most a second), so two cannot both pass the count.
CREATE FUNCTION stream_internal._check_shard_limit(p_additional int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_open int;
    v_limit int := stream_internal._shard_limit();
BEGIN
    IF NOT stream_internal._xact_lock_within('shard_limit', 0, 1000) THEN
        PERFORM stream_internal._raise('LimitExceededException', 'Rate exceeded for account 000000000000: another request that opens shards has not finished.', 'Retry the request.');
    END IF;
    v_open := stream_internal._open_shard_count();
    IF v_open::bigint + p_additional > v_limit THEN
        PERFORM stream_internal._raise('LimitExceededException', format('This request would exceed the shard limit for the account 000000000000 in local. Current shard count for the account: %s. Limit: %s. Number of additional shards that would have resulted from this request: %s. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.',
                                       v_open, v_limit, p_additional),
                                       'The limit is the setting stream.shard_limit (ALTER DATABASE ... SET stream.shard_limit = ...).');
    END IF;
END $$;

-- DescribeLimits: src/sql/11_capacity.sql, with the on-demand streams.

---------------------------------------------------------------------------
-- ListShards
---------------------------------------------------------------------------

-- The NextToken of a page: the stream, the last shard listed and the
-- filter, signed and timed as list_streams' tokens (kind L, next_token.c:
-- ExpiredNextTokenException after stream.next_token_lifetime).  Not
-- secret, but a made-up or altered token is refused as invalid rather
-- than failing on its contents or never expiring.
CREATE FUNCTION stream_internal._shard_token(p_stream_id int, p_last int, p_filter text,
                                             p_filter_ts timestamptz) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT stream_internal._next_token('L', jsonb_build_object(
               's', p_stream_id, 'l', p_last, 'f', p_filter, 't', extract(epoch FROM p_filter_ts))::text)
$$;

CREATE FUNCTION stream_internal._list_shards(p_stream_name text, p_max_results int, p_next_token text,
                                             p_exclusive_start text, p_filter text, p_filter_shard text,
                                             p_filter_ts timestamptz)
RETURNS TABLE(shard_id text, parent_shard_id text, adjacent_parent_shard_id text,
              starting_hash_key numeric, ending_hash_key numeric,
              starting_sequence_number text, ending_sequence_number text, next_token text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    tok jsonb;
    v_after int := -1;
    v_start_text text;
    v_limit int;
    v_horizon timestamptz;
    v_ts timestamptz;
    v_idx int;
    v_last int;
    v_more bool;
BEGIN
    IF p_stream_name IS NULL AND p_next_token IS NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'Either NextToken or StreamName should be provided.');
    ELSIF p_stream_name IS NOT NULL AND p_next_token IS NOT NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'NextToken and StreamName cannot be provided together.');
    END IF;
    IF p_max_results IS NOT NULL AND (p_max_results < 1 OR p_max_results > 10000) THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''maxResults'' failed to satisfy constraint: Member must have value %s',
                                       p_max_results, CASE WHEN p_max_results < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to 10000' END));
    END IF;
    v_limit := least(coalesce(p_max_results, 1000), 1000);

    IF p_next_token IS NOT NULL THEN
        IF p_exclusive_start IS NOT NULL OR p_filter IS NOT NULL OR p_filter_shard IS NOT NULL OR p_filter_ts IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'NextToken cannot be provided together with ExclusiveStartShardId or ShardFilter: the token carries them.');
        END IF;
        -- signed and timed as list_streams' tokens: a token the server did not make is refused
        tok := stream_internal._next_token_position('L', p_next_token)::jsonb;
        SELECT * INTO s FROM stream.streams x WHERE x.stream_id = (tok ->> 's')::int;
        IF NOT FOUND THEN
            PERFORM stream_internal._raise('ResourceNotFoundException', 'The stream of this NextToken no longer exists.');
        END IF;
        v_after := (tok ->> 'l')::int;
        p_filter := tok ->> 'f';
        p_filter_ts := to_timestamp((tok ->> 't')::float8);
    ELSE
        s := stream_internal._stream(p_stream_name);
        IF p_exclusive_start IS NOT NULL THEN
            v_idx := stream_internal._shard_index(p_exclusive_start);
            IF v_idx IS NULL THEN
                v_start_text := p_exclusive_start;      -- names no shard: compared as text
            ELSE
                v_after := v_idx;
            END IF;
        END IF;
        IF p_filter IS NULL AND (p_filter_shard IS NOT NULL OR p_filter_ts IS NOT NULL) THEN
            PERFORM stream_internal._raise_null('shardFilter.type');
        ELSIF p_filter IS NOT NULL AND p_filter NOT IN ('AFTER_SHARD_ID', 'AT_TRIM_HORIZON', 'FROM_TRIM_HORIZON',
                                                        'AT_LATEST', 'AT_TIMESTAMP', 'FROM_TIMESTAMP') THEN
            PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''shardFilter.type'' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]', p_filter));
        ELSIF p_filter = 'AFTER_SHARD_ID' AND p_filter_shard IS NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'ShardId must be supplied in a ShardFilter with a Type of AFTER_SHARD_ID.');
        ELSIF p_filter IS DISTINCT FROM 'AFTER_SHARD_ID' AND p_filter_shard IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('ShardId may be supplied only in a ShardFilter with a Type of AFTER_SHARD_ID, not %s.', p_filter));
        ELSIF p_filter IN ('AT_TIMESTAMP', 'FROM_TIMESTAMP') AND p_filter_ts IS NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Timestamp must be supplied in a ShardFilter with a Type of %s.', p_filter));
        ELSIF p_filter NOT IN ('AT_TIMESTAMP', 'FROM_TIMESTAMP') AND p_filter_ts IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Timestamp may be supplied only in a ShardFilter with a Type of AT_TIMESTAMP or FROM_TIMESTAMP, not %s.', p_filter));
        END IF;
        IF p_filter = 'AFTER_SHARD_ID' THEN
            v_idx := stream_internal._shard_index(p_filter_shard);
            IF v_idx IS NULL THEN
                v_start_text := greatest(v_start_text, p_filter_shard);
            ELSE
                v_after := greatest(v_after, v_idx);
            END IF;
        END IF;
    END IF;

    -- the trim horizon as a time: records older have expired
    v_horizon := greatest(clock_timestamp() - make_interval(hours => s.retention_hours), s.created_at);
    v_ts := greatest(p_filter_ts, v_horizon);
    RETURN QUERY
    WITH page AS (
        SELECT sh.* FROM stream.shards sh
         WHERE sh.stream_id = s.stream_id
           AND sh.shard_index > v_after
           AND (v_start_text IS NULL OR stream_internal._shard_id(sh.shard_index) > v_start_text COLLATE "C")
           AND NOT stream_internal._shard_expired(sh, s)
           AND CASE coalesce(p_filter, 'FROM_TRIM_HORIZON')
                 WHEN 'AT_LATEST' THEN sh.ending_seq IS NULL
                 WHEN 'AT_TRIM_HORIZON' THEN sh.created_at <= v_horizon
                                             AND (sh.closed_at IS NULL OR sh.closed_at >= v_horizon)
                 WHEN 'AT_TIMESTAMP' THEN sh.created_at <= v_ts AND (sh.closed_at IS NULL OR sh.closed_at >= v_ts)
                 WHEN 'FROM_TIMESTAMP' THEN sh.closed_at IS NULL OR sh.closed_at >= v_ts
                 ELSE true      -- FROM_TRIM_HORIZON, AFTER_SHARD_ID: every shard not expired
               END
         ORDER BY sh.shard_index
         LIMIT v_limit + 1)
    , token AS MATERIALIZED (       -- made once: the same on every row of the page
        SELECT CASE WHEN (SELECT count(*) FROM page) > v_limit
                    THEN stream_internal._shard_token(s.stream_id,
                             (SELECT max(q.shard_index) FROM (SELECT shard_index FROM page ORDER BY shard_index LIMIT v_limit) q),
                             p_filter, p_filter_ts) END AS t)
    SELECT stream_internal._shard_id(p.shard_index), stream_internal._shard_id(p.parent_shard_index),
           stream_internal._shard_id(p.adjacent_parent_shard_index),
           p.starting_hash_key, p.ending_hash_key,
           stream_internal._sequence_text(s.stream_id, p.shard_index, p.starting_seq),
           stream_internal._sequence_text(s.stream_id, p.shard_index, p.ending_seq),
           token.t
      FROM page p, token
     ORDER BY p.shard_index
     LIMIT v_limit;
END $$;

-- ListShards.  Rows in shard order; next_token, the same on every row of a
-- page, is NULL on the last page (give it alone, with max_results, for the
-- next).  shard_filter is the filter's Type, with shard_filter_shard_id for
-- AFTER_SHARD_ID and shard_filter_timestamp for AT_/FROM_TIMESTAMP.
-- Expired shards (closed, every record past retention) are never listed.
CREATE FUNCTION stream.list_shards(stream_name text DEFAULT NULL, max_results int DEFAULT NULL,
                                   next_token text DEFAULT NULL, exclusive_start_shard_id text DEFAULT NULL,
                                   shard_filter text DEFAULT NULL, shard_filter_shard_id text DEFAULT NULL,
                                   shard_filter_timestamp timestamptz DEFAULT NULL)
RETURNS TABLE(shard_id text, parent_shard_id text, adjacent_parent_shard_id text,
              starting_hash_key numeric, ending_hash_key numeric,
              starting_sequence_number text, ending_sequence_number text, next_token text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM stream_internal._list_shards($1, $2, $3, $4, $5, $6, $7)
$$;

---------------------------------------------------------------------------
-- Resharding
---------------------------------------------------------------------------

-- Stream s locked against reshards and capacity mode switches of it until
-- commit, as committed once the one under way (the stream shows UPDATING
-- meanwhile) has finished, waited for at most a second; ResourceInUseException
-- when it does not finish or the stream is not ACTIVE.
CREATE FUNCTION stream_internal._stream_for_change(s stream.streams) RETURNS stream.streams
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text := s.stream_name;
BEGIN
    IF NOT stream_internal._xact_lock_within('reshard', s.stream_id, 1000) THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Stream %s under account 000000000000 not ACTIVE, instead in state UPDATING',
                                       v_name), 'A split, merge, shard count update or capacity mode switch of the stream has not finished.');
    END IF;
    SELECT * INTO s FROM stream.streams x WHERE x.stream_id = s.stream_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', v_name));
    ELSIF s.stream_status <> 'ACTIVE' THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Stream %s under account 000000000000 not ACTIVE, instead in state %s',
                                       s.stream_name, s.stream_status));
    END IF;
    RETURN s;
END $$;

-- The stream of a reshard, locked (_stream_for_change); ValidationException
-- for an on-demand stream.
CREATE FUNCTION stream_internal._reshard_begin(p_name text, p_action text) RETURNS stream.streams
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream_for_change(stream_internal._stream(p_name));
BEGIN
    IF s.stream_mode = 'ON_DEMAND' THEN
        PERFORM stream_internal._raise('ValidationException', format('%s is not supported for stream %s under account 000000000000 because it is in ON_DEMAND capacity mode.',
                                       p_action, s.stream_name),
                                       'Kinesis scales on-demand streams itself; switch the stream to PROVISIONED to reshard it.');
    END IF;
    RETURN s;
END $$;

-- An open shard of the stream a reshard names; ResourceNotFoundException
-- when there is none, InvalidArgumentException when it is closed.
CREATE FUNCTION stream_internal._reshard_shard(s stream.streams, p_shard_id text, p_action text) RETURNS stream.shards
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_idx int := stream_internal._shard_index(p_shard_id);
    sh stream.shards;
BEGIN
    SELECT * INTO sh FROM stream.shards x WHERE x.stream_id = s.stream_id AND x.shard_index = v_idx;
    IF NOT FOUND OR stream_internal._shard_expired(sh, s) THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Could not find shard %s in stream %s under account 000000000000.',
                                       coalesce(stream_internal._shard_id(v_idx), p_shard_id), s.stream_name));
    ELSIF sh.ending_seq IS NOT NULL THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Shard %s in stream %s under account 000000000000 has already been merged or split, and thus is not eligible for %s.',
                                       stream_internal._shard_id(sh.shard_index), s.stream_name, p_action));
    END IF;
    RETURN sh;
END $$;

-- Close shard p (shared memory first, then its row) at p_ts; returns its ending sequence number.
CREATE FUNCTION stream_internal._reshard_close(s stream.streams, p stream.shards, p_ts timestamptz) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_end bigint;
BEGIN
    BEGIN
        v_end := stream_internal._close_shard(s.stream_id, p.shard_index);
    EXCEPTION WHEN lock_not_available THEN     -- without shared memory: waits for producers in flight
        PERFORM stream_internal._raise('ResourceInUseException', format('Shard %s in stream %s under account 000000000000 has puts in flight that did not commit within lock_timeout.',
                                       stream_internal._shard_id(p.shard_index), s.stream_name), 'Retry the request.');
    END;
    UPDATE stream.shards x SET ending_seq = v_end, closed_at = p_ts
     WHERE x.stream_id = s.stream_id AND x.shard_index = p.shard_index;
    RETURN v_end;
END $$;

-- A new shard's index: the stream's next one.
CREATE FUNCTION stream_internal._next_shard_index(s stream.streams) RETURNS int
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE stream.streams x SET next_shard_index = x.next_shard_index + 1
     WHERE x.stream_id = s.stream_id RETURNING x.next_shard_index - 1
$$;

-- Split p at p_key: children [start, key - 1] and [key, end]; returns the upper one.
CREATE FUNCTION stream_internal._split(s stream.streams, p stream.shards, p_key numeric, p_ts timestamptz)
RETURNS stream.shards LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_end bigint := stream_internal._reshard_close(s, p, p_ts);
    upper stream.shards;
BEGIN
    INSERT INTO stream.shards (stream_id, shard_index, parent_shard_index, starting_hash_key, ending_hash_key,
                               starting_seq, created_at)
    VALUES (s.stream_id, stream_internal._next_shard_index(s), p.shard_index, p.starting_hash_key, p_key - 1,
            v_end + 1, p_ts);
    INSERT INTO stream.shards (stream_id, shard_index, parent_shard_index, starting_hash_key, ending_hash_key,
                               starting_seq, created_at)
    VALUES (s.stream_id, stream_internal._next_shard_index(s), p.shard_index, p_key, p.ending_hash_key,
            v_end + 1, p_ts)
    RETURNING * INTO upper;
    PERFORM stream_internal._catalog_changed();
    RETURN upper;
END $$;

-- Merge a and b (a.ending_hash_key + 1 = b.starting_hash_key) into one child; returns it.
CREATE FUNCTION stream_internal._merge(s stream.streams, a stream.shards, b stream.shards, p_ts timestamptz)
RETURNS stream.shards LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_end_a bigint := stream_internal._reshard_close(s, a, p_ts);
    v_end_b bigint := stream_internal._reshard_close(s, b, p_ts);
    child stream.shards;
BEGIN
    INSERT INTO stream.shards (stream_id, shard_index, parent_shard_index, adjacent_parent_shard_index,
                               starting_hash_key, ending_hash_key, starting_seq, created_at)
    VALUES (s.stream_id, stream_internal._next_shard_index(s), a.shard_index, b.shard_index,
            a.starting_hash_key, b.ending_hash_key, greatest(v_end_a, v_end_b) + 1, p_ts)
    RETURNING * INTO child;
    PERFORM stream_internal._catalog_changed();
    RETURN child;
END $$;

-- A shard id member of a resharding request: not null, the id pattern.
CREATE FUNCTION stream_internal._check_shard_member(p_value text, p_member text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_value IS NULL THEN
        PERFORM stream_internal._raise_null(p_member);
    END IF;
    PERFORM stream_internal._check_name(p_value, p_member, 128);
END $$;

CREATE FUNCTION stream_internal.split_shard(stream_name text, shard_to_split text, new_starting_hash_key text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    p stream.shards;
    v_key numeric;
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', 128);
    PERFORM stream_internal._check_shard_member(shard_to_split, 'shardToSplit');
    IF new_starting_hash_key IS NULL THEN
        PERFORM stream_internal._raise_null('newStartingHashKey');
    ELSIF new_starting_hash_key !~ '^(0|[1-9][0-9]{0,38})$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''newStartingHashKey'' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\d{0,38})', new_starting_hash_key));
    END IF;
    s := stream_internal._reshard_begin(stream_name, 'SplitShard');
    p := stream_internal._reshard_shard(s, shard_to_split, 'splitting');
    PERFORM stream_internal._check_shard_limit(1);
    v_key := new_starting_hash_key::numeric;
    IF v_key <= p.starting_hash_key + 1 OR v_key >= p.ending_hash_key THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('NewStartingHashKey %s used in SplitShard() on shard %s in stream %s under account 000000000000 is not both greater than one plus the shard''s StartingHashKey %s and less than the shard''s EndingHashKey %s.',
                                       new_starting_hash_key, stream_internal._shard_id(p.shard_index), s.stream_name,
                                       p.starting_hash_key, p.ending_hash_key));
    END IF;
    PERFORM stream_internal._split(s, p, v_key, clock_timestamp());
END $$;
SELECT stream_internal._api_entry('split_shard');

CREATE FUNCTION stream_internal.merge_shards(stream_name text, shard_to_merge text, adjacent_shard_to_merge text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    a stream.shards;
    b stream.shards;
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', 128);
    PERFORM stream_internal._check_shard_member(shard_to_merge, 'shardToMerge');
    PERFORM stream_internal._check_shard_member(adjacent_shard_to_merge, 'adjacentShardToMerge');
    s := stream_internal._reshard_begin(stream_name, 'MergeShards');
    a := stream_internal._reshard_shard(s, shard_to_merge, 'merging');
    b := stream_internal._reshard_shard(s, adjacent_shard_to_merge, 'merging');
    IF a.ending_hash_key + 1 <> b.starting_hash_key THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Shards %s and %s in stream %s under account 000000000000 are not an adjacent pair of shards eligible for merging',
                                       stream_internal._shard_id(a.shard_index), stream_internal._shard_id(b.shard_index), s.stream_name));
    END IF;
    PERFORM stream_internal._merge(s, a, b, clock_timestamp());
END $$;
SELECT stream_internal._api_entry('merge_shards');

-- UpdateShardCount with UNIFORM_SCALING: the open shards become
-- target_shard_count shards of equal hash ranges (shard i of N owns
-- [i*floor(2^128/N), (i+1)*floor(2^128/N) - 1], the last up to 2^128 - 1,
-- as create_stream lays them out).  Done as Kinesis does, by splits and
-- merges: first every open shard is split at the target boundaries inside
-- it, then the shards within one target range are merged from the left.
-- The intermediate shards this leaves are closed at once, empty.  Kinesis'
-- default limits (LimitExceededException): at most double or half the
-- open shards, 10 updates per stream per 24 hours, 10,000 shards per
-- stream, and stream.shard_limit for the database.
CREATE FUNCTION stream_internal.update_shard_count(stream_name text, target_shard_count int,
                                                   scaling_type text DEFAULT 'UNIFORM_SCALING')
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    v_cur int;
    v_max numeric := 340282366920938463463374607431768211455;
    v_width numeric;
    v_ts timestamptz := clock_timestamp();
    v_changed bool := false;
    p stream.shards;
    cur stream.shards;
    prev stream.shards;
    v_i numeric;
    v_group numeric;
    v_prev_group numeric;
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', 128);
    IF target_shard_count IS NULL THEN
        PERFORM stream_internal._raise_null('targetShardCount');
    ELSIF target_shard_count < 1 THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''targetShardCount'' failed to satisfy constraint: Member must have value greater than or equal to 1', target_shard_count));
    END IF;
    IF scaling_type IS NULL THEN
        PERFORM stream_internal._raise_null('scalingType');
    ELSIF scaling_type <> 'UNIFORM_SCALING' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''scalingType'' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]', scaling_type));
    END IF;
    s := stream_internal._reshard_begin(stream_name, 'UpdateShardCount');
    SELECT count(*) INTO v_cur FROM stream.shards sh WHERE sh.stream_id = s.stream_id AND sh.ending_seq IS NULL;
    IF target_shard_count > 2::bigint * v_cur THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Cannot update shard count beyond 2x current shard count: stream %s under account 000000000000 has %s open shards, the target is %s.',
                                       s.stream_name, v_cur, target_shard_count));
    ELSIF 2::bigint * target_shard_count < v_cur THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Cannot update shard count below 50%% of the current shard count: stream %s under account 000000000000 has %s open shards, the target is %s.',
                                       s.stream_name, v_cur, target_shard_count));
    ELSIF (v_cur <= 10000 AND target_shard_count > 10000) OR (v_cur > 10000 AND target_shard_count >= 10000) THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Cannot scale a stream beyond 10000 shards: the target for stream %s under account 000000000000 is %s.',
                                       s.stream_name, target_shard_count));
    END IF;
    DELETE FROM stream.shard_count_updates u WHERE u.stream_id = s.stream_id AND u.updated_at < v_ts - interval '24 hours';
    IF (SELECT count(*) FROM stream.shard_count_updates u WHERE u.stream_id = s.stream_id) >= 10 THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Cannot run UpdateShardCount more than 10 times in a 24 hour period: stream %s under account 000000000000 was scaled %s times in the last 24 hours.',
                                       s.stream_name, (SELECT count(*) FROM stream.shard_count_updates u WHERE u.stream_id = s.stream_id)));
    END IF;
    IF target_shard_count > v_cur THEN
        PERFORM stream_internal._check_shard_limit(target_shard_count - v_cur);
    END IF;

    v_width := div(v_max + 1, target_shard_count);
    -- splits: every open shard at the target boundaries inside it
    FOR p IN SELECT * FROM stream.shards sh WHERE sh.stream_id = s.stream_id AND sh.ending_seq IS NULL
              ORDER BY sh.starting_hash_key LOOP
        cur := p;
        LOOP
            v_i := div(cur.starting_hash_key, v_width) + 1;     -- the first boundary above its start
            EXIT WHEN v_i > target_shard_count - 1 OR v_i * v_width > cur.ending_hash_key;
            cur := stream_internal._split(s, cur, v_i * v_width, v_ts);
            v_changed := true;
        END LOOP;
    END LOOP;
    -- merges: the shards within one target range into one, from the left
    FOR p IN SELECT * FROM stream.shards sh WHERE sh.stream_id = s.stream_id AND sh.ending_seq IS NULL
              ORDER BY sh.starting_hash_key LOOP
        v_group := least(div(p.starting_hash_key, v_width), target_shard_count - 1);
        IF prev.shard_index IS NOT NULL AND v_group = v_prev_group THEN
            prev := stream_internal._merge(s, prev, p, v_ts);
            v_changed := true;
        ELSE
            prev := p;
            v_prev_group := v_group;
        END IF;
    END LOOP;
    IF v_changed THEN
        INSERT INTO stream.shard_count_updates (stream_id, updated_at) VALUES (s.stream_id, v_ts);
    END IF;
    RETURN jsonb_build_object('StreamName', s.stream_name, 'StreamARN', stream_internal._arn(s.stream_name),
                              'CurrentShardCount', v_cur, 'TargetShardCount', target_shard_count);
END $$;
SELECT stream_internal._api_entry('update_shard_count');

-- Resharding is for administrators, as changing retention is; they grant it on.
REVOKE ALL ON FUNCTION stream.split_shard(text, text, text), stream.merge_shards(text, text, text),
    stream.update_shard_count(text, int, text) FROM PUBLIC;

---------------------------------------------------------------------------
-- Expiry of closed shards (maintenance)
---------------------------------------------------------------------------

-- Drop the closed shards of stream s whose every record is past retention,
-- with their leases and processor checkpoints (children are then blocked
-- by no missing parent).  A shard in a processor's unit in flight stays
-- until that unit is done.  Returns how many went.
CREATE FUNCTION stream_internal._expire_shards(s stream.streams) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sh stream.shards;
    n int := 0;
BEGIN
    FOR sh IN SELECT * FROM stream.shards x
               WHERE x.stream_id = s.stream_id AND stream_internal._shard_expired(x, s)
                 AND NOT EXISTS (SELECT 1 FROM stream.processor_pending pp
                                   JOIN stream.processors pr USING (processor_id)
                                  WHERE pr.source_stream_id = s.stream_id AND x.shard_index = ANY (pp.shard_indexes))
               ORDER BY x.shard_index LOOP
        DELETE FROM stream.leases l WHERE l.stream_id = s.stream_id AND l.shard_index = sh.shard_index;
        DELETE FROM stream.shards x WHERE x.stream_id = s.stream_id AND x.shard_index = sh.shard_index;
        n := n + 1;
    END LOOP;
    -- checkpoints of shards that are gone (also ones a unit wrote after the shard went)
    DELETE FROM stream.processor_checkpoints c USING stream.processors pr
     WHERE c.processor_id = pr.processor_id AND pr.source_stream_id = s.stream_id
       AND NOT EXISTS (SELECT 1 FROM stream.shards x WHERE x.stream_id = s.stream_id AND x.shard_index = c.shard_index);
    IF n > 0 THEN
        PERFORM stream_internal._catalog_changed();
    END IF;
    RETURN n;
END $$;
