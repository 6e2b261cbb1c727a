-- One record per autocommit transaction with stream.put_record.
\set i random(1, :nsingle)
SELECT r.shard_id, r.sequence_number FROM bench_single s, LATERAL stream.put_record(:stream, s.pk, s.data) r WHERE s.id = :i;
