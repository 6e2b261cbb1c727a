/*
 * seqno.c: the sequence number's text form and hour bucket (seqno.h), the
 * first number of a run that fits a bucket, and the SQL helpers that format
 * and parse it.
 */
#include "streams/seqno.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stream_sequence_text);
PG_FUNCTION_INFO_V1(stream_sequence_parts);
PG_FUNCTION_INFO_V1(stream_hour_bucket_sql);
PG_FUNCTION_INFO_V1(stream_first_seq_sql);

/* Advance a candidate first number past the bucket and counter limits. */
int64
seq_first_of_run(int64 candidate, int64 bucket, int count)
{
	int64		first = Max(candidate, SEQ_FROM_BUCKET(bucket));

	/* the counter half has room for 2^32 numbers per hour bucket */
	if ((first & PG_UINT32_MAX) + count > PG_UINT32_MAX)
		first = SEQ_FROM_BUCKET(SEQ_BUCKET(first) + 1);
	return first;
}

static void
put_digits(char *p, uint64 v, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		p[i] = '0' + (v % 10);
		v /= 10;
	}
}

/* Rewrite only the sequence digits of a formatted sequence number. */
void
seq_format_seq(char *p, int64 seq)
{
	put_digits(p + 1, (uint64) seq, 19);
}

void
seq_format(char *p, int32 stream_id, int32 shard_index, int64 seq)
{
	p[0] = '4';
	put_digits(p + 1, (uint64) seq, 19);
	put_digits(p + 20, (uint32) stream_id, 10);
	put_digits(p + 30, (uint32) shard_index, 10);
}

/* '4' + 19-digit sequence + 10-digit stream id + 10-digit shard index */
char *
seq_to_text(int32 stream_id, int32 shard_index, int64 seq)
{
	char	   *out = palloc(SEQ_TEXT_LEN + 1);

	seq_format(out, stream_id, shard_index, seq);
	out[SEQ_TEXT_LEN] = '\0';
	return out;
}

/* The same as a text datum, without the detour through a C string (hot in reads). */
text *
seq_to_text_datum(int32 stream_id, int32 shard_index, int64 seq)
{
	text	   *t = palloc(VARHDRSZ + SEQ_TEXT_LEN);

	SET_VARSIZE(t, VARHDRSZ + SEQ_TEXT_LEN);
	seq_format(VARDATA(t), stream_id, shard_index, seq);
	return t;
}

bool
seq_from_text(const char *text, int32 *stream_id, int32 *shard_index, int64 *seq)
{
	int64		s = 0,
				id = 0,
				sh = 0;

	if (strlen(text) != SEQ_TEXT_LEN || text[0] != '4')
		return false;
	for (int i = 1; i < SEQ_TEXT_LEN; i++)
	{
		int			d = text[i] - '0';

		if (d < 0 || d > 9)
			return false;
		if (i < 20)
		{
			if (s > (PG_INT64_MAX - d) / 10)
				return false;
			s = s * 10 + d;
		}
		else if (i < 30)
			id = id * 10 + d;
		else
			sh = sh * 10 + d;
	}
	if (id > PG_INT32_MAX || sh > PG_INT32_MAX)
		return false;
	*seq = s;
	*stream_id = (int32) id;
	*shard_index = (int32) sh;
	return true;
}

/* Hours since the Unix epoch: the high half of every sequence number. */
int64
seq_bucket_now(TimestampTz now)
{
	int64		unix_us = now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	return unix_us / USECS_PER_HOUR;
}

/* stream_internal._hour_bucket(timestamptz) RETURNS bigint: the SQL parts' hour bucket */
Datum
stream_hour_bucket_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(seq_bucket_now(PG_GETARG_TIMESTAMPTZ(0)));
}

/* stream_internal._first_seq(bucket bigint) RETURNS bigint: the first sequence number of an hour bucket */
Datum
stream_first_seq_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(SEQ_FROM_BUCKET(PG_GETARG_INT64(0)));
}

/* stream_internal._sequence_text(stream_id int, shard_index int, seq bigint) RETURNS text */
Datum
stream_sequence_text(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(seq_to_text(PG_GETARG_INT32(0), PG_GETARG_INT32(1),
												 PG_GETARG_INT64(2))));
}

/*
 * stream_internal._sequence_parts(sequence_number text, OUT stream_id int,
 *                        OUT shard_index int, OUT seq bigint)
 * All NULL when the text is not a sequence number of ours.
 */
Datum
stream_sequence_parts(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	int32		stream_id,
				shard_index;
	int64		seq;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_sequence_parts must return a composite type");
	if (!PG_ARGISNULL(0) &&
		seq_from_text(text_to_cstring(PG_GETARG_TEXT_PP(0)), &stream_id, &shard_index, &seq))
	{
		values[0] = Int32GetDatum(stream_id);
		values[1] = Int32GetDatum(shard_index);
		values[2] = Int64GetDatum(seq);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
