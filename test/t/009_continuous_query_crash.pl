# Continuous queries exactly once across seeded random crashes (SIGKILL of
# the postmaster or of a backend, immediate stops) of a throw-away node.
# The body is test/t/continuous_query_crash.py; its header says what it
# checks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('cq_crash', 'test/t/continuous_query_crash.py',
	'continuous queries across crashes: every window equal to the reference, none twice');
