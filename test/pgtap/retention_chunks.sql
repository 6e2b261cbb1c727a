-- Chunks and retention: chunks exist ahead of time, expired records are not
-- returned, run_maintenance drops whole expired chunks (no DELETE, no
-- TRUNCATE), and the catalog is registered for pg_dump.
--
-- There is no hook to fake arrival times, so old records are made the way a
-- long-running stream would have them: as superuser, old chunks are created
-- (stream_data.s<id>_<k> covering hour buckets [k*chunk_hours, (k+1)*chunk_hours))
-- and rows with old sequence numbers ((hour bucket << 32) | counter) and
-- arrival times are inserted into them; the shards' starting sequence is
-- moved back to before them (docs/DESIGN.md, "Storage" and "Sequence numbers").
--
-- No outer BEGIN/ROLLBACK: reads must see committed records.  The background
-- worker may run maintenance at any moment, so no test depends on which of
-- the two trims a chunk.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
\o /dev/null
DO $$ BEGIN
    PERFORM stream.delete_stream(stream_name) FROM stream.list_streams() WHERE stream_name LIKE 'tap_ret_%';
END $$;
DROP TABLE IF EXISTS public.tap_ret_trim_log;
CREATE TABLE public.tap_ret_trim_log (tbl text, op text, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION public.tap_ret_log_trim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.tap_ret_trim_log (tbl, op) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END $$;

-- hour bucket of a timestamp, chunk of a bucket
CREATE FUNCTION pg_temp.bucket(t timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS
$$ SELECT floor(extract(epoch FROM t) / 3600)::bigint $$;
CREATE FUNCTION pg_temp.chunk_exists(stream_id int, k bigint) RETURNS bool LANGUAGE sql AS
$$ SELECT to_regclass(format('stream_data.%I', 's' || stream_id || '_' || k)) IS NOT NULL $$;
-- Make a chunk (if missing) holding hour bucket b, put a record with
-- arrival time t into it, and watch it for DELETE / TRUNCATE.
CREATE FUNCTION pg_temp.fake_record(p_stream text, t timestamptz, pk text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s stream.streams;
    b bigint := pg_temp.bucket(t);
    k bigint;
    chunk text;
BEGIN
    SELECT * INTO s FROM stream.streams WHERE stream_name = p_stream;
    k := b / s.chunk_hours;
    chunk := 's' || s.stream_id || '_' || k;
    IF to_regclass(format('stream_data.%I', chunk)) IS NULL THEN
        EXECUTE format('CREATE TABLE stream_data.%I PARTITION OF stream_data.%I FOR VALUES FROM (%s) TO (%s)',
                       chunk, 's' || s.stream_id, (k * s.chunk_hours) << 32, ((k + 1) * s.chunk_hours) << 32);
    END IF;
    EXECUTE format('INSERT INTO stream_data.%I VALUES (0, %s, %L, %L, %L)',
                   's' || s.stream_id, (b << 32) + 1 + extract(second FROM t)::int, t, pk, '\x00'::bytea);
    -- the shard's first sequence number must not be after the faked record
    UPDATE stream.shards SET starting_seq = least(starting_seq, (b << 32)), created_at = least(created_at, t)
     WHERE stream_id = s.stream_id;
    UPDATE stream.streams SET created_at = least(created_at, t) WHERE stream_id = s.stream_id;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = format('stream_data.%I', chunk)::regclass
                                              AND tgname = 'tap_ret_no_delete') THEN
        EXECUTE format('CREATE TRIGGER tap_ret_no_delete AFTER DELETE ON stream_data.%I FOR EACH ROW EXECUTE FUNCTION public.tap_ret_log_trim()', chunk);
        EXECUTE format('CREATE TRIGGER tap_ret_no_truncate AFTER TRUNCATE ON stream_data.%I FOR EACH STATEMENT EXECUTE FUNCTION public.tap_ret_log_trim()', chunk);
    END IF;
    PERFORM stream_internal._catalog_changed();
END $$;
CREATE FUNCTION pg_temp.keys(p_stream text) RETURNS text LANGUAGE sql AS
$$ SELECT coalesce(string_agg(partition_key, ',' ORDER BY sequence_number), '') FROM stream.read_shard(p_stream, 'shardId-000000000000') $$;

SELECT stream.create_stream('tap_ret_a', 1);          -- retention 24 h
SELECT stream.create_stream('tap_ret_b', 1, 48);      -- retention 48 h
SELECT stream_id AS id_a, 's' || stream_id AS id_a_parent, chunk_hours AS ch_a FROM stream.streams WHERE stream_name = 'tap_ret_a' \gset
SELECT stream_id AS id_b, chunk_hours AS ch_b FROM stream.streams WHERE stream_name = 'tap_ret_b' \gset
SELECT clock_timestamp() AS t_created \gset
\o

SELECT plan(34);

-------------------------------------------------------------------------
-- chunks exist ahead of time, right after create_stream
-------------------------------------------------------------------------
SELECT ok(pg_temp.chunk_exists(:id_a, pg_temp.bucket(clock_timestamp()) / :ch_a),
          'the chunk covering now exists right after create_stream');
SELECT ok(pg_temp.chunk_exists(:id_a, pg_temp.bucket(clock_timestamp() + interval '1 hour') / :ch_a)
          AND pg_temp.chunk_exists(:id_a, pg_temp.bucket(clock_timestamp() + interval '2 hours') / :ch_a),
          'the chunks of the next hours exist as well');
SELECT cmp_ok((SELECT count(*)::int FROM pg_inherits WHERE inhparent = format('stream_data.%I', 's' || :id_a)::regclass),
              '>=', 1 + current_setting('stream.chunk_premake')::int,
              'at least 1 + stream.chunk_premake chunks exist');
SELECT is((SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
            WHERE c.oid = format('stream_data.%I', 's' || :id_a || '_' || (pg_temp.bucket(clock_timestamp()) / :ch_a))::regclass),
          format('FOR VALUES FROM (''%s'') TO (''%s'')',
                 ((pg_temp.bucket(clock_timestamp()) / :ch_a) * :ch_a) << 32,
                 ((pg_temp.bucket(clock_timestamp()) / :ch_a + 1) * :ch_a) << 32),
          'the current chunk covers exactly its hour buckets of sequence numbers');
-- records written by put_record satisfy their chunk's partition bounds (queries on the
-- parent table prune by them, and pg_dump's COPY into a chunk checks them)
\o /dev/null
SELECT substr(sequence_number, 2, 19)::bigint AS put_seq FROM stream.put_record('tap_ret_a', 'bounds', '\x00') \gset
\o
SELECT is((SELECT count(*)::int FROM stream_data.:"id_a_parent" WHERE seq = :put_seq AND partition_key = 'bounds'), 1,
          'a put record is found through the parent table by its sequence number (partition bounds hold)');
SELECT is(:ch_b, 2, 'a 48 h stream has 2-hour chunks');
SELECT ok(pg_temp.chunk_exists(:id_b, pg_temp.bucket(clock_timestamp()) / :ch_b), 'the 48 h stream has its current chunk');
SELECT is((SELECT count(*)::int FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = format('stream_data.%I', 's' || :id_a)::regclass
              AND c.relname !~ ('^s' || :id_a || '_[0-9]+$')), 0, 'chunks are named s<id>_<k>');
-- chunk tables are ordinary tables, not extension members, so pg_dump saves them
SELECT is((SELECT count(*)::int FROM pg_depend d
            WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
              AND d.objid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = format('stream_data.%I', 's' || :id_a)::regclass
                              UNION ALL SELECT format('stream_data.%I', 's' || :id_a)::regclass)), 0,
          'stream tables and chunks are not extension members (pg_dump dumps them with their data)');

-- maintenance recreates a missing future chunk
\o /dev/null
SELECT format('stream_data.%I', 's' || :id_a || '_' || (pg_temp.bucket(clock_timestamp() + interval '3 hours') / :ch_a)) AS future_chunk \gset
\o
-- (in one transaction, so that the background worker cannot remake it in between)
BEGIN;
DROP TABLE :future_chunk;
SELECT ok(NOT pg_temp.chunk_exists(:id_a, pg_temp.bucket(clock_timestamp() + interval '3 hours') / :ch_a), 'a future chunk was dropped by hand');
COMMIT;
SELECT lives_ok('SELECT * FROM stream.run_maintenance()', 'run_maintenance runs');
SELECT ok(pg_temp.chunk_exists(:id_a, pg_temp.bucket(clock_timestamp() + interval '3 hours') / :ch_a), 'run_maintenance made it again');
SELECT results_eq($$SELECT stream_name, chunks_created >= 0, chunks_dropped >= 0 FROM stream.run_maintenance()
                     WHERE stream_name LIKE 'tap_ret_%' ORDER BY 1$$,
                  $$VALUES ('tap_ret_a'::text, true, true), ('tap_ret_b', true, true)$$,
                  'run_maintenance returns one row per stream with chunk counts');

-------------------------------------------------------------------------
-- expired records are not returned, and maintenance drops whole chunks
-------------------------------------------------------------------------
\o /dev/null
SELECT count(*) FROM stream.put_record('tap_ret_a', 'now-a', '\x01');
SELECT count(*) FROM stream.put_record('tap_ret_b', 'now-b', '\x01');
SELECT pg_temp.fake_record('tap_ret_a', now() - interval '30 hours', 'a-30h');   -- past 24 h
SELECT pg_temp.fake_record('tap_ret_a', now() - interval '60 hours', 'a-60h');   -- past 24 h
SELECT pg_temp.fake_record('tap_ret_a', now() - interval '5 hours', 'a-5h');     -- retained
SELECT pg_temp.fake_record('tap_ret_b', now() - interval '30 hours', 'b-30h');   -- retained (48 h)
SELECT pg_temp.fake_record('tap_ret_b', now() - interval '100 hours', 'b-100h'); -- past 48 h
SELECT pg_temp.bucket(now() - interval '30 hours') / :ch_a AS k_a30,
       pg_temp.bucket(now() - interval '60 hours') / :ch_a AS k_a60,
       pg_temp.bucket(now() - interval '5 hours') / :ch_a AS k_a5,
       pg_temp.bucket(now() - interval '30 hours') / :ch_b AS k_b30,
       pg_temp.bucket(now() - interval '100 hours') / :ch_b AS k_b100 \gset
\o

SELECT is(pg_temp.keys('tap_ret_a'), 'a-5h,bounds,now-a', '24 h stream: records older than 24 h are not returned, even before trimming');
SELECT is(pg_temp.keys('tap_ret_b'), 'b-30h,now-b', '48 h stream: a 30 h old record is returned, a 100 h old one is not');
SELECT is((SELECT (records[1]).partition_key FROM stream.get_records(
               stream.get_shard_iterator('tap_ret_a', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now() - interval '70 hours'))),
          'a-5h', 'AT_TIMESTAMP before the trim horizon starts at the oldest retained record');
SELECT is((SELECT (records[1]).partition_key FROM stream.get_records(
               stream.get_shard_iterator('tap_ret_a', 'shardId-000000000000', 'TRIM_HORIZON'))),
          'a-5h', 'TRIM_HORIZON starts at the oldest retained record');

SELECT lives_ok('SELECT * FROM stream.run_maintenance()', 'run_maintenance runs');
SELECT ok(NOT pg_temp.chunk_exists(:id_a, :k_a30) AND NOT pg_temp.chunk_exists(:id_a, :k_a60),
          '24 h stream: the expired chunks are gone from pg_class');
SELECT ok(pg_temp.chunk_exists(:id_a, :k_a5), '24 h stream: the chunk of the 5 h old record is kept');
SELECT ok(NOT pg_temp.chunk_exists(:id_b, :k_b100) AND pg_temp.chunk_exists(:id_b, :k_b30),
          '48 h stream: the 100 h old chunk is gone, the 30 h old one is kept');
SELECT is(pg_temp.keys('tap_ret_a'), 'a-5h,bounds,now-a', '24 h stream: retained records are still there');

-- decreasing retention hides older records at once; maintenance then drops their chunk
SELECT lives_ok($$SELECT stream.decrease_stream_retention_period('tap_ret_b', 24)$$, 'decrease retention of the 48 h stream to 24 h');
SELECT is(pg_temp.keys('tap_ret_b'), 'now-b', 'after the decrease the 30 h old record is no longer returned');
SELECT lives_ok('SELECT * FROM stream.run_maintenance()', 'run_maintenance runs');
SELECT ok(NOT pg_temp.chunk_exists(:id_b, :k_b30), 'the chunk of the 30 h old record is gone');

-- trimming never deletes or truncates rows: whole chunks are dropped
SELECT is((SELECT count(*)::int FROM public.tap_ret_trim_log), 0, 'no DELETE or TRUNCATE fired on any chunk');
\o /dev/null
SELECT pg_stat_force_next_flush();
\o
SELECT is((SELECT coalesce(sum(n_tup_del), 0)::int FROM pg_stat_user_tables WHERE schemaname = 'stream_data'), 0,
          'n_tup_del is 0 for every stream table (pg_stat_user_tables)');

-------------------------------------------------------------------------
-- pg_dump: catalog tables registered with pg_extension_config_dump
-------------------------------------------------------------------------
SELECT ok((SELECT 'stream.streams'::regclass = ANY (extconfig) AND 'stream.shards'::regclass = ANY (extconfig)
             FROM pg_extension WHERE extname = 'stream'),
          'stream.streams and stream.shards are registered with pg_extension_config_dump');
SELECT ok((SELECT 'stream.streams_stream_id_seq'::regclass = ANY (extconfig) FROM pg_extension WHERE extname = 'stream'),
          'the stream id sequence is registered too (ids survive dump/restore)');
SELECT ok((SELECT NOT ('stream.secret'::regclass = ANY (extconfig)) FROM pg_extension WHERE extname = 'stream'),
          'the iterator key is not dumped');

-------------------------------------------------------------------------
-- chunk names: one spelling (src/streams/chunk.c) read back exactly
-------------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM (SELECT (random() * 2147483646)::int + 1 AS id,
                                             (random() * 1e12)::bigint AS k FROM generate_series(1, 500)) r
            WHERE stream_internal._chunk_table(r.id, r.k) <> format('stream_data.%I', 's' || r.id || '_' || r.k)
               OR stream_internal._chunk_number(r.id, 's' || r.id || '_' || r.k) IS DISTINCT FROM r.k
               OR stream_internal._data_table(r.id) <> format('stream_data.%I', 's' || r.id)),
          0, '_chunk_table, _chunk_number and _data_table agree with the documented names (500 random ids and chunks)');
SELECT is((SELECT array_agg(stream_internal._chunk_number(7, n) ORDER BY i)
             FROM unnest(ARRAY['s7_0', 's7_01', 's7_-1', 's7_', 's7', 's77_1', 's7_1x', 's7_ 1', 'S7_1',
                               's7_1_2', 's7_99999999999999999999', 'x7_1', 's7_42']) WITH ORDINALITY u(n, i)),
          ARRAY[0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 42]::bigint[],
          '_chunk_number names only s<id>_<k> of that stream, k without sign or leading zero');
SELECT is((SELECT count(*)::int FROM stream.streams s, pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE s.stream_name = 'tap_ret_a'
              AND i.inhparent = stream_internal._data_table(s.stream_id)::regclass
              AND stream_internal._chunk_number(s.stream_id, c.relname::text) IS NULL),
          0, 'every partition of a stream table is a chunk by _chunk_number');

SELECT * FROM finish();

\o /dev/null
SELECT stream.delete_stream('tap_ret_a');
SELECT stream.delete_stream('tap_ret_b');
DROP TABLE public.tap_ret_trim_log;
DROP FUNCTION public.tap_ret_log_trim();
