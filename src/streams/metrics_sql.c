/*
 * metrics_sql.c: the SQL functions of the shared-memory meters (meter.h):
 * stream.flush_metrics, and for administrators the live per-minute counts
 * of a stream's shards and the state of the slot table.
 *
 * flush_metrics posts a request to this database's worker and waits for
 * its ticket (bgw/worker.h): the worker flushes after it took the request,
 * so everything counted before the call is in the tables when it returns
 * true (the worker's flush runs in its own transaction: the caller's
 * snapshot must be taken after the call to see it, as in READ COMMITTED).
 */
#include "streams/meter.h"
#include "streams/stream_catalog.h"
#include "bgw/worker.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(stream_flush_metrics);
PG_FUNCTION_INFO_V1(stream_live_metrics);
PG_FUNCTION_INFO_V1(stream_meter_status);

/*
 * stream.flush_metrics(timeout_seconds int) RETURNS boolean
 * A worker that is starting (the database is new to the launcher) or
 * restarting is waited for, within the timeout.
 */
Datum
stream_flush_metrics(PG_FUNCTION_ARGS)
{
	int			timeout_s;
	uint32		ticket = 0;
	bool		posted = false;
	TimestampTz deadline;
	int			used,
				nslots;

	kinesis_require_arg(PG_ARGISNULL(0), "timeoutSeconds");
	timeout_s = PG_GETARG_INT32(0);
	if (timeout_s < 0 || timeout_s > 3600)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: timeout_seconds must be between 0 and 3600, not %d",
						timeout_s)));
	(void) meter_status(&used, &nslots, false);
	if (nslots == 0)
	{
		ereport(WARNING,
				(errmsg("stream is not in shared_preload_libraries: there are no metrics to flush")));
		PG_RETURN_BOOL(false);
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) timeout_s * 1000);
	for (;;)
	{
		bool		gone = false;

		CHECK_FOR_INTERRUPTS();
		if (!posted)
			posted = stream_worker_post_request(STREAM_REQUEST_METRICS, &ticket);
		else if (stream_worker_request_done(ticket, &gone))
			PG_RETURN_BOOL(true);
		else if (gone)
			posted = false;		/* the worker left: post again to the next one */
		if (GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (!posted)
		ereport(WARNING,
				(errmsg("no stream worker runs for this database: no metrics were flushed"),
				 errhint("Check stream.worker_enabled and stream.max_databases.")));
	PG_RETURN_BOOL(false);
}

/*
 * stream_internal._live_metrics(stream_id int, minute timestamptz)
 *   RETURNS TABLE(shard_index int, incoming_bytes bigint, incoming_records bigint,
 *                 outgoing_bytes bigint, outgoing_records bigint,
 *                 write_provisioned_throughput_exceeded bigint,
 *                 read_provisioned_throughput_exceeded bigint,
 *                 iterator_age_milliseconds bigint)
 * Each shard's counts of that minute as they stand in shared memory,
 * flushed or not (what an on-demand scaler reads).  Shards without counts
 * of the minute have no row.
 */
Datum
stream_live_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StreamInfo *info;
	int64		minute;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return (Datum) 0;
	info = stream_lookup_by_id(PG_GETARG_INT32(0), true);
	if (info == NULL)
		return (Datum) 0;
	minute = meter_minute_of(PG_GETARG_TIMESTAMPTZ(1));
	for (int i = 0; i < info->nshards; i++)
	{
		uint64		counts[METER_NCOUNTERS];
		int64		age;
		Datum		values[1 + METER_NCOUNTERS + 1];
		bool		nulls[1 + METER_NCOUNTERS + 1];

		if (!meter_shard_minute(info, &info->shards[i], minute, counts, &age))
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(info->shards[i].shard_index);
		for (int c = 0; c < METER_NCOUNTERS; c++)
			values[1 + c] = Int64GetDatum((int64) counts[c]);
		values[1 + METER_NCOUNTERS] = Int64GetDatum(age);
		nulls[1 + METER_NCOUNTERS] = age < 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * stream_internal._meter_status(OUT slots int, OUT slots_used int, OUT unmetered bigint)
 * The slot table: its size, the slots in use, and the puts and reads that
 * found no slot since start-up.
 */
Datum
stream_meter_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			used,
				nslots;
	uint64		unmetered = meter_status(&used, &nslots, false);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_meter_status must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum(nslots);
	values[1] = Int32GetDatum(used);
	values[2] = Int64GetDatum((int64) unmetered);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
