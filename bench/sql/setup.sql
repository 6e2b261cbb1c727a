-- bench/sql/setup.sql: payloads and baseline tables shared by all variants.
-- psql variables: nbatches (batches of 500 precomputed records), nsingle (single records).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS pgq;

-- Precomputed batches of 500 records: partition keys, the shard a plain table would route to
-- (top 2 bits of MD5(partition key), i.e. the Kinesis hash-key range of 4 equal shards; top 6 and
-- 10 bits for 64 and 1,024 shards in shards64 and shards1024, phase 5),
-- 100-byte payloads as bytea (stream, plain) and as the same bytes in text form (PgQ ev_data is text).
-- Every variant reads its batch from this table the same way (one row, detoasted arrays).
CREATE TABLE bench_batches (
    id     int PRIMARY KEY,
    pkeys  text[]  NOT NULL,
    shards int[]   NOT NULL,
    shards64   int[] NOT NULL,
    shards1024 int[] NOT NULL,
    datas  bytea[] NOT NULL,
    texts  text[]  NOT NULL
);
ALTER TABLE bench_batches ALTER pkeys SET STORAGE EXTERNAL, ALTER shards SET STORAGE EXTERNAL,
    ALTER shards64 SET STORAGE EXTERNAL, ALTER shards1024 SET STORAGE EXTERNAL,
    ALTER datas SET STORAGE EXTERNAL, ALTER texts SET STORAGE EXTERNAL;

INSERT INTO bench_batches (id, pkeys, shards, shards64, shards1024, datas, texts)
SELECT b,
       array_agg(k ORDER BY i),
       array_agg(get_byte(decode(md5(k), 'hex'), 0) >> 6 ORDER BY i),
       array_agg(get_byte(decode(md5(k), 'hex'), 0) >> 2 ORDER BY i),
       array_agg((get_byte(decode(md5(k), 'hex'), 0) << 2) | (get_byte(decode(md5(k), 'hex'), 1) >> 6) ORDER BY i),
       array_agg(convert_to(t, 'UTF8') ORDER BY i),
       array_agg(t ORDER BY i)
FROM (SELECT b, i,
             'pk-' || (random() * 1000000)::int AS k,
             left(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 100) AS t
      FROM generate_series(1, :nbatches) b, generate_series(1, 500) i) s
GROUP BY b;

-- Single records for the put_record / single-row INSERT comparison.
CREATE TABLE bench_single (
    id    int PRIMARY KEY,
    pk    text  NOT NULL,
    shard int   NOT NULL,
    data  bytea NOT NULL
);
INSERT INTO bench_single
SELECT i, k, get_byte(decode(md5(k), 'hex'), 0) >> 6, convert_to(t, 'UTF8')
FROM (SELECT i, 'pk-' || (random() * 1000000)::int AS k,
             left(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 100) AS t
      FROM generate_series(1, :nsingle) i) s;

-- Plain baselines: same shape as a stream chunk table.
CREATE SEQUENCE plain_batch_seq;
CREATE TABLE plain_batch (
    shard         int         NOT NULL,
    seq           bigint      NOT NULL DEFAULT nextval('plain_batch_seq'),
    arrival       timestamptz NOT NULL DEFAULT now(),
    partition_key text        NOT NULL,
    data          bytea       NOT NULL,
    PRIMARY KEY (shard, seq)
);
CREATE SEQUENCE plain_single_seq;
CREATE TABLE plain_single (LIKE plain_batch INCLUDING ALL);
ALTER TABLE plain_single ALTER seq SET DEFAULT nextval('plain_single_seq');

-- Read benchmark: the plain table is filled by the same batch-insert workload as the stream
-- (same interleaving of shards in the heap); start positions have >= 10000 records after them.
CREATE SEQUENCE plain_read_seq;
CREATE TABLE plain_read (LIKE plain_batch INCLUDING ALL);
ALTER TABLE plain_read ALTER seq SET DEFAULT nextval('plain_read_seq');
CREATE TABLE read_starts_plain (id int PRIMARY KEY, shard int NOT NULL, seq bigint NOT NULL);
CREATE TABLE read_starts_stream (id int PRIMARY KEY, shard_id text NOT NULL, seqnum text NOT NULL);
ANALYZE bench_batches, bench_single;
