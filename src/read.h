/*
 * read.h: reading shards, shared by get_records, read_shard and the
 * enhanced fan-out subscriptions.
 */
#ifndef STREAM_READ_H
#define STREAM_READ_H

#include "stream.h"
#include "access/tupdesc.h"
#include "utils/tuplestore.h"

typedef struct ShardIterator
{
	int32		stream_id;
	int32		shard_index;
	int64		from_seq;		/* next sequence number to read */
	int64		created_ms;		/* Unix epoch milliseconds */
} ShardIterator;

/*
 * What a read does with each record: remember the first (AT_TIMESTAMP),
 * build composite datums for an array (get_records) or rows of a
 * tuplestore (read_shard).  Each forms its output straight from the
 * scanned tuple, so a record is copied once.
 */
typedef struct RecordCollector
{
	int32		stream_id;
	int32		shard_index;
	int			count;
	int64		first_seq;
	TimestampTz last_arrival;
	int64		last_seq;
	TupleDesc	desc;			/* of stream.record */
	Oid			rectype;
	char	   *array;			/* get_records: the result array, built in place
								 * in the backend's scratch buffer */
	char		header[64];		/* composite datum header of the first record */
	Size		hoff;
	struct
	{
		int32		vl_len_;
		char		digits[SEQ_TEXT_LEN];
	}			seqbuf;			/* last sequence number as a text datum */
	Size		array_used;
	Size		array_cap;
	Tuplestorestate *store;		/* read_shard */
} RecordCollector;

typedef struct ReadResult
{
	StreamInfo *info;
	int			count;
	bool		shard_ended;	/* closed shard fully read: no next iterator */
	ShardIterator next;
	int64		millis_behind;
} ReadResult;

extern ShardIterator iterator_start(const char *name, const char *shard_id, const char *type,
									const char *seqtext, bool has_ts, TimestampTz ts);
extern ReadResult read_records(ShardIterator *it, int limit, bool check_expiry,
							   RecordSink sink, RecordCollector *c);
extern void collector_init_array(RecordCollector *c, Oid rectype, int limit);
extern Datum collector_array(RecordCollector *c);
extern void collect_datum(void *arg, const StreamRecord *rec);
extern void read_check_limit(int limit);

#endif							/* STREAM_READ_H */
