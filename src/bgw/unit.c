/*-------------------------------------------------------------------------
 *
 * bgw/unit.c
 *	  What every database-connected worker of ours is built from: how it is
 *	  described to the postmaster, how it connects, and its unit of work.
 *
 * A unit is one short transaction: run_unit(fn, arg) starts it, takes a
 * snapshot, connects to SPI, calls fn and commits.  An error in fn is
 * reported to the server log, the transaction is aborted (the clean-up
 * autovacuum does after a failed table) and run_unit returns false, so
 * that the worker's loop goes on with the next unit; the caller adds a
 * WARNING that says what failed.
 *
 * Rules a reader must keep:
 *	- No snapshot and no transaction lives longer than one unit: a worker
 *	  holds neither between units, nor while it waits on its latch.
 *	- A unit of a database worker's loop never waits long on a lock that
 *	  users can hold: the SQL it runs takes table locks with NOWAIT and
 *	  bounds other waits with lock_timeout (_maintain_stream), and delivery
 *	  only tries its unit lock.  (The one-shot chunk maker may wait: the
 *	  put that started it is all that waits for it.)
 *	- Call run_unit outside a transaction, in a memory context that is not
 *	  a transaction's: run_unit returns in the caller's context, which is
 *	  where fn keeps anything that must outlive the unit.
 *	- Workers run as the bootstrap superuser with search_path pg_catalog,
 *	  pg_temp: SQL they run resolves nothing through user-writable schemas.
 *	- Signals: each worker's main function installs its handlers (SIGTERM:
 *	  die, SIGHUP: reload where it reads settings) before it unblocks
 *	  signals; loops call CHECK_FOR_INTERRUPTS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "bgw/worker_int.h"

/* A dynamic worker connected to a database, never restarted. */
void
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

/* Connect to dboid as the bootstrap superuser; FATAL when it was dropped. */
void
worker_connect(Oid dboid, const char *application_name)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", application_name,
					PGC_USERSET, PGC_S_SESSION);
	/* we run as superuser: resolve nothing through user-writable schemas */
	SetConfigOption("search_path", "pg_catalog, pg_temp",
					PGC_SUSET, PGC_S_SESSION);
}

/*
 * After an error caught outside a transaction's own clean-up: report it,
 * abort the transaction and leave a clean state for the next unit.
 */
void
unit_recover(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
}

/* One unit of work; false when fn raised an error (reported and aborted). */
bool
run_unit(WorkerUnitFn fn, void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		fn(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		unit_recover();
		ok = false;
	}
	PG_END_TRY();

	/* commit and abort leave us in TopMemoryContext */
	MemoryContextSwitchTo(caller_context);
	return ok;
}

/* In a unit: run a query that returns rows (they are in SPI_tuptable). */
void
unit_select(const char *query, int nargs, Oid *argtypes, Datum *values, bool read_only)
{
	int			ret;

	pgstat_report_activity(STATE_RUNNING, query);
	ret = SPI_execute_with_args(query, nargs, argtypes, values, NULL, read_only, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "%s returned %s", query, SPI_result_code_string(ret));
}
