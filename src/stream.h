/*
 * stream.h: the value types the data path of Kinesis Data Streams shares
 * (src/streams/): a stream's metadata as the catalog cache holds it
 * (StreamInfo, StreamShard) and a record as a chunk scan hands it on
 * (StreamRecord, RecordSink).
 *
 * Every module declares its own functions, and the settings it reads, in
 * its own header; include those for the functions.
 */
#ifndef STREAM_H
#define STREAM_H

#include "postgres.h"
#include "datatype/timestamp.h"

#include "kinesis.h"

/* hash keys are unsigned 128-bit integers: c.h's uint128 */
#ifndef HAVE_INT128
#error "stream needs a compiler with a 128-bit integer type"
#endif

/* One shard of a stream (stream.shards). */
typedef struct StreamShard
{
	int32		shard_index;
	uint128		start_hash;
	uint128		end_hash;
	int64		starting_seq;
	int64		ending_seq;		/* valid only when closed */
	bool		closed;
	int32		parent_index;	/* the shard it was split or merged from, or -1 */
	int32		adjacent_parent_index;	/* a merge's other parent, or -1 */
} StreamShard;

/*
 * A stream (stream.streams) with its shards.  The catalog cache owns it:
 * see streams/stream_catalog.h for how long a pointer to it stays valid.
 */
typedef struct StreamInfo
{
	char		name[STREAM_NAME_MAX + 1];	/* hash key */
	int32		stream_id;
	Oid			relid;			/* partitioned parent stream_data.s<id> */
	Oid			chunk_nsp;		/* namespace of the chunk tables */
	int32		retention_hours;
	int32		chunk_hours;
	bool		active;
	bool		notify;			/* NOTIFY stream_<id> with the shard id at commit */
	int			nshards;
	StreamShard *shards;		/* ordered by shard_index */
	int			nopen;
	StreamShard **open_shards;	/* open shards ordered by hash range */
} StreamInfo;

/*
 * A record as a scan sees it.  The datums point into a pinned buffer (or a
 * detoasted copy) and are valid only during the sink callback.
 */
typedef struct StreamRecord
{
	int64		seq;
	TimestampTz arrival;
	Datum		partition_key;
	Datum		data;
} StreamRecord;

/* What a scan does with each record (streams/record_out.h has the usual ones). */
typedef void (*RecordSink) (void *arg, const StreamRecord *rec);

#endif							/* STREAM_H */
