-- Phase 5: the 500 records as one INSERT ... SELECT into plain_batch, routed over the shard count of the
-- view plain_route (bench/run.sh points it at bench_batches.shards64 or .shards1024, or all to shard 0).
\set b random(1, :nbatches)
INSERT INTO plain_batch (shard, partition_key, data) SELECT u.s, u.k, u.d FROM plain_route b, unnest(b.shards, b.pkeys, b.datas) AS u(s, k, d) WHERE b.id = :b;
