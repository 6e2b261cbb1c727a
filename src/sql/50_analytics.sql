---------------------------------------------------------------------------
-- Continuous queries (issue 13): windowed SQL over a stream, computed
-- incrementally by the background worker and written exactly once
-- (src/analytics/).  A query is a processor of kind continuous_query: its
-- source checkpoints, window state and output commit in one transaction.
---------------------------------------------------------------------------

-- Per query: its input type (the decoded columns) and its state table (the
-- partial aggregates of every open window and group), each owned by the
-- query's owner, whose code the worker runs as that owner.
CREATE SCHEMA stream_cq;
GRANT USAGE ON SCHEMA stream_cq TO PUBLIC;

CREATE TABLE stream.continuous_queries (
    processor_id   int PRIMARY KEY REFERENCES stream.processors ON DELETE CASCADE,
    query_name     text NOT NULL UNIQUE,
    query          text NOT NULL,
    window_kind    text NOT NULL CHECK (window_kind IN ('tumble', 'hop', 'session')),
    spec           jsonb NOT NULL,       -- the window function's arguments
    input_type     regtype NOT NULL,
    time_attno     int NOT NULL,         -- 0: arrival time
    size_us        bigint NOT NULL,      -- size (tumble, hop) or gap (session)
    slide_us       bigint NOT NULL,
    origin         timestamptz NOT NULL,
    lag_us         bigint NOT NULL,
    idle_us        bigint NOT NULL,
    batch_size     int NOT NULL,
    destination    text NOT NULL,
    state_table    text NOT NULL,
    batch_sql      text NOT NULL,
    merge_sql      text,
    emit_sql       text NOT NULL,
    late_destination text,               -- side output of late records (NULL: counted only)
    late_sql       text,
    status         text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'STOPPED')),
    watermark      timestamptz,
    records_in     bigint NOT NULL DEFAULT 0,
    records_late   bigint NOT NULL DEFAULT 0,
    records_failed bigint NOT NULL DEFAULT 0,
    rows_emitted   bigint NOT NULL DEFAULT 0,
    last_unit_at   timestamptz,
    created_at     timestamptz NOT NULL
);

-- Per query and shard: the highest time seen, and when it last had records.
CREATE TABLE stream.continuous_query_shards (
    processor_id int NOT NULL REFERENCES stream.processors ON DELETE CASCADE,
    shard_index  int NOT NULL,
    max_time     timestamptz,
    active_at    timestamptz NOT NULL,
    PRIMARY KEY (processor_id, shard_index)
) WITH (fillfactor = 50);

SELECT pg_catalog.pg_extension_config_dump('stream.continuous_queries', '');
SELECT pg_catalog.pg_extension_config_dump('stream.continuous_query_shards', '');
REVOKE ALL ON stream.continuous_queries, stream.continuous_query_shards FROM PUBLIC;

-- The window functions.  A continuous query reads from one of them; they
-- add window_start and window_end to the declared columns.
CREATE FUNCTION stream.tumble(stream_name text, size interval, time_column text DEFAULT NULL,
                              watermark_lag interval DEFAULT NULL, origin timestamptz DEFAULT 'epoch')
RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM stream_internal._raise('InvalidArgumentException', 'stream.tumble is read by continuous queries: SELECT stream.create_continuous_query(name, query, destination)');
END $$;
CREATE FUNCTION stream.hop(stream_name text, size interval, slide interval, time_column text DEFAULT NULL,
                           watermark_lag interval DEFAULT NULL, origin timestamptz DEFAULT 'epoch')
RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM stream_internal._raise('InvalidArgumentException', 'stream.hop is read by continuous queries: SELECT stream.create_continuous_query(name, query, destination)');
END $$;
CREATE FUNCTION stream.session(stream_name text, gap interval, time_column text DEFAULT NULL,
                               watermark_lag interval DEFAULT NULL)
RETURNS SETOF record LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM stream_internal._raise('InvalidArgumentException', 'stream.session is read by continuous queries: SELECT stream.create_continuous_query(name, query, destination)');
END $$;

-- Their arguments as jsonb: the same signatures (src/analytics/cq_analyze.c
-- evaluates the call with these in place of the window functions).
CREATE FUNCTION stream_internal._tumble_spec(stream_name text, size interval, time_column text DEFAULT NULL,
                                             watermark_lag interval DEFAULT NULL, origin timestamptz DEFAULT 'epoch')
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN jsonb_build_object('stream', stream_name, 'size', size::text, 'slide', size::text,
                              'time_column', time_column, 'watermark_lag', watermark_lag::text, 'origin', origin);
END $$;
CREATE FUNCTION stream_internal._hop_spec(stream_name text, size interval, slide interval, time_column text DEFAULT NULL,
                                          watermark_lag interval DEFAULT NULL, origin timestamptz DEFAULT 'epoch')
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN jsonb_build_object('stream', stream_name, 'size', size::text, 'slide', slide::text,
                              'time_column', time_column, 'watermark_lag', watermark_lag::text, 'origin', origin);
END $$;
CREATE FUNCTION stream_internal._session_spec(stream_name text, gap interval, time_column text DEFAULT NULL,
                                              watermark_lag interval DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN jsonb_build_object('stream', stream_name, 'size', gap::text, 'slide', gap::text,
                              'time_column', time_column, 'watermark_lag', watermark_lag::text, 'origin', 'epoch'::timestamptz);
END $$;

CREATE FUNCTION stream_internal._cq_analyze(query text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'stream_cq_analyze' LANGUAGE C STABLE STRICT;
-- The rows of the unit under way, for its owner's batch statement only.
CREATE FUNCTION stream_internal._cq_batch() RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'stream_cq_batch' LANGUAGE C VOLATILE;

-- microseconds of an interval without months (as date_bin: a day is 24 hours)
CREATE FUNCTION stream_internal._cq_usecs(p_name text, p_value interval, p_positive bool) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN 0;
    END IF;
    IF extract(month FROM p_value) <> 0 OR extract(year FROM p_value) <> 0 THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('%s must not contain months or years', p_name));
    END IF;
    IF (p_positive AND p_value <= interval '0') OR p_value < interval '0' THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('%s must be %s, got %s', p_name,
                                       CASE WHEN p_positive THEN 'positive' ELSE 'zero or positive' END, p_value));
    END IF;
    RETURN (extract(epoch FROM p_value) * 1000000)::bigint;
END $$;

-- The marks of a unit's shards.
CREATE FUNCTION stream_internal._cq_marks(p_id int, p_shards int[], p_max timestamptz[], p_active timestamptz[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO stream.continuous_query_shards AS c (processor_id, shard_index, max_time, active_at)
    SELECT p_id, r.s, r.m, r.a FROM unnest(p_shards, p_max, p_active) AS r(s, m, a)
        ON CONFLICT (processor_id, shard_index) DO UPDATE SET max_time = EXCLUDED.max_time, active_at = EXCLUDED.active_at
$$;

-- A table a query writes: p_name if it exists (the caller may insert into it), else
-- created as CREATE TABLE p_name p_definition and owned by the caller.
-- Returns it quoted, schema-qualified.
CREATE FUNCTION stream_internal._cq_table(p_what text, p_name text, p_invoker oid, p_definition text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v regclass := to_regclass(p_name);
BEGIN
    IF v IS NULL THEN
        IF p_name !~ '^[a-zA-Z_][a-zA-Z0-9_]*\.[a-zA-Z_][a-zA-Z0-9_]*$' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('%s %L must be schema.table', p_what, p_name));
        END IF;
        IF NOT has_schema_privilege(p_invoker, split_part(p_name, '.', 1), 'CREATE') THEN
            PERFORM stream_internal._raise('AccessDeniedException', format('permission denied to create table %s', p_name));
        END IF;
        EXECUTE 'CREATE TABLE ' || p_name || ' ' || p_definition;   -- p_name: schema.table, checked above
        EXECUTE format('ALTER TABLE %s OWNER TO %I', p_name, (SELECT rolname FROM pg_roles WHERE oid = p_invoker));
        v := to_regclass(p_name);
    ELSIF NOT has_table_privilege(p_invoker, v, 'INSERT') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('permission denied to insert into %s', v));
    END IF;
    RETURN (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = v);
END $$;

CREATE FUNCTION stream_internal.create_continuous_query(
    query_name        text,
    query             text,
    destination       text,
    batch_size        int DEFAULT 500,
    idle_timeout      interval DEFAULT '5 seconds',
    starting_position text DEFAULT 'TRIM_HORIZON',
    late_destination  text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_invoker oid := stream_internal._caller();
    v_role text := (SELECT rolname FROM pg_roles WHERE oid = v_invoker);
    v_super bool := (SELECT rolsuper FROM pg_roles WHERE oid = v_invoker);
    v_a jsonb;
    v_spec jsonb;
    v_kind text;
    v_src stream.streams;
    v_id int;
    v_now timestamptz := clock_timestamp();
    v_time_attno int := 0;
    v_size bigint; v_slide bigint; v_lag bigint; v_idle bigint;
    v_cols text; v_coldefs text; v_in text; v_state text;
    v_groups text[]; v_gcols text; v_gsel text; v_gby text;
    v_pcols text; v_psel text; v_merge text; v_combine text;
    v_dest_text text; v_dst stream.streams; v_rec text; v_out_names text; v_out_exprs text;
    v_batch text; v_msql text; v_emit text;
    v_where text;
    v_late_text text; v_late_sql text;
    v_missing text;
    r record;
    i int;
BEGIN
    IF query_name IS NULL THEN PERFORM stream_internal._raise_null('queryName'); END IF;
    IF query IS NULL THEN PERFORM stream_internal._raise_null('query'); END IF;
    IF destination IS NULL THEN PERFORM stream_internal._raise_null('destination'); END IF;
    IF length(query_name) < 1 OR length(query_name) > 32 OR query_name !~ '^[a-zA-Z0-9_.-]+$' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''queryName'' failed to satisfy constraint: Member must have length less than or equal to 32 and satisfy regular expression pattern: [a-zA-Z0-9_.-]+', query_name));
    END IF;
    IF EXISTS (SELECT 1 FROM stream.continuous_queries q WHERE q.query_name = create_continuous_query.query_name) THEN
        PERFORM stream_internal._raise('ResourceInUseException', format('Continuous query %s already exists.', query_name));
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 10000 THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'batch_size must be between 1 and 10000');
    END IF;
    IF starting_position IS NULL OR starting_position NOT IN ('LATEST', 'TRIM_HORIZON') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'starting_position must be LATEST or TRIM_HORIZON');
    END IF;
    v_idle := stream_internal._cq_usecs('idle_timeout', idle_timeout, true);

    -- parse and analyze: refuses what cannot be computed incrementally
    v_a := stream_internal._cq_analyze(query);
    v_kind := v_a->>'kind';
    v_spec := v_a->'spec';

    -- the source, readable by the caller
    v_src := stream_internal._stream(v_spec->>'stream');
    PERFORM 1 FROM stream.streams st WHERE st.stream_id = v_src.stream_id FOR KEY SHARE;
    IF NOT v_super AND NOT has_table_privilege(v_invoker, stream_internal._data_table(v_src.stream_id), 'SELECT') THEN
        PERFORM stream_internal._raise('AccessDeniedException', format('User is not authorized to read records from stream %s', v_src.stream_name));
    END IF;

    v_size := stream_internal._cq_usecs(CASE v_kind WHEN 'session' THEN 'gap' ELSE 'size' END, (v_spec->>'size')::interval, true);
    v_slide := stream_internal._cq_usecs('slide', (v_spec->>'slide')::interval, true);
    v_lag := stream_internal._cq_usecs('watermark_lag', (v_spec->>'watermark_lag')::interval, false);
    IF v_kind = 'hop' AND v_size / v_slide > 100 THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'a hopping window may overlap at most 100 others (size / slide <= 100)');
    END IF;
    IF v_spec->>'time_column' IS NOT NULL THEN
        SELECT c.n, c.e->>'type' AS type INTO r
          FROM jsonb_array_elements(v_a->'columns') WITH ORDINALITY AS c(e, n)
         WHERE c.e->>'name' = v_spec->>'time_column';
        IF NOT FOUND THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('time_column %s is not a declared column', v_spec->>'time_column'));
        END IF;
        IF r.type <> 'timestamp with time zone' THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('time_column %s must be declared timestamptz, not %s', v_spec->>'time_column', r.type));
        END IF;
        v_time_attno := r.n;
    END IF;

    v_id := stream_internal._processor_register('continuous_query', v_src.stream_id, v_invoker::regrole, starting_position, v_now);
    v_in := format('stream_cq.cq_%s_in', v_id);
    v_state := format('stream_cq.cq_%s_state', v_id);

    -- the decoded columns
    SELECT string_agg(format('%I %s', c->>'name', c->>'type'), ', ' ORDER BY n) INTO v_cols
      FROM jsonb_array_elements(v_a->'columns') WITH ORDINALITY AS x(c, n);
    EXECUTE format('CREATE TYPE %s AS (%s)', v_in, v_cols);
    v_coldefs := v_cols || ', window_start timestamptz, window_end timestamptz';

    -- the state: per window and group, the partial aggregates
    SELECT array_agg(g ORDER BY n) INTO v_groups FROM jsonb_array_elements_text(v_a->'groups') WITH ORDINALITY AS x(g, n);
    v_gcols := ''; v_gsel := ''; v_gby := '1, 2';
    FOR i IN 1 .. coalesce(array_length(v_groups, 1), 0) LOOP
        v_gcols := v_gcols || format(', g%s', i);
        v_gsel := v_gsel || format(', %s AS g%s', v_groups[i], i);
        v_gby := v_gby || format(', %s', i + 2);
    END LOOP;
    SELECT string_agg(', ' || (p->>'col'), '' ORDER BY n),
           string_agg(format(', %s AS %s', p->>'expr', p->>'col'), '' ORDER BY n),
           string_agg(format('%s = %s', p->>'col',
               CASE p->>'merge'
                 WHEN 'add' THEN format('CASE WHEN st.%1$s IS NULL THEN EXCLUDED.%1$s WHEN EXCLUDED.%1$s IS NULL THEN st.%1$s ELSE st.%1$s + EXCLUDED.%1$s END', p->>'col')
                 WHEN 'least' THEN format('least(st.%1$s, EXCLUDED.%1$s)', p->>'col')
                 WHEN 'greatest' THEN format('greatest(st.%1$s, EXCLUDED.%1$s)', p->>'col')
                 WHEN 'and' THEN format('CASE WHEN st.%1$s IS NULL THEN EXCLUDED.%1$s WHEN EXCLUDED.%1$s IS NULL THEN st.%1$s ELSE st.%1$s AND EXCLUDED.%1$s END', p->>'col')
                 WHEN 'or' THEN format('CASE WHEN st.%1$s IS NULL THEN EXCLUDED.%1$s WHEN EXCLUDED.%1$s IS NULL THEN st.%1$s ELSE st.%1$s OR EXCLUDED.%1$s END', p->>'col')
               END), ', ' ORDER BY n),
           string_agg(format(', %s(i.%s)',
               CASE p->>'merge' WHEN 'add' THEN 'sum' WHEN 'least' THEN 'min' WHEN 'greatest' THEN 'max'
                                WHEN 'and' THEN 'bool_and' ELSE 'bool_or' END, p->>'col'), '' ORDER BY n)
      INTO v_pcols, v_psel, v_merge, v_combine
      FROM jsonb_array_elements(v_a->'partials') WITH ORDINALITY AS x(p, n);
    v_where := CASE WHEN v_a->>'where' IS NULL THEN '' ELSE ' WHERE ' || (v_a->>'where') END;
    EXECUTE format('CREATE TABLE %s AS SELECT t.window_start, t.window_end%s%s FROM stream_internal._cq_batch() AS t(%s) GROUP BY %s WITH NO DATA',
                   v_state, v_gsel, v_psel, v_coldefs, v_gby);
    EXECUTE format('CREATE UNIQUE INDEX ON %s (window_start, window_end%s) NULLS NOT DISTINCT', v_state, v_gcols);
    v_batch := format('INSERT INTO %s AS st (window_start, window_end%s%s) SELECT t.window_start, t.window_end%s%s FROM stream_internal._cq_batch() AS t(%s)%s GROUP BY %s ON CONFLICT (window_start, window_end%s) DO UPDATE SET %s',
                      v_state, v_gcols, v_pcols, v_gsel, v_psel, v_coldefs, v_where, v_gby, v_gcols, v_merge);
    IF v_kind = 'session' THEN
        -- sessions of a group that meet become one: gaps and islands over the open ones
        v_msql := format('WITH d AS (DELETE FROM %1$s RETURNING *), '
                         'm AS (SELECT d.*, max(d.window_end) OVER (%2$s ORDER BY d.window_start, d.window_end ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS cq_prev_end FROM d), '
                         'i AS (SELECT m.*, sum(CASE WHEN m.window_start < m.cq_prev_end THEN 0 ELSE 1 END) OVER (%3$s ORDER BY m.window_start, m.window_end ROWS UNBOUNDED PRECEDING) AS cq_island FROM m) '
                         'INSERT INTO %1$s (window_start, window_end%4$s%5$s) SELECT min(i.window_start), max(i.window_end)%6$s%7$s FROM i GROUP BY cq_island%6$s',
                         v_state,
                         CASE WHEN v_gcols = '' THEN '' ELSE 'PARTITION BY ' || ltrim(replace(v_gcols, ', g', ', d.g'), ', ') END,
                         CASE WHEN v_gcols = '' THEN '' ELSE 'PARTITION BY ' || ltrim(replace(v_gcols, ', g', ', m.g'), ', ') END,
                         v_gcols, v_pcols, replace(v_gcols, ', g', ', i.g'), v_combine);
    END IF;

    -- the destination: a table the caller may insert into, or a new one it owns; or a
    -- stream or direct-put delivery stream, each window's rows put as JSON records
    SELECT string_agg(format('%I', o->>'name'), ', ' ORDER BY n), string_agg(format('%s AS %I', o->>'expr', o->>'name'), ', ' ORDER BY n)
      INTO v_out_names, v_out_exprs
      FROM jsonb_array_elements(v_a->'outputs') WITH ORDINALITY AS x(o, n);
    IF destination ~ '^(stream|delivery_stream):' THEN
        v_dest_text := substr(destination, strpos(destination, ':') + 1);
        -- a partition key per window and group: equal for the same window whenever it is computed
        v_rec := format('WITH s AS (DELETE FROM %s s WHERE s.window_end <= $1 RETURNING s.*), '
                        'o AS (SELECT %s, %L || ''|'' || md5(concat_ws(''|'', s.window_start, s.window_end%s)) AS cq_key FROM s%s), '
                        'j AS (SELECT (row_number() OVER () - 1) / 500 AS b, o.cq_key, '
                        'convert_to((to_jsonb(o) - ''cq_key'')::text, ''UTF8'') AS d FROM o), '
                        'g AS (SELECT array_agg(j.cq_key) AS ks, array_agg(j.d) AS ds FROM j GROUP BY j.b) ',
                        v_state, v_out_exprs, query_name, replace(v_gcols, ', g', ', s.g'),
                        CASE WHEN v_a->>'having' IS NULL THEN '' ELSE ' WHERE ' || (v_a->>'having') END);
        IF destination ~ '^stream:' THEN
            v_dst := stream_internal._stream(v_dest_text);
            IF v_dst.stream_id = v_src.stream_id THEN
                PERFORM stream_internal._raise('InvalidArgumentException', 'a continuous query cannot write to its own source stream');
            END IF;
            IF NOT v_super AND NOT has_table_privilege(v_invoker, stream_internal._data_table(v_dst.stream_id), 'INSERT') THEN
                PERFORM stream_internal._raise('AccessDeniedException', format('User is not authorized to put records to stream %s', v_dest_text));
            END IF;
            v_emit := v_rec || format('SELECT count(*) FILTER (WHERE r.error_code IS NULL), count(*) FILTER (WHERE r.error_code IS NOT NULL), '
                                      'min(r.error_code || '': '' || r.error_message) '
                                      'FROM g, LATERAL stream.put_records(%L, g.ks, g.ds) r', v_dest_text);
        ELSE
            IF (stream_internal._delivery_stream(v_dest_text)).delivery_stream_type <> 'DirectPut' THEN
                PERFORM stream_internal._raise('InvalidArgumentException', format('Firehose %s reads a stream; a continuous query writes to DirectPut delivery streams', v_dest_text));
            END IF;
            v_emit := v_rec || format('SELECT count(*) FILTER (WHERE r.error_code IS NULL), count(*) FILTER (WHERE r.error_code IS NOT NULL), '
                                      'min(r.error_code || '': '' || r.error_message) '
                                      'FROM g, LATERAL stream.put_delivery_record_batch(%L, g.ds) r', v_dest_text);
        END IF;
        v_dest_text := destination;
    ELSE
        v_dest_text := stream_internal._cq_table('destination', destination, v_invoker,
                                                 format('AS SELECT %s FROM %s s WITH NO DATA', v_out_exprs, v_state));
        SELECT string_agg(o->>'name', ', ') INTO v_missing
          FROM jsonb_array_elements(v_a->'outputs') o
         WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_dest_text::regclass AND a.attname = o->>'name'
                              AND a.attnum > 0 AND NOT a.attisdropped);
        IF v_missing IS NOT NULL THEN
            PERFORM stream_internal._raise('InvalidArgumentException', format('destination %s has no column %s', v_dest_text, v_missing));
        END IF;
        v_emit := format('WITH s AS (DELETE FROM %s s WHERE s.window_end <= $1 RETURNING s.*) INSERT INTO %s (%s) SELECT %s FROM s%s',
                         v_state, v_dest_text, v_out_names, v_out_exprs,
                         CASE WHEN v_a->>'having' IS NULL THEN '' ELSE ' WHERE ' || (v_a->>'having') END);
    END IF;

    -- late records: a side output table (query_name, shard_id, sequence_number, record_time, watermark, data)
    IF late_destination IS NOT NULL THEN
        v_late_text := stream_internal._cq_table('late_destination', late_destination, v_invoker,
            '(query_name text NOT NULL, shard_id text NOT NULL, sequence_number text NOT NULL, '
            'record_time timestamptz NOT NULL, watermark timestamptz NOT NULL, data jsonb NOT NULL)');
        v_late_sql := format('INSERT INTO %s (query_name, shard_id, sequence_number, record_time, watermark, data) '
                             'SELECT %L, r.s, r.q, r.t, r.w, r.d::jsonb FROM unnest($1::text[], $2::text[], $3::timestamptz[], '
                             '$4::timestamptz[], $5::text[]) AS r(s, q, t, w, d)', v_late_text, query_name);
    END IF;

    EXECUTE format('ALTER TYPE %s OWNER TO %I', v_in, v_role);
    EXECUTE format('ALTER TABLE %s OWNER TO %I', v_state, v_role);

    INSERT INTO stream.continuous_queries (processor_id, query_name, query, window_kind, spec, input_type, time_attno,
        size_us, slide_us, origin, lag_us, idle_us, batch_size, destination, state_table, batch_sql, merge_sql, emit_sql,
        late_destination, late_sql, created_at)
    VALUES (v_id, query_name, query, v_kind, v_spec, v_in::regtype, v_time_attno, v_size, v_slide,
            (v_spec->>'origin')::timestamptz, v_lag, v_idle, batch_size, v_dest_text, v_state, v_batch, v_msql, v_emit, v_late_text, v_late_sql, v_now);
    PERFORM stream_internal._wake_worker();
    RETURN query_name;
END $$;
SELECT stream_internal._api_entry('create_continuous_query');

-- A continuous query the caller may manage (a member of its owner's role).
CREATE FUNCTION stream_internal._continuous_query(p_name text) RETURNS stream.continuous_queries
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q stream.continuous_queries;
BEGIN
    SELECT c.* INTO q FROM stream.continuous_queries c JOIN stream.processors p USING (processor_id)
     WHERE c.query_name = p_name AND pg_has_role(stream_internal._caller(), p.owner, 'MEMBER');
    IF NOT FOUND THEN
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Continuous query %s not found.', p_name));
    END IF;
    RETURN q;
END $$;

CREATE FUNCTION stream_internal.describe_continuous_query(query_name text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q stream.continuous_queries := stream_internal._continuous_query(query_name);
    v_open bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s', q.state_table) INTO v_open;
    RETURN jsonb_build_object('QueryName', q.query_name, 'Query', q.query, 'WindowKind', q.window_kind,
        'Window', q.spec, 'Destination', q.destination, 'Status', q.status, 'Watermark', q.watermark,
        'OpenWindowGroups', v_open, 'RecordsIn', q.records_in, 'RecordsLate', q.records_late,
        'RecordsFailed', q.records_failed, 'RowsEmitted', q.rows_emitted, 'LateDestination', q.late_destination, 'CreatedAt', q.created_at);
END $$;
SELECT stream_internal._api_entry('describe_continuous_query');

-- Start (resume from the checkpoints) or stop a query; state and checkpoints stay.
CREATE FUNCTION stream_internal._continuous_query_set_status(p_name text, p_status text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q stream.continuous_queries := stream_internal._continuous_query(p_name);
BEGIN
    UPDATE stream.continuous_queries SET status = p_status WHERE processor_id = q.processor_id;
    IF p_status = 'RUNNING' THEN
        PERFORM stream_internal._wake_worker();
    END IF;
END $$;

CREATE FUNCTION stream_internal.start_continuous_query(query_name text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._continuous_query_set_status(query_name, 'RUNNING') $$;
SELECT stream_internal._api_entry('start_continuous_query');

CREATE FUNCTION stream_internal.stop_continuous_query(query_name text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT stream_internal._continuous_query_set_status(query_name, 'STOPPED') $$;
SELECT stream_internal._api_entry('stop_continuous_query');

-- Deletes the query, its state and input type; the destination stays.
CREATE FUNCTION stream_internal.delete_continuous_query(query_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    q stream.continuous_queries := stream_internal._continuous_query(query_name);
BEGIN
    -- after a unit of it under way
    PERFORM stream_internal._processor_drop(q.processor_id);
    EXECUTE format('DROP TABLE IF EXISTS %s', q.state_table);
    EXECUTE format('DROP TYPE IF EXISTS %s', q.input_type);
END $$;
SELECT stream_internal._api_entry('delete_continuous_query');

-- One row per continuous query whose owner the querying role is a member of.
CREATE VIEW stream.continuous_query_status WITH (security_barrier) AS
SELECT q.query_name, p.owner, s.stream_name AS source_stream_name, q.window_kind, q.destination, q.status,
       q.watermark, q.records_in, q.records_late, q.records_failed, q.rows_emitted, q.last_unit_at,
       g.last_error, g.last_error_at, g.failed_attempts
  FROM stream.continuous_queries q
  JOIN stream.processors p USING (processor_id)
  JOIN stream.processor_progress g USING (processor_id)
  LEFT JOIN stream.streams s ON s.stream_id = p.source_stream_id
 WHERE pg_catalog.pg_has_role(current_user, p.owner, 'MEMBER');
GRANT SELECT ON stream.continuous_query_status TO PUBLIC;
