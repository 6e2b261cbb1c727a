# Crash and restart: committed records survive with their numbers, records
# of a transaction in flight never appear, new numbers are above the old ones.
# (Formerly test/scripts/20_crash_restart.sh; the same checks on a
# throw-away node instead of the checkout's cluster.)
#
# Phases, each with a transaction left open (in flight) at the moment of the stop:
#   1. crash:     kill -9 of the postmaster, start again (crash recovery)
#   2. clean:     pg_ctl restart -m fast
#   3. immediate: pg_ctl stop -m immediate, start again (crash recovery)
#   4. backend:   kill -9 of the in-flight transaction's backend; the postmaster
#                 resets shared memory and runs crash recovery by itself
# After each restart it checks:
#   * every record committed before the stop is still readable, with the same
#     shard, sequence number and data (read_shard and get_records);
#   * no record of the in-flight transaction ever appears;
#   * every new put gets a sequence number greater than every old one, per shard;
#   * the new records are readable too (readers are not held back by the
#     transaction that was in flight at the stop).
# Sequence numbers are compared as strings: they have the same width, and
# they do not fit in a double.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $DB      = 'stream_crash_test';
my $STREAM  = 'crash';
my $NSHARDS = 4;
my $T0      = time;
my $work    = PostgreSQL::Test::Utils::tempdir;
$ENV{PGOPTIONS} = '-c statement_timeout=60s -c client_min_messages=warning';

my $node = stream_node('crash');
start_node($node);
my $pgdata = $node->data_dir;

sub progress { note sprintf('[%3ss] %s', time - $T0, $_[0]); }
sub sql { return $node->safe_psql($DB, $_[0], timeout => 90); }
sub pidfile_line { return (split /\n/, slurp_file("$pgdata/postmaster.pid"))[ $_[0] - 1 ]; }

my @expected;    # "shard|seq|data" of every committed record
my %max;         # shard => highest old sequence number (note_max)

# put N committed records with data "<tag>-<i>" (a mix of put_record and
# put_records, in two transactions)
sub put_committed
{
	my ($tag, $n) = @_;
	my $half = int($n / 2);
	my $out  = sql(<<SQL);
BEGIN;
SELECT p.shard_id, p.sequence_number, '$tag-' || g
FROM generate_series(1, $half) g,
     LATERAL stream.put_record('$STREAM', 'pk-' || (g % 23), convert_to('$tag-' || g, 'UTF8')) p
ORDER BY g;
COMMIT;
BEGIN;
SELECT p.shard_id, p.sequence_number, convert_from(a.ds[p.ord], 'UTF8')
FROM (SELECT array_agg('pk-' || (g % 23) ORDER BY g) AS pks,
             array_agg(convert_to('$tag-' || g, 'UTF8') ORDER BY g) AS ds
      FROM generate_series($half + 1, $n) g) a,
     LATERAL stream.put_records('$STREAM', a.pks, a.ds)
             WITH ORDINALITY AS p(shard_id, sequence_number, error_code, error_message, ord)
ORDER BY p.ord;
COMMIT;
SQL
	push @expected, split /\n/, $out;
}

# open a transaction that puts one record per shard (data
# "inflight-<tag>-<shard>") and stays open; returns its psql
sub start_inflight
{
	my ($tag) = @_;
	my $out = "$work/inflight-$tag";
	PostgreSQL::Test::Utils::append_to_file("$out.sql", <<SQL);
SET statement_timeout = 0;
\\o $out.pid
SELECT pg_backend_pid();
BEGIN;
\\o $out.tmp
SELECT p.shard_id, p.sequence_number
FROM stream.list_shards('$STREAM') ls,
     LATERAL stream.put_record('$STREAM', 'inflight', convert_to('inflight-$tag-' || ls.shard_id, 'UTF8'),
                               ls.starting_hash_key::text) p;
\\o
\\! mv $out.tmp $out
SELECT pg_sleep(120);
COMMIT;
SQL
	my $h = psql_background($node, $DB, "$out.sql", "$out.log", timeout => 150);
	for (1 .. 100)
	{
		last if -s $out;
		usleep(100_000);
	}
	my @lines = -e $out ? split(/\n/, slurp_file($out)) : ();
	ok(@lines == $NSHARDS, "in-flight transaction $tag put $NSHARDS records")
	  or die "in-flight transaction $tag did not put $NSHARDS records: "
	  . (-e "$out.log" ? slurp_file("$out.log") : '') . join(' ', @lines);
	my %shards = map { (split /\|/)[0] => 1 } @lines;
	is(scalar(keys %shards), $NSHARDS,
		"in-flight transaction $tag: put_record with explicit_hash_key = each shard's starting hash key reached all $NSHARDS shards"
	) or diag(join ' ', @lines);
	progress("in-flight transaction $tag open: @lines");
	return $h;
}

# highest old sequence number per shard
sub note_max
{
	%max = ();
	for (@expected)
	{
		my ($shard, $seq) = split /\|/;
		$max{$shard} = $seq if !defined $max{$shard} || $seq gt $max{$shard};
	}
}

sub expected_sorted
{
	my @rows = map { [ (split /\|/)[ 0, 1 ], $_ ] } @expected;
	return join "\n",
	  map { $_->[2] }
	  sort { $a->[0] cmp $b->[0] || $a->[1] cmp $b->[1] || $a->[2] cmp $b->[2] } @rows;
}

# read every shard (read_shard, and get_records) and compare with the committed records
sub check_all_readable
{
	my ($label) = @_;
	my $want   = expected_sorted();
	my $actual = sql(<<SQL);
SELECT ls.shard_id, r.sequence_number, convert_from(r.data, 'UTF8')
FROM stream.list_shards('$STREAM') ls,
     LATERAL stream.read_shard('$STREAM', ls.shard_id, 'TRIM_HORIZON') r
ORDER BY 1, 2;
SQL
	same_lines($actual, $want,
		"$label: all committed records readable (read_shard) with the same sequence numbers and data");
	my @ghosts = grep { /inflight-/ } split /\n/, $actual;
	ok(!@ghosts, "$label: no record of a transaction that was in flight at the stop is visible")
	  or diag(join ' ', @ghosts[ 0 .. ($#ghosts < 4 ? $#ghosts : 4) ]);

	# the same through get_shard_iterator(TRIM_HORIZON) + get_records, following
	# next_shard_iterator until 3 calls in a row return nothing
	my $gr = sql(<<SQL);
WITH RECURSIVE it(shard_id, iter, recs, n, empties) AS (
    SELECT ls.shard_id, stream.get_shard_iterator('$STREAM', ls.shard_id, 'TRIM_HORIZON'),
           NULL::stream.record[], 0, 0
    FROM stream.list_shards('$STREAM') ls
  UNION ALL
    SELECT it.shard_id, g.next_shard_iterator, g.records, it.n + 1,
           CASE WHEN coalesce(cardinality(g.records), 0) = 0 THEN it.empties + 1 ELSE 0 END
    FROM it, LATERAL stream.get_records(it.iter, 1000) g
    WHERE it.empties < 3 AND it.n < 200
)
SELECT it.shard_id, r.sequence_number, convert_from(r.data, 'UTF8')
FROM it, LATERAL unnest(it.recs) r
ORDER BY 1, 2;
SQL
	same_lines($gr, $want,
		"$label: records read with get_shard_iterator(TRIM_HORIZON)+get_records equal the committed ones");
}

# put new records and check each new sequence number > every old one on its shard
sub check_new_greater
{
	my ($label, $tag) = @_;
	note_max();
	my $before = @expected;
	put_committed($tag, 80);
	my @new = @expected[ $before .. $#expected ];
	my @bad = grep {
		my ($shard, $seq) = split /\|/;
		defined $max{$shard} && $seq le $max{$shard}
	} @new;
	ok(!@bad, "$label: " . scalar(@new) . ' new puts, all sequence numbers above the old maxima per shard')
	  or diag('old maxima: ' . join(' ', map { "$_|$max{$_}" } sort keys %max)
		  . '; offending new puts: ' . join(' ', @bad[ 0 .. ($#bad < 4 ? $#bad : 4) ]));
}

# the processes of @pids still alive after $seconds
sub wait_gone
{
	my ($seconds, @pids) = @_;
	my $end = time + $seconds;
	while (1)
	{
		my @alive = grep { kill 0, $_ } @pids;
		return @alive if !@alive || time >= $end;
		usleep(200_000);
	}
}

# the iterator saved before the stop still works, or is refused as expired or invalid
sub read_old_iterator
{
	my ($label, $iterator) = @_;
	my ($ret, $out, $err) = $node->psql($DB,
		"SELECT count(*) FROM unnest((SELECT records FROM stream.get_records('$iterator')))",
		timeout => 90);
	progress($ret == 0
		? "$label: (info) an iterator obtained before the stop still works, returned $out records"
		: "$label: (info) an iterator obtained before the stop is rejected: $err");
	ok($ret == 0 || $err =~ /ExpiredIteratorException|InvalidArgumentException/,
		"$label: an iterator from before the stop works or fails as expired/invalid")
	  or diag($err);
}

# ---------------------------------------------------------------------------
# the postmaster we are going to kill is the one we connect to
is(pidfile_line(4), $node->port, 'postmaster.pid names the port we connect to');
is(pidfile_line(5), $node->host, 'postmaster.pid names the socket directory we connect to');
$node->safe_psql('postgres', "CREATE DATABASE $DB");
sql('CREATE EXTENSION stream');
sql("SELECT stream.create_stream('$STREAM', $NSHARDS)");

# ============================ phase 1: SIGKILL ==============================
progress('phase 1: kill -9 of the postmaster');
put_committed('c1', 200);
my $inflight = start_inflight('crash');
put_committed('c2', 200);    # committed after the in-flight transaction took its numbers
my $iterator = sql("SELECT stream.get_shard_iterator('$STREAM', 'shardId-000000000000', 'LATEST')");
note_max();
progress('committed ' . scalar(@expected) . ' records; last sequence number per shard: '
	  . join(' ', map { "$_|$max{$_}" } sort keys %max));

my $pm       = pidfile_line(1);
my @children = split ' ', `pgrep -P $pm`;
progress("kill -9 postmaster $pm (children: @children)");
$node->kill9;
die "postmaster $pm did not die" if wait_gone(10, $pm);
# children notice the postmaster's death and exit; a survivor would keep the
# old shared memory attached and make the restart fail
my @survivors = wait_gone(30, @children);
ok(!@survivors, 'all children of the killed postmaster exit')
  or diag('still alive after 30s: ' . `ps -o pid,args -p @{[join ',', @survivors]}`);
kill 9, @survivors;
psql_finish($inflight);
my $t1 = time;
start_node($node);
progress('restarted after crash in ' . (time - $t1) . 's');
progress('(note: no crash-recovery message in the server log)')
  unless slurp_file($node->logfile) =~
  /database system was interrupted|was not properly shut down|redo starts|automatic recovery/;

check_all_readable('after kill -9');
check_new_greater('after kill -9', 'n1');
read_old_iterator('after kill -9', $iterator);
check_all_readable('after kill -9 + new puts');

# ============================ phase 2: fast restart =========================
progress('phase 2: pg_ctl restart -m fast');
put_committed('c3', 100);
$inflight = start_inflight('fast');
note_max();
$node->restart;    # pg_ctl restart: mode fast
psql_finish($inflight);
ok(wait_ready($node, 60), 'server accepts connections after pg_ctl restart')
  or die 'server not accepting connections after pg_ctl restart';
check_all_readable('after fast restart');
check_new_greater('after fast restart', 'n2');
check_all_readable('after fast restart + new puts');

# ============================ phase 3: immediate stop =======================
progress('phase 3: pg_ctl stop -m immediate + start');
put_committed('c4', 100);
$inflight = start_inflight('immediate');
note_max();
$node->stop('immediate');
psql_finish($inflight);
start_node($node);
check_all_readable('after immediate stop');
check_new_greater('after immediate stop', 'n3');
check_all_readable('after immediate stop + new puts');

# ============================ phase 4: backend SIGKILL ======================
progress('phase 4: kill -9 of a backend (postmaster reinitializes shared memory)');
put_committed('c5', 100);
$inflight = start_inflight('backend');
put_committed('c6', 40);
note_max();
my ($bpid) = slurp_file("$work/inflight-backend.pid") =~ /(\d+)/;
die 'no backend pid recorded for the in-flight transaction' unless $bpid;
$pm = pidfile_line(1);
progress("kill -9 backend $bpid (postmaster $pm stays up)");
kill 9, $bpid;
psql_finish($inflight);
sleep 1;
ok(wait_ready($node, 60), 'server back after a backend was killed')
  or die 'server did not come back after a backend was killed';
progress('(note: postmaster pid changed)') if pidfile_line(1) ne $pm;
check_all_readable('after backend kill -9');
check_new_greater('after backend kill -9', 'n4');
check_all_readable('after backend kill -9 + new puts');

$node->stop;
done_testing();
