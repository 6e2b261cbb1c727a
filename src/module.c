/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Loading the stream extension's library: its settings (settings.c),
 *	  each subsystem's start-up, the shared memory hooks and the launcher's
 *	  registration.  The top of the include graph: it includes the
 *	  subsystems it starts, and no file includes anything of it.
 *
 * Rules a reader must keep:
 *	- The hooks chain the previous ones.  Shared memory is requested in the
 *	  request hook and initialised in the startup hook with
 *	  AddinShmemInitLock held, each subsystem initialising only what it
 *	  does not find (a restart within the postmaster finds it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "settings.h"
#include "bgw/worker.h"
#include "delivery/delivery.h"
#include "esm/esm.h"
#include "analytics/analytics.h"
#include "streams/chunk_insert.h"
#include "streams/consumer_position.h"
#include "streams/iterator.h"
#include "streams/meter.h"
#include "streams/seqalloc.h"
#include "streams/stream_catalog.h"
#include "streams/subscription.h"

PG_MODULE_MAGIC;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
stream_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(seqalloc_shmem_size());
	RequestAddinShmemSpace(meter_shmem_size());
	RequestAddinShmemSpace(consumer_position_shmem_size());
	RequestAddinShmemSpace(subscription_shmem_size());
	RequestNamedLWLockTranche("stream", 1);
	RequestNamedLWLockTranche("stream meters", 2);
	RequestNamedLWLockTranche("stream subscriptions", 1);
	stream_worker_shmem_request();
}

static void
stream_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	seqalloc_shmem_init();
	meter_shmem_init();
	consumer_position_shmem_init();
	subscription_shmem_init();
	stream_worker_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	settings_define();

	seqalloc_init();
	stream_catalog_init();
	iterator_init();
	chunk_insert_init(stream_worker_wake_now, stream_make_chunk_in_worker);
	delivery_init();			/* processor kinds, before any SQL of the extension */
	esm_init();
	analytics_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stream_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stream_shmem_startup;
	stream_worker_register_launcher();
}
