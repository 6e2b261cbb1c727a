--
-- kpl: KPL aggregated records (docs/kpl.md) - aggregate_records, the
-- user-record readers (get_records/read_shard with deaggregate), the
-- decoder's rules on hand-made protobuf, limits, sub-sequence checkpoints.
-- Never prints sequence numbers, timestamps or iterators: only derived facts.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

SELECT stream.create_stream('kpl_s', 1);

-- errors that name sequence numbers, with the numbers masked
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLERRM, '[0-9]{40}', '<seq>', 'g');
END $$;

-- an aggregate: magic, message, MD5 of the message
CREATE FUNCTION pg_temp.agg(msg_hex text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT '\xf3899ac2'::bytea || decode(msg_hex, 'hex') || decode(md5(decode(msg_hex, 'hex')), 'hex')
$$;

--
-- 1. the format: aggregate_records writes what the KPL writes
--
-- tables first (each key once, in order of first use), then the records
SELECT encode(stream.aggregate_records(ARRAY['a', 'b', 'a'], ARRAY['\x01', '', '\x0203']::bytea[],
                                       ARRAY[NULL, '5', NULL]), 'hex') AS aggregate;
SELECT stream.aggregate_records(ARRAY['a', 'b', 'a'], ARRAY['\x01', '', '\x0203']::bytea[], ARRAY[NULL, '5', NULL])
     = pg_temp.agg('0a01610a01621201351a0508001a01011a06080110001a001a0608001a020203') AS same_as_by_hand;

--
-- 2. the decoder's rules, one stream record per case, keyed by its name:
-- a record that is no aggregate comes back as it is (aggregated false)
--
CREATE TEMP TABLE cases (name text PRIMARY KEY, data bytea);
INSERT INTO cases VALUES
    -- one record: pk table "a", record {pk 0, data 0102}
    ('ok',              pg_temp.agg('0a01611a0608001a020102')),
    -- records may come before the table entries they name
    ('interleaved',     pg_temp.agg('1a0608001a0201020a0161')),
    -- unknown fields skipped: a varint (9), a fixed32 in the record, a group (7) with a nested group
    ('unknown fields',  pg_temp.agg('48010a01611a0b08002d000000001a0201023b080143443c')),
    -- a known field number with another wire type is an unknown field
    ('other wire type', pg_temp.agg('08050a01611a0608001a020102')),
    -- the last of a repeated scalar wins: index 0 then 1 -> "b"
    ('last wins',       pg_temp.agg('0a01610a01621a0808000801' || '1a020102')),
    -- index 2^32: protobuf-java's (int) of it is 0
    ('index 2^32',      pg_temp.agg('0a01611a0a0880808080101a020102')),
    -- a tag with its required key
    ('tag',             pg_temp.agg('0a01611a0b08001a02010222030a0174')),
    -- explicit hash keys as java.math.BigInteger reads them ("0", "55", "-5"); one no record names is no matter
    ('hash keys',       pg_temp.agg('0a0161' || '120130' || '12023535' || '12022d35' || '1202612d'
                                    || '1a0708001000' || '1a0101' || '1a0608001002' || '1a00' || '1a0708001001' || '1a0102')),
    ('plus sign',       pg_temp.agg('0a0161' || '12022b37' || '1a0708001000' || '1a0101')),
    -- partition keys that are not valid UTF-8 (a stray byte, a NUL, a cut sequence): U+FFFD
    ('bad utf-8 key',   pg_temp.agg('0a0361ff62' || '0a03630064' || '0a0365e282'
                                    || '1a0508001a0178' || '1a0508011a0179' || '1a0508021a017a')),
    -- no records: an aggregate of nothing, which the KCL drops
    ('no records',      pg_temp.agg('0a0161')),
    -- now those that are not aggregates
    ('empty message',   pg_temp.agg('')),
    ('bad digest',      '\xf3899ac20a01611a0608001a020102' || '\x00000000000000000000000000000000'::bytea),
    ('no magic',        '\xf3899ac3'::bytea || substr(pg_temp.agg('0a01611a0608001a020102'), 5)),
    ('short',           '\xf3899a'),
    ('index past table',  pg_temp.agg('0a01611a0608011a020102')),
    ('negative index',  pg_temp.agg('0a01611a0a08ffffffff0f1a020102')),
    ('hash key index past table', pg_temp.agg('0a01611a08080010001a020102')),
    ('hash key not a number',     pg_temp.agg('0a016112026162' || '1a08080010001a020102')),
    ('hash key only a sign',      pg_temp.agg('0a0161' || '12012b' || '1a08080010001a020102')),
    ('no data',         pg_temp.agg('0a01611a020800')),
    ('no index',        pg_temp.agg('0a01611a041a020102')),
    ('tag without key', pg_temp.agg('0a01611a0b08001a0201022203120178')),
    ('truncated length', pg_temp.agg('0a05610a')),
    ('length past record', pg_temp.agg('0a01611a0608001a050102')),
    ('end group at top', pg_temp.agg('0a01610c')),
    ('unmatched end group', pg_temp.agg('0a01611a0608001a0201023b440c')),
    ('open group',      pg_temp.agg('0a01611a0608001a0201023b')),
    ('wire type 6',     pg_temp.agg('0a01610e')),
    ('field number 0',  pg_temp.agg('0a01610001')),
    ('varint of 11 bytes', pg_temp.agg('0a01611a0e0880808080808080808080011a00')),
    ('negative length', pg_temp.agg('0a01611affffffff0f')),
    -- groups nested 99 deep in a record parse; 100 deep do not (protobuf-java's recursion limit)
    ('groups 99 deep',  pg_temp.agg('0a01611a' || to_hex(4 + 2 * 99) || '01' || '08001a00' || repeat('3b', 99) || repeat('3c', 99))),
    ('groups 100 deep', pg_temp.agg('0a01611a' || to_hex(4 + 2 * 100) || '01' || '08001a00' || repeat('3b', 100) || repeat('3c', 100)));

SELECT count(*) = (SELECT count(*) FROM cases) AS all_put
  FROM cases c, LATERAL stream.put_record('kpl_s', c.name, c.data) p;

-- every user record, by the stream record (its case) it came from; a record
-- that is no aggregate comes back byte for byte, as put
SELECT r.partition_key AS "case", u.sub_sequence_number AS sub,
       CASE WHEN u.aggregated THEN u.partition_key END AS user_key, u.explicit_hash_key AS ehk,
       CASE WHEN u.aggregated THEN encode(u.data, 'hex') WHEN u.data = r.data THEN '(as put)' END AS data,
       u.aggregated
  FROM stream.read_shard('kpl_s', 'shardId-000000000000', deaggregate => true) u
  JOIN stream.read_shard('kpl_s', 'shardId-000000000000') r USING (sequence_number)
 ORDER BY u.sequence_number, u.sub_sequence_number;

-- the records that gave no user record
SELECT r.partition_key AS no_user_records
  FROM stream.read_shard('kpl_s', 'shardId-000000000000') r
 WHERE r.sequence_number NOT IN (SELECT sequence_number
                                   FROM stream.read_shard('kpl_s', 'shardId-000000000000', deaggregate => true));

-- every user record has its enclosing record's sequence number and arrival time
SELECT bool_and(u.approximate_arrival_timestamp = r.approximate_arrival_timestamp) AS arrival_of_record,
       count(DISTINCT u.sequence_number) = (SELECT count(*) FROM cases WHERE name <> 'no records') AS one_sequence_each
  FROM stream.read_shard('kpl_s', 'shardId-000000000000', deaggregate => true) u
  JOIN stream.read_shard('kpl_s', 'shardId-000000000000') r USING (sequence_number);

-- deaggregate => false: every stream record once, as it is
SELECT count(*) AS records, bool_and(NOT aggregated AND sub_sequence_number = 0 AND explicit_hash_key IS NULL) AS plain
  FROM stream.read_shard('kpl_s', 'shardId-000000000000', false);

--
-- 3. generated round trips: 0-byte data, 126/127/128 bytes, multibyte keys,
-- explicit hash keys, thousands of sub-records
--
CREATE TEMP TABLE gen AS
SELECT i,
       CASE i % 5 WHEN 0 THEN 'ключ-' || (i % 13) WHEN 1 THEN '鍵' || (i % 7) WHEN 2 THEN 'k😀' || (i % 3)
                  ELSE 'key' || (i % 37) END AS pk,
       substr(decode(repeat(md5(i::text), 12), 'hex'), 1,
              (ARRAY[0, 1, 126, 127, 128, 129, 191, 5])[1 + i % 8]) AS data,
       CASE WHEN i % 3 = 0 THEN ((i::numeric * 7919) ^ 3)::numeric(39, 0)::text END AS ehk
  FROM generate_series(1, 3000) i;

SELECT length(stream.aggregate_records(array_agg(pk ORDER BY i), array_agg(data ORDER BY i),
                                       array_agg(ehk ORDER BY i))) AS aggregate_bytes FROM gen \gset
SELECT :aggregate_bytes < 1048576 AS fits;

SELECT stream.create_stream('kpl_gen', 2);
SELECT p.shard_id AS gen_shard
  FROM (SELECT stream.aggregate_records(array_agg(pk ORDER BY i), array_agg(data ORDER BY i), array_agg(ehk ORDER BY i)) AS a
          FROM gen) x,
       LATERAL stream.put_record('kpl_gen', 'a', x.a, stream.hash_key('key1')::text) p \gset

-- what comes back is exactly what went in, in order, sub-sequence numbers 0..2999
SELECT count(*) AS user_records,
       count(*) FILTER (WHERE u.sub_sequence_number = g.i - 1 AND u.partition_key = g.pk AND u.data = g.data
                          AND u.explicit_hash_key IS NOT DISTINCT FROM g.ehk AND u.aggregated) AS identical
  FROM stream.read_shard('kpl_gen', :'gen_shard', deaggregate => true) u
  FULL JOIN gen g ON g.i - 1 = u.sub_sequence_number;

-- the same through get_records: limit counts stream records, and the aggregate's user records all come
SELECT stream.put_record('kpl_gen', 'a', stream.aggregate_records(ARRAY['x', 'y'], ARRAY['\x01', '\x02']::bytea[]),
                         stream.hash_key('key1')::text) IS NOT NULL AS put_second;
SELECT stream.get_shard_iterator('kpl_gen', :'gen_shard', 'TRIM_HORIZON') AS it \gset
SELECT cardinality(g.records) AS user_records_of_one, g.next_shard_iterator IS NOT NULL AS more
  FROM stream.get_records(:'it', 1, deaggregate => true) g;
SELECT cardinality(g.records) AS user_records_of_two,
       (SELECT array_agg(r.partition_key ORDER BY r.sequence_number, r.sub_sequence_number)
          FROM unnest(g.records) r WHERE r.sequence_number = (SELECT max(sequence_number) FROM unnest(g.records))) AS second
  FROM stream.get_records(:'it', 10000, true) g;
SELECT cardinality(g.records) AS stream_records FROM stream.get_records(:'it', 10000, false) g;
SELECT cardinality(g.records) AS plain_read FROM stream.get_records(:'it') g;

-- a truncated or corrupted aggregate is one plain record, whatever is cut or flipped
SELECT stream.aggregate_records(array_agg(pk ORDER BY i), array_agg(data ORDER BY i)) AS good
  FROM gen WHERE i <= 12 \gset
SELECT stream.create_stream('kpl_cut', 1);
SELECT count(*) AS variants
  FROM (SELECT substr(:'good'::bytea, 1, n) AS d FROM generate_series(0, length(:'good'::bytea) - 1) n
        UNION ALL
        SELECT set_byte(:'good'::bytea, n, get_byte(:'good'::bytea, n) # 16) FROM generate_series(0, length(:'good'::bytea) - 1) n) v,
       LATERAL stream.put_record('kpl_cut', 'cut', v.d) p;
SELECT count(*) AS user_records, bool_and(NOT aggregated AND partition_key = 'cut') AS all_plain
  FROM stream.read_shard('kpl_cut', 'shardId-000000000000', deaggregate => true, "limit" => 10000);

--
-- 4. aggregate_records' validation: put_records' rules, and 1 MiB
--
SELECT stream.aggregate_records(NULL, ARRAY['\x01']::bytea[]);
SELECT stream.aggregate_records(ARRAY['a'], NULL);
SELECT stream.aggregate_records('{}', '{}');
SELECT stream.aggregate_records(ARRAY['a', 'b'], ARRAY['\x01']::bytea[]);
SELECT stream.aggregate_records(ARRAY['a'], ARRAY['\x01']::bytea[], ARRAY['1', '2']);
SELECT stream.aggregate_records(ARRAY['a', NULL], ARRAY['\x01', '\x02']::bytea[]);
SELECT stream.aggregate_records(ARRAY['a', 'b'], ARRAY['\x01', NULL]::bytea[]);
SELECT stream.aggregate_records(ARRAY[''], ARRAY['\x01']::bytea[]);
SELECT stream.aggregate_records(ARRAY[repeat('é', 257)], ARRAY['\x01']::bytea[]);
SELECT length(stream.aggregate_records(ARRAY[repeat('é', 256)], ARRAY['\x01']::bytea[])) AS key_of_256;
SELECT stream.aggregate_records(ARRAY['a'], ARRAY['\x01']::bytea[], ARRAY['01']);
SELECT stream.aggregate_records(ARRAY['a'], ARRAY['\x01']::bytea[], ARRAY['340282366920938463463374607431768211456']);
SELECT stream.aggregate_records(ARRAY['a'], ARRAY['\x01']::bytea[], ARRAY[['1']]);
-- one record: magic 4 + key entry 3 + record field (1 + 3 + 2 + 1 + 3 + n) + digest 16 = n + 33 bytes
SELECT length(stream.aggregate_records(ARRAY['a'], ARRAY[decode(repeat('00', 1048543), 'hex')])) AS exactly_1_mib;
SELECT stream.aggregate_records(ARRAY['a'], ARRAY[decode(repeat('00', 1048544), 'hex')]);
SELECT stream.aggregate_records(ARRAY['a', 'b'], ARRAY[decode(repeat('00', 600000), 'hex'), decode(repeat('00', 600000), 'hex')]);
-- put_record then counts the aggregate's key too
SELECT stream.put_record('kpl_cut', 'a', stream.aggregate_records(ARRAY['a'], ARRAY[decode(repeat('00', 1048543), 'hex')]));
-- the user-record readers' required members
SELECT stream.get_records(:'it', NULL, true);
SELECT stream.get_records(:'it', 1, NULL);
SELECT stream.get_records(:'it', 0, true);
SELECT count(*) FROM stream.read_shard('kpl_cut', 'shardId-000000000000', NULL);
SELECT count(*) FROM stream.read_shard('kpl_cut', 'shardId-000000000000', true, NULL);
SELECT count(*) FROM stream.read_shard('kpl_cut', 'shardId-000000000000', deaggregate => true, "limit" => NULL);

-- the plain readers keep resolving as before, also with untyped literals and parameters
SELECT count(*) AS plain_read_shard FROM stream.read_shard('kpl_cut', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, '10');
PREPARE plain_get AS SELECT cardinality(records) FROM stream.get_records($1, $2);
EXECUTE plain_get(:'it', '1');
PREPARE plain_read AS SELECT count(*) FROM stream.read_shard($1, $2, $3, $4, $5);
EXECUTE plain_read('kpl_cut', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL);
DEALLOCATE ALL;

--
-- 5. checkpoints with sub-sequence numbers (the KCL's extended sequence number)
--
SELECT stream.register_application('kpl_app', 'kpl_gen');
SELECT count(*) AS leases FROM stream.acquire_leases('kpl_app', 'w', '1 hour');
SELECT max(sequence_number) AS agg_seq, min(sequence_number) AS first_seq
  FROM stream.read_shard('kpl_gen', :'gen_shard') \gset
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'first_seq', 5);
SELECT checkpoint_sub_sequence_number AS sub FROM stream.acquire_leases('kpl_app', 'w', '1 hour') WHERE shard_id = :'gen_shard';
-- after a partial checkpoint the lease iterator is at the checkpointed record (the KCL skips what it processed)
SELECT (SELECT min(r.sequence_number) FROM unnest(g.records) r) = :'first_seq' AS at_checkpointed_record
  FROM stream.get_records(stream.get_lease_iterator('kpl_app', 'w', :'gen_shard'), 10, true) g;
SELECT count(*) AS left_to_process
  FROM unnest((stream.get_records(stream.get_lease_iterator('kpl_app', 'w', :'gen_shard'), 10, true)).records) r
 WHERE (r.sequence_number, r.sub_sequence_number) > (:'first_seq', 5::bigint);
-- never backwards, in the KCL's order
SELECT pg_temp.try(format('SELECT stream.checkpoint(%L, %L, %L, %L, 4)', 'kpl_app', 'w', :'gen_shard', :'first_seq')) AS backwards;
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'first_seq', 5);
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'first_seq', 2999);
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'first_seq', -1);
-- the whole record (no sub-sequence number) comes after all its sub-records
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'first_seq');
SELECT pg_temp.try(format('SELECT stream.checkpoint(%L, %L, %L, %L, 3000)', 'kpl_app', 'w', :'gen_shard', :'first_seq')) AS after_whole;
SELECT checkpoint = :'first_seq' AS at_record, checkpoint_sub_sequence_number IS NULL AS whole
  FROM stream.application_leases WHERE application_name = 'kpl_app' AND lease_key = :'gen_shard' AND checkpoint = :'first_seq';
-- and resumes after the record
SELECT (SELECT min(r.sequence_number) FROM unnest(g.records) r) = :'agg_seq' AS after_checkpointed_record
  FROM stream.get_records(stream.get_lease_iterator('kpl_app', 'w', :'gen_shard'), 10, true) g;
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', :'agg_seq', 0);
SELECT stream.checkpoint('kpl_app', 'w', :'gen_shard', 'SHARD_END', 0);

SELECT stream.deregister_application('kpl_app');
SELECT stream.delete_stream(s) FROM unnest(ARRAY['kpl_s', 'kpl_gen', 'kpl_cut']) s;
