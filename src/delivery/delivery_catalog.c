/*
 * delivery/delivery_catalog.c: a delivery stream's configuration and name.
 *
 * The configuration as the worker reads it (load_config, once per unit),
 * the backend-local name cache of put and flush (dropped on any change to
 * stream.delivery_streams, so a lookup never sees a stale id), the checks
 * create_delivery_stream runs on prefixes and partition key queries, and
 * catalog_spi: lookups in catalogs PUBLIC may not read, whose result the
 * caller then checks against the calling role.
 */
#include "stream.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "safe_path.h"
#include "delivery/delivery_int.h"

PG_FUNCTION_INFO_V1(stream_delivery_validate);
PG_FUNCTION_INFO_V1(stream_delivery_check_keys);

void
check_delivery_name(const char *name)
{
	kinesis_check_name(name, "deliveryStreamName", FIREHOSE_NAME_MAX);
}

Oid
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
typedef struct CatalogUser
{
	Oid			save_user;
	int			save_sec;
	int			path_level;
} CatalogUser;

static void
as_catalog_owner(CatalogUser *cu)
{
	Oid			relid = get_relname_relid("delivery_streams", stream_nsp());

	if (!OidIsValid(relid))
		elog(ERROR, "stream.delivery_streams is missing");
	/* as that owner, names must not resolve through the caller's search_path */
	cu->path_level = safe_search_path_begin();
	GetUserIdAndSecContext(&cu->save_user, &cu->save_sec);
	SetUserIdAndSecContext(rel_owner(relid), cu->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
as_caller_again(CatalogUser *cu)
{
	SetUserIdAndSecContext(cu->save_user, cu->save_sec);
	safe_search_path_end(cu->path_level);
}

int
catalog_spi(const char *sql, int nargs, Oid *argtypes, Datum *args, bool read_only, long count)
{
	CatalogUser cu;
	int			ret;

	as_catalog_owner(&cu);
	ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, read_only, count);
	as_caller_again(&cu);
	return ret;
}

/* A delivery stream's checkpoints (the runtime's), read like catalog_spi; needs SPI. */
void
catalog_load_checkpoints(int32 id, ProcessorCheckpoints *cps, MemoryContext cxt)
{
	CatalogUser cu;

	as_catalog_owner(&cu);
	runtime_load_checkpoints(id, cps, cxt);
	as_caller_again(&cu);
}

/* ----------------------------------------------------------------------
 * Direct put: a backend-local cache of name -> internal stream
 * ----------------------------------------------------------------------
 */
static HTAB *name_cache = NULL;
static Oid	ds_relid = InvalidOid;
static Oid	streams_relid = InvalidOid;
static bool name_cache_callback = false;

/*
 * A row change of stream.delivery_streams sends no invalidation, so create
 * and delete_delivery_stream announce theirs as every catalog change does,
 * on stream.streams (stream_internal._catalog_changed).
 */
static void
name_cache_invalidate(Datum arg, Oid relid)
{
	if (name_cache != NULL &&
		(relid == InvalidOid || relid == ds_relid || relid == streams_relid))
	{
		hash_destroy(name_cache);
		name_cache = NULL;
	}
}

DeliveryNameEntry *
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
		ctl.keysize = FIREHOSE_NAME_MAX + 1;
		ctl.entrysize = sizeof(DeliveryNameEntry);
		ctl.hcxt = CacheMemoryContext;
		name_cache = hash_create("stream delivery names", 16, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		ds_relid = get_relname_relid("delivery_streams", stream_nsp());
		streams_relid = get_relname_relid("streams", stream_nsp());
	}
	e = hash_search(name_cache, name, HASH_FIND, &found);
	if (found)
		return e;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	arg = CStringGetTextDatum(name);
	/* put and flush check the caller's rights on what this finds */
	ret = catalog_spi("SELECT d.delivery_stream_id, p.source_stream_id, d.delivery_stream_type = 'DirectPut' "
					  "FROM stream.delivery_streams d JOIN stream.processors p ON p.processor_id = d.delivery_stream_id "
					  "WHERE d.delivery_stream_name = $1",
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


/*
 * The worker never waits for a lock that users can hold: an owner's open
 * transaction that locked its own table would stop every delivery stream and
 * the maintenance of the database.  A relation a batch opens outside owner
 * code (its destination table, its schema's type) is locked at once or the
 * batch is retried with back-off; later opens in the batch's transaction find
 * the lock held.  (Inside owner code the time limit bounds lock waits.)
 */
void
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
 * Delivery stream configuration, as the worker sees it
 * ----------------------------------------------------------------------
 */
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

char *
spi_text(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

Datum
spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* Load a delivery stream's configuration into cxt; NULL if it is gone.  Needs SPI. */
DeliveryConfig *
load_config(int32 id, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	DeliveryConfig *c;
	MemoryContext old;
	bool		isnull;
	char	   *errprefix;
	int			ret;

	ret = SPI_execute_with_args("SELECT d.delivery_stream_name, d.delivery_stream_type = 'DirectPut', p.source_stream_id, "
								"d.destination, d.destination_table, d.format, d.schema, d.compression, d.buffer_size_mb, "
								"d.buffer_interval_seconds, d.prefix, d.error_output_prefix, d.backup_prefix, "
								"d.transform_function, p.owner, d.version_id, "
								"(SELECT array_agg(key ORDER BY key) FROM jsonb_each_text(d.partition_key_queries)), "
								"(SELECT array_agg(value ORDER BY key) FROM jsonb_each_text(d.partition_key_queries)) "
								"FROM stream.delivery_streams d JOIN stream.processors p ON p.processor_id = d.delivery_stream_id "
								"WHERE d.delivery_stream_id = $1",
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

