/*
 * lag.c: how far a consumer's position is behind a shard - the C part of
 * the view stream.consumer_lag (src/sql/45_metrics.sql).
 *
 * Behind means behind the newest committed record, not only behind what is
 * readable: records committed above the shard's stable sequence, held
 * back by an open producer transaction with a lower number, count too, and
 * are also shown apart with the transaction that holds them back.  The
 * counts come from a scan of the records (sizes from their headers, no
 * out-of-line value fetched), LAG_SCAN_MAX records per shard at most:
 * beyond, the counts are lower bounds and lag_exact is false.
 *
 * Both functions answer NULL, rather than raising, for a stream or shard
 * that is gone and for a caller who may not read the stream: the view
 * calls them for rows it already filtered, and must not fail on a row
 * deleted meanwhile.
 */
#include "streams/access.h"
#include "streams/chunk_scan.h"
#include "streams/read_window.h"
#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"
#include "streams/iterator.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define LAG_SCAN_MAX	100000

PG_FUNCTION_INFO_V1(stream_shard_lag);
PG_FUNCTION_INFO_V1(stream_checkpoint_next_seq);

/* The shard, if it exists and the caller may read its stream; else NULL. */
static StreamShard *
readable_shard(int32 stream_id, int32 shard_index, StreamInfo **info)
{
	*info = stream_lookup_by_id(stream_id, true);
	if (*info == NULL || !access_allows(*info, GetUserId(), ACL_SELECT))
		return NULL;
	return shard_by_index(*info, shard_index, true);
}

/* Committed records in [from, to), at most LAG_SCAN_MAX. */
static int
count_range(StreamInfo *info, StreamShard *shard, int64 from, int64 to,
			TimestampTz min_arrival, ScanTally *tally)
{
	int64		ignored;

	return chunk_scan_tally(info, shard, from, to, min_arrival, LAG_SCAN_MAX,
							(Size) 1 << 62, NULL, NULL, &ignored, tally);
}

/*
 * stream_internal._shard_lag(stream_id int, shard_index int, next_seq bigint,
 *     OUT records_behind bigint, OUT bytes_behind bigint, OUT lag_exact boolean,
 *     OUT millis_behind_latest bigint, OUT held_back_records bigint,
 *     OUT held_back_millis bigint, OUT oldest_producer_pid int,
 *     OUT oldest_producer_xact_age interval)
 * next_seq: the next number the consumer reads.
 */
Datum
stream_shard_lag(PG_FUNCTION_ARGS)
{
	StreamInfo *info;
	StreamShard *shard;
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {true, true, true, true, true, true, true, true};
	TimestampTz now = GetCurrentTimestamp();

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_shard_lag must return a composite type");
	desc = BlessTupleDesc(desc);

	shard = (PG_ARGISNULL(0) || PG_ARGISNULL(1)) ? NULL :
		readable_shard(PG_GETARG_INT32(0), PG_GETARG_INT32(1), &info);
	if (shard != NULL && !PG_ARGISNULL(2))
	{
		int64		next = PG_GETARG_INT64(2);
		ReadWindow	w;
		SeqHoldback hb;
		ScanTally	readable,
					held;
		int			nreadable,
					nheld = 0;
		int64		end;

		/* the holders first: a transaction that ends between the two only shrinks the window */
		seqalloc_holdback(info, shard, &hb);
		w = read_window(info, shard, next, now);
		end = shard->closed ? shard->ending_seq + 1 : hb.next;
		nreadable = count_range(info, shard, w.from, w.to, w.min_arrival, &readable);
		memset(&held, 0, sizeof(held));
		if (end > Max(w.from, w.to))
			nheld = count_range(info, shard, Max(w.from, w.to), end, w.min_arrival, &held);

		values[0] = Int64GetDatum((int64) nreadable + nheld);
		values[1] = Int64GetDatum((int64) (readable.bytes + held.bytes));
		values[2] = BoolGetDatum(nreadable < LAG_SCAN_MAX && nheld < LAG_SCAN_MAX);
		if (nreadable > 0)
			values[3] = Int64GetDatum(Max(0, (now - readable.first_arrival) / 1000));
		else if (nheld > 0)
			values[3] = Int64GetDatum(Max(0, (now - held.first_arrival) / 1000));
		else
			values[3] = Int64GetDatum(0);
		values[4] = Int64GetDatum((int64) nheld);
		values[5] = Int64GetDatum(nheld > 0 ? Max(0, (now - held.first_arrival) / 1000) : 0);
		for (int i = 0; i < 6; i++)
			nulls[i] = false;
		if (hb.holder_pid != 0)
		{
			Interval   *age = palloc0(sizeof(Interval));

			age->time = Max(0, now - hb.holder_xact_start);
			values[6] = Int32GetDatum(hb.holder_pid);
			values[7] = IntervalPGetDatum(age);
			nulls[6] = nulls[7] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * stream_internal._checkpoint_next_seq(stream_id int, shard_index int,
 *     checkpoint text, initial_timestamp timestamptz) RETURNS bigint
 * The next number a lease's holder reads: after the checkpointed sequence
 * number, or where TRIM_HORIZON, LATEST or AT_TIMESTAMP start now;
 * SHARD_END is past a closed shard's end.  NULL for what names no position
 * of this shard.
 */
Datum
stream_checkpoint_next_seq(PG_FUNCTION_ARGS)
{
	StreamInfo *info;
	StreamShard *shard;
	char	   *cp;
	int32		stream_id,
				shard_index;
	int64		seq;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	shard = readable_shard(PG_GETARG_INT32(0), PG_GETARG_INT32(1), &info);
	if (shard == NULL)
		PG_RETURN_NULL();
	cp = text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (strcmp(cp, "TRIM_HORIZON") == 0)
		PG_RETURN_INT64(shard->starting_seq);	/* read_window raises it to the horizon */
	if (strcmp(cp, "LATEST") == 0)
		PG_RETURN_INT64(seqalloc_stable_seq(info, shard));
	if (strcmp(cp, "SHARD_END") == 0)
	{
		if (!shard->closed)
			PG_RETURN_NULL();
		PG_RETURN_INT64(shard->ending_seq + 1);
	}
	if (strcmp(cp, "AT_TIMESTAMP") == 0)
	{
		ShardIterator it;
		TimestampTz ts;

		if (PG_ARGISNULL(3))
			PG_RETURN_NULL();
		ts = PG_GETARG_TIMESTAMPTZ(3);
		if (ts > GetCurrentTimestamp())
			PG_RETURN_INT64(seqalloc_stable_seq(info, shard));
		it = iterator_start(info->name, shard_id_text(shard->shard_index), "AT_TIMESTAMP",
							NULL, true, ts);
		PG_RETURN_INT64(it.from_seq);
	}
	if (!kinesis_is_plain_decimal(cp, SEQUENCE_NUMBER_MAX_DIGITS) ||
		!seq_from_text(cp, &stream_id, &shard_index, &seq) ||
		stream_id != info->stream_id || shard_index != shard->shard_index)
		PG_RETURN_NULL();
	PG_RETURN_INT64(seq + 1);
}
