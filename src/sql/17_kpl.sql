---------------------------------------------------------------------------
-- KPL aggregated records (docs/kpl.md): reading their user records as the
-- KCL does, and building one (src/streams/kpl.c, deaggregate.c,
-- user_records.c, aggregate.c)
---------------------------------------------------------------------------

-- A user record as the KCL hands it to a record processor
-- (KinesisClientRecord): the enclosing stream record's sequence number and
-- arrival time; for a sub-record of an aggregate its own partition key and
-- explicit hash key and its sub-sequence number (0, 1, 2, ...); a plain
-- record is one user record with sub-sequence number 0, not aggregated.
-- (sequence_number, sub_sequence_number) is the extended sequence number
-- that stream.checkpoint accepts.
CREATE TYPE stream.user_record AS (
    sequence_number text,
    sub_sequence_number bigint,
    approximate_arrival_timestamp timestamptz,
    partition_key text,
    explicit_hash_key text,
    data bytea,
    aggregated boolean
);
-- as stream.get_records_result: child_shards at the end of a closed shard
CREATE TYPE stream.get_user_records_result AS (records stream.user_record[], next_shard_iterator text,
                                               millis_behind_latest bigint, child_shards jsonb);

-- The readers of user records are overloads of get_records and read_shard
-- whose parameters are laid out so that no call of the plain ones (also
-- with untyped literals or parameters) can mean them: they are called
-- with deaggregate named or as a boolean in its place.

-- get_records(it, limit, deaggregate => true): limit (and the 10 MiB cap)
-- count stream records, as GetRecords' Limit does; an aggregate's user
-- records all come with it.
CREATE FUNCTION stream.get_records(shard_iterator text, "limit" int, deaggregate boolean)
    RETURNS stream.get_user_records_result
    AS 'MODULE_PATHNAME', 'stream_get_records_deaggregated' LANGUAGE C VOLATILE;

-- read_shard(stream, shard, deaggregate => true, ...): read_shard's read
-- as user records; name the other arguments too.
CREATE FUNCTION stream.read_shard(stream_name text, shard_id text, deaggregate boolean,
                                  shard_iterator_type text DEFAULT 'TRIM_HORIZON',
                                  "timestamp" timestamptz DEFAULT NULL,
                                  "limit" int DEFAULT 10000,
                                  starting_sequence_number text DEFAULT NULL)
    RETURNS SETOF stream.user_record
    AS 'MODULE_PATHNAME', 'stream_read_shard_deaggregated' LANGUAGE C VOLATILE ROWS 1000;

-- One aggregated record of the given user records, to put with put_record
-- or put_records (the KPL puts it with partition key 'a' and the first
-- user record's hash key as explicit hash key, so that it lands on that
-- record's shard).  Each user record is validated as put_records validates
-- a record; the aggregate must not exceed 1 MiB.
CREATE FUNCTION stream.aggregate_records(partition_keys text[], data bytea[],
                                         explicit_hash_keys text[] DEFAULT NULL)
    RETURNS bytea
    AS 'MODULE_PATHNAME', 'stream_aggregate_records' LANGUAGE C IMMUTABLE PARALLEL SAFE;
