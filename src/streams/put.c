/*
 * put.c: stream.put_record and stream.put_records.
 *
 * A put validates everything first (a request-level error changes
 * nothing), routes each record by hash key, meters each shard's records
 * (meter.h: counted, and with stream.enforce_shard_limits admitted or
 * refused against the shard's write limits), reserves sequence numbers for
 * the admitted records of every shard in one step, and inserts straight
 * into the chunk table.  The records become visible when the caller's
 * transaction commits.
 *
 * A refused record is refused before any number is reserved: it takes no
 * sequence number, so it leaves no gap that a reader would wait on, and
 * the admitted records of its shard keep consecutive numbers.  put_record
 * raises ProvisionedThroughputExceededException; put_records answers the
 * refused records with that error code and stores the others.  A record is
 * metered once, against the shard it was first routed to, also when a
 * split or merge makes the put route it again.
 *
 * A shard closed by a split or merge refuses the reservation (seqalloc.h);
 * the put then waits for the resharding transaction, looks the stream up
 * again (the catalog is read with the latest snapshot, so also a
 * transaction whose snapshot predates the split sees the children) and
 * routes every record again.  Numbers reserved before the refusal are
 * skipped.  Should a put be refused PUT_REROUTES times in a row (each
 * refusal needs another reshard to commit meanwhile), put_record fails with
 * InternalFailureException and put_records fails those records with
 * InternalFailure, as Kinesis does for a request it could not place; both
 * are retryable and nothing of the failed records is written.
 */
#include "streams/put.h"
#include "streams/access.h"
#include "streams/chunk_insert.h"
#include "streams/meter.h"
#include "streams/routing.h"
#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "tcop/utility.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define PUT_REROUTES	8

PG_FUNCTION_INFO_V1(stream_put_record);
PG_FUNCTION_INFO_V1(stream_put_records);

/* Validate one record's key, data and optional explicit hash key; return its hash key. */
static uint128
validate_record(text *key, bytea *data, text *ehk, const char *path)
{
	int			key_bytes = VARSIZE_ANY_EXHDR(key);
	int			key_chars = pg_mbstrlen_with_len(VARDATA_ANY(key), key_bytes);
	Size		size = (Size) key_bytes + VARSIZE_ANY_EXHDR(data);
	uint128		hash;

	if (key_chars < 1 || key_chars > PARTITION_KEY_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at '%spartitionKey' failed to satisfy constraint: Member must have length %s",
						path, kinesis_bound_text(key_chars, 1, PARTITION_KEY_MAX_CHARS)),
				 errdetail("The partition key has %d characters.", key_chars)));
	if (size > RECORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at '%sdata' failed to satisfy constraint: Member must have length less than or equal to %d",
						path, RECORD_MAX_BYTES),
				 errdetail("Partition key plus data is %zu bytes; a record may hold at most %d.",
						   size, RECORD_MAX_BYTES)));
	if (ehk != NULL)
	{
		char	   *s = text_to_cstring(ehk);

		/* the member's pattern 0|([1-9]\d{0,38}) first, then the range */
		if (!kinesis_is_plain_decimal(s, EXPLICIT_HASH_KEY_MAX_DIGITS))
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_VALIDATION),
					 errmsg("ValidationException: 1 validation error detected: Value '%s' at '%sexplicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,%d})",
							s, path, EXPLICIT_HASH_KEY_MAX_DIGITS - 1)));
		if (!routing_parse_hash_key(s, &hash))
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was %s",
							s)));
		return hash;
	}
	return routing_hash_key(VARDATA_ANY(key), key_bytes);
}

/*
 * Tell LISTENers of the stream that a shard got records.  NOTIFY is sent at
 * commit only, and PostgreSQL folds identical notifications of a
 * transaction into one: at most one per shard per transaction.
 */
static void
notify_put(StreamInfo *info, StreamShard *shard)
{
	char		channel[32];

	if (!info->notify)
		return;
	snprintf(channel, sizeof(channel), "stream_%d", info->stream_id);
	Async_Notify(channel, shard_id_text(shard->shard_index));
}

/*
 * Meter n records of one shard (sizes: partition key plus data each): with
 * stream.enforce_shard_limits, refused[i] says which are over the shard's
 * write limits.  Without, all are admitted and counted.
 */
static void
meter_put(StreamInfo *info, StreamShard *shard, const uint32 *sizes, int n, bool *refused,
		  TimestampTz now)
{
	if (stream_enforce_shard_limits)
		(void) meter_admit_write(info, shard, sizes, n, refused, now);
	else
	{
		uint64		bytes = 0;

		for (int i = 0; i < n; i++)
		{
			bytes += sizes[i];
			refused[i] = false;
		}
		meter_count_write(info, shard, n, bytes, now);
	}
}

/* The blessed result descriptor, looked up once per call site. */
static TupleDesc
cached_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "function must return a composite type");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		fcinfo->flinfo->fn_extra = desc;
		MemoryContextSwitchTo(old);
	}
	return desc;
}

/*
 * SequenceNumberForOrdering: the member's pattern first (ValidationException),
 * then, once the stream is known, whether it is a number this database may
 * have handed out (InvalidArgumentException, as Kinesis refuses a malformed
 * one or one from the future).  Any stream's and shard's number is taken,
 * as Kinesis takes one of another shard.  Returns the lowest sequence the
 * new record may get: the text of the new number is then greater as a
 * decimal, whichever stream and shard the given one came from (its 19
 * sequence digits lead).
 */
static void
check_ordering_pattern(const char *s)
{
	if (!kinesis_is_plain_decimal(s, SEQUENCE_NUMBER_MAX_DIGITS))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'sequenceNumberForOrdering' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,%d})",
						s, SEQUENCE_NUMBER_MAX_DIGITS - 1)));
}

static int64
ordering_floor(const char *s, StreamInfo *info)
{
	int32		stream_id,
				shard_index;
	int64		seq;

	if (!seq_from_text(s, &stream_id, &shard_index, &seq) || !seqalloc_was_issued(seq))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: ExclusiveMinimumSequenceNumber %s used in PutRecord on stream %s under account %s is invalid.",
						s, info->name, STREAM_ACCOUNT),
				 errhint("Pass the sequence_number a put_record of this database returned.")));
	return seq + 1;
}

/*
 * stream.put_record(stream_name, partition_key, data, explicit_hash_key,
 *                   sequence_number_for_ordering)
 *   RETURNS (shard_id text, sequence_number text)
 */
Datum
stream_put_record(PG_FUNCTION_ARGS)
{
	char	   *name;
	text	   *key;
	bytea	   *data;
	text	   *ehk = NULL;
	char	   *ordering = NULL;
	uint128		hash;
	StreamInfo *info;
	PutItem		item;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	uint32		size;

	PreventCommandIfReadOnly("stream.put_record()");
	PreventCommandIfParallelMode("stream.put_record()");
	kinesis_require_arg(PG_ARGISNULL(0), "streamName");
	kinesis_require_arg(PG_ARGISNULL(1), "partitionKey");
	kinesis_require_arg(PG_ARGISNULL(2), "data");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = PG_GETARG_TEXT_PP(1);
	data = PG_GETARG_BYTEA_PP(2);
	if (!PG_ARGISNULL(3))
		ehk = PG_GETARG_TEXT_PP(3);
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
		ordering = text_to_cstring(PG_GETARG_TEXT_PP(4));

	kinesis_check_stream_name(name);
	hash = validate_record(key, data, ehk, "");
	size = VARSIZE_ANY_EXHDR(key) + VARSIZE_ANY_EXHDR(data);
	if (ordering != NULL)
		check_ordering_pattern(ordering);

	item.partition_key = key;
	item.data = data;
	for (int attempt = 0;; attempt++)
	{
		bool		pending;
		bool		reserved;

		info = stream_lookup(name, false);
		access_check(info, ACL_INSERT);
		item.shard = routing_open_shard(info, hash);
		if (attempt == 0)
		{
			bool		refused;

			meter_put(info, item.shard, &size, 1, &refused, GetCurrentTimestamp());
			if (refused)
				meter_raise_rate_exceeded(info, item.shard);	/* before a number is taken */
		}
		if (ordering != NULL)
			reserved = seqalloc_try_reserve_above(info, item.shard, 1, ordering_floor(ordering, info),
												  &item.seq, &item.arrival, &pending);
		else
			reserved = seqalloc_try_reserve(info, item.shard, 1, &item.seq, &item.arrival, &pending);
		if (reserved)
			break;
		if (attempt >= PUT_REROUTES)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("InternalFailureException: Internal service failure."),
					 errdetail("Shards of stream %s were resharded %d times while the record was routed.",
							   name, attempt + 1),
					 errhint("Retry the put.")));
		seqalloc_wait_for_closer(info, pending);
	}
	chunk_insert(info, &item, 1);
	notify_put(info, item.shard);

	desc = cached_result_desc(fcinfo);
	values[0] = CStringGetTextDatum(shard_id_text(item.shard->shard_index));
	values[1] = CStringGetTextDatum(seq_to_text(info->stream_id, item.shard->shard_index, item.seq));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* Counting sort of the items by shard, stable, so input order holds within a shard. */
static void
sort_by_shard(StreamInfo *info, PutItem *items, int n, PutItem **out)
{
	int		   *start = palloc0(sizeof(int) * (info->nshards + 1));

	for (int i = 0; i < n; i++)
		start[(items[i].shard - info->shards) + 1]++;
	for (int s = 0; s < info->nshards; s++)
		start[s + 1] += start[s];
	for (int i = 0; i < n; i++)
		out[start[items[i].shard - info->shards]++] = &items[i];
	pfree(start);
}

/* A one-dimensional array's elements. */
static Datum *
array_elements(ArrayType *arr, Oid elemtype, bool **nulls, int *n)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ValidationException: record arrays must be one-dimensional")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, nulls, n);
	return elems;
}

/* The record arrays of a SQL function, arguments arg to arg + 2 (put.h). */
void
put_arrays(FunctionCallInfo fcinfo, int arg, PutArrays *a)
{
	int			ndata,
				nehk = 0;

	kinesis_require_arg(PG_ARGISNULL(arg), "records.partitionKey");
	kinesis_require_arg(PG_ARGISNULL(arg + 1), "records.data");
	a->keys = array_elements(PG_GETARG_ARRAYTYPE_P(arg), TEXTOID, &a->key_nulls, &a->n);
	a->datas = array_elements(PG_GETARG_ARRAYTYPE_P(arg + 1), BYTEAOID, &a->data_nulls, &ndata);
	a->ehks = NULL;
	a->ehk_nulls = NULL;
	if (!PG_ARGISNULL(arg + 2))
		a->ehks = array_elements(PG_GETARG_ARRAYTYPE_P(arg + 2), TEXTOID, &a->ehk_nulls, &nehk);
	if (a->n != ndata || (a->ehks != NULL && nehk != a->n))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: partition_keys, data and explicit_hash_keys must have the same number of elements"),
				 errdetail("Got %d partition keys, %d data values and %d explicit hash keys.",
						   a->n, ndata, a->ehks ? nehk : 0)));
}

/* Record i of a: its members, not NULL, detoasted and validated (path records.<i+1>.); returns its hash key (put.h). */
uint128
put_array_record(const PutArrays *a, int i, text **key, bytea **data, text **ehk)
{
	char		path[32];

	snprintf(path, sizeof(path), "records.%d.", i + 1);
	if (a->key_nulls[i])
		kinesis_require_arg(true, psprintf("%spartitionKey", path));
	if (a->data_nulls[i])
		kinesis_require_arg(true, psprintf("%sdata", path));
	*key = (text *) PG_DETOAST_DATUM_PACKED(a->keys[i]);
	*data = (bytea *) PG_DETOAST_DATUM_PACKED(a->datas[i]);
	*ehk = (a->ehks && !a->ehk_nulls[i]) ? (text *) PG_DETOAST_DATUM_PACKED(a->ehks[i]) : NULL;
	return validate_record(*key, *data, *ehk, path);
}

/*
 * stream.put_records(stream_name, partition_keys[], data[], explicit_hash_keys[])
 *   RETURNS TABLE(shard_id, sequence_number, error_code, error_message)
 */
Datum
stream_put_records(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	PutArrays	a;
	int			nkeys;
	Size		total = 0;
	StreamInfo *info;
	PutItem    *items;
	PutItem   **by_shard;
	uint128    *hashes;
	uint32	   *sizes;
	bool	   *refused;
	bool	   *failed;
	int			reroutes = 0;

	PreventCommandIfReadOnly("stream.put_records()");
	PreventCommandIfParallelMode("stream.put_records()");
	kinesis_require_arg(PG_ARGISNULL(0), "streamName");
	kinesis_require_arg(PG_ARGISNULL(1), "records.partitionKey");
	kinesis_require_arg(PG_ARGISNULL(2), "records.data");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	kinesis_check_stream_name(name);

	put_arrays(fcinfo, 1, &a);
	nkeys = a.n;
	if (nkeys < 1 || nkeys > PUT_RECORDS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length %s",
						kinesis_bound_text(nkeys, 1, PUT_RECORDS_MAX)),
				 errdetail("The request has %d records.", nkeys)));

	items = palloc0(sizeof(PutItem) * nkeys);
	by_shard = palloc(sizeof(PutItem *) * nkeys);
	hashes = palloc(sizeof(uint128) * nkeys);
	sizes = palloc(sizeof(uint32) * nkeys);
	refused = palloc(sizeof(bool) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		text	   *ehk;

		CHECK_FOR_INTERRUPTS();
		hashes[i] = put_array_record(&a, i, &items[i].partition_key, &items[i].data, &ehk);
		sizes[i] = VARSIZE_ANY_EXHDR(items[i].partition_key) + VARSIZE_ANY_EXHDR(items[i].data);
		total += sizes[i];
	}
	if (total > PUT_RECORDS_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Records size exceeds %d MB limit",
						PUT_RECORDS_MAX_BYTES / (1024 * 1024)),
				 errdetail("The request holds %zu bytes of partition keys and data; at most %d are allowed.",
						   total, PUT_RECORDS_MAX_BYTES)));

	info = stream_lookup(name, false);
	access_check(info, ACL_INSERT);
	failed = palloc0(sizeof(bool) * nkeys);

	for (int i = 0; i < nkeys; i++)
		items[i].shard = routing_open_shard(info, hashes[i]);

	/*
	 * Meter each shard's records once, in shard order and input order
	 * within a shard: with stream.enforce_shard_limits the shard's limits
	 * refuse some, before any number is reserved.
	 */
	sort_by_shard(info, items, nkeys, by_shard);
	{
		uint32	   *group_sizes = palloc(sizeof(uint32) * nkeys);
		bool	   *group_refused = palloc(sizeof(bool) * nkeys);
		TimestampTz now = GetCurrentTimestamp();

		for (int i = 0; i < nkeys;)
		{
			int			j = i + 1;

			while (j < nkeys && by_shard[j]->shard == by_shard[i]->shard)
				j++;
			for (int k = i; k < j; k++)
				group_sizes[k - i] = sizes[by_shard[k] - items];
			meter_put(info, by_shard[i]->shard, group_sizes, j - i, group_refused, now);
			for (int k = i; k < j; k++)
				refused[by_shard[k] - items] = group_refused[k - i];
			i = j;
		}
	}

	/*
	 * One reservation per shard for its admitted records, all shards under
	 * one lock (seqalloc_try_reserve_many); input order within a shard.  A
	 * closed shard makes the put route every record again.
	 */
	{
		StreamShard **shards = palloc(sizeof(StreamShard *) * nkeys);
		int		   *counts = palloc(sizeof(int) * nkeys);
		int		   *starts = palloc(sizeof(int) * nkeys);
		int64	   *firsts = palloc(sizeof(int64) * nkeys);
		TimestampTz *arrivals = palloc(sizeof(TimestampTz) * nkeys);
		PutItem   **admitted = palloc(sizeof(PutItem *) * nkeys);
		PutItem    *ordered;
		int			nadmitted;
		int			ngroups;
		int			done;
		bool		pending;

reroute:
		nadmitted = ngroups = 0;
		for (int i = 0; i < nkeys; i++)
		{
			PutItem    *it = by_shard[i];

			if (refused[it - items] || failed[it - items])
				continue;
			if (ngroups == 0 || shards[ngroups - 1] != it->shard)
			{
				shards[ngroups] = it->shard;
				counts[ngroups] = 0;
				starts[ngroups] = nadmitted;
				ngroups++;
			}
			counts[ngroups - 1]++;
			admitted[nadmitted++] = it;
		}
		for (done = 0; done < ngroups;)
		{
			int			k = done + seqalloc_try_reserve_many(info, shards + done, counts + done,
															 ngroups - done, firsts + done,
															 arrivals + done, &pending);

			for (int g = done; g < k; g++)
			{
				notify_put(info, shards[g]);
				for (int c = 0; c < counts[g]; c++)
				{
					admitted[starts[g] + c]->seq = firsts[g] + c;
					admitted[starts[g] + c]->arrival = arrivals[g];
				}
			}
			if (k == ngroups)
				break;
			if (reroutes++ < PUT_REROUTES)
			{
				/* a shard closed: route every record again; numbers reserved so far stay unused */
				seqalloc_wait_for_closer(info, pending);
				info = stream_lookup(name, false);
				access_check(info, ACL_INSERT);
				for (int i = 0; i < nkeys; i++)
					items[i].shard = routing_open_shard(info, hashes[i]);
				sort_by_shard(info, items, nkeys, by_shard);
				goto reroute;
			}
			for (int c = 0; c < counts[k]; c++)
				failed[admitted[starts[k] + c] - items] = true;
			done = k + 1;
		}

		/* insert in (shard, sequence) order: each index insert lands next to the last */
		ordered = palloc(sizeof(PutItem) * Max(nadmitted, 1));
		nadmitted = 0;
		for (int i = 0; i < nkeys; i++)
			if (!refused[by_shard[i] - items] && !failed[by_shard[i] - items])
				ordered[nadmitted++] = *by_shard[i];
		if (nadmitted > 0)
			chunk_insert(info, ordered, nadmitted);
	}

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nkeys; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, true, true};

		if (refused[i])
		{
			/* as Kinesis: an error code and message, no shard or number */
			nulls[0] = nulls[1] = true;
			nulls[2] = nulls[3] = false;
			values[2] = CStringGetTextDatum("ProvisionedThroughputExceededException");
			values[3] = CStringGetTextDatum(meter_rate_exceeded_message(info, items[i].shard));
		}
		else if (failed[i])
		{
			nulls[0] = nulls[1] = true;
			nulls[2] = nulls[3] = false;
			values[2] = CStringGetTextDatum("InternalFailure");
			values[3] = CStringGetTextDatum("Internal service failure.");
		}
		else
		{
			values[0] = CStringGetTextDatum(shard_id_text(items[i].shard->shard_index));
			values[1] = CStringGetTextDatum(seq_to_text(info->stream_id, items[i].shard->shard_index,
														items[i].seq));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
