/*
 * chunk_scan.c: a shard's records in a range of sequence numbers, oldest
 * first, by btree range scans on the chunks' (shard_id, seq) keys.
 *
 * The scan takes its own fresh snapshot.  The caller computes the range
 * first (read_window.h: below the stable sequence), so every number in it
 * belongs to a transaction that has ended and the snapshot sees all of
 * those that committed.
 */
#include "streams/chunk_scan.h"
#include "streams/chunk.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

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

/*
 * The contract is in chunk_scan.h.  The snapshot is taken here, after the
 * caller computed to_seq from the in-flight bookkeeping (read_window).
 */
int
chunk_scan(StreamInfo *info, StreamShard *shard, int64 from_seq,
		   int64 to_seq, TimestampTz min_arrival, int limit,
		   Size max_bytes, RecordSink sink, void *arg, int64 *next_from)
{
	return chunk_scan_tally(info, shard, from_seq, to_seq, min_arrival, limit, max_bytes,
							sink, arg, next_from, NULL);
}

int
chunk_scan_tally(StreamInfo *info, StreamShard *shard, int64 from_seq,
				 int64 to_seq, TimestampTz min_arrival, int limit,
				 Size max_bytes, RecordSink sink, void *arg, int64 *next_from,
				 ScanTally *tally)
{
	Snapshot	snap;
	int			count = 0;
	Size		bytes = 0;
	bool		done = false;
	int64		last_chunk;

	if (tally != NULL)
		memset(tally, 0, sizeof(*tally));
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
		Relation	rel = chunk_open(info, k, AccessShareLock);
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

			if (tally != NULL)
			{
				if (count == 0)
					tally->first_arrival = rec.arrival;
				tally->last_arrival = rec.arrival;
			}

			/*
			 * Out-of-line values are fetched now, while the chunk is locked;
			 * the copies are freed after the sink, which must not keep them,
			 * so a long read does not accumulate them.  Only counting (no
			 * sink), they stay where they are.
			 */
			if (sink != NULL)
			{
				rec.partition_key = VARATT_IS_EXTERNAL(DatumGetPointer(key)) ?
					PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(key))) : key;
				rec.data = VARATT_IS_EXTERNAL(DatumGetPointer(data)) ?
					PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(data))) : data;
				sink(arg, &rec);
				if (rec.partition_key != key)
					pfree(DatumGetPointer(rec.partition_key));
				if (rec.data != data)
					pfree(DatumGetPointer(rec.data));
			}
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
	if (tally != NULL)
		tally->bytes = bytes;
	return count;
}
