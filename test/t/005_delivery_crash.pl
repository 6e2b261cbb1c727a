# Delivery streams exactly once across crashes: JSON, Parquet and direct-put
# delivery streams deliver while a throw-away node is SIGKILLed round after
# round; every record is in exactly one file, recovery removes exactly the
# worker's own staging directories.  The body is test/t/delivery_crash.py
# (formerly test/scripts/60_delivery_crash.py, which crashed the checkout's
# cluster); its header says what it checks and why it stays in Python.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use StreamNode;

python_on_node('delivery_crash', 'test/t/delivery_crash.py',
	'delivery across crashes: every record in exactly one delivered file');
