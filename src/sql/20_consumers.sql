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
-- Access: an application belongs to the role that registered it.  Its owner
-- (and the owner's members) and the roles it was granted to
-- (grant_application_access) may use it, as long as they may read its
-- stream; to everyone else it does not exist.  The tables are the API's
-- alone: no role has any privilege on them, so none can write or lock them;
-- the lease functions are SECURITY DEFINER entries that check the calling
-- role (stream_internal._caller(), src/caller.c).

CREATE FUNCTION stream_internal._sequence_parts(sequence_number text, OUT stream_id int,
                                       OUT shard_index int, OUT seq bigint)
    AS 'MODULE_PATHNAME', 'stream_sequence_parts' LANGUAGE C IMMUTABLE;

-- May the current role read stream p_stream_id?  (Row-level security of
-- stream.stream_consumers and the view stream.application_leases, which
-- run as the caller.)
CREATE FUNCTION stream_internal._can_read(p_stream_id int) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(has_table_privilege(to_regclass(stream_internal._data_table(p_stream_id)), 'SELECT'), false)
$$;

-- May role p_role read stream p_stream_id?  For SECURITY DEFINER code,
-- where the current role is the extension's owner.
CREATE FUNCTION stream_internal._role_can_read(p_role oid, p_stream_id int) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(has_table_privilege(p_role, to_regclass(stream_internal._data_table(p_stream_id)), 'SELECT'), false)
$$;

CREATE FUNCTION stream_internal._require_role_read(s stream.streams, p_role oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT stream_internal._role_can_read(p_role, s.stream_id) THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to read records from stream %s',
                                       p_role::regrole, s.stream_name));
    END IF;
END $$;

-- owner: the role that registered the application (regrole: a dump names
-- the role, so a restore gives it to the role of that name, as GRANTs in
-- dumps do).  The default serves rows restored from a dump made before
-- applications had owners: they go to the restoring role.
CREATE TABLE stream.applications (
    application_name  text PRIMARY KEY,
    stream_id         int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    initial_position  text NOT NULL,
    initial_timestamp timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    owner             regrole NOT NULL DEFAULT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER)),
    UNIQUE (application_name, stream_id)
);

-- Roles other than the owner that may run the application's workers
-- (acquire, checkpoint, release, iterators) and see its leases.
CREATE TABLE stream.application_grants (
    application_name text NOT NULL REFERENCES stream.applications ON DELETE CASCADE,
    grantee          regrole NOT NULL,
    PRIMARY KEY (application_name, grantee)
);

CREATE TABLE stream.leases (
    application_name text NOT NULL,
    shard_index      int NOT NULL,
    stream_id        int NOT NULL,
    lease_owner      text,              -- NULL: not held
    lease_counter    bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,       -- the owner must renew before this
    checkpoint       text NOT NULL,     -- sequence number, TRIM_HORIZON, LATEST, AT_TIMESTAMP or SHARD_END
    -- with a sequence number: the user record (KPL sub-record) of it processed
    -- last (the KCL's checkpointSubSequenceNumber); NULL: the whole record
    checkpoint_sub_sequence_number bigint,
    owner_switches_since_checkpoint int NOT NULL DEFAULT 0,
    parent_shard_indexes int[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (application_name, shard_index),
    -- a lease belongs to its application's stream
    FOREIGN KEY (application_name, stream_id)
        REFERENCES stream.applications (application_name, stream_id) ON DELETE CASCADE
) WITH (fillfactor = 50);

SELECT pg_catalog.pg_extension_config_dump('stream.applications', '');
SELECT pg_catalog.pg_extension_config_dump('stream.application_grants', '');
SELECT pg_catalog.pg_extension_config_dump('stream.leases', '');

-- No privileges for PUBLIC (LOCK TABLE needs one, SELECT ... FOR UPDATE
-- needs UPDATE).  Row-level security without a policy: should a privilege
-- be granted by mistake, it shows no row.
REVOKE ALL ON stream.applications, stream.application_grants, stream.leases FROM PUBLIC;
ALTER TABLE stream.applications ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.application_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream.leases ENABLE ROW LEVEL SECURITY;

-- May role p_role use application a (its stream's read access aside)?
-- Superusers are members of every role.
CREATE FUNCTION stream_internal._may_use_application(a stream.applications, p_role oid) RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_has_role(p_role, a.owner, 'MEMBER')
        OR EXISTS (SELECT 1 FROM stream.application_grants g
                    WHERE g.application_name = a.application_name AND pg_has_role(p_role, g.grantee, 'MEMBER'))
$$;

-- A lease as the KCL shows it, for the applications the caller may use.
-- The view reads the tables with its owner's rights; pg_has_role() and
-- _can_read() look at the caller (a view does not change the current
-- role).  The same rule as _may_use_application plus the stream's read
-- access, written out: a function reading the tables would run as the caller.
-- security_barrier: the caller's own conditions are applied after this one,
-- so a leaky function cannot see other applications' rows.
CREATE VIEW stream.application_leases WITH (security_barrier) AS
SELECT l.application_name,
       s.stream_name,
       stream_internal._shard_id(l.shard_index) AS lease_key,
       l.lease_owner,
       l.lease_counter,
       l.lease_expires_at,
       l.lease_owner IS NOT NULL AND l.lease_expires_at > now() AS held,
       l.checkpoint,
       l.owner_switches_since_checkpoint,
       (SELECT array_agg(stream_internal._shard_id(p) ORDER BY p) FROM unnest(l.parent_shard_indexes) p) AS parent_shard_ids,
       l.checkpoint_sub_sequence_number
  FROM stream.leases l
  JOIN stream.applications a ON a.application_name = l.application_name
  JOIN stream.streams s ON s.stream_id = l.stream_id
 WHERE (pg_catalog.pg_has_role(a.owner, 'MEMBER')
        OR EXISTS (SELECT 1 FROM stream.application_grants g
                    WHERE g.application_name = a.application_name AND pg_catalog.pg_has_role(g.grantee, 'MEMBER')))
   AND stream_internal._can_read(l.stream_id);
GRANT SELECT ON stream.application_leases TO PUBLIC;

-- The application p_name as role p_caller may use it.  One that does not
-- exist and one the caller may not use raise the same
-- ResourceNotFoundException, so no role learns of applications it may not
-- use.  A caller who may use it but no longer read its stream gets
-- AccessDeniedException (it knows the application).
CREATE FUNCTION stream_internal._application_for(p_name text, p_caller oid) RETURNS stream.applications
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications;
BEGIN
    IF p_name IS NULL THEN
        PERFORM stream_internal._raise_null('applicationName');
    END IF;
    SELECT * INTO a FROM stream.applications x WHERE x.application_name = p_name;
    IF NOT FOUND OR NOT stream_internal._may_use_application(a, p_caller) THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Application %s not found.', p_name),
                              'Register it with stream.register_application(application_name, stream_name).');
    END IF;
    PERFORM stream_internal._require_role_read(s, p_caller) FROM stream.streams s WHERE s.stream_id = a.stream_id;
    RETURN a;
END $$;

-- The same, for what only the owner (or a member of the owner role) may do.
CREATE FUNCTION stream_internal._owned_application(p_name text, p_caller oid, p_action text) RETURNS stream.applications
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application_for(p_name, p_caller);
BEGIN
    IF NOT pg_has_role(p_caller, a.owner, 'MEMBER') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to %s application %s: only its owner %s and members of that role may.',
                              p_caller::regrole, p_action, a.application_name, a.owner));
    END IF;
    RETURN a;
END $$;

-- Create the leases of shards that have none yet, as the KCL's shard
-- syncer does.  The first sync of an application (no lease yet) creates
-- the initial leases from its initial position: TRIM_HORIZON every shard
-- not expired, LATEST the open shards, AT_TIMESTAMP the shards open at the
-- timestamp (each at that position), and their descendants.  Later syncs
-- add the children of shards with leases (new shards of a split or merge),
-- at TRIM_HORIZON so that nothing between parent and child is missed.
-- A child is handed out once every parent lease is at SHARD_END
-- (_eligible_leases).
CREATE FUNCTION stream_internal._sync_leases(p_app stream.applications) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    v_ts timestamptz;
    n int;
    total int := 0;
BEGIN
    SELECT * INTO s FROM stream.streams x WHERE x.stream_id = p_app.stream_id;
    IF NOT EXISTS (SELECT 1 FROM stream.leases l WHERE l.application_name = p_app.application_name) THEN
        v_ts := greatest(p_app.initial_timestamp, s.created_at);
        INSERT INTO stream.leases (application_name, shard_index, stream_id, checkpoint, parent_shard_indexes)
        SELECT p_app.application_name, sh.shard_index, sh.stream_id, p_app.initial_position,
               array_remove(ARRAY[sh.parent_shard_index, sh.adjacent_parent_shard_index], NULL)
          FROM stream.shards sh
         WHERE sh.stream_id = p_app.stream_id
           AND NOT stream_internal._shard_expired(sh, s)
           AND CASE p_app.initial_position
                 WHEN 'LATEST' THEN sh.ending_seq IS NULL
                 WHEN 'AT_TIMESTAMP' THEN sh.created_at <= v_ts AND (sh.closed_at IS NULL OR sh.closed_at >= v_ts)
                 ELSE true
               END
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS total = ROW_COUNT;
    END IF;
    -- the children of leased shards, and theirs, until none is missing
    LOOP
        INSERT INTO stream.leases (application_name, shard_index, stream_id, checkpoint, parent_shard_indexes)
        SELECT p_app.application_name, sh.shard_index, sh.stream_id, 'TRIM_HORIZON',
               array_remove(ARRAY[sh.parent_shard_index, sh.adjacent_parent_shard_index], NULL)
          FROM stream.shards sh
         WHERE sh.stream_id = p_app.stream_id
           AND NOT EXISTS (SELECT 1 FROM stream.leases l
                            WHERE l.application_name = p_app.application_name AND l.shard_index = sh.shard_index)
           AND EXISTS (SELECT 1 FROM stream.leases l
                        WHERE l.application_name = p_app.application_name
                          AND l.shard_index IN (sh.parent_shard_index, sh.adjacent_parent_shard_index))
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;

-- The caller must be able to read the stream; it becomes the owner.
CREATE FUNCTION stream_internal.register_application(application_name text, stream_name text,
                                            initial_position text DEFAULT 'TRIM_HORIZON',
                                            initial_timestamp timestamptz DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller oid := stream_internal._caller();
    s stream.streams := stream_internal._stream(stream_name);
    a stream.applications;
BEGIN
    IF application_name IS NULL OR application_name !~ '^[a-zA-Z0-9_.-]{1,128}$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''applicationName'' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]{1,128}', application_name));
    END IF;
    PERFORM stream_internal._require_role_read(s, v_caller);
    IF initial_position IS NULL OR initial_position NOT IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('initial_position must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, not %s', coalesce(initial_position, 'NULL')));
    END IF;
    IF (initial_position = 'AT_TIMESTAMP') <> (initial_timestamp IS NOT NULL) THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'initial_timestamp is required with AT_TIMESTAMP and allowed only with it');
    END IF;
    BEGIN
        INSERT INTO stream.applications (application_name, stream_id, initial_position, initial_timestamp, created_at, owner)
        VALUES (application_name, s.stream_id, initial_position, initial_timestamp, now(), v_caller::regrole)
        RETURNING * INTO a;
    EXCEPTION WHEN unique_violation THEN
        -- names are database-wide, like stream names: this says no more than that the name is taken
        PERFORM stream_internal._raise('ResourceInUseException', format('Application %s already exists.', application_name));
    END;
    PERFORM stream_internal._sync_leases(a);
END $$;
SELECT stream_internal._api_entry('register_application');


CREATE FUNCTION stream_internal.deregister_application(application_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._owned_application(application_name, stream_internal._caller(), 'deregister');
BEGIN
    -- leases and grants go with it (ON DELETE CASCADE)
    DELETE FROM stream.applications x WHERE x.application_name = a.application_name;
END $$;
SELECT stream_internal._api_entry('deregister_application');


-- Let role (and its members) run the application's workers and see its
-- leases, or stop letting it.  The owner's call; regranting and revoking
-- what was not granted change nothing.
CREATE FUNCTION stream_internal._application_access(p_grant bool, p_name text, p_role regrole)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._owned_application(p_name, stream_internal._caller(),
                                 CASE WHEN p_grant THEN 'grant access to' ELSE 'revoke access to' END);
BEGIN
    PERFORM stream_internal._role_name(p_role);     -- refuses NULL and OIDs of no role
    IF p_grant THEN
        INSERT INTO stream.application_grants (application_name, grantee)
        VALUES (a.application_name, p_role) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM stream.application_grants g
         WHERE g.application_name = a.application_name AND g.grantee = p_role;
    END IF;
END $$;

CREATE FUNCTION stream_internal.grant_application_access(application_name text, role regrole)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._application_access(true, application_name, role) $$;
SELECT stream_internal._api_entry('grant_application_access');


CREATE FUNCTION stream_internal.revoke_application_access(application_name text, role regrole)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._application_access(false, application_name, role) $$;
SELECT stream_internal._api_entry('revoke_application_access');


-- The applications the caller may use; grantees are shown to the owner's members only.
CREATE FUNCTION stream_internal.list_applications()
RETURNS TABLE(application_name text, stream_name text, owner regrole, grantees regrole[],
              initial_position text, initial_timestamp timestamptz, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_caller oid := stream_internal._caller();
BEGIN
    RETURN QUERY
    SELECT a.application_name, s.stream_name, a.owner,
           CASE WHEN pg_has_role(v_caller, a.owner, 'MEMBER') THEN
               coalesce((SELECT array_agg(g.grantee ORDER BY g.grantee::text) FROM stream.application_grants g
                          WHERE g.application_name = a.application_name), '{}') END,
           a.initial_position, a.initial_timestamp, a.created_at
      FROM stream.applications a JOIN stream.streams s ON s.stream_id = a.stream_id
     WHERE stream_internal._may_use_application(a, v_caller)
       AND stream_internal._role_can_read(v_caller, a.stream_id)
     ORDER BY a.application_name;
END $$;
SELECT stream_internal._api_entry('list_applications');

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
CREATE FUNCTION stream_internal.acquire_leases(application_name text, worker_id text,
                                      lease_duration interval DEFAULT '10 seconds')
RETURNS TABLE(shard_id text, checkpoint text, lease_counter bigint, parent_shard_ids text[],
              checkpoint_sub_sequence_number bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application_for(application_name, stream_internal._caller());
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
    IF worker_id IS NULL THEN
        PERFORM stream_internal._raise_null('worker_id');
    ELSIF length(worker_id) = 0 THEN
        PERFORM stream_internal._raise('ValidationException', 'worker_id must be a non-empty string');
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
           (SELECT array_agg(stream_internal._shard_id(p) ORDER BY p) FROM unnest(l.parent_shard_indexes) p),
           l.checkpoint_sub_sequence_number
      FROM stream.leases l
     WHERE l.application_name = v_app AND l.lease_owner = worker_id
       AND l.checkpoint <> 'SHARD_END'
     ORDER BY l.shard_index;
END $$;
SELECT stream_internal._api_entry('acquire_leases');


CREATE FUNCTION stream_internal._held_lease(p_app text, p_worker text, p_shard_id text) RETURNS stream.leases
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l stream.leases;
    idx int := stream_internal._shard_index(p_shard_id);
BEGIN
    IF idx IS NULL THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Could not find shard %s in application %s.', p_shard_id, p_app));
    END IF;
    SELECT * INTO l FROM stream.leases x
     WHERE x.application_name = p_app AND x.shard_index = idx FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Application %s has no lease for shard %s.', p_app, stream_internal._shard_id(idx)));
    END IF;
    IF l.lease_owner IS DISTINCT FROM p_worker THEN
        PERFORM stream_internal._raise('LeaseLostException', format('Worker %s does not hold the lease on %s of application %s; it is held by %s.',
                              p_worker, stream_internal._shard_id(idx), p_app, coalesce(l.lease_owner, 'nobody')),
                              'The lease was taken by another worker (or released): stop processing this shard and call acquire_leases().');
    END IF;
    RETURN l;
END $$;

-- Record progress on a held lease.  Fails when another worker took the
-- lease (the old owner is fenced off); never moves backwards; SHARD_END
-- marks a closed shard as finished so that its children can start.
-- sub_sequence_number: the KCL's extended sequence number, for a consumer
-- of user records (get_records(it, deaggregate => true)): user record
-- (sequence_number, sub_sequence_number) is processed, later sub-records of
-- that aggregate are not.  Checkpoints are ordered as the KCL orders them
-- (sequence number, then sub-sequence number); NULL, the default, is the
-- whole record, after all of its sub-records.
CREATE FUNCTION stream_internal.checkpoint(application_name text, worker_id text, shard_id text, sequence_number text,
                                           sub_sequence_number bigint DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application_for(application_name, stream_internal._caller());
    l stream.leases := stream_internal._held_lease(a.application_name, worker_id, shard_id);
    p record;
    cur record;
    sh stream.shards;
BEGIN
    SELECT * INTO sh FROM stream.shards x WHERE x.stream_id = l.stream_id AND x.shard_index = l.shard_index;
    IF sub_sequence_number < 0 THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Could not checkpoint at invalid, negative subsequence number %s', sub_sequence_number));
    END IF;
    IF sequence_number = 'SHARD_END' THEN
        IF sub_sequence_number IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', 'SHARD_END is checkpointed without a sub-sequence number.');
        END IF;
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
        -- (seq, sub) in the KCL's order; the whole record (NULL) after its sub-records
        IF cur.seq IS NOT NULL AND
           (p.seq < cur.seq OR (p.seq = cur.seq AND
                                coalesce(sub_sequence_number, 9223372036854775807) <
                                coalesce(l.checkpoint_sub_sequence_number, 9223372036854775807))) THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('Checkpoint %s is behind the current checkpoint %s of shard %s; checkpoints never move backwards.',
                                  concat_ws('.', sequence_number, sub_sequence_number),
                                  concat_ws('.', l.checkpoint, l.checkpoint_sub_sequence_number),
                                  stream_internal._shard_id(l.shard_index)));
        END IF;
    END IF;
    UPDATE stream.leases x
       SET checkpoint = sequence_number, checkpoint_sub_sequence_number = checkpoint.sub_sequence_number,
           owner_switches_since_checkpoint = 0, lease_counter = x.lease_counter + 1
     WHERE x.application_name = l.application_name AND x.shard_index = l.shard_index;
END $$;
SELECT stream_internal._api_entry('checkpoint');


-- Clean shutdown: give up every lease the worker holds.
CREATE FUNCTION stream_internal.release_leases(application_name text, worker_id text) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application_for(application_name, stream_internal._caller());
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
SELECT stream_internal._api_entry('release_leases');


-- A shard iterator where a held lease's checkpoint says to resume:
-- right after the checkpointed record, or at the application's initial
-- position.  NULL once the shard is checkpointed at SHARD_END.  After a
-- checkpoint with a sub-sequence number, at the checkpointed record, as
-- the KCL resumes (AT_SEQUENCE_NUMBER): the consumer skips the user
-- records up to the checkpoint (checkpoint_sub_sequence_number of
-- acquire_leases), as the KCL's record filter does.
-- (_application_for checked that the caller may read the stream; the
-- iterator is checked again at each get_records.)
CREATE FUNCTION stream_internal.get_lease_iterator(application_name text, worker_id text, shard_id text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    a stream.applications := stream_internal._application_for(application_name, stream_internal._caller());
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
        WHEN l.checkpoint_sub_sequence_number IS NOT NULL THEN
            stream.get_shard_iterator(s.stream_name, stream_internal._shard_id(l.shard_index), 'AT_SEQUENCE_NUMBER', l.checkpoint)
        ELSE stream.get_shard_iterator(s.stream_name, stream_internal._shard_id(l.shard_index), 'AFTER_SEQUENCE_NUMBER', l.checkpoint)
    END;
END $$;
SELECT stream_internal._api_entry('get_lease_iterator');
