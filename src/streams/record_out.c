/*
 * record_out.c: building a read's output from scanned records (record_out.h).
 *
 * get_records' stream.record[] is formed in place, byte for byte what
 * construct_array would build, in a scratch buffer that lives as long as
 * the backend (see array_scratch); read_shard's rows go to a tuplestore.
 */
#include "streams/record_out.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/memdebug.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

/* Zero the alignment padding from p up to end; returns end. */
static inline char *
zero_pad(char *p, char *end)
{
	while (p < end)
		*p++ = 0;
	return end;
}

/* Record sinks (record_out.h). */
void
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
 * chunk_scan fetched them.
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

void
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
