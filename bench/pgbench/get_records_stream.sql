-- 10000 records shipped to the client, as a Kinesis consumer does it: a fresh iterator
-- (AT_SEQUENCE_NUMBER at a random earlier position with >= 10000 records after it), then
-- get_records(iterator, 10000) with the records unnested to rows.
\set r random(1, :nstarts)
SELECT stream.get_shard_iterator(:stream, shard_id, 'AT_SEQUENCE_NUMBER', seqnum) AS it FROM read_starts_stream WHERE id = :r \gset
SELECT rec.* FROM stream.get_records(:it, 10000) g, LATERAL unnest(g.records) rec;
