# The consumer runtime exactly once into tables across seeded random crashes
# (SIGKILL of the postmaster or of a backend, immediate stops) of a
# throw-away node.  The body is test/t/processor_crash_table.py (formerly
# test/scripts/68_processor_crash_table.py, which crashed the checkout's
# cluster); its header says what it checks and why it stays in Python.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('processor_crash', 'test/t/processor_crash_table.py',
	'table delivery across crashes: every committed record a row or an error row exactly once');
