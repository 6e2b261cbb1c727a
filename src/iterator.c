/*
 * iterator.c: shard iterators and reads.
 *
 * An iterator is opaque to the caller: base64 of (version, stream id, shard
 * index, next sequence to read, creation time) followed by an HMAC-SHA256
 * tag over those bytes and the database OID, keyed by the secret in
 * stream.secret.  A tampered or forged iterator fails the tag check, so it
 * can name no stream or shard the server did not hand out; privileges are
 * still checked on every read.
 */
#include "stream.h"
#include "read.h"
#include "module.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memdebug.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(stream_get_shard_iterator);
PG_FUNCTION_INFO_V1(stream_get_records);
PG_FUNCTION_INFO_V1(stream_read_shard);

#define ITERATOR_VERSION	1
#define ITERATOR_BODY_LEN	25	/* version 1 + stream 4 + shard 4 + seq 8 + ms 8 */
#define ITERATOR_TAG_LEN	16
#define ITERATOR_RAW_LEN	(ITERATOR_BODY_LEN + ITERATOR_TAG_LEN)
#define ITERATOR_TEXT_LEN	(4 * ((ITERATOR_RAW_LEN + 2) / 3))	/* padded base64 */
#define ITERATOR_TEXT_MAX	512		/* the API's limit on ShardIterator */


static int64
unix_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

static void
put_be(uint8 *p, uint64 v, int n)
{
	for (int i = n - 1; i >= 0; i--)
	{
		p[i] = v & 0xff;
		v >>= 8;
	}
}

static uint64
get_be(const uint8 *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static void
iterator_tag(const uint8 *body, uint8 *tag)
{
	int			keylen;
	const uint8 *key = stream_iterator_secret(&keylen);
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		db[4];
	uint8		full[PG_SHA256_DIGEST_LENGTH];

	put_be(db, MyDatabaseId, 4);
	if (ctx == NULL ||
		pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, db, sizeof(db)) < 0 ||
		pg_hmac_update(ctx, body, ITERATOR_BODY_LEN) < 0 ||
		pg_hmac_final(ctx, full, sizeof(full)) < 0)
		elog(ERROR, "could not compute shard iterator tag: %s", pg_hmac_error(ctx));
	pg_hmac_free(ctx);
	memcpy(tag, full, ITERATOR_TAG_LEN);
}

static char *
iterator_encode(const ShardIterator *it)
{
	uint8		raw[ITERATOR_RAW_LEN];
	int			enclen = pg_b64_enc_len(ITERATOR_RAW_LEN);
	char	   *out = palloc(enclen + 1);
	int			n;

	raw[0] = ITERATOR_VERSION;
	put_be(raw + 1, (uint32) it->stream_id, 4);
	put_be(raw + 5, (uint32) it->shard_index, 4);
	put_be(raw + 9, (uint64) it->from_seq, 8);
	put_be(raw + 17, (uint64) it->created_ms, 8);
	iterator_tag(raw, raw + ITERATOR_BODY_LEN);
	n = pg_b64_encode((const char *) raw, ITERATOR_RAW_LEN, out, enclen);
	if (n < 0)
		elog(ERROR, "could not encode shard iterator");
	out[n] = '\0';
	return out;
}

static void
invalid_iterator(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: Invalid ShardIterator."),
			 errhint("Use a shard iterator returned by stream.get_shard_iterator() or get_records().")));
}

static void
iterator_decode(const char *text, ShardIterator *it)
{
	int			len = strlen(text);
	uint8		raw[ITERATOR_RAW_LEN + 8];
	uint8		tag[ITERATOR_TAG_LEN];
	uint8		diff = 0;

	if (len < 1 || len > ITERATOR_TEXT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'shardIterator' failed to satisfy constraint: Member must have length %s",
						text, len < 1 ? "greater than or equal to 1" : "less than or equal to 512")));
	if (len != ITERATOR_TEXT_LEN ||
		pg_b64_dec_len(len) > (int) sizeof(raw) ||
		pg_b64_decode(text, len, (char *) raw, sizeof(raw)) != ITERATOR_RAW_LEN ||
		raw[0] != ITERATOR_VERSION)
		invalid_iterator();
	iterator_tag(raw, tag);
	for (int i = 0; i < ITERATOR_TAG_LEN; i++)	/* constant time */
		diff |= tag[i] ^ raw[ITERATOR_BODY_LEN + i];
	if (diff != 0)
		invalid_iterator();
	it->stream_id = (int32) get_be(raw + 1, 4);
	it->shard_index = (int32) get_be(raw + 5, 4);
	it->from_seq = (int64) get_be(raw + 9, 8);
	it->created_ms = (int64) get_be(raw + 17, 8);
}

/*
 * StartingSequenceNumber as the API member: pattern 0|([1-9]\d{0,128}),
 * else ValidationException (before any semantic check, as Kinesis).
 */
static void
check_starting_seq_pattern(const char *seqtext)
{
	if (!stream_is_plain_decimal(seqtext, 129))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
						seqtext)));
}

static int64
parse_starting_seq(const char *seqtext, StreamInfo *info, StreamShard *shard)
{
	int32		stream_id,
				shard_index;
	int64		seq;

	if (!seq_from_text(seqtext, &stream_id, &shard_index, &seq))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: StartingSequenceNumber %s used in GetShardIterator on shard shardId-%012d in stream %s under account %s is invalid.",
						seqtext, shard->shard_index, info->name, STREAM_ACCOUNT)));
	if (stream_id != info->stream_id)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: StartingSequenceNumber %s used in GetShardIterator on shard shardId-%012d in stream %s under account %s is invalid because it did not come from this stream.",
						seqtext, shard->shard_index, info->name, STREAM_ACCOUNT)));
	if (shard_index != shard->shard_index)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Invalid StartingSequenceNumber. It encodes shardId-%012d, while it was used in a call to a shard with shardId-%012d",
						shard_index, shard->shard_index)));
	return seq;
}

/* Zero the alignment padding from p up to end; returns end. */
static inline char *
zero_pad(char *p, char *end)
{
	while (p < end)
		*p++ = 0;
	return end;
}

/* Record sinks (see RecordCollector in read.h). */
static void
collect_first(void *arg, const StreamRecord *rec)
{
	RecordCollector *c = arg;

	if (c->count++ == 0)
		c->first_seq = rec->seq;
}

/*
 * The sequence number of rec as a text datum in the collector's buffer,
 * valid until the next record.  Only the 19 sequence digits change within
 * a read, so the stream and shard digits are formatted once.
 */
static Datum
record_seq_text(RecordCollector *c, const StreamRecord *rec)
{
	if (c->count == 0)
	{
		SET_VARSIZE(&c->seqbuf, VARHDRSZ + SEQ_TEXT_LEN);
		seq_format(c->seqbuf.digits, c->stream_id, c->shard_index, rec->seq);
	}
	else
		seq_format_seq(c->seqbuf.digits, rec->seq);
	c->last_arrival = rec->arrival;
	c->last_seq = rec->seq;
	return PointerGetDatum(&c->seqbuf);
}

/*
 * get_records builds its stream.record[] in a buffer that lives as long as
 * the backend.  A fresh buffer of 1.5 MB per call costs more in page faults
 * than filling it does: the allocator maps blocks that large anew and hands
 * them back to the kernel when they are freed.  A buffer that grew past
 * ARRAY_SCRATCH_KEEP (records near the 10 MiB cap) is given back at the
 * start of the next read.
 */
#define ARRAY_SCRATCH_KEEP	((Size) 4 * 1024 * 1024)

static char *array_scratch;
static Size array_scratch_cap;

static void
array_scratch_reserve(RecordCollector *c, Size need)
{
	Size		cap = Max(need, array_scratch_cap * 2);

	if (need <= array_scratch_cap)
		return;
	if (array_scratch == NULL)
		array_scratch = MemoryContextAlloc(TopMemoryContext, cap);
	else
		array_scratch = repalloc(array_scratch, cap);
	array_scratch_cap = cap;
	c->array = array_scratch;
	c->array_cap = cap;
}

/* Prepare c to collect up to limit records into a stream.record[]. */
void
collector_init_array(RecordCollector *c, Oid rectype, int limit)
{
	TupleDesc	desc;

	memset(c, 0, sizeof(*c));
	c->rectype = rectype;
	desc = lookup_rowtype_tupdesc_copy(rectype, -1);
	/* collect_datum fills records itself and relies on this layout */
	if (desc->natts != 4 ||
		TupleDescAttr(desc, 0)->atttypid != TEXTOID ||
		TupleDescAttr(desc, 1)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(desc, 2)->atttypid != TEXTOID ||
		TupleDescAttr(desc, 3)->atttypid != BYTEAOID)
		elog(ERROR, "type stream.record does not have the expected columns");
	c->desc = BlessTupleDesc(desc);
	c->array_used = ARR_OVERHEAD_NONULLS(1);

	if (array_scratch_cap > ARRAY_SCRATCH_KEEP)
	{
		pfree(array_scratch);
		array_scratch = NULL;
		array_scratch_cap = 0;
	}
	/* room for limit small records up front: growing a large buffer copies it */
	array_scratch_reserve(c, c->array_used + (Size) limit * 192);
	c->array = array_scratch;
	c->array_cap = array_scratch_cap;
	/*
	 * What an earlier read left here is garbage to this one: under valgrind
	 * (make STREAM_VALGRIND=1, test/valgrind.sh) a byte of the result that
	 * this read does not write is reported where it is used.
	 */
	VALGRIND_MAKE_MEM_UNDEFINED(c->array, c->array_cap);
}

/*
 * The stream.record[] collected so far.  It lies in the backend's scratch
 * buffer and stays valid only until the next read: callers copy it into
 * their result (heap_form_tuple does) before reading again.
 */
Datum
collector_array(RecordCollector *c)
{
	ArrayType  *arr = (ArrayType *) c->array;

	Size		end;

	if (c->count == 0)
		return PointerGetDatum(construct_empty_array(c->rectype));
	/* as construct_array, the last element is padded to its alignment too */
	end = TYPEALIGN(ALIGNOF_DOUBLE, c->array_used);
	if (end > c->array_cap)
	{
		array_scratch_reserve(c, end);
		arr = (ArrayType *) c->array;
	}
	zero_pad(c->array + c->array_used, c->array + end);
	c->array_used = end;
	SET_VARSIZE(arr, c->array_used);
	arr->ndim = 1;
	arr->dataoffset = 0;		/* no null bitmap */
	arr->elemtype = c->rectype;
	ARR_DIMS(arr)[0] = c->count;
	ARR_LBOUND(arr)[0] = 1;
	return PointerGetDatum(arr);
}

/*
 * Write a text or bytea value at p as heap_fill_tuple stores it in a
 * tuple's data area (p lies at the same alignment as the data area's
 * offset would) and return the end.  Values are never external here:
 * storage_read fetched them.
 */
static inline char *
fill_varlena(char *p, Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);
	Size		n;

	Assert(!VARATT_IS_EXTERNAL(v));
	if (VARATT_IS_SHORT(v))
	{
		n = VARSIZE_SHORT(v);
		memcpy(p, v, n);
	}
	else if (VARATT_CAN_MAKE_SHORT(v))
	{
		/* as heap_fill_tuple: a small value gets a 1-byte header */
		n = VARATT_CONVERTED_SHORT_SIZE(v);
		SET_VARSIZE_SHORT(p, n);
		memcpy(p + 1, VARDATA(v), n - 1);
	}
	else
	{
		/*
		 * Text and bytea align on int.  The padding must be zero: a reader
		 * (att_align_pointer) takes a non-zero byte there for the 1-byte
		 * header of an unaligned short value, and the scratch buffer holds
		 * whatever an earlier read left in it.
		 */
		p = zero_pad(p, (char *) INTALIGN(p));
		n = VARSIZE(v);
		memcpy(p, v, n);
	}
	return p + n;
}

/*
 * Append a record to the stream.record[] being built, formed in place in
 * the array's buffer.  The first record goes through heap_form_tuple; its
 * header (whatever the server stamps on composite datums) is the template
 * for the rest, whose data areas are filled here directly, as
 * heap_fill_tuple would for (text, timestamptz, text, bytea) without nulls,
 * so a record costs no allocation and is copied once.
 */
void
collect_datum(void *arg, const StreamRecord *rec)
{
	RecordCollector *c = arg;
	Datum		seq = record_seq_text(c, rec);
	Size		start;
	Size		bound;
	char	   *data;
	char	   *p;
	HeapTupleHeader td;

	if (c->count == 0)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		HeapTuple	tup;

		values[0] = seq;
		values[1] = TimestampTzGetDatum(rec->arrival);
		values[2] = rec->partition_key;
		values[3] = rec->data;
		tup = heap_form_tuple(c->desc, values, nulls);
		c->hoff = tup->t_data->t_hoff;
		Assert(c->hoff <= sizeof(c->header) && c->hoff == MAXALIGN(c->hoff));
		memcpy(c->header, tup->t_data, c->hoff);
		heap_freetuple(tup);
	}

	/* at most: header, sequence text, timestamp, two values, their padding */
	start = TYPEALIGN(ALIGNOF_DOUBLE, c->array_used);
	bound = c->hoff + VARHDRSZ + SEQ_TEXT_LEN + 2 * sizeof(int64) +
		VARSIZE_ANY(DatumGetPointer(rec->partition_key)) + ALIGNOF_INT +
		VARSIZE_ANY(DatumGetPointer(rec->data)) + ALIGNOF_INT;
	if (start + bound > c->array_cap)
		array_scratch_reserve(c, start + bound);

	/*
	 * The data area starts MAXALIGNed, like that of a palloc'd tuple.  Every
	 * padding byte is zeroed: the buffer is reused across reads, and the
	 * array must be byte-for-byte what construct_array would have built
	 * (record comparison and hashing look at the bytes).
	 */
	zero_pad(c->array + c->array_used, c->array + start);
	td = (HeapTupleHeader) (c->array + start);
	memcpy(td, c->header, c->hoff);
	data = (char *) td + c->hoff;
	p = fill_varlena(data, seq);
	p = zero_pad(p, (char *) TYPEALIGN(ALIGNOF_DOUBLE, p));	/* timestamptz */
	memcpy(p, &rec->arrival, sizeof(TimestampTz));
	p += sizeof(TimestampTz);
	p = fill_varlena(p, rec->partition_key);
	p = fill_varlena(p, rec->data);
	HeapTupleHeaderSetDatumLength(td, p - (char *) td);
	c->array_used = p - c->array;
	c->count++;
}

static void
collect_row(void *arg, const StreamRecord *rec)
{
	RecordCollector *c = arg;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = record_seq_text(c, rec);
	values[1] = TimestampTzGetDatum(rec->arrival);
	values[2] = rec->partition_key;
	values[3] = rec->data;
	tuplestore_putvalues(c->store, c->desc, values, nulls);
	c->count++;
}

/* Compute a new iterator's position; shared by get_shard_iterator and read_shard. */
ShardIterator
iterator_start(const char *name, const char *shard_id, const char *type,
			   const char *seqtext, bool has_ts, TimestampTz ts)
{
	TimestampTz now = GetCurrentTimestamp();
	StreamInfo *info;
	StreamShard *shard;
	ShardIterator it;
	TimestampTz min_arrival;
	int64		trim_seq;

	/* the request's constraints first (ValidationException), then its meaning */
	stream_check_name(name);
	stream_check_shard_id(shard_id);
	if (strcmp(type, "TRIM_HORIZON") != 0 && strcmp(type, "LATEST") != 0 &&
		strcmp(type, "AT_SEQUENCE_NUMBER") != 0 && strcmp(type, "AFTER_SEQUENCE_NUMBER") != 0 &&
		strcmp(type, "AT_TIMESTAMP") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, TRIM_HORIZON, AT_SEQUENCE_NUMBER]",
						type)));
	if (seqtext != NULL)
		check_starting_seq_pattern(seqtext);
	if (strstr(type, "SEQUENCE_NUMBER") != NULL && seqtext == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified %s and no StartingSequenceNumber.",
						type)));
	if (strstr(type, "SEQUENCE_NUMBER") == NULL && seqtext != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified %s and also a StartingSequenceNumber.",
						type)));
	if (strcmp(type, "AT_TIMESTAMP") == 0)
	{
		if (!has_ts)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")));
		if (ts > now)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: %s, currentTimestampInMillis: %lld",
							TIMESTAMP_NOT_FINITE(ts) ? "infinity" :
							psprintf("%lld", (long long) unix_ms(ts)),
							(long long) unix_ms(now))));
	}

	info = stream_lookup(name, false);
	stream_check_access(info, ACL_SELECT);
	shard = stream_find_shard(info, shard_id, false);
	trim_seq = stream_trim_horizon_seq(info, now, &min_arrival);

	it.stream_id = info->stream_id;
	it.shard_index = shard->shard_index;
	it.created_ms = unix_ms(now);
	if (strcmp(type, "TRIM_HORIZON") == 0)
		it.from_seq = Max(trim_seq, shard->starting_seq);
	else if (strcmp(type, "LATEST") == 0)
		it.from_seq = seqalloc_stable_seq(info, shard);	/* in-flight puts still come */
	else if (strcmp(type, "AT_SEQUENCE_NUMBER") == 0)
		it.from_seq = parse_starting_seq(seqtext, info, shard);
	else if (strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0)
		it.from_seq = parse_starting_seq(seqtext, info, shard) + 1;
	else
	{
		/* AT_TIMESTAMP: arrival times are monotonic per shard */
		TimestampTz at = Max(ts, min_arrival);
		int64		stable = seqalloc_stable_seq(info, shard);
		RecordCollector first;
		int64		next;
		int64		from = Max(SEQ_FROM_BUCKET(seq_bucket_now(at)), shard->starting_seq);

		memset(&first, 0, sizeof(first));
		if (storage_read(info, shard, from, stable, at, 1, GET_RECORDS_MAX_BYTES,
						 collect_first, &first, &next) == 1)
			it.from_seq = first.first_seq;
		else
			it.from_seq = Max(next, from);
	}
	return it;
}

/* Arguments 0-4 of get_shard_iterator and read_shard: name, shard, type, sequence, timestamp. */
static ShardIterator
make_iterator(FunctionCallInfo fcinfo)
{
	stream_require_arg(PG_ARGISNULL(0), "streamName");
	stream_require_arg(PG_ARGISNULL(1), "shardId");
	stream_require_arg(PG_ARGISNULL(2), "shardIteratorType");
	return iterator_start(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						  text_to_cstring(PG_GETARG_TEXT_PP(1)),
						  text_to_cstring(PG_GETARG_TEXT_PP(2)),
						  PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
						  !PG_ARGISNULL(4),
						  PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4));
}

/* stream.get_shard_iterator(stream_name, shard_id, type, starting_sequence_number, timestamp) */
Datum
stream_get_shard_iterator(PG_FUNCTION_ARGS)
{
	ShardIterator it = make_iterator(fcinfo);

	PG_RETURN_TEXT_P(cstring_to_text(iterator_encode(&it)));
}


void
read_check_limit(int limit)
{
	if (limit < 1 || limit > GET_RECORDS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value %s",
						limit, limit < 1 ? "greater than or equal to 1" : "less than or equal to 10000")));
}

ReadResult
read_records(ShardIterator *it, int limit, bool check_expiry,
			 RecordSink sink, RecordCollector *c)
{
	ReadResult	r;
	TimestampTz now = GetCurrentTimestamp();
	StreamShard *shard;
	TimestampTz min_arrival;
	int64		trim_seq,
				stable,
				to,
				from,
				next_from;

	if (check_expiry && unix_ms(now) - it->created_ms > stream_iterator_lifetime_ms)
	{
		TimestampTz created = it->created_ms * 1000 -
			(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
		/* one static buffer behind timestamptz_to_str: copy each in turn */
		char	   *created_text = pstrdup(timestamptz_to_str(created));
		char	   *now_text = pstrdup(timestamptz_to_str(now));

		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ExpiredIteratorException: Iterator expired. The iterator was created at time %s while right now it is %s which is further in the future than the tolerated delay of %d milliseconds.",
						created_text, now_text,
						stream_iterator_lifetime_ms),
				 errhint("Get a new iterator with stream.get_shard_iterator(), e.g. AFTER_SEQUENCE_NUMBER of the last record read.")));
	}

	r.info = stream_lookup_by_id(it->stream_id, false);
	stream_check_access(r.info, ACL_SELECT);
	shard = stream_get_shard(r.info, it->shard_index, false);

	/* the stable sequence first, then the snapshot (inside storage_read) */
	stable = seqalloc_stable_seq(r.info, shard);
	trim_seq = stream_trim_horizon_seq(r.info, now, &min_arrival);
	from = Max(it->from_seq, trim_seq);
	to = shard->closed ? Min(stable, shard->ending_seq + 1) : stable;

	c->stream_id = r.info->stream_id;
	c->shard_index = shard->shard_index;
	r.count = storage_read(r.info, shard, from, to, min_arrival, limit,
						   GET_RECORDS_MAX_BYTES, sink, c, &next_from);
	r.next = *it;
	r.next.from_seq = Max(next_from, it->from_seq);
	r.next.created_ms = unix_ms(now);
	r.shard_ended = shard->closed && r.next.from_seq > shard->ending_seq;
	if (r.next.from_seq >= stable || r.count == 0)
		r.millis_behind = 0;
	else
		r.millis_behind = Max(0, (now - c->last_arrival) / 1000);
	return r;
}

/*
 * stream.get_records(shard_iterator, limit)
 *   RETURNS TABLE(records stream.record[], next_shard_iterator text, millis_behind_latest bigint)
 */
Datum
stream_get_records(PG_FUNCTION_ARGS)
{
	ShardIterator it;
	ReadResult	r;
	TupleDesc	desc;
	Oid			rectype;
	RecordCollector c;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			limit;

	stream_require_arg(PG_ARGISNULL(0), "shardIterator");
	stream_require_arg(PG_ARGISNULL(1), "limit");
	limit = PG_GETARG_INT32(1);
	read_check_limit(limit);
	iterator_decode(text_to_cstring(PG_GETARG_TEXT_PP(0)), &it);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "get_records must return a composite type");
	desc = BlessTupleDesc(desc);
	rectype = get_element_type(TupleDescAttr(desc, 0)->atttypid);

	collector_init_array(&c, rectype, limit);
	r = read_records(&it, limit, true, collect_datum, &c);
	values[0] = collector_array(&c);
	if (r.shard_ended)
		nulls[1] = true;
	else
		values[1] = CStringGetTextDatum(iterator_encode(&r.next));
	values[2] = Int64GetDatum(r.millis_behind);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
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

	stream_require_arg(PG_ARGISNULL(5), "limit");
	limit = PG_GETARG_INT32(5);
	read_check_limit(limit);
	it = make_iterator(fcinfo);

	InitMaterializedSRF(fcinfo, 0);
	memset(&c, 0, sizeof(c));
	c.desc = rsinfo->setDesc;
	c.store = rsinfo->setResult;
	(void) read_records(&it, limit, false, collect_row, &c);
	return (Datum) 0;
}
