/*
 * fanout.c: enhanced fan-out, i.e. records pushed to registered consumers.
 *
 * subscribe_to_shard reads what is readable from the starting position; if
 * there is nothing, it sleeps on the shard's condition variable, which the
 * committing transaction of a put broadcasts (seqalloc.c), and reads again
 * (read.h: the same read, and readable window, as get_records).
 * A commit therefore wakes a subscriber at once, with no polling, and a put
 * that rolls back wakes no one.  Consumers keep no server-side position:
 * each call names its start, so every consumer reads independently.  A
 * consumer has one subscription to a shard at a time (subscription.h).
 */
#include "streams/consumer_position.h"
#include "streams/read.h"
#include "streams/seqalloc.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"
#include "streams/subscription.h"
#include "safe_path.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stream_subscribe_to_shard);

static void
require_consumer(const char *stream_name, const char *consumer_name)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	int			ret;
	bool		found;
	int			path_level;

	args[0] = CStringGetTextDatum(stream_name);
	args[1] = CStringGetTextDatum(consumer_name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	path_level = safe_search_path_begin();
	ret = SPI_execute_with_args("SELECT 1 FROM stream.stream_consumers c "
								"JOIN stream.streams s USING (stream_id) "
								"WHERE s.stream_name = $1 AND c.consumer_name = $2 "
								"AND c.consumer_status = 'ACTIVE'",
								2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.stream_consumers");
	found = SPI_processed > 0;
	safe_search_path_end(path_level);
	SPI_finish();
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: Consumer %s under stream %s under account %s not found.",
						consumer_name, stream_name, STREAM_ACCOUNT),
				 errhint("Register it with stream.register_stream_consumer('%s', '%s').",
						 stream_name, consumer_name)));
}

/* the wait's stop: another call took this subscription over */
static bool
taken_over(void *arg)
{
	return subscription_taken_over((Subscription *) arg);
}

static long
interval_ms(Interval *span)
{
	int64		us = span->time + (int64) span->day * USECS_PER_DAY +
		(int64) span->month * DAYS_PER_MONTH * USECS_PER_DAY;

	return (long) (us / 1000);
}

/*
 * stream.subscribe_to_shard(stream_name, consumer_name, shard_id,
 *     starting_position, starting_sequence_number, wait_timeout, "timestamp")
 *   RETURNS (records stream.record[], continuation_sequence_number text,
 *            millis_behind_latest bigint, child_shards jsonb)
 * At the end of a closed shard (SHARD_END) the continuation is NULL and
 * child_shards names the children, as the last event of a Kinesis
 * subscription does.
 */
Datum
stream_subscribe_to_shard(PG_FUNCTION_ARGS)
{
	char	   *stream_name;
	char	   *consumer_name;
	long		wait_ms;
	ShardIterator it;
	RecordCollector c;
	ReadResult	r;
	TupleDesc	desc;
	Oid			rectype;
	TimestampTz deadline;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, true};
	Subscription sub;

	kinesis_require_arg(PG_ARGISNULL(0), "streamName");
	kinesis_require_arg(PG_ARGISNULL(1), "consumerName");
	kinesis_require_arg(PG_ARGISNULL(2), "shardId");
	kinesis_require_arg(PG_ARGISNULL(3), "startingPosition.type");
	kinesis_require_arg(PG_ARGISNULL(5), "waitTimeout");
	stream_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	consumer_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	wait_ms = interval_ms(PG_GETARG_INTERVAL_P(5));
	if (wait_ms < 0 || wait_ms > SUBSCRIBE_MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: wait_timeout must be between 0 and %d minutes",
						SUBSCRIBE_MAX_WAIT_MS / (60 * 1000)),
				 errdetail("Kinesis ends every subscription after %d minutes; subscribe again with the continuation sequence number.",
						   SUBSCRIBE_MAX_WAIT_MS / (60 * 1000))));

	kinesis_check_stream_name(stream_name);
	require_consumer(stream_name, consumer_name);
	it = iterator_start(stream_name,
						text_to_cstring(PG_GETARG_TEXT_PP(2)),
						text_to_cstring(PG_GETARG_TEXT_PP(3)),
						PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)),
						!PG_ARGISNULL(6),
						PG_ARGISNULL(6) ? 0 : PG_GETARG_TIMESTAMPTZ(6));

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "subscribe_to_shard must return a composite type");
	desc = BlessTupleDesc(desc);
	rectype = get_element_type(TupleDescAttr(desc, 0)->atttypid);
	collector_init_array(&c, rectype, GET_RECORDS_MAX);

	{
		StreamInfo *info = stream_lookup_by_id(it.stream_id, false);

		sub = subscription_begin(info, shard_by_index(info, it.shard_index, false), consumer_name,
								 it.from_seq);
	}
	PG_TRY();
	{
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
		for (;;)
		{
			StreamShard *shard;
			long		remaining;

			CHECK_FOR_INTERRUPTS();
			/* a split committed while we slept: see the shard closed */
			AcceptInvalidationMessages();
			r = read_records(&it, GET_RECORDS_MAX, false, false, collect_datum, &c);
			if (r.count > 0 || r.shard_ended)
				break;
			/* nothing readable: continue from where the read stopped */
			it.from_seq = r.next.from_seq;
			if (subscription_taken_over(&sub))
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_IN_USE),
						 errmsg("ResourceInUseException: Another subscription of consumer %s to shard %s of stream %s under account %s took over this one.",
								consumer_name, shard_id_text(it.shard_index), stream_name, STREAM_ACCOUNT)));
			remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (remaining <= 0)
				break;
			shard = shard_by_index(r.info, it.shard_index, false);
			(void) seqalloc_wait_for_records(r.info, shard, it.from_seq, remaining,
											 taken_over, &sub);
		}
	}
	PG_CATCH();
	{
		subscription_end(&sub, false, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* where this consumer is now, for stream.consumer_lag */
	consumer_position_note(r.info, shard_by_index(r.info, it.shard_index, false), consumer_name,
						   r.next.from_seq, GetCurrentTimestamp());

	values[0] = collector_array(&c);
	if (r.shard_ended)
	{
		nulls[1] = true;
		values[3] = shard_children_jsonb(r.info, shard_by_index(r.info, it.shard_index, false));
		nulls[3] = false;
		subscription_end(&sub, true, r.next.from_seq);
	}
	else
	{
		/* resubscribe with AFTER_SEQUENCE_NUMBER of this; it advances even without records */
		int64		cont = (r.count > 0) ? c.last_seq : r.next.from_seq - 1;

		values[1] = PointerGetDatum(seq_to_text_datum(it.stream_id, it.shard_index, cont));
		subscription_end(&sub, true, cont + 1);
	}
	values[2] = Int64GetDatum(r.millis_behind);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
