--
-- errors: what every function does with NULL arguments, the SQLSTATE of
-- each exception class, and the internal name check; none of them changes
-- anything (checked at the end).  Each concept's own limits and bad inputs
-- are in its file (streams, puts, iterators, get_records, retention, ...).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/fixtures/err_streams.psql

--
-- 1. NULL arguments: an error, never a crash and never a silent no-op
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
-- 2. SQLSTATEs of the exception classes
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
-- 3. _check_name (any role may run it) with a NULL member or limit: an error, not a crash
--
SELECT stream_internal._check_name('x', NULL, 1);
SELECT stream_internal._check_name('x', 'streamName', NULL);
SELECT stream_internal._check_name(NULL, NULL, NULL);
SELECT stream_internal._check_name(NULL, 'shardId', 128);

--
-- 4. exceptions, limits and processor kinds have one source (src/kinesis.h, src/runtime/kind.c)
--
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

\i :abs_srcdir/sql/fixtures/err_streams_end.psql
