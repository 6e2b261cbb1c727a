/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background workers that keep streams maintained.
 *
 * A static "stream launcher" (connected to shared catalogs only) scans
 * pg_database every stream.launcher_naptime seconds and registers one
 * dynamic "stream worker" per database.  A worker first checks whether the
 * extension exists in its database: if not, it says so in shared memory and
 * exits, and the launcher leaves that database alone for five minutes unless
 * stream_internal._wake_worker() asks for it.  Otherwise the worker maintains every
 * stream (what stream.run_maintenance() does) every
 * stream.maintenance_naptime seconds, each stream in a short transaction of
 * its own.
 *
 * The same worker runs the delivery streams (delivery.c) on a cadence of its
 * own, every stream.delivery_naptime (default 1 s), and at once when
 * stream.flush_delivery_stream() asks through the database's slot: each
 * delivery stream gets one unit of work per round, in short transactions,
 * and no snapshot is held between units.
 *
 * DROP DATABASE, ALTER DATABASE RENAME / SET TABLESPACE and CREATE DATABASE
 * ... TEMPLATE wait at most five seconds for other sessions to leave the
 * database (CountOtherDBBackends() only signals autovacuum workers) and then
 * fail with "database is being accessed by other users".  A worker therefore
 * probes, about once a second, whether such a command holds or waits for a
 * conflicting lock on its database and leaves if so.
 *
 * Shared memory holds one slot per database that has a worker or a pending
 * wake-up; slots are created by the launcher (when it starts a worker) or by
 * stream_internal._wake_worker(), and freed only by the launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker.h"
#include "stream.h"
#include "delivery/delivery.h"

#define STREAM_EXTENSION_NAME	"stream"
#define STREAM_LIBRARY_NAME		"stream"
#define MAINTENANCE_LIST_QUERY	"SELECT stream_id FROM stream.streams ORDER BY stream_id"
#define MAINTENANCE_QUERY		"SELECT * FROM stream_internal._maintain_stream($1)"

/* how long a database without the extension is left alone */
#define EXTENSION_MISSING_RETRY_MS	(5 * 60 * 1000)

/* how often a worker looks for a pending DROP/RENAME of its database */
#define DB_CONFLICT_POLL_MS			1000

/*
 * Workers launched that have not yet reported whether the extension exists.
 * Bounds the burst of short-lived processes when many databases exist, so
 * that parallel query and other extensions keep their worker slots.
 */
#define MAX_STARTING_WORKERS		4

/* GUCs */
int			stream_maintenance_naptime = 60;
bool		stream_worker_enabled = true;
static int	stream_launcher_naptime = 10;
static int	stream_max_databases = 64;

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
	/* flush_delivery_stream() requests (delivery loop) */
	uint32		flush_requested;	/* last ticket handed out */
	uint32		flush_done;		/* last ticket whose flushes are over */
	bool		flush_all;		/* more ids than fit: flush everything */
	int			nflush;
	int32		flush_ids[16];
} StreamDbSlot;

typedef struct StreamWorkerShmemData
{
	LWLock		lock;			/* protects everything below */
	int			tranche_id;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	uint32		next_generation;
	bool		wake_all;		/* a wake-up found no free slot */
	int			nslots;
	StreamDbSlot slots[FLEXIBLE_ARRAY_MEMBER];
} StreamWorkerShmemData;

static StreamWorkerShmemData *StreamWorkerShmem = NULL;

/* launcher-local bookkeeping, one entry per known database */
typedef struct LauncherDb
{
	Oid			dboid;			/* hash key */
	NameData	datname;		/* for messages */
	bool		listed;			/* present in the latest pg_database scan */
	bool		active;			/* a worker is registered or adopted */
	bool		wake;			/* start without waiting for not_before */
	BackgroundWorkerHandle *handle; /* NULL for adopted workers */
	TimestampTz not_before;		/* earliest unsolicited (re)start */
} LauncherDb;

/*
 * Launcher state: warn once when launches start failing, again only after
 * a launcher iteration started everything it wanted to.
 */
static bool register_failure_logged = false;
static bool slots_full_logged = false;

/* worker state */
static Oid	worker_dboid = InvalidOid;
static uint32 worker_generation = 0;
static char *worker_dbname = NULL;

/* backend state for stream_internal._wake_worker() */
static bool wake_callback_registered = false;
static bool wake_pending = false;

PG_FUNCTION_INFO_V1(stream_wake_worker);

/* ----------------------------------------------------------------------
 * GUCs, registration, shared memory
 * ----------------------------------------------------------------------
 */

void
stream_worker_define_gucs(void)
{
	/*
	 * Defining a PGC_POSTMASTER setting outside shared_preload_libraries is
	 * FATAL; when loaded lazily there are no workers to configure anyway.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomBoolVariable("stream.worker_enabled",
								 "Starts the stream launcher and the per-database maintenance workers.",
								 "Takes effect only when stream is listed in shared_preload_libraries.",
								 &stream_worker_enabled,
								 true,
								 PGC_POSTMASTER,
								 0,
								 NULL, NULL, NULL);

		DefineCustomIntVariable("stream.max_databases",
								"Maximum number of databases served by stream workers at the same time.",
								"Each served database also uses one of max_worker_processes.",
								&stream_max_databases,
								64,
								1,
								10000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	DefineCustomIntVariable("stream.launcher_naptime",
							"Time between two scans of pg_database by the stream launcher.",
							NULL,
							&stream_launcher_naptime,
							10,
							1,
							3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream.delivery_naptime",
							"Time between two delivery rounds of a database worker (delivery streams).",
							"Each round checks every delivery stream's buffer and delivers those that are due.",
							&stream_delivery_naptime_ms,
							1000,
							10,
							INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("stream.maintenance_naptime",
							"Time between two calls of stream.run_maintenance() by a database worker.",
							NULL,
							&stream_maintenance_naptime,
							60,
							1,
							INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

void
stream_worker_register_launcher(void)
{
	BackgroundWorker worker;

	if (!stream_worker_enabled)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* on a standby there is nothing to maintain: wait for promotion */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, STREAM_LIBRARY_NAME, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "stream_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "stream launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "stream launcher", BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;

	RegisterBackgroundWorker(&worker);
}

Size
stream_worker_shmem_size(void)
{
	Size		size;

	size = offsetof(StreamWorkerShmemData, slots);
	size = add_size(size, mul_size(sizeof(StreamDbSlot),
								   (Size) stream_max_databases));
	return MAXALIGN(size);
}

void
stream_worker_shmem_init(void)
{
	bool		found;

	StreamWorkerShmem = (StreamWorkerShmemData *)
		ShmemInitStruct("stream worker state", stream_worker_shmem_size(),
						&found);
	if (!found)
	{
		memset(StreamWorkerShmem, 0, stream_worker_shmem_size());
		/* the caller's request hook did not ask for a named tranche */
		StreamWorkerShmem->tranche_id = LWLockNewTrancheId();
		LWLockInitialize(&StreamWorkerShmem->lock,
						 StreamWorkerShmem->tranche_id);
		StreamWorkerShmem->nslots = stream_max_databases;
	}
	/* the tranche name is process-local; set it in every process */
	LWLockRegisterTranche(StreamWorkerShmem->tranche_id, "stream_worker");
}

bool
stream_worker_available(void)
{
	return StreamWorkerShmem != NULL && stream_worker_enabled;
}

/* ----------------------------------------------------------------------
 * Slot helpers; callers hold StreamWorkerShmem->lock.  Nothing that can
 * raise an error may run while the lock is held: exit callbacks take it too.
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

/* ----------------------------------------------------------------------
 * stream_internal._wake_worker()
 * ----------------------------------------------------------------------
 */

static void
post_wake_request(Oid dboid)
{
	StreamDbSlot *slot;
	Latch	   *worker_latch = NULL;
	Latch	   *launcher_latch;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
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
	LWLockRelease(&StreamWorkerShmem->lock);

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

Datum
stream_wake_worker(PG_FUNCTION_ARGS)
{
	if (!stream_worker_available())
		PG_RETURN_BOOL(false);

	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;

	PG_RETURN_BOOL(true);
}

/*
 * Ask this database's worker for a maintenance round at once (a producer
 * found no chunk for its records).  False when no worker runs here.
 */
bool
stream_worker_wake_now(void)
{
	StreamDbSlot *slot;
	Latch	   *latch = NULL;

	if (!stream_worker_available())
		return false;
	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(MyDatabaseId);
	if (slot != NULL && slot->launched && slot->worker_pid != 0)
	{
		slot->wake_requested = true;
		latch = slot->worker_latch;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
	if (latch == NULL)
		return false;
	SetLatch(latch);
	return true;
}

/* A dynamic worker connected to a database, never restarted. */
static void
init_database_worker(BackgroundWorker *worker, const char *function, const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, STREAM_LIBRARY_NAME, BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker->bgw_type, type, BGW_MAXLEN);
}

/* ----------------------------------------------------------------------
 * One-shot chunk maker: a put that found no chunk has it made in a
 * transaction of its own, so that no producer's transaction holds the
 * locks of chunk creation (works without shared_preload_libraries too).
 * ----------------------------------------------------------------------
 */

typedef struct ChunkMakerArgs
{
	Oid			dboid;
	int32		stream_id;
	int64		chunk_no;
} ChunkMakerArgs;

#define CHUNK_MAKER_QUERY	"SELECT stream_internal._add_chunk_for_put($1, $2)"

/*
 * Start a chunk maker for chunk_no of stream_id and wait until it is done.
 * False when none could be started (no free worker slot).
 */
bool
stream_make_chunk_in_worker(int32 stream_id, int64 chunk_no)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	ChunkMakerArgs args;
	pid_t		pid;
	BgwHandleStatus status;

	init_database_worker(&worker, "stream_chunk_maker_main", "stream chunk maker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stream chunk maker for stream %d", stream_id);
	memset(&args, 0, sizeof(args));
	args.dboid = MyDatabaseId;
	args.stream_id = stream_id;
	args.chunk_no = chunk_no;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "chunk maker arguments too long");
	memcpy(worker.bgw_extra, &args, sizeof(args));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status == BGWH_STARTED)
		status = WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);
	return status == BGWH_STOPPED;
}

void
stream_chunk_maker_main(Datum main_arg)
{
	ChunkMakerArgs args;
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Datum		values[2];
	int			ret;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	SetConfigOption("application_name", "stream chunk maker", PGC_USERSET, PGC_S_SESSION);
	/* we run as superuser: resolve nothing through user-writable schemas */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, CHUNK_MAKER_QUERY);
	values[0] = Int32GetDatum(args.stream_id);
	values[1] = Int64GetDatum(args.chunk_no);
	ret = SPI_execute_with_args(CHUNK_MAKER_QUERY, 2, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "%s returned %s", CHUNK_MAKER_QUERY, SPI_result_code_string(ret));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}

/* ----------------------------------------------------------------------
 * Flush requests of stream.flush_delivery_stream() (delivery loop)
 * ----------------------------------------------------------------------
 */

/*
 * Ask this database's worker to flush a delivery stream; *ticket is what
 * stream_worker_flush_done() waits for.  False when no worker runs here.
 */
bool
stream_worker_request_flush(int32 delivery_stream_id, uint32 *ticket)
{
	StreamDbSlot *slot;
	Latch	   *latch = NULL;

	if (!stream_worker_available())
		return false;
	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(MyDatabaseId);
	if (slot != NULL && slot->launched && slot->worker_pid != 0)
	{
		bool		listed = false;

		for (int i = 0; i < slot->nflush; i++)
			if (slot->flush_ids[i] == delivery_stream_id)
				listed = true;
		if (!listed)
		{
			if (slot->nflush < lengthof(slot->flush_ids))
				slot->flush_ids[slot->nflush++] = delivery_stream_id;
			else
				slot->flush_all = true;
		}
		if (++slot->flush_requested == 0)
			slot->flush_requested = 1;
		*ticket = slot->flush_requested;
		latch = slot->worker_latch;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
	if (latch == NULL)
		return false;
	SetLatch(latch);
	return true;
}

/* True when the flush of ticket is over; *worker_gone when the worker left. */
bool
stream_worker_flush_done(uint32 ticket, bool *worker_gone)
{
	StreamDbSlot *slot;
	bool		done = false;

	*worker_gone = false;
	LWLockAcquire(&StreamWorkerShmem->lock, LW_SHARED);
	slot = slot_find(MyDatabaseId);
	if (slot == NULL || slot->worker_pid == 0)
		*worker_gone = true;
	else
		done = (int32) (slot->flush_done - ticket) >= 0;
	LWLockRelease(&StreamWorkerShmem->lock);
	return done;
}

/* worker side: take the pending flush requests */
static uint32
worker_take_flush_requests(int32 *ids, int *nids, bool *all)
{
	StreamDbSlot *slot;
	uint32		ticket = 0;

	*nids = 0;
	*all = false;
	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation)
	{
		memcpy(ids, slot->flush_ids, sizeof(int32) * slot->nflush);
		*nids = slot->nflush;
		*all = slot->flush_all;
		slot->nflush = 0;
		slot->flush_all = false;
		ticket = slot->flush_requested;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
	return ticket;
}

static void
worker_report_flush_done(uint32 done)
{
	StreamDbSlot *slot;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation)
		slot->flush_done = done;
	LWLockRelease(&StreamWorkerShmem->lock);
}

/* worker side: is a flush request waiting? */
static bool
worker_flush_pending(void)
{
	StreamDbSlot *slot;
	bool		pending = false;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_SHARED);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation)
		pending = slot->nflush > 0 || slot->flush_all;
	LWLockRelease(&StreamWorkerShmem->lock);
	return pending;
}

/*
 * One delivery round (delivery.c), errors reported and swallowed like
 * maintenance's.  Returns true when more is due at once; *missing when the
 * extension is gone.
 */
static bool
worker_delivery_round(MemoryContext round_context, bool *missing)
{
	int32		ids[16];
	int			n;
	bool		a;
	uint32		t = worker_take_flush_requests(ids, &n, &a);
	volatile int nids = n;
	volatile bool all = a;
	volatile uint32 ticket = t;
	uint32		done = t;
	volatile bool more = false;

	*missing = false;
	MemoryContextReset(round_context);
	MemoryContextSwitchTo(round_context);
	PG_TRY();
	{
		more = delivery_run_round(ids, nids, all, ticket, &done, missing);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		ereport(WARNING,
				(errmsg("stream delivery round failed in database \"%s\"",
						worker_dbname)));
		done = ticket;
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(round_context);
	worker_report_flush_done(done);
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}

/* ----------------------------------------------------------------------
 * Per-database worker
 * ----------------------------------------------------------------------
 */

/* claim the slot the launcher reserved for this launch */
static bool
worker_attach(void)
{
	StreamDbSlot *slot;
	bool		ok = false;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->launched &&
		slot->generation == worker_generation && slot->worker_pid == 0)
	{
		slot->worker_pid = MyProcPid;
		slot->worker_latch = MyLatch;
		/* the first round runs at once anyway */
		slot->wake_requested = false;
		ok = true;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
	return ok;
}

/* before_shmem_exit callback */
static void
worker_detach(int code, Datum arg)
{
	StreamDbSlot *slot;
	Latch	   *launcher_latch;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation &&
		slot->worker_pid == MyProcPid)
	{
		slot->worker_pid = 0;
		slot->worker_latch = NULL;
	}
	launcher_latch = StreamWorkerShmem->launcher_latch;
	LWLockRelease(&StreamWorkerShmem->lock);

	/* a launcher that adopted us gets no postmaster notification */
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

typedef enum WorkerReport
{
	REPORT_EXTENSION_PRESENT,
	REPORT_EXTENSION_MISSING,
	REPORT_DATABASE_BUSY
} WorkerReport;

static void
worker_report(WorkerReport report)
{
	StreamDbSlot *slot;
	Latch	   *launcher_latch;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation)
	{
		slot->ext_checked = true;
		if (report == REPORT_EXTENSION_MISSING)
			slot->ext_missing_at = now;
		else if (report == REPORT_DATABASE_BUSY)
			slot->db_busy = true;
	}
	launcher_latch = StreamWorkerShmem->launcher_latch;
	LWLockRelease(&StreamWorkerShmem->lock);

	/* lets the launcher start the next pending worker */
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* returns true, and clears the flag, when a wake-up was requested */
static bool
worker_take_wake_request(void)
{
	StreamDbSlot *slot;
	bool		wake = false;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find(worker_dboid);
	if (slot != NULL && slot->generation == worker_generation &&
		slot->wake_requested)
	{
		slot->wake_requested = false;
		wake = true;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
	return wake;
}

/*
 * True when another session holds or waits for a lock on our database that
 * conflicts with the RowExclusiveLock every connecting backend takes: DROP
 * DATABASE, ALTER DATABASE RENAME / SET TABLESPACE (AccessExclusiveLock) and
 * CREATE DATABASE using it as template (ShareLock).  Those commands wait only
 * five seconds for connected sessions to go away.
 */
static bool
database_conflict_pending(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	/* session lock: we are between transactions here */
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}

/* pg_database.datname of our database, for messages; call in a transaction */
static void
worker_remember_dbname(void)
{
	char	   *name = get_database_name(MyDatabaseId);

	if (name != NULL)
		worker_dbname = MemoryContextStrdup(TopMemoryContext, name);
	else
		worker_dbname = MemoryContextStrdup(TopMemoryContext, "?");
}

/*
 * One unit of a maintenance round, in a transaction of its own: with
 * stream_id < 0 list the streams into *ids (allocated in round_context),
 * otherwise maintain that stream.  Errors are reported and swallowed so that
 * the next unit and the next round can go on.  Returns false when the
 * extension no longer exists.
 */
static bool
worker_maintenance_unit(int32 stream_id, List **ids, MemoryContext round_context)
{
	volatile bool extension_present = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (!OidIsValid(get_extension_oid(STREAM_EXTENSION_NAME, true)))
			extension_present = false;
		else
		{
			int			ret;

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			PushActiveSnapshot(GetTransactionSnapshot());
			if (stream_id < 0)
			{
				pgstat_report_activity(STATE_RUNNING, MAINTENANCE_LIST_QUERY);
				ret = SPI_execute(MAINTENANCE_LIST_QUERY, true, 0);
				if (ret != SPI_OK_SELECT)
					elog(ERROR, "%s returned %s", MAINTENANCE_LIST_QUERY,
						 SPI_result_code_string(ret));
				for (uint64 i = 0; i < SPI_processed; i++)
				{
					bool		isnull;
					Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull);

					if (!isnull)
					{
						MemoryContext old = MemoryContextSwitchTo(round_context);

						*ids = lappend_int(*ids, DatumGetInt32(d));
						MemoryContextSwitchTo(old);
					}
				}
			}
			else
			{
				Oid			argtypes[1] = {INT4OID};
				Datum		values[1] = {Int32GetDatum(stream_id)};

				pgstat_report_activity(STATE_RUNNING, MAINTENANCE_QUERY);
				ret = SPI_execute_with_args(MAINTENANCE_QUERY, 1, argtypes, values,
											NULL, false, 0);
				if (ret != SPI_OK_SELECT)
					elog(ERROR, "%s returned %s", MAINTENANCE_QUERY,
						 SPI_result_code_string(ret));
			}
			SPI_finish();
			PopActiveSnapshot();
		}
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* same clean-up as autovacuum after a failed table */
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();

		if (stream_id < 0)
			ereport(WARNING,
					(errmsg("stream maintenance failed in database \"%s\"",
							worker_dbname),
					 errdetail("The next attempt is in %d seconds.",
							   stream_maintenance_naptime)));
		else
			ereport(WARNING,
					(errmsg("stream maintenance of stream id %d failed in database \"%s\"",
							stream_id, worker_dbname),
					 errdetail("The next attempt is in %d seconds.",
							   stream_maintenance_naptime)));
	}
	PG_END_TRY();

	/* keep stray allocations between units out of TopMemoryContext */
	MemoryContextSwitchTo(round_context);
	return extension_present;
}

/*
 * One maintenance round: the list of streams, then each stream in a short
 * transaction of its own, so that no lock taken for one stream (a dropped
 * chunk's parent) is held while the others are maintained and no snapshot
 * lasts longer than one stream.  Returns false when the extension no longer
 * exists.
 */
static bool
worker_maintenance_round(MemoryContext round_context)
{
	List	   *ids = NIL;
	ListCell   *lc;
	bool		extension_present;

	MemoryContextReset(round_context);
	MemoryContextSwitchTo(round_context);

	extension_present = worker_maintenance_unit(-1, &ids, round_context);
	foreach(lc, ids)
	{
		CHECK_FOR_INTERRUPTS();
		/* the main loop lets a pending DROP DATABASE proceed */
		if (!extension_present || database_conflict_pending())
			break;
		extension_present = worker_maintenance_unit(lfirst_int(lc), NULL, round_context);
	}

	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);

	return extension_present;
}

void
stream_db_worker_main(Datum main_arg)
{
	MemoryContext round_context;
	MemoryContext delivery_context;
	TimestampTz last_round_end = 0;
	TimestampTz next_round;
	TimestampTz next_delivery;
	bool		extension_present;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_dboid = DatumGetObjectId(main_arg);
	memcpy(&worker_generation, MyBgworkerEntry->bgw_extra,
		   sizeof(worker_generation));

	/* only the launcher starts us, and only when shared memory exists */
	if (StreamWorkerShmem == NULL)
		proc_exit(0);

	/* a launch left over from a launcher that has since restarted */
	if (!worker_attach())
	{
		elog(DEBUG1, "stream worker for database %u is stale, exiting",
			 worker_dboid);
		proc_exit(0);
	}
	before_shmem_exit(worker_detach, (Datum) 0);

	/* fails (FATAL) when the database was dropped in the meantime */
	BackgroundWorkerInitializeConnectionByOid(worker_dboid, InvalidOid, 0);

	SetConfigOption("application_name", "stream worker",
					PGC_USERSET, PGC_S_SESSION);
	/* we run as superuser: resolve nothing through user-writable schemas */
	SetConfigOption("search_path", "pg_catalog, pg_temp",
					PGC_SUSET, PGC_S_SESSION);

	StartTransactionCommand();
	worker_remember_dbname();
	extension_present = OidIsValid(get_extension_oid(STREAM_EXTENSION_NAME,
													 true));
	CommitTransactionCommand();

	if (!extension_present)
	{
		worker_report(REPORT_EXTENSION_MISSING);
		elog(DEBUG1, "extension \"%s\" is not installed in database \"%s\"",
			 STREAM_EXTENSION_NAME, worker_dbname);
		proc_exit(0);
	}
	worker_report(REPORT_EXTENSION_PRESENT);

	ereport(LOG,
			(errmsg("stream worker started for database \"%s\"",
					worker_dbname)));

	round_context = AllocSetContextCreate(TopMemoryContext,
										  "stream maintenance round",
										  ALLOCSET_DEFAULT_SIZES);
	delivery_context = AllocSetContextCreate(TopMemoryContext,
											 "stream delivery round",
											 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(round_context);
	next_round = GetCurrentTimestamp();
	next_delivery = next_round;

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		bool		woken;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a changed naptime applies to the current wait already */
			if (last_round_end != 0)
				next_round = TimestampTzPlusMilliseconds(last_round_end,
														 (int64) stream_maintenance_naptime * 1000);
		}

		if (database_conflict_pending())
		{
			worker_report(REPORT_DATABASE_BUSY);
			ereport(LOG,
					(errmsg("stream worker for database \"%s\" exits to let a pending DROP, RENAME or copy of the database proceed",
							worker_dbname)));
			proc_exit(0);
		}

		woken = worker_take_wake_request();
		now = GetCurrentTimestamp();
		if (woken || now >= next_round)
		{
			if (!worker_maintenance_round(round_context))
			{
				worker_report(REPORT_EXTENSION_MISSING);
				ereport(LOG,
						(errmsg("stream worker for database \"%s\" exits: extension \"%s\" was dropped",
								worker_dbname, STREAM_EXTENSION_NAME)));
				proc_exit(0);
			}
			now = GetCurrentTimestamp();
			/* counted from the end of the round: rounds never pile up */
			last_round_end = now;
			next_round = TimestampTzPlusMilliseconds(now,
													 (int64) stream_maintenance_naptime * 1000);
		}

		/*
		 * Delivery streams: a round of their own, on a short cadence; each
		 * delivery is a unit in short transactions (delivery.c).  A flush
		 * request sets our latch and runs a round at once.
		 */
		if (woken || now >= next_delivery || worker_flush_pending())
		{
			bool		missing = false;
			bool		more = worker_delivery_round(delivery_context, &missing);

			if (missing)
			{
				worker_report(REPORT_EXTENSION_MISSING);
				ereport(LOG,
						(errmsg("stream worker for database \"%s\" exits: extension \"%s\" was dropped",
								worker_dbname, STREAM_EXTENSION_NAME)));
				proc_exit(0);
			}
			now = GetCurrentTimestamp();
			next_delivery = more ? now :
				TimestampTzPlusMilliseconds(now, (int64) stream_delivery_naptime_ms);
		}

		timeout = TimestampDifferenceMilliseconds(now, next_round);
		timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_delivery));
		timeout = Min(timeout, DB_CONFLICT_POLL_MS);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ----------------------------------------------------------------------
 * Launcher
 * ----------------------------------------------------------------------
 */

/* before_shmem_exit callback */
static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	if (StreamWorkerShmem->launcher_pid == MyProcPid)
	{
		StreamWorkerShmem->launcher_pid = 0;
		StreamWorkerShmem->launcher_latch = NULL;
	}
	LWLockRelease(&StreamWorkerShmem->lock);
}

/*
 * Announce ourselves, and take over workers left running by a previous
 * launcher incarnation (e.g. after pg_terminate_backend on the launcher) so
 * that no database gets a second worker.  Launches of the previous
 * incarnation that have not attached yet are invalidated: their slot is
 * recycled, so they find no matching generation and exit.
 */
static void
launcher_attach(HTAB *dbs)
{
	Oid		   *adopted;
	int			nadopted = 0;
	int			i;

	/* allocate before taking the lock: nothing may fail under it */
	adopted = palloc(sizeof(Oid) * StreamWorkerShmem->nslots);

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	StreamWorkerShmem->launcher_pid = MyProcPid;
	StreamWorkerShmem->launcher_latch = MyLatch;
	for (i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		if (!OidIsValid(slot->dboid))
			continue;
		if (slot->launched && slot->worker_pid != 0)
			adopted[nadopted++] = slot->dboid;
		else if (slot->wake_requested)
		{
			Oid			dboid = slot->dboid;

			slot_clear(slot);
			slot->dboid = dboid;
			slot->wake_requested = true;
		}
		else
			slot_clear(slot);
	}
	LWLockRelease(&StreamWorkerShmem->lock);

	for (i = 0; i < nadopted; i++)
	{
		LauncherDb *entry;
		bool		found;

		entry = hash_search(dbs, &adopted[i], HASH_ENTER, &found);
		namestrcpy(&entry->datname, "");
		entry->listed = false;
		entry->active = true;
		entry->wake = false;
		entry->handle = NULL;
		entry->not_before = 0;
	}
	pfree(adopted);

	if (nadopted > 0)
		elog(LOG, "stream launcher took over %d running workers", nadopted);
}

/* notice workers that have exited and apply the right back-off */
static void
launcher_reap_workers(HTAB *dbs)
{
	HASH_SEQ_STATUS status;
	LauncherDb *entry;

	hash_seq_init(&status, dbs);
	while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
	{
		StreamDbSlot *slot;
		bool		stopped;
		TimestampTz missing_at = 0;
		bool		busy = false;
		TimestampTz now;

		if (!entry->active)
			continue;

		if (entry->handle != NULL)
		{
			pid_t		pid;

			stopped = (GetBackgroundWorkerPid(entry->handle, &pid) ==
					   BGWH_STOPPED);
			if (!stopped)
				continue;
		}

		LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
		slot = slot_find(entry->dboid);
		/* an adopted worker is known only through its slot */
		stopped = entry->handle != NULL || slot == NULL ||
			slot->worker_pid == 0;
		if (stopped && slot != NULL)
		{
			missing_at = slot->ext_missing_at;
			busy = slot->db_busy;
			if (slot->wake_requested)
			{
				/* keep the request for launcher_collect_wakes */
				Oid			dboid = slot->dboid;

				slot_clear(slot);
				slot->dboid = dboid;
				slot->wake_requested = true;
			}
			else
				slot_clear(slot);
		}
		LWLockRelease(&StreamWorkerShmem->lock);

		if (!stopped)
			continue;

		if (entry->handle != NULL)
			pfree(entry->handle);
		entry->handle = NULL;
		entry->active = false;

		now = GetCurrentTimestamp();
		if (missing_at != 0)
			entry->not_before = TimestampTzPlusMilliseconds(missing_at,
															EXTENSION_MISSING_RETRY_MS);
		else
		{
			/* crashed, terminated, or left for a DROP: pause one naptime */
			entry->not_before = TimestampTzPlusMilliseconds(now,
															(int64) stream_launcher_naptime * 1000);
		}
		elog(DEBUG1, "stream worker for database %u stopped%s", entry->dboid,
			 missing_at != 0 ? " (extension not installed)" :
			 busy ? " (database busy)" : "");
	}
}

/* turn wake-up requests into launcher-local flags; true if there were any */
static bool
launcher_collect_wakes(HTAB *dbs)
{
	Oid		   *woken;
	int			nwoken = 0;
	bool		wake_all;
	int			i;

	woken = palloc(sizeof(Oid) * StreamWorkerShmem->nslots);

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	wake_all = StreamWorkerShmem->wake_all;
	StreamWorkerShmem->wake_all = false;
	for (i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		/* a launched worker consumes its own wake-up */
		if (!OidIsValid(slot->dboid) || slot->launched ||
			!slot->wake_requested)
			continue;
		woken[nwoken++] = slot->dboid;
		slot_clear(slot);
	}
	LWLockRelease(&StreamWorkerShmem->lock);

	if (wake_all)
	{
		HASH_SEQ_STATUS status;
		LauncherDb *entry;

		hash_seq_init(&status, dbs);
		while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
			entry->wake = true;
	}

	for (i = 0; i < nwoken; i++)
	{
		LauncherDb *entry;
		bool		found;

		entry = hash_search(dbs, &woken[i], HASH_ENTER, &found);
		if (!found)
		{
			/* created after our last scan; the scan will list it */
			namestrcpy(&entry->datname, "");
			entry->listed = false;
			entry->active = false;
			entry->handle = NULL;
			entry->not_before = 0;
		}
		entry->wake = true;
	}
	pfree(woken);

	return wake_all || nwoken > 0;
}

/* refresh the set of databases that can have a worker */
static void
launcher_scan_databases(HTAB *dbs)
{
	HASH_SEQ_STATUS status;
	LauncherDb *entry;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext oldcontext = CurrentMemoryContext;

	hash_seq_init(&status, dbs);
	while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
		entry->listed = false;

	StartTransactionCommand();
	/* a fresh catalog snapshot, so new databases are seen */
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		/*
		 * Templates are skipped too: a session in a template makes CREATE
		 * DATABASE wait, and streams belong in the databases made from it.
		 */
		if (!db->datallowconn || db->datistemplate ||
			database_is_invalid_form(db))
			continue;

		entry = hash_search(dbs, &db->oid, HASH_ENTER, &found);
		if (!found)
		{
			entry->active = false;
			entry->wake = false;
			entry->handle = NULL;
			entry->not_before = 0;
		}
		namestrcpy(&entry->datname, NameStr(db->datname));
		entry->listed = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	/* commit leaves us in TopMemoryContext */
	MemoryContextSwitchTo(oldcontext);
	pgstat_report_stat(false);

	/* forget dropped databases; running workers are forgotten when reaped */
	hash_seq_init(&status, dbs);
	while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
	{
		if (!entry->listed && !entry->active)
			(void) hash_search(dbs, &entry->dboid, HASH_REMOVE, NULL);
	}
}

/* register a worker for entry; false if no slot or no bgworker slot */
static bool
launcher_start_worker(LauncherDb *entry)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	StreamDbSlot *slot;
	uint32		generation = 0;
	MemoryContext oldcontext;
	bool		registered;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
	slot = slot_find_or_create(entry->dboid);
	if (slot != NULL)
	{
		bool		wake = slot->wake_requested;

		do
			generation = ++StreamWorkerShmem->next_generation;
		while (generation == 0);

		slot_clear(slot);
		slot->dboid = entry->dboid;
		slot->generation = generation;
		slot->launched = true;
		slot->wake_requested = wake;
	}
	LWLockRelease(&StreamWorkerShmem->lock);

	if (slot == NULL)
	{
		if (!slots_full_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("stream launcher cannot serve more than %d databases at the same time",
							StreamWorkerShmem->nslots),
					 errdetail("No worker was started for database \"%s\"; the launcher retries later.",
							   NameStr(entry->datname)),
					 errhint("Consider increasing stream.max_databases.")));
		slots_full_logged = true;
		return false;
	}

	init_database_worker(&worker, "stream_db_worker_main", "stream worker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "stream worker for database %u",
			 entry->dboid);
	worker.bgw_main_arg = ObjectIdGetDatum(entry->dboid);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	/* the handle lives until the worker is reaped */
	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(oldcontext);

	if (!registered)
	{
		LWLockAcquire(&StreamWorkerShmem->lock, LW_EXCLUSIVE);
		if (slot->dboid == entry->dboid && slot->generation == generation)
		{
			bool		wake = slot->wake_requested;

			slot_clear(slot);
			if (wake)
			{
				slot->dboid = entry->dboid;
				slot->wake_requested = true;
			}
		}
		LWLockRelease(&StreamWorkerShmem->lock);

		if (!register_failure_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("stream launcher could not start a worker for database \"%s\"",
							NameStr(entry->datname)),
					 errdetail("All background worker slots are in use; the launcher retries later."),
					 errhint("Consider increasing max_worker_processes.")));
		register_failure_logged = true;
		return false;
	}

	entry->handle = handle;
	entry->active = true;
	entry->wake = false;
	return true;
}

static void
launcher_start_workers(HTAB *dbs)
{
	HASH_SEQ_STATUS status;
	LauncherDb *entry;
	TimestampTz now = GetCurrentTimestamp();
	int			nstarting = 0;
	int			i;

	LWLockAcquire(&StreamWorkerShmem->lock, LW_SHARED);
	for (i = 0; i < StreamWorkerShmem->nslots; i++)
	{
		StreamDbSlot *slot = &StreamWorkerShmem->slots[i];

		if (OidIsValid(slot->dboid) && slot->launched && !slot->ext_checked)
			nstarting++;
	}
	LWLockRelease(&StreamWorkerShmem->lock);

	hash_seq_init(&status, dbs);
	while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
	{
		if (!entry->listed || entry->active)
			continue;
		if (!entry->wake && now < entry->not_before)
			continue;

		/* the rest waits for a worker to report (it sets our latch) */
		if (nstarting >= MAX_STARTING_WORKERS)
		{
			hash_seq_term(&status);
			return;
		}
		if (!launcher_start_worker(entry))
		{
			hash_seq_term(&status);
			return;
		}
		nstarting++;
	}

	/* everything due was started */
	register_failure_logged = false;
	slots_full_logged = false;
}

void
stream_launcher_main(Datum main_arg)
{
	HASHCTL		ctl;
	HTAB	   *dbs;
	MemoryContext loop_context;
	TimestampTz next_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (StreamWorkerShmem == NULL)
	{
		/* exit code 0: the postmaster does not restart us */
		ereport(LOG,
				(errmsg("stream launcher exits: shared memory was not initialized")));
		proc_exit(0);
	}

	/* shared catalogs only: pg_database is all we read */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	SetConfigOption("application_name", "stream launcher",
					PGC_USERSET, PGC_S_SESSION);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDb);
	dbs = hash_create("stream launcher databases", 64, &ctl,
					  HASH_ELEM | HASH_BLOBS);

	launcher_attach(dbs);
	before_shmem_exit(launcher_detach, (Datum) 0);

	ereport(LOG, (errmsg("stream launcher started")));

	/* scratch memory of one iteration; handles live in TopMemoryContext */
	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "stream launcher iteration",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		bool		woken;
		long		timeout;

		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a changed naptime applies from now on */
			next_scan = 0;
		}

		launcher_reap_workers(dbs);
		woken = launcher_collect_wakes(dbs);

		now = GetCurrentTimestamp();
		if (woken || now >= next_scan)
		{
			launcher_scan_databases(dbs);
			next_scan = TimestampTzPlusMilliseconds(now,
													(int64) stream_launcher_naptime * 1000);
		}

		launcher_start_workers(dbs);

		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												  next_scan);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
