/*
 * stream_catalog.c: a backend-local cache of stream metadata.
 *
 * Puts and reads look a stream up on every call, so the metadata in
 * stream.streams and stream.shards is cached per backend.  Every function
 * that changes those tables calls stream_internal._catalog_changed(), which
 * queues a relcache invalidation of stream.streams; when it commits, every
 * backend marks its cache stale and drops it at its next lookup (never in
 * the callback, which may run while a caller still uses an entry).  The
 * pointer-lifetime rule that follows is in stream_catalog.h.
 *
 * The cache outlives transactions, so it is loaded with the latest
 * snapshot, never the caller's: a REPEATABLE READ transaction whose
 * snapshot predates a split must route to the children (the parent refuses
 * it), and a cache filled from an old snapshot would stay old after the
 * invalidation was spent.  The loader's SPI queries run read-only under a
 * pushed latest snapshot, which also sees the caller's own changes.
 */
#include "streams/stream_catalog.h"
#include "streams/chunk.h"
#include "streams/routing.h"
#include "safe_path.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(stream_catalog_changed);

typedef struct StreamCacheEntry
{
	char		name[STREAM_NAME_MAX + 1];
	StreamInfo *info;			/* NULL: known not to exist (not cached) */
} StreamCacheEntry;

static MemoryContext cache_cxt = NULL;
static HTAB *stream_cache = NULL;
static bool cache_stale = true;
static Oid	streams_relid = InvalidOid;

static void
stream_cache_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == streams_relid)
		cache_stale = true;
}

void
stream_catalog_init(void)
{
	CacheRegisterRelcacheCallback(stream_cache_invalidate, (Datum) 0);
}

static void
stream_cache_reset_if_stale(void)
{
	HASHCTL		ctl;

	if (!cache_stale && stream_cache != NULL)
		return;
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext,
										  "stream metadata cache",
										  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(cache_cxt);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = STREAM_NAME_MAX + 1;
	ctl.entrysize = sizeof(StreamCacheEntry);
	ctl.hcxt = cache_cxt;
	stream_cache = hash_create("stream metadata", 64, &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	cache_stale = false;

	/* Resolve the catalog's OID so that invalidations can be matched. */
	streams_relid = get_relname_relid("streams", get_namespace_oid("stream", false));
}

static int
cmp_shard_start(const void *a, const void *b)
{
	const StreamShard *x = *(StreamShard *const *) a;
	const StreamShard *y = *(StreamShard *const *) b;

	return (x->start_hash < y->start_hash) ? -1 : (x->start_hash > y->start_hash) ? 1 : 0;
}

/* Read one stream's metadata through SPI into the cache context. */
static StreamInfo *
stream_load(const char *name, int32 stream_id)
{
	StreamInfo *info = NULL;
	Datum		arg;
	Oid			argtype;
	int			ret;
	bool		isnull;
	Oid			nsp;
	char		relname[NAMEDATALEN];
	int			path_level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the extension's queries never resolve through the caller's search_path */
	path_level = safe_search_path_begin();
	/* read-only SPI runs under the active snapshot: the latest (file header) */
	PushActiveSnapshot(GetLatestSnapshot());

	if (name != NULL)
	{
		argtype = TEXTOID;
		arg = CStringGetTextDatum(name);
		ret = SPI_execute_with_args("SELECT stream_id, stream_name, retention_hours, chunk_hours, stream_status, notify "
									"FROM stream.streams WHERE stream_name = $1",
									1, &argtype, &arg, NULL, true, 1);
	}
	else
	{
		argtype = INT4OID;
		arg = Int32GetDatum(stream_id);
		ret = SPI_execute_with_args("SELECT stream_id, stream_name, retention_hours, chunk_hours, stream_status, notify "
									"FROM stream.streams WHERE stream_id = $1",
									1, &argtype, &arg, NULL, true, 1);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.streams");

	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old;
		char	   *status;
		char	   *sname;
		int			nshards;

		old = MemoryContextSwitchTo(cache_cxt);
		info = palloc0(sizeof(StreamInfo));
		MemoryContextSwitchTo(old);

		info->stream_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		sname = SPI_getvalue(tup, desc, 2);
		strlcpy(info->name, sname, sizeof(info->name));
		info->retention_hours = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		info->chunk_hours = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		status = SPI_getvalue(tup, desc, 5);
		info->active = (strcmp(status, "ACTIVE") == 0 || strcmp(status, "UPDATING") == 0);
		info->notify = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));

		nsp = get_namespace_oid(CHUNK_SCHEMA, false);
		info->chunk_nsp = nsp;
		chunk_table_name(relname, info->stream_id);
		info->relid = get_relname_relid(relname, nsp);

		argtype = INT4OID;
		arg = Int32GetDatum(info->stream_id);
		ret = SPI_execute_with_args("SELECT shard_index, starting_hash_key::text, ending_hash_key::text, "
									"starting_seq, ending_seq, parent_shard_index, adjacent_parent_shard_index "
									"FROM stream.shards WHERE stream_id = $1 ORDER BY shard_index",
									1, &argtype, &arg, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read stream.shards");

		nshards = SPI_processed;
		info->nshards = nshards;
		info->shards = MemoryContextAllocZero(cache_cxt, sizeof(StreamShard) * Max(nshards, 1));
		for (int i = 0; i < nshards; i++)
		{
			StreamShard *sh = &info->shards[i];
			HeapTuple	st = SPI_tuptable->vals[i];
			TupleDesc	sd = SPI_tuptable->tupdesc;
			Datum		d;

			sh->shard_index = DatumGetInt32(SPI_getbinval(st, sd, 1, &isnull));
			if (!routing_parse_hash_key(SPI_getvalue(st, sd, 2), &sh->start_hash) ||
				!routing_parse_hash_key(SPI_getvalue(st, sd, 3), &sh->end_hash))
				elog(ERROR, "corrupt hash key range for shard %d of stream %s",
					 sh->shard_index, info->name);
			sh->starting_seq = DatumGetInt64(SPI_getbinval(st, sd, 4, &isnull));
			d = SPI_getbinval(st, sd, 5, &isnull);
			sh->closed = !isnull;
			sh->ending_seq = isnull ? PG_INT64_MAX : DatumGetInt64(d);
			d = SPI_getbinval(st, sd, 6, &isnull);
			sh->parent_index = isnull ? -1 : DatumGetInt32(d);
			d = SPI_getbinval(st, sd, 7, &isnull);
			sh->adjacent_parent_index = isnull ? -1 : DatumGetInt32(d);
		}

		/* open shards partition the hash-key space; sort them for binary search */
		info->open_shards = MemoryContextAlloc(cache_cxt, sizeof(StreamShard *) * Max(nshards, 1));
		for (int i = 0; i < nshards; i++)
			if (!info->shards[i].closed)
				info->open_shards[info->nopen++] = &info->shards[i];
		qsort(info->open_shards, info->nopen, sizeof(StreamShard *), cmp_shard_start);
	}
	PopActiveSnapshot();
	safe_search_path_end(path_level);
	SPI_finish();
	return info;
}

/*
 * Remember a freshly loaded stream.  An invalidation that arrived while it
 * was loading marks the cache stale; the entry then serves this call and is
 * dropped at the next lookup.
 */
static StreamInfo *
cache_insert(StreamInfo *info)
{
	StreamCacheEntry *entry;
	bool		found;

	entry = hash_search(stream_cache, info->name, HASH_ENTER, &found);
	entry->info = info;
	return info;
}

StreamInfo *
stream_lookup(const char *name, bool missing_ok)
{
	StreamCacheEntry *entry;
	bool		found;
	StreamInfo *info;

	if (strlen(name) > STREAM_NAME_MAX)
		kinesis_check_stream_name(name);
	stream_cache_reset_if_stale();
	entry = hash_search(stream_cache, name, HASH_FIND, &found);
	if (found)
		return entry->info;

	info = stream_load(name, 0);
	if (info == NULL || !OidIsValid(info->relid) || !info->active)
	{
		if (missing_ok)
			return NULL;
		kinesis_check_stream_name(name);
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: Stream %s under account %s not found.",
						name, STREAM_ACCOUNT)));
	}
	return cache_insert(info);
}

StreamInfo *
stream_lookup_by_id(int32 stream_id, bool missing_ok)
{
	HASH_SEQ_STATUS status;
	StreamCacheEntry *entry;
	StreamInfo *info;

	stream_cache_reset_if_stale();
	hash_seq_init(&status, stream_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->info && entry->info->stream_id == stream_id)
		{
			hash_seq_term(&status);
			return entry->info;
		}
	}
	info = stream_load(NULL, stream_id);
	if (info == NULL || !OidIsValid(info->relid) || !info->active)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: the stream of this shard iterator no longer exists"),
				 errhint("Get a new iterator with stream.get_shard_iterator().")));
	}
	return cache_insert(info);
}

void
stream_catalog_forget(void)
{
	cache_stale = true;
}

bool
stream_catalog_is_stale(void)
{
	return cache_stale;
}

/*
 * Is shard shard_index of stream stream_id closed, as committed now (or
 * changed by this transaction)?  Its ending sequence number in *ending.
 * Read with the latest snapshot; false also when the shard is gone.
 */
bool
stream_catalog_shard_ending(int32 stream_id, int32 shard_index, int64 *ending)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	bool		closed = false;
	int			path_level;

	args[0] = Int32GetDatum(stream_id);
	args[1] = Int32GetDatum(shard_index);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	path_level = safe_search_path_begin();
	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute_with_args("SELECT ending_seq FROM stream.shards "
							  "WHERE stream_id = $1 AND shard_index = $2 AND ending_seq IS NOT NULL",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.shards");
	if (SPI_processed == 1)
	{
		bool		isnull;

		*ending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		closed = true;
	}
	PopActiveSnapshot();
	safe_search_path_end(path_level);
	SPI_finish();
	return closed;
}

/* stream_internal._catalog_changed(): make every backend reload stream metadata. */
Datum
stream_catalog_changed(PG_FUNCTION_ARGS)
{
	Oid			relid = get_relname_relid("streams", get_namespace_oid("stream", false));

	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

StreamInfo *
stream_info_copy(const StreamInfo *src, MemoryContext cxt)
{
	StreamInfo *dst = MemoryContextAlloc(cxt, sizeof(StreamInfo));

	memcpy(dst, src, sizeof(StreamInfo));
	dst->shards = MemoryContextAlloc(cxt, sizeof(StreamShard) * Max(src->nshards, 1));
	memcpy(dst->shards, src->shards, sizeof(StreamShard) * src->nshards);
	dst->open_shards = MemoryContextAlloc(cxt, sizeof(StreamShard *) * Max(src->nopen, 1));
	for (int i = 0; i < src->nopen; i++)
		dst->open_shards[i] = dst->shards + (src->open_shards[i] - src->shards);
	return dst;
}
