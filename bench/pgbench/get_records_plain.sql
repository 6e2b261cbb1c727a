-- Equivalent index range scan on the plain table: 10000 rows from a random start position
-- (start looked up first, like the stream variant fetches its iterator first).
\set r random(1, :nstarts)
SELECT shard AS s_shard, seq AS s_seq FROM read_starts_plain WHERE id = :r \gset
SELECT shard, seq, arrival, partition_key, data FROM plain_read WHERE shard = :s_shard AND seq >= :s_seq ORDER BY seq LIMIT 10000;
