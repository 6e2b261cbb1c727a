/*
 * stream.c: module initialisation, settings and shared memory hooks.
 */
#include "stream.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "sandbox.h"
#include "worker.h"

PG_MODULE_MAGIC;

int			stream_iterator_lifetime_ms = 300000;
int			stream_chunk_premake = 4;
int			stream_max_shards = 8192;
int			stream_max_shards_per_xact = 1024;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
stream_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(seqalloc_shmem_size(), stream_worker_shmem_size()));
	RequestNamedLWLockTranche("stream", 1);
}

static void
stream_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	seqalloc_shmem_init();
	stream_worker_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	DefineCustomIntVariable("stream.iterator_lifetime",
							"How long a shard iterator stays valid.",
							"Kinesis uses 300 seconds; lower it only to test expiry.",
							&stream_iterator_lifetime_ms,
							300000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.chunk_premake",
							"How many chunks ahead of the current one maintenance keeps ready.",
							NULL,
							&stream_chunk_premake,
							4, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	/* PGC_POSTMASTER settings may only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("stream.max_shards",
							"Most shards whose sequence counters live in shared memory at once.",
							NULL,
							&stream_max_shards,
							8192, 16, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.max_shards_per_transaction",
							"Most shards one transaction may have puts in flight on.",
							"Bounds each transaction's share of the shared in-flight pool.",
							&stream_max_shards_per_xact,
							1024, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.owner_code_timeout",
							"Time owner code may run in the stream worker per delivery batch and phase.",
							"The transform calls, the record conversions and the table inserts of one batch each share it; 0 turns the limit off.",
							&stream_owner_code_timeout_ms,
							30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	stream_worker_define_gucs();
	MarkGUCPrefixReserved("stream");

	seqalloc_init();
	stream_catalog_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stream_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stream_shmem_startup;
	stream_worker_register_launcher();
}
