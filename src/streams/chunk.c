/*
 * chunk.c: the names of a stream's data table and chunks (for C and, as
 * stream_internal._data_table, _chunk_table and _chunk_number, for SQL),
 * finding and opening the chunks, and the committed maximum of a shard.
 *
 * Since a chunk's name follows from a sequence number (chunk.h), puts and
 * reads open the chunk directly instead of going through the partitioned
 * parent and the planner.  Chunks are insert-only, so they collect no dead
 * tuples, and retention drops whole chunks.
 */
#include "streams/chunk.h"
#include "streams/seqno.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(stream_data_table_sql);
PG_FUNCTION_INFO_V1(stream_chunk_table_sql);
PG_FUNCTION_INFO_V1(stream_chunk_number_sql);

void
chunk_table_name(char *out, int32 stream_id)
{
	snprintf(out, NAMEDATALEN, "s%d", stream_id);
}

void
chunk_name(char *out, int32 stream_id, int64 chunk_no)
{
	snprintf(out, NAMEDATALEN, "s%d_%lld", stream_id, (long long) chunk_no);
}

/*
 * The inverse of chunk_name: the digits after the last '_' are the number
 * when formatting it back gives relname again (so no pattern is spelled
 * twice, and "s1_01" or "s1_-1" name no chunk).
 */
bool
chunk_number(const char *relname, int32 stream_id, int64 *chunk_no)
{
	const char *us = strrchr(relname, '_');
	char	   *end;
	long long	k;
	char		name[NAMEDATALEN];

	if (us == NULL || us[1] < '0' || us[1] > '9')
		return false;
	errno = 0;
	k = strtoll(us + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	chunk_name(name, stream_id, (int64) k);
	if (strcmp(name, relname) != 0)
		return false;
	*chunk_no = (int64) k;
	return true;
}

int64
chunk_of(StreamInfo *info, int64 seq)
{
	return SEQ_BUCKET(seq) / info->chunk_hours;
}

Oid
chunk_relid(StreamInfo *info, int64 chunk_no)
{
	char		name[NAMEDATALEN];

	chunk_name(name, info->stream_id, chunk_no);
	return get_relname_relid(name, info->chunk_nsp);
}

Relation
chunk_open(StreamInfo *info, int64 chunk_no, LOCKMODE mode)
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

		/* the direct insert and scan paths rely on exactly this layout (chunk.h) */
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
chunk_max_seq(StreamInfo *info, StreamShard *shard)
{
	List	   *children = find_inheritance_children(info->relid, NoLock);
	int			n = list_length(children);
	int64	   *chunks = palloc(sizeof(int64) * 2 * Max(n, 1));
	int			nchunks = 0;
	ListCell   *lc;
	int64		result = -1;
	Snapshot	snap;

	foreach(lc, children)
	{
		char	   *name = get_rel_name(lfirst_oid(lc));
		int64		k;

		if (name && chunk_number(name, info->stream_id, &k))
		{
			chunks[nchunks * 2] = k;
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

/* ---- the names for the SQL parts ---- */

/* stream_internal._data_table(stream_id int) RETURNS text: stream_data.s<id>, quoted */
Datum
stream_data_table_sql(PG_FUNCTION_ARGS)
{
	char		name[NAMEDATALEN];

	chunk_table_name(name, PG_GETARG_INT32(0));
	PG_RETURN_TEXT_P(cstring_to_text(quote_qualified_identifier(CHUNK_SCHEMA, name)));
}

/* stream_internal._chunk_table(stream_id int, k bigint) RETURNS text: stream_data.s<id>_<k>, quoted */
Datum
stream_chunk_table_sql(PG_FUNCTION_ARGS)
{
	char		name[NAMEDATALEN];

	chunk_name(name, PG_GETARG_INT32(0), PG_GETARG_INT64(1));
	PG_RETURN_TEXT_P(cstring_to_text(quote_qualified_identifier(CHUNK_SCHEMA, name)));
}

/* stream_internal._chunk_number(stream_id int, relname text) RETURNS bigint: NULL for no chunk of the stream */
Datum
stream_chunk_number_sql(PG_FUNCTION_ARGS)
{
	int64		k;

	if (!chunk_number(text_to_cstring(PG_GETARG_TEXT_PP(1)), PG_GETARG_INT32(0), &k))
		PG_RETURN_NULL();
	PG_RETURN_INT64(k);
}
