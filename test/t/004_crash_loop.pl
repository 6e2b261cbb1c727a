# Crash loop: no sequence number is reused, no reader skips, delivery is
# exactly once, across 12 crashes (SIGKILL of the postmaster or of a backend,
# immediate stops) of a throw-away node.  The body is test/t/crash_loop.py
# (formerly test/scripts/22_crash_loop.py, which crashed the checkout's
# cluster); its header says what it checks and why it stays in Python.
#   STREAM_CRASH_ROUNDS=40 make prove_installcheck PROVE_TESTS=test/t/004_crash_loop.pl
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('crash_loop', 'test/t/crash_loop.py',
	'crash loop: every committed record read once by readers holding iterators, delivered once');
