-- The same 10000 records through the psql-friendly read_shard (SETOF stream.record).
\set r random(1, :nstarts)
SELECT shard_id AS s_shard_id, seqnum AS s_seqnum FROM read_starts_stream WHERE id = :r \gset
SELECT * FROM stream.read_shard(:stream, :s_shard_id, 'AT_SEQUENCE_NUMBER', :s_seqnum, NULL, 10000);
