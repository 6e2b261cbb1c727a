# stream: PostgreSQL extension (PGXS)
MODULE_big = stream
# The data path of Kinesis Data Streams (src/streams/), in the order it is
# read: a put routes, numbers and inserts; a read starts at an iterator,
# takes the readable window, scans chunks and builds its output.
OBJS = \
	src/module.o \
	src/settings.o \
	src/kinesis.o \
	src/raise.o \
	src/md5.o \
	src/locktag.o \
	src/safe_path.o \
	src/subxact.o \
	src/runtime/sandbox.o \
	src/caller.o \
	src/streams/stream_catalog.o \
	src/streams/shard.o \
	src/streams/access.o \
	src/streams/put.o \
	src/streams/routing.o \
	src/streams/seqno.o \
	src/streams/seqalloc.o \
	src/streams/seqmark.o \
	src/streams/chunk.o \
	src/streams/chunk_insert.o \
	src/streams/iterator.o \
	src/streams/read.o \
	src/streams/read_window.o \
	src/streams/retention.o \
	src/streams/chunk_scan.o \
	src/streams/record_out.o \
	src/streams/subscription.o \
	src/streams/fanout.o \
	src/streams/meter.o \
	src/streams/metrics_sql.o \
	src/streams/consumer_position.o \
	src/streams/lag.o \
	src/streams/json.o \
	src/streams/kpl.o \
	src/streams/deaggregate.o \
	src/streams/user_records.o \
	src/streams/aggregate.o \
	src/streams/next_token.o \
	src/bgw/worker_slots.o \
	src/bgw/unit.o \
	src/bgw/chunk_maker.o \
	src/bgw/metrics_flush.o \
	src/bgw/autoscale.o \
	src/bgw/launcher.o \
	src/bgw/db_worker.o \
	src/codec.o \
	src/parquet/thrift.o \
	src/parquet/parquet_schema.o \
	src/parquet/parquet_values.o \
	src/parquet/parquet_encoding.o \
	src/parquet/parquet_stats.o \
	src/parquet/parquet_writer.o \
	src/parquet/write_parquet.o \
	src/runtime/kind.o \
	src/runtime/json_decode.o \
	src/runtime/window.o \
	src/runtime/checkpoint.o \
	src/runtime/round.o \
	src/delivery/delivery_catalog.o \
	src/delivery/delivery_put.o \
	src/delivery/delivery_buffer.o \
	src/delivery/delivery_batch.o \
	src/delivery/delivery_round.o \
	src/analytics/cq_analyze.o \
	src/analytics/cq_unit.o \
	src/delivery/delivery_flush.o \
	src/delivery/delivery_convert.o \
	src/delivery/delivery_transform.o \
	src/delivery/delivery_partition.o \
	src/delivery/delivery_prefix.o \
	src/delivery/json_decode_check.o \
	src/delivery/delivery_rowmap.o \
	src/delivery/delivery_output.o \
	src/delivery/delivery_files.o \
	src/delivery/delivery_publish.o \
	src/delivery/destdir.o \
	src/delivery/delivery_table.o \
	src/esm/esm_kind.o

EXTENSION = stream
# The install script is assembled from one file per concern, in name order.
DATA_built = stream--0.1.sql
EXTRA_CLEAN = stream--0.1.sql
PGFILEDESC = "stream - Kinesis-style data streams"

# pg_regress: every sql/*.sql (one file per concept), in name order
REGRESS = $(sort $(basename $(notdir $(wildcard $(srcdir)/sql/*.sql))))
CONTRIB_TESTDB = stream_regression

# isolation tester: every specs/*.spec (concurrency invariants), expected/*.out
ISOLATION = $(sort $(basename $(notdir $(wildcard $(srcdir)/specs/*.spec))))

# `make installcheck` needs no running server: each runner starts a
# throw-away instance of the installed PostgreSQL (pg_config's bindir) with
# test/stream.conf, on a socket directory of its own under /tmp and no TCP,
# so checkouts running at once do not collide (pg_cron does the same).
# initdb refuses root: scripts/test.sh runs it as OS user postgres.
# STREAM_TEMP_INSTANCE=0: against the server libpq points at instead
# (test/valgrind.sh runs the private cluster under valgrind).
ifneq ($(STREAM_TEMP_INSTANCE),0)
REGRESS_OPTS = --temp-config=$(srcdir)/test/stream.conf --temp-instance=tmp_check
ISOLATION_OPTS = --temp-config=$(srcdir)/test/stream.conf --temp-instance=tmp_check_iso
endif
# The expected output holds multibyte text (partition keys of 256 characters,
# aligned columns): the instance's initdb and psql run in a UTF-8 locale and
# the databases are UTF8 whatever the caller's environment (CI's is empty).
REGRESS_OPTS += --encoding=UTF8
ISOLATION_OPTS += --encoding=UTF8
installcheck: export LC_ALL = C.UTF-8
installcheck: export PGCLIENTENCODING = UTF8

PG_CPPFLAGS += -I$(srcdir)/src
SHLIB_LINK += -lzstd -lsnappy -lz
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# make STREAM_WERROR=1: every warning is an error (CI builds so, see scripts/setup.sh)
ifeq ($(STREAM_WERROR),1)
PG_CFLAGS += -Werror
endif
# make STREAM_VALGRIND=1: valgrind client requests (utils/memdebug.h) in our
# code, e.g. reused buffers count as uninitialised at each use (test/valgrind.sh)
ifeq ($(STREAM_VALGRIND),1)
PG_CPPFLAGS += -DUSE_VALGRIND
endif

PG_CONFIG ?= $(shell test -x /usr/lib/postgresql/15/bin/pg_config && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
ISOLATION_TESTDB = stream_isolation

# PGXS tracks no header dependencies: rebuild every object when a header changes
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h)

stream--0.1.sql: $(sort $(wildcard $(srcdir)/src/sql/*.sql))
	cat $^ > $@

# TAP tests: test/t/*.pl, each on throw-away nodes of PostgreSQL::Test::Cluster
# (test/lib/StreamNode.pm).  make prove_installcheck [PROVE_TESTS=test/t/001_crash_restart.pl]
# A target of its own, not PGXS's TAP_TESTS = 1, which would run them inside
# `make installcheck` too.  TESTDIR (logs, data directories) is the directory
# make runs in: scripts/test.sh runs `make -C <dir> -f <checkout>/Makefile`.
PROVE_TESTS ?= test/t/*.pl
prove_installcheck:
	$(prove_installcheck)
.PHONY: prove_installcheck
EXTRA_CLEAN += tmp_check
