/*-------------------------------------------------------------------------
 *
 * bgw/launcher.c
 *	  The stream launcher: a static background worker, connected to shared
 *	  catalogs only, that starts one database worker (db_worker.c) per
 *	  database.
 *
 * Every stream.launcher_naptime seconds, and at once when a wake-up asks,
 * the launcher scans pg_database and starts a worker for each database that
 * allows connections and has none.  A worker that finds no extension in its
 * database says so and exits; the launcher then leaves that database alone
 * for five minutes unless stream_internal._wake_worker() asks for it.  A
 * worker that crashed, was terminated or left for a DROP DATABASE is
 * started again after one naptime.  A launcher that restarts adopts the
 * workers still running, so that no database gets a second worker.
 *
 * At most MAX_STARTING_WORKERS launched workers may not yet have reported
 * whether the extension exists: that bounds the burst of short-lived
 * processes when many databases exist, so that parallel query and other
 * extensions keep their worker slots.
 *
 * Rules a reader must keep:
 *	- The launcher holds no snapshot and no transaction between scans; the
 *	  scan of pg_database is one short transaction.
 *	- It reads and changes the slots only through worker_slots.c.
 *	- Signals: SIGHUP reloads the settings (a changed naptime applies at
 *	  once), SIGTERM ends it (die); the postmaster restarts it.  It waits
 *	  on its latch, which workers and wake-ups set.
 *	- Bookkeeping of its own (the databases it knows, the handles of the
 *	  workers it registered) lives in TopMemoryContext; scratch memory of
 *	  one iteration in a context reset at each iteration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "bgw/worker_int.h"

/* how long a database without the extension is left alone */
#define EXTENSION_MISSING_RETRY_MS	(5 * 60 * 1000)

/* launched workers that have not yet reported whether the extension exists */
#define MAX_STARTING_WORKERS		4

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
 * Warn once when launches start failing, again only after a launcher
 * iteration started everything it wanted to.
 */
static bool register_failure_logged = false;
static bool slots_full_logged = false;

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

/* the entry of dboid, made (unlisted, idle) when it is new */
static LauncherDb *
launcher_entry(HTAB *dbs, Oid dboid)
{
	bool		found;
	LauncherDb *entry = hash_search(dbs, &dboid, HASH_ENTER, &found);

	if (!found)
	{
		namestrcpy(&entry->datname, "");
		entry->listed = false;
		entry->active = false;
		entry->wake = false;
		entry->handle = NULL;
		entry->not_before = 0;
	}
	return entry;
}

/* announce ourselves and take over the workers a previous launcher left */
static void
launcher_attach(HTAB *dbs)
{
	Oid		   *adopted;
	int			nadopted = slots_attach_launcher(&adopted);

	for (int i = 0; i < nadopted; i++)
		launcher_entry(dbs, adopted[i])->active = true;
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
		TimestampTz missing_at;
		bool		busy;
		TimestampTz now;

		if (!entry->active)
			continue;

		if (entry->handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(entry->handle, &pid) != BGWH_STOPPED)
				continue;
		}

		/* an adopted worker is known only through its slot */
		if (!slots_reap(entry->dboid, entry->handle != NULL, &missing_at, &busy))
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
	bool		wake_all;
	int			nwoken = slots_collect_wakes(&woken, &wake_all);

	if (wake_all)
	{
		HASH_SEQ_STATUS status;
		LauncherDb *entry;

		hash_seq_init(&status, dbs);
		while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
			entry->wake = true;
	}

	/* a database created after our last scan: the next scan lists it */
	for (int i = 0; i < nwoken; i++)
		launcher_entry(dbs, woken[i])->wake = true;
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

		/*
		 * Templates are skipped too: a session in a template makes CREATE
		 * DATABASE wait, and streams belong in the databases made from it.
		 */
		if (!db->datallowconn || db->datistemplate ||
			database_is_invalid_form(db))
			continue;

		entry = launcher_entry(dbs, db->oid);
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
	uint32		generation;
	MemoryContext oldcontext;
	bool		registered;

	generation = slots_reserve_launch(entry->dboid);
	if (generation == 0)
	{
		if (!slots_full_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("stream launcher cannot serve more than %d databases at the same time",
							slots_capacity()),
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
		slots_cancel_launch(entry->dboid, generation);
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

/* start a worker for every listed database that is due and has none */
static void
launcher_start_workers(HTAB *dbs)
{
	HASH_SEQ_STATUS status;
	LauncherDb *entry;
	TimestampTz now = GetCurrentTimestamp();
	int			nstarting = slots_count_starting();

	hash_seq_init(&status, dbs);
	while ((entry = (LauncherDb *) hash_seq_search(&status)) != NULL)
	{
		if (!entry->listed || entry->active)
			continue;
		if (!entry->wake && now < entry->not_before)
			continue;

		/* the rest waits for a worker to report (it sets our latch) */
		if (nstarting >= MAX_STARTING_WORKERS || !launcher_start_worker(entry))
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

	if (!slots_initialized())
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
