/*
 * json.c: JSON conveniences for clients (psycopg2, libpq) that would rather
 * not handle stream.record[] and bytea.
 *
 *   stream.data_to_text(bytea)   the data as text when it is valid UTF-8, else NULL
 *   stream.data_to_jsonb(bytea)  the data as jsonb when it is valid JSON, else NULL
 *   stream.get_records_json(shard_iterator, limit)   one row per record
 *   stream.put_record_json(stream_name, partition_key, data jsonb, explicit_hash_key)
 *   stream.put_records_json(stream_name, records jsonb)
 *
 * The read and puts call the base functions (stream.get_records,
 * stream.put_record, stream.put_records) through the function manager, so every check of the
 * base function applies: EXECUTE on it, the stream privileges, limits.
 *
 * data_to_jsonb must not fail on any input.  A first pass that cannot
 * throw (UTF-8 check, a scan for nesting depth, very long numbers and \u
 * escapes, then the non-throwing JSON parser) decides; only inputs the
 * scan finds unusual (deep nesting, huge numbers, non-UTF-8 database) are
 * converted inside a subtransaction, so that an error makes them NULL.
 */
#include "kinesis.h"
#include "subxact.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(stream_data_to_text);
PG_FUNCTION_INFO_V1(stream_data_to_jsonb);
PG_FUNCTION_INFO_V1(stream_get_records_json);
PG_FUNCTION_INFO_V1(stream_put_records_json);

static bytea *jsonb_utf8(Jsonb *jb);

/* Inputs deeper than this, or larger, take the careful path. */
#define FAST_MAX_DEPTH		128
#define FAST_MAX_BYTES		(64 * 1024 * 1024)
#define FAST_MAX_DIGITS		900		/* numeric_in accepts far more */
#define FAST_MAX_EXP_DIGITS	4		/* |exponent| <= 9999 stays in range */

/*
 * Run fn(arg) in a subtransaction; on a data error (class 22) or a program
 * limit (class 54, e.g. stack depth) return false.  Any other error
 * (cancel, out of memory) is raised again.
 */
static bool
try_call(PGFunction fn, Datum arg, Datum *result)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = subxact_begin(oldcxt);
	volatile bool ok = false;

	PG_TRY();
	{
		*result = DirectFunctionCall1(fn, arg);
		subxact_commit(oldcxt, oldowner);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_rollback(oldcxt, oldowner);

		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return ok;
}

/* The UTF-8 bytes (no NUL) as a server-encoded C string. */
static Datum
utf8_to_server_cstring(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(t);
	char	   *s = pnstrdup(VARDATA_ANY(t), len);
	char	   *conv = pg_any_to_server(s, len, PG_UTF8);

	PG_RETURN_CSTRING(conv);
}

static bool
utf8_valid(const char *s, int len)
{
	return pg_verify_mbstr(PG_UTF8, s, len, true);
}

/* A server-encoded copy of valid UTF-8 bytes, or NULL when they do not convert. */
static char *
server_cstring(bytea *b)
{
	const char *s = VARDATA_ANY(b);
	int			len = VARSIZE_ANY_EXHDR(b);
	Datum		conv;

	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return pnstrdup(s, len);
	if (!try_call(utf8_to_server_cstring, PointerGetDatum(b), &conv))
		return NULL;
	return DatumGetCString(conv);
}

/* stream.data_to_text(data bytea) RETURNS text: NULL unless valid UTF-8 */
Datum
stream_data_to_text(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	int			len = VARSIZE_ANY_EXHDR(b);
	char	   *s;

	if (!utf8_valid(VARDATA_ANY(b), len))
		PG_RETURN_NULL();
	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		PG_RETURN_TEXT_P(cstring_to_text_with_len(VARDATA_ANY(b), len));
	s = server_cstring(b);
	if (s == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(s));
}

/*
 * Scan outside strings for what the fast path cannot promise to convert
 * without an error: nesting deeper than FAST_MAX_DEPTH (the parsers recurse
 * and check the stack depth) and numbers numeric_in could reject.  Also
 * says whether the text has \u escapes, which the validating parser then
 * decodes (\u0000 and broken surrogates are not representable in jsonb).
 */
static bool
json_unusual(const char *s, int len, bool *has_u_escape)
{
	int			depth = 0;
	bool		in_string = false;
	int			digits = 0;

	*has_u_escape = false;
	if (len > FAST_MAX_BYTES)
		return true;
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
			{
				if (i + 1 < len && s[i + 1] == 'u')
					*has_u_escape = true;
				i++;
			}
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c >= '0' && c <= '9')
		{
			if (++digits > FAST_MAX_DIGITS)
				return true;
			continue;
		}
		digits = 0;
		switch (c)
		{
			case '"':
				in_string = true;
				break;
			case '[':
			case '{':
				if (++depth > FAST_MAX_DEPTH)
					return true;
				break;
			case ']':
			case '}':
				depth--;
				break;
			case 'e':
			case 'E':
				{
					int			j = i + 1;
					int			n = 0;

					if (j < len && (s[j] == '+' || s[j] == '-'))
						j++;
					while (j < len && s[j] >= '0' && s[j] <= '9')
						j++, n++;
					if (n > FAST_MAX_EXP_DIGITS)
						return true;
				}
				break;
			default:
				break;
		}
	}
	return false;
}

static Datum
jsonb_from_server_cstring(PG_FUNCTION_ARGS)
{
	return DirectFunctionCall1(jsonb_in, PG_GETARG_DATUM(0));
}

/* The data as jsonb, or NULL when it is not valid JSON (or not representable). */
static Datum
data_jsonb(bytea *b, bool *isnull)
{
	char	   *s = VARDATA_ANY(b);
	int			len = VARSIZE_ANY_EXHDR(b);
	bool		has_u;
	bool		unusual;
	char	   *cstr;
	Datum		result;

	*isnull = true;
	if (len == 0 || !utf8_valid(s, len))
		return (Datum) 0;
	unusual = json_unusual(s, len, &has_u) || GetDatabaseEncoding() != PG_UTF8;
	if (!unusual)
	{
		JsonLexContext *lex = makeJsonLexContextCstringLen(s, len, PG_UTF8, has_u);

		if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
			return (Datum) 0;
		*isnull = false;
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(s, len)));
	}
	cstr = server_cstring(b);
	if (cstr == NULL || !try_call(jsonb_from_server_cstring, CStringGetDatum(cstr), &result))
		return (Datum) 0;
	*isnull = false;
	return result;
}

/* stream.data_to_jsonb(data bytea) RETURNS jsonb: NULL unless valid JSON */
Datum
stream_data_to_jsonb(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		d = data_jsonb(PG_GETARG_BYTEA_PP(0), &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(d);
}

/*
 * The base function stream.<name>(argtypes), looked up once per call site,
 * after checking that the caller may execute it.
 */
static FmgrInfo *
base_function(FunctionCallInfo fcinfo, const char *name, int nargs, Oid *argtypes)
{
	FmgrInfo   *f = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	AclResult	acl;

	if (f == NULL)
	{
		Oid			oid = LookupFuncName(list_make2(makeString("stream"), makeString(pstrdup(name))),
										 nargs, argtypes, false);

		f = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(oid, f, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = f;
	}
	acl = pg_proc_aclcheck(f->fn_oid, GetUserId(), ACL_EXECUTE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FUNCTION, get_func_name(f->fn_oid));
	return f;
}

/*
 * stream.get_records_json(shard_iterator text, "limit" int)
 *   RETURNS TABLE(sequence_number, approximate_arrival_timestamp, partition_key,
 *                 data bytea, data_text text, data_json jsonb,
 *                 next_shard_iterator text, millis_behind_latest bigint,
 *                 child_shards jsonb)
 * One row per record of stream.get_records(shard_iterator, limit), each with
 * the batch's next_shard_iterator, millis_behind_latest and child_shards
 * (set once a closed shard is read to its end); an empty batch is one row
 * whose record columns are NULL, so the next iterator is never lost.
 */
Datum
stream_get_records_json(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	FmgrInfo   *base = base_function(fcinfo, "get_records", 2, argtypes);
	LOCAL_FCINFO(call, 2);
	Datum		result;
	HeapTupleHeader th;
	HeapTupleData tuple;
	TupleDesc	resdesc;
	Datum		parts[4];
	bool		partnulls[4];
	Datum		values[9];
	bool		nulls[9];
	int			n = 0;
	Datum	   *elems = NULL;
	bool	   *elemnulls = NULL;

	InitFunctionCallInfoData(*call, base, 2, fcinfo->fncollation, NULL, NULL);
	call->args[0] = fcinfo->args[0];
	call->args[1] = fcinfo->args[1];
	result = FunctionCallInvoke(call);
	if (call->isnull)
		elog(ERROR, "stream.get_records returned NULL");

	th = DatumGetHeapTupleHeader(result);
	resdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, resdesc, parts, partnulls);
	ReleaseTupleDesc(resdesc);

	InitMaterializedSRF(fcinfo, 0);
	if (!partnulls[0])
	{
		ArrayType  *arr = DatumGetArrayTypeP(parts[0]);
		Oid			rectype = ARR_ELEMTYPE(arr);
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(rectype, &typlen, &typbyval, &typalign);
		deconstruct_array(arr, rectype, typlen, typbyval, typalign, &elems, &elemnulls, &n);
	}
	values[6] = parts[1];
	nulls[6] = partnulls[1];
	values[7] = parts[2];
	nulls[7] = partnulls[2];
	values[8] = parts[3];
	nulls[8] = partnulls[3];

	if (n == 0)
	{
		for (int k = 0; k < 6; k++)
			nulls[k] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}
	{
		HeapTupleHeader first = DatumGetHeapTupleHeader(elems[0]);
		TupleDesc	recdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(first),
													 HeapTupleHeaderGetTypMod(first));
		MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext, "get_records_json row",
													 ALLOCSET_DEFAULT_SIZES);

		for (int i = 0; i < n; i++)
		{
			HeapTupleHeader rh = DatumGetHeapTupleHeader(elems[i]);
			Datum		rec[4];
			bool		recnulls[4];
			MemoryContext old;

			CHECK_FOR_INTERRUPTS();
			old = MemoryContextSwitchTo(rowcxt);
			tuple.t_len = HeapTupleHeaderGetDatumLength(rh);
			tuple.t_data = rh;
			heap_deform_tuple(&tuple, recdesc, rec, recnulls);
			for (int k = 0; k < 4; k++)
			{
				values[k] = rec[k];
				nulls[k] = recnulls[k];
			}
			nulls[4] = nulls[5] = true;
			if (!recnulls[3])
			{
				bytea	   *data = DatumGetByteaPP(rec[3]);

				if (utf8_valid(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data)))
				{
					values[4] = PointerGetDatum(NULL);
					nulls[4] = false;
					if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
						values[4] = PointerGetDatum(cstring_to_text_with_len(VARDATA_ANY(data),
																			 VARSIZE_ANY_EXHDR(data)));
					else
					{
						char	   *s = server_cstring(data);

						if (s == NULL)
							nulls[4] = true;
						else
							values[4] = CStringGetTextDatum(s);
					}
					values[5] = data_jsonb(data, &nulls[5]);
				}
			}
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		ReleaseTupleDesc(recdesc);
	}
	return (Datum) 0;
}

/* The text of a JSON member: a string's contents, a number's digits; NULL for null or absent. */
static text *
member_text(JsonbValue *v, int index, const char *member, bool allow_number)
{
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
	if (allow_number && v->type == jbvNumeric)
		return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
																   NumericGetDatum(v->val.numeric))));
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_VALIDATION),
			 errmsg("ValidationException: 1 validation error detected: Value at 'records.%d.%s' failed to satisfy constraint: Member must be a string",
					index, member)));
	return NULL;				/* keep compiler quiet */
}

/*
 * stream.put_records_json(stream_name text, records jsonb)
 *   RETURNS TABLE(shard_id, sequence_number, error_code, error_message)
 * records: [{"partition_key": "...", "data": <any JSON value>,
 *            "explicit_hash_key": "..."}, ...]; each record's data is stored
 * as the UTF-8 text of its JSON value.  Calls stream.put_records.
 */
Datum
stream_put_records_json(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {TEXTOID, TEXTARRAYOID, BYTEAARRAYOID, TEXTARRAYOID};
	FmgrInfo   *base = base_function(fcinfo, "put_records", 4, argtypes);
	LOCAL_FCINFO(call, 4);
	Jsonb	   *records;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n,
				i = 0;
	Datum	   *keys,
			   *datas,
			   *ehks;
	bool	   *keynulls,
			   *datanulls,
			   *ehknulls;
	bool		any_ehk = false;
	int			dims[1];
	int			lbs[1] = {1};

	kinesis_require_arg(PG_ARGISNULL(1), "records");
	records = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(records) || JB_ROOT_IS_SCALAR(records))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: records must be a JSON array of objects {\"partition_key\": ..., \"data\": ..., \"explicit_hash_key\": ...}")));
	n = JB_ROOT_COUNT(records);
	keys = palloc0(sizeof(Datum) * Max(n, 1));
	datas = palloc0(sizeof(Datum) * Max(n, 1));
	ehks = palloc0(sizeof(Datum) * Max(n, 1));
	keynulls = palloc0(sizeof(bool) * Max(n, 1));
	datanulls = palloc0(sizeof(bool) * Max(n, 1));
	ehknulls = palloc0(sizeof(bool) * Max(n, 1));

	it = JsonbIteratorInit(&records->root);
	tok = JsonbIteratorNext(&it, &v, true);	/* WJB_BEGIN_ARRAY */
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue	key;
		JsonbValue *pk,
				   *data,
				   *ehk;
		JsonbIterator *mit;
		JsonbValue	mv;
		JsonbIteratorToken mtok;

		if (tok != WJB_ELEM)
			continue;
		CHECK_FOR_INTERRUPTS();
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_VALIDATION),
					 errmsg("ValidationException: 1 validation error detected: Value at 'records.%d' failed to satisfy constraint: Member must be an object {\"partition_key\": ..., \"data\": ...}",
							i + 1)));
		/* no members other than the three: a typo would otherwise be a silent NULL */
		mit = JsonbIteratorInit(v.val.binary.data);
		while ((mtok = JsonbIteratorNext(&mit, &mv, true)) != WJB_DONE)
		{
			if (mtok == WJB_KEY &&
				!((mv.val.string.len == 13 && memcmp(mv.val.string.val, "partition_key", 13) == 0) ||
				  (mv.val.string.len == 4 && memcmp(mv.val.string.val, "data", 4) == 0) ||
				  (mv.val.string.len == 17 && memcmp(mv.val.string.val, "explicit_hash_key", 17) == 0)))
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_VALIDATION),
						 errmsg("ValidationException: unknown member \"%s\" in records.%d",
								pnstrdup(mv.val.string.val, mv.val.string.len), i + 1),
						 errhint("A record has the members partition_key, data and explicit_hash_key.")));
		}

		key.type = jbvString;
		key.val.string.val = "partition_key";
		key.val.string.len = 13;
		pk = findJsonbValueFromContainer(v.val.binary.data, JB_FOBJECT, &key);
		key.val.string.val = "data";
		key.val.string.len = 4;
		data = findJsonbValueFromContainer(v.val.binary.data, JB_FOBJECT, &key);
		key.val.string.val = "explicit_hash_key";
		key.val.string.len = 17;
		ehk = findJsonbValueFromContainer(v.val.binary.data, JB_FOBJECT, &key);

		{
			text	   *t = member_text(pk, i + 1, "partition_key", false);

			keynulls[i] = (t == NULL);
			keys[i] = PointerGetDatum(t);
			t = member_text(ehk, i + 1, "explicit_hash_key", true);
			ehknulls[i] = (t == NULL);
			ehks[i] = PointerGetDatum(t);
			any_ehk |= (t != NULL);
		}
		if (data == NULL)
			datanulls[i] = true;
		else
		{
			datas[i] = PointerGetDatum(jsonb_utf8(JsonbValueToJsonb(data)));
		}
		i++;
	}

	dims[0] = n;
	InitFunctionCallInfoData(*call, base, 4, fcinfo->fncollation, NULL, fcinfo->resultinfo);
	call->args[0] = fcinfo->args[0];
	call->args[1].value = PointerGetDatum(construct_md_array(keys, keynulls, n > 0 ? 1 : 0, dims, lbs,
															  TEXTOID, -1, false, TYPALIGN_INT));
	call->args[1].isnull = false;
	call->args[2].value = PointerGetDatum(construct_md_array(datas, datanulls, n > 0 ? 1 : 0, dims, lbs,
															  BYTEAOID, -1, false, TYPALIGN_INT));
	call->args[2].isnull = false;
	call->args[3].value = any_ehk ?
		PointerGetDatum(construct_md_array(ehks, ehknulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT)) :
		(Datum) 0;
	call->args[3].isnull = !any_ehk;
	return FunctionCallInvoke(call);
}

PG_FUNCTION_INFO_V1(stream_put_record_json);

/* The UTF-8 text of a jsonb document as bytea. */
static bytea *
jsonb_utf8(Jsonb *jb)
{
	char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

	s = pg_server_to_any(s, strlen(s), PG_UTF8);
	return (bytea *) cstring_to_text(s);	/* text and bytea share the layout */
}

/*
 * stream.put_record_json(stream_name, partition_key, data jsonb, explicit_hash_key)
 *   RETURNS stream.put_record_result
 * stream.put_record with the data stored as the UTF-8 text of the document.
 */
Datum
stream_put_record_json(PG_FUNCTION_ARGS)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID};
	FmgrInfo   *base = base_function(fcinfo, "put_record", 5, argtypes);
	LOCAL_FCINFO(call, 5);
	Datum		result;

	InitFunctionCallInfoData(*call, base, 5, fcinfo->fncollation, NULL, NULL);
	call->args[0] = fcinfo->args[0];
	call->args[1] = fcinfo->args[1];
	call->args[2].isnull = PG_ARGISNULL(2);
	call->args[2].value = PG_ARGISNULL(2) ? (Datum) 0 : PointerGetDatum(jsonb_utf8(PG_GETARG_JSONB_P(2)));
	call->args[3] = fcinfo->args[3];
	call->args[4].isnull = true;	/* sequence_number_for_ordering */
	call->args[4].value = (Datum) 0;
	result = FunctionCallInvoke(call);
	if (call->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
