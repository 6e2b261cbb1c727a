--
-- routing: partition key hashing (MD5 as unsigned big-endian 128-bit integer),
-- initial shard hash ranges, explicit hash keys and shard selection.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

-- Reference implementation in plain SQL: md5 of the bytes, read as an
-- unsigned big-endian 128-bit integer.
CREATE FUNCTION pg_temp.md5_num(b bytea) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT ((('x' || substr(h, 1, 8))::bit(32)::bigint::numeric * 4294967296
          + ('x' || substr(h, 9, 8))::bit(32)::bigint) * 4294967296
          + ('x' || substr(h, 17, 8))::bit(32)::bigint) * 4294967296
          + ('x' || substr(h, 25, 8))::bit(32)::bigint
  FROM (SELECT md5($1) AS h) s
$$;

-- shard index from 'shardId-000000000007'
CREATE FUNCTION pg_temp.shard_ix(shard_id text) RETURNS int
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT substr($1, 9)::int $$;

--
-- 1. hash_key
--
SELECT stream.hash_key('a') AS a, stream.hash_key('b') AS b;
SELECT stream.hash_key('a') = 16955237001963240173058271559858726497 AS a_ok,
       stream.hash_key('b') = 195289424170611159128911017612795795343 AS b_ok,
       scale(stream.hash_key('a')) AS scale_a,
       pg_typeof(stream.hash_key('a')) AS type;
-- unsigned: md5('b') starts with 0x92, so the value is above 2^127
SELECT stream.hash_key('b') > 170141183460469231731687303715884105728 AS unsigned_b;
-- non-ASCII keys are hashed as UTF-8
SELECT k, stream.hash_key(k) AS hash_key,
       stream.hash_key(k) = pg_temp.md5_num(convert_to(k, 'UTF8')) AS matches_utf8_md5
FROM unnest(ARRAY['é', '日本語', '🙂']) AS k;
-- é as Latin-1 (\xe9) would give a different value
SELECT stream.hash_key('é') <> pg_temp.md5_num('\xe9'::bytea) AS not_latin1;
-- many keys against the pure SQL computation
SELECT count(*) AS keys,
       count(*) FILTER (WHERE stream.hash_key(k) = pg_temp.md5_num(convert_to(k, 'UTF8'))) AS matching,
       min(stream.hash_key(k)) >= 0 AS min_ok,
       max(stream.hash_key(k)) <= 340282366920938463463374607431768211455 AS max_ok
FROM (SELECT 'key-' || i AS k FROM generate_series(1, 2000) i
      UNION ALL SELECT repeat('x', 256)
      UNION ALL SELECT repeat('ü', 256)
      UNION ALL SELECT 'Ünïcödé-' || i FROM generate_series(1, 100) i) s;

--
-- 2. initial hash ranges of a 3-shard stream (reference test vectors)
--
SELECT stream.create_stream('routing_3', 3);
SELECT shard_id, parent_shard_id, adjacent_parent_shard_id,
       starting_hash_key, ending_hash_key,
       starting_sequence_number ~ '^[0-9]{40}$' AS start_seq_40_digits,
       ending_sequence_number
FROM stream.list_shards('routing_3') ORDER BY shard_id;

--
-- 3. shard selection by partition key (reference test vectors)
--
SELECT 'a' AS pk, shard_id FROM stream.put_record('routing_3', 'a', '\x01');
SELECT 'b' AS pk, shard_id FROM stream.put_record('routing_3', 'b', '\x01');

--
-- 4. explicit hash keys
--
-- 2*floor(2^128/3) - 1 -> shard 1; 2*floor(2^128/3) -> shard 2; 2^128 - 1 -> shard 2
SELECT e AS explicit_hash_key, p.shard_id
FROM unnest(ARRAY['0',
                  '113427455640312821154458202477256070484',
                  '113427455640312821154458202477256070485',
                  '226854911280625642308916404954512140969',
                  '226854911280625642308916404954512140970',
                  '340282366920938463463374607431768211455']) WITH ORDINALITY AS t(e, n),
     LATERAL stream.put_record('routing_3', 'b', '\x02', e) AS p
ORDER BY n;
-- the explicit hash key overrides the partition key ('b' alone goes to shard 1)
SELECT shard_id FROM stream.put_record('routing_3', 'b', '\x03', '0');
-- put_records honours explicit hash keys per record, NULL entries fall back to the key hash
SELECT n, r.shard_id, r.error_code
FROM stream.put_records('routing_3', ARRAY['b', 'b', 'a', 'a'],
                        ARRAY['\x01', '\x02', '\x03', '\x04']::bytea[],
                        ARRAY['0', NULL, '340282366920938463463374607431768211455', NULL])
     WITH ORDINALITY AS r(shard_id, sequence_number, error_code, error_message, n)
ORDER BY n;

SELECT count(*) AS records_before FROM (
  SELECT 1 FROM stream.list_shards('routing_3') s, LATERAL stream.read_shard('routing_3', s.shard_id)) x;
-- out of range / malformed explicit hash keys: InvalidArgumentException, nothing written
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '340282366920938463463374607431768211456');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '1000000000000000000000000000000000000000000');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '-1');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', 'abc');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '1.5');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', ' 1');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '1e3');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '0x10');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '01');
SELECT * FROM stream.put_record('routing_3', 'a', '\x01', '+1');
-- one bad explicit hash key fails the whole put_records request
SELECT * FROM stream.put_records('routing_3', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[],
                                 ARRAY['1', '340282366920938463463374607431768211456']);
SELECT * FROM stream.put_records('routing_3', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[],
                                 ARRAY['1', 'zzz']);
SELECT count(*) AS records_after FROM (
  SELECT 1 FROM stream.list_shards('routing_3') s, LATERAL stream.read_shard('routing_3', s.shard_id)) x;

--
-- 5. non-ASCII partition keys are routed by their UTF-8 hash
--    (md5('日本語') = 00110af8..., smallest range; md5('🙂') = 5c8d6d30... -> shard 1 of 3)
--
SELECT k, p.shard_id
FROM unnest(ARRAY['日本語', '🙂', 'é']) WITH ORDINALITY AS t(k, n),
     LATERAL stream.put_record('routing_3', k, '\x00') AS p
ORDER BY n;

SELECT stream.delete_stream('routing_3');

--
-- 6. many keys, 1, 2, 3, 7 and 16 shards: ranges are i*floor(2^128/N) ..
--    (i+1)*floor(2^128/N)-1 (last ends at 2^128-1), and every record lands in
--    the shard whose range contains hash_key(partition_key)
--
SELECT stream.create_stream('routing_n' || n, n) FROM unnest(ARRAY[1, 2, 3, 7, 16]) n;

SELECT n AS shards, count(*) AS listed,
       bool_and(s.starting_hash_key = pg_temp.shard_ix(s.shard_id) * div(2::numeric ^ 128, n)) AS starts_ok,
       bool_and(s.ending_hash_key = CASE WHEN pg_temp.shard_ix(s.shard_id) = n - 1
                                         THEN 340282366920938463463374607431768211455
                                         ELSE (pg_temp.shard_ix(s.shard_id) + 1) * div(2::numeric ^ 128, n) - 1 END) AS ends_ok,
       min(pg_temp.shard_ix(s.shard_id)) AS min_ix, max(pg_temp.shard_ix(s.shard_id)) AS max_ix
FROM unnest(ARRAY[1, 2, 3, 7, 16]) n, LATERAL stream.list_shards('routing_n' || n) s
GROUP BY n ORDER BY n;

CREATE TEMP TABLE routed (shards int, how text, pk text, shard_id text, sequence_number text);

-- 1000 keys per stream through put_records (two batches of 500)
INSERT INTO routed
SELECT n, 'put_records', 'pk-' || n || '-' || ((b - 1) * 500 + r.ord), r.shard_id, r.sequence_number
FROM unnest(ARRAY[1, 2, 3, 7, 16]) n, generate_series(1, 2) b,
     LATERAL stream.put_records('routing_n' || n,
                                ARRAY(SELECT 'pk-' || n || '-' || ((b - 1) * 500 + i) FROM generate_series(1, 500) i ORDER BY i),
                                ARRAY(SELECT convert_to(i::text, 'UTF8') FROM generate_series(1, 500) i ORDER BY i))
        WITH ORDINALITY AS r(shard_id, sequence_number, error_code, error_message, ord);

-- 200 keys per stream through put_record
INSERT INTO routed
SELECT n, 'put_record', 'single-' || i, p.shard_id, p.sequence_number
FROM unnest(ARRAY[1, 2, 3, 7, 16]) n, generate_series(1, 200) i,
     LATERAL stream.put_record('routing_n' || n, 'single-' || i, '\x00') p;

SELECT r.shards, r.how, count(*) AS records,
       count(*) FILTER (WHERE stream.hash_key(r.pk) BETWEEN s.starting_hash_key AND s.ending_hash_key) AS in_range,
       count(DISTINCT r.shard_id) AS shards_used
FROM routed r LEFT JOIN LATERAL stream.list_shards('routing_n' || r.shards) s ON s.shard_id = r.shard_id
GROUP BY r.shards, r.how ORDER BY r.shards, r.how;

-- the shard chosen equals the one computed from the pure SQL MD5 and the ranges
SELECT count(*) AS mismatches
FROM routed r
JOIN LATERAL stream.list_shards('routing_n' || r.shards) s
  ON pg_temp.md5_num(convert_to(r.pk, 'UTF8')) BETWEEN s.starting_hash_key AND s.ending_hash_key
WHERE s.shard_id <> r.shard_id;

-- and the records are stored in that shard
SELECT n AS shards, count(*) AS records_read,
       count(*) FILTER (WHERE stream.hash_key(rec.partition_key) BETWEEN s.starting_hash_key AND s.ending_hash_key) AS in_range,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM routed r WHERE r.shards = n AND r.pk = rec.partition_key
                                      AND r.shard_id = s.shard_id AND r.sequence_number = rec.sequence_number)) AS matches_put
FROM unnest(ARRAY[1, 2, 3, 7, 16]) n,
     LATERAL stream.list_shards('routing_n' || n) s,
     LATERAL stream.read_shard('routing_n' || n, s.shard_id) rec
GROUP BY n ORDER BY n;

-- per-shard distribution for 3 shards (deterministic: md5 of fixed keys)
SELECT shard_id, count(*) FROM routed WHERE shards = 3 GROUP BY shard_id ORDER BY shard_id;

SELECT stream.delete_stream('routing_n' || n) FROM unnest(ARRAY[1, 2, 3, 7, 16]) n;
SELECT count(*) AS routing_streams_left FROM stream.list_streams() WHERE stream_name LIKE 'routing%';
