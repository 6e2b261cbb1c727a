/*
 * subscription.h: Kinesis' rule for enhanced fan-out subscriptions
 * (kinesis-semantics.md 1.13): one consumer has at most one subscription
 * to a shard.  A subscribe_to_shard call for a consumer and shard while
 * another is active, or within 5 s of the last successful one, gets
 * ResourceInUseException; after 5 s the new call takes over and the active
 * one ends with ResourceInUseException.  A call is one event of a
 * subscription here, so the call that continues where the last one
 * stopped (AFTER_SEQUENCE_NUMBER of its continuation_sequence_number) is
 * that subscription going on and is admitted at once; so is a call that
 * retries, from where it started, one that failed (a cancelled wait).
 *
 * The state lives in shared memory; without shared_preload_libraries the
 * rule is not enforced.
 */
#ifndef STREAM_SUBSCRIPTION_H
#define STREAM_SUBSCRIPTION_H

#include "stream.h"

#define SUBSCRIPTION_TAKEOVER_MS	5000

typedef struct Subscription
{
	void	   *state;			/* NULL: not tracked */
	uint64		generation;		/* this call's */
} Subscription;

extern Size subscription_shmem_size(void);
extern void subscription_shmem_init(void);

/*
 * Admit a call of consumer to shard that starts reading at from_seq, or
 * raise ResourceInUseException.  The caller must end it with
 * subscription_end (also on error: PG_FINALLY).
 */
extern Subscription subscription_begin(StreamInfo *info, StreamShard *shard, const char *consumer,
									   int64 from_seq);
/* Whether another call took this one's place. */
extern bool subscription_taken_over(const Subscription *sub);
/* The call ended; ok: it returned, and a call reading from resume_from continues it. */
extern void subscription_end(const Subscription *sub, bool ok, int64 resume_from);

#endif							/* STREAM_SUBSCRIPTION_H */
