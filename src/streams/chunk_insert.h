/*
 * chunk_insert.h: inserting numbered records into their chunks.
 */
#ifndef STREAM_CHUNK_INSERT_H
#define STREAM_CHUNK_INSERT_H

#include "stream.h"

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
 * The background worker's two services a put may ask for a missing chunk:
 * wake this database's worker for a maintenance round (false when none
 * runs), and run a one-shot chunk maker and wait for it (false when none
 * could start).  _PG_init (module.c) hands them in, so that the data path
 * never calls up into the worker, which calls down into delivery and so
 * into here.
 */
typedef bool (*ChunkWakeWorker) (void);
typedef bool (*ChunkMakeInWorker) (int32 stream_id, int64 chunk_no);

extern void chunk_insert_init(ChunkWakeWorker wake_worker, ChunkMakeInWorker make_in_worker);

/*
 * Insert records whose sequence numbers and arrival times are assigned,
 * ordered by sequence number within each chunk.  A missing chunk is made
 * (by the worker when it can), never left to fail the put.
 */
extern void chunk_insert(StreamInfo *info, PutItem *items, int nitems);

#endif							/* STREAM_CHUNK_INSERT_H */
