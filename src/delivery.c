/*
 * delivery.c: delivery streams, Firehose's model inside the database.
 *
 * A delivery stream reads a data stream as a consumer with a checkpoint of
 * its own per shard (a direct-put delivery stream reads an internal stream
 * that put_delivery_record* writes to, so puts are transactional and
 * commit-ordered like stream puts), buffers until buffer_size_mb or
 * buffer_interval_seconds is reached, optionally transforms the records
 * with a SQL function, and delivers them as files in a server directory or
 * as rows of a table.
 *
 * Exactly once, for files (one batch in flight per delivery stream):
 *   1. in a short transaction, the batch's source ranges (per shard
 *      [from, to), every number below the shards' stable sequences, so
 *      reading them again gives the same records) are recorded as the
 *      delivery stream's pending batch, with the name of its staging
 *      directory (random, so no one can plant it in advance);
 *   2. the records are read, transformed and written to temporary files
 *      in that staging directory, created exclusively, each fsynced; the
 *      list of final names is committed into the pending row;
 *   3. each temporary file is renamed to its final name and the
 *      directories are fsynced;
 *   4. in a short transaction, the manifest row is inserted, the
 *      checkpoints advance and the pending row goes.
 * After a crash, a pending batch without a file list is written again from
 * scratch (its recorded staging directory goes first, and a new name is
 * recorded: nothing of it was visible); one with a file list only finishes
 * its renames.  A file thus appears atomically and every record lands in
 * exactly one file.  Below the destination nothing is reached through a
 * symbolic link (see destdir.c): a planted link fails the batch, which
 * waits with the error shown.  For a table destination, the rows, the
 * checkpoints and the manifest row are written in one transaction.
 *
 * Failures of the destination (a directory that cannot be written, a full
 * disk, a missing table) leave the checkpoints where they were; the
 * delivery stream retries with back-off and shows the error in
 * stream.delivery_stream_status.
 */
#include "streams/access.h"
#include "streams/chunk_insert.h"
#include "streams/chunk_scan.h"
#include "streams/read_window.h"
#include "streams/retention.h"
#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"
#include "locktag.h"
#include "sandbox.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "catalog/pg_authid.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"
#include "utils/regproc.h"
#include "utils/varlena.h"

#include "codec.h"
#include "delivery.h"
#include "module.h"
#include "bgw/worker.h"
#include "sandbox.h"
#include "md5.h"

PG_FUNCTION_INFO_V1(stream_put_delivery_record);
PG_FUNCTION_INFO_V1(stream_put_delivery_record_batch);
PG_FUNCTION_INFO_V1(stream_delivery_stable_seq);
PG_FUNCTION_INFO_V1(stream_delivery_validate);
PG_FUNCTION_INFO_V1(stream_delivery_check_keys);
PG_FUNCTION_INFO_V1(stream_delivery_check_destination);
PG_FUNCTION_INFO_V1(stream_delivery_buffer);
PG_FUNCTION_INFO_V1(stream_flush_delivery_stream);

#define BACKOFF_MAX_S		30
#define TRANSFORM_CHUNK_BYTES	(3 * 1024 * 1024)
#define TRANSFORM_CHUNK_RECORDS	10000
#define GROUP_KEY_MAX		1024

static void
check_delivery_name(const char *name)
{
	kinesis_check_name(name, "deliveryStreamName", DELIVERY_NAME_MAX);
}

static Oid
stream_nsp(void)
{
	return get_namespace_oid("stream", false);
}

/* the owner of a relation (the extension's tables: the extension's owner) */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * SPI on the delivery catalogs, which PUBLIC may not read (manifest paths
 * and errors hold record data): as the owner of stream.delivery_streams,
 * restricted.  Only for lookups whose result the caller then checks against
 * the calling role.  An error restores the user at the (sub)transaction's
 * abort.
 */
static int
catalog_spi(const char *sql, int nargs, Oid *argtypes, Datum *args, bool read_only, long count)
{
	Oid			relid = get_relname_relid("delivery_streams", stream_nsp());
	Oid			save_user;
	int			save_sec;
	int			ret;
	int			path_level;

	if (!OidIsValid(relid))
		elog(ERROR, "stream.delivery_streams is missing");
	/* as that owner, names must not resolve through the caller's search_path */
	path_level = safe_search_path_begin();
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(rel_owner(relid), save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, read_only, count);
	SetUserIdAndSecContext(save_user, save_sec);
	safe_search_path_end(path_level);
	return ret;
}

/* ----------------------------------------------------------------------
 * Direct put: a backend-local cache of name -> internal stream
 * ----------------------------------------------------------------------
 */
typedef struct DeliveryNameEntry
{
	char		name[DELIVERY_NAME_MAX + 1];
	int32		delivery_stream_id;
	int32		stream_id;
	bool		direct_put;
} DeliveryNameEntry;

static HTAB *name_cache = NULL;
static Oid	ds_relid = InvalidOid;
static bool name_cache_callback = false;

static void
name_cache_invalidate(Datum arg, Oid relid)
{
	if (name_cache != NULL && (relid == InvalidOid || relid == ds_relid))
	{
		hash_destroy(name_cache);
		name_cache = NULL;
	}
}

static DeliveryNameEntry *
delivery_lookup_name(const char *name)
{
	DeliveryNameEntry *e;
	bool		found;
	Datum		arg;
	Oid			argtype = TEXTOID;
	int			ret;
	DeliveryNameEntry tmp;

	check_delivery_name(name);
	if (!name_cache_callback)
	{
		CacheRegisterRelcacheCallback(name_cache_invalidate, (Datum) 0);
		name_cache_callback = true;
	}
	if (name_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = DELIVERY_NAME_MAX + 1;
		ctl.entrysize = sizeof(DeliveryNameEntry);
		ctl.hcxt = CacheMemoryContext;
		name_cache = hash_create("stream delivery names", 16, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		ds_relid = get_relname_relid("delivery_streams", stream_nsp());
	}
	e = hash_search(name_cache, name, HASH_FIND, &found);
	if (found)
		return e;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	arg = CStringGetTextDatum(name);
	/* put and flush check the caller's rights on what this finds */
	ret = catalog_spi("SELECT delivery_stream_id, source_stream_id, delivery_stream_type = 'DirectPut' "
					  "FROM stream.delivery_streams WHERE delivery_stream_name = $1",
					  1, &argtype, &arg, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.delivery_streams");
	if (SPI_processed != 1)
	{
		SPI_finish();
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: Firehose %s under account %s not found.",
						name, STREAM_ACCOUNT)));
	}
	{
		bool		isnull;

		memset(&tmp, 0, sizeof(tmp));
		tmp.delivery_stream_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		tmp.stream_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		tmp.direct_put = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	}
	SPI_finish();
	/* an invalidation during SPI may have dropped the table */
	if (name_cache == NULL)
		return memcpy(palloc(sizeof(tmp)), &tmp, sizeof(tmp));
	e = hash_search(name_cache, name, HASH_ENTER, &found);
	e->delivery_stream_id = tmp.delivery_stream_id;
	e->stream_id = tmp.stream_id;
	e->direct_put = tmp.direct_put;
	return e;
}

static StreamInfo *
direct_put_stream(const char *name)
{
	DeliveryNameEntry *e = delivery_lookup_name(name);
	StreamInfo *info;

	if (!e->direct_put)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: This operation is not permitted on KinesisStreamAsSource delivery stream type."),
				 errdetail("Firehose %s reads a Kinesis stream; put records to that stream instead.", name)));
	info = stream_lookup_by_id(e->stream_id, true);
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: Firehose %s under account %s not found.",
						name, STREAM_ACCOUNT)));
	if (!access_allows(info, GetUserId(), ACL_INSERT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: User %s is not authorized to put records to Firehose %s",
						GetUserNameFromId(GetUserId(), false), name),
				 errhint("The delivery stream's owner can run stream.grant_delivery_stream_access('%s', role).",
						 name)));
	return info;
}

static void
check_record_size(bytea *data, const char *path)
{
	Size		len = VARSIZE_ANY_EXHDR(data);

	if (len > DELIVERY_RECORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value at '%sdata' failed to satisfy constraint: Member must have length less than or equal to %d",
						path, DELIVERY_RECORD_MAX_BYTES),
				 errdetail("The record has %zu bytes.", len)));
}

static void
direct_put(StreamInfo *info, PutItem *items, int n)
{
	StreamShard *shard = &info->shards[0];
	TimestampTz arrival;
	int64		first;

	for (int i = 0; i < info->nshards; i++)
		if (!info->shards[i].closed)
		{
			shard = &info->shards[i];
			break;
		}
	first = seqalloc_reserve(info, shard, n, &arrival);
	for (int i = 0; i < n; i++)
	{
		items[i].shard = shard;
		items[i].seq = first + i;
		items[i].arrival = arrival;
	}
	chunk_insert(info, items, n);
}

/* stream.put_delivery_record(delivery_stream_name, data) RETURNS text (record id) */
Datum
stream_put_delivery_record(PG_FUNCTION_ARGS)
{
	char	   *name;
	bytea	   *data;
	StreamInfo *info;
	PutItem		item;

	PreventCommandIfReadOnly("stream.put_delivery_record()");
	PreventCommandIfParallelMode("stream.put_delivery_record()");
	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	kinesis_require_arg(PG_ARGISNULL(1), "record.data");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	data = PG_GETARG_BYTEA_PP(1);
	check_record_size(data, "record.");
	info = direct_put_stream(name);

	memset(&item, 0, sizeof(item));
	item.partition_key = cstring_to_text("");
	item.data = data;
	direct_put(info, &item, 1);
	PG_RETURN_TEXT_P(seq_to_text_datum(info->stream_id, item.shard->shard_index, item.seq));
}

/*
 * stream.put_delivery_record_batch(delivery_stream_name, data bytea[])
 *   RETURNS TABLE(record_id text, error_code text, error_message text)
 */
Datum
stream_put_delivery_record_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Size		total = 0;
	PutItem    *items;
	StreamInfo *info;
	text	   *empty;

	PreventCommandIfReadOnly("stream.put_delivery_record_batch()");
	PreventCommandIfParallelMode("stream.put_delivery_record_batch()");
	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	kinesis_require_arg(PG_ARGISNULL(1), "records");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	arr = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: records must be a one-dimensional array")));
	deconstruct_array(arr, BYTEAOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n < 1 || n > DELIVERY_BATCH_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("ValidationException: 1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length %s",
						n < 1 ? "greater than or equal to 1" : "less than or equal to 500"),
				 errdetail("The request has %d records.", n)));
	items = palloc0(sizeof(PutItem) * n);
	empty = cstring_to_text("");
	for (int i = 0; i < n; i++)
	{
		char		path[32];

		snprintf(path, sizeof(path), "records.%d.", i + 1);
		if (nulls[i])
			kinesis_require_arg(true, psprintf("%sdata", path));
		items[i].partition_key = empty;
		items[i].data = (bytea *) PG_DETOAST_DATUM_PACKED(elems[i]);
		check_record_size(items[i].data, path);
		total += VARSIZE_ANY_EXHDR(items[i].data);
	}
	if (total > DELIVERY_BATCH_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Records size exceeds 4 MiB limit"),
				 errdetail("The request holds %zu bytes of data; at most %d are allowed.",
						   total, DELIVERY_BATCH_MAX_BYTES)));
	info = direct_put_stream(name);
	direct_put(info, items, n);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		isnull[3] = {false, true, true};

		values[0] = PointerGetDatum(seq_to_text_datum(info->stream_id, items[i].shard->shard_index,
													  items[i].seq));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}

/* ----------------------------------------------------------------------
 * Control-plane helpers
 * ----------------------------------------------------------------------
 */

/* stream_internal._delivery_stable_seq(stream_id, shard_index) RETURNS bigint: LATEST */
Datum
stream_delivery_stable_seq(PG_FUNCTION_ARGS)
{
	StreamInfo *info = stream_lookup_by_id(PG_GETARG_INT32(0), false);
	StreamShard *shard = shard_by_index(info, PG_GETARG_INT32(1), false);

	PG_RETURN_INT64(seqalloc_stable_seq(info, shard));
}

/*
 * stream_internal._delivery_validate(prefix, error_output_prefix, backup_prefix,
 *                           partition_keys text[], has_transform bool)
 * Firehose's rules for prefixes (kinesis-semantics.md 5.3, 5.6).
 */
Datum
stream_delivery_validate(PG_FUNCTION_ARGS)
{
	char	   *prefix = PG_ARGISNULL(0) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *errprefix = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *backup = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Datum	   *keys = NULL;
	bool	   *keynulls;
	int			nkeys = 0;
	bool		has_transform = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	PrefixTemplate *t,
			   *et = NULL;
	PrefixValues v;
	ErrorContextCallback *saved = error_context_stack;

	/* called by create_delivery_stream: its plpgsql call chain is no use to the user */
	error_context_stack = NULL;

	if (!PG_ARGISNULL(3))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &keys, &keynulls, &nkeys);

	t = prefix_parse(prefix, "Prefix");
	if (t->has_error_type)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Prefix must not contain !{firehose:error-output-type}")));
	for (int i = 0; i < t->nsegs; i++)
	{
		bool		found = false;

		if (t->segs[i].kind == PSEG_KEY_LAMBDA && !has_transform)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: !{partitionKeyFromLambda:%s} needs a transform_function that returns partition_keys",
							t->segs[i].text)));
		if (t->segs[i].kind != PSEG_KEY_QUERY)
			continue;
		for (int k = 0; k < nkeys; k++)
			if (!keynulls[k] && strcmp(TextDatumGetCString(keys[k]), t->segs[i].text) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: !{partitionKeyFromQuery:%s} names a key that partition_key_queries does not define",
							t->segs[i].text)));
	}
	if (errprefix != NULL)
	{
		et = prefix_parse(errprefix, "ErrorOutputPrefix");
		if (!et->has_error_type)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: ErrorOutputPrefix must contain !{firehose:error-output-type}")));
		if (et->has_query_keys || et->has_lambda_keys)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: ErrorOutputPrefix must not contain partitionKeyFromQuery or partitionKeyFromLambda expressions")));
	}
	else if (t->has_expressions)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions")));
	if (backup != NULL)
	{
		PrefixTemplate *bt = prefix_parse(backup, "S3BackupPrefix");

		if (bt->has_error_type || bt->has_query_keys || bt->has_lambda_keys)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: the backup prefix may use only !{timestamp:...} and !{firehose:random-string}")));
	}

	/* try the evaluation once: catches literals that climb out of the destination */
	memset(&v, 0, sizeof(v));
	v.ts = GetCurrentTimestamp();
	v.error_type = "processing-failed";
	v.nkeys = 0;
	{
		int			n = t->nsegs;

		v.key_names = palloc(sizeof(char *) * n);
		v.key_values = palloc(sizeof(char *) * n);
		for (int i = 0; i < n; i++)
			if (t->segs[i].kind == PSEG_KEY_QUERY || t->segs[i].kind == PSEG_KEY_LAMBDA)
			{
				v.key_names[v.nkeys] = psprintf("%c:%s", t->segs[i].kind == PSEG_KEY_QUERY ? 'q' : 'l',
												t->segs[i].text);
				v.key_values[v.nkeys++] = "x";
			}
	}
	(void) prefix_eval(prefix_parse(prefix_effective(prefix, false), "Prefix"), &v);
	if (et)
		(void) prefix_eval(prefix_parse(prefix_effective(errprefix, true), "ErrorOutputPrefix"), &v);
	if (backup)
		(void) prefix_eval(prefix_parse(prefix_effective(backup, false), "S3BackupPrefix"), &v);

	/* and at its longest: every directory and file name must fit the file system */
	prefix_check_worst_case(prefix_parse(prefix_effective(prefix, false), "Prefix"), "Prefix", prefix);
	prefix_check_worst_case(prefix_parse(prefix_effective(errprefix ? errprefix : psprintf("%s!{firehose:error-output-type}/", prefix), true),
										 "ErrorOutputPrefix"),
							"ErrorOutputPrefix", errprefix ? errprefix : prefix);
	if (backup)
		prefix_check_worst_case(prefix_parse(prefix_effective(backup, false), "S3BackupPrefix"), "S3BackupPrefix", backup);
	error_context_stack = saved;
	PG_RETURN_VOID();
}

/*
 * stream_internal._delivery_check_keys(partition_key_queries jsonb): each query
 * compiles (a SQL/JSON path or the jq subset, see prefix.c).
 */
Datum
stream_delivery_check_keys(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			depth = 0;
	ErrorContextCallback *saved = error_context_stack;

	/* called by create_delivery_stream: its plpgsql call chain is no use to the user */
	error_context_stack = NULL;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: partition_key_queries must be a JSON object of key name to query, e.g. {\"customer_id\": \".customer_id\"}")));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			depth++;
		else if (tok == WJB_END_OBJECT)
			depth--;
		else if (tok == WJB_KEY && depth == 1)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			if (v.val.string.len == 0 || v.val.string.len > 64)
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_INVALID_ARG),
						 errmsg("InvalidArgumentException: a partition key name must have 1 to 64 characters: \"%s\"", key)));
		}
		else if (tok == WJB_VALUE && depth == 1)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_INVALID_ARG),
						 errmsg("InvalidArgumentException: partition_key_queries \"%s\" must be a string query, e.g. \".customer_id\"", key)));
			(void) keyquery_compile(key, pnstrdup(v.val.string.val, v.val.string.len));
		}
	}
	error_context_stack = saved;
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------------
 * Delivery stream configuration, as the worker sees it
 * ----------------------------------------------------------------------
 */
typedef struct DeliveryConfig
{
	int32		id;
	char	   *name;
	bool		direct_put;
	int32		source_stream_id;
	char	   *destination;	/* NULL for a table destination */
	char	   *destination_table;
	DeliveryFormat format;
	Oid			schema;
	StreamCodec compression;
	Size		buffer_bytes;
	int			interval_s;
	char	   *prefix;
	char	   *error_prefix;	/* effective, never NULL */
	char	   *backup_prefix;	/* NULL: no backup */
	Oid			transform;
	Oid			owner;
	int32		version;
	int			nkeys;
	char	  **key_names;
	KeyQuery  **key_queries;
	PrefixTemplate *prefix_t;
	PrefixTemplate *error_t;
	PrefixTemplate *backup_t;
} DeliveryConfig;

static DeliveryFormat
parse_format(const char *s)
{
	if (strcmp(s, "csv") == 0)
		return DFMT_CSV;
	if (strcmp(s, "parquet") == 0)
		return DFMT_PARQUET;
	if (strcmp(s, "raw") == 0)
		return DFMT_RAW;
	return DFMT_JSON;
}

static char *
spi_text(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static Datum
spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* Load a delivery stream's configuration into cxt; NULL if it is gone.  Needs SPI. */
static DeliveryConfig *
load_config(int32 id, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	DeliveryConfig *c;
	MemoryContext old;
	bool		isnull;
	char	   *errprefix;
	int			ret;

	ret = SPI_execute_with_args("SELECT delivery_stream_name, delivery_stream_type = 'DirectPut', source_stream_id, "
								"destination, destination_table, format, schema, compression, buffer_size_mb, "
								"buffer_interval_seconds, prefix, error_output_prefix, backup_prefix, "
								"transform_function, owner, version_id, "
								"(SELECT array_agg(key ORDER BY key) FROM jsonb_each_text(partition_key_queries)), "
								"(SELECT array_agg(value ORDER BY key) FROM jsonb_each_text(partition_key_queries)) "
								"FROM stream.delivery_streams WHERE delivery_stream_id = $1",
								1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.delivery_streams");
	if (SPI_processed != 1)
		return NULL;

	old = MemoryContextSwitchTo(cxt);
	c = palloc0(sizeof(DeliveryConfig));
	c->id = id;
	c->name = spi_text(0, 1);
	c->direct_put = DatumGetBool(spi_datum(0, 2, &isnull));
	c->source_stream_id = DatumGetInt32(spi_datum(0, 3, &isnull));
	c->destination = spi_text(0, 4);
	c->destination_table = spi_text(0, 5);
	c->format = parse_format(spi_text(0, 6));
	c->schema = DatumGetObjectId(spi_datum(0, 7, &isnull));
	if (isnull)
		c->schema = InvalidOid;
	c->compression = codec_from_name(spi_text(0, 8));
	c->buffer_bytes = (Size) DatumGetInt32(spi_datum(0, 9, &isnull)) * 1024 * 1024;
	c->interval_s = DatumGetInt32(spi_datum(0, 10, &isnull));
	c->prefix = spi_text(0, 11);
	if (c->prefix == NULL)
		c->prefix = "";
	errprefix = spi_text(0, 12);
	c->backup_prefix = spi_text(0, 13);
	c->transform = DatumGetObjectId(spi_datum(0, 14, &isnull));
	if (isnull)
		c->transform = InvalidOid;
	c->owner = DatumGetObjectId(spi_datum(0, 15, &isnull));
	c->version = DatumGetInt32(spi_datum(0, 16, &isnull));
	{
		Datum		kd = spi_datum(0, 17, &isnull);

		if (!isnull)
		{
			Datum	   *names,
					   *paths;
			bool	   *nn;
			int			n;
			Datum		pd = spi_datum(0, 18, &isnull);

			deconstruct_array(DatumGetArrayTypeP(kd), TEXTOID, -1, false, TYPALIGN_INT, &names, &nn, &n);
			deconstruct_array(DatumGetArrayTypeP(pd), TEXTOID, -1, false, TYPALIGN_INT, &paths, &nn, &n);
			c->nkeys = n;
			c->key_names = palloc(sizeof(char *) * n);
			c->key_queries = palloc(sizeof(KeyQuery *) * n);
			for (int i = 0; i < n; i++)
			{
				c->key_names[i] = TextDatumGetCString(names[i]);
				c->key_queries[i] = keyquery_compile(c->key_names[i], TextDatumGetCString(paths[i]));
			}
		}
	}
	c->prefix_t = prefix_parse(prefix_effective(c->prefix, false), "Prefix");
	if (errprefix == NULL)
		errprefix = psprintf("%s!{firehose:error-output-type}/", c->prefix);
	c->error_prefix = errprefix;
	c->error_t = prefix_parse(prefix_effective(errprefix, true), "ErrorOutputPrefix");
	if (c->backup_prefix)
		c->backup_t = prefix_parse(prefix_effective(c->backup_prefix, false), "S3BackupPrefix");
	MemoryContextSwitchTo(old);
	return c;
}

/* ----------------------------------------------------------------------
 * Reading a batch's records
 * ----------------------------------------------------------------------
 */
typedef enum RecStatus
{
	REC_OK,
	REC_DROPPED,
	REC_FAILED
} RecStatus;

typedef struct SrcRec
{
	int32		shard_index;
	int64		seq;
	TimestampTz arrival;
	char	   *data;
	int			len;
	char	   *pkey;
	int			pkey_len;
	/* after the transform */
	RecStatus	status;
	char	   *out;
	int			outlen;
	Jsonb	   *lambda_keys;
	const char *error_type;
	const char *error_code;
	char	   *error_message;
	int			attempts;
} SrcRec;

typedef struct Batch
{
	DeliveryConfig *cfg;
	StreamInfo *info;
	int64		batch_no;
	int			nranges;
	int32	   *shards;
	int64	   *from;
	int64	   *to;
	TimestampTz min_arrival;
	SrcRec	   *recs;
	int			nrecs;
	int			cap;
	Size		bytes;
	/* results */
	int64		delivered;
	int64		dropped;
	int64		failed;
	int64		out_bytes;
	StringInfoData files;		/* jsonb array text of the files */
	int			nfiles;
} Batch;

static void
collect_record(void *arg, const StreamRecord *rec)
{
	Batch	   *b = arg;
	SrcRec	   *r;
	bytea	   *d = DatumGetByteaPP(rec->data);
	text	   *k = DatumGetTextPP(rec->partition_key);

	if (b->nrecs >= b->cap)
	{
		b->cap = Max(1024, b->cap * 2);
		b->recs = b->recs ? repalloc_huge(b->recs, sizeof(SrcRec) * b->cap)
			: palloc_extended(sizeof(SrcRec) * b->cap, MCXT_ALLOC_HUGE);
	}
	r = &b->recs[b->nrecs++];
	memset(r, 0, sizeof(*r));
	r->seq = rec->seq;
	r->arrival = rec->arrival;
	r->len = VARSIZE_ANY_EXHDR(d);
	r->data = palloc(r->len + 1);
	memcpy(r->data, VARDATA_ANY(d), r->len);
	r->data[r->len] = '\0';
	r->pkey_len = VARSIZE_ANY_EXHDR(k);
	r->pkey = pnstrdup(VARDATA_ANY(k), r->pkey_len);
	r->status = REC_OK;
	r->out = r->data;
	r->outlen = r->len;
	r->attempts = 1;
	b->bytes += r->len + r->pkey_len;
	if ((Pointer) d != DatumGetPointer(rec->data))
		pfree(d);
}

/*
 * The delivery stream's owner must still hold what creating it required:
 * read access to a source stream, and the right to write server files for a
 * directory destination.  Checked for every batch, so a revoke stops
 * delivery (the batch waits, with the error shown) rather than leaking.
 */
static void
check_owner_privileges(Batch *b)
{
	DeliveryConfig *cfg = b->cfg;

	if (!cfg->direct_put && !access_allows(b->info, cfg->owner, ACL_SELECT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of delivery stream %s may no longer read stream %s",
						cfg->name, b->info->name),
				 errhint("Grant it again with stream.grant_stream_access(), or delete the delivery stream.")));
	if (cfg->destination != NULL && !superuser_arg(cfg->owner) &&
		!has_privs_of_role(cfg->owner, ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of delivery stream %s may no longer write server files",
						cfg->name),
				 errhint("Grant it pg_write_server_files again, or delete the delivery stream.")));
}

static void
read_batch(Batch *b)
{
	check_owner_privileges(b);
	for (int i = 0; i < b->nranges; i++)
	{
		StreamShard *shard = shard_by_index(b->info, b->shards[i], false);
		int			first = b->nrecs;
		int64		from = b->from[i];
		int64		next;

		while (from < b->to[i])
		{
			int			n;

			n = chunk_scan(b->info, shard, from, b->to[i], b->min_arrival, INT_MAX,
						   (Size) 1 << 40, collect_record, b, &next);
			if (n == 0 || next <= from)
				break;
			from = next;
		}
		for (int j = first; j < b->nrecs; j++)
			b->recs[j].shard_index = b->shards[i];
	}
}

/* where record failures keep their messages: the current batch's context */
static MemoryContext batch_cxt = NULL;

static void
fail_record(SrcRec *r, const char *type, const char *code, const char *message)
{
	r->status = REC_FAILED;
	r->error_type = type;
	r->error_code = code;
	r->error_message = MemoryContextStrdup(batch_cxt ? batch_cxt : CurrentMemoryContext,
										   message ? message : "");
}

/* Rethrow errors that must not be turned into record failures. */
static ErrorData *
catch_record_error(MemoryContext cxt)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	/*
	 * Cancels, shutdown, and system or resource errors (I/O, disk full, out
	 * of memory: classes 53 and 58) concern the batch, not the record; they
	 * may also leave a file writer half way through a row.  The batch fails
	 * and is retried whole.
	 */
	if (sandbox_timed_out(ed->sqlerrcode))
	{
		/* owner code ran out of time: that call failed, like a Lambda timeout */
		ed->message = psprintf("owner code ran longer than stream.owner_code_timeout (%d ms)",
							   stream_owner_code_timeout_ms);
		FlushErrorState();
		return ed;
	}
	if (ed->sqlerrcode == ERRCODE_QUERY_CANCELED || ed->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		ERRCODE_TO_CATEGORY(ed->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
		ERRCODE_TO_CATEGORY(ed->sqlerrcode) == ERRCODE_SYSTEM_ERROR)
		PG_RE_THROW();
	FlushErrorState();
	return ed;
}

/*
 * The subtransaction protocol every per-record or per-call step of a batch
 * follows (transform calls, record conversions, table inserts): begin in
 * cxt, and on the way out, whether committed or rolled back, come back to cxt
 * and to the caller's resource owner.  Kept in one place so the steps cannot
 * drift apart.
 */
static ResourceOwner
subxact_begin(MemoryContext cxt)
{
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	return oldowner;
}

static void
subxact_commit(MemoryContext cxt, ResourceOwner oldowner)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = oldowner;
}

/* In PG_CATCH: copy the error (or rethrow it, see above), then roll back. */
static ErrorData *
subxact_abort(MemoryContext cxt, ResourceOwner oldowner)
{
	ErrorData  *ed = catch_record_error(cxt);

	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = oldowner;
	return ed;
}


/* ----------------------------------------------------------------------
 * Transform: Firehose's Lambda contract as a SQL function
 *   f(stream.firehose_record[]) RETURNS SETOF stream.firehose_result
 * ----------------------------------------------------------------------
 */
static Oid
stream_type_oid(const char *name)
{
	Oid			t = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum(name),
									ObjectIdGetDatum(stream_nsp()));

	if (!OidIsValid(t))
		elog(ERROR, "type stream.%s is missing", name);
	return t;
}

typedef struct IdEntry
{
	char		k[SEQ_TEXT_LEN + 1];
	int			idx;
	bool		seen;
} IdEntry;

static void
transform_chunk(Batch *b, int lo, int hi, const char *fn_sql, TupleDesc in_desc,
				Oid in_type, Oid in_array_type, TimestampTz deadline, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	Datum	   *elems = palloc(sizeof(Datum) * (hi - lo));
	ArrayType  *arr;
	HTAB	   *ids;
	HASHCTL		ctl;
	volatile int attempt;
	char	   *volatile errmsg_text = NULL;
	volatile bool done = false;
	volatile bool timed_out = false;

	for (int i = lo; i < hi; i++)
	{
		SrcRec	   *r = &b->recs[i];
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};
		bytea	   *d = palloc(VARHDRSZ + r->len);

		SET_VARSIZE(d, VARHDRSZ + r->len);
		memcpy(VARDATA(d), r->data, r->len);
		v[0] = PointerGetDatum(seq_to_text_datum(b->info->stream_id, r->shard_index, r->seq));
		v[1] = TimestampTzGetDatum(r->arrival);
		v[2] = PointerGetDatum(d);
		v[3] = PointerGetDatum(cstring_to_text_with_len(r->pkey, r->pkey_len));
		v[4] = v[0];
		v[5] = CStringGetTextDatum(shard_id_text(r->shard_index));
		if (cfg->direct_put)
			n[3] = n[4] = n[5] = true;
		elems[i - lo] = heap_copy_tuple_as_datum(heap_form_tuple(in_desc, v, n), in_desc);
	}
	arr = construct_array(elems, hi - lo, in_type, -1, false, TYPALIGN_DOUBLE);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = SEQ_TEXT_LEN + 1;
	ctl.entrysize = sizeof(IdEntry);
	ctl.hcxt = cxt;

	/* a call that ran out of time is not retried: one hung transform must not hold the worker 4 times */
	for (attempt = 1; attempt <= 1 + DELIVERY_TRANSFORM_RETRIES && !done && !timed_out; attempt++)
	{
		ResourceOwner oldowner = subxact_begin(cxt);
		Sandbox		sb;

		PG_TRY();
		{
			Oid			argtype = in_array_type;
			Datum		arg = PointerGetDatum(arr);
			int			ret;

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			sandbox_begin(&sb, cfg->owner, deadline);
			ret = SPI_execute_with_args(fn_sql, 1, &argtype, &arg, NULL, false, 0);
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "transform returned %s", SPI_result_code_string(ret));
			sandbox_end(&sb);

			ids = hash_create("transform record ids", hi - lo, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			for (int i = lo; i < hi; i++)
			{
				char	   *k = seq_to_text(b->info->stream_id, b->recs[i].shard_index, b->recs[i].seq);
				IdEntry    *e = hash_search(ids, k, HASH_ENTER, NULL);

				e->idx = i;
				e->seen = false;
			}
			for (uint64 row = 0; row < SPI_processed; row++)
			{
				bool		isnull;
				char	   *rid = spi_text(row, 1);
				char	   *result = spi_text(row, 2);
				Datum		dd = spi_datum(row, 3, &isnull);
				IdEntry    *e;
				SrcRec	   *r;

				if (rid == NULL || strlen(rid) > SEQ_TEXT_LEN ||
					(e = hash_search(ids, rid, HASH_FIND, NULL)) == NULL || e->seen)
					continue;	/* unknown or repeated recordId: ignored */
				e->seen = true;
				r = &b->recs[e->idx];
				r->attempts = attempt;
				if (result != NULL && strcmp(result, "Ok") == 0)
				{
					if (isnull)
					{
						MemoryContext o = MemoryContextSwitchTo(cxt);

						fail_record(r, "processing-failed", "Lambda.MissingData",
									"The transform returned result Ok without data.");
						MemoryContextSwitchTo(o);
						continue;
					}
					else
					{
						bytea	   *od = DatumGetByteaPP(dd);
						MemoryContext o = MemoryContextSwitchTo(cxt);
						Datum		kd;

						r->status = REC_OK;
						r->outlen = VARSIZE_ANY_EXHDR(od);
						r->out = palloc(r->outlen + 1);
						memcpy(r->out, VARDATA_ANY(od), r->outlen);
						r->out[r->outlen] = '\0';
						kd = spi_datum(row, 4, &isnull);
						r->lambda_keys = isnull ? NULL : DatumGetJsonbPCopy(kd);
						MemoryContextSwitchTo(o);
					}
				}
				else if (result != NULL && strcmp(result, "Dropped") == 0)
					r->status = REC_DROPPED;
				else
				{
					MemoryContext o = MemoryContextSwitchTo(cxt);

					if (result != NULL && strcmp(result, "ProcessingFailed") == 0)
						fail_record(r, "processing-failed", "Lambda.ProcessingFailed",
									"The transform returned result ProcessingFailed.");
					else
						fail_record(r, "processing-failed", "Lambda.InvalidResult",
									psprintf("The transform returned result '%s'; expected Ok, Dropped or ProcessingFailed.",
											 result ? result : "null"));
					MemoryContextSwitchTo(o);
				}
			}
			{
				MemoryContext o = MemoryContextSwitchTo(cxt);

				for (int i = lo; i < hi; i++)
				{
					char	   *k = seq_to_text(b->info->stream_id, b->recs[i].shard_index, b->recs[i].seq);
					IdEntry    *e = hash_search(ids, k, HASH_FIND, NULL);

					if (e && !e->seen)
						fail_record(&b->recs[i], "processing-failed", "Lambda.MissingRecordId",
									"The transform did not return this recordId.");
				}
				MemoryContextSwitchTo(o);
			}
			SPI_finish();
			subxact_commit(cxt, oldowner);
			done = true;
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			sandbox_abort(&sb);
			ed = subxact_abort(cxt, oldowner);
			errmsg_text = pstrdup(ed->message);
			timed_out = sandbox_timed_out(ed->sqlerrcode);
			ereport(WARNING,
					(errmsg("Firehose %s: transform attempt %d failed: %s",
							cfg->name, (int) attempt, ed->message)));
		}
		PG_END_TRY();
	}
	if (!done)
	{
		for (int i = lo; i < hi; i++)
		{
			fail_record(&b->recs[i], "processing-failed", "Lambda.FunctionError",
						errmsg_text);
			b->recs[i].attempts = attempt - 1;
		}
	}
}

static void
run_transform(Batch *b, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	HeapTuple	proc;
	char	   *fn_sql;
	Oid			in_type = stream_type_oid("firehose_record");
	Oid			in_array_type = get_array_type(in_type);
	TupleDesc	in_desc = lookup_rowtype_tupdesc_copy(in_type, -1);
	int			lo = 0;
	/* every chunk and attempt of the batch's transform shares one time limit */
	TimestampTz deadline = sandbox_deadline();

	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(cfg->transform));
	if (!HeapTupleIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("ResourceNotFoundException: the transform function of Firehose %s (oid %u) no longer exists",
						cfg->name, cfg->transform)));
	ReleaseSysCache(proc);
	fn_sql = psprintf("SELECT record_id, result, data, partition_keys FROM %s.%s($1)",
					  quote_identifier(get_namespace_name(get_func_namespace(cfg->transform))),
					  quote_identifier(get_func_name(cfg->transform)));
	BlessTupleDesc(in_desc);

	while (lo < b->nrecs)
	{
		int			hi = lo;
		Size		bytes = 0;

		while (hi < b->nrecs && hi - lo < TRANSFORM_CHUNK_RECORDS &&
			   (hi == lo || bytes + b->recs[hi].len <= TRANSFORM_CHUNK_BYTES))
			bytes += b->recs[hi++].len;
		transform_chunk(b, lo, hi, fn_sql, in_desc, in_type, in_array_type, deadline, cxt);
		lo = hi;
	}
}

/* ----------------------------------------------------------------------
 * Output objects of a file batch
 * ----------------------------------------------------------------------
 */
typedef enum ObjKind
{
	OBJ_DATA,
	OBJ_ERROR,
	OBJ_BACKUP
} ObjKind;

typedef struct OutObject
{
	char		key[GROUP_KEY_MAX]; /* hash key: kind + partition values */
	ObjKind		kind;
	const char *error_type;
	int			nkeys;
	char	  **key_names;
	char	  **key_values;
	TimestampTz oldest;
	StringInfo	buf;
	void	   *pw;				/* parquet writer */
	char	   *tmp_name;		/* in the staging directory */
	char	   *tmp_path;
	char	   *rel_path;
	int64		records;
	uint64		bytes;
	int			index;
} OutObject;

typedef struct FileOutput
{
	Batch	   *b;
	DestDir    *dir;			/* the batch's own staging directory */
	char	   *staging;		/* its path */
	HTAB	   *objects;
	OutObject **list;
	int			nobjects;
	int			cap;
	RowMapper  *mapper;
	MemoryContext cxt;
} FileOutput;

static OutObject *
get_object(FileOutput *fo, ObjKind kind, const char *error_type, int nkeys,
		   char **names, char **values, bool *toomany)
{
	char		key[GROUP_KEY_MAX];
	StringInfoData k;
	OutObject  *o;
	bool		found;
	MemoryContext old;

	initStringInfo(&k);
	appendStringInfo(&k, "%d\x1f%s", (int) kind, error_type ? error_type : "");
	for (int i = 0; i < nkeys; i++)
		appendStringInfo(&k, "\x1f%s", values[i]);
	if (k.len >= GROUP_KEY_MAX)
	{
		*toomany = true;
		return NULL;
	}
	memset(key, 0, sizeof(key));
	memcpy(key, k.data, k.len);
	pfree(k.data);
	o = hash_search(fo->objects, key, HASH_FIND, &found);
	if (found)
		return o;
	if (kind == OBJ_DATA && fo->nobjects >= DELIVERY_MAX_PARTITIONS)
	{
		*toomany = true;
		return NULL;
	}
	o = hash_search(fo->objects, key, HASH_ENTER, &found);
	old = MemoryContextSwitchTo(fo->cxt);
	o->kind = kind;
	o->error_type = error_type;
	o->nkeys = nkeys;
	o->key_names = names;
	o->key_values = palloc(sizeof(char *) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
		o->key_values[i] = pstrdup(values[i]);
	o->oldest = DT_NOEND;
	o->buf = makeStringInfo();
	o->pw = NULL;
	o->records = 0;
	o->bytes = 0;
	o->index = fo->nobjects;
	o->tmp_name = psprintf("%d.tmp", o->index);
	o->tmp_path = psprintf("%s/%s", fo->staging, o->tmp_name);
	o->rel_path = NULL;
	if (fo->nobjects >= fo->cap)
	{
		fo->cap = Max(16, fo->cap * 2);
		fo->list = fo->list ? repalloc(fo->list, sizeof(OutObject *) * fo->cap)
			: palloc(sizeof(OutObject *) * fo->cap);
	}
	fo->list[fo->nobjects++] = o;
	MemoryContextSwitchTo(old);
	return o;
}

static int64
unix_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

static void
append_base64(StringInfo out, const char *data, int len)
{
	int			enclen = pg_b64_enc_len(len);
	int			n;

	enlargeStringInfo(out, enclen + 1);
	n = pg_b64_encode(data, len, out->data + out->len, enclen);
	if (n < 0)
		elog(ERROR, "could not encode base64");
	out->len += n;
	out->data[out->len] = '\0';
}

/* Firehose's error envelope, one JSON line. */
static void
append_error_line(StringInfo out, Batch *b, SrcRec *r, TimestampTz now)
{
	appendStringInfo(out, "{\"attemptsMade\":%d,\"arrivalTimestamp\":" INT64_FORMAT ",\"errorCode\":",
					 r->attempts, unix_ms(r->arrival));
	escape_json(out, r->error_code ? r->error_code : "");
	appendStringInfoString(out, ",\"errorMessage\":");
	escape_json(out, r->error_message ? r->error_message : "");
	appendStringInfo(out, ",\"attemptEndingTimestamp\":" INT64_FORMAT ",\"rawData\":\"", unix_ms(now));
	append_base64(out, r->data, r->len);
	appendStringInfoString(out, "\",\"sequenceNumber\":");
	escape_json(out, seq_to_text(b->info->stream_id, r->shard_index, r->seq));
	if (OidIsValid(b->cfg->transform) && strncmp(r->error_code ? r->error_code : "", "Lambda.", 7) == 0)
	{
		appendStringInfoString(out, ",\"lambdaArn\":");
		escape_json(out, format_procedure_qualified(b->cfg->transform));
	}
	appendStringInfoString(out, "}\n");
}

/*
 * Partition values of one record (query keys from its JSON, lambda keys
 * from the transform), each made safe for a path; false, with the record
 * failed, when one is missing or cannot name a path component.
 */
static bool
partition_values(Batch *b, SrcRec *r, char **names, char **values, int nkeys)
{
	DeliveryConfig *cfg = b->cfg;
	Jsonb	   *doc = NULL;

	for (int i = 0; i < nkeys; i++)
	{
		char	   *raw = NULL;
		int			rawlen = 0;
		const char *why;

		if (names[i][0] == 'q')
		{
			int			k;

			if (doc == NULL)
				doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(r->out, r->outlen))));
			for (k = 0; k < cfg->nkeys; k++)
				if (strcmp(cfg->key_names[k], names[i] + 2) == 0)
					break;
			if (k < cfg->nkeys)
				raw = keyquery_eval(cfg->key_queries[k], doc, &rawlen);
		}
		else if (r->lambda_keys != NULL && JB_ROOT_IS_OBJECT(r->lambda_keys))
		{
			/* keys are looked up in an object only: an array or scalar names none */
			JsonbValue *v = getKeyJsonValueFromContainer(&r->lambda_keys->root, names[i] + 2,
														 strlen(names[i] + 2), NULL);

			if (v != NULL && v->type == jbvString)
				raw = pnstrdup(v->val.string.val, v->val.string.len);
			else if (v != NULL && v->type != jbvNull)
				raw = jsonb_scalar_text(JsonbValueToJsonb(v));
			if (raw)
				rawlen = (v->type == jbvString) ? v->val.string.len : strlen(raw);
		}
		if (raw == NULL)
		{
			fail_record(r, "processing-failed", "DynamicPartitioning.MetadataExtractionFailed",
						psprintf("Partition key \"%s\" could not be extracted from the record.", names[i] + 2));
			return false;
		}

		/*
		 * A value becomes (part of) a directory name once the batch is
		 * committed; one the file system refuses would make the rename fail
		 * on every retry.  Refuse it now, as a record failure.
		 */
		values[i] = prefix_partition_value(raw, rawlen, &why);
		if (values[i] == NULL)
		{
			fail_record(r, "processing-failed", "DynamicPartitioning.InvalidPartitionKeyValue",
						psprintf("The value of partition key \"%s\" %s; it cannot name a directory.",
								 names[i] + 2, why));
			return false;
		}
	}
	return true;
}

/* Append one OK record to its object; errors here become record failures. */
static void
write_data_record(FileOutput *fo, OutObject *o, SrcRec *r, Datum *values, bool *isnull)
{
	DeliveryConfig *cfg = fo->b->cfg;

	switch (cfg->format)
	{
		case DFMT_RAW:
			appendBinaryStringInfo(o->buf, r->out, r->outlen);
			break;
		case DFMT_JSON:
			if (fo->mapper == NULL)
			{
				appendBinaryStringInfo(o->buf, r->out, r->outlen);
				if (r->outlen == 0 || r->out[r->outlen - 1] != '\n')
					appendStringInfoChar(o->buf, '\n');
				break;
			}
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			json_append_row(o->buf, fo->mapper, values, isnull);
			break;
		case DFMT_CSV:
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			csv_append_row(o->buf, fo->mapper, values, isnull);
			break;
		case DFMT_PARQUET:
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			if (o->pw == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(fo->cxt);

				o->pw = delivery_parquet_open(fo->dir, o->tmp_name, fo->mapper, cfg->compression);
				MemoryContextSwitchTo(old);
			}
			delivery_parquet_add(o->pw, values, isnull);
			break;
	}
	o->records++;
	if (r->arrival < o->oldest)
		o->oldest = r->arrival;
}

/*
 * What a record failure raised while converting is filed as, when not a
 * format conversion failure (set while partition keys are extracted).
 */
static const char *convert_error_type = NULL;
static const char *convert_error_code = NULL;

/*
 * A record that is no valid UTF-8 (overlong forms, surrogates, stray or
 * missing continuation bytes, code points past U+10FFFF, NUL bytes) never
 * reaches a destination: failed, with where it goes wrong.
 */
static bool
record_is_utf8(SrcRec *r)
{
	int			valid = pg_encoding_verifymbstr(PG_UTF8, r->out, r->outlen);
	const char *what = r->out == r->data ? "record" : "record the transform returned";

	if (valid >= r->outlen)
		return true;
	if (r->out[valid] == '\0')
		fail_record(r, "format-conversion-failed", "DataFormatConversion.InvalidUTF8",
					psprintf("The %s contains a NUL byte at offset %d; JSON records must be UTF-8 text without NUL bytes.",
							 what, valid));
	else
	{
		StringInfoData bytes;

		initStringInfo(&bytes);
		for (int i = valid; i < r->outlen && i < valid + 4; i++)
			appendStringInfo(&bytes, "%s0x%02x", i > valid ? " " : "", (unsigned char) r->out[i]);
		fail_record(r, "format-conversion-failed", "DataFormatConversion.InvalidUTF8",
					psprintf("The %s is not valid UTF-8: invalid byte sequence %s at offset %d; JSON records must be UTF-8.",
							 what, bytes.data, valid));
	}
	return false;
}

/* Converts one OK record; an error it raises fails that record alone. */
typedef void (*ConvertRecordFn) (SrcRec *r, void *arg);

/*
 * Run convert on each OK record of the batch, for the file and the table
 * destinations alike.  Converting records runs type input and output
 * functions (a domain's CHECK, a cast to json): they run as the delivery
 * stream's owner, never as the worker's superuser, inside a subtransaction;
 * aborting it restores the user on error.  A record whose conversion fails
 * is failed alone and the loop resumes after it in a new subtransaction.
 * scratch, if not NULL, is reset after a failure (convert's per-record
 * allocations).
 */
static void
convert_records(Batch *b, MemoryContext cxt, MemoryContext scratch,
				ConvertRecordFn convert, void *arg)
{
	volatile int cur = 0;
	DeliveryConfig *cfg = b->cfg;
	/* JSON read or written as text: it must be UTF-8 (RFC 8259), and NUL-free */
	bool		need_utf8 = cfg->format != DFMT_RAW || cfg->destination == NULL ||
		cfg->prefix_t->has_query_keys;
	/* one time limit for the batch's conversions: a record that fails does not restart it */
	TimestampTz deadline = sandbox_deadline();

	while (cur < b->nrecs)
	{
		ResourceOwner oldowner = subxact_begin(cxt);
		Sandbox		sb;

		PG_TRY();
		{
			sandbox_begin(&sb, b->cfg->owner, deadline);
			for (; cur < b->nrecs; cur++)
			{
				CHECK_FOR_INTERRUPTS();
				if (b->recs[cur].status != REC_OK)
					continue;
				if (need_utf8 && !record_is_utf8(&b->recs[cur]))
					continue;
				convert_error_type = NULL;
				convert_error_code = NULL;
				convert(&b->recs[cur], arg);
			}
			sandbox_end(&sb);
			subxact_commit(cxt, oldowner);
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			sandbox_abort(&sb);
			ed = subxact_abort(cxt, oldowner);
			/* a conversion that runs out of time is not this record's fault */
			if (sandbox_timed_out(ed->sqlerrcode))
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("Firehose %s: %s", cfg->name, ed->message),
						 errdetail("The batch is retried with back-off.")));

			if (scratch)
				MemoryContextReset(scratch);
			fail_record(&b->recs[cur], convert_error_type ? convert_error_type : "format-conversion-failed",
						convert_error_code ? convert_error_code : "DataFormatConversion.MalformedData",
						ed->message);
			convert_error_type = NULL;
			convert_error_code = NULL;
			cur++;
		}
		PG_END_TRY();
	}
}

/* route_records' state for route_record */
typedef struct RouteState
{
	FileOutput *fo;
	int			nkeys;
	char	  **names;
	MemoryContext rec_cxt;
	Datum	   *values;
	bool	   *isnull;
} RouteState;

/* Convert one record into the object its partition values name. */
static void
route_record(SrcRec *r, void *arg)
{
	RouteState *rs = (RouteState *) arg;
	char	  **vals;
	OutObject  *o;
	bool		toomany = false;
	MemoryContext old;

	old = MemoryContextSwitchTo(rs->rec_cxt);
	vals = palloc(sizeof(char *) * Max(rs->nkeys, 1));
	if (rs->nkeys > 0)
	{
		PrefixValues v;
		char	   *why = NULL;
		bool		ok;

		/* an error while the keys are extracted (a jq filter) is a partitioning failure */
		convert_error_type = "processing-failed";
		convert_error_code = "DynamicPartitioning.MetadataExtractionFailed";
		ok = partition_values(rs->fo->b, r, rs->names, vals, rs->nkeys);
		convert_error_type = NULL;
		convert_error_code = NULL;
		if (ok)
		{
			/* the evaluated prefix must make a path the file system takes */
			memset(&v, 0, sizeof(v));
			v.ts = r->arrival;
			v.nkeys = rs->nkeys;
			v.key_names = rs->names;
			v.key_values = vals;
			if (prefix_eval_checked(rs->fo->b->cfg->prefix_t, &v, &why) == NULL)
			{
				fail_record(r, "processing-failed", "DynamicPartitioning.InvalidPartitionKeyValue",
							psprintf("The partition key values make an invalid prefix: %s.", why));
				ok = false;
			}
		}
		if (!ok)
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(rs->rec_cxt);
			return;
		}
	}
	MemoryContextSwitchTo(old);
	o = get_object(rs->fo, OBJ_DATA, NULL, rs->nkeys, rs->names, vals, &toomany);
	if (o == NULL)
	{
		fail_record(r, "processing-failed", "DynamicPartitioning.PartitionLimitExceeded",
					psprintf("More than %d active partitions in one buffer. A key with a new value in almost every record "
							 "(a raw timestamp, say) makes a partition per record: reduce it, e.g. \".ts | strftime(\\\"%%Y-%%m-%%d\\\")\".",
							 DELIVERY_MAX_PARTITIONS));
		MemoryContextReset(rs->rec_cxt);
		return;
	}
	old = MemoryContextSwitchTo(rs->rec_cxt);
	write_data_record(rs->fo, o, r, rs->values, rs->isnull);
	MemoryContextSwitchTo(old);
	MemoryContextReset(rs->rec_cxt);
}

/*
 * Route the OK records to their objects, converting each; a record that
 * fails conversion is failed alone (see convert_records).
 */
static void
route_records(FileOutput *fo, MemoryContext cxt)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	PrefixTemplate *t = cfg->prefix_t;
	RouteState	rs;

	rs.fo = fo;
	rs.nkeys = 0;
	rs.rec_cxt = AllocSetContextCreate(cxt, "delivery record", ALLOCSET_DEFAULT_SIZES);
	rs.values = NULL;
	rs.isnull = NULL;
	rs.names = palloc(sizeof(char *) * Max(t->nsegs, 1));
	for (int i = 0; i < t->nsegs; i++)
	{
		if (t->segs[i].kind == PSEG_KEY_QUERY || t->segs[i].kind == PSEG_KEY_LAMBDA)
		{
			char	   *n = psprintf("%c:%s", t->segs[i].kind == PSEG_KEY_QUERY ? 'q' : 'l', t->segs[i].text);
			bool		dup = false;

			for (int k = 0; k < rs.nkeys; k++)
				if (strcmp(rs.names[k], n) == 0)
					dup = true;
			if (!dup)
				rs.names[rs.nkeys++] = n;
		}
	}
	if (fo->mapper)
	{
		rs.values = palloc(sizeof(Datum) * fo->mapper->desc->natts);
		rs.isnull = palloc(sizeof(bool) * fo->mapper->desc->natts);
	}

	convert_records(b, cxt, rs.rec_cxt, route_record, &rs);
}

static void
object_name(StringInfo out, FileOutput *fo, OutObject *o)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	uint8		digest[16];
	char	   *seedtext = psprintf("%u/%d/" INT64_FORMAT "/%s", MyDatabaseId, cfg->id, b->batch_no, o->key);
	PrefixValues v;
	char	   *ext;

	stream_md5(seedtext, strlen(seedtext), digest);
	memset(&v, 0, sizeof(v));
	v.ts = o->oldest;
	v.error_type = o->error_type;
	v.nkeys = o->nkeys;
	v.key_names = o->key_names;
	v.key_values = o->key_values;
	v.seed = ((uint32) digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3];
	appendStringInfoString(out, prefix_eval(o->kind == OBJ_DATA ? cfg->prefix_t :
											o->kind == OBJ_ERROR ? cfg->error_t : cfg->backup_t, &v));
	appendStringInfo(out, "%s-%d-", cfg->name, cfg->version);
	prefix_format_timestamp(out, "yyyy-MM-dd-HH-mm-ss", o->oldest);
	appendStringInfoChar(out, '-');
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			appendStringInfoChar(out, '-');
		appendStringInfo(out, "%02x", digest[i]);
	}
	if (o->kind == OBJ_DATA)
		ext = (char *) delivery_file_extension(cfg->format, cfg->compression);
	else if (o->kind == OBJ_ERROR)
		ext = (char *) delivery_file_extension(DFMT_JSON, cfg->format == DFMT_PARQUET ? STREAM_CODEC_NONE : cfg->compression);
	else
		ext = (char *) delivery_file_extension(DFMT_RAW, cfg->format == DFMT_PARQUET ? STREAM_CODEC_NONE : cfg->compression);
	appendStringInfoString(out, ext);
}

/* Finish every object into its fsynced temporary file; build the file list. */
static void
finish_objects(FileOutput *fo)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	bool		first = true;

	initStringInfo(&b->files);
	appendStringInfoChar(&b->files, '[');
	for (int i = 0; i < fo->nobjects; i++)
	{
		OutObject  *o = fo->list[i];
		StringInfoData name;

		if (o->records == 0)
			continue;
		initStringInfo(&name);
		object_name(&name, fo, o);
		o->rel_path = name.data;
		if (o->pw != NULL)
		{
			/* created 0644 (see parquet_writer_create_ext) */
			o->bytes = delivery_parquet_finish(o->pw);
			o->pw = NULL;
		}
		else
		{
			StreamCodec comp = cfg->compression;

			if (cfg->format == DFMT_PARQUET && o->kind != OBJ_DATA)
				comp = STREAM_CODEC_NONE;	/* parquet compresses pages, not error files */
			if (comp != STREAM_CODEC_NONE)
			{
				StringInfoData z;

				initStringInfo(&z);
				delivery_compress_file(comp, o->buf, &z);
				pfree(o->buf->data);
				*o->buf = z;
			}
			delivery_write_file(fo->dir, o->tmp_name, o->buf->data, o->buf->len);
			o->bytes = o->buf->len;
			pfree(o->buf->data);
			o->buf->data = NULL;
		}
		if (!first)
			appendStringInfoChar(&b->files, ',');
		first = false;
		appendStringInfoString(&b->files, "{\"kind\":");
		escape_json(&b->files, o->kind == OBJ_DATA ? "data" : o->kind == OBJ_ERROR ? "error" : "backup");
		appendStringInfoString(&b->files, ",\"path\":");
		escape_json(&b->files, o->rel_path);
		appendStringInfoString(&b->files, ",\"tmp\":");
		escape_json(&b->files, o->tmp_path);
		appendStringInfo(&b->files, ",\"records\":" INT64_FORMAT ",\"bytes\":" UINT64_FORMAT "}",
						 o->records, (uint64) o->bytes);
		if (o->kind == OBJ_DATA)
			b->out_bytes += o->bytes;
		b->nfiles++;
	}
	appendStringInfoChar(&b->files, ']');
}

/*
 * stream_internal._delivery_check_destination(destination text): at creation, the
 * server must be able to create the destination and write in it (as the
 * worker will), or the delivery stream is refused with the reason.
 */
Datum
stream_delivery_check_destination(PG_FUNCTION_ARGS)
{
	char	   *dest = text_to_cstring(PG_GETARG_TEXT_PP(0));
	volatile int probe_errno = 0;
	ErrorContextCallback *saved = error_context_stack;

	/* called by create_delivery_stream: its plpgsql call chain is no use to the user */
	error_context_stack = NULL;

	if (dest[0] != '/' || dest[1] == '\0' || strstr(dest, "/./") != NULL || strstr(dest, "/../") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: destination \"%s\" must be an absolute directory path without . or .. components",
						dest)));
	/* room below it for a staging path or prefix, object name and the longest prefix */
	if (strlen(dest) + 1 + DELIVERY_PREFIX_MAX + DELIVERY_OBJECT_NAME_MAX + 64 >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: destination \"%s\" is too long: at most %d bytes",
						dest, (int) (MAXPGPATH - 1 - DELIVERY_PREFIX_MAX - DELIVERY_OBJECT_NAME_MAX - 64 - 1))));
	PG_TRY();
	{
		/* as the worker will: by descriptor, refusing links and a foreign staging directory */
		DestDir    *root = destdir_open_root(dest, CurrentMemoryContext);
		DestDir    *sroot = destdir_staging_root(root, true);

		probe_errno = destdir_probe_write(sroot);
		destdir_close(sroot);
		destdir_close(root);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(ErrorContext);
		ed = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: the server cannot write destination \"%s\"", dest),
				 errdetail("%s", ed->message),
				 errhint("The directory must be writable by the operating system user the database server runs as.")));
	}
	PG_END_TRY();
	if (probe_errno != 0)
	{
		errno = probe_errno;
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: the server cannot write destination \"%s\": could not create a file in \"%s/" DELIVERY_STAGING_NAME "\": %m",
						dest, dest),
				 errhint("The directory must be writable by the operating system user the database server runs as.")));
	}
	error_context_stack = saved;
	PG_RETURN_VOID();
}

/* the directory part of a relative path ("" for none) */
static char *
rel_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? pnstrdup(path, slash - path) : pstrdup("");
}

static const char *
rel_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/*
 * Step 3: rename the temporary files of a committed file list from the
 * batch's staging directory into place.  Every directory on the way is
 * opened by descriptor (a symbolic link is refused with an error, the
 * batch waits), each target directory is fsynced once its files are in.
 * Returns false when a file has neither its temporary nor its final name
 * (someone removed it): the batch is then written again.
 */
static bool
publish_files(DeliveryConfig *cfg, const char *files_json, const char *staging, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(files_json)));
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *paths = NIL,
			   *tmps = NIL;
	char	   *path = NULL,
			   *tmp = NULL,
			   *key = NULL;
	int			expected = JB_ROOT_IS_ARRAY(jb) ? JB_ROOT_COUNT(jb) : -1;
	int			n;
	bool	   *done;
	char	  **dirs;
	DestDir    *root,
			   *sroot,
			   *sdir = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			path = tmp = NULL;
		else if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvString)
		{
			if (strcmp(key, "path") == 0)
				path = pnstrdup(v.val.string.val, v.val.string.len);
			else if (strcmp(key, "tmp") == 0)
				tmp = pnstrdup(v.val.string.val, v.val.string.len);
		}
		else if (tok == WJB_END_OBJECT && path && tmp)
		{
			if (!destdir_is_tmp_name(rel_basename(tmp)) || path[0] == '\0' || path[strlen(path) - 1] == '/')
				elog(ERROR, "file list of a pending batch is malformed: \"%s\" from \"%s\"", path, tmp);
			paths = lappend(paths, path);
			tmps = lappend(tmps, tmp);
		}
	}
	n = list_length(paths);
	if (n != expected)
		elog(ERROR, "file list of a pending batch is malformed: %d of %d files found", n, expected);

	root = destdir_open_root(cfg->destination, cxt);
	sroot = destdir_staging_root(root, false);
	if (sroot != NULL && staging != NULL)
		sdir = destdir_open_staging(sroot, staging);
	done = palloc0(sizeof(bool) * Max(n, 1));
	dirs = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		dirs[i] = rel_dirname(list_nth(paths, i));
	for (int i = 0; i < n; i++)
	{
		DestDir    *dir;

		if (done[i])
			continue;
		dir = dirs[i][0] ? destdir_open_path(root, dirs[i], true) : root;
		/* every file of this directory, then its fsync */
		for (int j = i; j < n; j++)
		{
			const char *final = list_nth(paths, j);
			const char *tmpname = rel_basename(list_nth(tmps, j));

			CHECK_FOR_INTERRUPTS();
			if (done[j] || strcmp(dirs[j], dirs[i]) != 0)
				continue;
			if (sdir != NULL && destdir_has_file(sdir, tmpname))
				destdir_rename(sdir, tmpname, dir, rel_basename(final));
			else if (!destdir_has_file(dir, rel_basename(final)))
			{
				MemoryContextSwitchTo(old);
				return false;
			}
			done[j] = true;
		}
		destdir_fsync(dir);
		if (dir != root)
			destdir_close(dir);
	}
	destdir_close(sdir);
	destdir_close(sroot);
	destdir_close(root);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Remove a batch's staging directory, if there is one: only the temporary
 * files the worker made in it (see destdir_remove_staging).
 */
static void
remove_staging(DeliveryConfig *cfg, const char *staging, MemoryContext cxt)
{
	MemoryContext old;
	DestDir    *root,
			   *sroot;

	if (staging == NULL)
		return;
	old = MemoryContextSwitchTo(cxt);
	root = destdir_open_root(cfg->destination, cxt);
	sroot = destdir_staging_root(root, false);
	if (sroot != NULL)
		destdir_remove_staging(sroot, staging);
	destdir_close(sroot);
	destdir_close(root);
	MemoryContextSwitchTo(old);
}

/*
 * The worker never waits for a lock that users can hold: an owner's open
 * transaction that locked its own table would stop every delivery stream and
 * the maintenance of the database.  A relation a batch opens outside owner
 * code (its destination table, its schema's type) is locked at once or the
 * batch is retried with back-off; later opens in the batch's transaction find
 * the lock held.  (Inside owner code the time limit bounds lock waits.)
 */
static void
lock_or_retry(DeliveryConfig *cfg, Oid relid, LOCKMODE mode, const char *what)
{
	if (!ConditionalLockRelationOid(relid, mode))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("ServiceUnavailableException: %s of Firehose %s is locked by another transaction",
						what, cfg->name),
				 errdetail("The batch is retried with back-off.")));
}

/* ----------------------------------------------------------------------
 * Table destination
 * ----------------------------------------------------------------------
 */
static Oid
resolve_table(DeliveryConfig *cfg)
{
	List	   *names = stringToQualifiedNameList(cfg->destination_table);
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("ResourceNotFoundException: destination table %s of Firehose %s does not exist",
						cfg->destination_table, cfg->name)));
	return relid;
}

typedef struct TableRow
{
	SrcRec	   *rec;
	Datum		row;
	uint64		mask;			/* defaulted columns the record named */
} TableRow;

static char *
insert_sql(RowMapper *m, Oid relid, uint64 mask)
{
	StringInfoData cols,
				sel;
	int			bit = 0;

	initStringInfo(&cols);
	initStringInfo(&sel);
	for (int i = 0; i < m->natts; i++)
	{
		const char *col = quote_identifier(NameStr(TupleDescAttr(m->desc, m->attnums[i] - 1)->attname));
		bool		include = true;

		if (m->is_generated[i])
			include = false;
		else if (m->has_default[i])
		{
			include = bit < 64 ? (mask & ((uint64) 1 << bit)) != 0 : true;
			bit++;
		}
		if (!include)
			continue;
		if (cols.len > 0)
		{
			appendStringInfoString(&cols, ", ");
			appendStringInfoString(&sel, ", ");
		}
		appendStringInfoString(&cols, col);
		appendStringInfo(&sel, "r.%s", col);
	}
	if (cols.len == 0)
		return psprintf("INSERT INTO %s.%s DEFAULT VALUES",
						quote_identifier(get_namespace_name(get_rel_namespace(relid))),
						quote_identifier(get_rel_name(relid)));
	return psprintf("INSERT INTO %s.%s (%s) SELECT %s FROM unnest($1) r",
					quote_identifier(get_namespace_name(get_rel_namespace(relid))),
					quote_identifier(get_rel_name(relid)), cols.data, sel.data);
}

/* Insert rows (all with one mask) as the owner; true if it worked. */
static bool
insert_rows(DeliveryConfig *cfg, RowMapper *m, Oid relid, TableRow *rows, int n,
			uint64 mask, TimestampTz deadline, MemoryContext cxt, char **errmsg_out)
{
	ResourceOwner oldowner;
	Sandbox		sb;
	volatile bool ok = false;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	ArrayType  *arr;
	Oid			arrtype = get_array_type(m->typid);

	for (int i = 0; i < n; i++)
		elems[i] = rows[i].row;
	arr = construct_array(elems, n, m->typid, -1, false, TYPALIGN_DOUBLE);

	oldowner = subxact_begin(cxt);
	PG_TRY();
	{
		Datum		arg = PointerGetDatum(arr);
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		sandbox_begin(&sb, cfg->owner, deadline);
		ret = SPI_execute_with_args(insert_sql(m, relid, mask), 1, &arrtype, &arg, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "insert into the destination table returned %s", SPI_result_code_string(ret));
		sandbox_end(&sb);
		SPI_finish();
		subxact_commit(cxt, oldowner);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		sandbox_abort(&sb);
		ed = subxact_abort(cxt, oldowner);

		*errmsg_out = pstrdup(ed->message);
		/*
		 * the table itself is the problem: retry the whole batch later (also
		 * when its triggers or checks ran out of time: retrying row by row
		 * would hold the worker once per row)
		 */
		if (sandbox_timed_out(ed->sqlerrcode) ||
			ed->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
			ed->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
			ed->sqlerrcode == ERRCODE_DISK_FULL ||
			ed->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
			ed->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
			ed->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
			ed->sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION)
			ereport(ERROR,
					(errcode(ed->sqlerrcode),
					 errmsg("ServiceUnavailableException: cannot insert into %s: %s",
							cfg->destination_table, ed->message)));
	}
	PG_END_TRY();
	return ok;
}

static int
cmp_mask(const void *a, const void *b)
{
	uint64		x = ((const TableRow *) a)->mask;
	uint64		y = ((const TableRow *) b)->mask;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* deliver_to_table's state for table_record */
typedef struct TableState
{
	RowMapper  *m;
	TableRow   *rows;
	int			nrows;
	Datum	   *values;
	bool	   *isnull;
	bool	   *present;
} TableState;

/* Convert one record into a row of the destination table. */
static void
table_record(SrcRec *r, void *arg)
{
	TableState *ts = (TableState *) arg;
	RowMapper  *m = ts->m;
	HeapTuple	tup;
	uint64		mask = 0;
	int			bit = 0;

	rowmapper_json_to_row(m, r->out, r->outlen, ts->values, ts->isnull, ts->present);
	for (int i = 0; i < m->natts; i++)
	{
		if (!m->has_default[i] || m->is_generated[i])
			continue;
		if (bit < 64 && ts->present[m->attnums[i] - 1])
			mask |= (uint64) 1 << bit;
		bit++;
	}
	tup = heap_form_tuple(m->desc, ts->values, ts->isnull);
	ts->rows[ts->nrows].rec = r;
	ts->rows[ts->nrows].row = heap_copy_tuple_as_datum(tup, m->desc);
	ts->rows[ts->nrows].mask = mask;
	ts->nrows++;
	heap_freetuple(tup);
}

/* Convert, insert; failed records go to stream.delivery_errors. Same transaction. */
static void
deliver_to_table(Batch *b, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	Oid			relid = resolve_table(cfg);
	RowMapper  *m;
	TableRow   *rows = palloc_extended(sizeof(TableRow) * Max(b->nrecs, 1), MCXT_ALLOC_HUGE);
	TableState	ts;
	int			nrows;
	TimestampTz deadline;

	lock_or_retry(cfg, relid, RowExclusiveLock, psprintf("destination table %s", cfg->destination_table));
	m = rowmapper_create(InvalidOid, relid);

	/*
	 * convert, resuming after a record that fails; ts lives in memory (not a
	 * register of convert_records' frame), so nrows survives the longjmp
	 */
	ts.m = m;
	ts.rows = rows;
	ts.nrows = 0;
	ts.values = palloc(sizeof(Datum) * m->desc->natts);
	ts.isnull = palloc(sizeof(bool) * m->desc->natts);
	ts.present = palloc(sizeof(bool) * m->desc->natts);
	convert_records(b, cxt, NULL, table_record, &ts);
	nrows = ts.nrows;

	/*
	 * insert per mask group; a group that fails is inserted row by row.  All
	 * of it shares one time limit: a trigger that fails every row just
	 * before the limit must not hold the worker once per row.
	 */
	qsort(rows, nrows, sizeof(TableRow), cmp_mask);
	deadline = sandbox_deadline();
	for (int i = 0; i < nrows;)
	{
		int			j = i + 1;
		char	   *msg = NULL;

		while (j < nrows && rows[j].mask == rows[i].mask)
			j++;
		if (!insert_rows(cfg, m, relid, rows + i, j - i, rows[i].mask, deadline, cxt, &msg))
		{
			for (int k = i; k < j; k++)
			{
				char	   *msg1 = NULL;

				if (!insert_rows(cfg, m, relid, rows + k, 1, rows[k].mask, deadline, cxt, &msg1))
					fail_record(rows[k].rec, "table-insert-failed", "Table.InsertFailed", msg1);
			}
		}
		i = j;
	}

	/* failed records: the error table, in this transaction */
	{
		StringInfoData env;
		TimestampTz now = GetCurrentTimestamp();
		int			nerr = 0;

		initStringInfo(&env);
		for (int i = 0; i < b->nrecs; i++)
		{
			SrcRec	   *r = &b->recs[i];

			if (r->status == REC_OK)
				b->delivered++;
			else if (r->status == REC_DROPPED)
				b->dropped++;
			else
			{
				Datum		args[4];
				Oid			types[4] = {INT4OID, INT8OID, TEXTOID, JSONBOID};

				resetStringInfo(&env);
				append_error_line(&env, b, r, now);
				env.data[--env.len] = '\0';
				args[0] = Int32GetDatum(cfg->id);
				args[1] = Int64GetDatum(b->batch_no);
				args[2] = CStringGetTextDatum(r->error_type);
				args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(env.data));
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				if (SPI_execute_with_args("INSERT INTO stream.delivery_errors (delivery_stream_id, batch_no, error_output_type, envelope) "
										  "VALUES ($1, $2, $3, $4)", 4, types, args, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not insert into stream.delivery_errors");
				SPI_finish();
				b->failed++;
				nerr++;
			}
		}
		appendStringInfo(&b->files, "[{\"kind\":\"table\",\"path\":");
		escape_json(&b->files, cfg->destination_table);
		appendStringInfo(&b->files, ",\"records\":" INT64_FORMAT "}", b->delivered);
		if (nerr > 0)
			appendStringInfo(&b->files, ",{\"kind\":\"error\",\"path\":\"stream.delivery_errors\",\"records\":%d}", nerr);
		appendStringInfoChar(&b->files, ']');
		b->nfiles = 1;
	}
}

/* ----------------------------------------------------------------------
 * A file batch: steps 2 and 3
 * ----------------------------------------------------------------------
 */
static void
write_file_batch(Batch *b, MemoryContext cxt, const char *staging)
{
	DeliveryConfig *cfg = b->cfg;
	FileOutput	fo;
	HASHCTL		ctl;
	TimestampTz now = GetCurrentTimestamp();

	memset(&fo, 0, sizeof(fo));
	fo.b = b;
	fo.cxt = cxt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = GROUP_KEY_MAX;
	ctl.entrysize = sizeof(OutObject);
	ctl.hcxt = cxt;
	fo.objects = hash_create("delivery objects", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	/* a fresh staging directory of the batch's own, under the name recorded in its pending row */
	if (staging == NULL)
		elog(ERROR, "the pending batch of Firehose %s has no staging directory", cfg->name);
	{
		DestDir    *root = destdir_open_root(cfg->destination, cxt);
		DestDir    *sroot = destdir_staging_root(root, true);

		fo.dir = destdir_create_staging(sroot, staging);
		fo.staging = fo.dir->path;
		destdir_close(sroot);
		destdir_close(root);
	}

	if (cfg->format == DFMT_CSV || cfg->format == DFMT_PARQUET ||
		(cfg->format == DFMT_JSON && OidIsValid(cfg->schema)))
	{
		Oid			typrelid = get_typ_typrelid(cfg->schema);

		/* the type cache opens a composite type's relation to read its columns */
		if (OidIsValid(typrelid))
			lock_or_retry(cfg, typrelid, AccessShareLock, psprintf("schema %s", format_type_be(cfg->schema)));
		fo.mapper = rowmapper_create(cfg->schema, InvalidOid);
	}

	/* source record backup: the records as they came, before the transform */
	if (cfg->backup_t != NULL)
	{
		bool		toomany = false;
		OutObject  *o = get_object(&fo, OBJ_BACKUP, NULL, 0, NULL, NULL, &toomany);

		for (int i = 0; i < b->nrecs; i++)
		{
			appendBinaryStringInfo(o->buf, b->recs[i].data, b->recs[i].len);
			o->records++;
			if (b->recs[i].arrival < o->oldest)
				o->oldest = b->recs[i].arrival;
		}
	}

	if (OidIsValid(cfg->transform))
		run_transform(b, cxt);
	route_records(&fo, cxt);

	/* counts and error objects */
	for (int i = 0; i < b->nrecs; i++)
	{
		SrcRec	   *r = &b->recs[i];

		if (r->status == REC_OK)
			b->delivered++;
		else if (r->status == REC_DROPPED)
			b->dropped++;
		else
		{
			bool		toomany = false;
			OutObject  *o = get_object(&fo, OBJ_ERROR, r->error_type, 0, NULL, NULL, &toomany);

			append_error_line(o->buf, b, r, now);
			o->records++;
			if (r->arrival < o->oldest)
				o->oldest = r->arrival;
			b->failed++;
		}
	}
	finish_objects(&fo);
}

/* ----------------------------------------------------------------------
 * The worker's units of work
 * ----------------------------------------------------------------------
 */
typedef struct ShardScan
{
	int32		shard_index;
	int64		cp;				/* checkpoint the scan started from */
	int64		scanned_to;
	Size		bytes;
	int64		count;
	TimestampTz oldest;
} ShardScan;

typedef struct DsState
{
	int32		id;				/* hash key */
	int			nshards;
	ShardScan  *scans;
	uint32		flush_ticket;	/* 0: no flush pending */
	bool		seen;
} DsState;

static HTAB *ds_states = NULL;
static MemoryContext ds_state_cxt = NULL;
static uint32 latest_ticket = 0;

typedef struct ScanCount
{
	Size		bytes;
	int64		count;
	TimestampTz first_arrival;
} ScanCount;

static void
count_record(void *arg, const StreamRecord *rec)
{
	ScanCount  *c = arg;

	if (c->count == 0)
		c->first_arrival = rec->arrival;
	c->count++;
	c->bytes += toast_raw_datum_size(rec->partition_key) - VARHDRSZ +
		toast_raw_datum_size(rec->data) - VARHDRSZ;
}

static DsState *
ds_state(int32 id)
{
	bool		found;
	DsState    *s;

	if (ds_states == NULL)
	{
		HASHCTL		ctl;

		ds_state_cxt = AllocSetContextCreate(TopMemoryContext, "stream delivery state",
											 ALLOCSET_SMALL_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(DsState);
		ctl.hcxt = ds_state_cxt;
		ds_states = hash_create("stream delivery streams", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	s = hash_search(ds_states, &id, HASH_ENTER, &found);
	if (!found)
	{
		s->nshards = 0;
		s->scans = NULL;
		s->flush_ticket = 0;
	}
	return s;
}

static ShardScan *
shard_scan(DsState *s, int32 shard_index, int64 cp)
{
	ShardScan  *sc = NULL;

	for (int i = 0; i < s->nshards; i++)
		if (s->scans[i].shard_index == shard_index)
			sc = &s->scans[i];
	if (sc == NULL)
	{
		s->scans = s->scans ? repalloc(s->scans, sizeof(ShardScan) * (s->nshards + 1))
			: MemoryContextAlloc(ds_state_cxt, sizeof(ShardScan));
		sc = &s->scans[s->nshards++];
		sc->shard_index = shard_index;
		sc->cp = -1;
	}
	if (sc->cp != cp)
	{
		sc->cp = cp;
		sc->scanned_to = cp;
		sc->bytes = 0;
		sc->count = 0;
		sc->oldest = 0;
	}
	return sc;
}

static void
forget_scans(int32 id)
{
	DsState    *s = ds_state(id);

	for (int i = 0; i < s->nshards; i++)
		s->scans[i].cp = -1;
}

static int64
checkpoint_of(int32 shard_index, int n, int32 *idx, int64 *cps, int64 dflt)
{
	for (int i = 0; i < n; i++)
		if (idx[i] == shard_index)
			return cps[i];
	return dflt;
}

static void
run_sql(const char *sql, int nargs, Oid *types, Datum *args, int expect)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "delivery bookkeeping failed (%s): %s", SPI_result_code_string(ret), sql);
}

static ArrayType *
int4_array(int32 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT);
}

static ArrayType *
int8_array(int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* Step 4 (or the table's single transaction): manifest, checkpoints, progress. */
static void
finish_batch(Batch *b)
{
	Oid			types[11] = {INT4OID, INT8OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, JSONBOID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT4OID};
	Datum		args[11];

	args[0] = Int32GetDatum(b->cfg->id);
	args[1] = Int64GetDatum(b->batch_no);
	args[2] = PointerGetDatum(int4_array(b->shards, b->nranges));
	args[3] = PointerGetDatum(int8_array(b->from, b->nranges));
	args[4] = PointerGetDatum(int8_array(b->to, b->nranges));
	args[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(b->files.data));
	args[6] = Int64GetDatum(b->nrecs);
	args[7] = Int64GetDatum(b->delivered);
	args[8] = Int64GetDatum(b->dropped);
	args[9] = Int64GetDatum(b->failed);
	args[10] = Int32GetDatum(b->nfiles);
	run_sql("INSERT INTO stream.delivery_manifest (delivery_stream_id, batch_no, shard_indexes, from_seqs, to_seqs, "
			"files, records_in, records_delivered, records_dropped, records_failed) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, types, args, SPI_OK_INSERT);
	run_sql("INSERT INTO stream.delivery_checkpoints AS c (delivery_stream_id, shard_index, next_seq) "
			"SELECT $1, r.s, r.t FROM unnest($3, $5) AS r(s, t) "
			"ON CONFLICT (delivery_stream_id, shard_index) DO UPDATE SET next_seq = EXCLUDED.next_seq",
			5, types, args, SPI_OK_INSERT);
	run_sql("DELETE FROM stream.delivery_pending WHERE delivery_stream_id = $1", 1, types, args, SPI_OK_DELETE);
	{
		Oid			t2[5] = {INT4OID, INT8OID, INT8OID, INT8OID, INT8OID};
		Datum		a2[5];

		a2[0] = args[0];
		a2[1] = Int64GetDatum(b->nfiles);
		a2[2] = Int64GetDatum(b->out_bytes);
		a2[3] = Int64GetDatum(b->delivered);
		a2[4] = Int64GetDatum(b->failed);
		run_sql("UPDATE stream.delivery_progress SET files_delivered = files_delivered + $2, "
				"bytes_delivered = bytes_delivered + $3, records_delivered = records_delivered + $4, "
				"records_failed = records_failed + $5, last_delivery_at = clock_timestamp(), "
				"failed_attempts = 0, next_attempt_at = NULL, last_error = NULL "
				"WHERE delivery_stream_id = $1", 5, t2, a2, SPI_OK_UPDATE);
	}
}

static void
begin_step(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

typedef struct PendingRow
{
	bool		exists;
	int64		batch_no;
	int			n;
	int32	   *shards;
	int64	   *from;
	int64	   *to;
	TimestampTz min_arrival;
	char	   *files;
	char	   *staging;		/* the batch's staging directory, by name */
} PendingRow;

static void
load_pending(int32 id, PendingRow *p, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	bool		isnull;
	MemoryContext old;

	memset(p, 0, sizeof(*p));
	if (SPI_execute_with_args("SELECT batch_no, shard_indexes, from_seqs, to_seqs, min_arrival, files::text, staging "
							  "FROM stream.delivery_pending WHERE delivery_stream_id = $1",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.delivery_pending");
	if (SPI_processed == 0)
		return;
	old = MemoryContextSwitchTo(cxt);
	p->exists = true;
	p->batch_no = DatumGetInt64(spi_datum(0, 1, &isnull));
	{
		Datum	   *d;
		bool	   *nn;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(spi_datum(0, 2, &isnull)), INT4OID, 4, true, TYPALIGN_INT, &d, &nn, &n);
		p->n = n;
		p->shards = palloc(sizeof(int32) * Max(n, 1));
		for (int i = 0; i < n; i++)
			p->shards[i] = DatumGetInt32(d[i]);
		deconstruct_array(DatumGetArrayTypeP(spi_datum(0, 3, &isnull)), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &d, &nn, &n);
		p->from = palloc(sizeof(int64) * Max(n, 1));
		for (int i = 0; i < n; i++)
			p->from[i] = DatumGetInt64(d[i]);
		deconstruct_array(DatumGetArrayTypeP(spi_datum(0, 4, &isnull)), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &d, &nn, &n);
		p->to = palloc(sizeof(int64) * Max(n, 1));
		for (int i = 0; i < n; i++)
			p->to[i] = DatumGetInt64(d[i]);
	}
	p->min_arrival = DatumGetTimestampTz(spi_datum(0, 5, &isnull));
	p->files = spi_text(0, 6);
	p->staging = spi_text(0, 7);
	MemoryContextSwitchTo(old);
}

/*
 * Decide whether a delivery stream's buffer is due; if so fill the ranges.
 * *full when the size limit cut the batch (more is waiting).
 */
static bool
buffer_due(DeliveryConfig *cfg, StreamInfo *info, DsState *st, bool force,
		   int ncp, int32 *cp_idx, int64 *cp_seq, Batch *b, bool *full)
{
	TimestampTz now = GetCurrentTimestamp();
	Size		total = 0;
	int64		count = 0;
	TimestampTz oldest = DT_NOEND;

	*full = false;
	b->shards = palloc(sizeof(int32) * Max(info->nshards, 1));
	b->from = palloc(sizeof(int64) * Max(info->nshards, 1));
	b->to = palloc(sizeof(int64) * Max(info->nshards, 1));
	b->nranges = 0;
	/* the batch records the horizon it was cut with: a replay reads the same */
	(void) retention_horizon(info, now, &b->min_arrival);

	for (int i = 0; i < info->nshards; i++)
	{
		StreamShard *shard = &info->shards[i];
		int64		cp = checkpoint_of(shard->shard_index, ncp, cp_idx, cp_seq, shard->starting_seq);
		ShardScan  *sc = shard_scan(st, shard->shard_index, cp);

		if (shard->closed && cp > shard->ending_seq)
			continue;
		if (!*full)
		{
			ReadWindow	w = read_window(info, shard, sc->scanned_to, now);
			int64		to = w.to;

			if (sc->scanned_to < to && total + sc->bytes < cfg->buffer_bytes)
			{
				ScanCount	c;
				int64		next;

				memset(&c, 0, sizeof(c));
				(void) chunk_scan(info, shard, w.from, to, w.min_arrival, INT_MAX,
								  cfg->buffer_bytes - total - sc->bytes, count_record, &c, &next);
				if (c.count > 0 && sc->count == 0)
					sc->oldest = c.first_arrival;
				sc->count += c.count;
				sc->bytes += c.bytes;
				sc->scanned_to = Max(next, sc->scanned_to);
				if (next < to)
					*full = true;
			}
		}
		if (sc->count > 0)
		{
			b->shards[b->nranges] = shard->shard_index;
			b->from[b->nranges] = cp;
			b->to[b->nranges] = sc->scanned_to;
			b->nranges++;
			total += sc->bytes;
			count += sc->count;
			if (sc->oldest < oldest)
				oldest = sc->oldest;
		}
		if (total >= cfg->buffer_bytes)
			*full = true;
	}
	if (count == 0)
		return false;
	if (*full || force || cfg->interval_s == 0)
		return true;
	return now - oldest >= (int64) cfg->interval_s * USECS_PER_SEC;
}

static void
record_error(int32 id, const char *message)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];

	begin_step();
	args[0] = Int32GetDatum(id);
	args[1] = CStringGetTextDatum(message);
	run_sql("UPDATE stream.delivery_progress SET last_error = $2, last_error_at = clock_timestamp(), "
			"failed_attempts = failed_attempts + 1, "
			"next_attempt_at = clock_timestamp() + make_interval(secs => least(" CppAsString2(BACKOFF_MAX_S) ", power(2, least(failed_attempts, 10)))) "
			"WHERE delivery_stream_id = $1", 2, types, args, SPI_OK_UPDATE);
	end_step();
}

/* A copy of a stream's metadata that no cache invalidation frees. */
static StreamInfo *
copy_stream_info(StreamInfo *src, MemoryContext cxt)
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

/* record_error, whose own failure is only logged */
static void
record_error_safely(int32 id, const char *msg)
{
	PG_TRY();
	{
		record_error(id, msg);
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
}

typedef enum UnitResult
{
	UNIT_IDLE,					/* nothing due */
	UNIT_DELIVERED,				/* delivered; nothing more due at once */
	UNIT_MORE					/* delivered and more is due */
} UnitResult;

/*
 * One unit of work for a delivery stream: finish a pending batch, or cut and
 * deliver a new one if its buffer is due.  Runs its own transactions.
 */
static UnitResult
deliver_unit(int32 id, bool force, MemoryContext cxt)
{
	DeliveryConfig *cfg;
	PendingRow	pending;
	Batch	   *b = palloc0(sizeof(Batch));
	StreamInfo *info;
	bool		full = false;
	int			ncp = 0;
	int32	   *cp_idx = NULL;
	int64	   *cp_seq = NULL;
	bool		backing_off = false;
	DsState    *st = ds_state(id);
	char	   *staging = NULL;

	batch_cxt = cxt;
	/* step 1: look at the buffer; record the batch as pending */
	begin_step();
	cfg = load_config(id, cxt);
	if (cfg == NULL)
	{
		end_step();
		return UNIT_IDLE;
	}
	b->cfg = cfg;
	load_pending(id, &pending, cxt);
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(id);
		bool		isnull;

		if (SPI_execute_with_args("SELECT next_attempt_at > clock_timestamp() FROM stream.delivery_progress "
								  "WHERE delivery_stream_id = $1", 1, &argtype, &arg, NULL, true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
		{
			Datum		d = spi_datum(0, 1, &isnull);

			backing_off = !isnull && DatumGetBool(d);
		}
	}
	if (backing_off && !force)
	{
		end_step();
		return UNIT_IDLE;
	}
	info = stream_lookup_by_id(cfg->source_stream_id, true);
	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: the source stream of Firehose %s no longer exists", cfg->name)));
	/* a private copy: the metadata cache may be rebuilt while the batch runs */
	info = copy_stream_info(info, cxt);
	b->info = info;

	if (pending.exists)
	{
		b->batch_no = pending.batch_no;
		b->nranges = pending.n;
		b->shards = pending.shards;
		b->from = pending.from;
		b->to = pending.to;
		b->min_arrival = pending.min_arrival;
		staging = pending.staging;
		if (pending.files == NULL)
		{
			/*
			 * Written again from scratch: what an interrupted attempt staged
			 * goes, and the new attempt stages under a new name, recorded
			 * before it is created.
			 */
			Oid			types[2] = {INT4OID, TEXTOID};
			Datum		args[2];
			MemoryContext old;

			remove_staging(cfg, staging, cxt);
			old = MemoryContextSwitchTo(cxt);
			staging = destdir_staging_name(id, b->batch_no);
			MemoryContextSwitchTo(old);
			args[0] = Int32GetDatum(id);
			args[1] = CStringGetTextDatum(staging);
			run_sql("UPDATE stream.delivery_pending SET staging = $2 WHERE delivery_stream_id = $1",
					2, types, args, SPI_OK_UPDATE);
		}
	}
	else
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(id);
		MemoryContext old;

		if (SPI_execute_with_args("SELECT shard_index, next_seq FROM stream.delivery_checkpoints "
								  "WHERE delivery_stream_id = $1", 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read stream.delivery_checkpoints");
		old = MemoryContextSwitchTo(cxt);
		ncp = SPI_processed;
		cp_idx = palloc(sizeof(int32) * Max(ncp, 1));
		cp_seq = palloc(sizeof(int64) * Max(ncp, 1));
		for (int i = 0; i < ncp; i++)
		{
			bool		isnull;

			cp_idx[i] = DatumGetInt32(spi_datum(i, 1, &isnull));
			cp_seq[i] = DatumGetInt64(spi_datum(i, 2, &isnull));
		}
		if (!buffer_due(cfg, info, st, force, ncp, cp_idx, cp_seq, b, &full))
		{
			MemoryContextSwitchTo(old);
			end_step();
			if (force)
				st->flush_ticket = 0;	/* nothing (more) to flush */
			return UNIT_IDLE;
		}
		MemoryContextSwitchTo(old);

		if (cfg->destination == NULL)
		{
			/* table destination: everything in this one transaction */
			Oid			types[1] = {INT4OID};
			Datum		args[1];

			args[0] = Int32GetDatum(id);
			if (SPI_execute_with_args("UPDATE stream.delivery_progress SET next_batch_no = next_batch_no + 1 "
									  "WHERE delivery_stream_id = $1 RETURNING next_batch_no - 1",
									  1, types, args, NULL, false, 1) != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
				elog(ERROR, "stream.delivery_progress has no row for Firehose %s", cfg->name);
			{
				bool		isnull;

				b->batch_no = DatumGetInt64(spi_datum(0, 1, &isnull));
			}
			old = MemoryContextSwitchTo(cxt);
			initStringInfo(&b->files);
			/* a locked destination fails the batch before the transform spends its time */
			lock_or_retry(cfg, resolve_table(cfg), RowExclusiveLock,
						  psprintf("destination table %s", cfg->destination_table));
			read_batch(b);
			if (OidIsValid(cfg->transform))
				run_transform(b, cxt);
			deliver_to_table(b, cxt);
			MemoryContextSwitchTo(old);
			finish_batch(b);
			end_step();
			forget_scans(id);
			if (force && !full)
				st->flush_ticket = 0;
			return full ? UNIT_MORE : UNIT_DELIVERED;
		}
		else
		{
			Oid			types[5] = {INT4OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID};
			Datum		args[5];
			bool		isnull;

			args[0] = Int32GetDatum(id);
			if (SPI_execute_with_args("UPDATE stream.delivery_progress SET next_batch_no = next_batch_no + 1 "
									  "WHERE delivery_stream_id = $1 RETURNING next_batch_no - 1",
									  1, types, args, NULL, false, 1) != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
				elog(ERROR, "stream.delivery_progress has no row for Firehose %s", cfg->name);
			b->batch_no = DatumGetInt64(spi_datum(0, 1, &isnull));
			args[1] = PointerGetDatum(int4_array(b->shards, b->nranges));
			args[2] = PointerGetDatum(int8_array(b->from, b->nranges));
			args[3] = PointerGetDatum(int8_array(b->to, b->nranges));
			args[4] = TimestampTzGetDatum(b->min_arrival);
			{
				Oid			t7[7] = {INT4OID, INT8OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID};
				Datum		a7[7];
				MemoryContext old;

				/* an unpredictable staging directory, known to recovery before it exists */
				old = MemoryContextSwitchTo(cxt);
				staging = destdir_staging_name(id, b->batch_no);
				MemoryContextSwitchTo(old);
				a7[0] = args[0];
				a7[1] = Int64GetDatum(b->batch_no);
				a7[2] = args[1];
				a7[3] = args[2];
				a7[4] = args[3];
				a7[5] = args[4];
				a7[6] = CStringGetTextDatum(staging);
				run_sql("INSERT INTO stream.delivery_pending (delivery_stream_id, batch_no, shard_indexes, from_seqs, to_seqs, min_arrival, staging) "
						"VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, t7, a7, SPI_OK_INSERT);
			}
		}
	}
	end_step();

	/* step 2: write the temporary files, commit their names */
	if (pending.files == NULL)
	{
		MemoryContext old;

		begin_step();
		old = MemoryContextSwitchTo(cxt);
		read_batch(b);
		write_file_batch(b, cxt, staging);
		MemoryContextSwitchTo(old);
		{
			Oid			types[2] = {INT4OID, JSONBOID};
			Datum		args[2];

			args[0] = Int32GetDatum(id);
			args[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(b->files.data));
			run_sql("UPDATE stream.delivery_pending SET files = $2 WHERE delivery_stream_id = $1",
					2, types, args, SPI_OK_UPDATE);
		}
		end_step();
		pending.files = b->files.data;
	}
	else
	{
		/* counts for the progress row come from the committed file list */
		Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pending.files)));
		JsonbIterator *it = JsonbIteratorInit(&jb->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;
		bool		is_data = false,
					is_error = false;

		initStringInfo(&b->files);
		appendStringInfoString(&b->files, pending.files);
		while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		{
			if (tok == WJB_BEGIN_OBJECT)
				b->nfiles++;
			else if (tok == WJB_KEY)
				key = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && strcmp(key, "kind") == 0 && v.type == jbvString)
			{
				is_data = v.val.string.len == 4 && strncmp(v.val.string.val, "data", 4) == 0;
				is_error = v.val.string.len == 5 && strncmp(v.val.string.val, "error", 5) == 0;
			}
			else if (tok == WJB_VALUE && v.type == jbvNumeric)
			{
				int64		x = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));

				if (strcmp(key, "records") == 0 && is_data)
					b->delivered += x;
				else if (strcmp(key, "records") == 0 && is_error)
					b->failed += x;
				else if (strcmp(key, "bytes") == 0 && is_data)
					b->out_bytes += x;
			}
		}
		/* records neither delivered nor failed were dropped */
		b->nrecs = 0;
	}

	/* step 3: rename into place */
	if (!publish_files(cfg, pending.files, staging, cxt))
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(id);

		ereport(WARNING,
				(errmsg("Firehose %s: a file of batch " INT64_FORMAT " vanished before it was published; writing the batch again",
						cfg->name, b->batch_no)));
		begin_step();
		run_sql("UPDATE stream.delivery_pending SET files = NULL WHERE delivery_stream_id = $1",
				1, &argtype, &arg, SPI_OK_UPDATE);
		end_step();
		return UNIT_MORE;
	}
	remove_staging(cfg, staging, cxt);

	/* step 4: manifest, checkpoints, pending row gone */
	begin_step();
	if (b->nrecs == 0)
	{
		/* recovery: how many records the ranges held is not known here */
		b->nrecs = b->delivered + b->failed;
	}
	finish_batch(b);
	end_step();
	forget_scans(id);
	if (pending.exists)
		return UNIT_MORE;		/* after recovery, look at the buffer at once */
	if (force && !full)
		st->flush_ticket = 0;
	return full ? UNIT_MORE : UNIT_DELIVERED;
}

static bool
try_unit_lock(int32 id)
{
	LOCKTAG		tag;

	SET_STREAM_LOCKTAG(tag, STREAM_LOCK_DELIVERY_UNIT, id, 0);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * End a unit: its lock goes, and so does every session-level advisory lock
 * that owner code took in it (pg_advisory_lock), which would otherwise stay
 * with the worker for good.  The worker holds no other session-level
 * advisory locks between units.  Releasing them all also copes with owner
 * code that called pg_advisory_unlock_all(), which released the unit's lock
 * already.
 */
static void
unit_unlock(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * The worker's delivery round.  Flush requests (ticket) are remembered
 * until each named delivery stream has drained; *done_ticket is the
 * highest ticket all of whose flushes are over.
 */
bool
delivery_run_round(const int32 *flush_ids, int nflush, bool flush_all, uint32 ticket,
						uint32 *done_ticket, bool *extension_missing)
{
	static MemoryContext unit_cxt = NULL;
	static bool configured = false;
	int32	   *volatile ids = NULL;
	char	  **volatile names = NULL;
	volatile int nids = 0;
	volatile bool more = false;

	*extension_missing = false;
	if (unit_cxt == NULL)
		unit_cxt = AllocSetContextCreate(TopMemoryContext, "stream delivery unit",
										 ALLOCSET_DEFAULT_SIZES);
	if (!configured)
	{
		/* file contents must not depend on the server's settings */
		SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_SESSION);
		SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_SESSION);
		/* a committed checkpoint must outlive a crash */
		SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION);
		configured = true;
	}
	MemoryContextReset(unit_cxt);

	/* list the delivery streams */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_namespace_oid("stream", true)) ||
		!OidIsValid(get_relname_relid("delivery_streams", get_namespace_oid("stream", true))))
	{
		/* look it up while the transaction still allows catalog access */
		*extension_missing = !OidIsValid(get_namespace_oid("stream", true));
		PopActiveSnapshot();
		CommitTransactionCommand();
		*done_ticket = ticket;
		return false;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT delivery_stream_id, delivery_stream_name FROM stream.delivery_streams ORDER BY 1",
					true, 0) == SPI_OK_SELECT)
	{
		MemoryContext old = MemoryContextSwitchTo(unit_cxt);

		nids = SPI_processed;
		ids = palloc(sizeof(int32) * Max(nids, 1));
		names = palloc(sizeof(char *) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
		{
			bool		isnull;

			ids[i] = DatumGetInt32(spi_datum(i, 1, &isnull));
			names[i] = spi_text(i, 2);
		}
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(unit_cxt);

	/* flush requests */
	if (nflush > 0 || flush_all)
	{
		latest_ticket = ticket;
		for (int i = 0; i < nids; i++)
		{
			bool		want = flush_all;

			for (int k = 0; k < nflush && !want; k++)
				if (flush_ids[k] == ids[i])
					want = true;
			if (want)
				ds_state(ids[i])->flush_ticket = ticket;
		}
	}

	/* forget state of deleted delivery streams */
	if (ds_states != NULL)
	{
		HASH_SEQ_STATUS status;
		DsState    *s;

		hash_seq_init(&status, ds_states);
		while ((s = hash_seq_search(&status)) != NULL)
		{
			s->seen = false;
			for (int i = 0; i < nids; i++)
				if (ids[i] == s->id)
					s->seen = true;
		}
		hash_seq_init(&status, ds_states);
		while ((s = hash_seq_search(&status)) != NULL)
			if (!s->seen)
			{
				if (s->scans)
					pfree(s->scans);
				hash_search(ds_states, &s->id, HASH_REMOVE, NULL);
			}
	}

	for (int i = 0; i < nids; i++)
	{
		int32		id = ids[i];
		DsState    *st;
		bool		force;
		MemoryContext cxt;

		CHECK_FOR_INTERRUPTS();
		st = ds_state(id);
		force = st->flush_ticket != 0;
		if (!try_unit_lock(id))
			continue;
		cxt = AllocSetContextCreate(unit_cxt, "delivery batch", ALLOCSET_DEFAULT_SIZES);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			UnitResult	r = deliver_unit(id, force, cxt);

			if (r == UNIT_MORE)
				more = true;
		}
		PG_CATCH();
		{
			ErrorData  *ed;
			char	   *msg;

			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(unit_cxt);
			ed = CopyErrorData();
			FlushErrorState();
			ereport(WARNING,
					(errmsg("delivery of Firehose %s failed: %s", names[i], ed->message),
					 errdetail("The delivery is retried with back-off; nothing is lost.")));
			AbortCurrentTransaction();
			RESUME_INTERRUPTS();
			msg = ed->message ? ed->message : "unknown error";
			forget_scans(id);
			st->flush_ticket = 0;	/* a flush does not wait for a broken destination */
			record_error_safely(id, msg);
		}
		PG_END_TRY();
		unit_unlock();
		MemoryContextSwitchTo(unit_cxt);
		MemoryContextDelete(cxt);
		pgstat_report_stat(false);
	}

	/* which flush tickets are done */
	{
		uint32		done = latest_ticket;

		if (ds_states != NULL)
		{
			HASH_SEQ_STATUS status;
			DsState    *s;

			hash_seq_init(&status, ds_states);
			while ((s = hash_seq_search(&status)) != NULL)
				if (s->flush_ticket != 0 && s->flush_ticket - 1 < done)
					done = s->flush_ticket - 1;
		}
		*done_ticket = done;
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}

/* ----------------------------------------------------------------------
 * Monitoring and flush
 * ----------------------------------------------------------------------
 */

/*
 * stream_internal._delivery_buffer(delivery_stream_id) RETURNS TABLE(buffered_records
 * bigint, buffered_bytes bigint, oldest_buffered timestamptz): what is
 * past the checkpoints and not yet delivered (counted up to 1 GiB); no row
 * for a delivery stream the caller does not own.  The status view calls it
 * as the role that reads the view.
 */
Datum
stream_delivery_buffer(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		id = PG_GETARG_INT32(0);
	int32		stream_id;
	StreamInfo *info;
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	int			ncp;
	int32	   *cp_idx;
	int64	   *cp_seq;
	ScanCount	total;
	Datum		values[3];
	bool		nulls[3] = {false, false, true};
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * No row unless the calling role is a member of the delivery stream's
	 * owner (superusers are): PUBLIC may call this, the status view does.
	 */
	if (catalog_spi("SELECT source_stream_id, owner FROM stream.delivery_streams WHERE delivery_stream_id = $1",
					1, &argtype, &arg, true, 1) != SPI_OK_SELECT || SPI_processed != 1 ||
		!is_member_of_role(GetUserId(), DatumGetObjectId(spi_datum(0, 2, &isnull))))
	{
		SPI_finish();
		return (Datum) 0;
	}
	stream_id = DatumGetInt32(spi_datum(0, 1, &isnull));
	if (catalog_spi("SELECT shard_index, next_seq FROM stream.delivery_checkpoints WHERE delivery_stream_id = $1",
					1, &argtype, &arg, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.delivery_checkpoints");
	ncp = SPI_processed;
	cp_idx = MemoryContextAlloc(rsinfo->econtext->ecxt_per_query_memory, sizeof(int32) * Max(ncp, 1));
	cp_seq = MemoryContextAlloc(rsinfo->econtext->ecxt_per_query_memory, sizeof(int64) * Max(ncp, 1));
	for (int i = 0; i < ncp; i++)
	{
		cp_idx[i] = DatumGetInt32(spi_datum(i, 1, &isnull));
		cp_seq[i] = DatumGetInt64(spi_datum(i, 2, &isnull));
	}
	SPI_finish();

	info = stream_lookup_by_id(stream_id, true);
	memset(&total, 0, sizeof(total));
	total.first_arrival = DT_NOEND;
	if (info != NULL)
	{
		for (int i = 0; i < info->nshards; i++)
		{
			StreamShard *shard = &info->shards[i];
			int64		cp = checkpoint_of(shard->shard_index, ncp, cp_idx, cp_seq, shard->starting_seq);
			ReadWindow	w = read_window(info, shard, cp, now);
			ScanCount	c;
			int64		next;

			memset(&c, 0, sizeof(c));
			if (cp >= w.to)
				continue;
			(void) chunk_scan(info, shard, w.from, w.to, w.min_arrival, INT_MAX,
							  (Size) 1024 * 1024 * 1024, count_record, &c, &next);
			total.count += c.count;
			total.bytes += c.bytes;
			if (c.count > 0 && c.first_arrival < total.first_arrival)
				total.first_arrival = c.first_arrival;
		}
	}
	values[0] = Int64GetDatum(total.count);
	values[1] = Int64GetDatum((int64) total.bytes);
	if (total.count > 0)
	{
		values[2] = TimestampTzGetDatum(total.first_arrival);
		nulls[2] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * stream.flush_delivery_stream(delivery_stream_name, timeout_seconds) RETURNS bool
 * Asks the worker to deliver what is buffered now and waits for it; true
 * when every record buffered at the call has been delivered.
 */
Datum
stream_flush_delivery_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	int			timeout_s = PG_ARGISNULL(1) ? 60 : PG_GETARG_INT32(1);
	DeliveryNameEntry *e;
	StreamInfo *info;
	DeliveryNameEntry entry;
	int			n;
	int32	   *shards;
	int64	   *targets;
	uint32		ticket;
	TimestampTz deadline;
	bool		gone = false;
	bool		ok = true;
	Oid			owner = InvalidOid;

	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* a copy: an invalidation during the SPI calls below frees the cache */
	entry = *delivery_lookup_name(name);
	e = &entry;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(e->delivery_stream_id);
		bool		isnull;

		if (catalog_spi("SELECT owner FROM stream.delivery_streams WHERE delivery_stream_id = $1",
						1, &argtype, &arg, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
			owner = DatumGetObjectId(spi_datum(0, 1, &isnull));
	}
	SPI_finish();
	info = stream_lookup_by_id(e->stream_id, false);
	if (!has_privs_of_role(GetUserId(), owner) &&
		!access_allows(info, GetUserId(), ACL_INSERT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: User %s is not authorized to flush Firehose %s",
						GetUserNameFromId(GetUserId(), false), name)));

	n = info->nshards;
	shards = palloc(sizeof(int32) * Max(n, 1));
	targets = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		shards[i] = info->shards[i].shard_index;
		targets[i] = read_window(info, &info->shards[i], info->shards[i].starting_seq,
								 GetCurrentTimestamp()).to;
	}

	if (!stream_worker_post_request(e->delivery_stream_id, &ticket))
	{
		ereport(WARNING,
				(errmsg("no stream worker runs for this database: nothing was flushed"),
				 errhint("Add stream to shared_preload_libraries.")));
		PG_RETURN_BOOL(false);
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) timeout_s * 1000);
	while (!stream_worker_request_done(ticket, &gone))
	{
		CHECK_FOR_INTERRUPTS();
		if (gone || GetCurrentTimestamp() >= deadline)
		{
			ok = false;
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (!ok)
		PG_RETURN_BOOL(false);

	/*
	 * delivered up to the targets?  (a fresh snapshot in READ COMMITTED)
	 * The checkpoints are the extension's bookkeeping, readable by its owner
	 * only (the caller was checked above), so any owner or producer may flush.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(e->delivery_stream_id);
		bool		isnull;
		int			ret;

		ret = catalog_spi("SELECT shard_index, next_seq FROM stream.delivery_checkpoints WHERE delivery_stream_id = $1",
						  1, &argtype, &arg, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read stream.delivery_checkpoints");
		for (int i = 0; i < n && ok; i++)
		{
			int64		cp = info->shards[i].starting_seq;
			ScanCount	c;
			int64		next;
			ReadWindow	w;

			for (uint64 r = 0; r < SPI_processed; r++)
				if (DatumGetInt32(spi_datum(r, 1, &isnull)) == shards[i])
					cp = DatumGetInt64(spi_datum(r, 2, &isnull));
			if (cp >= targets[i])
				continue;
			/* numbers below the target that hold no record do not count */
			w = read_window(info, &info->shards[i], cp, GetCurrentTimestamp());
			memset(&c, 0, sizeof(c));
			(void) chunk_scan(info, &info->shards[i], w.from, targets[i], w.min_arrival, 1,
							  (Size) 1 << 40, count_record, &c, &next);
			if (c.count > 0)
				ok = false;
		}
	}
	SPI_finish();
	PG_RETURN_BOOL(ok);
}
