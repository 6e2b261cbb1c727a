# stream: PostgreSQL extension (PGXS)
MODULE_big = stream
OBJS = \
	src/module.o \
	src/routing.o \
	src/md5.o \
	src/seqalloc.o \
	src/locktag.o \
	src/sandbox.o \
	src/caller.o \
	src/catalog.o \
	src/storage.o \
	src/put.o \
	src/iterator.o \
	src/fanout.o \
	src/bgw/worker_slots.o \
	src/bgw/unit.o \
	src/bgw/chunk_maker.o \
	src/bgw/launcher.o \
	src/bgw/db_worker.o \
	src/thrift.o \
	src/codec.o \
	src/parquet.o \
	src/delivery.o \
	src/delivery_format.o \
	src/destdir.o \
	src/prefix.o \
	src/json.o \
	src/raise.o

EXTENSION = stream
# The install script is assembled from one file per concern, in name order.
DATA_built = stream--0.1.sql
EXTRA_CLEAN = stream--0.1.sql
PGFILEDESC = "stream - Kinesis-style data streams"

# pg_regress: every sql/*.sql, in name order
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
CONTRIB_TESTDB = stream_regression

# isolation tester: every specs/*.spec (concurrency invariants), expected/*.out
ISOLATION = $(sort $(basename $(notdir $(wildcard specs/*.spec))))

PG_CPPFLAGS = -I$(srcdir)/src
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
