/*
 * consumer_position.c: registered consumers' last positions (consumer_position.h).
 *
 * A shared hash table under the second lock of the "stream meters"
 * tranche: exclusive to note a position (once per subscribe_to_shard
 * call, not per record), shared to list them.  A full table drops the
 * entry noted longest ago, by a walk over the table under the exclusive
 * lock.
 */
#include "streams/consumer_position.h"
#include "streams/access.h"
#include "streams/stream_catalog.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define CONSUMER_POSITIONS	4096

typedef struct PositionKey
{
	Oid			dbid;
	Oid			relid;
	int32		stream_id;
	int32		shard_index;
	char		consumer[STREAM_NAME_MAX + 1];
} PositionKey;

typedef struct PositionEntry
{
	PositionKey key;
	int64		next_seq;
	TimestampTz noted_at;
} PositionEntry;

static HTAB *positions = NULL;
static LWLock *positions_lock = NULL;

Size
consumer_position_shmem_size(void)
{
	return hash_estimate_size(CONSUMER_POSITIONS, sizeof(PositionEntry));
}

void
consumer_position_shmem_init(void)
{
	HASHCTL		info;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(PositionKey);
	info.entrysize = sizeof(PositionEntry);
	positions = ShmemInitHash("stream consumer positions",
							  CONSUMER_POSITIONS, CONSUMER_POSITIONS,
							  &info, HASH_ELEM | HASH_BLOBS);
	positions_lock = &(GetNamedLWLockTranche("stream meters"))[1].lock;
}

/* Drop the entry noted longest ago; positions_lock held exclusively. */
static void
drop_oldest(void)
{
	HASH_SEQ_STATUS status;
	PositionEntry *e;
	PositionEntry *oldest = NULL;

	hash_seq_init(&status, positions);
	while ((e = hash_seq_search(&status)) != NULL)
		if (oldest == NULL || e->noted_at < oldest->noted_at)
			oldest = e;
	if (oldest != NULL)
		hash_search(positions, &oldest->key, HASH_REMOVE, NULL);
}

void
consumer_position_note(StreamInfo *info, StreamShard *shard, const char *consumer_name,
					   int64 next_seq, TimestampTz now)
{
	PositionKey key;
	PositionEntry *e;
	bool		found;

	if (positions == NULL)
		return;
	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.relid = info->relid;
	key.stream_id = info->stream_id;
	key.shard_index = shard->shard_index;
	strlcpy(key.consumer, consumer_name, sizeof(key.consumer));

	LWLockAcquire(positions_lock, LW_EXCLUSIVE);
	e = hash_search(positions, &key, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		drop_oldest();
		e = hash_search(positions, &key, HASH_ENTER_NULL, &found);
	}
	if (e != NULL)
	{
		/* two subscriptions of one consumer race: the further position wins */
		if (!found || next_seq > e->next_seq)
			e->next_seq = next_seq;
		e->noted_at = now;
	}
	LWLockRelease(positions_lock);
}

PG_FUNCTION_INFO_V1(stream_fanout_positions);

/*
 * stream_internal._fanout_positions()
 *   RETURNS TABLE(stream_id int, consumer_name text, shard_index int,
 *                 next_seq bigint, noted_at timestamptz)
 * The positions of this database's streams that the caller may read.
 */
Datum
stream_fanout_positions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PositionEntry *copy = NULL;
	int			n = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (positions == NULL)
		return (Datum) 0;

	/* copy this database's entries, then look the streams up without the lock */
	LWLockAcquire(positions_lock, LW_SHARED);
	{
		HASH_SEQ_STATUS status;
		PositionEntry *e;
		long		total = hash_get_num_entries(positions);

		copy = palloc(sizeof(PositionEntry) * Max(total, 1));
		hash_seq_init(&status, positions);
		while ((e = hash_seq_search(&status)) != NULL)
			if (e->key.dbid == MyDatabaseId && n < total)
				copy[n++] = *e;
	}
	LWLockRelease(positions_lock);

	for (int i = 0; i < n; i++)
	{
		StreamInfo *info = stream_lookup_by_id(copy[i].key.stream_id, true);
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		CHECK_FOR_INTERRUPTS();
		/* a stream deleted (or made anew) since, or one the caller may not read */
		if (info == NULL || info->relid != copy[i].key.relid ||
			!access_allows(info, GetUserId(), ACL_SELECT))
			continue;
		values[0] = Int32GetDatum(copy[i].key.stream_id);
		values[1] = CStringGetTextDatum(copy[i].key.consumer);
		values[2] = Int32GetDatum(copy[i].key.shard_index);
		values[3] = Int64GetDatum(copy[i].next_seq);
		values[4] = TimestampTzGetDatum(copy[i].noted_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
