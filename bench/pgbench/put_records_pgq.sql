-- The same 500 records as PgQ events: pgq.insert_event per record, 500 in one statement/transaction.
-- ev_type carries the partition key, ev_data the 100-byte payload (text form of the same bytes).
\set b random(1, :nbatches)
SELECT count(pgq.insert_event(:queue, u.k, u.t)) FROM bench_batches b, unnest(b.pkeys, b.texts) AS u(k, t) WHERE b.id = :b;
