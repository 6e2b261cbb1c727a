-- Fills plain_read with the same batch workload as the read stream.
\set b random(1, :nbatches)
INSERT INTO plain_read (shard, partition_key, data) SELECT u.s, u.k, u.d FROM bench_batches b, unnest(b.shards, b.pkeys, b.datas) AS u(s, k, d) WHERE b.id = :b;
