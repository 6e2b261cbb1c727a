/*-------------------------------------------------------------------------
 *
 * bgw/db_worker.c
 *	  The stream worker of one database: its maintenance round and its
 *	  delivery round, each on a cadence of its own.
 *
 * The launcher starts the worker (launcher.c).  It checks that the
 * extension exists in its database (if not, it says so and exits), then
 * loops:
 *	- every stream.maintenance_naptime seconds, and at once when woken
 *	  (a put found no chunk, or _wake_worker()), a maintenance round: the
 *	  list of streams, then what stream.run_maintenance() does for each
 *	  stream, each in a unit of its own (unit.c);
 *	- every stream.delivery_naptime, at once when woken or when a request
 *	  is pending (flush_delivery_stream()), and again at once while some
 *	  delivery stream has more: delivery_run_round() (delivery/delivery_round.c), which
 *	  runs its own short transactions and reports which tickets are done;
 *	- every stream.metrics_flush_interval, and for a request of
 *	  stream.flush_metrics() before its ticket is reported done: the
 *	  metrics counted in shared memory into their tables (metrics_flush.c);
 *	- every stream.on_demand_scaling_interval, while stream.on_demand_scaling
 *	  is on: a look at the write rates of the on-demand streams' shards and
 *	  the splits and merges it decides on (autoscale.c);
 *	- it leaves when the extension is dropped, and, about once a second,
 *	  probes whether a DROP DATABASE, ALTER DATABASE RENAME / SET
 *	  TABLESPACE or CREATE DATABASE ... TEMPLATE waits for it: those wait
 *	  at most five seconds for other sessions to leave (CountOtherDBBackends()
 *	  signals only autovacuum workers) and then fail.
 *
 * Rules a reader must keep:
 *	- No snapshot and no transaction is held between units or rounds, nor
 *	  while waiting on the latch.
 *	- A failed unit or round is reported, its transaction aborted, and the
 *	  loop goes on; only the extension's absence or a database command
 *	  waiting for us ends the worker.
 *	- Signals: SIGHUP reloads the settings (a changed naptime applies to
 *	  the current wait), SIGTERM ends the worker (die); the launcher starts
 *	  it again.  Wake-ups and requests set the latch.
 *	- The slot is read and changed only through worker_slots.c.
 *	- Memory: each round works in a context of its own, reset when the
 *	  round starts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "bgw/worker_int.h"
#include "stream.h"
#include "delivery/delivery.h"
#include "esm/esm.h"
#include "analytics/analytics.h"

#define MAINTENANCE_LIST_QUERY	"SELECT stream_id FROM stream.streams ORDER BY stream_id"
#define MAINTENANCE_QUERY		"SELECT * FROM stream_internal._maintain_stream($1)"

/* how often a worker looks for a pending DROP/RENAME of its database */
#define DB_CONFLICT_POLL_MS			1000

/* pg_database.datname of our database, for messages */
static char *worker_dbname = NULL;

/* the cadences */
static TimestampTz next_maintenance;
static TimestampTz last_maintenance_end = 0;	/* 0: no round yet */
static TimestampTz next_delivery;
static TimestampTz next_metrics;
static TimestampTz next_autoscale;

/* the metrics flush's memory, reset by each flush */
static MemoryContext metrics_context = NULL;

/* an on-demand scaling look's memory, reset by each look */
static MemoryContext autoscale_context = NULL;

/* call in a transaction */
static bool
extension_installed(void)
{
	return OidIsValid(get_extension_oid(STREAM_EXTENSION_NAME, true));
}

/*
 * True when another session holds or waits for a lock on our database that
 * conflicts with the RowExclusiveLock every connecting backend takes: DROP
 * DATABASE, ALTER DATABASE RENAME / SET TABLESPACE (AccessExclusiveLock) and
 * CREATE DATABASE using it as template (ShareLock).
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

static void
exit_extension_dropped(void)
{
	slots_report(REPORT_EXTENSION_MISSING);
	ereport(LOG,
			(errmsg("stream worker for database \"%s\" exits: extension \"%s\" was dropped",
					worker_dbname, STREAM_EXTENSION_NAME)));
	proc_exit(0);
}

/* ----------------------------------------------------------------------
 * Maintenance round
 * ----------------------------------------------------------------------
 */

typedef struct MaintenanceRound
{
	MemoryContext context;		/* of the round: the list of streams */
	List	   *stream_ids;
	int32		stream_id;		/* the stream maintain_stream works on */
	bool		extension_missing;
} MaintenanceRound;

/* unit: the streams to maintain */
static void
list_streams(void *arg)
{
	MaintenanceRound *round = arg;

	if (!extension_installed())
	{
		round->extension_missing = true;
		return;
	}
	unit_select(MAINTENANCE_LIST_QUERY, 0, NULL, NULL, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(round->context);

			round->stream_ids = lappend_int(round->stream_ids, DatumGetInt32(d));
			MemoryContextSwitchTo(old);
		}
	}
}

/* unit: what stream.run_maintenance() does for one stream */
static void
maintain_stream(void *arg)
{
	MaintenanceRound *round = arg;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];

	if (!extension_installed())
	{
		round->extension_missing = true;
		return;
	}
	values[0] = Int32GetDatum(round->stream_id);
	unit_select(MAINTENANCE_QUERY, 1, argtypes, values, false);
}

/*
 * The list of streams, then each stream in a unit of its own, so that no
 * lock taken for one stream (a dropped chunk's parent) is held while the
 * others are maintained and no snapshot lasts longer than one stream.
 * Returns false when the extension no longer exists.
 */
static bool
maintenance_round(MemoryContext context)
{
	MaintenanceRound round;
	ListCell   *lc;

	MemoryContextReset(context);
	MemoryContextSwitchTo(context);
	memset(&round, 0, sizeof(round));
	round.context = context;

	if (!run_unit(list_streams, &round))
		ereport(WARNING,
				(errmsg("stream maintenance failed in database \"%s\"",
						worker_dbname),
				 errdetail("The next attempt is in %d seconds.",
						   stream_maintenance_naptime)));
	foreach(lc, round.stream_ids)
	{
		CHECK_FOR_INTERRUPTS();
		/* the main loop lets a pending DROP DATABASE proceed */
		if (round.extension_missing || database_conflict_pending())
			break;
		round.stream_id = lfirst_int(lc);
		if (!run_unit(maintain_stream, &round))
			ereport(WARNING,
					(errmsg("stream maintenance of stream id %d failed in database \"%s\"",
							round.stream_id, worker_dbname),
					 errdetail("The next attempt is in %d seconds.",
							   stream_maintenance_naptime)));
	}

	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	return !round.extension_missing;
}

/* a maintenance round, and when the next is due; returns the time */
static TimestampTz
run_maintenance(MemoryContext context)
{
	TimestampTz now;

	if (!maintenance_round(context))
		exit_extension_dropped();
	now = GetCurrentTimestamp();
	/* counted from the end of the round: rounds never pile up */
	last_maintenance_end = now;
	next_maintenance = TimestampTzPlusMilliseconds(now,
												   (int64) stream_maintenance_naptime * 1000);
	return now;
}

/* ----------------------------------------------------------------------
 * Metrics flush (metrics_flush.c)
 * ----------------------------------------------------------------------
 */

/* a metrics flush, and when the next is due; returns the time */
static TimestampTz
run_metrics(void)
{
	TimestampTz now;

	if (!metrics_flush(metrics_context))
		exit_extension_dropped();
	now = GetCurrentTimestamp();
	next_metrics = TimestampTzPlusMilliseconds(now, (int64) stream_metrics_flush_interval * 1000);
	return now;
}

/* whether the requests taken ask for a metrics flush (stream.flush_metrics) */
static bool
metrics_requested(const WorkerRequests *req)
{
	if (req->all)
		return true;
	for (int i = 0; i < req->nkeys; i++)
		if (req->keys[i] == STREAM_REQUEST_METRICS)
			return true;
	return false;
}

/* ----------------------------------------------------------------------
 * On-demand scaling (autoscale.c)
 * ----------------------------------------------------------------------
 */

/* a look at the on-demand streams, and when the next is due; returns the time */
static TimestampTz
run_autoscale(void)
{
	TimestampTz now;

	if (stream_on_demand_scaling && !autoscale_round(autoscale_context, worker_dbname))
		exit_extension_dropped();
	now = GetCurrentTimestamp();
	next_autoscale = TimestampTzPlusMilliseconds(now, (int64) stream_on_demand_interval_ms);
	return now;
}

/* ----------------------------------------------------------------------
 * Delivery round
 * ----------------------------------------------------------------------
 */

/*
 * One delivery round (delivery/delivery_round.c) with the requests pending now, errors
 * reported and swallowed like a unit's.  Returns true when more is due at
 * once; *missing when the extension is gone.
 */
static bool
delivery_round(MemoryContext context, bool *missing)
{
	WorkerRequests req;
	uint32		done;
	volatile bool more = false;

	slots_take_requests(&req);
	done = req.ticket;
	*missing = false;
	/* flushed after the request was taken: it covers everything counted before it was posted */
	if (metrics_requested(&req))
		(void) run_metrics();
	MemoryContextReset(context);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		more = delivery_run_round(req.keys, req.nkeys, req.all, req.ticket,
								  &done, missing);
		/* event source mappings share the round's cadence and the worker (esm/esm.h) */
		if (!*missing && esm_run_round(missing))
			more = true;
		/* continuous queries (analytics/): one runtime round of their kind */
		if (!*missing && analytics_run_round(missing))
			more = true;
	}
	PG_CATCH();
	{
		unit_recover();
		ereport(WARNING,
				(errmsg("stream delivery round failed in database \"%s\"",
						worker_dbname)));
		/* a flush does not wait for a round that failed */
		done = req.ticket;
		more = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	slots_report_done(done);
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}

/* a delivery round, and when the next is due; returns the time */
static TimestampTz
run_delivery(MemoryContext context)
{
	bool		missing = false;
	bool		more = delivery_round(context, &missing);
	TimestampTz now;

	if (missing)
		exit_extension_dropped();
	now = GetCurrentTimestamp();
	next_delivery = more ? now :
		TimestampTzPlusMilliseconds(now, (int64) stream_delivery_naptime_ms);
	return now;
}

/* ----------------------------------------------------------------------
 * The loop
 * ----------------------------------------------------------------------
 */

/* signals, our slot, the connection, the extension check */
static void
worker_start(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	uint32		generation;
	char	   *name;
	bool		present;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));

	/* only the launcher starts us, and only when shared memory exists */
	if (!slots_initialized())
		proc_exit(0);

	/* a launch left over from a launcher that has since restarted */
	if (!slots_attach_worker(dboid, generation))
	{
		elog(DEBUG1, "stream worker for database %u is stale, exiting", dboid);
		proc_exit(0);
	}

	/* fails (FATAL) when the database was dropped in the meantime */
	worker_connect(dboid, "stream worker");

	StartTransactionCommand();
	name = get_database_name(MyDatabaseId);
	worker_dbname = MemoryContextStrdup(TopMemoryContext, name != NULL ? name : "?");
	present = extension_installed();
	CommitTransactionCommand();

	if (!present)
	{
		slots_report(REPORT_EXTENSION_MISSING);
		elog(DEBUG1, "extension \"%s\" is not installed in database \"%s\"",
			 STREAM_EXTENSION_NAME, worker_dbname);
		proc_exit(0);
	}
	slots_report(REPORT_EXTENSION_PRESENT);

	ereport(LOG,
			(errmsg("stream worker started for database \"%s\"",
					worker_dbname)));
}

static void
reload_settings_if_asked(void)
{
	if (!ConfigReloadPending)
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	/* a changed naptime applies to the current wait already */
	if (last_maintenance_end != 0)
		next_maintenance = TimestampTzPlusMilliseconds(last_maintenance_end,
													   (int64) stream_maintenance_naptime * 1000);
	next_autoscale = Min(next_autoscale,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 (int64) stream_on_demand_interval_ms));
}

static void
leave_if_database_wanted(void)
{
	if (!database_conflict_pending())
		return;
	slots_report(REPORT_DATABASE_BUSY);
	ereport(LOG,
			(errmsg("stream worker for database \"%s\" exits to let a pending DROP, RENAME or copy of the database proceed",
					worker_dbname)));
	proc_exit(0);
}

/* sleep until a round is due, the latch is set or the next probe */
static void
wait_for_work(TimestampTz now)
{
	long		timeout;

	timeout = TimestampDifferenceMilliseconds(now, next_maintenance);
	timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_delivery));
	timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_metrics));
	timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_autoscale));
	timeout = Min(timeout, DB_CONFLICT_POLL_MS);

	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

void
stream_db_worker_main(Datum main_arg)
{
	MemoryContext maintenance_context;
	MemoryContext delivery_context;

	worker_start(main_arg);

	maintenance_context = AllocSetContextCreate(TopMemoryContext,
												"stream maintenance round",
												ALLOCSET_DEFAULT_SIZES);
	delivery_context = AllocSetContextCreate(TopMemoryContext,
											 "stream delivery round",
											 ALLOCSET_DEFAULT_SIZES);
	metrics_context = AllocSetContextCreate(TopMemoryContext,
											"stream metrics flush",
											ALLOCSET_DEFAULT_SIZES);
	autoscale_context = AllocSetContextCreate(TopMemoryContext,
											  "stream on-demand scaling look",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(maintenance_context);
	next_maintenance = GetCurrentTimestamp();
	next_delivery = next_maintenance;
	next_metrics = next_maintenance;
	next_autoscale = next_maintenance;

	for (;;)
	{
		bool		woken;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		reload_settings_if_asked();
		leave_if_database_wanted();

		woken = slots_take_wake();
		now = GetCurrentTimestamp();
		if (woken || now >= next_maintenance)
			now = run_maintenance(maintenance_context);
		if (woken || now >= next_delivery || slots_requests_pending())
			now = run_delivery(delivery_context);
		if (now >= next_metrics)
			now = run_metrics();
		if (now >= next_autoscale)
			now = run_autoscale();

		wait_for_work(now);
	}
}
