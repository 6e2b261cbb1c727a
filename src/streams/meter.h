/*
 * meter.h: per-shard throughput limits and metrics, in shared memory.
 *
 * Every shard that is written or read gets a slot of a fixed-size table
 * in shared memory: the token buckets of Kinesis' per-shard limits
 * (kinesis.h: 1 MiB and 1,000 records per second written, 2 MiB and 5
 * get_records calls per second read) and the shard's counts per minute
 * (the CloudWatch metrics), which the database's worker flushes to
 * stream.stream_metrics and stream.shard_metrics (bgw/metrics_flush.c).
 * The hot paths (puts, reads) touch only their shard's slot, under its
 * spinlock; no table is written on them.  How the table works, what
 * happens when it is full, and what a restart or a crash keeps: the head
 * of meter.c.
 */
#ifndef STREAM_METER_H
#define STREAM_METER_H

#include "stream.h"

/* reads its settings from settings.h */
#include "settings.h"

/* The metrics that add up; IteratorAgeMilliseconds (a maximum) is apart. */
typedef enum MeterCounter
{
	METER_INCOMING_BYTES,		/* partition keys and data put */
	METER_INCOMING_RECORDS,
	METER_OUTGOING_BYTES,		/* partition keys and data read */
	METER_OUTGOING_RECORDS,
	METER_WRITE_THROTTLED,		/* records refused over the write limits */
	METER_READ_THROTTLED,		/* get_records calls refused over the read limits */
	METER_NCOUNTERS
} MeterCounter;

/* One minute of one shard that is not yet flushed, as the worker takes it. */
typedef struct MeterDelta
{
	int			slot;
	uint32		generation;		/* the slot's owner when taken */
	int			ring;
	Oid			relid;			/* the stream's table, stream_data.s<id> */
	int32		stream_id;
	int32		shard_index;
	int64		minute;			/* minutes since the PostgreSQL epoch */
	uint64		count[METER_NCOUNTERS];
	int64		iterator_age_ms;	/* the minute's largest; -1: nothing to flush */
} MeterDelta;

/* Module start-up (module.c): shared memory size and set-up. */
extern Size meter_shmem_size(void);
extern void meter_shmem_init(void);

/* The clock of the token buckets in microseconds (stream.throttle_test_clock). */
extern int64 meter_bucket_clock(TimestampTz now);

/* Count records put to a shard (no limits); nothing with stream.track_metrics off. */
extern void meter_count_write(StreamInfo *info, StreamShard *shard, int records,
							  uint64 bytes, TimestampTz now);

/*
 * Admit records of sizes[0..n) (partition key plus data) to a shard in
 * order against its write limits: refused[i] is set for each record over
 * them.  Counts both; returns how many were refused.
 */
extern int	meter_admit_write(StreamInfo *info, StreamShard *shard, const uint32 *sizes,
							  int n, bool *refused, TimestampTz now);

/* One get_records call against the shard's read limits; false (and counted) when over. */
extern bool meter_admit_read(StreamInfo *info, StreamShard *shard, TimestampTz now);

/*
 * Count what a read returned and its iterator age (-1: none); with debit,
 * take the bytes from the shard's read allowance (limits enforced).
 */
extern void meter_count_read(StreamInfo *info, StreamShard *shard, int records, uint64 bytes,
							 int64 iterator_age_ms, bool debit, TimestampTz now);

/* "Rate exceeded for shard ... in stream ... under account ...", palloc'd. */
extern char *meter_rate_exceeded_message(StreamInfo *info, StreamShard *shard);

/* ProvisionedThroughputExceededException for the shard. */
extern void meter_raise_rate_exceeded(StreamInfo *info, StreamShard *shard) pg_attribute_noreturn();

/*
 * For the worker: every unflushed minute of database dbid's shards, in
 * CurrentMemoryContext; after the flush committed, meter_mark_flushed.
 */
extern int	meter_collect(Oid dbid, MeterDelta **deltas);
extern void meter_mark_flushed(const MeterDelta *deltas, int n);

/*
 * Operations that found no free slot: with take, since the last take (the
 * worker's log), else since start-up; and the slots in use.
 */
extern uint64 meter_status(int *used, int *nslots, bool take);

/*
 * A shard's counts of one minute as they stand in shared memory (flushed
 * or not): what the worker reads to follow a shard's write rate.  False
 * when the shard has no slot or the minute is not held any more.
 */
extern bool meter_shard_minute(StreamInfo *info, StreamShard *shard, int64 minute,
							   uint64 *counts, int64 *iterator_age_ms);

/* Minutes since the PostgreSQL epoch of a time, and back. */
static inline int64
meter_minute_of(TimestampTz t)
{
	return t / USECS_PER_MINUTE;
}

static inline TimestampTz
meter_minute_start(int64 minute)
{
	return minute * USECS_PER_MINUTE;
}

#endif							/* STREAM_METER_H */
