-- One single-row INSERT per autocommit transaction, returning its (shard, seq) like put_record.
\set i random(1, :nsingle)
INSERT INTO plain_single (shard, partition_key, data) SELECT s.shard, s.pk, s.data FROM bench_single s WHERE s.id = :i RETURNING shard, seq;
