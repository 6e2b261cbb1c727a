-- delete_stream and the consumers of a stream (issue 7, defect 8).  Like
-- Kinesis' DeleteStream without EnforceConsumerDeletion, delete_stream
-- refuses with ResourceInUseException while anything consumes the stream:
-- registered (enhanced fan-out) consumers, consumer applications (leases and
-- checkpoints), delivery streams reading it.  With enforce_consumer_deletion
-- they are deleted with the stream, delivery streams included, so that no
-- delivery stream is left reading a stream that is gone.
--
-- Every combination of the three kinds of consumer is tried (8 streams), each
-- with a random number (1 to 3) of consumers of each kind present, from a
-- seed printed as a comment (set it with psql -v seed=0.42).
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
\o /dev/null
DO $$ BEGIN
    PERFORM stream.delete_delivery_stream(delivery_stream_name) FROM stream.list_delivery_streams() WHERE delivery_stream_name LIKE 'tap_del_%';
    PERFORM stream.delete_stream(stream_name, enforce_consumer_deletion => true) FROM stream.list_streams() WHERE stream_name LIKE 'tap_del_%';
END $$;
DROP TABLE IF EXISTS public.tap_del_dest;
CREATE TABLE public.tap_del_dest (x text);
\if :{?seed}
\else
SELECT random() AS seed \gset
\endif
SELECT setseed(:seed);
\o

SELECT plan(76);
SELECT diag('seed ' || :'seed');

\o /dev/null
-- combination m (0..7): bit 0 consumers, bit 1 applications, bit 2 delivery streams
CREATE TEMP TABLE combo AS
SELECT m, 'tap_del_' || m AS s,
       CASE WHEN m & 1 <> 0 THEN 1 + floor(random() * 3)::int ELSE 0 END AS n_cons,
       CASE WHEN m & 2 <> 0 THEN 1 + floor(random() * 3)::int ELSE 0 END AS n_apps,
       CASE WHEN m & 4 <> 0 THEN 1 + floor(random() * 3)::int ELSE 0 END AS n_del
  FROM generate_series(0, 7) m;
SELECT stream.create_stream(s, 2) FROM combo ORDER BY m;
SELECT stream.register_stream_consumer(s, 'c' || i) FROM combo, generate_series(1, n_cons) i;
SELECT stream.register_application(s || '_app' || i, s) FROM combo, generate_series(1, n_apps) i;
SELECT stream.create_delivery_stream(s || '_fh' || i, source_stream_name => s, destination_table => 'public.tap_del_dest',
                                     buffer_interval_seconds => 0)
  FROM combo, generate_series(1, n_del) i;
-- a direct-put delivery stream, not reading any of them
SELECT stream.create_delivery_stream('tap_del_direct', destination_table => 'public.tap_del_dest', buffer_interval_seconds => 0);
CREATE TEMP TABLE ids AS SELECT c.m, st.stream_id FROM combo c JOIN stream.streams st ON st.stream_name = c.s;
\o

SELECT is((SELECT count(*)::int FROM stream.leases l JOIN ids USING (stream_id)),
          (SELECT sum(n_apps * 2)::int FROM combo), 'every application has a lease per shard');

-- refused without enforce_consumer_deletion (and with NULL), nothing changes
CREATE FUNCTION pg_temp.try_delete(p_s text, p_enforce bool) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF p_enforce IS NULL THEN
        PERFORM stream.delete_stream(p_s, NULL);
    ELSIF p_enforce THEN
        PERFORM stream.delete_stream(p_s, enforce_consumer_deletion => true);
    ELSE
        PERFORM stream.delete_stream(p_s);
    END IF;
    RETURN 'deleted';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

SELECT is(pg_temp.try_delete(s, false),
          CASE WHEN m = 0 THEN 'deleted'
               ELSE format('42710 ResourceInUseException: DeleteStream can''t delete 000000000000:%s because there are consumers associated with this data stream. To delete %s anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it.', s, s) END,
          format('%s (%s consumers, %s applications, %s delivery streams): delete_stream %s', s, n_cons, n_apps, n_del,
                 CASE WHEN m = 0 THEN 'deletes a stream nothing consumes' ELSE 'refuses with ResourceInUseException' END))
  FROM combo ORDER BY m;
SELECT is(pg_temp.try_delete(s, NULL) LIKE '42710 ResourceInUseException: %', m <> 0,
          s || ': enforce_consumer_deletion NULL is false') FROM combo ORDER BY m;
SELECT is((SELECT count(*)::int FROM stream.streams st WHERE st.stream_name = s), CASE WHEN m = 0 THEN 0 ELSE 1 END,
          s || ': the stream exists unless nothing consumed it') FROM combo ORDER BY m;
SELECT is((SELECT count(*)::int FROM stream.stream_consumers c JOIN ids USING (stream_id) WHERE ids.m = combo.m), n_cons,
          s || ': its registered consumers are all still there') FROM combo ORDER BY m;
SELECT is((SELECT count(*)::int FROM stream.applications a JOIN ids USING (stream_id) WHERE ids.m = combo.m)
          + (SELECT count(*)::int FROM stream.leases l JOIN ids USING (stream_id) WHERE ids.m = combo.m), n_apps * 3,
          s || ': its applications and their leases are all still there') FROM combo ORDER BY m;
SELECT is((SELECT count(*)::int FROM stream.list_delivery_streams() d
            WHERE d.delivery_stream_name LIKE s || '\_fh%' AND d.delivery_stream_status = 'ACTIVE'), n_del,
          s || ': its delivery streams are all still there and ACTIVE') FROM combo ORDER BY m;

-- enforced: the stream and everything that consumed it are gone
SELECT is(pg_temp.try_delete(s, true), 'deleted', s || ': delete_stream(..., enforce_consumer_deletion => true) deletes it')
  FROM combo WHERE m <> 0 ORDER BY m;
SELECT is(pg_temp.try_delete(s, true),
          format('42704 ResourceNotFoundException: Stream %s under account 000000000000 not found.', s),
          s || ': then it is not found') FROM combo ORDER BY m;
SELECT is((SELECT count(*)::int FROM stream.stream_consumers c JOIN ids USING (stream_id) WHERE ids.m = combo.m)
          + (SELECT count(*)::int FROM stream.applications a JOIN ids USING (stream_id) WHERE ids.m = combo.m)
          + (SELECT count(*)::int FROM stream.leases l JOIN ids USING (stream_id) WHERE ids.m = combo.m)
          + (SELECT count(*)::int FROM stream.processors p JOIN ids ON p.source_stream_id = ids.stream_id WHERE ids.m = combo.m)
          + (SELECT count(*)::int FROM stream.processor_checkpoints k
               JOIN stream.processors p USING (processor_id) JOIN ids ON p.source_stream_id = ids.stream_id
              WHERE ids.m = combo.m), 0,
          s || ': no consumer, application, lease, delivery stream or checkpoint of it is left') FROM combo ORDER BY m;

SELECT is((SELECT count(*)::int FROM stream.processors p
            WHERE NOT EXISTS (SELECT 1 FROM stream.streams st WHERE st.stream_id = p.source_stream_id)), 0,
          'no delivery stream reads a stream that does not exist');
SELECT is((SELECT delivery_stream_status FROM stream.list_delivery_streams() WHERE delivery_stream_name = 'tap_del_direct'),
          'ACTIVE', 'a direct-put delivery stream is left alone');
SELECT ok(to_regclass('public.tap_del_dest') IS NOT NULL, 'the destination table of deleted delivery streams is kept');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE proname = 'delete_stream' AND pronamespace = 'stream'::regnamespace
              AND pg_get_function_identity_arguments(oid) = 'stream_name text, enforce_consumer_deletion boolean'), 1,
          'delete_stream(stream_name text, enforce_consumer_deletion boolean) exists');

SELECT * FROM finish();

\o /dev/null
SELECT stream.delete_delivery_stream('tap_del_direct');
DROP TABLE public.tap_del_dest;
