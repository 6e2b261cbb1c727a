/*
 * catalog.c: a backend-local cache of stream metadata.
 *
 * Puts and reads look a stream up on every call, so the metadata in
 * stream.streams and stream.shards is cached per backend.  Every function
 * that changes those tables calls stream_internal._catalog_changed(), which queues a
 * relcache invalidation of stream.streams; all backends drop their cache
 * when it commits.
 */
#include "stream.h"
#include "runtime/sandbox.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(stream_catalog_changed);
PG_FUNCTION_INFO_V1(stream_check_name_sql);

typedef struct StreamCacheEntry
{
	char		name[STREAM_NAME_MAX + 1];
	StreamInfo *info;			/* NULL: known not to exist (not cached) */
} StreamCacheEntry;

static MemoryContext cache_cxt = NULL;
static HTAB *stream_cache = NULL;
static bool cache_stale = true;
static Oid	streams_relid = InvalidOid;
static uint8 *secret = NULL;
static int	secret_len = 0;

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
	secret = NULL;
	cache_stale = false;

	/* Resolve the catalog's OID so that invalidations can be matched. */
	streams_relid = get_relname_relid("streams", get_namespace_oid("stream", false));
}

/*
 * Validate a resource name as Kinesis and Firehose do: 1 to maxlen
 * characters of [a-zA-Z0-9_.-]; member names the field in the message.
 */
void
stream_check_resource_name(const char *name, const char *member, int maxlen)
{
	int			n = strlen(name);

	if (n < 1 || n > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length %s %d",
						name, member, n < 1 ? "greater than or equal to" : "less than or equal to",
						n < 1 ? 1 : maxlen)));
	for (int i = 0; i < n; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
							name, member)));
	}
}

void
stream_check_name(const char *name)
{
	stream_check_resource_name(name, "streamName", STREAM_NAME_MAX);
}

/* A required argument of a SQL function, reported as Kinesis' validation does. */
void
stream_require_arg(bool isnull, const char *member)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("ValidationException: 1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null",
						member)));
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
	int			path_level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the extension's queries never resolve through the caller's search_path */
	path_level = safe_search_path_begin();

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

		nsp = get_namespace_oid("stream_data", false);
		info->chunk_nsp = nsp;
		info->relid = get_relname_relid(psprintf("s%d", info->stream_id), nsp);

		argtype = INT4OID;
		arg = Int32GetDatum(info->stream_id);
		ret = SPI_execute_with_args("SELECT shard_index, starting_hash_key::text, ending_hash_key::text, "
									"starting_seq, ending_seq FROM stream.shards "
									"WHERE stream_id = $1 ORDER BY shard_index",
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
		}

		/* open shards partition the hash-key space; sort them for binary search */
		info->open_shards = MemoryContextAlloc(cache_cxt, sizeof(StreamShard *) * Max(nshards, 1));
		for (int i = 0; i < nshards; i++)
			if (!info->shards[i].closed)
				info->open_shards[info->nopen++] = &info->shards[i];
		qsort(info->open_shards, info->nopen, sizeof(StreamShard *), cmp_shard_start);
	}
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
		stream_check_name(name);
	stream_cache_reset_if_stale();
	entry = hash_search(stream_cache, name, HASH_FIND, &found);
	if (found)
		return entry->info;

	info = stream_load(name, 0);
	if (info == NULL || !OidIsValid(info->relid) || !info->active)
	{
		if (missing_ok)
			return NULL;
		stream_check_name(name);
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

/* The open shard whose hash-key range holds hash. */
StreamShard *
stream_route(StreamInfo *info, uint128 hash)
{
	int			lo = 0,
				hi = info->nopen - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		StreamShard *sh = info->open_shards[mid];

		if (hash < sh->start_hash)
			hi = mid - 1;
		else if (hash > sh->end_hash)
			lo = mid + 1;
		else
			return sh;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("InternalFailure: no open shard of stream %s covers hash key %s",
					info->name, routing_hash_key_to_cstring(hash))));
	return NULL;				/* keep compiler quiet */
}

/*
 * Whether s matches the API pattern 0|([1-9]\d{0,maxdigits-1}): a decimal
 * number without leading zeros (explicit hash keys, sequence numbers).
 */
bool
stream_is_plain_decimal(const char *s, int maxdigits)
{
	size_t		len = strlen(s);

	if (len < 1 || len > (size_t) maxdigits || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * A shard id as the API member ShardId: 1 to 128 characters of
 * [a-zA-Z0-9_.-], else ValidationException as Kinesis' request validation.
 */
void
stream_check_shard_id(const char *shard_id)
{
	stream_check_resource_name(shard_id, "shardId", STREAM_NAME_MAX);
}

/* The shard with this index, or NULL. */
static StreamShard *
stream_shard_by_index(StreamInfo *info, int32 shard_index)
{
	for (int i = 0; i < info->nshards; i++)
		if (info->shards[i].shard_index == shard_index)
			return &info->shards[i];
	return NULL;
}

/* The shard with this index; ResourceNotFoundException (or NULL with missing_ok) when there is none. */
StreamShard *
stream_get_shard(StreamInfo *info, int32 shard_index, bool missing_ok)
{
	StreamShard *shard = stream_shard_by_index(info, shard_index);

	if (shard != NULL || missing_ok)
		return shard;
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_NOT_FOUND),
			 errmsg("ResourceNotFoundException: Shard shardId-%012d in stream %s under account %s does not exist",
					shard_index, info->name, STREAM_ACCOUNT)));
	return NULL;
}

/*
 * Resolve a shard id leniently, as Kinesis does: "shardId-000000000001",
 * "shardId-0000000000001", "anything-1" and "1" all address shard 1; the
 * digits after the last '-' (any number of them, leading zeros ignored)
 * must give at most 2147483647.  A shard id that breaks the API's length or
 * pattern constraint is a ValidationException; one without a usable index
 * "Could not find shard"; a missing shard "does not exist" (both
 * ResourceNotFoundException, or NULL with missing_ok).
 */
StreamShard *
stream_find_shard(StreamInfo *info, const char *shard_id, bool missing_ok)
{
	const char *digits = strrchr(shard_id, '-');
	int64		idx = 0;

	stream_check_shard_id(shard_id);
	digits = digits ? digits + 1 : shard_id;
	if (*digits == '\0')
		goto invalid;
	for (const char *d = digits; *d; d++)
	{
		if (*d < '0' || *d > '9')
			goto invalid;
		idx = idx * 10 + (*d - '0');
		if (idx > PG_INT32_MAX)
			goto invalid;
	}

	return stream_get_shard(info, (int32) idx, missing_ok);

invalid:
	if (missing_ok)
		return NULL;
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_NOT_FOUND),
			 errmsg("ResourceNotFoundException: Could not find shard %s in stream %s under account %s.",
					shard_id, info->name, STREAM_ACCOUNT)));
	return NULL;
}

/*
 * Privileges are per stream: INSERT on the stream's table allows puts,
 * SELECT allows reads (stream.grant_stream_access grants them).
 */
void
stream_check_access(StreamInfo *info, AclMode mode)
{
	if (pg_class_aclcheck(info->relid, GetUserId(), mode) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: User %s is not authorized to %s stream %s",
						GetUserNameFromId(GetUserId(), false),
						mode == ACL_INSERT ? "put records to" : "read records from",
						info->name),
				 errhint("The stream's owner can run stream.grant_stream_access('%s', role, '%s').",
						 info->name, mode == ACL_INSERT ? "write" : "read")));
}

/*
 * The HMAC key that signs shard iterators.  It lives in stream.secret, which
 * no ordinary role may read, so it is read here with a plain heap scan
 * rather than through SQL permissions.
 */
const uint8 *
stream_iterator_secret(int *len)
{
	if (secret == NULL || cache_stale)
	{
		Relation	rel;
		TableScanDesc scan;
		HeapTuple	tup;
		Snapshot	snap;
		Oid			relid;

		stream_cache_reset_if_stale();
		relid = get_relname_relid("secret", get_namespace_oid("stream", false));
		if (!OidIsValid(relid))
			elog(ERROR, "stream.secret is missing");
		rel = table_open(relid, AccessShareLock);
		snap = RegisterSnapshot(GetLatestSnapshot());
		scan = table_beginscan(rel, snap, 0, NULL);
		tup = heap_getnext(scan, ForwardScanDirection);
		if (tup != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(d);

				secret_len = VARSIZE_ANY_EXHDR(b);
				secret = MemoryContextAlloc(cache_cxt, secret_len);
				memcpy(secret, VARDATA_ANY(b), secret_len);
			}
		}
		table_endscan(scan);
		UnregisterSnapshot(snap);
		table_close(rel, AccessShareLock);
		if (secret == NULL || secret_len < 16)
			elog(ERROR, "stream.secret holds no usable key");
	}
	*len = secret_len;
	return secret;
}

/* stream_internal._catalog_changed(): make every backend reload stream metadata. */
Datum
stream_catalog_changed(PG_FUNCTION_ARGS)
{
	Oid			relid = get_relname_relid("streams", get_namespace_oid("stream", false));

	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/*
 * stream_internal._check_name(name text, member text, max_length int): the same
 * validation for names checked in SQL (streams, delivery streams).
 */
Datum
stream_check_name_sql(PG_FUNCTION_ARGS)
{
	char	   *member;
	ErrorContextCallback *saved = error_context_stack;

	/* called by the extension's plpgsql: its call chain is no use to the user */
	error_context_stack = NULL;
	/* which member and its limit are the caller's to say: never NULL */
	stream_require_arg(PG_ARGISNULL(1), "member");
	stream_require_arg(PG_ARGISNULL(2), "max_length");
	member = text_to_cstring(PG_GETARG_TEXT_PP(1));
	stream_require_arg(PG_ARGISNULL(0), member);
	stream_check_resource_name(text_to_cstring(PG_GETARG_TEXT_PP(0)), member, PG_GETARG_INT32(2));
	error_context_stack = saved;
	PG_RETURN_VOID();
}
