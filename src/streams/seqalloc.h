/*
 * seqalloc.h: sequence numbers handed out per shard so that no reader ever
 * skips one - shared counters, the in-flight registry, the shard's stable
 * sequence and the commit wake-ups of subscribers.  How it works and its
 * locking rules: the head of seqalloc.c.
 */
#ifndef STREAM_SEQALLOC_H
#define STREAM_SEQALLOC_H

#include "stream.h"

/* Module start-up (module.c): shared memory size and set-up, the xact callback. */
extern Size seqalloc_shmem_size(void);
extern void seqalloc_shmem_init(void);
extern void seqalloc_init(void);

/*
 * Reserve count consecutive numbers on a shard for the current transaction
 * and stamp their arrival time; the first in *first.  False when the shard
 * is closed: wait with seqalloc_wait_for_closer(info, *pending), look the
 * stream up again and route again.
 */
extern bool seqalloc_try_reserve(StreamInfo *info, StreamShard *shard, int count,
								 int64 *first, TimestampTz *arrival, bool *pending);
extern void seqalloc_wait_for_closer(StreamInfo *info, bool pending);
/*
 * The same for n distinct shards under one lock: firsts[i] and arrivals[i]
 * for shards[i].  Returns n, or the index of the first closed shard (those
 * before it hold their numbers; *pending as above).
 */
extern int	seqalloc_try_reserve_many(StreamInfo *info, StreamShard *const *shards,
									  const int *counts, int n, int64 *firsts,
									  TimestampTz *arrivals, bool *pending);
/* The same for a shard that cannot close (InternalFailure if it did); returns the first. */
extern int64 seqalloc_reserve(StreamInfo *info, StreamShard *shard, int count,
							  TimestampTz *arrival);
/* seqalloc_try_reserve with the first number at least floor (put_record's sequence_number_for_ordering). */
extern bool seqalloc_try_reserve_above(StreamInfo *info, StreamShard *shard, int count, int64 floor,
									   int64 *first, TimestampTz *arrival, bool *pending);
/* Whether a number may have been handed out in this database (it lies below the durable mark). */
extern bool seqalloc_was_issued(int64 seq);
/*
 * Close a shard (split, merge): it refuses every later reservation; returns
 * its ending sequence number, above every number it handed out.  Undone if
 * the (sub)transaction aborts.
 */
extern int64 seqalloc_close_shard(StreamInfo *info, StreamShard *shard);
/* Every number below it belongs to an ended transaction; call before taking the snapshot. */
extern int64 seqalloc_stable_seq(StreamInfo *info, StreamShard *shard);
/* What holds a shard's stable sequence back (stream.consumer_lag, get_records). */
typedef struct SeqHoldback
{
	int64		stable;			/* the stable sequence */
	int64		next;			/* the next number the counter hands out */
	int			inflight;		/* transactions with numbers in flight on the shard */
	int			holder_pid;		/* the one with the lowest number; 0: none */
	TimestampTz holder_xact_start;	/* when that transaction started */
} SeqHoldback;

extern void seqalloc_holdback(StreamInfo *info, StreamShard *shard, SeqHoldback *hb);
/*
 * Sleep until the stable sequence passes from_seq (true) or timeout_ms pass
 * (false); stop, if not NULL, is asked after every wake-up and ends the wait
 * (false) when it says so.
 */
extern bool seqalloc_wait_for_records(StreamInfo *info, StreamShard *shard,
									  int64 from_seq, long timeout_ms,
									  bool (*stop) (void *arg), void *stop_arg);
/* Wake every session waiting for the shard's records. */
extern void seqalloc_wake_subscribers(StreamInfo *info, StreamShard *shard);

#endif							/* STREAM_SEQALLOC_H */
