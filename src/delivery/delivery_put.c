/*
 * delivery/delivery_put.c: direct put (put_delivery_record, _batch).
 *
 * A direct-put delivery stream reads an internal stream of one shard; a
 * put is an insert into it in the caller's transaction, so direct puts are
 * transactional and commit-ordered like stream puts.  Rules: Firehose's
 * limits (1,000 KiB a record, 500 records and 4 MiB a batch), and the
 * caller needs INSERT on the internal stream (grant_delivery_stream_access).
 */
#include "stream.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "streams/access.h"
#include "streams/chunk_insert.h"
#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/stream_catalog.h"

#include "delivery/delivery_int.h"

PG_FUNCTION_INFO_V1(stream_put_delivery_record);
PG_FUNCTION_INFO_V1(stream_put_delivery_record_batch);

static StreamInfo *
direct_put_stream(const char *name)
{
	DeliveryNameEntry *e = delivery_lookup_name(name);
	StreamInfo *info;

	if (!e->direct_put)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: This operation is not permitted on KinesisStreamAsSource delivery stream type."),
				 errdetail("Firehose %s reads a Kinesis stream; put records to that stream instead.", name)));
	info = stream_lookup_by_id(e->stream_id, true);
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: Firehose %s under account %s not found.",
						name, STREAM_ACCOUNT)));
	if (!access_allows(info, GetUserId(), ACL_INSERT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: User %s is not authorized to put records to Firehose %s",
						GetUserNameFromId(GetUserId(), false), name),
				 errhint("The delivery stream's owner can run stream.grant_delivery_stream_access('%s', role).",
						 name)));
	return info;
}

static void
check_record_size(bytea *data, const char *path)
{
	Size		len = VARSIZE_ANY_EXHDR(data);

	if (len > DELIVERY_RECORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value at '%sdata' failed to satisfy constraint: Member must have length less than or equal to %d",
						path, DELIVERY_RECORD_MAX_BYTES),
				 errdetail("The record has %zu bytes.", len)));
}

static void
direct_put(StreamInfo *info, PutItem *items, int n)
{
	StreamShard *shard = &info->shards[0];
	TimestampTz arrival;
	int64		first;

	for (int i = 0; i < info->nshards; i++)
		if (!info->shards[i].closed)
		{
			shard = &info->shards[i];
			break;
		}
	first = seqalloc_reserve(info, shard, n, &arrival);
	for (int i = 0; i < n; i++)
	{
		items[i].shard = shard;
		items[i].seq = first + i;
		items[i].arrival = arrival;
	}
	chunk_insert(info, items, n);
}

/* stream.put_delivery_record(delivery_stream_name, data) RETURNS text (record id) */
Datum
stream_put_delivery_record(PG_FUNCTION_ARGS)
{
	char	   *name;
	bytea	   *data;
	StreamInfo *info;
	PutItem		item;

	PreventCommandIfReadOnly("stream.put_delivery_record()");
	PreventCommandIfParallelMode("stream.put_delivery_record()");
	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	kinesis_require_arg(PG_ARGISNULL(1), "record.data");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	data = PG_GETARG_BYTEA_PP(1);
	check_record_size(data, "record.");
	info = direct_put_stream(name);

	memset(&item, 0, sizeof(item));
	item.partition_key = cstring_to_text("");
	item.data = data;
	direct_put(info, &item, 1);
	PG_RETURN_TEXT_P(seq_to_text_datum(info->stream_id, item.shard->shard_index, item.seq));
}

/*
 * stream.put_delivery_record_batch(delivery_stream_name, data bytea[])
 *   RETURNS TABLE(record_id text, error_code text, error_message text)
 */
Datum
stream_put_delivery_record_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Size		total = 0;
	PutItem    *items;
	StreamInfo *info;
	text	   *empty;

	PreventCommandIfReadOnly("stream.put_delivery_record_batch()");
	PreventCommandIfParallelMode("stream.put_delivery_record_batch()");
	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	kinesis_require_arg(PG_ARGISNULL(1), "records");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: records must be a one-dimensional array")));
	deconstruct_array(arr, BYTEAOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n < 1 || n > DELIVERY_BATCH_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length %s",
						n < 1 ? "greater than or equal to 1" : "less than or equal to 500"),
				 errdetail("The request has %d records.", n)));
	items = palloc0(sizeof(PutItem) * n);
	empty = cstring_to_text("");
	for (int i = 0; i < n; i++)
	{
		char		path[32];

		snprintf(path, sizeof(path), "records.%d.", i + 1);
		if (nulls[i])
			kinesis_require_arg(true, psprintf("%sdata", path));
		items[i].partition_key = empty;
		items[i].data = (bytea *) PG_DETOAST_DATUM_PACKED(elems[i]);
		check_record_size(items[i].data, path);
		total += VARSIZE_ANY_EXHDR(items[i].data);
	}
	if (total > DELIVERY_BATCH_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Records size exceeds 4 MiB limit"),
				 errdetail("The request holds %zu bytes of data; at most %d are allowed.",
						   total, DELIVERY_BATCH_MAX_BYTES)));
	info = direct_put_stream(name);
	direct_put(info, items, n);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		isnull[3] = {false, true, true};

		values[0] = PointerGetDatum(seq_to_text_datum(info->stream_id, items[i].shard->shard_index,
													  items[i].seq));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}
