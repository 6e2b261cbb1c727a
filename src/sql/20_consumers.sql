---------------------------------------------------------------------------
-- Consumer applications: KCL 2.x-style leases and checkpoints
---------------------------------------------------------------------------
-- An application is a group of workers that together read every shard of
-- a stream, each shard by one worker at a time.  Its state is one small row
-- per shard (the lease).  Lease rows are updated often, so the table keeps
-- free space on its pages (fillfactor) and indexes none of the columns
-- that change: every update is HOT, the index never grows, and dead row
-- versions are pruned page by page without VACUUM as soon as the xmin
-- horizon allows.  While a long transaction holds the horizon back the heap
-- still grows by the versions it pins (a few pages per thousand updates).
--
-- Access follows the stream: a role may see and change an application's
-- leases when it may read the application's stream (row-level security).

CREATE FUNCTION stream_internal._sequence_parts(sequence_number text, OUT stream_id int,
                                       OUT shard_index int, OUT seq bigint)
    AS 'MODULE_PATHNAME', 'stream_sequence_parts' LANGUAGE C IMMUTABLE;

-- May the current role read stream p_stream_id?
CREATE FUNCTION stream_internal._can_read(p_stream_id int) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(has_table_privilege(to_regclass(format('stream_data.%I', 's' || p_stream_id)), 'SELECT'), false)
$$;

CREATE FUNCTION stream_internal._require_read(s stream.streams) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT stream_internal._can_read(s.stream_id) THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to read records from stream %s', current_user, s.stream_name), '42501');
    END IF;
END $$;

CREATE TABLE stream.applications (
    application_name  text PRIMARY KEY,
    stream_id         int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    initial_position  text NOT NULL,
    initial_timestamp timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (application_name, stream_id)
);

CREATE TABLE stream.leases (
    application_name text NOT NULL,
    shard_index      int NOT NULL,
    stream_id        int NOT NULL,
    lease_owner      text,              -- NULL: not held
    lease_counter    bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,       -- the owner must renew before this
    checkpoint       text NOT NULL,     -- sequence number, TRIM_HORIZON, LATEST, AT_TIMESTAMP or SHARD_END
    owner_switches_since_checkpoint int NOT NULL DEFAULT 0,
    parent_shard_indexes int[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (application_name, shard_index),
    -- a lease belongs to its application's stream: row-level security on
    -- stream_id then also guards the application
    FOREIGN KEY (application_name, stream_id)
        REFERENCES stream.applications (application_name, stream_id) ON DELETE CASCADE
) WITH (fillfactor = 50);

SELECT pg_catalog.pg_extension_config_dump('stream.applications', '');
SELECT pg_catalog.pg_extension_config_dump('stream.leases', '');

ALTER TABLE stream.applications ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.leases ENABLE ROW LEVEL SECURITY;
CREATE POLICY applications_by_stream ON stream.applications USING (stream_internal._can_read(stream_id));
CREATE POLICY leases_by_stream ON stream.leases USING (stream_internal._can_read(stream_id));
GRANT SELECT, INSERT, UPDATE, DELETE ON stream.applications, stream.leases TO PUBLIC;

-- A lease as the KCL shows it.
-- security_invoker: the caller's row-level security applies, not the owner's.
CREATE VIEW stream.application_leases WITH (security_invoker = true) AS
SELECT l.application_name,
       s.stream_name,
       stream_internal._shard_id(l.shard_index) AS lease_key,
       l.lease_owner,
       l.lease_counter,
       l.lease_expires_at,
       l.lease_owner IS NOT NULL AND l.lease_expires_at > now() AS held,
       l.checkpoint,
       l.owner_switches_since_checkpoint,
       (SELECT array_agg(stream_internal._shard_id(p) ORDER BY p) FROM unnest(l.parent_shard_indexes) p) AS parent_shard_ids
  FROM stream.leases l JOIN stream.streams s USING (stream_id);
GRANT SELECT ON stream.application_leases TO PUBLIC;

CREATE FUNCTION stream_internal._application(p_name text) RETURNS stream.applications
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications;
BEGIN
    IF p_name IS NULL THEN
        PERFORM stream_internal._raise('ValidationException', '1 validation error detected: Value null at ''applicationName'' failed to satisfy constraint: Member must not be null', '22004');
    END IF;
    SELECT * INTO a FROM stream.applications WHERE application_name = p_name;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Application %s not found.', p_name), '42704',
                              'Register it with stream.register_application(application_name, stream_name).');
    END IF;
    RETURN a;
END $$;

-- Create the leases of shards that have none yet: the initial shards at the
-- application's initial position, later (child) shards at TRIM_HORIZON so
-- that nothing between parent and child is missed.
CREATE FUNCTION stream_internal._sync_leases(p_app stream.applications) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int;
BEGIN
    INSERT INTO stream.leases (application_name, shard_index, stream_id, checkpoint, parent_shard_indexes)
    SELECT p_app.application_name, sh.shard_index, sh.stream_id,
           CASE WHEN sh.parent_shard_index IS NULL THEN p_app.initial_position ELSE 'TRIM_HORIZON' END,
           array_remove(ARRAY[sh.parent_shard_index, sh.adjacent_parent_shard_index], NULL)
      FROM stream.shards sh
     WHERE sh.stream_id = p_app.stream_id
       AND NOT EXISTS (SELECT 1 FROM stream.leases l
                        WHERE l.application_name = p_app.application_name AND l.shard_index = sh.shard_index)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION stream.register_application(application_name text, stream_name text,
                                            initial_position text DEFAULT 'TRIM_HORIZON',
                                            initial_timestamp timestamptz DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams := stream_internal._stream(stream_name);
    a stream.applications;
BEGIN
    IF application_name IS NULL OR application_name !~ '^[a-zA-Z0-9_.-]{1,128}$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''applicationName'' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]{1,128}', application_name));
    END IF;
    PERFORM stream_internal._require_read(s);
    IF initial_position IS NULL OR initial_position NOT IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('initial_position must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, not %s', coalesce(initial_position, 'NULL')));
    END IF;
    IF (initial_position = 'AT_TIMESTAMP') <> (initial_timestamp IS NOT NULL) THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'initial_timestamp is required with AT_TIMESTAMP and allowed only with it');
    END IF;
    BEGIN
        INSERT INTO stream.applications VALUES (application_name, s.stream_id, initial_position, initial_timestamp, now())
        RETURNING * INTO a;
    EXCEPTION WHEN unique_violation THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Application %s already exists.', application_name), '42710');
    END;
    PERFORM stream_internal._sync_leases(a);
END $$;

CREATE FUNCTION stream.deregister_application(application_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application(application_name);
BEGIN
    DELETE FROM stream.applications x WHERE x.application_name = a.application_name;
END $$;

-- The leases that take part in balancing: not finished, parents finished.
CREATE FUNCTION stream_internal._eligible_leases(p_app text)
RETURNS TABLE(shard_index int, lease_owner text, held bool)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT l.shard_index, l.lease_owner, l.lease_owner IS NOT NULL AND l.lease_expires_at > clock_timestamp()
      FROM stream.leases l
     WHERE l.application_name = p_app
       AND l.checkpoint <> 'SHARD_END'
       AND NOT EXISTS (SELECT 1 FROM stream.leases p
                        WHERE p.application_name = p_app
                          AND p.shard_index = ANY (l.parent_shard_indexes)
                          AND p.checkpoint <> 'SHARD_END')
$$;

-- One round of the KCL 2.x lease taker for one worker: renew what it holds,
-- then take expired or unowned leases up to its fair share
-- ceil(leases / workers), or, when none is free, steal one lease from the
-- most loaded worker.  Leases of finished shards (SHARD_END) and of shards
-- whose parents are not finished do not count and are not handed out.
-- Returns the leases the worker holds afterwards.
CREATE FUNCTION stream.acquire_leases(application_name text, worker_id text,
                                      lease_duration interval DEFAULT '10 seconds')
RETURNS TABLE(shard_id text, checkpoint text, lease_counter bigint, parent_shard_ids text[])
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application(application_name);
    v_app text := a.application_name;
    v_until timestamptz;
    n_leases int;
    n_workers int;
    target int;
    mine int;
    needed int;
    taken int;
    victim text;
    victim_count int;
BEGIN
    IF worker_id IS NULL OR length(worker_id) = 0 THEN
        PERFORM stream_internal._raise('ValidationException', 'worker_id must be a non-empty string', '22004');
    END IF;
    IF lease_duration IS NULL OR lease_duration <= interval '0' THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'lease_duration must be positive');
    END IF;
    v_until := clock_timestamp() + lease_duration;
    PERFORM stream_internal._sync_leases(a);

    -- One taker at a time per application; the rows are few.
    PERFORM 1 FROM stream.leases l WHERE l.application_name = v_app ORDER BY l.shard_index FOR UPDATE;

    -- Renew: a lease still owned by this worker is extended (even if it
    -- expired, as long as nobody took it meanwhile).
    UPDATE stream.leases l
       SET lease_counter = l.lease_counter + 1, lease_expires_at = v_until
     WHERE l.application_name = v_app AND l.lease_owner = worker_id;

    SELECT count(*) INTO n_leases FROM stream_internal._eligible_leases(v_app);
    SELECT count(DISTINCT e.lease_owner) + (CASE WHEN bool_or(e.lease_owner = worker_id AND e.held) THEN 0 ELSE 1 END)
      INTO n_workers FROM stream_internal._eligible_leases(v_app) e WHERE e.held;
    n_workers := greatest(coalesce(n_workers, 1), 1);
    target := CASE WHEN n_workers >= n_leases THEN 1 ELSE ceil(n_leases::numeric / n_workers)::int END;
    SELECT count(*) INTO mine FROM stream_internal._eligible_leases(v_app) e WHERE e.held AND e.lease_owner = worker_id;
    needed := target - mine;

    IF needed > 0 AND n_leases > 0 THEN
        -- expired or unowned leases first, in random order
        WITH pick AS (
            SELECT e.shard_index FROM stream_internal._eligible_leases(v_app) e
             WHERE NOT e.held ORDER BY random() LIMIT needed)
        UPDATE stream.leases l
           SET owner_switches_since_checkpoint = l.owner_switches_since_checkpoint
                   + CASE WHEN l.lease_owner IS DISTINCT FROM worker_id AND l.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
               lease_owner = worker_id, lease_counter = l.lease_counter + 1, lease_expires_at = v_until
          FROM pick
         WHERE l.application_name = v_app AND l.shard_index = pick.shard_index;
        GET DIAGNOSTICS taken = ROW_COUNT;
        needed := needed - taken;

        IF needed > 0 AND taken = 0 THEN
            -- nothing free: steal one lease from the most loaded worker
            SELECT e.lease_owner, count(*) INTO victim, victim_count
              FROM stream_internal._eligible_leases(v_app) e
             WHERE e.held AND e.lease_owner <> worker_id
             GROUP BY e.lease_owner ORDER BY count(*) DESC, random() LIMIT 1;
            IF victim IS NOT NULL AND (victim_count > target OR (victim_count = target AND needed > 1)) THEN
                WITH pick AS (
                    SELECT e.shard_index FROM stream_internal._eligible_leases(v_app) e
                     WHERE e.held AND e.lease_owner = victim ORDER BY random() LIMIT 1)
                UPDATE stream.leases l
                   SET owner_switches_since_checkpoint = l.owner_switches_since_checkpoint + 1,
                       lease_owner = worker_id, lease_counter = l.lease_counter + 1, lease_expires_at = v_until
                  FROM pick
                 WHERE l.application_name = v_app AND l.shard_index = pick.shard_index;
            END IF;
        END IF;
    END IF;

    RETURN QUERY
    SELECT stream_internal._shard_id(l.shard_index), l.checkpoint, l.lease_counter,
           (SELECT array_agg(stream_internal._shard_id(p) ORDER BY p) FROM unnest(l.parent_shard_indexes) p)
      FROM stream.leases l
     WHERE l.application_name = v_app AND l.lease_owner = worker_id
       AND l.checkpoint <> 'SHARD_END'
     ORDER BY l.shard_index;
END $$;

CREATE FUNCTION stream_internal._held_lease(p_app text, p_worker text, p_shard_id text) RETURNS stream.leases
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l stream.leases;
    idx int := stream_internal._shard_index(p_shard_id);
BEGIN
    IF idx IS NULL THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Could not find shard %s in application %s.', p_shard_id, p_app), '42704');
    END IF;
    SELECT * INTO l FROM stream.leases x
     WHERE x.application_name = p_app AND x.shard_index = idx FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Application %s has no lease for shard %s.', p_app, stream_internal._shard_id(idx)), '42704');
    END IF;
    IF l.lease_owner IS DISTINCT FROM p_worker THEN
        PERFORM stream_internal._raise('LeaseLostException', format('Worker %s does not hold the lease on %s of application %s; it is held by %s.',
                              p_worker, stream_internal._shard_id(idx), p_app, coalesce(l.lease_owner, 'nobody')), '55000',
                              'The lease was taken by another worker (or released): stop processing this shard and call acquire_leases().');
    END IF;
    RETURN l;
END $$;

-- Record progress on a held lease.  Fails when another worker took the
-- lease (the old owner is fenced off); never moves backwards; SHARD_END
-- marks a closed shard as finished so that its children can start.
CREATE FUNCTION stream.checkpoint(application_name text, worker_id text, shard_id text, sequence_number text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application(application_name);
    l stream.leases := stream_internal._held_lease(a.application_name, worker_id, shard_id);
    p record;
    cur record;
    sh stream.shards;
BEGIN
    SELECT * INTO sh FROM stream.shards x WHERE x.stream_id = l.stream_id AND x.shard_index = l.shard_index;
    IF sequence_number = 'SHARD_END' THEN
        IF sh.ending_seq IS NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Shard %s is still open; SHARD_END may be checkpointed only when a closed shard has been read to its end.', stream_internal._shard_id(l.shard_index)));
        END IF;
    ELSE
        p := stream_internal._sequence_parts(sequence_number);
        IF p.seq IS NULL OR p.stream_id <> l.stream_id OR p.shard_index <> l.shard_index THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Sequence number %s does not belong to shard %s of this application''s stream.',
                                  coalesce(sequence_number, 'NULL'), stream_internal._shard_id(l.shard_index)));
        END IF;
        IF l.checkpoint = 'SHARD_END' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Shard %s is already checkpointed at SHARD_END.', stream_internal._shard_id(l.shard_index)));
        END IF;
        cur := stream_internal._sequence_parts(l.checkpoint);
        IF cur.seq IS NOT NULL AND p.seq < cur.seq THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Checkpoint %s is behind the current checkpoint %s of shard %s; checkpoints never move backwards.',
                                  sequence_number, l.checkpoint, stream_internal._shard_id(l.shard_index)));
        END IF;
    END IF;
    UPDATE stream.leases x
       SET checkpoint = sequence_number, owner_switches_since_checkpoint = 0, lease_counter = x.lease_counter + 1
     WHERE x.application_name = l.application_name AND x.shard_index = l.shard_index;
END $$;

-- Clean shutdown: give up every lease the worker holds.
CREATE FUNCTION stream.release_leases(application_name text, worker_id text) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application(application_name);
    n int;
BEGIN
    -- lock in shard order, as acquire_leases does, so the two never deadlock
    PERFORM 1 FROM stream.leases l WHERE l.application_name = a.application_name
     ORDER BY l.shard_index FOR UPDATE;
    UPDATE stream.leases l
       SET lease_owner = NULL, lease_expires_at = NULL, lease_counter = l.lease_counter + 1
     WHERE l.application_name = a.application_name AND l.lease_owner = worker_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- A shard iterator where a held lease's checkpoint says to resume:
-- right after the checkpointed record, or at the application's initial
-- position.  NULL once the shard is checkpointed at SHARD_END.
CREATE FUNCTION stream.get_lease_iterator(application_name text, worker_id text, shard_id text)
RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application(application_name);
    l stream.leases := stream_internal._held_lease(a.application_name, worker_id, shard_id);
    s stream.streams;
BEGIN
    SELECT * INTO s FROM stream.streams x WHERE x.stream_id = l.stream_id;
    RETURN CASE
        WHEN l.checkpoint = 'SHARD_END' THEN NULL
        WHEN l.checkpoint IN ('TRIM_HORIZON', 'LATEST') THEN
            stream.get_shard_iterator(s.stream_name, stream_internal._shard_id(l.shard_index), l.checkpoint)
        WHEN l.checkpoint = 'AT_TIMESTAMP' THEN
            stream.get_shard_iterator(s.stream_name, stream_internal._shard_id(l.shard_index), 'AT_TIMESTAMP', NULL,
                                      least(a.initial_timestamp, now()))
        ELSE stream.get_shard_iterator(s.stream_name, stream_internal._shard_id(l.shard_index), 'AFTER_SEQUENCE_NUMBER', l.checkpoint)
    END;
END $$;
