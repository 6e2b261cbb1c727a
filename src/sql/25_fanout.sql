---------------------------------------------------------------------------
-- Enhanced fan-out: registered consumers that get records pushed
---------------------------------------------------------------------------

-- Who may do what, as in Kinesis for principals with the stream's IAM
-- rights: every role that may read the stream sees its consumers, registers
-- consumers and subscribes with any of them; deregistering is for the role
-- that registered the consumer (owner; a regrole, dumped by name, see
-- stream.applications) and its members.
CREATE TABLE stream.stream_consumers (
    stream_id       int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    consumer_name   text NOT NULL,
    consumer_status text NOT NULL DEFAULT 'ACTIVE',
    created_at      timestamptz NOT NULL DEFAULT now(),
    owner           regrole NOT NULL DEFAULT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER)),
    PRIMARY KEY (stream_id, consumer_name)
);
SELECT pg_catalog.pg_extension_config_dump('stream.stream_consumers', '');
ALTER TABLE stream.stream_consumers ENABLE ROW LEVEL SECURITY;
CREATE POLICY consumers_by_stream ON stream.stream_consumers USING (stream_internal._can_read(stream_id));
-- Readers see the rows (list and describe run as the caller); only the
-- API's SECURITY DEFINER functions write them.  SELECT allows LOCK TABLE
-- IN ACCESS SHARE MODE alone, which blocks only ACCESS EXCLUSIVE, and the
-- API never takes that; SELECT ... FOR UPDATE/SHARE needs UPDATE.
REVOKE ALL ON stream.stream_consumers FROM PUBLIC;
GRANT SELECT ON stream.stream_consumers TO PUBLIC;

-- At most CONSUMERS_PER_STREAM_MAX (20) consumers per stream, also for rows a restore copies in.
CREATE FUNCTION stream_internal._consumer_limit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM stream_internal._xact_lock('consumers', NEW.stream_id);
    IF (SELECT count(*) FROM stream.stream_consumers c WHERE c.stream_id = NEW.stream_id)
       >= stream_internal._limit('CONSUMERS_PER_STREAM_MAX') THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Stream %s under account 000000000000 already has the maximum of %s registered consumers.',
                              (SELECT stream_name FROM stream.streams s WHERE s.stream_id = NEW.stream_id),
                              stream_internal._limit('CONSUMERS_PER_STREAM_MAX')));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consumer_limit BEFORE INSERT ON stream.stream_consumers
    FOR EACH ROW EXECUTE FUNCTION stream_internal._consumer_limit();

CREATE FUNCTION stream_internal._consumer_json(s stream.streams, c stream.stream_consumers) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'ConsumerName', c.consumer_name,
        'ConsumerARN', stream_internal._arn(s.stream_name) || '/consumer/' || c.consumer_name || ':'
                       || floor(extract(epoch FROM c.created_at))::bigint,
        'ConsumerStatus', c.consumer_status,
        'ConsumerCreationTimestamp', round(extract(epoch FROM c.created_at), 3),
        'StreamARN', stream_internal._arn(s.stream_name))
$$;

-- Registrations on one stream take turns (the limit of 20, consumer_limit),
-- so one left open in a reader's transaction would stall every other
-- reader's: after a second of waiting the call fails with
-- LimitExceededException instead (Kinesis' answer to registrations faster
-- than it allows), to be retried.
CREATE FUNCTION stream_internal.register_stream_consumer(stream_name text, consumer_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '1s' AS $$
DECLARE
    v_caller oid := stream_internal._caller();
    s stream.streams := stream_internal._stream(stream_name);
    c stream.stream_consumers;
BEGIN
    IF consumer_name IS NULL OR consumer_name !~ '^[a-zA-Z0-9_.-]{1,128}$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''consumerName'' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+', consumer_name));
    END IF;
    PERFORM stream_internal._require_role_read(s, v_caller);
    BEGIN
        PERFORM stream_internal._xact_lock('consumers', s.stream_id);
    EXCEPTION WHEN lock_not_available THEN
        PERFORM stream_internal._raise('LimitExceededException', format('Rate exceeded for stream %s under account 000000000000: another consumer registration on it has not finished.',
                              s.stream_name), 'Retry the registration.');
    END;
    -- the limit of 20 consumers is enforced by the consumer_limit trigger
    BEGIN
        INSERT INTO stream.stream_consumers (stream_id, consumer_name, owner)
        VALUES (s.stream_id, consumer_name, v_caller::regrole)
        RETURNING * INTO c;
    EXCEPTION WHEN unique_violation THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Consumer %s under stream %s already exists for account 000000000000.', consumer_name, s.stream_name));
    END;
    RETURN stream_internal._consumer_json(s, c);
END $$;
SELECT stream_internal._api_entry('register_stream_consumer');


-- A role that may not read the stream gets ResourceNotFoundException, as
-- for a consumer that does not exist (it could not list them); a reader
-- that is not the consumer's owner nor a member of it, AccessDeniedException.
CREATE FUNCTION stream_internal.deregister_stream_consumer(stream_name text, consumer_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller oid := stream_internal._caller();
    s stream.streams := stream_internal._stream(stream_name);
    c stream.stream_consumers;
BEGIN
    IF stream_internal._role_can_read(v_caller, s.stream_id) THEN
        SELECT * INTO c FROM stream.stream_consumers x
         WHERE x.stream_id = s.stream_id AND x.consumer_name = deregister_stream_consumer.consumer_name;
    END IF;
    IF c.consumer_name IS NULL THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Consumer %s under stream %s under account 000000000000 not found.', consumer_name, s.stream_name));
    END IF;
    IF NOT pg_has_role(v_caller, c.owner, 'MEMBER') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to deregister consumer %s under stream %s: only the role that registered it (%s) and its members may.',
                              v_caller::regrole, c.consumer_name, s.stream_name, c.owner));
    END IF;
    DELETE FROM stream.stream_consumers x WHERE x.stream_id = c.stream_id AND x.consumer_name = c.consumer_name;
END $$;
SELECT stream_internal._api_entry('deregister_stream_consumer');

-- ListStreamConsumers: the consumers the caller may see (row-level
-- security), by name, at most max_results (default and at most 100) from
-- where next_token (a token of this stream's listing) says; every row
-- carries the next_token to go on with when there are more (NULL: none).
CREATE FUNCTION stream.list_stream_consumers(stream_name text, max_results int DEFAULT NULL, next_token text DEFAULT NULL)
RETURNS TABLE(consumer_name text, consumer_arn text, consumer_status text, consumer_creation_timestamp timestamptz,
              next_token text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH st AS (
        SELECT s FROM stream_internal._stream($1) s),
    args AS (
        SELECT stream_internal._consumer_page_start((st.s).stream_id, $1, $2, $3) AS after,
               least(coalesce($2, stream_internal._limit('LIST_PAGE_MAX')), stream_internal._limit('LIST_PAGE_MAX')) AS n
          FROM st),
    page AS (
        SELECT c.*
          FROM stream.stream_consumers c, st, args
         WHERE c.stream_id = (st.s).stream_id
           AND (args.after IS NULL OR c.consumer_name COLLATE "C" > args.after COLLATE "C")
         ORDER BY c.consumer_name COLLATE "C"
         LIMIT (SELECT n + 1 FROM args)),
    shown AS (
        SELECT p.* FROM page p ORDER BY p.consumer_name COLLATE "C" LIMIT (SELECT n FROM args)),
    -- one token a call: it carries the time it was made
    more AS MATERIALIZED (
        SELECT CASE WHEN x.more THEN stream_internal._next_token('C', (st.s).stream_id || '/' || x.last) END AS token
          FROM st, (SELECT (SELECT count(*) FROM page) > (SELECT n FROM args) AS more,
                           (SELECT max(consumer_name COLLATE "C") FROM shown) AS last) x)
    SELECT c.consumer_name, stream_internal._consumer_json((st.s), c) ->> 'ConsumerARN', c.consumer_status, c.created_at,
           m.token
      FROM shown c, st, more m
     ORDER BY c.consumer_name COLLATE "C"
$$;

-- list_stream_consumers' paging arguments: MaxResults 1 to 10000; a
-- NextToken must come from a listing of the same stream.
CREATE FUNCTION stream_internal._consumer_page_start(p_stream_id int, p_stream_name text, p_max int, p_token text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_pos text := stream_internal._page_start('C', p_max, 'maxResults', NULL, NULL, p_token);
BEGIN
    IF v_pos IS NOT NULL AND split_part(v_pos, '/', 1) <> p_stream_id::text THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('The NextToken was not issued for the consumers of stream %s.', p_stream_name));
    END IF;
    RETURN substr(v_pos, length(split_part(v_pos, '/', 1)) + 2);
END $$;

CREATE FUNCTION stream.describe_stream_consumer(stream_name text, consumer_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
    c stream.stream_consumers;
BEGIN
    SELECT * INTO c FROM stream.stream_consumers x
     WHERE x.stream_id = s.stream_id AND x.consumer_name = describe_stream_consumer.consumer_name;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Consumer %s under stream %s under account 000000000000 not found.', consumer_name, s.stream_name));
    END IF;
    RETURN stream_internal._consumer_json(s, c);
END $$;

-- Waits inside the server until records are committed to the shard (woken
-- by the commit itself) or wait_timeout passes, then returns them.
-- Resubscribe with AFTER_SEQUENCE_NUMBER of continuation_sequence_number.
-- At the end of a closed shard (SHARD_END) continuation_sequence_number is
-- NULL and child_shards names the shards to subscribe to next.
CREATE FUNCTION stream.subscribe_to_shard(stream_name text, consumer_name text, shard_id text,
                                          starting_position text,
                                          starting_sequence_number text DEFAULT NULL,
                                          wait_timeout interval DEFAULT '5 seconds',
                                          "timestamp" timestamptz DEFAULT NULL,
                                          OUT records stream.record[],
                                          OUT continuation_sequence_number text,
                                          OUT millis_behind_latest bigint,
                                          OUT child_shards jsonb)
    AS 'MODULE_PATHNAME', 'stream_subscribe_to_shard' LANGUAGE C VOLATILE;

---------------------------------------------------------------------------
-- LISTEN/NOTIFY: one channel per stream, payload the shard id, at most one
-- notification per shard per transaction, sent at commit.  Off by default:
-- it adds a write to PostgreSQL's notification queue to every committing put.
---------------------------------------------------------------------------

CREATE FUNCTION stream.notification_channel(stream_name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'stream_' || (stream_internal._stream(stream_name)).stream_id $$;

CREATE FUNCTION stream.enable_stream_notifications(stream_name text, enabled bool DEFAULT true)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
BEGIN
    UPDATE stream.streams SET notify = coalesce(enabled, false) WHERE stream_id = s.stream_id;
    PERFORM stream_internal._catalog_changed();
    RETURN 'stream_' || s.stream_id;
END $$;
REVOKE ALL ON FUNCTION stream.enable_stream_notifications(text, bool) FROM PUBLIC;
