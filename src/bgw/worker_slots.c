/*-------------------------------------------------------------------------
 *
 * bgw/worker_slots.c
 *	  Per-database slots in shared memory, where the launcher, a database's
 *	  worker and the database's backends meet.
 *
 * A slot exists for each database that has a worker or a pending wake-up.
 * Slots are created by the launcher (when it starts a worker) or by a
 * wake-up (stream_internal._wake_worker(), after CREATE EXTENSION), and
 * freed only by the launcher.  Each launch gets a new generation number:
 * a worker claims the slot only for its own generation, so a launch left
 * over from a launcher that has restarted since finds no slot and exits.
 *
 * A slot carries, besides the bookkeeping of its launch, the two ways a
 * backend asks the worker for something (bgw/worker.h): a wake-up (run a
 * maintenance round now) and requests with tickets.
 *
 * Rules a reader must keep:
 *	- All of the shared state is protected by one LWLock (tranche
 *	  "stream_worker"), and this file is the only one that takes it.
 *	- Nothing that can raise an error (palloc, ereport) runs while the lock
 *	  is held: the exit callbacks below take it too.  What must be
 *	  allocated is allocated before the lock is taken.
 *	- Latches are set after the lock is released.
 *	- A worker changes only its own slot, and only while its generation is
 *	  the slot's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "bgw/worker_int.h"

#define WORKER_TRANCHE_NAME		"stream_worker"

typedef struct StreamDbSlot
{
	Oid			dboid;			/* InvalidOid: slot unused */
	uint32		generation;		/* launch the slot is reserved for */
	bool		launched;		/* the launcher runs a worker for it */
	bool		wake_requested; /* run maintenance / start a worker now */
	bool		ext_checked;	/* worker finished its extension check */
	bool		db_busy;		/* worker left for a DROP/RENAME/... */
	TimestampTz ext_missing_at; /* worker found no extension (0: no) */
	pid_t		worker_pid;		/* attached worker, 0 if none */
	Latch	   *worker_latch;
	/* requests (stream_worker_post_request) */
	uint32		request_ticket; /* last ticket handed out */
	uint32		done_ticket;	/* every ticket up to this one is done */
	bool		request_all;	/* more keys than fit: all keys */
	int			nkeys;
	int32		keys[WORKER_REQUEST_KEYS_MAX];
} StreamDbSlot;

typedef struct StreamWorkerShmemData
{
	LWLock	   *lock;			/* protects everything below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	uint32		next_generation;
	bool		wake_all;		/* a wake-up found no free slot */
	int			nslots;
	StreamDbSlot slots[FLEXIBLE_ARRAY_MEMBER];
} StreamWorkerShmemData;

static StreamWorkerShmemData *StreamWorkerShmem = NULL;

/* the slot this process (a database worker) claimed */
static Oid	my_dboid = InvalidOid;
static uint32 my_generation = 0;

/* backend state for stream_internal._wake_worker() */
static bool wake_callback_registered = false;
static bool wake_pending = false;

PG_FUNCTION_INFO_V1(stream_wake_worker);

/* ----------------------------------------------------------------------
 * Shared memory
 * ----------------------------------------------------------------------
 */

static Size
slots_shmem_size(void)
{
	Size		size;

	size = offsetof(StreamWorkerShmemData, slots);
	size = add_size(size, mul_size(sizeof(StreamDbSlot),
								   (Size) stream_max_databases));
	return MAXALIGN(size);
}

void
stream_worker_shmem_request(void)
{
	RequestAddinShmemSpace(slots_shmem_size());
	RequestNamedLWLockTranche(WORKER_TRANCHE_NAME, 1);
}

void
stream_worker_shmem_init(void)
{
	bool		found;

	StreamWorkerShmem = (StreamWorkerShmemData *)
		ShmemInitStruct("stream worker state", slots_shmem_size(), &found);
	if (!found)
	{
		memset(StreamWorkerShmem, 0, slots_shmem_size());
		StreamWorkerShmem->lock = &(GetNamedLWLockTranche(WORKER_TRANCHE_NAME))->lock;
		StreamWorkerShmem->nslots = stream_max_databases;
	}
}

bool
slots_initialized(void)
{
	return StreamWorkerShmem != NULL;
}

int
slots_capacity(void)
{
	return StreamWorkerShmem->nslots;
}

static bool
worker_available(void)
{
	return StreamWorkerShmem != NULL && stream_worker_enabled;
}

/* ----------------------------------------------------------------------
 * Slot helpers; callers hold the lock
 * ----------------------------------------------------------------------
 */

static StreamDbSlot *
slot_find(Oid dboid)
{
	int			i;

	for (i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		if (StreamWorkerShmem->slots[i].dboid == dboid)
			return &StreamWorkerShmem->slots[i];
	}
	return NULL;
}

static void
slot_clear(StreamDbSlot *slot)
{
	memset(slot, 0, sizeof(StreamDbSlot));
	slot->dboid = InvalidOid;
}

/* existing slot of dboid, else a fresh one, else NULL */
static StreamDbSlot *
slot_find_or_create(Oid dboid)
{
	StreamDbSlot *slot = slot_find(dboid);

	if (slot == NULL)
	{
		slot = slot_find(InvalidOid);
		if (slot != NULL)
		{
			slot_clear(slot);
			slot->dboid = dboid;
		}
	}
	return slot;
}

/* a launch is over: free the slot, but keep a pending wake-up in it */
static void
slot_recycle(StreamDbSlot *slot)
{
	Oid			dboid = slot->dboid;
	bool		wake = slot->wake_requested;

	slot_clear(slot);
	if (wake)
	{
		slot->dboid = dboid;
		slot->wake_requested = true;
	}
}

/* release the lock, then set the launcher's latch (read under the lock) */
static void
release_and_wake_launcher(void)
{
	Latch	   *launcher_latch = StreamWorkerShmem->launcher_latch;

	LWLockRelease(StreamWorkerShmem->lock);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* the slot of this process's database worker, if it still holds our launch */
static StreamDbSlot *
my_slot(void)
{
	StreamDbSlot *slot = slot_find(my_dboid);

	if (slot != NULL && slot->generation == my_generation)
		return slot;
	return NULL;
}

/* ----------------------------------------------------------------------
 * Backends: wake-ups and requests (bgw/worker.h)
 * ----------------------------------------------------------------------
 */

static void
post_wake_request(Oid dboid)
{
	StreamDbSlot *slot;
	Latch	   *worker_latch = NULL;
	Latch	   *launcher_latch;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find_or_create(dboid);
	if (slot != NULL)
	{
		slot->wake_requested = true;
		/* a request overrides the "extension missing" back-off */
		slot->ext_missing_at = 0;
		worker_latch = slot->worker_latch;
	}
	else
		StreamWorkerShmem->wake_all = true;
	launcher_latch = StreamWorkerShmem->launcher_latch;
	LWLockRelease(StreamWorkerShmem->lock);

	if (worker_latch != NULL)
		SetLatch(worker_latch);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/*
 * The request is posted at commit: when called from the transaction that
 * runs CREATE EXTENSION, a worker started earlier would not yet see the
 * extension and would put the database on the five-minute back-off.
 */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_pending)
			{
				wake_pending = false;
				if (StreamWorkerShmem != NULL)
					post_wake_request(MyDatabaseId);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* stream_internal._wake_worker() RETURNS bool */
Datum
stream_wake_worker(PG_FUNCTION_ARGS)
{
	if (!worker_available())
		PG_RETURN_BOOL(false);

	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;

	PG_RETURN_BOOL(true);
}

/* a request for key in slot; its ticket in *ticket */
static void
slot_add_request(StreamDbSlot *slot, int32 key, uint32 *ticket)
{
	bool		listed = false;

	for (int i = 0; i < slot->nkeys; i++)
		if (slot->keys[i] == key)
			listed = true;
	if (!listed)
	{
		if (slot->nkeys < lengthof(slot->keys))
			slot->keys[slot->nkeys++] = key;
		else
			slot->request_all = true;
	}
	/* 0 is never a ticket */
	if (++slot->request_ticket == 0)
		slot->request_ticket = 1;
	*ticket = slot->request_ticket;
}

/*
 * Tell the worker attached to this backend's database: a wake-up (key
 * NULL) or a request for *key; then set its latch.  False when no worker
 * is attached here.
 */
static bool
notify_worker(const int32 *key, uint32 *ticket)
{
	StreamDbSlot *slot;
	Latch	   *latch = NULL;

	if (!worker_available())
		return false;
	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(MyDatabaseId);
	if (slot != NULL && slot->launched && slot->worker_pid != 0)
	{
		if (key == NULL)
			slot->wake_requested = true;
		else
			slot_add_request(slot, *key, ticket);
		latch = slot->worker_latch;
	}
	LWLockRelease(StreamWorkerShmem->lock);
	if (latch == NULL)
		return false;
	SetLatch(latch);
	return true;
}

bool
stream_worker_wake_now(void)
{
	return notify_worker(NULL, NULL);
}

bool
stream_worker_post_request(int32 key, uint32 *ticket)
{
	return notify_worker(&key, ticket);
}

bool
stream_worker_request_done(uint32 ticket, bool *worker_gone)
{
	StreamDbSlot *slot;
	bool		done = false;

	*worker_gone = false;
	LWLockAcquire(StreamWorkerShmem->lock, LW_SHARED);
	slot = slot_find(MyDatabaseId);
	if (slot == NULL || slot->worker_pid == 0)
		*worker_gone = true;
	else
		done = (int32) (slot->done_ticket - ticket) >= 0;
	LWLockRelease(StreamWorkerShmem->lock);
	return done;
}

/* ----------------------------------------------------------------------
 * A database worker, about its own slot
 * ----------------------------------------------------------------------
 */

/* before_shmem_exit callback */
static void
detach_worker(int code, Datum arg)
{
	StreamDbSlot *slot;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL && slot->worker_pid == MyProcPid)
	{
		slot->worker_pid = 0;
		slot->worker_latch = NULL;
	}
	/* a launcher that adopted us gets no postmaster notification */
	release_and_wake_launcher();
}

/* claim the slot the launcher reserved for this launch; false: stale launch */
bool
slots_attach_worker(Oid dboid, uint32 generation)
{
	StreamDbSlot *slot;
	bool		ok = false;

	my_dboid = dboid;
	my_generation = generation;
	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL && slot->launched && slot->worker_pid == 0)
	{
		slot->worker_pid = MyProcPid;
		slot->worker_latch = MyLatch;
		/* the first round runs at once anyway */
		slot->wake_requested = false;
		ok = true;
	}
	LWLockRelease(StreamWorkerShmem->lock);
	if (ok)
		before_shmem_exit(detach_worker, (Datum) 0);
	return ok;
}

void
slots_report(WorkerReport report)
{
	StreamDbSlot *slot;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL)
	{
		slot->ext_checked = true;
		if (report == REPORT_EXTENSION_MISSING)
			slot->ext_missing_at = now;
		else if (report == REPORT_DATABASE_BUSY)
			slot->db_busy = true;
	}
	/* lets the launcher start the next pending worker */
	release_and_wake_launcher();
}

/* true, and the flag cleared, when a wake-up was requested */
bool
slots_take_wake(void)
{
	StreamDbSlot *slot;
	bool		wake = false;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL && slot->wake_requested)
	{
		slot->wake_requested = false;
		wake = true;
	}
	LWLockRelease(StreamWorkerShmem->lock);
	return wake;
}

/* the pending requests, which the slot forgets; their tickets stay open */
void
slots_take_requests(WorkerRequests *req)
{
	StreamDbSlot *slot;

	req->ticket = 0;
	req->all = false;
	req->nkeys = 0;
	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL)
	{
		memcpy(req->keys, slot->keys, sizeof(int32) * slot->nkeys);
		req->nkeys = slot->nkeys;
		req->all = slot->request_all;
		slot->nkeys = 0;
		slot->request_all = false;
		req->ticket = slot->request_ticket;
	}
	LWLockRelease(StreamWorkerShmem->lock);
}

bool
slots_requests_pending(void)
{
	StreamDbSlot *slot;
	bool		pending = false;

	LWLockAcquire(StreamWorkerShmem->lock, LW_SHARED);
	slot = my_slot();
	if (slot != NULL)
		pending = slot->nkeys > 0 || slot->request_all;
	LWLockRelease(StreamWorkerShmem->lock);
	return pending;
}

void
slots_report_done(uint32 done_ticket)
{
	StreamDbSlot *slot;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = my_slot();
	if (slot != NULL)
		slot->done_ticket = done_ticket;
	LWLockRelease(StreamWorkerShmem->lock);
}

/* ----------------------------------------------------------------------
 * The launcher
 * ----------------------------------------------------------------------
 */

/* before_shmem_exit callback */
static void
detach_launcher(int code, Datum arg)
{
	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	if (StreamWorkerShmem->launcher_pid == MyProcPid)
	{
		StreamWorkerShmem->launcher_pid = 0;
		StreamWorkerShmem->launcher_latch = NULL;
	}
	LWLockRelease(StreamWorkerShmem->lock);
}

/*
 * Announce the launcher.  Slots whose worker still runs (left by a previous
 * launcher) are kept and their databases returned in *adopted (palloc'd);
 * every other launch is invalidated: its slot is recycled, so a worker of
 * it that has not attached yet finds no matching generation and exits.
 */
int
slots_attach_launcher(Oid **adopted)
{
	int			nadopted = 0;

	*adopted = palloc(sizeof(Oid) * StreamWorkerShmem->nslots);

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	StreamWorkerShmem->launcher_pid = MyProcPid;
	StreamWorkerShmem->launcher_latch = MyLatch;
	for (int i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		if (!OidIsValid(slot->dboid))
			continue;
		if (slot->launched && slot->worker_pid != 0)
			(*adopted)[nadopted++] = slot->dboid;
		else
			slot_recycle(slot);
	}
	LWLockRelease(StreamWorkerShmem->lock);
	before_shmem_exit(detach_launcher, (Datum) 0);
	return nadopted;
}

/*
 * Has the worker of dboid stopped?  stopped: the postmaster says so (a
 * worker the launcher registered); else (an adopted worker) the slot tells.
 * When it has, the slot is recycled and *missing_at / *busy say why it left.
 */
bool
slots_reap(Oid dboid, bool stopped, TimestampTz *missing_at, bool *busy)
{
	StreamDbSlot *slot;

	*missing_at = 0;
	*busy = false;
	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(dboid);
	stopped = stopped || slot == NULL || slot->worker_pid == 0;
	if (stopped && slot != NULL)
	{
		*missing_at = slot->ext_missing_at;
		*busy = slot->db_busy;
		/* a pending wake-up stays for slots_collect_wakes */
		slot_recycle(slot);
	}
	LWLockRelease(StreamWorkerShmem->lock);
	return stopped;
}

/*
 * Take the wake-ups of databases that have no launched worker (a launched
 * worker takes its own): their databases in *woken (palloc'd), and
 * *wake_all when a wake-up found no free slot.
 */
int
slots_collect_wakes(Oid **woken, bool *wake_all)
{
	int			nwoken = 0;

	*woken = palloc(sizeof(Oid) * StreamWorkerShmem->nslots);

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	*wake_all = StreamWorkerShmem->wake_all;
	StreamWorkerShmem->wake_all = false;
	for (int i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		if (!OidIsValid(slot->dboid) || slot->launched ||
			!slot->wake_requested)
			continue;
		(*woken)[nwoken++] = slot->dboid;
		slot_clear(slot);
	}
	LWLockRelease(StreamWorkerShmem->lock);
	return nwoken;
}

/* reserve a slot for a new launch; its generation, or 0 when all are taken */
uint32
slots_reserve_launch(Oid dboid)
{
	StreamDbSlot *slot;
	uint32		generation = 0;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find_or_create(dboid);
	if (slot != NULL)
	{
		bool		wake = slot->wake_requested;

		do
			generation = ++StreamWorkerShmem->next_generation;
		while (generation == 0);

		slot_clear(slot);
		slot->dboid = dboid;
		slot->generation = generation;
		slot->launched = true;
		slot->wake_requested = wake;
	}
	LWLockRelease(StreamWorkerShmem->lock);
	return generation;
}

/* the launch could not be registered: give its slot back */
void
slots_cancel_launch(Oid dboid, uint32 generation)
{
	StreamDbSlot *slot;

	LWLockAcquire(StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(dboid);
	if (slot != NULL && slot->generation == generation)
		slot_recycle(slot);
	LWLockRelease(StreamWorkerShmem->lock);
}

/* launched workers that have not yet reported on the extension */
int
slots_count_starting(void)
{
	int			nstarting = 0;

	LWLockAcquire(StreamWorkerShmem->lock, LW_SHARED);
	for (int i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		if (OidIsValid(slot->dboid) && slot->launched && !slot->ext_checked)
			nstarting++;
	}
	LWLockRelease(StreamWorkerShmem->lock);
	return nstarting;
}
