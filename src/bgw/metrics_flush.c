/*-------------------------------------------------------------------------
 *
 * bgw/metrics_flush.c
 *	  The database worker's metrics unit: the per-minute counts kept in
 *	  shared memory (streams/meter.h) into stream.stream_metrics and
 *	  stream.shard_metrics, and old minutes out of them.
 *
 * Every stream.metrics_flush_interval, and when stream.flush_metrics()
 * asks (a request with key STREAM_REQUEST_METRICS), the worker takes every
 * unflushed minute of its database's shards and hands them to
 * stream_internal._metrics_write() in one unit (one short transaction).
 * Only after that committed are they marked flushed, so a failed unit is
 * retried with the next flush and nothing is counted twice.  Once a
 * minute the unit also deletes the minutes older than
 * stream.metrics_retention.
 *
 * Rules a reader must keep:
 *	- The unit writes only the extension's metric tables, which only this
 *	  worker writes and no role may lock; _metrics_write bounds any lock
 *	  wait with lock_timeout, so no user's transaction stalls the worker.
 *	- Counts of streams deleted since (or of a table the stream id no
 *	  longer names) are dropped by _metrics_write and marked flushed too.
 *	- Memory: the caller's context, reset by the caller for each flush.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "bgw/worker_int.h"
#include "streams/meter.h"

#define METRICS_WRITE_QUERY \
	"SELECT stream_internal._metrics_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
#define METRICS_TRIM_QUERY	"SELECT stream_internal._metrics_trim($1)"
#define METRICS_TRIM_EVERY	USECS_PER_MINUTE
#define UNMETERED_LOG_EVERY	USECS_PER_MINUTE

typedef struct FlushArgs
{
	MeterDelta *deltas;
	int			n;
	bool		trim;
	bool		extension_missing;
} FlushArgs;

static TimestampTz last_trim = 0;
static TimestampTz last_unmetered_log = 0;
static uint64 unmetered_pending = 0;

static Datum
int8_array(const MeterDelta *d, int n, int counter)
{
	Datum	   *v = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		v[i] = Int64GetDatum((int64) d[i].count[counter]);
	return PointerGetDatum(construct_array(v, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* the unit: write the deltas, trim when due */
static void
write_metrics(void *arg)
{
	FlushArgs  *a = arg;
	int			n = a->n;

	if (!OidIsValid(get_extension_oid(STREAM_EXTENSION_NAME, true)))
	{
		a->extension_missing = true;
		return;
	}
	if (n > 0)
	{
		Oid			types[11] = {OIDARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID};
		Datum		values[11];
		Datum	   *relids = palloc(sizeof(Datum) * n);
		Datum	   *streams = palloc(sizeof(Datum) * n);
		Datum	   *shards = palloc(sizeof(Datum) * n);
		Datum	   *minutes = palloc(sizeof(Datum) * n);
		Datum	   *ages = palloc(sizeof(Datum) * n);
		bool	   *age_nulls = palloc(sizeof(bool) * n);
		int			dims[1] = {n};
		int			lbs[1] = {1};

		for (int i = 0; i < n; i++)
		{
			relids[i] = ObjectIdGetDatum(a->deltas[i].relid);
			streams[i] = Int32GetDatum(a->deltas[i].stream_id);
			shards[i] = Int32GetDatum(a->deltas[i].shard_index);
			minutes[i] = TimestampTzGetDatum(meter_minute_start(a->deltas[i].minute));
			ages[i] = Int64GetDatum(a->deltas[i].iterator_age_ms);
			age_nulls[i] = a->deltas[i].iterator_age_ms < 0;
		}
		values[0] = PointerGetDatum(construct_array(relids, n, OIDOID, 4, true, TYPALIGN_INT));
		values[1] = PointerGetDatum(construct_array(streams, n, INT4OID, 4, true, TYPALIGN_INT));
		values[2] = PointerGetDatum(construct_array(shards, n, INT4OID, 4, true, TYPALIGN_INT));
		values[3] = PointerGetDatum(construct_array(minutes, n, TIMESTAMPTZOID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[4] = int8_array(a->deltas, n, METER_INCOMING_BYTES);
		values[5] = int8_array(a->deltas, n, METER_INCOMING_RECORDS);
		values[6] = int8_array(a->deltas, n, METER_OUTGOING_BYTES);
		values[7] = int8_array(a->deltas, n, METER_OUTGOING_RECORDS);
		values[8] = int8_array(a->deltas, n, METER_WRITE_THROTTLED);
		values[9] = int8_array(a->deltas, n, METER_READ_THROTTLED);
		values[10] = PointerGetDatum(construct_md_array(ages, age_nulls, 1, dims, lbs, INT8OID, 8,
														FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		unit_select(METRICS_WRITE_QUERY, 11, types, values, false);
	}
	if (a->trim)
	{
		Oid			type = INTERVALOID;
		Interval   *keep = palloc0(sizeof(Interval));
		Datum		value;

		keep->time = (int64) stream_metrics_retention_min * USECS_PER_MINUTE;
		value = PointerGetDatum(keep);
		unit_select(METRICS_TRIM_QUERY, 1, &type, &value, false);
	}
}

/* Say, at most once a minute, that operations went unmetered. */
static void
log_unmetered(TimestampTz now)
{
	int			used,
				nslots;

	unmetered_pending += meter_status(&used, &nslots, true);
	if (unmetered_pending == 0 || now - last_unmetered_log < UNMETERED_LOG_EVERY)
		return;
	ereport(WARNING,
			(errmsg("stream: %llu puts and reads of shards were neither limited nor counted: no metrics slot was free",
					(unsigned long long) unmetered_pending),
			 errdetail("%d of the %d slots of stream.metrics_slots are in use.", used, nslots),
			 errhint("Raise stream.metrics_slots and restart the server.")));
	unmetered_pending = 0;
	last_unmetered_log = now;
}

/*
 * Flush this database's unflushed minutes (and trim, once a minute).
 * Returns false when the extension no longer exists.
 */
bool
metrics_flush(MemoryContext context)
{
	FlushArgs	a;
	TimestampTz now = GetCurrentTimestamp();

	MemoryContextReset(context);
	MemoryContextSwitchTo(context);
	memset(&a, 0, sizeof(a));
	log_unmetered(now);
	a.n = meter_collect(MyDatabaseId, &a.deltas);
	a.trim = now - last_trim >= METRICS_TRIM_EVERY;
	if (a.n == 0 && !a.trim)
		return true;

	if (run_unit(write_metrics, &a))
	{
		/* committed: no interrupt is served between the commit and this */
		meter_mark_flushed(a.deltas, a.n);
		if (a.trim)
			last_trim = now;
	}
	else
		ereport(WARNING,
				(errmsg("stream metrics flush failed"),
				 errdetail("The counts stay in shared memory; the next flush is in %d seconds.",
						   stream_metrics_flush_interval)));
	pgstat_report_activity(STATE_IDLE, NULL);
	return !a.extension_missing;
}
