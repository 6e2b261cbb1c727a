---------------------------------------------------------------------------
-- Event source mappings: Lambda's trigger of a function per batch of a
-- stream's shard (src/esm/esm_kind.c), a processor of kind
-- "event_source_mapping" of the consumer runtime (35_processors.sql).
---------------------------------------------------------------------------

-- A record of a batch as the function receives it (Lambda's event fields).
CREATE TYPE stream.kinesis_event AS (
    partition_key                 text,
    sequence_number               text,
    data                          bytea,
    approximate_arrival_timestamp timestamptz,
    event_source_arn              text,
    shard_id                      text
);

CREATE TABLE stream.event_source_mappings (
    uuid                           uuid PRIMARY KEY,
    processor_id                   int NOT NULL UNIQUE REFERENCES stream.processors ON DELETE CASCADE,
    function_name                  regprocedure NOT NULL,
    event_source_id                int NOT NULL,
    starting_position              text NOT NULL,
    starting_position_timestamp    timestamptz,
    batch_size                     int NOT NULL,
    maximum_batching_window_in_seconds int NOT NULL,
    parallelization_factor         int NOT NULL,
    bisect_batch_on_function_error boolean NOT NULL,
    maximum_retry_attempts         int NOT NULL,
    maximum_record_age_in_seconds  int NOT NULL,
    on_failure_destination         text,
    function_response_types        text[] NOT NULL,
    tumbling_window_in_seconds     int NOT NULL,
    filter_criteria                jsonb,
    enabled                        boolean NOT NULL,
    function_timeout               interval NOT NULL,
    last_modified                  timestamptz NOT NULL
);

-- Per mapping and shard: the bisection under way, the retries of the
-- current batch and the counters; written in the transaction of each
-- invocation (with the effects and the checkpoint when it succeeded).
CREATE TABLE stream.event_source_mapping_shards (
    processor_id    int NOT NULL REFERENCES stream.processors ON DELETE CASCADE,
    shard_index     int NOT NULL,
    batch_limit     int,             -- records per batch while bisecting (NULL: batch_size)
    bisect_end      bigint,          -- the failed batch's end: bisection lasts until the checkpoint passes it
    attempts        int NOT NULL DEFAULT 0,   -- failed invocations of the current batch
    next_attempt_at timestamptz,
    invocations     bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    failed_records  bigint NOT NULL DEFAULT 0,   -- sent to the failure destination
    last_result     text,
    last_invoked_at timestamptz,
    last_arrival    timestamptz,     -- of the last record processed: the iterator age
    PRIMARY KEY (processor_id, shard_index)
) WITH (fillfactor = 50);

SELECT pg_catalog.pg_extension_config_dump('stream.event_source_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('stream.event_source_mapping_shards', '');
REVOKE ALL ON stream.event_source_mappings, stream.event_source_mapping_shards FROM PUBLIC;

-- Lambda's ranges and messages, for create and update.
CREATE FUNCTION stream_internal._esm_check(m stream.event_source_mappings) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF m.batch_size IS NULL OR m.batch_size < 1 OR m.batch_size > 10000 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('BatchSize must be between 1 and 10000, got %s', coalesce(m.batch_size::text, 'null')));
    END IF;
    IF m.maximum_batching_window_in_seconds IS NULL OR m.maximum_batching_window_in_seconds < 0 OR m.maximum_batching_window_in_seconds > 300 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('MaximumBatchingWindowInSeconds must be between 0 and 300, got %s', coalesce(m.maximum_batching_window_in_seconds::text, 'null')));
    END IF;
    IF m.parallelization_factor IS NULL OR m.parallelization_factor < 1 OR m.parallelization_factor > 10 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('ParallelizationFactor must be between 1 and 10, got %s', coalesce(m.parallelization_factor::text, 'null')));
    END IF;
    IF m.parallelization_factor > 1 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'ParallelizationFactor greater than 1 is not supported yet');
    END IF;
    IF m.maximum_retry_attempts IS NULL OR m.maximum_retry_attempts < -1 OR m.maximum_retry_attempts > 10000 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('MaximumRetryAttempts must be between -1 and 10000, got %s', coalesce(m.maximum_retry_attempts::text, 'null')));
    END IF;
    IF m.maximum_record_age_in_seconds IS NULL OR (m.maximum_record_age_in_seconds <> -1
       AND (m.maximum_record_age_in_seconds < 60 OR m.maximum_record_age_in_seconds > 604800)) THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('MaximumRecordAgeInSeconds must be -1 or between 60 and 604800, got %s', coalesce(m.maximum_record_age_in_seconds::text, 'null')));
    END IF;
    IF m.tumbling_window_in_seconds IS NULL OR m.tumbling_window_in_seconds < 0 OR m.tumbling_window_in_seconds > 900 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('TumblingWindowInSeconds must be between 0 and 900, got %s', coalesce(m.tumbling_window_in_seconds::text, 'null')));
    END IF;
    IF m.tumbling_window_in_seconds > 0 THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'TumblingWindowInSeconds is not supported yet');
    END IF;
    IF m.function_response_types IS NULL OR EXISTS (SELECT 1 FROM unnest(m.function_response_types) t
                                                     WHERE t IS DISTINCT FROM 'ReportBatchItemFailures') THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'FunctionResponseTypes may only contain ReportBatchItemFailures');
    END IF;
    IF m.filter_criteria IS NOT NULL THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'FilterCriteria is not supported yet');
    END IF;
    IF m.function_timeout IS NULL OR m.function_timeout < interval '1 s' OR m.function_timeout > interval '900 s' THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('function_timeout must be between 1 and 900 seconds, got %s', coalesce(m.function_timeout::text, 'null')));
    END IF;
    IF m.enabled IS NULL OR m.bisect_batch_on_function_error IS NULL THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'enabled and bisect_batch_on_function_error must not be null');
    END IF;
END $$;

-- The function's contract: one argument, stream.kinesis_event[] or jsonb;
-- the role may execute it.
CREATE FUNCTION stream_internal._esm_check_function(p_fn regprocedure, p_role oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_fn record;
BEGIN
    IF p_fn IS NULL THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'FunctionName must not be null');
    END IF;
    SELECT p.pronargs, p.proargtypes[0] AS arg0, p.proretset, p.prokind INTO v_fn FROM pg_proc p WHERE p.oid = p_fn;
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Function not found: %s', p_fn::oid));
    END IF;
    IF v_fn.prokind <> 'f' OR v_fn.pronargs <> 1 OR v_fn.proretset
       OR v_fn.arg0 NOT IN ('stream.kinesis_event[]'::regtype, 'jsonb'::regtype) THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('function %s must take one argument, stream.kinesis_event[] or jsonb, and return one value (void, jsonb or anything else)', p_fn));
    END IF;
    IF NOT has_function_privilege(p_role, p_fn, 'EXECUTE') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to invoke function %s', p_role::regrole, p_fn));
    END IF;
END $$;

-- A table destination: the owner inserts into its jsonb column "failure".
CREATE FUNCTION stream_internal._esm_check_destination(p_dest text, p_role oid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_rel regclass;
BEGIN
    IF p_dest IS NULL THEN
        RETURN NULL;
    END IF;
    v_rel := to_regclass(p_dest);
    IF v_rel IS NULL THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('on_failure_destination %s is not a table', p_dest));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = 'failure'
                      AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped) THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('on_failure_destination %s needs a column failure jsonb', v_rel));
    END IF;
    IF NOT has_table_privilege(p_role, v_rel, 'INSERT') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User %s is not authorized to insert into %s', p_role::regrole, v_rel));
    END IF;
    RETURN (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_rel);
END $$;

CREATE FUNCTION stream_internal._esm_json(m stream.event_source_mappings) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'UUID', m.uuid, 'FunctionArn', m.function_name::text,
        'EventSourceArn', (SELECT stream_internal._arn(s.stream_name) FROM stream.streams s WHERE s.stream_id = m.event_source_id),
        'StartingPosition', m.starting_position,
        'StartingPositionTimestamp', m.starting_position_timestamp,
        'BatchSize', m.batch_size, 'MaximumBatchingWindowInSeconds', m.maximum_batching_window_in_seconds,
        'ParallelizationFactor', m.parallelization_factor,
        'BisectBatchOnFunctionError', m.bisect_batch_on_function_error,
        'MaximumRetryAttempts', m.maximum_retry_attempts,
        'MaximumRecordAgeInSeconds', m.maximum_record_age_in_seconds,
        'DestinationConfig', jsonb_build_object('OnFailure', jsonb_build_object('Destination', m.on_failure_destination)),
        'FunctionResponseTypes', to_jsonb(m.function_response_types),
        'TumblingWindowInSeconds', m.tumbling_window_in_seconds,
        'FilterCriteria', m.filter_criteria,
        'State', CASE WHEN m.enabled THEN 'Enabled' ELSE 'Disabled' END,
        'FunctionTimeout', extract(epoch FROM m.function_timeout),
        'LastModified', m.last_modified,
        'Owner', (SELECT p.owner::text FROM stream.processors p WHERE p.processor_id = m.processor_id))
$$;

-- The mapping of that UUID that the caller may see (is a member of its owner).
CREATE FUNCTION stream_internal._esm(p_uuid uuid) RETURNS stream.event_source_mappings
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m stream.event_source_mappings;
BEGIN
    SELECT e.* INTO m FROM stream.event_source_mappings e JOIN stream.processors p USING (processor_id)
     WHERE e.uuid = p_uuid AND pg_has_role(stream_internal._caller(), p.owner, 'MEMBER');
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('The resource you requested does not exist. (Service: Lambda, UUID %s)', p_uuid));
    END IF;
    RETURN m;
END $$;

CREATE FUNCTION stream_internal.create_event_source_mapping(
    function_name                  regprocedure,
    event_source                   text,
    starting_position              text DEFAULT 'LATEST',
    starting_position_timestamp    timestamptz DEFAULT NULL,
    batch_size                     int DEFAULT 100,
    maximum_batching_window_in_seconds int DEFAULT 0,
    parallelization_factor         int DEFAULT 1,
    bisect_batch_on_function_error boolean DEFAULT false,
    maximum_retry_attempts         int DEFAULT -1,
    maximum_record_age_in_seconds  int DEFAULT -1,
    on_failure_destination         text DEFAULT NULL,
    function_response_types        text[] DEFAULT '{}',
    tumbling_window_in_seconds     int DEFAULT 0,
    filter_criteria                jsonb DEFAULT NULL,
    enabled                        boolean DEFAULT true,
    function_timeout               interval DEFAULT '60 s')
RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_invoker oid := stream_internal._caller();
    v_src stream.streams;
    v_now timestamptz := clock_timestamp();
    m stream.event_source_mappings;
    v_id int;
BEGIN
    IF event_source IS NULL THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'EventSourceArn must not be null');
    END IF;
    v_src := stream_internal._stream(regexp_replace(event_source, '^arn:aws:kinesis:[^:]*:[0-9]*:stream/', ''));
    PERFORM 1 FROM stream.streams st WHERE st.stream_id = v_src.stream_id FOR KEY SHARE;
    PERFORM stream_internal._require_role_read(v_src, v_invoker);
    PERFORM stream_internal._esm_check_function(function_name, v_invoker);
    IF starting_position IS NULL OR starting_position NOT IN ('LATEST', 'TRIM_HORIZON', 'AT_TIMESTAMP') THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', format('StartingPosition must be one of TRIM_HORIZON, LATEST, AT_TIMESTAMP, got %s', coalesce(starting_position, 'null')));
    END IF;
    IF (starting_position = 'AT_TIMESTAMP') <> (starting_position_timestamp IS NOT NULL) THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'StartingPositionTimestamp is required with AT_TIMESTAMP and only with it');
    END IF;
    IF starting_position_timestamp > v_now THEN
        PERFORM stream_internal._raise('InvalidParameterValueException', 'StartingPositionTimestamp must not be in the future');
    END IF;
    m := ROW(gen_random_uuid(), 0, function_name, v_src.stream_id, starting_position, starting_position_timestamp,
             batch_size, maximum_batching_window_in_seconds, parallelization_factor, bisect_batch_on_function_error,
             maximum_retry_attempts, maximum_record_age_in_seconds, NULL, function_response_types,
             tumbling_window_in_seconds, filter_criteria, enabled, function_timeout, v_now);
    PERFORM stream_internal._esm_check(m);
    m.on_failure_destination := stream_internal._esm_check_destination(on_failure_destination, v_invoker);
    -- AT_TIMESTAMP reads from each shard's start and skips older records (esm_kind.c)
    v_id := stream_internal._processor_register('event_source_mapping', v_src.stream_id, v_invoker::regrole,
                                                CASE starting_position WHEN 'LATEST' THEN 'LATEST' ELSE 'TRIM_HORIZON' END, v_now);
    m.processor_id := v_id;
    INSERT INTO stream.event_source_mappings SELECT m.*;
    PERFORM stream_internal._wake_worker();
    RETURN m.uuid;
END $$;
SELECT stream_internal._api_entry('create_event_source_mapping');

-- Changes what is given (NULL: unchanged); the checkpoints stay.
CREATE FUNCTION stream_internal.update_event_source_mapping(
    uuid                           uuid,
    function_name                  regprocedure DEFAULT NULL,
    batch_size                     int DEFAULT NULL,
    maximum_batching_window_in_seconds int DEFAULT NULL,
    parallelization_factor         int DEFAULT NULL,
    bisect_batch_on_function_error boolean DEFAULT NULL,
    maximum_retry_attempts         int DEFAULT NULL,
    maximum_record_age_in_seconds  int DEFAULT NULL,
    on_failure_destination         text DEFAULT NULL,
    function_response_types        text[] DEFAULT NULL,
    tumbling_window_in_seconds     int DEFAULT NULL,
    filter_criteria                jsonb DEFAULT NULL,
    enabled                        boolean DEFAULT NULL,
    function_timeout               interval DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_invoker oid := stream_internal._caller();
    m stream.event_source_mappings := stream_internal._esm(uuid);
BEGIN
    PERFORM 1 FROM stream.event_source_mappings e WHERE e.uuid = m.uuid FOR UPDATE;
    IF function_name IS NOT NULL THEN
        PERFORM stream_internal._esm_check_function(function_name, v_invoker);
        m.function_name := function_name;
    END IF;
    m.batch_size := coalesce(batch_size, m.batch_size);
    m.maximum_batching_window_in_seconds := coalesce(maximum_batching_window_in_seconds, m.maximum_batching_window_in_seconds);
    m.parallelization_factor := coalesce(parallelization_factor, m.parallelization_factor);
    m.bisect_batch_on_function_error := coalesce(bisect_batch_on_function_error, m.bisect_batch_on_function_error);
    m.maximum_retry_attempts := coalesce(maximum_retry_attempts, m.maximum_retry_attempts);
    m.maximum_record_age_in_seconds := coalesce(maximum_record_age_in_seconds, m.maximum_record_age_in_seconds);
    m.function_response_types := coalesce(function_response_types, m.function_response_types);
    m.tumbling_window_in_seconds := coalesce(tumbling_window_in_seconds, m.tumbling_window_in_seconds);
    m.filter_criteria := coalesce(filter_criteria, m.filter_criteria);
    m.enabled := coalesce(enabled, m.enabled);
    m.function_timeout := coalesce(function_timeout, m.function_timeout);
    m.last_modified := clock_timestamp();
    PERFORM stream_internal._esm_check(m);
    IF on_failure_destination IS NOT NULL THEN
        m.on_failure_destination := stream_internal._esm_check_destination(nullif(on_failure_destination, ''), v_invoker);
    END IF;
    UPDATE stream.event_source_mappings e SET function_name = m.function_name, batch_size = m.batch_size,
           maximum_batching_window_in_seconds = m.maximum_batching_window_in_seconds,
           parallelization_factor = m.parallelization_factor,
           bisect_batch_on_function_error = m.bisect_batch_on_function_error,
           maximum_retry_attempts = m.maximum_retry_attempts,
           maximum_record_age_in_seconds = m.maximum_record_age_in_seconds,
           on_failure_destination = m.on_failure_destination,
           function_response_types = m.function_response_types,
           tumbling_window_in_seconds = m.tumbling_window_in_seconds,
           filter_criteria = m.filter_criteria, enabled = m.enabled, function_timeout = m.function_timeout,
           last_modified = m.last_modified
     WHERE e.uuid = m.uuid;
    PERFORM stream_internal._wake_worker();
    RETURN stream_internal._esm_json(m);
END $$;
SELECT stream_internal._api_entry('update_event_source_mapping');

CREATE FUNCTION stream_internal.delete_event_source_mapping(uuid uuid) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m stream.event_source_mappings := stream_internal._esm(uuid);
    v_json jsonb := stream_internal._esm_json(m) || '{"State": "Deleting"}';
BEGIN
    -- after an invocation under way; the mapping's rows go with the processor
    PERFORM stream_internal._processor_drop(m.processor_id);
    RETURN v_json;
END $$;
SELECT stream_internal._api_entry('delete_event_source_mapping');

CREATE FUNCTION stream_internal.get_event_source_mapping(uuid uuid) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT stream_internal._esm_json(stream_internal._esm(uuid))
$$;
SELECT stream_internal._api_entry('get_event_source_mapping');

-- The mappings whose owner the caller is a member of, optionally of one
-- stream and/or function.
CREATE FUNCTION stream_internal.list_event_source_mappings(event_source text DEFAULT NULL,
                                                           function_name regprocedure DEFAULT NULL)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('EventSourceMappings', coalesce(jsonb_agg(stream_internal._esm_json(e) ORDER BY e.last_modified, e.uuid), '[]'))
      FROM stream.event_source_mappings e JOIN stream.processors p USING (processor_id)
      JOIN stream.streams s ON s.stream_id = e.event_source_id
     WHERE pg_has_role(stream_internal._caller(), p.owner, 'MEMBER')
       AND (list_event_source_mappings.event_source IS NULL
            OR s.stream_name = regexp_replace(list_event_source_mappings.event_source, '^arn:aws:kinesis:[^:]*:[0-9]*:stream/', ''))
       AND (list_event_source_mappings.function_name IS NULL OR e.function_name = list_event_source_mappings.function_name)
$$;
SELECT stream_internal._api_entry('list_event_source_mappings');

-- Per mapping and shard, for the roles that are members of its owner.
CREATE VIEW stream.event_source_mapping_status WITH (security_barrier) AS
SELECT e.uuid, e.function_name, s.stream_name AS event_source, stream_internal._shard_id(c.shard_index) AS shard_id,
       CASE WHEN NOT e.enabled THEN 'Disabled'
            WHEN g.next_attempt_at > now() THEN 'Retrying'
            WHEN g.batch_limit IS NOT NULL THEN 'Bisecting'
            ELSE 'Enabled' END AS state,
       g.last_result, coalesce(g.invocations, 0) AS invocations, coalesce(g.errors, 0) AS errors,
       coalesce(g.failed_records, 0) AS records_to_failure_destination,
       g.attempts AS failed_attempts_of_batch, g.last_invoked_at,
       CASE WHEN g.last_arrival IS NOT NULL THEN (extract(epoch FROM now() - g.last_arrival) * 1000)::bigint END AS iterator_age_ms,
       c.next_seq AS checkpoint_seq
  FROM stream.event_source_mappings e
  JOIN stream.processors p USING (processor_id)
  JOIN stream.processor_checkpoints c ON c.processor_id = e.processor_id
  LEFT JOIN stream.event_source_mapping_shards g ON g.processor_id = e.processor_id AND g.shard_index = c.shard_index
  LEFT JOIN stream.streams s ON s.stream_id = e.event_source_id
 WHERE pg_catalog.pg_has_role(current_user, p.owner, 'MEMBER');
GRANT SELECT ON stream.event_source_mapping_status TO PUBLIC;
