# Throw-away PostgreSQL nodes for the TAP tests in test/t/.
#
# Each test makes its own nodes with PostgreSQL::Test::Cluster: the data
# directory lies under $TESTDIR/tmp_check (one per test run), the unix socket
# in a fresh directory under /tmp, there is no TCP listener and the Cluster
# module picks the port.  So a test may SIGKILL, restart and stop its nodes
# at will: neither the checkout's cluster (scripts/cluster.sh, .pgdata) nor
# the tests of another checkout running at the same time can be hit.
#
# Rules a test keeps:
#   * Binaries are the ones first in PATH (make prove_installcheck puts
#     $(pg_config --bindir) there).  With PG_BIN set (scripts/env.sh, from
#     STREAM_PG_BIN) they must be the same, or the test bails out.
#   * A node gets the settings of the checkout's cluster (`scripts/cluster.sh
#     config`, so the two cannot drift apart; they also turn fsync and
#     restart_after_crash on again, which the Cluster module turns off),
#     shared_preload_libraries being 'stream,pg_cron' unless the test asks
#     otherwise.  The superuser role is
#     postgres, as there; PGUSER is set so.
#   * The connection variables of the checkout's cluster (PGDATA, PGHOST,
#     STREAM_PGDATA, ...) are removed from the environment when this module
#     is loaded: whatever a test runs reaches its own nodes or nothing.
package StreamNode;

use strict;
use warnings;

use Cwd qw(realpath);
use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw($ROOT $BINDIR stream_node start_node wait_ready psql_background
  psql_finish same_lines run_python python_on_node);

# the checkout: this file is test/lib/StreamNode.pm
our $ROOT = realpath(dirname(__FILE__) . '/../..');

delete @ENV{
	qw(PGDATA PGHOST PGHOSTADDR PGPORT PGDATABASE PGOPTIONS PGSERVICE STREAM_DSN
	  STREAM_PGDATA STREAM_PGSOCK STREAM_PGPORT STREAM_PGLOG STREAM_PRELOAD)
};
$ENV{PGUSER} = 'postgres';

our $BINDIR = `pg_config --bindir`;
BAIL_OUT('pg_config not found in PATH') if $? != 0;
chomp $BINDIR;
if ($ENV{PG_BIN} && realpath($ENV{PG_BIN}) ne realpath($BINDIR))
{
	BAIL_OUT("PATH leads to the binaries of $BINDIR, but PG_BIN is $ENV{PG_BIN}");
}

# A node initialised (not started) with the settings of scripts/cluster.sh.
#   preload => 'stream,pg_cron' (default) or e.g. '' for none
#   conf    => more postgresql.conf lines, appended last
sub stream_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	# as scripts/cluster.sh: superuser postgres, UTF-8
	$node->init(extra => [ '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8' ]);
	my $conf;
	{
		local $ENV{STREAM_PGDATA}  = $node->data_dir;
		local $ENV{STREAM_PGSOCK}  = $node->host;
		local $ENV{STREAM_PGPORT}  = $node->port;
		local $ENV{STREAM_PRELOAD} = $opt{preload} // 'stream,pg_cron';
		$conf = `bash '$ROOT/scripts/cluster.sh' config`;
		BAIL_OUT('scripts/cluster.sh config failed') if $? != 0 || $conf eq '';
	}
	$node->append_conf('postgresql.conf',
		"# scripts/cluster.sh config\n$conf" . ($opt{conf} // ''));
	return $node;
}

# Start a stopped or killed node.  After a SIGKILL of the postmaster a child
# that has not yet left may hold the old shared memory for a moment: retry, as
# scripts/cluster.sh does.
sub start_node
{
	my ($node) = @_;
	for my $attempt (1 .. 15)
	{
		return 1 if $node->start(fail_ok => 1);
		note "start attempt $attempt of node " . $node->name . ' failed; retrying';
		sleep 2;
	}
	BAIL_OUT('could not start node ' . $node->name);
}

# True once the node accepts connections (e.g. after its crash recovery),
# false after $seconds.
sub wait_ready
{
	my ($node, $seconds) = @_;
	for (1 .. 2 * $seconds)
	{
		return 1
		  if system('pg_isready', '-q', '-h', $node->host, '-p', $node->port,
			'-U', 'postgres', '-d', 'postgres') == 0;
		usleep(500_000);
	}
	return 0;
}

# psql running the script in the file $sqlfile in the background, as the
# shell's `psql -f file >log 2>&1 &` (output into $logfile), under
# `timeout $seconds`.  No I/O goes through this process, so nothing needs to
# be pumped; psql_finish waits for it.
sub psql_background
{
	my ($node, $db, $sqlfile, $logfile, %opt) = @_;
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port);
	return IPC::Run::start(
		[
			'timeout', $opt{timeout} // 150,
			'psql', '-X', '-q', '-At', @{ $opt{extra} // [] },
			'-d', $db, '-f', $sqlfile
		],
		'<', '/dev/null', '>', $logfile, '2>&1');
}

# Wait for a psql_background; true if it exited with status 0.
sub psql_finish
{
	my ($h) = @_;
	return eval { $h->finish } ? 1 : 0;
}

# ok() if the two texts are equal; otherwise fail, showing the first lines
# of their diff (< want, > got).
sub same_lines
{
	my ($got, $want, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return 1 if ok($got eq $want, $name);
	my $dir = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$dir/want", $want);
	PostgreSQL::Test::Utils::append_to_file("$dir/got",  $got);
	my $diff = `diff '$dir/want' '$dir/got' | head -n 40`;
	diag("< expected, > actual:\n$diff");
	return 0;
}

# Run a Python test body (path relative to the checkout) against $node: it
# reaches the node only through the environment test/lib/streamtest.py
# reads.  Its output goes into the test's log as it comes; its FAIL lines are
# repeated as diagnostics, its last lines as notes.  ok() if it exits with status 0.
sub run_python
{
	my ($node, $script, $name) = @_;
	local %ENV = (
		%ENV,
		STREAM_TAP_NODE => 1,
		STREAM_PGDATA   => $node->data_dir,
		STREAM_PGSOCK   => $node->host,
		STREAM_PGPORT   => $node->port,
		STREAM_PGLOG    => $node->logfile,
		STREAM_DSN      => 'host=' . $node->host . ' port=' . $node->port . ' user=postgres',
		PGDATA          => $node->data_dir,
		PGHOST          => $node->host,
		PGPORT          => $node->port,
		PG_BIN          => $BINDIR);
	my $out  = '';
	my $echo = sub { print $_[0]; $out .= $_[0]; };
	print "# Running: /usr/bin/python3 $ROOT/$script\n";
	my $ok = IPC::Run::run([ '/usr/bin/python3', "$ROOT/$script" ],
		'<', '/dev/null', '>', $echo, '2>&1');
	my @lines = split /\n/, $out;
	diag($_) for grep { /^FAIL/ } @lines;
	note($_) for @lines[ ($#lines > 2 ? $#lines - 2 : 0) .. $#lines ];    # its summary
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return ok($ok, $name);
}

# The whole of a TAP test whose body is a Python script: a node of its own
# (statements not logged: the bodies put megabytes), the body run against it,
# the node up again afterwards (a body starts it after each crash).
sub python_on_node
{
	my ($name, $script, $what) = @_;
	my $node = stream_node($name, conf => "log_statement = none\n");
	start_node($node);
	run_python($node, $script, $what);
	ok(wait_ready($node, 60), "the node accepts connections after $script");
	$node->stop('fast', fail_ok => 1);
	done_testing();
}

1;
