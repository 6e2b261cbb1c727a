--
-- resharding: split_shard, merge_shards, update_shard_count, their errors
-- and limits; reads of closed shards (child shards at the end, every
-- iterator type); list_shards paging and filters; describe_stream paging;
-- describe_limits; leases across a split and a merge; expiry of closed
-- shards.  Prints no sequence numbers, timestamps or iterators.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

-- Runs a statement; 'ok' or SQLSTATE and message, account-wide counts masked.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || regexp_replace(regexp_replace(SQLERRM,
           'Current shard count for the account: [0-9]+', 'Current shard count for the account: <n>'),
           'Limit: [0-9]+', 'Limit: <n>');
END $$;

-- Every shard of a stream: id, lineage, range, closed or open.
CREATE FUNCTION pg_temp.shards(p text) RETURNS TABLE(shard_id text, parent text, adjacent text,
                                                     start_key numeric, end_key numeric, closed bool)
LANGUAGE sql AS $$
  SELECT shard_id, parent_shard_id, adjacent_parent_shard_id, starting_hash_key, ending_hash_key,
         ending_sequence_number IS NOT NULL
    FROM stream.list_shards(p) ORDER BY shard_id
$$;

-- No record lies past its shard's end, and children number above their parents.
CREATE FUNCTION pg_temp.lineage_ok(p text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  s stream.streams := (SELECT x FROM stream.streams x WHERE stream_name = p);
  bad int;
BEGIN
  EXECUTE format('SELECT count(*) FROM %s d JOIN stream.shards sh ON sh.stream_id = %s AND sh.shard_index = d.shard_id
                   WHERE d.seq > sh.ending_seq OR d.seq < sh.starting_seq', stream_internal._data_table(s.stream_id), s.stream_id)
    INTO bad;
  RETURN bad = 0 AND NOT EXISTS (
    SELECT 1 FROM stream.shards c JOIN stream.shards par ON par.stream_id = c.stream_id
                  AND par.shard_index IN (c.parent_shard_index, c.adjacent_parent_shard_index)
     WHERE c.stream_id = s.stream_id AND c.starting_seq <= par.ending_seq);
END $$;

-- Read a shard from TRIM_HORIZON to its end (or until caught up): records, whether it ended, child shards.
CREATE FUNCTION pg_temp.read_all(p text, shard text, OUT n int, OUT keys text, OUT ended bool, OUT children jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  it text := stream.get_shard_iterator(p, shard, 'TRIM_HORIZON');
  g stream.get_records_result;
BEGIN
  n := 0;
  LOOP
    g := stream.get_records(it, 3);
    n := n + coalesce(cardinality(g.records), 0);
    keys := concat_ws(',', keys, (SELECT string_agg(r.partition_key, ',') FROM unnest(g.records) r));
    EXIT WHEN g.next_shard_iterator IS NULL OR cardinality(g.records) = 0;
    it := g.next_shard_iterator;
  END LOOP;
  ended := g.next_shard_iterator IS NULL;
  children := g.child_shards;
END $$;

--
-- 1. split: two children over the parent's range, the parent closed
--
SELECT stream.create_stream('rs', 2);
SELECT count(*) FROM stream.put_records('rs', ARRAY['a','b','c','d','e','f'], '{"\\x01","\\x02","\\x03","\\x04","\\x05","\\x06"}'::bytea[]);
SELECT shard_id, count(*) FROM stream.put_records('rs', ARRAY['a','b','c','d','e','f'], '{"\\x11","\\x12","\\x13","\\x14","\\x15","\\x16"}'::bytea[])
 GROUP BY 1 ORDER BY 1;
SELECT stream.split_shard('rs', 'shardId-000000000000', '85070591730234615865843651857942052864');
SELECT * FROM pg_temp.shards('rs');
-- the parent takes no more records: every key of its range goes to a child
SELECT shard_id, count(*) FROM stream.put_records('rs', ARRAY['a','b','c','d','e','f'], '{"\\x21","\\x22","\\x23","\\x24","\\x25","\\x26"}'::bytea[])
 GROUP BY 1 ORDER BY 1;
SELECT shard_id FROM stream.put_record('rs', 'x', '\x01', '85070591730234615865843651857942052863');
SELECT shard_id FROM stream.put_record('rs', 'x', '\x01', '85070591730234615865843651857942052864');
SELECT pg_temp.lineage_ok('rs');
-- the closed parent: its records, then the end with both children
SELECT * FROM pg_temp.read_all('rs', 'shardId-000000000000');
SELECT n, ended FROM pg_temp.read_all('rs', 'shardId-000000000002');
SELECT stream.describe_stream_summary('rs') -> 'OpenShardCount' AS open_shards;

--
-- 2. merge: one child with both parents
--
SELECT stream.merge_shards('rs', 'shardId-000000000003', 'shardId-000000000001');
SELECT * FROM pg_temp.shards('rs');
SELECT count(*) FROM stream.put_records('rs', ARRAY['a','b','c','d','e','f'], '{"\\x31","\\x32","\\x33","\\x34","\\x35","\\x36"}'::bytea[]);
SELECT ended, children FROM pg_temp.read_all('rs', 'shardId-000000000001');
SELECT ended, children FROM pg_temp.read_all('rs', 'shardId-000000000003');
SELECT n, keys, ended FROM pg_temp.read_all('rs', 'shardId-000000000004');
SELECT pg_temp.lineage_ok('rs');

--
-- 3. iterators of every type on a closed shard
--
SELECT sequence_number AS last0 FROM stream.read_shard('rs', 'shardId-000000000000') ORDER BY sequence_number::numeric DESC LIMIT 1 \gset
SELECT sequence_number AS first0 FROM stream.read_shard('rs', 'shardId-000000000000') LIMIT 1 \gset
SELECT t, cardinality(g.records) AS records, g.next_shard_iterator IS NULL AS ended,
       jsonb_array_length(g.child_shards) AS children
  FROM (VALUES ('TRIM_HORIZON', NULL), ('LATEST', NULL), ('AT_SEQUENCE_NUMBER', :'first0'),
               ('AT_SEQUENCE_NUMBER', :'last0'), ('AFTER_SEQUENCE_NUMBER', :'last0')) v(t, seq),
       LATERAL stream.get_records(stream.get_shard_iterator('rs', 'shardId-000000000000', t, seq)) g;
SELECT cardinality(g.records) AS records, g.next_shard_iterator IS NULL AS ended
  FROM stream.get_records(stream.get_shard_iterator('rs', 'shardId-000000000000', 'AT_TIMESTAMP', NULL,
                                                    now() - interval '1 hour')) g;
SELECT count(*) AS read_shard_rows FROM stream.read_shard('rs', 'shardId-000000000000', 'LATEST');
-- an open shard has no child shards
SELECT g.child_shards IS NULL AS no_children, g.next_shard_iterator IS NOT NULL AS has_next
  FROM stream.get_records(stream.get_shard_iterator('rs', 'shardId-000000000004', 'TRIM_HORIZON')) g;
-- get_records_json carries child_shards on its rows
SELECT count(*) AS rows, bool_and(next_shard_iterator IS NULL) AS ended,
       min(child_shards::text) AS children
  FROM stream.get_records_json(stream.get_shard_iterator('rs', 'shardId-000000000001', 'TRIM_HORIZON'));
-- subscribe_to_shard ends at SHARD_END with the children
SELECT stream.register_stream_consumer('rs', 'rs_c') ->> 'ConsumerName';
SELECT cardinality(records) AS records, continuation_sequence_number IS NULL AS shard_end, child_shards
  FROM stream.subscribe_to_shard('rs', 'rs_c', 'shardId-000000000003', 'TRIM_HORIZON', wait_timeout => '0');
SELECT continuation_sequence_number IS NULL AS shard_end, child_shards IS NULL AS no_children
  FROM stream.subscribe_to_shard('rs', 'rs_c', 'shardId-000000000004', 'LATEST', wait_timeout => '0');

--
-- 4. update_shard_count: uniform ranges through splits and merges
--
SELECT stream.update_shard_count('rs', 3) - 'StreamARN';
SELECT shard_id, parent, adjacent, start_key, end_key FROM pg_temp.shards('rs') WHERE NOT closed;
SELECT count(*) FILTER (WHERE closed) AS closed, count(*) FILTER (WHERE NOT closed) AS open FROM pg_temp.shards('rs');
SELECT stream.update_shard_count('rs', 6, 'UNIFORM_SCALING') ->> 'CurrentShardCount' AS current;
SELECT count(*) AS open, bool_and(end_key - start_key + 1 >= 56713727820156410577229101238628035242) AS even
  FROM pg_temp.shards('rs') WHERE NOT closed;
SELECT stream.update_shard_count('rs', 3) ->> 'TargetShardCount' AS target;
-- the open shards partition the hash key space, and every key routes to one of them
SELECT count(*) AS open, min(start_key) AS lo, max(end_key) AS hi,
       sum(end_key - start_key + 1) = 340282366920938463463374607431768211456 AS covers
  FROM pg_temp.shards('rs') WHERE NOT closed;
SELECT bool_and(r.shard_id IN (SELECT shard_id FROM pg_temp.shards('rs') WHERE NOT closed)) AS routed_open
  FROM stream.put_records('rs', ARRAY(SELECT 'k' || i FROM generate_series(1, 60) i),
                          ARRAY(SELECT '\x00'::bytea FROM generate_series(1, 60))) r;
SELECT pg_temp.lineage_ok('rs');
-- every record put so far is still readable once, shard by shard
SELECT sum(n) AS records FROM pg_temp.shards('rs') s, LATERAL pg_temp.read_all('rs', s.shard_id);
-- the same layout is no change (and no scaling operation)
SELECT count(*) AS before FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rs') \gset
SELECT stream.update_shard_count('rs', 3) ->> 'CurrentShardCount' AS current;
SELECT count(*) = :before AS unchanged FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rs');

--
-- 5. errors and limits, in the order Kinesis checks them
--
SELECT pg_temp.try($$SELECT stream.split_shard(NULL, 'shardId-000000000004', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('no such!', 'shardId-000000000004', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', NULL, '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'shard id!', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', repeat('s', 129), '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'shardId-000000000004', NULL)$$);
SELECT pg_temp.try(format('SELECT stream.split_shard(%L, %L, %L)', 'rs', 'shardId-000000000004', k))
  FROM unnest(ARRAY['abc', '-1', '01', '1.5', '', repeat('9', 40)]) k;
SELECT pg_temp.try($$SELECT stream.split_shard('rs_none', 'shardId-000000000004', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'shardId-000000000099', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'nodigits', '1')$$);
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'shardId-000000000000', '1')$$);
-- the key must lie in (start + 1, end): both bounds and beyond
SELECT shard_id AS lo_shard, start_key, end_key FROM pg_temp.shards('rs') WHERE NOT closed ORDER BY start_key LIMIT 1 OFFSET 1 \gset
SELECT pg_temp.try(format('SELECT stream.split_shard(%L, %L, %L)', 'rs', :'lo_shard', k))
  FROM unnest(ARRAY[(:start_key - 1)::text, :start_key::text, (:start_key + 1)::text, :end_key::text,
                    (:end_key + 1)::text, '0', '340282366920938463463374607431768211455']) k;
SELECT pg_temp.try(format('SELECT stream.split_shard(%L, %L, %L)', 'rs', :'lo_shard', (:start_key + 2)::text)) AS start_plus_2;
SELECT shard_id, parent, start_key - :start_key AS from_start, end_key - :start_key AS to_start
  FROM pg_temp.shards('rs') WHERE parent = :'lo_shard';
SELECT count(*) AS before FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rs') \gset
SELECT shard_id AS open_shard, start_key AS open_start FROM pg_temp.shards('rs') WHERE NOT closed ORDER BY start_key DESC LIMIT 1 \gset
SELECT pg_temp.try($$SELECT stream.merge_shards(NULL, 'shardId-000000000000', 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', NULL, 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', 'shardId-000000000001', NULL)$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', 'shardId-000000000001', 'bad id!')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs_none', 'shardId-000000000000', 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', 'shardId-000000000098', 'shardId-000000000099')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', 'shardId-000000000000', 'shardId-000000000001')$$);
SELECT shard_id AS m0 FROM pg_temp.shards('rs') WHERE NOT closed ORDER BY start_key LIMIT 1 \gset
SELECT shard_id AS m1 FROM pg_temp.shards('rs') WHERE NOT closed ORDER BY start_key LIMIT 1 OFFSET 1 \gset
SELECT shard_id AS m2 FROM pg_temp.shards('rs') WHERE NOT closed ORDER BY start_key LIMIT 1 OFFSET 2 \gset
-- inverted, not adjacent, the same shard twice
SELECT pg_temp.try(format('SELECT stream.merge_shards(%L, %L, %L)', 'rs', a, b))
  FROM (VALUES (:'m1', :'m0'), (:'m0', :'m2'), (:'m1', :'m1')) v(a, b);
SELECT pg_temp.try($$SELECT stream.update_shard_count(NULL, 2)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', NULL)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 0)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 2, NULL)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 2, 'EVEN')$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs_none', 2)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 9)$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 1)$$);
-- on-demand streams are Kinesis' to scale
SELECT stream.create_stream('rs_od', 2);
UPDATE stream.streams SET stream_mode = 'ON_DEMAND' WHERE stream_name = 'rs_od';
SELECT pg_temp.try($$SELECT stream.split_shard('rs_od', 'shardId-000000000000', '12345')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs_od', 'shardId-000000000000', 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs_od', 4)$$);
SELECT stream.describe_limits() -> 'OnDemandStreamCount' AS on_demand, stream.describe_limits() -> 'OnDemandStreamCountLimit' AS on_demand_limit;
-- a stream not ACTIVE
UPDATE stream.streams SET stream_mode = 'PROVISIONED', stream_status = 'CREATING' WHERE stream_name = 'rs_od';
SELECT pg_temp.try($$SELECT stream.split_shard('rs_od', 'shardId-000000000000', '12345')$$);
UPDATE stream.streams SET stream_status = 'ACTIVE' WHERE stream_name = 'rs_od';
-- 10 updates per stream per 24 hours
SELECT stream.create_stream('rs_ten', 1);
SELECT count(*) AS updates FROM generate_series(1, 10) i,
       LATERAL stream.update_shard_count('rs_ten', CASE WHEN i % 2 = 1 THEN 2 ELSE 1 END) u;
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs_ten', 2)$$);
-- splits and merges are not counted
SELECT stream.split_shard('rs_ten', shard_id, '170141183460469231731687303715884105728')
  FROM pg_temp.shards('rs_ten') WHERE NOT closed;
-- at most 10000 shards per stream
SELECT stream.create_stream('rs_big', 5001);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs_big', 10001)$$);
SELECT stream.delete_stream('rs_big');
-- the database's open shards: stream.shard_limit
SELECT stream_internal._open_shard_count() AS open_now \gset
SET stream.shard_limit = :open_now;
SELECT (stream.describe_limits() ->> 'ShardLimit')::int = :open_now AS limit_shown,
       (stream.describe_limits() ->> 'OpenShardCount')::int = :open_now AS open_shown;
SELECT pg_temp.try($$SELECT stream.create_stream('rs_over', 1)$$);
SELECT pg_temp.try(format('SELECT stream.split_shard(%L, %L, %L)', 'rs', :'open_shard', (:open_start + 2)::text));
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 5)$$);
-- a merge frees a shard for one more
SELECT stream.merge_shards('rs_od', 'shardId-000000000000', 'shardId-000000000001');
SELECT pg_temp.try($$SELECT stream.create_stream('rs_over', 1)$$);
SELECT pg_temp.try($$SELECT stream.create_stream('rs_over2', 1)$$);
RESET stream.shard_limit;
SELECT stream.delete_stream('rs_over');
-- nothing above changed rs
SELECT count(*) = :before AS unchanged FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rs');
-- a reshard cannot be prepared (two-phase): the transaction aborts, the shard stays open
BEGIN;
SELECT stream.split_shard('rs', :'m0', (SELECT (start_key + 2)::text FROM pg_temp.shards('rs') WHERE shard_id = :'m0'));
PREPARE TRANSACTION 'rs_split';
SELECT count(*) = :before AS unchanged FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rs');
SELECT shard_id = :'m0' AS put_to_the_open_shard
  FROM stream.put_record('rs', 'x', '\x00', (SELECT start_key::text FROM pg_temp.shards('rs') WHERE shard_id = :'m0'));
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'rs_split';
-- a role without the grant may not reshard; stream_internal is closed too
CREATE ROLE rs_plain;
SET ROLE rs_plain;
SELECT pg_temp.try($$SELECT stream.split_shard('rs', 'shardId-000000000004', '1')$$);
SELECT pg_temp.try($$SELECT stream.merge_shards('rs', 'shardId-000000000004', 'shardId-000000000005')$$);
SELECT pg_temp.try($$SELECT stream.update_shard_count('rs', 4)$$);
SELECT pg_temp.try($$SELECT stream_internal.split_shard('rs', 'shardId-000000000004', '1')$$);
SELECT pg_temp.try($$SELECT stream_internal._close_shard(1, 4)$$);
SELECT stream.describe_limits() ? 'ShardLimit' AS may_describe_limits;
RESET ROLE;
DROP ROLE rs_plain;

--
-- 6. list_shards: filters and pages; describe_stream pages
--
SELECT stream.create_stream('rl', 1);
SELECT clock_timestamp() AS t_before_split \gset
SELECT stream.split_shard('rl', 'shardId-000000000000', '170141183460469231731687303715884105728');
SELECT stream.split_shard('rl', 'shardId-000000000002', '270141183460469231731687303715884105728');
SELECT clock_timestamp() AS t_after_split \gset
SELECT stream.merge_shards('rl', 'shardId-000000000001', 'shardId-000000000003');
SELECT * FROM pg_temp.shards('rl');
SELECT f, array_agg(shard_id ORDER BY shard_id) AS shards
  FROM unnest(ARRAY['FROM_TRIM_HORIZON', 'AT_TRIM_HORIZON', 'AT_LATEST']) f,
       LATERAL stream.list_shards('rl', shard_filter => f)
 GROUP BY f ORDER BY f;
SELECT array_agg(shard_id ORDER BY shard_id) AS at_before_split
  FROM stream.list_shards('rl', shard_filter => 'AT_TIMESTAMP', shard_filter_timestamp => :'t_before_split');
SELECT array_agg(shard_id ORDER BY shard_id) AS at_after_splits
  FROM stream.list_shards('rl', shard_filter => 'AT_TIMESTAMP', shard_filter_timestamp => :'t_after_split');
SELECT array_agg(shard_id ORDER BY shard_id) AS from_after_splits
  FROM stream.list_shards('rl', shard_filter => 'FROM_TIMESTAMP', shard_filter_timestamp => :'t_after_split');
SELECT array_agg(shard_id ORDER BY shard_id) AS at_long_ago
  FROM stream.list_shards('rl', shard_filter => 'AT_TIMESTAMP', shard_filter_timestamp => '2000-01-01');
SELECT array_agg(shard_id ORDER BY shard_id) AS after_1
  FROM stream.list_shards('rl', shard_filter => 'AFTER_SHARD_ID', shard_filter_shard_id => 'shardId-000000000001');
SELECT array_agg(shard_id ORDER BY shard_id) AS exclusive_start_2
  FROM stream.list_shards('rl', exclusive_start_shard_id => 'shardId-000000000002');
SELECT array_agg(shard_id ORDER BY shard_id) AS exclusive_start_text
  FROM stream.list_shards('rl', exclusive_start_shard_id => 'shardId-');
-- pages of 2, following next_token to the end
CREATE FUNCTION pg_temp.pages(p text, m int, f text DEFAULT NULL) RETURNS TABLE(page int, shards text[], more bool)
LANGUAGE plpgsql AS $$
DECLARE
  tok text;
  i int := 0;
BEGIN
  LOOP
    i := i + 1;
    SELECT array_agg(l.shard_id ORDER BY l.shard_id), min(l.next_token) INTO shards, tok
      FROM stream.list_shards(CASE WHEN i = 1 THEN p END, m, tok, shard_filter => CASE WHEN i = 1 THEN f END) l;
    page := i;
    more := tok IS NOT NULL;
    RETURN NEXT;
    EXIT WHEN tok IS NULL OR i > 10;
  END LOOP;
END $$;
SELECT * FROM pg_temp.pages('rl', 2);
SELECT * FROM pg_temp.pages('rl', 5);
SELECT * FROM pg_temp.pages('rl', 1, 'AT_LATEST');
SELECT count(DISTINCT next_token) AS one_token_per_page FROM stream.list_shards('rl', 3);
SELECT min(next_token) AS tok FROM stream.list_shards('rl', 2) \gset
SELECT pg_temp.try($$SELECT * FROM stream.list_shards()$$);
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(%L, next_token => %L)', 'rl', :'tok'));
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L, exclusive_start_shard_id => %L)', :'tok', 'shardId-000000000001'));
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L, shard_filter => %L)', :'tok', 'AT_LATEST'));
SELECT pg_temp.try($$SELECT * FROM stream.list_shards(next_token => 'garbage')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards(next_token => 'eyJ2IjogMX0=')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards(next_token => '')$$);
-- tokens are signed: made-up ones (a stream id out of range, a NaN time,
-- one made "in the future" that would never expire), an altered one and
-- another list function's are refused as invalid
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L)',
                          translate(encode(convert_to(t, 'UTF8'), 'base64'), E'\n', '')))
  FROM (VALUES ('{"v": 1, "s": 1e20, "l": 0, "c": 1e12}'), ('{"v": 1, "s": 1, "l": 1e20, "c": 1e12}'),
               ('{"v": 1, "s": 1, "l": 0, "c": 1e12, "t": "NaN"}'), ('{"v": 1, "s": 1, "l": 0, "c": 1e300}'),
               ('{"v": 1, "s": 1, "l": -1, "c": 9e12}')) v(t);
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L)',
                          overlay(:'tok' PLACING (CASE WHEN substr(:'tok', 20, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 20 FOR 1))) AS altered;
SELECT pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L)',
                          (SELECT next_token FROM stream.list_streams("limit" => 1) LIMIT 1))) AS list_streams_token;
-- expired after stream.next_token_lifetime (Kinesis: 300 s)
SET stream.next_token_lifetime = 1;
SELECT pg_sleep(0.05);
SELECT regexp_replace(pg_temp.try(format('SELECT * FROM stream.list_shards(next_token => %L)', :'tok')), '[0-9]{10,}', '<ms>', 'g') AS expired;
RESET stream.next_token_lifetime;
SELECT count(*) AS valid_again FROM stream.list_shards(next_token => :'tok');
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', 0)$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', 10001)$$);
SELECT count(*) AS max_results_10000 FROM stream.list_shards('rl', 10000);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'AT_SOMETIME')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'AFTER_SHARD_ID')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'AT_TIMESTAMP')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'FROM_TIMESTAMP')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter_shard_id => 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'AT_LATEST', shard_filter_shard_id => 'shardId-000000000001')$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl', shard_filter => 'AT_LATEST', shard_filter_timestamp => now())$$);
SELECT pg_temp.try($$SELECT * FROM stream.list_shards('rl_none')$$);
SELECT jsonb_path_query_array(d -> 'Shards', '$[*].ShardId') AS shards, d -> 'HasMoreShards' AS more
  FROM (VALUES (stream.describe_stream('rl')), (stream.describe_stream('rl', 2)),
               (stream.describe_stream('rl', 2, 'shardId-000000000001')),
               (stream.describe_stream('rl', 10, 'shardId-000000000004'))) v(d);
SELECT (stream.describe_stream('rl') -> 'Shards' -> 5) - 'SequenceNumberRange' AS merge_child,
       jsonb_object_keys((stream.describe_stream('rl') -> 'Shards' -> 1) -> 'SequenceNumberRange') AS closed_range;
SELECT pg_temp.try($$SELECT stream.describe_stream('rl', 0)$$);

--
-- 7. leases: children wait for every parent at SHARD_END, and start at TRIM_HORIZON
--
SELECT stream.create_stream('rk', 2);
SELECT count(*) FROM stream.put_records('rk', ARRAY['a','b','c','d'], '{"\\x01","\\x02","\\x03","\\x04"}'::bytea[]);
SELECT stream.register_application('rk_app', 'rk');
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
SELECT stream.split_shard('rk', 'shardId-000000000000', '85070591730234615865843651857942052864');
SELECT stream.merge_shards('rk', 'shardId-000000000003', 'shardId-000000000001');
SELECT count(*) FROM stream.put_records('rk', ARRAY['a','b','c','d'], '{"\\x11","\\x12","\\x13","\\x14"}'::bytea[]);
SELECT shard_id, checkpoint, parent_shard_ids FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
SELECT lease_key, checkpoint, parent_shard_ids, lease_owner FROM stream.application_leases
 WHERE application_name = 'rk_app' ORDER BY lease_key;
SELECT stream.checkpoint('rk_app', 'w1', 'shardId-000000000000', 'SHARD_END');
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
SELECT stream.checkpoint('rk_app', 'w1', 'shardId-000000000003', 'SHARD_END');
-- the merge child still waits for its other parent
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
SELECT stream.merge_shards('rk', 'shardId-000000000002', 'shardId-000000000004');
SELECT stream.checkpoint('rk_app', 'w1', 'shardId-000000000001', 'SHARD_END');
SELECT shard_id, checkpoint, parent_shard_ids FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
SELECT stream.checkpoint('rk_app', 'w1', 'shardId-000000000002', 'SHARD_END');
SELECT stream.checkpoint('rk_app', 'w1', 'shardId-000000000004', 'SHARD_END');
SELECT shard_id, checkpoint, parent_shard_ids FROM stream.acquire_leases('rk_app', 'w1', '1 hour');
-- an application registered after the reshard: LATEST leases only the open shard;
-- TRIM_HORIZON every shard, children waiting for parents
SELECT stream.register_application('rk_latest', 'rk', 'LATEST');
SELECT lease_key, checkpoint, parent_shard_ids FROM stream.application_leases WHERE application_name = 'rk_latest';
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_latest', 'w1', '1 hour');
-- SHARD_END only for a closed shard
SELECT pg_temp.try($$SELECT stream.checkpoint('rk_latest', 'w1', 'shardId-000000000005', 'SHARD_END')$$);
SELECT stream.register_application('rk_trim', 'rk');
SELECT count(*) AS leases FROM stream.application_leases WHERE application_name = 'rk_trim';
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_trim', 'w1', '1 hour');

--
-- 8. expiry: a closed shard goes once its last record is past retention
--
-- (test shortcut) the first parents closed 25 hours ago
UPDATE stream.shards SET closed_at = now() - interval '25 hours'
 WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rk') AND shard_index IN (0, 1, 3);
SELECT array_agg(shard_id ORDER BY shard_id) AS listed FROM stream.list_shards('rk');
SELECT stream_name, chunks_created >= 0 AS ran FROM stream.run_maintenance() WHERE stream_name = 'rk';
SELECT array_agg(shard_index ORDER BY shard_index) AS shard_rows
  FROM stream.shards WHERE stream_id = (SELECT stream_id FROM stream.streams WHERE stream_name = 'rk');
SELECT application_name, array_agg(lease_key ORDER BY lease_key) AS leases
  FROM stream.application_leases WHERE stream_name = 'rk' GROUP BY 1 ORDER BY 1;
SELECT pg_temp.try($$SELECT stream.get_shard_iterator('rk', 'shardId-000000000000', 'TRIM_HORIZON')$$);
-- with its expired parent gone, the split child is no longer held back
SELECT shard_id, checkpoint FROM stream.acquire_leases('rk_trim', 'w1', '1 hour');

SELECT stream.delete_stream(s, true) FROM unnest(ARRAY['rs', 'rs_od', 'rs_ten', 'rl', 'rk']) s;
