-- The same 500 records as one multi-row INSERT ... SELECT (seq from a sequence, arrival = now()).
\set b random(1, :nbatches)
INSERT INTO plain_batch (shard, partition_key, data) SELECT u.s, u.k, u.d FROM bench_batches b, unnest(b.shards, b.pkeys, b.datas) AS u(s, k, d) WHERE b.id = :b;
