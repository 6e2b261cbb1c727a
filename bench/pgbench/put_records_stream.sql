-- 500 records x 100 bytes into stream :stream with stream.put_records (one statement, autocommit).
\set b random(1, :nbatches)
SELECT count(*) FROM bench_batches b, LATERAL stream.put_records(:stream, b.pkeys, b.datas) r WHERE b.id = :b;
