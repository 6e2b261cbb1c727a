/*
 * user_records.c: get_records and read_shard with deaggregate => true -
 * a read's records as the KCL's user records (stream.user_record), the
 * KPL aggregates among them split into their sub-records (deaggregate.h).
 *
 * The read is the one of read.h: limit and the 10 MiB cap count stream
 * records, as GetRecords' Limit does; the user records they hold all come
 * (an aggregate is never cut), so a result may hold more than limit rows.
 * With deaggregate => false every record is one user record (sub-sequence
 * number 0, not aggregated).
 */
#include "streams/deaggregate.h"
#include "streams/read.h"
#include "streams/seqno.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(stream_get_records_deaggregated);
PG_FUNCTION_INFO_V1(stream_read_shard_deaggregated);

#define USER_RECORD_NATTS 7

/*
 * The collector a read's sink gets: base first, as read_records fills and
 * reads it (stream and shard, last arrival for millis_behind_latest).
 */
typedef struct UserCollector
{
	RecordCollector base;
	bool		deaggregate;
	TupleDesc	desc;			/* stream.user_record */
	Oid			rectype;
	ArrayBuildState *astate;	/* get_records */
	Tuplestorestate *store;		/* read_shard */
	text	   *seq;			/* the current record's sequence number */
} UserCollector;

static void
emit_user_record(void *arg, const UserRecord *ur)
{
	UserCollector *c = arg;
	Datum		values[USER_RECORD_NATTS];
	bool		nulls[USER_RECORD_NATTS] = {false, false, false, false, false, false, false};
	bytea	   *data = palloc(VARHDRSZ + ur->data_len);
	HeapTuple	tup;

	SET_VARSIZE(data, VARHDRSZ + ur->data_len);
	if (ur->data_len > 0)
		memcpy(VARDATA(data), ur->data, ur->data_len);
	values[0] = PointerGetDatum(c->seq);
	values[1] = Int64GetDatum(ur->sub_seq);
	values[2] = TimestampTzGetDatum(ur->rec->arrival);
	values[3] = ur->partition_key;
	values[4] = ur->explicit_hash_key;
	nulls[4] = ur->explicit_hash_key == (Datum) 0;
	values[5] = PointerGetDatum(data);
	values[6] = BoolGetDatum(ur->aggregated);
	if (c->store != NULL)
		tuplestore_putvalues(c->store, c->desc, values, nulls);
	else
	{
		tup = heap_form_tuple(c->desc, values, nulls);
		c->astate = accumArrayResult(c->astate, HeapTupleGetDatum(tup), false, c->rectype,
									 CurrentMemoryContext);
		heap_freetuple(tup);
	}
	pfree(data);
}

/* RecordSink: one stream record of the read */
static void
collect_user_records(void *arg, const StreamRecord *rec)
{
	UserCollector *c = arg;

	c->seq = seq_to_text_datum(c->base.stream_id, c->base.shard_index, rec->seq);
	c->base.last_arrival = rec->arrival;
	c->base.last_seq = rec->seq;
	c->base.count++;
	(void) deaggregate_record(rec, c->deaggregate, emit_user_record, c);
	pfree(c->seq);
}

/* desc: of stream.user_record (blessed); rectype: its type, for an array */
static void
user_collector_init(UserCollector *c, TupleDesc desc, Oid rectype, bool deaggregate)
{
	memset(c, 0, sizeof(*c));
	c->deaggregate = deaggregate;
	c->rectype = rectype;
	c->desc = desc;
	if (desc->natts != USER_RECORD_NATTS)
		elog(ERROR, "type stream.user_record does not have the expected columns");
}

/*
 * stream.get_records(shard_iterator, limit, deaggregate)
 *   RETURNS (records stream.user_record[], next_shard_iterator text, millis_behind_latest bigint,
 *            child_shards jsonb)
 */
Datum
stream_get_records_deaggregated(PG_FUNCTION_ARGS)
{
	int			limit;
	ShardIterator it = read_get_records_args(fcinfo, &limit);
	Oid			rectype;
	TupleDesc	desc = read_get_records_desc(fcinfo, &rectype);
	UserCollector c;
	ReadResult	r;

	kinesis_require_arg(PG_ARGISNULL(2), "deaggregate");
	user_collector_init(&c, BlessTupleDesc(lookup_rowtype_tupdesc_copy(rectype, -1)), rectype,
						PG_GETARG_BOOL(2));
	r = read_records(&it, limit, true, true, collect_user_records, &c.base);
	PG_RETURN_DATUM(read_get_records_result(desc, c.astate != NULL ?
											makeArrayResult(c.astate, CurrentMemoryContext) :
											PointerGetDatum(construct_empty_array(c.rectype)),
											&r, &it));
}

/*
 * stream.read_shard(stream_name, shard_id, deaggregate, type, timestamp,
 *                   limit, starting_sequence_number)
 *   RETURNS SETOF stream.user_record
 */
Datum
stream_read_shard_deaggregated(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ShardIterator it;
	UserCollector c;
	int			limit;

	kinesis_require_arg(PG_ARGISNULL(0), "streamName");
	kinesis_require_arg(PG_ARGISNULL(1), "shardId");
	kinesis_require_arg(PG_ARGISNULL(2), "deaggregate");
	kinesis_require_arg(PG_ARGISNULL(3), "shardIteratorType");
	kinesis_require_arg(PG_ARGISNULL(5), "limit");
	limit = PG_GETARG_INT32(5);
	read_check_limit(limit);
	it = iterator_start(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						text_to_cstring(PG_GETARG_TEXT_PP(1)),
						text_to_cstring(PG_GETARG_TEXT_PP(3)),
						PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6)),
						!PG_ARGISNULL(4),
						PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4));

	InitMaterializedSRF(fcinfo, 0);
	user_collector_init(&c, rsinfo->setDesc, InvalidOid, PG_GETARG_BOOL(2));
	c.store = rsinfo->setResult;
	(void) read_records(&it, limit, false, true, collect_user_records, &c.base);
	return (Datum) 0;
}
