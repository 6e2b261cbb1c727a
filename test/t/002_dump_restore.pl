# pg_dump / pg_restore of databases using the stream extension, from one
# throw-away node to another (both preload the library).  Three parts, each
# with databases of its own (formerly test/scripts/30_dump_restore.sh,
# 31_dump_restore_mark.sh and 32_dump_restore_owners.sh, which dumped and
# restored within the checkout's cluster):
#
# records: streams with records (one created with a non-default retention,
#   one whose retention was increased and whose mode was switched to ON_DEMAND
#   afterwards, one deleted stream) are
#   dumped with pg_dump -Fc and restored with pg_restore; then
#   * pg_dump and pg_restore succeed without errors;
#   * list_streams, list_shards, describe_stream and describe_stream_summary are equal;
#   * every record is readable with identical shard, sequence number, arrival
#     timestamp, partition key and data (read_shard, and get_shard_iterator +
#     get_records);
#   * new puts in the restored database get sequence numbers greater than the
#     old ones, per shard (and the source database keeps working the same way);
#   * a new stream gets a stream id of its own; run_maintenance() works.
# sequence mark: records put after pg_dump | psql are delivered.  A
#   delivery's checkpoint (dumped) may lie past numbers that rolled-back puts
#   took; the restored database's counters must start above it, so
#   stream.sequence_mark must be dumped too (it was not: the first put after
#   the restore took a number below the checkpoint and was never delivered).
# owners: owners and grants of applications and registered consumers survive.
#   They are stored as regrole in config-dumped tables, so a dump names the
#   roles and the restore gives them to the roles of those names (as the
#   GRANTs of a dump do; the roles exist on both nodes).  In the restored
#   database: the owner, its grantee and the consumer's owner keep their
#   rights and checkpoints, a stranger still finds nothing (42704), the
#   catalogs still grant PUBLIC nothing.  Also: a dump whose applications have
#   no owner column (made before owners existed) restores them to the
#   restoring role.
# Sequence numbers are compared as strings (same width, too long for doubles).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;
use PostgreSQL::Test::Utils;
use Test::More;

my $work = PostgreSQL::Test::Utils::tempdir;
$ENV{PGOPTIONS} = '-c statement_timeout=60s -c client_min_messages=warning';

my $src = stream_node('source');
my $dst = stream_node('target');
start_node($src);
start_node($dst);

sub sqldb { my ($node, $db, $sql) = @_; return $node->safe_psql($db, $sql, timeout => 90); }

# run a client program (pg_dump, pg_restore, psql) against $node; true on exit status 0
sub client
{
	my ($node, $cmd, $err) = @_;
	my $ignored;
	return $node->run_log($cmd, '<', '/dev/null', '>', \$ignored, '2>', $err // \$ignored);
}

subtest 'records: streams and records restored as they were, counters above them' => sub {
	my ($SRC, $DST) = ('stream_dump_test', 'stream_dump_restore');
	$src->safe_psql('postgres', "CREATE DATABASE $SRC");
	note "creating streams and records in $SRC";
	sqldb($src, $SRC, <<'SQL');
CREATE EXTENSION stream;
SELECT stream.create_stream('alpha', 2);
SELECT stream.create_stream('beta', 3, 48);
SELECT stream.create_stream('gamma', 1);
SELECT stream.increase_stream_retention_period('gamma', 72);
SELECT stream.update_stream_mode('gamma', '{"StreamMode": "ON_DEMAND"}');
SELECT stream.create_stream('doomed', 2);
SELECT * FROM stream.put_record('doomed', 'x', '\x01'::bytea);
SELECT stream.delete_stream('doomed');

-- alpha: single puts, text-ish and binary data, including an empty record
SELECT count(*) FROM generate_series(1, 120) g,
    LATERAL stream.put_record('alpha', 'a-' || (g % 17),
        CASE WHEN g % 10 = 0 THEN ''::bytea
             WHEN g % 3 = 0 THEN decode(md5(g::text) || '00ff00', 'hex')
             ELSE convert_to('alpha record ' || g, 'UTF8') END) p;
-- beta: put_records batches, unicode partition keys, one large record
SELECT count(*) FROM generate_series(1, 4) b,
    LATERAL stream.put_records('beta',
        (SELECT array_agg('ключ-' || b || '-' || i ORDER BY i) FROM generate_series(1, 50) i),
        (SELECT array_agg(convert_to('beta ' || b || '/' || i, 'UTF8') ORDER BY i) FROM generate_series(1, 50) i)) p;
SELECT * FROM stream.put_record('beta', 'big', convert_to(repeat('0123456789abcdef', 16384), 'UTF8'));
-- gamma: explicit hash keys, in a transaction with a rolled-back savepoint
BEGIN;
SELECT count(*) FROM generate_series(1, 30) g,
    LATERAL stream.put_record('gamma', 'g' || g, convert_to('gamma ' || g, 'UTF8'), (g * 1000)::text) p;
SAVEPOINT s;
SELECT * FROM stream.put_record('gamma', 'gone', convert_to('rolled back', 'UTF8'));
ROLLBACK TO SAVEPOINT s;
SELECT * FROM stream.put_record('gamma', 'last', convert_to('gamma last', 'UTF8'));
COMMIT;
SQL

	# full description of the database's streams and records, comparable as text
	my $snapshot = sub {
		my ($node, $db) = @_;
		return sqldb($node, $db, <<'SQL');
\echo == list_streams
SELECT * FROM stream.list_streams() ORDER BY stream_name;
\echo == list_shards
SELECT s.stream_name, sh.*
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh
ORDER BY 1, 2;
\echo == describe_stream_summary
SELECT s.stream_name, stream.describe_stream_summary(s.stream_name)::text
FROM stream.list_streams() s ORDER BY 1;
\echo == describe_stream
SELECT s.stream_name, stream.describe_stream(s.stream_name)::text
FROM stream.list_streams() s ORDER BY 1;
\echo == records (read_shard)
SELECT s.stream_name, sh.shard_id, r.sequence_number,
       to_char(r.approximate_arrival_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       r.partition_key, length(r.data), md5(r.data),
       CASE WHEN length(r.data) <= 64 THEN encode(r.data, 'hex') END
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh,
     LATERAL stream.read_shard(s.stream_name, sh.shard_id, 'TRIM_HORIZON') r
ORDER BY 1, 2, 3;
SQL
	};
	# records through get_shard_iterator(TRIM_HORIZON) + get_records, following iterators
	my $iterate_all = sub {
		my ($node, $db) = @_;
		return sqldb($node, $db, <<'SQL');
WITH RECURSIVE it(stream_name, shard_id, iter, recs, n, empties) AS (
    SELECT s.stream_name, sh.shard_id,
           stream.get_shard_iterator(s.stream_name, sh.shard_id, 'TRIM_HORIZON'),
           NULL::stream.record[], 0, 0
    FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh
  UNION ALL
    SELECT it.stream_name, it.shard_id, g.next_shard_iterator, g.records, it.n + 1,
           CASE WHEN coalesce(cardinality(g.records), 0) = 0 THEN it.empties + 1 ELSE 0 END
    FROM it, LATERAL stream.get_records(it.iter, 37) g
    WHERE it.empties < 3 AND it.n < 500
)
SELECT it.stream_name, it.shard_id, r.sequence_number,
       to_char(r.approximate_arrival_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
       r.partition_key, length(r.data), md5(r.data),
       CASE WHEN length(r.data) <= 64 THEN encode(r.data, 'hex') END
FROM it, LATERAL unnest(it.recs) r
ORDER BY 1, 2, 3;
SQL
	};
	my $records_of = sub { my ($snap) = @_; $snap =~ s/\A.*?^== records[^\n]*\n//ms; return $snap; };

	my $src_snap = $snapshot->($src, $SRC);
	my $src_it   = $iterate_all->($src, $SRC);
	my $nrec     = scalar(my @src_lines = split /\n/, $src_it);
	is($nrec, 352, 'source database: 352 records (120 alpha + 201 beta + 31 gamma)');
	same_lines($records_of->($src_snap), $src_it, 'source database: read_shard and get_records agree');
	unlike($src_snap, qr/^doomed\|/m, "deleted stream 'doomed' is not listed in the source database");
	my $rolled_back_hex = unpack('H*', 'rolled back');
	unlike($src_snap, qr/$rolled_back_hex/, 'no record of a rolled-back savepoint is visible');
	like($src_snap, qr/"RetentionPeriodHours": 48/, 'beta: RetentionPeriodHours 48 in describe_stream_summary');
	like($src_snap, qr/"RetentionPeriodHours": 72/, 'gamma: RetentionPeriodHours 72 in describe_stream_summary');
	like($src_snap, qr/^gamma\|.*"StreamModeDetails": \{"StreamMode": "ON_DEMAND"\}/m, 'gamma: ON_DEMAND in describe_stream_summary');

	my $err = '';
	ok(client($src, [ 'pg_dump', '-Fc', '-f', "$work/db.dump", $SRC ], \$err), "pg_dump -Fc $SRC")
	  or die "pg_dump failed: $err";
	note "pg_dump printed: $err" if $err ne '';
	my $toc = `pg_restore -l '$work/db.dump'`;
	note 'dump: ' . (-s "$work/db.dump") . ' bytes; ' . (() = $toc =~ /TABLE DATA/g) . ' TABLE DATA entries';

	$dst->safe_psql('postgres', "CREATE DATABASE $DST");
	ok(client($dst, [ 'pg_restore', '-d', $DST, "$work/db.dump" ], \$err), "pg_restore into $DST on the other node")
	  or diag("pg_restore reported errors: $err");
	note "pg_restore printed: $err" if $err ne '';

	my $dst_it = $iterate_all->($dst, $DST);
	same_lines($snapshot->($dst, $DST), $src_snap,
		'restored: list_streams, list_shards, describe_stream(_summary) and all records (sequence number, arrival, key, data) identical');
	same_lines($dst_it, $src_it, 'restored: get_shard_iterator+get_records results identical');
	is($dst->safe_psql($DST, 'SELECT count(*) FROM stream.stream_mode_updates'), '1',
		'restored: the capacity mode switch of gamma is kept (its 2-a-day limit)');

	# new puts: one per shard (explicit hash key = shard start) plus a batch, in both databases
	my $new_puts = sub {
		my ($node, $db, $tag) = @_;
		return split /\n/, sqldb($node, $db, <<SQL);
SELECT s.stream_name, p.shard_id, p.sequence_number
FROM stream.list_streams() s, LATERAL stream.list_shards(s.stream_name) sh,
     LATERAL generate_series(1, 3) g,
     LATERAL stream.put_record(s.stream_name, 'new', convert_to('$tag ' || g, 'UTF8'),
                               sh.starting_hash_key::text) p
ORDER BY 1, 2, 3;
SELECT 'alpha', p.shard_id, p.sequence_number
FROM stream.put_records('alpha', ARRAY['n1', 'n2', 'n3', 'n4'],
                        ARRAY['\\x01'::bytea, '\\x02', '\\x03', '\\x04']) p;
SQL
	};
	# old maximum per (stream, shard) from the source snapshot
	my %oldmax;
	for (split /\n/, $records_of->($src_snap))
	{
		my ($stream, $shard, $seq) = split /\|/;
		my $k = "$stream|$shard";
		$oldmax{$k} = $seq if !defined $oldmax{$k} || $seq gt $oldmax{$k};
	}
	my $check_greater = sub {
		my ($label, @new) = @_;
		my @bad = grep {
			my ($stream, $shard, $seq) = split /\|/;
			defined $oldmax{"$stream|$shard"} && $seq le $oldmax{"$stream|$shard"}
		} @new;
		ok(!@bad, "$label: " . scalar(@new) . ' new puts, all above the old maxima of their shards')
		  or diag("offending: @bad[0 .. ($#bad < 4 ? $#bad : 4)] (old maxima: "
			  . join(' ', map { "$_|$oldmax{$_}" } sort keys %oldmax) . ')');
		my %shards = map { join('|', (split /\|/)[ 0, 1 ]) => 1 } @new;
		is(scalar(keys %shards), 6, "$label: new puts reached 6 shards (2 alpha + 3 beta + 1 gamma)");
	};
	my @dst_new = $new_puts->($dst, $DST, 'restored');
	$check_greater->('restored database', @dst_new);
	my @src_new = $new_puts->($src, $SRC, 'source');
	$check_greater->('source database after the dump', @src_new);
	my %seen;
	$seen{ (split /\|/)[2] }++ for @dst_new, @src_new;
	note '(info: the source and the restored database handed out some identical sequence numbers; '
	  . 'they are separate databases)'
	  if grep { $_ > 1 } values %seen;

	# the new records are readable in the restored database, after the old ones
	my $dst_it2 = $iterate_all->($dst, $DST);
	my @after   = split /\n/, $dst_it2;
	is(scalar(@after), $nrec + 22, 'restored database: every record read after 22 new puts');
	# every old record still there, unchanged
	my %have;
	$have{$_}++ for @after;
	my @lost = grep { !$have{$_}-- } split /\n/, $dst_it;
	ok(!@lost, 'restored database: no record lost after new puts') or diag(join "\n", @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]);

	# a new stream in the restored database gets a fresh stream id and works
	my ($ret, $out, $e) = $dst->psql($DST, <<'SQL', timeout => 90);
SELECT stream.create_stream('delta', 1);
SELECT sequence_number FROM stream.put_record('delta', 'd', '\xdd'::bytea);
SELECT sequence_number || '|' || encode(data, 'hex') FROM stream.read_shard('delta', 'shardId-000000000000');
SQL
	is($ret, 0, 'restored database: a new stream can be created and used') or diag($e);
	my $last  = (split /\n/, $out)[-1] // '';
	my $newid = substr($last, 20, 10);
	my %oldids = map { substr($_, 20, 10) => 1 } values %oldmax;
	is((split /\|/, $last)[1], 'dd', 'restored database: the record put to a new stream is read back');
	ok(!$oldids{$newid},
		"restored database: new stream 'delta' gets stream id $newid, not one of the restored ones ("
		  . join(' ', sort keys %oldids) . ')');

	($ret, $out, $e) = $dst->psql($DST, 'SELECT count(*) FROM stream.run_maintenance()', timeout => 90);
	is($ret, 0, "run_maintenance() in the restored database ($out rows)") or diag($e);
};

subtest 'sequence mark: a record put after pg_dump | psql is delivered once' => sub {
	my ($A, $B) = ('stream_dump_mark_a', 'stream_dump_mark_b');
	$src->safe_psql('postgres', "CREATE DATABASE $A");
	$dst->safe_psql('postgres', "CREATE DATABASE $B");
	my $P = sub { return $src->safe_psql($A, $_[0]); };
	$P->(<<'SQL');
CREATE EXTENSION stream;
SELECT stream.create_stream('s', 1);
CREATE TABLE events (a int);
SELECT stream.create_delivery_stream('dl', source_stream_name => 's', destination_table => 'events', starting_position => 'TRIM_HORIZON');
SQL
	$P->(q{SELECT 1 FROM stream.put_record('s', 'k', convert_to('{"a": 1}', 'UTF8'))});
	$P->(q{BEGIN; SELECT count(*) FROM stream.put_records('s', array_fill('k'::text, array[500]), array_fill(convert_to('{"a": 2}', 'UTF8'), array[500])); ROLLBACK;});
	$P->(q{SELECT stream.flush_delivery_stream('dl', 20)});
	sleep 3;
	$P->(q{SELECT stream.flush_delivery_stream('dl', 20)});
	note "A: checkpoint " . $P->('SELECT next_seq FROM stream.processor_checkpoints')
	  . ' max seq ' . $P->('SELECT max(seq) FROM stream_data.s1')
	  . ' delivered ' . $P->('SELECT count(*) FROM events');

	ok(client($src, [ 'pg_dump', '-f', "$work/mark.sql", '-d', $A ]), "pg_dump $A");
	client($dst, [ 'psql', '-X', '-q', '-d', $B, '-f', "$work/mark.sql" ]);    # as `pg_dump | psql`
	my $Q = sub { return $dst->safe_psql($B, $_[0]); };
	$Q->(q{SELECT 1 FROM stream.put_record('s', 'k', convert_to('{"a": 3}', 'UTF8'))});
	$Q->(q{SELECT stream.flush_delivery_stream('dl', 20)});
	note "B: checkpoint " . $Q->('SELECT next_seq FROM stream.processor_checkpoints')
	  . ' max seq ' . $Q->('SELECT max(seq) FROM stream_data.s1')
	  . ' delivered ' . $Q->(q{SELECT string_agg(a::text, ',') FROM events});
	is($Q->('SELECT count(*) FROM events WHERE a = 3'), 1, 'the record put after the restore is delivered once');
};

subtest 'owners: applications and consumers keep their owners and grants, streams their tags' => sub {
	my ($A, $B, $C) = ('stream_dump_owner_a', 'stream_dump_owner_b', 'stream_dump_owner_c');
	my ($OWN, $GR, $STR) = ('stream_dump_owner', 'stream_dump_grantee', 'stream_dump_stranger');
	for my $node ($src, $dst)
	{
		$node->safe_psql('postgres', "CREATE ROLE $_ LOGIN") for $OWN, $GR, $STR;
	}
	$src->safe_psql('postgres', "CREATE DATABASE $A");
	$dst->safe_psql('postgres', "CREATE DATABASE $_") for $B, $C;

	# psql on $db as $role (undef: the superuser): exit status and stdout with
	# stderr, as `2>&1`; $sq: only the text
	my $sqr = sub {
		my ($node, $db, $role, $sql) = @_;
		my ($ret, $out, $err) =
		  $node->psql($db, $sql, extra_params => [ $role ? ('-U', $role) : () ], timeout => 90);
		return ($ret, join("\n", grep { $_ ne '' } $out, $err));
	};
	my $sq = sub { return ($sqr->(@_))[1]; };

	$src->safe_psql($A, <<SQL);
CREATE EXTENSION stream;
SELECT stream.create_stream('s', 2);
SELECT stream.grant_stream_access('s', r, 'read') FROM unnest(ARRAY['$OWN', '$GR', '$STR']::regrole[]) r;
SELECT stream.add_tags_to_stream('s', '{"team": "web", "cost-center": "42"}');
SQL
	my $SEQ = $src->safe_psql($A, q{SELECT sequence_number FROM stream.put_record('s', 'k', '\x01', '0')});
	my ($ret, $got) = $sqr->($src, $A, $OWN, <<SQL);
SELECT stream.register_application('app', 's');
SELECT count(*) FROM stream.acquire_leases('app', 'w', '1 hour');
SELECT stream.checkpoint('app', 'w', 'shardId-000000000000', '$SEQ', 3);
SELECT stream.release_leases('app', 'w');
SELECT stream.grant_application_access('app', '$GR');
SELECT stream.register_stream_consumer('s', 'con');
SQL
	is($ret, 0, "set-up in $A as the owner") or diag($got);

	my $err = '';
	ok(client($src, [ 'pg_dump', '-Fc', '-f', "$work/a.dump", $A ], \$err), 'pg_dump') or diag($err);
	ok(client($dst, [ 'pg_restore', '-d', $B, "$work/a.dump" ], \$err), 'pg_restore on the other node') or diag($err);

	my $check_db = sub {
		my ($db, $owner) = @_;
		is($sq->($dst, $db, undef, q{SELECT application_name || ':' || owner FROM stream.applications}),
			"app:$owner", "$db: the application's owner is $owner");
		is($sq->($dst, $db, undef, q{SELECT checkpoint FROM stream.leases WHERE application_name = 'app' AND shard_index = 0}),
			$SEQ, "$db: the checkpoint is kept");
		is($sq->($dst, $db, undef, q{SELECT checkpoint_sub_sequence_number FROM stream.leases WHERE application_name = 'app' AND shard_index = 0}),
			'3', "$db: the checkpoint's sub-sequence number is kept");
		like($sq->($dst, $db, $STR, q{SELECT count(*) FROM stream.acquire_leases('app', 'x', '1 hour')}),
			qr/\QResourceNotFoundException: Application app not found.\E/, "$db: a stranger's acquire_leases finds no application");
		like($sq->($dst, $db, $STR, 'SELECT count(*) FROM stream.leases'),
			qr/permission denied/, "$db: a stranger cannot read stream.leases");
		like($sq->($dst, $db, $STR, q{SELECT stream.deregister_stream_consumer('s', 'con')}),
			qr/AccessDeniedException/, "$db: a stranger's deregister_stream_consumer is denied");
	};

	$check_db->($B, $OWN);
	is($sq->($dst, $B, $OWN, q{SELECT string_agg(key || '=' || value, ',') FROM stream.list_tags_for_stream('s')}),
		'cost-center=42,team=web', "$B: the stream's tags are restored");
	like($sq->($dst, $B, $GR, q{SELECT stream.get_lease_iterator('app', 'w', 'shardId-000000000000') IS NULL}),
		qr/LeaseLostException/, "$B: the grantee's get_lease_iterator before acquiring: LeaseLostException");
	is($sq->($dst, $B, $GR, <<'SQL'), "2\nt", "$B: the restored grantee can run a worker");
SELECT count(*) FROM stream.acquire_leases('app', 'w', '1 hour');
SELECT stream.get_lease_iterator('app', 'w', 'shardId-000000000000') IS NOT NULL;
SQL
	is($sq->($dst, $B, $OWN, q{SELECT owner || ' ' || grantees::text FROM stream.list_applications()}),
		"$OWN {$GR}", "$B: the owner's list_applications shows the grantee");
	like($sq->($dst, $B, $GR, q{SELECT stream.deregister_application('app')}),
		qr/AccessDeniedException/, "$B: the grantee's deregister_application is denied");
	is($sq->($dst, $B, undef, 'SELECT owner FROM stream.stream_consumers'), $OWN, "$B: the consumer's owner is kept");
	($ret, $got) = $sqr->($dst, $B, $OWN, <<'SQL');
SELECT stream.deregister_stream_consumer('s', 'con');
SELECT stream.deregister_application('app');
SQL
	is($ret, 0, "$B: the restored owner can deregister its consumer and application") or diag($got);

	# a dump from before owners: no owner column in the COPY of stream.applications
	ok(client($src, [ 'pg_dump', '-f', "$work/a.sql", $A ], \$err), 'pg_dump (plain)') or diag($err);
	my ($old, $inapp) = ('', 0);
	for my $line (split /^/m, slurp_file("$work/a.sql"))
	{
		if ($line =~ /^COPY stream\.applications \(.*, owner\) FROM stdin;$/)
		{
			$line =~ s/, owner\)/)/;
			$inapp = 1;
			$old .= $line;
			next;
		}
		$inapp = 0 if $inapp && $line =~ /^\\\.$/;
		$line =~ s/\t[^\t\n]*$// if $inapp;
		$old .= $line;
	}
	like($old,
		qr/^COPY stream.applications \(application_name, stream_id, initial_position, initial_timestamp, created_at\) FROM stdin;$/m,
		'a dump without the owner column was made');
	PostgreSQL::Test::Utils::append_to_file("$work/old.sql", $old);
	ok(client($dst, [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $C, '-f', "$work/old.sql" ], \$err),
		'the old-style dump restores') or diag($err);
	$check_db->($C, 'postgres');
};

$src->stop;
$dst->stop;
done_testing();
