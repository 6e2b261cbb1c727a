-- Harvests the sequence numbers of every record of stream :'stream' through the public API
-- (get_shard_iterator TRIM_HORIZON + get_records chains), then picks random start positions
-- with >= 10000 records after them in the same shard. psql vars: stream, nstarts.
\set ON_ERROR_STOP 1
CREATE TEMP TABLE stream_seqs (shard_id text, seqnum text COLLATE "C");
SELECT set_config('bench.stream', :'stream', false);
DO $$
DECLARE
    sname   text := current_setting('bench.stream');
    sh      record;
    it      text;
    g       record;
    empties int;
BEGIN
    FOR sh IN SELECT shard_id FROM stream.list_shards(sname) LOOP
        it := stream.get_shard_iterator(sname, sh.shard_id, 'TRIM_HORIZON');
        empties := 0;
        LOOP
            SELECT * INTO g FROM stream.get_records(it, 10000);
            IF coalesce(cardinality(g.records), 0) = 0 THEN
                empties := empties + 1;
                EXIT WHEN g.next_shard_iterator IS NULL OR coalesce(g.millis_behind_latest, 0) = 0 OR empties > 20;
            ELSE
                empties := 0;
                INSERT INTO stream_seqs SELECT sh.shard_id, r.sequence_number FROM unnest(g.records) r;
            END IF;
            EXIT WHEN g.next_shard_iterator IS NULL;
            it := g.next_shard_iterator;
        END LOOP;
    END LOOP;
END $$;
TRUNCATE read_starts_stream;
INSERT INTO read_starts_stream (id, shard_id, seqnum)
SELECT row_number() OVER (), shard_id, seqnum
FROM (SELECT shard_id, seqnum
      FROM (SELECT shard_id, seqnum, row_number() OVER (PARTITION BY shard_id ORDER BY seqnum DESC) AS rn FROM stream_seqs) x
      WHERE rn > 10000
      ORDER BY random()
      LIMIT :nstarts) y;
ANALYZE read_starts_stream;
SELECT count(*) AS harvested FROM stream_seqs \gset
SELECT count(*) AS stream_starts FROM read_starts_stream \gset
\echo harvested :harvested sequence numbers, :stream_starts start positions
SELECT :stream_starts > 0 AS starts_ok \gset
\if :starts_ok
\else
\echo 'no start positions in the read stream (too few records per shard?)'
SELECT 1/0;
\endif
