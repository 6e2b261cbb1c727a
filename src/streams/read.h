/*
 * read.h: reading a shard from an iterator's position - get_records,
 * read_shard, and subscribe_to_shard (fanout.c), which reads the same way.
 *
 * A read: the iterator (iterator.h) -> the readable window (read_window.h)
 * -> a chunk scan (chunk_scan.h) -> the output (record_out.h).
 */
#ifndef STREAM_READ_H
#define STREAM_READ_H

#include "stream.h"
#include "streams/iterator.h"
#include "streams/record_out.h"

typedef struct ReadResult
{
	StreamInfo *info;			/* the stream read (stream_catalog.h: until the next lookup) */
	int			count;
	bool		shard_ended;	/* closed shard fully read: no next iterator */
	ShardIterator next;
	int64		millis_behind;	/* since the oldest committed record not read arrived */
} ReadResult;

/* The member Limit: 1 to GET_RECORDS_MAX, else ValidationException. */
extern void read_check_limit(int limit);
/*
 * Read up to limit records (and GET_RECORDS_MAX_BYTES) from it's position
 * through sink, after checking the caller may read the stream (and, with
 * check_expiry, that it has not expired).  With limited, the shard's read
 * limits apply (stream.enforce_shard_limits: get_records and read_shard,
 * not enhanced fan-out, which Kinesis meters per consumer).  The read is
 * counted in the shard's metrics (meter.h).
 */
extern ReadResult read_records(ShardIterator *it, int limit, bool check_expiry, bool limited,
							   RecordSink sink, RecordCollector *c);

/* get_records and its user-record overload: the iterator and limit arguments, the result type, the result. */
extern ShardIterator read_get_records_args(FunctionCallInfo fcinfo, int *limit);
extern TupleDesc read_get_records_desc(FunctionCallInfo fcinfo, Oid *rectype);
extern Datum read_get_records_result(TupleDesc desc, Datum records, const ReadResult *r,
									 const ShardIterator *it);

#endif							/* STREAM_READ_H */
