-- Random start positions in plain_read with >= 10000 rows after them (same shard). psql var: nstarts.
\set ON_ERROR_STOP 1
TRUNCATE read_starts_plain;
INSERT INTO read_starts_plain (id, shard, seq)
SELECT row_number() OVER (), shard, seq
FROM (SELECT shard, seq
      FROM (SELECT shard, seq, row_number() OVER (PARTITION BY shard ORDER BY seq DESC) AS rn FROM plain_read) x
      WHERE rn > 10000
      ORDER BY random()
      LIMIT :nstarts) y;
ANALYZE read_starts_plain;
SELECT count(*) AS plain_starts FROM read_starts_plain \gset
SELECT :plain_starts > 0 AS starts_ok \gset
\if :starts_ok
\else
\echo 'no start positions in plain_read (too few records per shard?)'
SELECT 1/0;
\endif
