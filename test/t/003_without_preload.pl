# Without shared_preload_libraries the SQL API must still work: producers
# serialise per shard (no shared memory), nothing is skipped, maintenance is a
# function to schedule, and what needs the worker says so.  A throw-away node
# with shared_preload_libraries = '' (formerly test/scripts/80_without_preload.sh,
# which made a cluster of its own with scripts/cluster.sh on a fixed port).
#
# Two checks measure waits (a producer waits > 1 s for a transaction holding
# its shard for 2 s; one on another shard waits < 2 s for a transaction that
# holds a shard for 4 s): margins of a second either way.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $DB   = 'stream_np';
my $work = PostgreSQL::Test::Utils::tempdir;
my $node = stream_node('nopreload', preload => '');
start_node($node);

sub sql { return $node->safe_psql($DB, $_[0]); }
# exit status of psql running $sql (errors are not fatal)
sub sql_status { my ($sql, %opt) = @_; return scalar $node->psql($DB, $sql, %opt); }

# psql running $sql in the background (as `psql <<SQL &`)
my $nbg = 0;
sub background
{
	my ($sql) = @_;
	$nbg++;
	PostgreSQL::Test::Utils::append_to_file("$work/bg$nbg.sql", $sql);
	return psql_background($node, $DB, "$work/bg$nbg.sql", "$work/bg$nbg.log");
}

# a transaction that puts $data on shard 0 (key k) and commits $seconds s later
sub hold_shard0
{
	my ($data, $seconds) = @_;
	return background(<<SQL);
BEGIN;
SELECT stream.put_record('np', 'k', '$data', '0');
SELECT pg_sleep($seconds);
COMMIT;
SQL
}

$node->safe_psql('postgres', "CREATE DATABASE $DB");
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '', 'the library is not preloaded');
sql('CREATE EXTENSION stream');
note 'extension created without preloading';

is(sql('SELECT stream_internal._wake_worker()'), 'f', '_wake_worker() reports that no worker runs');
sql("SELECT stream.create_stream('np', 2)");
sql("SELECT count(*) FROM stream.put_records('np', ARRAY['a','b','c','d','e'], ARRAY['1','2','3','4','5']::bytea[])");

# producers serialise: a second producer waits for an open put on the same shard
my $holder = hold_shard0('held', 2);
sleep 0.5;
my $start = time;
sql("SELECT stream.put_record('np', 'k', 'after', '0')");
my $waited = time - $start;
psql_finish($holder);
ok($waited > 1.0,
	sprintf('without shared memory producers of a shard serialise: the second waited %.2fs for the open transaction', $waited));

# readers see every committed record exactly once, in put order, nothing rolled back
my $rb = sql("BEGIN; SELECT sequence_number FROM stream.put_record('np','k','rolled-back','0'); ROLLBACK;");
# a rolled-back put's number is never handed out again, here either
my $nxt = sql("SELECT sequence_number FROM stream.put_record('np', 'k2', 'after-rollback', '0')");
ok($nxt gt $rb, "the number $rb of a rolled-back put is not handed out again ($nxt)");
is( sql(  "SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) "
	  . "FROM stream.read_shard('np', 'shardId-000000000000') WHERE partition_key = 'k'"),
	'held,after', "shard 0 holds 'held,after'");
is( sql(  "SELECT sum(n) FROM (SELECT (SELECT count(*) FROM stream.read_shard('np', shard_id)) n "
	  . "FROM stream.list_shards('np')) s"),
	8, 'every committed record is read once: 8');
my $it = sql("SELECT stream.get_shard_iterator('np', 'shardId-000000000000', 'LATEST')");
sql("SELECT stream.put_record('np', 'k', 'latest', '0')");
is(sql("SELECT string_agg(convert_from(r.data, 'UTF8'), ',') FROM stream.get_records('$it') g, unnest(g.records) r"),
	'latest', 'a LATEST iterator reads the record put after it');
is( sql(  'SELECT bool_and(s > lag) FROM (SELECT sequence_number s, lag(sequence_number) OVER (ORDER BY sequence_number) '
	  . "FROM stream.read_shard('np','shardId-000000000000')) x WHERE lag IS NOT NULL"),
	't', 'sequence numbers increase');

# maintenance is a plain function (what pg_cron would run)
is(sql('SELECT count(*) FROM stream.run_maintenance()'), 1, 'run_maintenance() returns a row');

# subscribe_to_shard falls back to polling and still returns promptly
sql("SELECT stream.register_stream_consumer('np', 'c')");
is( sql(  "SELECT cardinality(records) FROM stream.subscribe_to_shard('np', 'c', 'shardId-000000000000', "
	  . "'TRIM_HORIZON', wait_timeout => '1 second')"),
	6, 'subscribe_to_shard works without the worker: 6 records');

# no worker and the premade chunks ran out: a producer makes its chunk itself,
# while a reader idles in a transaction on the stream table (issue 7, defect 5)
my $sid = sql("SELECT stream_id FROM stream.streams WHERE stream_name = 'np'");
my $k   = sql('SELECT floor(extract(epoch FROM clock_timestamp()) / 3600)::bigint');
my $drop_chunks = 'SET client_min_messages = warning; DROP TABLE IF EXISTS '
  . join(', ', map { "stream_data.s${sid}_" . ($k + $_) } 0 .. 2);
sql($drop_chunks);
my $reader = background(<<SQL);
BEGIN;
SELECT count(*) FROM stream_data.s$sid;
SELECT pg_sleep(3);
COMMIT;
SQL
sleep 0.5;
is(sql_status("SELECT stream.put_record('np', 'k', 'own-chunk', '0')"), 0, 'a put with no premade chunk succeeds');
is( sql(  "SELECT count(*) FROM stream.put_records('np', ARRAY['x','y'], ARRAY['1','2']::bytea[]) "
	  . 'WHERE error_code IS NULL'),
	2, 'put_records with no premade chunk succeeds');
psql_finish($reader);
is( sql(  "SELECT string_agg(convert_from(data, 'UTF8'), ',') FROM stream.read_shard('np', 'shardId-000000000000') "
	  . "WHERE partition_key = 'k'"),
	'own-chunk', 'a producer makes its missing chunk itself, next to an idle reader');

# the chunk is made in a transaction of its own (a one-shot chunk maker): a producer
# on another shard does not wait for the open transaction of the one that found it missing
sql($drop_chunks);
my $p1 = hold_shard0('p1', 4);
sleep 1;
$start = time;
is(sql_status("SELECT stream.put_record('np', 'k', 'p2', '170141183460469231731687303715884105728')"),
	0, 'a put on shard 1 succeeds');
$waited = time - $start;
psql_finish($p1);
ok($waited < 2.0,
	sprintf('the missing chunk is made outside the producer\'s transaction: a producer on another shard waited %.2fs', $waited));

# a producer holding a lock on the stream table that the chunk maker would wait for makes the chunk itself
sql($drop_chunks);
my $timed_out = 0;
my $ret = sql_status(<<SQL, timeout => 20, timed_out => \$timed_out);
BEGIN;
LOCK TABLE ONLY stream_data.s$sid IN SHARE UPDATE EXCLUSIVE MODE;
SELECT stream.put_record('np', 'k', 'locked', '0');
COMMIT;
SQL
ok(!$timed_out && $ret == 0, "a put holding the stream table's SHARE UPDATE EXCLUSIVE lock succeeds within 20 s");
is( sql(  "SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) "
	  . "FROM stream.read_shard('np', 'shardId-000000000000') WHERE partition_key = 'k'"),
	'locked', "... and makes the chunk in its own transaction (the chunk holding p1 was dropped): shard 0 reads 'locked'");

# resharding without shared memory: a split waits for the producer in flight on its
# parent (its record stays below the parent's end); a session whose catalog cache
# predates the split puts to a child; the parent's read ends with the children
sql("SELECT stream.create_stream('nps', 1)");
my $conn = '-X -qAt -h ' . $node->host . ' -p ' . $node->port . " -d $DB";
my $around = sql(<<SQL);
SELECT shard_id FROM stream.put_record('nps', 'k', 'before', '1');
\\! (psql $conn -c "BEGIN; SELECT stream.put_record('nps', 'k', 'in-flight', '0'); SELECT pg_sleep(2); COMMIT;" >/dev/null 2>&1 &) ; sleep 0.5
\\! psql $conn -v ON_ERROR_STOP=1 -c "SELECT stream.split_shard('nps', 'shardId-000000000000', '170141183460469231731687303715884105728')" >/dev/null
SELECT shard_id FROM stream.put_record('nps', 'k', 'after', '1');
SQL
is($around, "shardId-000000000000\nshardId-000000000001", 'puts of one session before and after a split: parent, then child');
is(sql("SELECT string_agg(convert_from(data, 'UTF8'), ',' ORDER BY sequence_number) FROM stream.read_shard('nps', 'shardId-000000000000')"),
	'before,in-flight', 'the split waited for the producer in flight on its parent: its record is in the parent');
is( sql(  'SELECT next_shard_iterator IS NULL, jsonb_array_length(child_shards) FROM stream.get_records('
	  . "stream.get_shard_iterator('nps', 'shardId-000000000000', 'LATEST'))"),
	't|2', "the closed parent's read ends with its two children");
my $nps = sql("SELECT stream_id FROM stream.streams WHERE stream_name = 'nps'");
is( sql(  "SELECT count(*) FROM stream_data.s$nps d JOIN stream.shards sh ON sh.stream_id = $nps "
	  . 'AND sh.shard_index = d.shard_id WHERE d.seq > sh.ending_seq'),
	0, "no record lies past its shard's end");

$node->stop;
done_testing();
