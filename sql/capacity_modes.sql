--
-- capacity_modes: create_stream's stream_mode, update_stream_mode (names
-- and ARNs, its errors and limits), StreamModeDetails in describe and
-- list_streams, describe_limits' on-demand quota, reshard refusals of
-- on-demand streams, privileges, and what pg_dump saves of the mode.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || regexp_replace(regexp_replace(SQLERRM,
           'Current (shard|on-demand stream) count for the account: [0-9]+', 'Current \1 count for the account: <n>'),
           'Limit: [0-9]+', 'Limit: <n>');
END $$;
CREATE FUNCTION pg_temp.mode(p text) RETURNS text LANGUAGE sql AS $$
  SELECT (stream.describe_stream(p) -> 'StreamModeDetails' ->> 'StreamMode') || ' / ' ||
         (stream.describe_stream_summary(p) -> 'StreamModeDetails' ->> 'StreamMode') || ' / ' ||
         (SELECT stream_mode FROM stream.list_streams() WHERE stream_name = p) || ' / ' ||
         (stream.describe_stream_summary(p) ->> 'OpenShardCount') || ' open'
$$;

--
-- 1. create_stream: the modes and their shard counts
--
SELECT stream.create_stream('cm_od', stream_mode => 'ON_DEMAND');
SELECT stream.create_stream('cm_pv', 2, stream_mode => 'PROVISIONED');
SELECT stream.create_stream('cm_default', 3);
SELECT stream.create_stream('cm_null_mode', 1, stream_mode => NULL);
SELECT p, pg_temp.mode(p) FROM unnest(ARRAY['cm_od', 'cm_pv', 'cm_default', 'cm_null_mode']) p;
-- the on-demand stream's 4 shards split the hash range evenly
SELECT shard_id, starting_hash_key, ending_hash_key FROM stream.list_shards('cm_od') ORDER BY shard_id;
-- invalid combinations and values, nothing created
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad', 3, stream_mode => 'ON_DEMAND')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad', 1, stream_mode => 'on_demand')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad', 1, stream_mode => '')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad', stream_mode => 'PROVISIONED')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_bad', 0, stream_mode => 'PROVISIONED')$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_od', stream_mode => 'ON_DEMAND')$$);
SELECT count(*) AS bad_streams FROM stream.streams WHERE stream_name = 'cm_bad';

--
-- 2. describe_limits and the on-demand quota
--
SELECT stream.describe_limits() - 'ShardLimit' - 'OpenShardCount' AS on_demand_limits;
SELECT (stream.describe_limits() ->> 'OpenShardCount')::int = stream_internal._open_shard_count() AS open_counted;
SET stream.on_demand_stream_limit = 1;
SELECT stream.describe_limits() ->> 'OnDemandStreamCountLimit' AS shown_limit;
SELECT pg_temp.try($$SELECT stream.create_stream('cm_od2', stream_mode => 'ON_DEMAND')$$);
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_pv', '{"StreamMode": "ON_DEMAND"}')$$);
SELECT pg_temp.mode('cm_pv');
-- a provisioned stream is no on-demand stream: still allowed
SELECT pg_temp.try($$SELECT stream.create_stream('cm_pv2', 1)$$);
RESET stream.on_demand_stream_limit;
SELECT stream.delete_stream('cm_pv2');
-- the shard quota counts the 4 shards of an on-demand stream
SELECT stream_internal._open_shard_count() + 3 AS almost \gset
SET stream.shard_limit = :almost;
SELECT pg_temp.try($$SELECT stream.create_stream('cm_od3', stream_mode => 'ON_DEMAND')$$);
RESET stream.shard_limit;

--
-- 3. update_stream_mode: by name and by ARN, errors, the 2-a-day limit
--
SELECT stream.update_stream_mode('cm_pv', '{"StreamMode": "ON_DEMAND"}');
SELECT pg_temp.mode('cm_pv');
-- the shards stay; resharding is Kinesis' own now
SELECT pg_temp.try($$SELECT stream.split_shard('cm_pv', 'shardId-000000000000', '12345678901234567890')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('cm_pv', 'shardId-000000000000', 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('cm_pv', 4)$$);
SELECT stream.update_stream_mode(stream_internal._arn('cm_pv'), '{"StreamMode": "PROVISIONED"}');
SELECT pg_temp.mode('cm_pv');
-- asking for the mode a stream has changes nothing and is no switch
SELECT stream.update_stream_mode('cm_pv', '{"StreamMode": "PROVISIONED"}');
SELECT count(*) AS switches FROM stream.stream_mode_updates WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'cm_pv');
-- a third switch within 24 hours
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_pv', '{"StreamMode": "ON_DEMAND"}')$$);
-- 24 hours later it may switch again
UPDATE stream.stream_mode_updates SET updated_at = updated_at - interval '25 hours';
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_pv', '{"StreamMode": "ON_DEMAND"}')$$);
SELECT pg_temp.mode('cm_pv');
SELECT pg_temp.try($$SELECT stream.split_shard('cm_pv', 'shardId-000000000000', '12345678901234567890')$$);
-- members
SELECT left(pg_temp.try(format('SELECT stream.update_stream_mode(%L, %L)', a, d)), 160)
  FROM (VALUES (NULL, '{"StreamMode": "ON_DEMAND"}'),
               ('cm_od', NULL),
               ('cm_od', '{}'),
               ('cm_od', '{"StreamMode": null}'),
               ('cm_od', '{"StreamMode": "BURSTY"}'),
               ('cm_od', '{"StreamMode": 1}'),
               ('cm_od', '"ON_DEMAND"'),
               ('cm_od', '[]'),
               ('cm_none', '{"StreamMode": "ON_DEMAND"}'),
               ('no such!', '{"StreamMode": "ON_DEMAND"}'),
               ('arn:aws:kinesis:local:000000000000:stream/cm_none', '{"StreamMode": "ON_DEMAND"}'),
               ('arn:aws:kinesis:us-east-1:123456789012:stream/cm_od', '{"StreamMode": "ON_DEMAND"}'),
               ('arn:aws:kinesis:local:000000000000:cm_od', '{"StreamMode": "ON_DEMAND"}'),
               ('arn:aws:s3:::bucket', '{"StreamMode": "ON_DEMAND"}'),
               ('arn:aws:kinesis:local:000000000000:stream/' || repeat('s', 2048), '{"StreamMode": "ON_DEMAND"}')) v(a, d);
-- not ACTIVE
UPDATE stream.streams SET stream_status = 'CREATING' WHERE stream_name = 'cm_od';
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_od', '{"StreamMode": "PROVISIONED"}')$$);
UPDATE stream.streams SET stream_status = 'ACTIVE' WHERE stream_name = 'cm_od';

--
-- 4. the worker's reshards refuse what is not theirs (run by hand here)
--
SELECT stream_id AS od_id FROM stream.streams WHERE stream_name = 'cm_od' \gset
SELECT stream_id AS pv_id FROM stream.streams WHERE stream_name = 'cm_default' \gset
SELECT stream_internal._on_demand_split(:pv_id, 0, 100) AS provisioned;
SELECT stream_internal._on_demand_split(:od_id, 99, 100) AS no_such_shard;
SELECT stream_internal._on_demand_merge(:od_id, 0, 1) AS at_minimum;
SELECT stream_internal._on_demand_merge(:od_id, 0, 2) AS not_adjacent;
-- a split with no records measured: the midpoint
SELECT stream_internal._on_demand_split(:od_id, 0, 100) AS empty_split;
SELECT shard_id, parent_shard_id, starting_hash_key, ending_hash_key
  FROM stream.list_shards('cm_od') WHERE parent_shard_id IS NOT NULL ORDER BY shard_id;
-- records of one hot key alone: no split would spread them
SELECT count(*) FROM generate_series(1, 40) i, LATERAL stream.put_record('cm_od', 'hot', int4send(i)) r
 WHERE r.shard_id = (SELECT shard_id FROM stream.list_shards('cm_od') l
                      WHERE stream.hash_key('hot') BETWEEN l.starting_hash_key AND l.ending_hash_key
                        AND l.ending_sequence_number IS NULL);
SELECT stream_internal._on_demand_split(:od_id,
         (SELECT stream_internal._shard_index(shard_id) FROM stream.list_shards('cm_od') l
           WHERE stream.hash_key('hot') BETWEEN l.starting_hash_key AND l.ending_hash_key
             AND l.ending_sequence_number IS NULL), 100) AS one_key;
-- many keys: split where half the load lies below
SELECT stream.create_stream('cm_keys', stream_mode => 'ON_DEMAND');
SELECT stream_id AS keys_id FROM stream.streams WHERE stream_name = 'cm_keys' \gset
SELECT count(*) FROM (SELECT 'k' || i AS k FROM generate_series(1, 2000) i) ks,
       LATERAL stream.put_record('cm_keys', ks.k, '\x00'::bytea) r WHERE r.shard_id = 'shardId-000000000000';
SELECT stream_internal._on_demand_split(:keys_id, 0, 2000) LIKE 'split %' AS split;
SELECT abs(below - above) <= 2 AS halved FROM (
  SELECT count(*) FILTER (WHERE stream.hash_key('k' || i) < l.starting_hash_key) AS below,
         count(*) FILTER (WHERE stream.hash_key('k' || i) >= l.starting_hash_key) AS above
    FROM generate_series(1, 2000) i, stream.list_shards('cm_keys') l
   WHERE l.shard_id = 'shardId-000000000005'
     AND stream.hash_key('k' || i) < 85070591730234615865843651857942052864
   GROUP BY l.starting_hash_key) x;
-- a merge of the split's children back, now that the stream has 5 open shards
SELECT stream_internal._on_demand_merge(:keys_id, 4, 5) AS merged;
SELECT count(*) AS open_shards FROM stream.list_shards('cm_keys') WHERE ending_sequence_number IS NULL;
-- the shard quota holds for the worker too
SELECT stream_internal._open_shard_count() AS open_now \gset
SET stream.shard_limit = :open_now;
SELECT stream_internal._on_demand_split(:keys_id, 1, 100) AS over_quota;
RESET stream.shard_limit;

--
-- 5. privileges: an unprivileged role may not switch modes; a reader neither
--
CREATE ROLE cm_plain;
CREATE ROLE cm_reader;
SELECT stream.grant_stream_access('cm_od', 'cm_reader', 'read_write');
SET ROLE cm_plain;
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_od', '{"StreamMode": "PROVISIONED"}')$$);
SELECT pg_temp.try($$SELECT stream_internal.update_stream_mode('cm_od', '{"StreamMode": "PROVISIONED"}')$$);
SELECT pg_temp.try($$SELECT stream_internal._on_demand_split(1, 0, 100)$$);
SELECT pg_temp.try($$SELECT stream_internal._on_demand_merge(1, 0, 1)$$);
SELECT pg_temp.try($$SELECT stream.create_stream('cm_mine', stream_mode => 'ON_DEMAND')$$);
SELECT pg_temp.try($$UPDATE stream.streams SET stream_mode = 'PROVISIONED' WHERE stream_name = 'cm_od'$$);
SELECT pg_temp.try($$INSERT INTO stream.stream_mode_updates VALUES (1, now())$$);
SELECT stream.describe_limits() ? 'OnDemandStreamCountLimit' AS may_describe_limits;
RESET ROLE;
SET ROLE cm_reader;
SELECT pg_temp.try($$SELECT stream.update_stream_mode('cm_od', '{"StreamMode": "PROVISIONED"}')$$);
SELECT pg_temp.mode('cm_od');
RESET ROLE;
SELECT pg_temp.mode('cm_od');
SELECT stream.revoke_stream_access('cm_od', 'cm_reader');
DROP ROLE cm_plain;
DROP ROLE cm_reader;

--
-- 6. what pg_dump saves: the mode is a column of stream.streams, and the
-- switches' table is dumped too (extension configuration tables)
--
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'stream' AND c.relname IN ('streams', 'shards', 'stream_mode_updates')
 ORDER BY 1;
SELECT count(*) AS mode_column FROM pg_attribute
 WHERE attrelid = 'stream.streams'::regclass AND attname = 'stream_mode' AND NOT attisdropped;

SELECT stream.delete_stream(p) FROM unnest(ARRAY['cm_od', 'cm_pv', 'cm_default', 'cm_null_mode', 'cm_keys']) p;
