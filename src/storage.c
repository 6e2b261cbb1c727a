/*
 * storage.c: record chunks, written and read without SQL.
 *
 * A stream's records live in stream_data.s<id>, range-partitioned on the
 * per-shard sequence number into chunks stream_data.s<id>_<k>; chunk k
 * holds the hour buckets [k * chunk_hours, (k + 1) * chunk_hours).  Since a
 * chunk's name follows from a sequence number, puts and reads open the chunk
 * directly (heap_multi_insert plus index inserts; a btree range scan on
 * (shard_id, seq)) instead of going through the partitioned parent and the
 * planner.  Chunks are insert-only, so they collect no dead tuples, and
 * retention drops whole chunks.
 */
#include "stream.h"
#include "module.h"
#include "bgw/worker.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_inherits.h"
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
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define CHUNK_NATTS 5			/* shard_id, seq, arrival, partition_key, data */

/*
 * Payload bytes of a varlena column value as the 10 MiB cap counts them
 * (uncompressed, without header).  Records are small and stored inline
 * with short headers, so the common cases are answered here without a
 * call; compressed or out-of-line values ask the toaster.
 */
static inline Size
record_value_size(Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (VARATT_IS_EXTERNAL(v))	/* also has a 1-byte header */
		return toast_raw_datum_size(d) - VARHDRSZ;
	if (VARATT_IS_SHORT(v))
		return VARSIZE_SHORT(v) - VARHDRSZ_SHORT;
	if (VARATT_IS_4B_U(v))
		return VARSIZE(v) - VARHDRSZ;
	return toast_raw_datum_size(d) - VARHDRSZ;
}

static int64
chunk_of(StreamInfo *info, int64 seq)
{
	return SEQ_BUCKET(seq) / info->chunk_hours;
}

static Oid
chunk_relid(StreamInfo *info, int64 chunk_no)
{
	char		name[NAMEDATALEN];

	snprintf(name, sizeof(name), "s%d_%lld", info->stream_id, (long long) chunk_no);
	return get_relname_relid(name, info->chunk_nsp);
}

static Relation
open_chunk(StreamInfo *info, int64 chunk_no, LOCKMODE mode)
{
	Oid			relid = chunk_relid(info, chunk_no);
	Relation	rel;

	if (!OidIsValid(relid))
		return NULL;
	/* a concurrent trim may drop it between the name lookup and the lock */
	rel = try_relation_open(relid, mode);
	if (rel != NULL)
	{
		static const Oid types[CHUNK_NATTS] = {INT4OID, INT8OID, TIMESTAMPTZOID, TEXTOID, BYTEAOID};
		TupleDesc	desc = RelationGetDescr(rel);
		bool		ok = desc->natts == CHUNK_NATTS;

		/* the direct insert and scan paths rely on exactly this layout */
		for (int i = 0; ok && i < CHUNK_NATTS; i++)
			ok = !TupleDescAttr(desc, i)->attisdropped && TupleDescAttr(desc, i)->atttypid == types[i];
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("InternalFailure: chunk \"%s\" does not have the layout of a stream chunk",
							RelationGetRelationName(rel)),
					 errdetail("Expected (shard_id int4, seq int8, arrival timestamptz, partition_key text, data bytea).")));
	}
	return rel;
}

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
		stream_worker_wake_now())
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
	if (!parent_locked && stream_make_chunk_in_worker(info->stream_id, chunk_no) &&
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
	Relation	rel = open_chunk(info, chunk_no, RowExclusiveLock);
	TupleDesc	desc;
	TupleTableSlot **slots;
	List	   *indexes;
	ListCell   *lc;
	CommandId	cid;

	if (rel == NULL && make_missing_chunk(info, chunk_no))
		rel = open_chunk(info, chunk_no, RowExclusiveLock);
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
storage_insert(StreamInfo *info, PutItem *items, int nitems)
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

/*
 * Feed a shard's records with from_seq <= seq < to_seq, oldest first, to
 * sink, skipping those that arrived before min_arrival, up to limit records
 * and max_bytes.  Uses a fresh snapshot, taken after the caller computed
 * to_seq from the in-flight bookkeeping.  *next_from is where the next read
 * continues.  Returns the number of records passed to sink.
 */
int
storage_read(StreamInfo *info, StreamShard *shard, int64 from_seq,
			 int64 to_seq, TimestampTz min_arrival, int limit,
			 Size max_bytes, RecordSink sink, void *arg, int64 *next_from)
{
	Snapshot	snap;
	int			count = 0;
	Size		bytes = 0;
	bool		done = false;
	int64		last_chunk;

	*next_from = to_seq;
	if (from_seq >= to_seq || limit <= 0)
	{
		*next_from = Max(from_seq, to_seq);
		return 0;
	}
	last_chunk = chunk_of(info, to_seq - 1);
	snap = RegisterSnapshot(GetLatestSnapshot());

	for (int64 k = chunk_of(info, from_seq); k <= last_chunk && !done; k++)
	{
		Relation	rel = open_chunk(info, k, AccessShareLock);
		Relation	idx;
		IndexScanDesc scan;
		ScanKeyData keys[2];
		TupleTableSlot *slot;

		CHECK_FOR_INTERRUPTS();
		if (rel == NULL)
			continue;			/* trimmed, or never needed */

		idx = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ,
					Int32GetDatum(shard->shard_index));
		ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from_seq));
		scan = index_beginscan(rel, idx, snap, 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		slot = table_slot_create(rel, NULL);

		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			StreamRecord rec;
			Size		size;
			Datum		key,
						data;

			CHECK_FOR_INTERRUPTS();
			/* columns 2-5; shard_id is fixed by the scan key */
			slot_getallattrs(slot);
			rec.seq = DatumGetInt64(slot->tts_values[1]);
			if (rec.seq >= to_seq)
			{
				done = true;
				break;
			}
			rec.arrival = DatumGetTimestampTz(slot->tts_values[2]);
			if (rec.arrival < min_arrival)
				continue;		/* past retention, chunk not yet dropped */

			key = slot->tts_values[3];
			data = slot->tts_values[4];
			size = record_value_size(key) + record_value_size(data);
			if (count > 0 && bytes + size > max_bytes)
			{
				*next_from = rec.seq;
				done = true;
				break;
			}

			/*
			 * Out-of-line values are fetched now, while the chunk is locked;
			 * the copies are freed after the sink, which must not keep them,
			 * so a long read does not accumulate them.
			 */
			rec.partition_key = VARATT_IS_EXTERNAL(DatumGetPointer(key)) ?
				PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(key))) : key;
			rec.data = VARATT_IS_EXTERNAL(DatumGetPointer(data)) ?
				PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(data))) : data;
			sink(arg, &rec);
			if (rec.partition_key != key)
				pfree(DatumGetPointer(rec.partition_key));
			if (rec.data != data)
				pfree(DatumGetPointer(rec.data));
			bytes += size;
			count++;
			if (count >= limit)
			{
				*next_from = rec.seq + 1;
				done = true;
				break;
			}
		}
		ExecDropSingleTupleTableSlot(slot);
		index_endscan(scan);
		index_close(idx, AccessShareLock);
		relation_close(rel, AccessShareLock);
	}
	UnregisterSnapshot(snap);
	return count;
}

static int
cmp_chunk_desc(const void *a, const void *b)
{
	int64		x = ((const int64 *) a)[0];
	int64		y = ((const int64 *) b)[0];

	return (x < y) ? 1 : (x > y) ? -1 : 0;
}

/*
 * Highest committed sequence number of a shard, or -1.  Probes chunks
 * newest first and stops at the first that holds the shard.
 */
int64
storage_max_seq(StreamInfo *info, StreamShard *shard)
{
	List	   *children = find_inheritance_children(info->relid, NoLock);
	int			n = list_length(children);
	int64	   *chunks = palloc(sizeof(int64) * 2 * Max(n, 1));
	int			nchunks = 0;
	ListCell   *lc;
	int64		result = -1;
	Snapshot	snap;
	char		prefix[NAMEDATALEN];
	int			plen;

	plen = snprintf(prefix, sizeof(prefix), "s%d_", info->stream_id);
	foreach(lc, children)
	{
		char	   *name = get_rel_name(lfirst_oid(lc));

		if (name && strncmp(name, prefix, plen) == 0)
		{
			chunks[nchunks * 2] = strtoll(name + plen, NULL, 10);
			chunks[nchunks * 2 + 1] = lfirst_oid(lc);
			nchunks++;
		}
	}
	qsort(chunks, nchunks, sizeof(int64) * 2, cmp_chunk_desc);

	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int i = 0; i < nchunks && result < 0; i++)
	{
		Relation	rel = try_relation_open((Oid) chunks[i * 2 + 1], AccessShareLock);
		Relation	idx;
		IndexScanDesc scan;
		ScanKeyData key;
		TupleTableSlot *slot;

		CHECK_FOR_INTERRUPTS();
		if (rel == NULL)
			continue;
		idx = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ,
					Int32GetDatum(shard->shard_index));
		scan = index_beginscan(rel, idx, snap, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		slot = table_slot_create(rel, NULL);
		if (index_getnext_slot(scan, BackwardScanDirection, slot))
		{
			bool		isnull;

			result = DatumGetInt64(slot_getattr(slot, 2, &isnull));
		}
		ExecDropSingleTupleTableSlot(slot);
		index_endscan(scan);
		index_close(idx, AccessShareLock);
		relation_close(rel, AccessShareLock);
	}
	UnregisterSnapshot(snap);
	pfree(chunks);
	list_free(children);
	return result;
}

/*
 * The lowest sequence number a read may return given the retention period;
 * *min_arrival is the oldest arrival time still retained.
 */
int64
stream_trim_horizon_seq(StreamInfo *info, TimestampTz now, TimestampTz *min_arrival)
{
	*min_arrival = now - (int64) info->retention_hours * USECS_PER_HOUR;
	return SEQ_FROM_BUCKET(seq_bucket_now(*min_arrival));
}
