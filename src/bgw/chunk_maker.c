/*-------------------------------------------------------------------------
 *
 * bgw/chunk_maker.c
 *	  One-shot chunk maker: a put that found no chunk for its records has
 *	  it made in a transaction of its own (storage.c), so that no
 *	  producer's transaction holds the locks of chunk creation.
 *
 * The put registers a dynamic worker and waits until it has exited; the
 * worker connects to the put's database, runs
 * stream_internal._add_chunk_for_put() as one unit and exits.  It needs no
 * shared memory of ours, so it works without shared_preload_libraries too.
 *
 * Rules a reader must keep:
 *	- Only SIGTERM is handled (die); the worker reads no settings.
 *	- The exit code says whether the unit failed (1) or not (0); the put
 *	  looks for the chunk either way and makes it itself if it is missing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"

#include "bgw/worker_int.h"

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

/* the unit */
static void
make_chunk(void *arg)
{
	ChunkMakerArgs *args = arg;
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Datum		values[2];

	values[0] = Int32GetDatum(args->stream_id);
	values[1] = Int64GetDatum(args->chunk_no);
	unit_select(CHUNK_MAKER_QUERY, 2, argtypes, values, false);
}

void
stream_chunk_maker_main(Datum main_arg)
{
	ChunkMakerArgs args;
	bool		ok;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	worker_connect(args.dboid, "stream chunk maker");

	ok = run_unit(make_chunk, &args);
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(ok ? 0 : 1);
}
