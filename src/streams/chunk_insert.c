/*
 * chunk_insert.c: records into their chunks, without SQL.
 *
 * A put's records, numbered and stamped by seqalloc, go straight into
 * their chunk: heap_multi_insert (one WAL record per heap page) plus an
 * insert into each index.  The executor is not involved, so a chunk may
 * carry only what this path honours: plain column indexes (an exclusion
 * or expression index is refused).  Triggers, CHECK constraints and RLS
 * that someone adds to a chunk are not run.
 */
#include "streams/chunk_insert.h"
#include "settings.h"
#include "streams/chunk.h"
#include "streams/seqno.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/*
 * A put found no chunk for its records: maintenance has not made it (the
 * premade horizon, stream.chunk_premake chunks, ran out: no worker, no
 * pg_cron, or rounds failing).  Rather than fail, have it made, if possible
 * in a transaction other than this one, so that no producer's transaction
 * holds the locks of chunk creation (another producer needing the chunk
 * would wait for it):
 *
 * 1. When this database has a worker, wake it and wait up to
 *    CHUNK_WAIT_MS for the chunk (the worker makes the chunks from the
 *    current one to chunk_premake ahead).
 * 2. Else start a one-shot chunk maker (bgw/chunk_maker.c) and wait for it, unless
 *    this transaction holds a lock on the stream table that it would wait
 *    for.
 * 3. Else make it in this transaction.
 *
 * 2 and 3 run stream_internal._add_chunk_for_put(), which runs as the extension owner;
 * 3 calls it here without an EXECUTE check (it is granted to nobody).
 * Creating a chunk takes SHARE UPDATE EXCLUSIVE on the parent, which no
 * reader, producer or pg_dump conflicts with.  Returns whether the chunk may
 * exist now.
 */
#define CHUNK_WAIT_MS	10000

/* the worker's services (chunk_insert.h) */
static ChunkWakeWorker wake_worker = NULL;
static ChunkMakeInWorker make_in_worker = NULL;

void
chunk_insert_init(ChunkWakeWorker wake, ChunkMakeInWorker make)
{
	wake_worker = wake;
	make_in_worker = make;
}

static bool
chunk_appeared(StreamInfo *info, int64 chunk_no)
{
	AcceptInvalidationMessages();
	return OidIsValid(chunk_relid(info, chunk_no));
}

static bool
make_missing_chunk(StreamInfo *info, int64 chunk_no)
{
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Oid			fn;
	int64		k_now = seq_bucket_now(GetCurrentTimestamp()) / info->chunk_hours;
	LOCKTAG		tag;
	bool		parent_locked = false;

	if (chunk_no >= k_now && chunk_no <= k_now + stream_chunk_premake &&
		wake_worker())
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CHUNK_WAIT_MS);

		while (GetCurrentTimestamp() < deadline)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 20, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (chunk_appeared(info, chunk_no))
				return true;
		}
	}

	/* a chunk maker would wait for a lock of ours that conflicts with its own */
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, info->relid);
	for (LOCKMODE m = ShareUpdateExclusiveLock; m <= AccessExclusiveLock && !parent_locked; m++)
		parent_locked = LockHeldByMe(&tag, m);
	if (!parent_locked && make_in_worker(info->stream_id, chunk_no) &&
		chunk_appeared(info, chunk_no))
		return true;

	fn = LookupFuncName(list_make2(makeString("stream_internal"), makeString("_add_chunk_for_put")),
						2, argtypes, true);
	if (!OidIsValid(fn))
		return false;
	(void) OidFunctionCall2(fn, Int32GetDatum(info->stream_id), Int64GetDatum(chunk_no));
	CommandCounterIncrement();
	return true;
}

/* Insert a run of records that all fall into one chunk. */
static void
insert_run(StreamInfo *info, int64 chunk_no, PutItem *items, int n)
{
	Relation	rel = chunk_open(info, chunk_no, RowExclusiveLock);
	TupleDesc	desc;
	TupleTableSlot **slots;
	List	   *indexes;
	ListCell   *lc;
	CommandId	cid;

	if (rel == NULL && make_missing_chunk(info, chunk_no))
		rel = chunk_open(info, chunk_no, RowExclusiveLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("InternalFailure: stream %s has no chunk for sequence bucket %lld yet",
						info->name, (long long) SEQ_BUCKET(items[0].seq)),
				 errdetail("Chunks are created ahead of need by the stream maintenance; a put makes a missing one itself only from one before the current chunk to stream.chunk_premake chunks ahead."),
				 errhint("Add stream to shared_preload_libraries so its background worker runs, "
						 "or schedule SELECT stream.run_maintenance() with pg_cron every few minutes.")));

	/* after make_missing_chunk, whose commands advanced it */
	cid = GetCurrentCommandId(true);

	/* an unpinned copy: pinning one descriptor per slot costs O(n^2) in the resource owner */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (int i = 0; i < n; i++)
	{
		TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

		ExecClearTuple(slot);
		memset(slot->tts_isnull, 0, sizeof(bool) * CHUNK_NATTS);
		slot->tts_values[0] = Int32GetDatum(items[i].shard->shard_index);
		slot->tts_values[1] = Int64GetDatum(items[i].seq);
		slot->tts_values[2] = TimestampTzGetDatum(items[i].arrival);
		slot->tts_values[3] = PointerGetDatum(items[i].partition_key);
		slot->tts_values[4] = PointerGetDatum(items[i].data);
		ExecStoreVirtualTuple(slot);
		slots[i] = slot;
	}

	/* one WAL record per heap page rather than per record */
	table_multi_insert(rel, slots, n, cid, 0, NULL);

	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(idx);
		IndexUniqueCheck check = idx->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO;

		if (!ii->ii_ReadyForInserts)
		{
			/* being built by CREATE INDEX CONCURRENTLY: it catches up by itself */
			index_close(idx, NoLock);
			continue;
		}
		if (ii->ii_ExclusionOps != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("exclusion constraint index \"%s\" on a stream chunk is not supported",
							RelationGetRelationName(idx))));

		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" on a stream chunk has expressions or a predicate",
							RelationGetRelationName(idx)),
					 errhint("Stream chunks support only plain column indexes.")));
		for (int i = 0; i < n; i++)
		{
			Datum		values[INDEX_MAX_KEYS];
			bool		isnull[INDEX_MAX_KEYS];

			FormIndexDatum(ii, slots[i], NULL, values, isnull);
			index_insert(idx, values, isnull, &slots[i]->tts_tid, rel, check, false, ii);
		}
		index_close(idx, NoLock);
	}
	list_free(indexes);

	for (int i = 0; i < n; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	pfree(slots);
	FreeTupleDesc(desc);
	table_close(rel, NoLock);
}

/* Insert records whose sequence numbers and arrival times are assigned. */
void
chunk_insert(StreamInfo *info, PutItem *items, int nitems)
{
	int			i = 0;

	while (i < nitems)
	{
		int64		chunk_no = chunk_of(info, items[i].seq);
		int			j = i + 1;

		while (j < nitems && chunk_of(info, items[j].seq) == chunk_no)
			j++;
		insert_run(info, chunk_no, items + i, j - i);
		i = j;
	}
}
