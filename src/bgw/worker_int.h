/*-------------------------------------------------------------------------
 *
 * bgw/worker_int.h
 *	  Declarations shared by the files of src/bgw/ and by no other file.
 *
 * worker_slots.c owns the shared memory: the functions below are the only
 * way to read or change a slot, and no other file takes its lock.  unit.c
 * holds what every database-connected worker of ours is built from.
 *
 * Include postgres.h before this file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_BGW_WORKER_INT_H
#define STREAM_BGW_WORKER_INT_H

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"

#include "bgw/worker.h"

#define STREAM_EXTENSION_NAME	"stream"
#define STREAM_LIBRARY_NAME		"stream"

/* keys of pending requests one slot holds; more make the request stand for all */
#define WORKER_REQUEST_KEYS_MAX	16

/* ---- worker_slots.c ---- */

/* the requests a worker takes for one round */
typedef struct WorkerRequests
{
	uint32		ticket;			/* the latest ticket handed out */
	bool		all;			/* more keys than fit: serve every key */
	int			nkeys;
	int32		keys[WORKER_REQUEST_KEYS_MAX];
} WorkerRequests;

/* what a database worker tells the launcher about itself */
typedef enum WorkerReport
{
	REPORT_EXTENSION_PRESENT,
	REPORT_EXTENSION_MISSING,
	REPORT_DATABASE_BUSY
} WorkerReport;

extern bool slots_initialized(void);
extern int	slots_capacity(void);

/* a database worker, about its own slot (the one slots_attach_worker claimed) */
extern bool slots_attach_worker(Oid dboid, uint32 generation);
extern void slots_report(WorkerReport report);
extern bool slots_take_wake(void);
extern void slots_take_requests(WorkerRequests *req);
extern bool slots_requests_pending(void);
extern void slots_report_done(uint32 done_ticket);

/* the launcher */
extern int	slots_attach_launcher(Oid **adopted);
extern bool slots_reap(Oid dboid, bool stopped, TimestampTz *missing_at, bool *busy);
extern int	slots_collect_wakes(Oid **woken, bool *wake_all);
extern uint32 slots_reserve_launch(Oid dboid);
extern void slots_cancel_launch(Oid dboid, uint32 generation);
extern int	slots_count_starting(void);

/* ---- unit.c ---- */

/* a unit's work; runs in a transaction, connected to SPI, with a snapshot */
typedef void (*WorkerUnitFn) (void *arg);

extern void init_database_worker(BackgroundWorker *worker, const char *function,
								 const char *type);
extern void worker_connect(Oid dboid, const char *application_name);
extern bool run_unit(WorkerUnitFn fn, void *arg);
extern void unit_select(const char *query, int nargs, Oid *argtypes, Datum *values,
						bool read_only);
extern void unit_recover(void);

/* ---- metrics_flush.c ---- */

/* this database's unflushed metrics into their tables; false: the extension is gone */
extern bool metrics_flush(MemoryContext context);

/* ---- autoscale.c ---- */

/* a look at this database's on-demand streams and their reshards; false: the extension is gone */
extern bool autoscale_round(MemoryContext context, const char *dbname);

/* ---- entry points the postmaster calls by name (bgw_function_name) ---- */
extern PGDLLEXPORT void stream_launcher_main(Datum main_arg);
extern PGDLLEXPORT void stream_db_worker_main(Datum main_arg);
extern PGDLLEXPORT void stream_chunk_maker_main(Datum main_arg);

#endif							/* STREAM_BGW_WORKER_INT_H */
