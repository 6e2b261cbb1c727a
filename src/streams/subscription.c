/*
 * subscription.c: one subscription per consumer and shard (subscription.h).
 *
 * A shared hash keyed by (database, stream table, shard, consumer) holds
 * the latest admitted call: when it was admitted, whether it still runs
 * (and in which process), where it stopped.  Locking: the LWLock of tranche
 * "stream subscriptions" guards the whole table, exclusive for every
 * change, held for a lookup and a few assignments only; nothing under it
 * raises, allocates or waits.  An entry of a process that died is left
 * "active": its admission time ages it out after 5 s like any other.  A
 * full table drops entries older than 5 s that no call runs under.
 */
#include "streams/subscription.h"
#include "streams/seqalloc.h"
#include "streams/shard.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* reads stream.max_shards, which sizes the table */
#include "settings.h"

typedef struct SubKey
{
	Oid			dbid;
	Oid			relid;			/* the stream's table: a new stream of the same id is another */
	int32		shard_index;
	char		consumer[STREAM_NAME_MAX + 1];
} SubKey;

typedef struct SubState
{
	SubKey		key;
	uint64		generation;		/* of the latest admitted call */
	TimestampTz admitted;
	bool		active;
	/* where the latest call stopped: a call starting here continues it (see the header) */
	int64		resume_from;
} SubState;

/* generations are unique across the table: an entry evicted and reused is another call's */
typedef struct SubShared
{
	uint64		next_generation;
} SubShared;

static SubShared *sub_shared = NULL;
static HTAB *sub_table = NULL;
static LWLock *sub_lock = NULL;

Size
subscription_shmem_size(void)
{
	return add_size(sizeof(SubShared), hash_estimate_size(stream_max_shards, sizeof(SubState)));
}

void
subscription_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	sub_shared = ShmemInitStruct("stream subscription generations", sizeof(SubShared), &found);
	if (!found)
		sub_shared->next_generation = 1;
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(SubKey);
	info.entrysize = sizeof(SubState);
	sub_table = ShmemInitHash("stream subscriptions", stream_max_shards, stream_max_shards,
							  &info, HASH_ELEM | HASH_BLOBS);
	sub_lock = &(GetNamedLWLockTranche("stream subscriptions"))->lock;
}

/* Drop entries no call runs under that are older than the take-over time; caller holds sub_lock. */
static void
evict_old(TimestampTz now)
{
	HASH_SEQ_STATUS status;
	SubState   *st;

	hash_seq_init(&status, sub_table);
	while ((st = hash_seq_search(&status)) != NULL)
		if (TimestampDifferenceExceeds(st->admitted, now, SUBSCRIPTION_TAKEOVER_MS))
			hash_search(sub_table, &st->key, HASH_REMOVE, NULL);
}

typedef enum Admission
{
	ADMIT,
	ADMIT_TAKEOVER,				/* an active call older than 5 s ends */
	REFUSE_ACTIVE,
	REFUSE_RECENT,
	REFUSE_FULL
} Admission;

Subscription
subscription_begin(StreamInfo *info, StreamShard *shard, const char *consumer, int64 from_seq)
{
	Subscription sub = {NULL, 0};
	SubKey		key;
	SubState   *st;
	bool		found;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz admitted = 0;
	Admission	a = ADMIT;

	if (sub_table == NULL)
		return sub;				/* not preloaded: not enforced */
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.relid = info->relid;
	key.shard_index = shard->shard_index;
	strlcpy(key.consumer, consumer, sizeof(key.consumer));

	LWLockAcquire(sub_lock, LW_EXCLUSIVE);
	st = hash_search(sub_table, &key, HASH_ENTER_NULL, &found);
	if (st == NULL)
	{
		evict_old(now);
		st = hash_search(sub_table, &key, HASH_ENTER_NULL, &found);
	}
	if (st == NULL)
		a = REFUSE_FULL;
	else if (found)
	{
		bool		recent = !TimestampDifferenceExceeds(st->admitted, now, SUBSCRIPTION_TAKEOVER_MS);

		admitted = st->admitted;
		if (st->active)
			a = recent ? REFUSE_ACTIVE : ADMIT_TAKEOVER;
		else if (recent && from_seq != st->resume_from)
			a = REFUSE_RECENT;
	}
	if (a == ADMIT || a == ADMIT_TAKEOVER)
	{
		st->generation = sub_shared->next_generation++;
		st->admitted = now;
		st->active = true;
		/* should this call fail, a retry from where it started continues it */
		st->resume_from = from_seq;
		sub.state = st;
		sub.generation = st->generation;
	}
	LWLockRelease(sub_lock);

	if (a == ADMIT_TAKEOVER)
		seqalloc_wake_subscribers(info, shard);	/* the call taken over sees it at once */
	else if (a == REFUSE_FULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_LIMIT),
				 errmsg("LimitExceededException: more than stream.max_shards (%d) subscriptions are in use",
						stream_max_shards),
				 errhint("Raise stream.max_shards and restart the server.")));
	else if (a != ADMIT)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_IN_USE),
				 errmsg("ResourceInUseException: Another active subscription exists for this consumer: %s:%s:%s:%s",
						STREAM_ACCOUNT, info->name, shard_id_text(shard->shard_index), consumer),
				 errdetail(a == REFUSE_ACTIVE
						   ? "A subscribe_to_shard call of this consumer to this shard is running; it began %ld ms ago."
						   : "A subscribe_to_shard call of this consumer to this shard began %ld ms ago.",
						   (long) ((now - admitted) / 1000)),
				 errhint("Subscribe again %d seconds after the other subscription began (it is then taken over), or continue it: AFTER_SEQUENCE_NUMBER of its continuation_sequence_number.",
						 SUBSCRIPTION_TAKEOVER_MS / 1000)));
	return sub;
}

bool
subscription_taken_over(const Subscription *sub)
{
	SubState   *st = sub->state;
	bool		taken;

	if (st == NULL)
		return false;
	LWLockAcquire(sub_lock, LW_SHARED);
	taken = st->generation != sub->generation;
	LWLockRelease(sub_lock);
	return taken;
}

void
subscription_end(const Subscription *sub, bool ok, int64 resume_from)
{
	SubState   *st = sub->state;

	if (st == NULL)
		return;
	LWLockAcquire(sub_lock, LW_EXCLUSIVE);
	/* an entry taken over, or evicted and reused, belongs to another call now */
	if (st->generation == sub->generation && st->active)
	{
		st->active = false;
		if (ok)
			st->resume_from = resume_from;
	}
	LWLockRelease(sub_lock);
}
