# Crash loop around splits and merges: no record lands outside its shard's
# sequence range (none after a closed parent's end), the open shards
# partition the hash key space, committed records stay and per key a
# parent's records precede its children's, across 10 crashes (SIGKILL of the
# postmaster or of a backend, immediate stops; some with the resharding
# transaction open) of a throw-away node.  The body is
# test/t/resharding_crash.py; its header says what it checks.
#   STREAM_CRASH_ROUNDS=40 make prove_installcheck PROVE_TESTS=test/t/008_resharding_crash.pl
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('resharding_crash', 'test/t/resharding_crash.py',
	'resharding crash loop: nothing after a parent\'s end, committed records kept, per-key order across lineage');
