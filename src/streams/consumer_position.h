/*
 * consumer_position.h: where each registered (enhanced fan-out) consumer
 * last read each shard, for stream.consumer_lag.
 *
 * Kinesis keeps no position for a consumer: each subscribe_to_shard names
 * its start.  To say how far behind a consumer is, subscribe_to_shard
 * notes the continuation of every call here, in shared memory (no table
 * write on the read path).  The table holds CONSUMER_POSITIONS entries;
 * when it is full the entry updated longest ago is dropped.  Positions are
 * not kept across a restart: a consumer shows no position until it
 * subscribes again.
 */
#ifndef STREAM_CONSUMER_POSITION_H
#define STREAM_CONSUMER_POSITION_H

#include "stream.h"

/* Module start-up (module.c): shared memory size and set-up. */
extern Size consumer_position_shmem_size(void);
extern void consumer_position_shmem_init(void);

/* consumer_name of info has read shard up to next_seq (exclusive) at now. */
extern void consumer_position_note(StreamInfo *info, StreamShard *shard,
								   const char *consumer_name, int64 next_seq, TimestampTz now);

#endif							/* STREAM_CONSUMER_POSITION_H */
