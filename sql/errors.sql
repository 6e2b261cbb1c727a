--
-- errors: every limit and bad input, with the Kinesis exception name in the
-- message; none of them changes anything (checked at the end).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

-- Runs a statement; returns 'ok' or SQLSTATE + message with variable parts masked.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || regexp_replace(regexp_replace(SQLERRM,
           '[0-9]{40}', '<seq>', 'g'), '[0-9]{13,}', '<ms>', 'g');
END $$;

SELECT stream.create_stream('err_s', 2);
SELECT stream.create_stream('err_other', 1);
SELECT stream.create_stream('err_ok', 1);
SELECT stream.increase_stream_retention_period('err_s', 48);
SELECT count(*) FROM stream.put_record('err_s', 'a', '\x01', '0');
SELECT count(*) FROM stream.put_record('err_s', 'a', '\x02', '0');
SELECT count(*) FROM stream.put_record('err_s', 'b', '\x03', '340282366920938463463374607431768211455');
SELECT count(*) FROM stream.put_record('err_other', 'c', '\x04');

SELECT sequence_number AS seq_s0 FROM stream.read_shard('err_s', 'shardId-000000000000') LIMIT 1 \gset
SELECT sequence_number AS seq_s1 FROM stream.read_shard('err_s', 'shardId-000000000001') LIMIT 1 \gset
SELECT sequence_number AS seq_other FROM stream.read_shard('err_other', 'shardId-000000000000') LIMIT 1 \gset
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'TRIM_HORIZON') AS it \gset

-- snapshot of everything the error cases could change
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
  SELECT format('streams=%s err_s=%s/%s err_other=%s retention=%s shards=%s data_relations=%s',
    (SELECT string_agg(stream_name, ',' ORDER BY stream_name) FROM stream.list_streams()),
    (SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000')),
    (SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000001')),
    (SELECT count(*) FROM stream.read_shard('err_other', 'shardId-000000000000')),
    stream.describe_stream_summary('err_s') -> 'RetentionPeriodHours',
    (SELECT count(*) FROM stream.list_shards('err_s')),
    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'stream_data'))
$$;
SELECT pg_temp.state() AS state_before \gset
SELECT regexp_replace(:'state_before', ' data_relations=[0-9]+', '') AS state_before;

--
-- 1. stream names: [a-zA-Z0-9_.-]{1,128}
--
SELECT stream.create_stream('', 1);
SELECT stream.create_stream(repeat('a', 129), 1);
SELECT stream.create_stream('has space', 1);
SELECT stream.create_stream('slash/name', 1);
SELECT stream.create_stream('semi;colon', 1);
SELECT stream.create_stream('quote''s', 1);
SELECT stream.create_stream('star*', 1);
SELECT stream.create_stream('ümlaut', 1);
SELECT stream.create_stream(E'tab\tname', 1);
SELECT stream.create_stream(E'new\nline', 1);
SELECT stream.describe_stream(repeat('a', 129));
SELECT stream.delete_stream('has space');
-- 128 characters and all allowed characters are fine
SELECT stream.create_stream(repeat('a', 127) || 'Z', 1);
SELECT length(stream_name) FROM stream.list_streams() WHERE stream_name LIKE 'aaaa%';
SELECT stream.delete_stream(repeat('a', 127) || 'Z');
SELECT stream.create_stream('Az09_.-', 1);
SELECT stream.delete_stream('Az09_.-');

--
-- 2. duplicate, unknown stream, unknown shard
--
SELECT stream.create_stream('err_s', 1);
SELECT stream.create_stream('err_s', 2, 48);
SELECT stream.describe_stream('err_nope');
SELECT stream.describe_stream_summary('err_nope');
SELECT stream.delete_stream('err_nope');
SELECT * FROM stream.list_shards('err_nope');
SELECT * FROM stream.put_record('err_nope', 'k', '\x00');
SELECT * FROM stream.put_records('err_nope', ARRAY['k'], ARRAY['\x00']::bytea[]);
SELECT stream.get_shard_iterator('err_nope', 'shardId-000000000000', 'TRIM_HORIZON');
SELECT * FROM stream.read_shard('err_nope', 'shardId-000000000000');
SELECT stream.increase_stream_retention_period('err_nope', 48);
SELECT stream.decrease_stream_retention_period('err_nope', 24);
SELECT stream.grant_stream_access('err_nope', 'postgres', 'read');
-- names are case sensitive
SELECT stream.describe_stream('ERR_S');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000002', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-999999999999', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'garbage', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', '', 'TRIM_HORIZON');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000002');

--
-- 3. shard count and retention
--
SELECT stream.create_stream('err_new', 0);
SELECT stream.create_stream('err_new', -1);
SELECT stream.create_stream('err_new', 1, 23);
SELECT stream.create_stream('err_new', 1, 0);
SELECT stream.create_stream('err_new', 1, 8761);
SELECT stream.increase_stream_retention_period('err_s', 8761);
SELECT stream.increase_stream_retention_period('err_s', 30);
SELECT stream.increase_stream_retention_period('err_s', 23);
SELECT stream.decrease_stream_retention_period('err_s', 100);
SELECT stream.decrease_stream_retention_period('err_s', 23);
SELECT stream.decrease_stream_retention_period('err_s', 0);
SELECT stream.decrease_stream_retention_period('err_s', 8761);

--
-- 4. partition keys and record sizes
--
SELECT * FROM stream.put_record('err_s', '', '\x00');
SELECT * FROM stream.put_record('err_s', repeat('k', 257), '\x00');
SELECT * FROM stream.put_record('err_s', repeat('ü', 257), '\x00');
-- 256 characters are fine even when they are 512 bytes
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', repeat('ü', 256), '\x00');
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', repeat('k', 256), '\x00');
-- key + data: exactly 1 MiB is fine, one byte more is not
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', 'k', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT shard_id IS NOT NULL AS ok FROM stream.put_record('err_ok', 'ü', convert_to(repeat('x', 1048574), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'k', convert_to(repeat('x', 1048576), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'kk', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'ü', convert_to(repeat('x', 1048575), 'UTF8'));
SELECT * FROM stream.put_record('err_s', 'k', convert_to(repeat('x', 2097152), 'UTF8'));

--
-- 5. put_records limits: 1..500 records, 5 MiB per request, same array lengths
--
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[501]), array_fill('\x00'::bytea, ARRAY[501]));
SELECT count(*) FROM stream.put_records('err_s', '{}'::text[], '{}'::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02', '\x03']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b', 'c'], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[], ARRAY['0']);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', '\x02']::bytea[], ARRAY['0', '1', '2']);
-- five records of exactly 1 MiB each (5 MiB) are fine; one more byte is not
SELECT count(*) AS ok FROM stream.put_records('err_ok', array_fill('k'::text, ARRAY[5]),
                                              array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[5]))
WHERE error_code IS NULL;
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[6]),
                                        array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[5]) || '\x'::bytea);
SELECT count(*) FROM stream.put_records('err_s', array_fill('k'::text, ARRAY[5]),
                                        array_fill(convert_to(repeat('x', 1048575), 'UTF8'), ARRAY[4]) || convert_to(repeat('x', 1048576), 'UTF8'));
-- any bad record fails the whole request
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', ''], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', repeat('k', 257)], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01'::bytea, convert_to(repeat('x', 1048576), 'UTF8')]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', NULL], ARRAY['\x01', '\x02']::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY['a', 'b'], ARRAY['\x01', NULL]::bytea[]);
SELECT count(*) FROM stream.put_records('err_s', ARRAY[['a', 'b'], ['c', 'd']], ARRAY[['\x01', '\x02'], ['\x03', '\x04']]::bytea[]);

--
-- 6. get_records limit 1..10000
--
SELECT cardinality(records) FROM stream.get_records(:'it', 0);
SELECT cardinality(records) FROM stream.get_records(:'it', -1);
SELECT cardinality(records) FROM stream.get_records(:'it', 10001);
SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 0);
SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, 10001);
SELECT cardinality(records) AS limit_1 FROM stream.get_records(:'it', 1);
SELECT cardinality(records) AS limit_10000 FROM stream.get_records(:'it', 10000);

--
-- 7. NULL arguments: an error, never a crash and never a silent no-op
--
SELECT stream.create_stream(NULL, 1);
SELECT stream.create_stream('err_new', NULL);
SELECT stream.create_stream('err_new', 1, NULL);
SELECT stream.delete_stream(NULL);
SELECT stream.describe_stream(NULL);
SELECT stream.describe_stream_summary(NULL);
SELECT * FROM stream.list_shards(NULL);
SELECT stream.increase_stream_retention_period(NULL, 48);
SELECT stream.increase_stream_retention_period('err_s', NULL);
SELECT stream.decrease_stream_retention_period(NULL, 24);
SELECT stream.decrease_stream_retention_period('err_s', NULL);
SELECT * FROM stream.put_record(NULL, 'k', '\x00');
SELECT * FROM stream.put_record('err_s', NULL, '\x00');
SELECT * FROM stream.put_record('err_s', 'k', NULL);
SELECT * FROM stream.put_records(NULL, ARRAY['k'], ARRAY['\x00']::bytea[]);
SELECT * FROM stream.put_records('err_s', NULL, ARRAY['\x00']::bytea[]);
SELECT * FROM stream.put_records('err_s', ARRAY['k'], NULL);
SELECT stream.get_shard_iterator(NULL, 'shardId-000000000000', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', NULL, 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', NULL);
SELECT * FROM stream.get_records(NULL);
SELECT * FROM stream.get_records(NULL, 10);
SELECT cardinality(records) FROM stream.get_records(:'it', NULL);
SELECT * FROM stream.read_shard(NULL, 'shardId-000000000000');
SELECT * FROM stream.read_shard('err_s', NULL);
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', NULL);
SELECT count(*) FROM stream.read_shard('err_s', 'shardId-000000000000', 'TRIM_HORIZON', NULL, NULL, NULL);
SELECT stream.grant_stream_access(NULL, 'postgres', 'read');
SELECT stream.grant_stream_access('err_s', NULL, 'read');
SELECT stream.grant_stream_access('err_s', 'postgres', NULL);
SELECT stream.revoke_stream_access(NULL, 'postgres', 'read');
SELECT stream.hash_key(NULL) IS NULL AS hash_key_of_null_is_null;
-- explicit_hash_key NULL means "no explicit hash key"
SELECT shard_id FROM stream.put_record('err_ok', 'a', '\x00', NULL);

--
-- 8. grant_stream_access with a bad access level or role
--
SELECT stream.grant_stream_access('err_s', 'postgres', 'admin');
SELECT stream.grant_stream_access('err_s', 'postgres', '');
SELECT stream.grant_stream_access('err_s', 'err_no_such_role', 'read');

--
-- 9. bad iterators: InvalidArgumentException, never a read
--
SELECT * FROM stream.get_records('garbage');
SELECT * FROM stream.get_records('');
SELECT * FROM stream.get_records(repeat('A', 600));
SELECT * FROM stream.get_records(encode(convert_to(repeat('x', 96), 'UTF8'), 'base64'));
SELECT * FROM stream.get_records(left(:'it', length(:'it') - 8));
SELECT * FROM stream.get_records(left(:'it', length(:'it') / 2));
SELECT * FROM stream.get_records(:'it' || 'AAAA');
SELECT * FROM stream.get_records(upper(:'it'));
SELECT * FROM stream.get_records(reverse(:'it'));
-- flipping any single character (leaving out the last 3, which may be base64 padding bits)
SELECT count(*) AS positions,
       count(*) FILTER (WHERE res LIKE '22023 InvalidArgumentException:%') AS rejected
FROM (SELECT pg_temp.try(format('SELECT * FROM stream.get_records(%L)',
               overlay(:'it' PLACING CASE WHEN substr(:'it', p, 1) = 'A' THEN 'B' ELSE 'A' END FROM p FOR 1))) AS res
      FROM generate_series(1, length(:'it') - 3) p) x;
-- the iterator itself still works
SELECT cardinality(records) AS original_iterator_records FROM stream.get_records(:'it');

--
-- 10. iterator types and starting sequence numbers
--
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'TRIM_HORIZON', :'seq_s0');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'LATEST', :'seq_s0');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', NULL);
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'BOGUS');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'trim_horizon');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', '');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'LATEST', :'seq_s0');
SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER');
-- malformed sequence numbers
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', 'abc');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '-1');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', '12345');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 40));
-- a sequence number of another shard / another stream
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'seq_s1'));
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000001', 'AFTER_SEQUENCE_NUMBER', %L)$q$, :'seq_s0'));
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'seq_other'));
SELECT pg_temp.try(format($q$SELECT * FROM stream.read_shard('err_other', 'shardId-000000000000', 'AFTER_SEQUENCE_NUMBER', %L)$q$, :'seq_s0'));
-- AT_TIMESTAMP without a timestamp, or in the future
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, NULL);
SELECT pg_temp.try($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now() + interval '1 hour')$q$);
SELECT pg_temp.try($q$SELECT * FROM stream.read_shard('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, now() + interval '1 day')$q$);
-- 'infinity' is in the future too; the message must show sane values (infinity is named as such)
SELECT split_part(res, ':', 1) AS error,
       res ~ 'timestampInMillis: (<ms>|infinity), currentTimestampInMillis: <ms>$' AS millis_ok
FROM pg_temp.try($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_TIMESTAMP', NULL, 'infinity')$q$) res;

--
-- 11. deleted streams: iterators and sequence numbers of a former incarnation
--
SELECT stream.create_stream('err_gone', 1);
SELECT count(*) FROM stream.put_record('err_gone', 'g', '\x00');
SELECT stream.get_shard_iterator('err_gone', 'shardId-000000000000', 'TRIM_HORIZON') AS gone_it \gset
SELECT sequence_number AS gone_seq FROM stream.read_shard('err_gone', 'shardId-000000000000') \gset
SELECT stream.delete_stream('err_gone');
SELECT * FROM stream.get_records(:'gone_it');
SELECT stream.delete_stream('err_gone');
SELECT stream.describe_stream('err_gone');
SELECT stream.create_stream('err_gone', 1);
SELECT count(*) FROM stream.put_record('err_gone', 'new', '\x00');
-- the old iterator does not read the new stream of the same name
SELECT pg_temp.try(format('SELECT * FROM stream.get_records(%L)', :'gone_it')) LIKE '%Exception:%' AS old_iterator_rejected;
SELECT pg_temp.try(format($q$SELECT stream.get_shard_iterator('err_gone', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', %L)$q$, :'gone_seq'));
SELECT stream.delete_stream('err_gone');

--
-- 12. SQLSTATEs of the exception classes
--
SELECT q AS call, pg_temp.try(q) AS result FROM (VALUES
  ($q$SELECT stream.create_stream('err_s', 1)$q$),
  ($q$SELECT stream.describe_stream('err_nope')$q$),
  ($q$SELECT stream.get_shard_iterator('err_s', 'shardId-000000000009', 'LATEST')$q$),
  ($q$SELECT stream.create_stream('bad name', 1)$q$),
  ($q$SELECT stream.create_stream('err_new', 1, 23)$q$),
  ($q$SELECT * FROM stream.put_record('err_s', '', '\x00')$q$),
  ($q$SELECT * FROM stream.put_record('err_s', 'a', '\x00', '-1')$q$),
  ($q$SELECT * FROM stream.get_records('garbage')$q$),
  ($q$SELECT * FROM stream.get_records(NULL)$q$)
) v(q);

--
-- 13. NULL in helpers, odd roles, shard ids and names (issue 7: defects 3, 9, 11)
--
-- _check_name (any role may run it) with a NULL member or limit: an error, not a crash
SELECT stream_internal._check_name('x', NULL, 1);
SELECT stream_internal._check_name('x', 'streamName', NULL);
SELECT stream_internal._check_name(NULL, NULL, NULL);
SELECT stream_internal._check_name(NULL, 'shardId', 128);
-- _delivery_validate with NULL array elements: NULLs name no key
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL, 'k'], false);
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL]::text[], NULL);
-- roles that do not exist: 42704, not a syntax error from the GRANT built with them
SELECT pg_temp.try($q$SELECT stream.grant_stream_access('err_s', 0::oid::regrole, 'read')$q$);
SELECT pg_temp.try($q$SELECT stream.revoke_stream_access('err_s', 4294967295::oid::regrole)$q$);
SELECT pg_temp.try($q$SELECT stream.revoke_stream_access('err_s', NULL)$q$);
-- a role whose name needs quoting
DROP ROLE IF EXISTS "err Role";
CREATE ROLE "err Role";
SELECT stream.grant_stream_access('err_s', '"err Role"', 'read');
SELECT has_table_privilege('err Role', format('stream_data.s%s', (SELECT stream_id FROM stream.streams WHERE stream_name = 'err_s')), 'SELECT') AS quoted_role_granted;
SELECT stream.revoke_stream_access('err_s', '"err Role"');
DROP ROLE "err Role";
-- shard ids: the digits after the last '-', any number, at most 2147483647 (as Kinesis)
SELECT stream.get_shard_iterator('err_s', 'shardId-0000000000001', 'TRIM_HORIZON') IS NOT NULL AS thirteen_digits_are_shard_1;
SELECT count(*) AS shard_1_records FROM stream.read_shard('err_s', 'shardId-00000000000000000000001');
SELECT count(*) AS shard_1_records FROM stream.read_shard('err_s', 'x-1');
SELECT stream.get_shard_iterator('err_s', 'shardId-99999999999', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-2147483648', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-2147483647', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-', 'TRIM_HORIZON');
-- shard ids that break the member's constraints: ValidationException
SELECT stream.get_shard_iterator('err_s', repeat('1', 129), 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId 1', 'TRIM_HORIZON');
SELECT stream.get_shard_iterator('err_s', 'shardId-' || repeat('0', 119) || '1', 'TRIM_HORIZON') IS NOT NULL AS shard_id_of_128_chars_ok;
-- a malformed sequence number is a ValidationException even where none is wanted
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'LATEST', '01');
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 130));
SELECT stream.get_shard_iterator('err_s', 'shardId-000000000000', 'AT_SEQUENCE_NUMBER', repeat('9', 129));
-- explicit hash keys: pattern (ValidationException) before range (InvalidArgumentException)
SELECT * FROM stream.put_record('err_s', 'a', '\x00', '00');
SELECT * FROM stream.put_record('err_s', 'a', '\x00', repeat('9', 39));
SELECT * FROM stream.put_records('err_s', ARRAY['a'], ARRAY['\x00']::bytea[], ARRAY['x']);
-- lease shard ids are read the same way
SELECT stream.register_application('err_app', 'err_s');
SELECT count(*) FROM stream.acquire_leases('err_app', 'w', '1 minute');
SELECT stream.get_lease_iterator('err_app', 'w', 'shardId-0000000000001') IS NOT NULL AS lease_of_shard_1;
SELECT stream.checkpoint('err_app', 'w', 'shardId-000000000000', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '0', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-99999999999', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', 'shardId-2147483648', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', '', :'seq_s0');
SELECT stream.checkpoint('err_app', 'w', NULL, :'seq_s0');
SELECT stream.deregister_application('err_app');
-- write_parquet: a file name the file system cannot take is refused up front
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 AS a', '/tmp/' || repeat('f', 256)));
SELECT pg_temp.try(format('SELECT stream.write_parquet(%L, %L)', 'SELECT 1 AS a', '/tmp/' || repeat('d', 300) || '/x.parquet'));

-- the SQL parts raise by exception name alone: its SQLSTATE is the one
-- table's (src/kinesis.h); a name not in it is the extension's own bug
SELECT e, pg_temp.try(format('SELECT stream_internal._raise(%L, %L)', e, 'm')) AS raised
  FROM unnest(ARRAY['ResourceNotFoundException', 'ResourceInUseException', 'InvalidArgumentException',
                    'ValidationException', 'ExpiredIteratorException', 'LimitExceededException',
                    'AccessDeniedException', 'LeaseLostException', 'NoSuchException', NULL]) e;
SELECT pg_temp.try($q$SELECT stream_internal._raise_null('someMember')$q$);
SELECT pg_temp.try($q$SELECT stream_internal._raise_null(NULL)$q$);
-- limits the SQL parts check and quote come from the C constants
SELECT n, stream_internal._limit(n)
  FROM unnest(ARRAY['STREAM_NAME_MAX', 'RETENTION_HOURS_MIN', 'RETENTION_HOURS_MAX', 'ACCOUNT_SHARDS_MAX',
                    'CONSUMERS_PER_STREAM_MAX', 'FIREHOSE_NAME_MAX', 'FIREHOSE_BUFFER_MB_MIN',
                    'FIREHOSE_BUFFER_MB_MAX', 'FIREHOSE_BUFFER_SECONDS_MIN', 'FIREHOSE_BUFFER_SECONDS_MAX']) n;
SELECT pg_temp.try($q$SELECT stream_internal._limit('NO_SUCH_LIMIT')$q$);
-- processor kinds come from the runtime's registry (src/runtime/kind.c):
-- only a kind some client registered can be stored
SELECT k, stream_internal._processor_kind_known(k) AS registered
  FROM unnest(ARRAY['delivery', 'trigger', 'analytics', 'Delivery', '']) k;
SELECT pg_temp.try($q$INSERT INTO stream.processors (processor_kind, source_stream_id, owner)
                      VALUES ('trigger', 1, current_user::regrole)$q$);

-- and no function of the extension spells a SQLSTATE of its own
SELECT p.oid::regprocedure AS spells_a_sqlstate
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'stream'
 WHERE p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
   AND (p.prosrc ~* 'ERRCODE\s*=' OR p.prosrc ~ '_raise\([^;]*,\s*''[0-9][0-9A-Z]{4}''\s*[,)]');

--
-- nothing above changed anything
--
SELECT pg_temp.state() = :'state_before' AS state_unchanged;
SELECT regexp_replace(pg_temp.state(), ' data_relations=[0-9]+', '') AS state_after;
SELECT count(*) AS err_ok_records FROM stream.read_shard('err_ok', 'shardId-000000000000');

SELECT stream.delete_stream('err_s');
SELECT stream.delete_stream('err_other');
SELECT stream.delete_stream('err_ok');
SELECT count(*) AS err_streams_left FROM stream.list_streams() WHERE stream_name LIKE 'err%';
