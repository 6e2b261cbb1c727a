# The consumer runtime exactly once when the server dies at chosen points
# inside a unit (transform, file list, publish, checkpoint, random), by
# postmaster, worker and backend SIGKILL and immediate shutdown, on a
# throw-away node.  The body is test/t/processor_crash_points.py (formerly
# test/scripts/69_processor_crash_points.py); its header says what it checks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('processor_crash_points', 'test/t/processor_crash_points.py',
	'units stopped at chosen points and killed: every record delivered exactly once');
