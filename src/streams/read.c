/*
 * read.c: get_records and read_shard, and the read both share with
 * subscribe_to_shard (read.h).
 */
#include "streams/read.h"
#include "streams/access.h"
#include "streams/chunk_scan.h"
#include "streams/meter.h"
#include "streams/read_window.h"
#include "streams/seqalloc.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stream_get_records);
PG_FUNCTION_INFO_V1(stream_read_shard);

void
read_check_limit(int limit)
{
	if (limit < 1 || limit > GET_RECORDS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value %s",
						limit, kinesis_bound_text(limit, 1, GET_RECORDS_MAX))));
}

/*
 * Milliseconds the reader is behind after reading up to next, honestly:
 * since the arrival of the oldest committed record it has not read.  When
 * records of the readable window are left (the batch was full) that is at
 * least the age of the last one returned; when the window is read, records
 * may still be committed beyond it, held back by an open producer
 * transaction with a lower number, and the reader is behind those too.
 */
static int64
millis_behind(StreamInfo *info, StreamShard *shard, const ReadWindow *w, int count,
			  int64 next, const ScanTally *tally, TimestampTz now)
{
	SeqHoldback hb;
	ScanTally	held;
	int64		ignored;

	if (count > 0 && next < w->to)
		return Max(0, (now - tally->last_arrival) / 1000);
	if (shard->closed && next > shard->ending_seq)
		return 0;
	seqalloc_holdback(info, shard, &hb);
	if (hb.stable >= hb.next)
		return 0;				/* nothing in flight: the window reaches the newest record */
	if (chunk_scan_tally(info, shard, Max(next, w->to), hb.next, w->min_arrival, 1,
						 GET_RECORDS_MAX_BYTES, NULL, NULL, &ignored, &held) == 0)
		return 0;
	return Max(0, (now - held.first_arrival) / 1000);
}

ReadResult
read_records(ShardIterator *it, int limit, bool check_expiry, bool limited,
			 RecordSink sink, RecordCollector *c)
{
	ReadResult	r;
	TimestampTz now = GetCurrentTimestamp();
	StreamShard *shard;
	ReadWindow	w;
	int64		next_from;
	ScanTally	tally;
	bool		enforce = limited && stream_enforce_shard_limits;

	if (check_expiry)
		iterator_check_expiry(it, now);

	r.info = stream_lookup_by_id(it->stream_id, false);
	access_check(r.info, ACL_SELECT);
	shard = shard_by_index(r.info, it->shard_index, false);
	if (enforce && !meter_admit_read(r.info, shard, now))
		meter_raise_rate_exceeded(r.info, shard);

	/* the window first, then the snapshot (inside chunk_scan) */
	w = read_window(r.info, shard, it->from_seq, now);

	c->stream_id = r.info->stream_id;
	c->shard_index = shard->shard_index;
	r.count = chunk_scan_tally(r.info, shard, w.from, w.to, w.min_arrival, limit,
							   GET_RECORDS_MAX_BYTES, sink, c, &next_from, &tally);
	r.next = *it;
	r.next.from_seq = Max(next_from, it->from_seq);
	r.next.created_ms = iterator_unix_ms(now);
	r.shard_ended = shard->closed && r.next.from_seq > shard->ending_seq;
	r.millis_behind = millis_behind(r.info, shard, &w, r.count, r.next.from_seq, &tally, now);
	/* IteratorAgeMilliseconds: the age of the last record returned, else how far behind */
	meter_count_read(r.info, shard, r.count, tally.bytes,
					 r.count > 0 ? Max(0, (now - tally.last_arrival) / 1000) : r.millis_behind,
					 enforce, now);
	return r;
}

/* Arguments 0 and 1 of get_records (and its user-record overload): the iterator, checked, and the limit. */
ShardIterator
read_get_records_args(FunctionCallInfo fcinfo, int *limit)
{
	ShardIterator it;

	kinesis_require_arg(PG_ARGISNULL(0), "shardIterator");
	kinesis_require_arg(PG_ARGISNULL(1), "limit");
	*limit = PG_GETARG_INT32(1);
	read_check_limit(*limit);
	iterator_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &it);
	return it;
}

/* get_records' result type (blessed) and the element type of its records. */
TupleDesc
read_get_records_desc(FunctionCallInfo fcinfo, Oid *rectype)
{
	TupleDesc	desc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "get_records must return a composite type");
	desc = BlessTupleDesc(desc);
	*rectype = get_element_type(TupleDescAttr(desc, 0)->atttypid);
	return desc;
}

/*
 * The (records, next_shard_iterator, millis_behind_latest, child_shards)
 * row of a read from it: at the end of a closed shard next_shard_iterator
 * is NULL and child_shards names the children to read next (both NULL
 * otherwise, as Kinesis).
 */
Datum
read_get_records_result(TupleDesc desc, Datum records, const ReadResult *r, const ShardIterator *it)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, true};

	values[0] = records;
	if (r->shard_ended)
	{
		nulls[1] = true;
		values[3] = shard_children_jsonb(r->info, shard_by_index(r->info, it->shard_index, false));
		nulls[3] = false;
	}
	else
		values[1] = CStringGetTextDatum(iterator_encode(&r->next));
	values[2] = Int64GetDatum(r->millis_behind);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * stream.get_records(shard_iterator, limit)
 *   RETURNS stream.get_records_result (records stream.record[], next_shard_iterator text,
 *                                      millis_behind_latest bigint, child_shards jsonb)
 * At the end of a closed shard next_shard_iterator is NULL and child_shards
 * names the children to read next (both NULL otherwise, as Kinesis).
 */
Datum
stream_get_records(PG_FUNCTION_ARGS)
{
	int			limit;
	ShardIterator it = read_get_records_args(fcinfo, &limit);
	Oid			rectype;
	TupleDesc	desc = read_get_records_desc(fcinfo, &rectype);
	RecordCollector c;
	ReadResult	r;

	collector_init_array(&c, rectype, limit);
	r = read_records(&it, limit, true, true, collect_datum, &c);
	PG_RETURN_DATUM(read_get_records_result(desc, collector_array(&c), &r, &it));
}

/*
 * stream.read_shard(stream_name, shard_id, type, starting_sequence_number,
 *                   timestamp, limit) RETURNS SETOF stream.record
 * One read from a new iterator, as rows: pleasant in psql.
 */
Datum
stream_read_shard(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ShardIterator it;
	RecordCollector c;
	int			limit;

	kinesis_require_arg(PG_ARGISNULL(5), "limit");
	limit = PG_GETARG_INT32(5);
	read_check_limit(limit);
	it = iterator_start_args(fcinfo);

	InitMaterializedSRF(fcinfo, 0);
	memset(&c, 0, sizeof(c));
	c.desc = rsinfo->setDesc;
	c.store = rsinfo->setResult;
	(void) read_records(&it, limit, false, true, collect_row, &c);
	return (Datum) 0;
}
