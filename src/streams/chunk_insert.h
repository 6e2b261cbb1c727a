/*
 * chunk_insert.h: inserting numbered records into their chunks.
 */
#ifndef STREAM_CHUNK_INSERT_H
#define STREAM_CHUNK_INSERT_H

#include "stream.h"

/* GUC stream.chunk_premake: chunks maintenance keeps ready ahead of the current one */
extern int	stream_chunk_premake;

/* A record to insert; seq and arrival come from seqalloc_reserve. */
typedef struct PutItem
{
	StreamShard *shard;
	text	   *partition_key;
	bytea	   *data;
	int64		seq;
	TimestampTz arrival;
} PutItem;

/*
 * Insert records whose sequence numbers and arrival times are assigned,
 * ordered by sequence number within each chunk.  A missing chunk is made
 * (by the worker when it can), never left to fail the put.
 */
extern void chunk_insert(StreamInfo *info, PutItem *items, int nitems);

#endif							/* STREAM_CHUNK_INSERT_H */
