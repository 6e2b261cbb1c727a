/*
 * delivery/delivery_partition.c: dynamic partitioning, a record's
 * partition keys.
 *
 * partitionKeyFromQuery keys come from the record's JSON through a key
 * query (compiled once per configuration), partitionKeyFromLambda keys from
 * the transform's result; each value is made safe for a path
 * (prefix_partition_value) or the record fails.
 */
#include "stream.h"

#include <limits.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "delivery/delivery_int.h"

/*
 * Partition values of one record (query keys from its JSON, lambda keys
 * from the transform), each made safe for a path; false, with the record
 * failed, when one is missing or cannot name a path component.
 */
bool
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


/* ----------------------------------------------------------------------
 * Partition key queries
 *
 * A key's query is a SQL/JSON path ("$.customer.id", "strict $.a[0]") or
 * the part of jq that Firehose's MetadataExtractionQuery users write: a
 * path (".customer.id", ".items[0]", ".items[-1]", ".[\"key with space\"]",
 * ".\"k\"", a trailing '?' is accepted) followed by filters:
 *   | strftime("%Y-%m-%d")   (also strflocaltime; always UTC)
 *   | todate | todateiso8601  (= strftime("%Y-%m-%dT%H:%M:%SZ"))
 *   | fromdate | fromdateiso8601   (a date string to epoch seconds)
 *   | tostring | ascii_downcase | ascii_upcase
 * The time filters take epoch seconds (jq's convention; numbers of 1e11 and
 * more are milliseconds, as the OpenX JSON SerDe reads them) or, unlike jq,
 * a date string as timestamptz reads it (ISO 8601, UTC when no zone is
 * given), so ".ts | strftime(\"%Y-%m-%d\")" partitions by day whichever
 * form the timestamp has.  A jq path is run as a strict SQL/JSON path: a
 * missing member gives no value (the record goes to the error output).
 * ----------------------------------------------------------------------
 */
#define KEYQUERY_MAX_FILTERS 8

typedef enum KeyFilterKind
{
	KF_STRFTIME,
	KF_TODATE,
	KF_FROMDATE,
	KF_TOSTRING,
	KF_DOWNCASE,
	KF_UPCASE
} KeyFilterKind;

struct KeyQuery
{
	char	   *key;
	char	   *expr;
	Datum		path;			/* jsonpath */
	Jsonb	   *vars;			/* {} */
	int			nfilters;
	KeyFilterKind filters[KEYQUERY_MAX_FILTERS];
	char	   *args[KEYQUERY_MAX_FILTERS];
};

static const char *const keyquery_hint =
"Use a SQL/JSON path ($.customer.id) or a jq path (.customer.id, .items[0], .[\"key with space\"]), "
"optionally followed by | strftime(\"%Y-%m-%d\"), | todate, | fromdateiso8601, | tostring, "
"| ascii_downcase or | ascii_upcase.";

static void
keyquery_error(const char *key, const char *expr, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: partition_key_queries \"%s\": '%s' is not a supported query: %s",
					key, expr, why),
			 errhint("%s", keyquery_hint)));
}

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* A JSON string literal at p (at its opening quote); *end after it. */
static char *
read_json_string(KeyQuery *q, const char *p, const char **end)
{
	const char *s = p + 1;
	Jsonb	   *jb;
	JsonbValue	v;

	while (*s && *s != '"')
	{
		if (*s == '\\' && s[1])
			s++;
		s++;
	}
	if (*s != '"')
		keyquery_error(q->key, q->expr, "a string is not closed");
	*end = s + 1;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(p, s + 1 - p))));
	if (!JsonbExtractScalar(&jb->root, &v) || v.type != jbvString)
		keyquery_error(q->key, q->expr, "a string is malformed");
	return pnstrdup(v.val.string.val, v.val.string.len);
}

static bool
is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

KeyQuery *
keyquery_compile(const char *key, const char *expr)
{
	KeyQuery   *q = palloc0(sizeof(KeyQuery));
	StringInfoData path;
	const char *p;

	q->key = pstrdup(key);
	q->expr = pstrdup(expr);
	q->vars = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	p = skip_ws(expr);
	initStringInfo(&path);
	if (*p == '.')
	{
		bool		first = true;

		appendStringInfoString(&path, "strict $");
		for (;;)
		{
			if (*p == '.')
			{
				p++;
				if (is_ident_start(*p))
				{
					const char *s = p;

					while (is_ident_char(*p))
						p++;
					appendStringInfoChar(&path, '.');
					escape_json(&path, pnstrdup(s, p - s));
				}
				else if (*p == '"')
				{
					appendStringInfoChar(&path, '.');
					escape_json(&path, read_json_string(q, p, &p));
				}
				else if (*p == '[')
					continue;
				else if (!first)
					keyquery_error(q->key, q->expr, psprintf("a '.' must be followed by a name, a \"string\" or [...] at offset %d",
															 (int) (p - expr)));
				/* else: '.' alone, the record itself */
			}
			else if (*p == '[')
			{
				p = skip_ws(p + 1);
				if (*p == '"')
				{
					appendStringInfoChar(&path, '.');
					escape_json(&path, read_json_string(q, p, &p));
				}
				else if ((*p >= '0' && *p <= '9') || *p == '-')
				{
					char	   *endp;
					long		n;

					errno = 0;
					n = strtol(p, &endp, 10);
					if (endp == p || (*p == '-' && endp == p + 1) || errno != 0 || n > INT_MAX || n < -INT_MAX)
						keyquery_error(q->key, q->expr, "an array index must be an integer");
					p = endp;
					if (n >= 0)
						appendStringInfo(&path, "[%ld]", n);
					else if (n == -1)
						appendStringInfoString(&path, "[last]");
					else
						appendStringInfo(&path, "[last - %ld]", -n - 1);
				}
				else
					keyquery_error(q->key, q->expr,
								   psprintf("only [\"name\"] and [index] are supported inside [...] (offset %d); a partition key is one value",
											(int) (p - expr)));
				p = skip_ws(p);
				if (*p != ']')
					keyquery_error(q->key, q->expr, psprintf("expected ']' at offset %d", (int) (p - expr)));
				p++;
			}
			else if (*p == '?')
				p++;			/* jq's "no error": a missing value fails the record either way */
			else
				break;
			first = false;
		}
		p = skip_ws(p);
		while (*p == '|')
		{
			const char *s;
			char	   *name;
			KeyFilterKind kind;

			p = skip_ws(p + 1);
			s = p;
			while (is_ident_char(*p))
				p++;
			name = pnstrdup(s, p - s);
			if (q->nfilters >= KEYQUERY_MAX_FILTERS)
				keyquery_error(q->key, q->expr, psprintf("at most %d filters", KEYQUERY_MAX_FILTERS));
			if (strcmp(name, "strftime") == 0 || strcmp(name, "strflocaltime") == 0)
				kind = KF_STRFTIME;
			else if (strcmp(name, "todate") == 0 || strcmp(name, "todateiso8601") == 0)
				kind = KF_TODATE;
			else if (strcmp(name, "fromdate") == 0 || strcmp(name, "fromdateiso8601") == 0)
				kind = KF_FROMDATE;
			else if (strcmp(name, "tostring") == 0)
				kind = KF_TOSTRING;
			else if (strcmp(name, "ascii_downcase") == 0)
				kind = KF_DOWNCASE;
			else if (strcmp(name, "ascii_upcase") == 0)
				kind = KF_UPCASE;
			else
				keyquery_error(q->key, q->expr,
							   psprintf("unsupported filter '%s'", *name ? name : pnstrdup(s, Min(strlen(s), 20))));
			q->args[q->nfilters] = NULL;
			if (kind == KF_STRFTIME)
			{
				p = skip_ws(p);
				if (*p != '(')
					keyquery_error(q->key, q->expr, "strftime needs a format: strftime(\"%Y-%m-%d\")");
				p = skip_ws(p + 1);
				if (*p != '"')
					keyquery_error(q->key, q->expr, "the format of strftime must be a string");
				q->args[q->nfilters] = read_json_string(q, p, &p);
				p = skip_ws(p);
				if (*p != ')')
					keyquery_error(q->key, q->expr, "expected ')' after the format of strftime");
				p++;
				if (strlen(q->args[q->nfilters]) == 0 || strlen(q->args[q->nfilters]) > 64)
					keyquery_error(q->key, q->expr, "the format of strftime must have 1 to 64 characters");
			}
			q->filters[q->nfilters++] = kind;
			p = skip_ws(p);
		}
		if (*p != '\0')
			keyquery_error(q->key, q->expr,
						   *p == '{' || *p == ',' ? "give one query per key, e.g. {\"customer_id\": \".customer_id\"}" :
						   psprintf("unexpected '%c' at offset %d", *p, (int) (p - expr)));
	}
	else if (*p == '$' || strncmp(p, "strict", 6) == 0 || strncmp(p, "lax", 3) == 0)
		appendStringInfoString(&path, p);
	else if (*p == '{')
		keyquery_error(q->key, q->expr, "give one query per key, e.g. {\"customer_id\": \".customer_id\"}");
	else
		keyquery_error(q->key, q->expr, "a query starts with '.' (jq) or '$' (SQL/JSON path)");

	/* a syntax error of the path: an invalid argument, with the parser's words */
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			q->path = DirectFunctionCall1(jsonpath_in, CStringGetDatum(path.data));
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			MemoryContextSwitchTo(cxt);
			ed = CopyErrorData();
			if (ed->sqlerrcode != ERRCODE_SYNTAX_ERROR)
				PG_RE_THROW();
			FlushErrorState();
			keyquery_error(q->key, q->expr, ed->message);
		}
		PG_END_TRY();
	}
	return q;
}

/* Text of a jsonpath/partition value, or NULL. */
char *
jsonb_scalar_text(Jsonb *jb)
{
	JsonbValue	v;

	if (jb == NULL)
		return NULL;
	if (JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &v))
	{
		switch (v.type)
		{
			case jbvNull:
				return NULL;
			case jbvString:
				return pnstrdup(v.val.string.val, v.val.string.len);
			case jbvNumeric:
				return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
			case jbvBool:
				return pstrdup(v.val.boolean ? "true" : "false");
			default:
				break;
		}
	}
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* a value between filters */
typedef struct KeyValue
{
	enum
	{
		KV_NULL, KV_STRING, KV_NUMBER, KV_BOOL, KV_OTHER
	}			type;
	char	   *text;			/* string contents, number/bool/JSON text */
} KeyValue;

static const char *
kv_type_name(const KeyValue *v)
{
	switch (v->type)
	{
		case KV_NULL:
			return "null";
		case KV_STRING:
			return "a string";
		case KV_NUMBER:
			return "a number";
		case KV_BOOL:
			return "a boolean";
		default:
			return "an object or array";
	}
}

static void
kv_error(const KeyQuery *q, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("Partition key \"%s\" ('%s'): %s", q->key, q->expr, what)));
}

/* epoch seconds of a number or a date string */
static double
kv_epoch_seconds(const KeyQuery *q, const KeyValue *v, const char *filter)
{
	if (v->type == KV_NUMBER)
	{
		double		x = strtod(v->text, NULL);

		/* milliseconds when that large, as the OpenX SerDe reads them (year 5138 and later in seconds) */
		if (fabs(x) >= 1e11)
			x /= 1000.0;
		if (!isfinite(x) || fabs(x) >= 1e11)
			kv_error(q, psprintf("%s: %s is out of range as seconds or milliseconds since the epoch", filter, v->text));
		return x;
	}
	if (v->type == KV_STRING)
	{
		TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(v->text),
																 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));

		if (TIMESTAMP_NOT_FINITE(ts))
			kv_error(q, psprintf("%s: '%s' is not a finite date", filter, v->text));
		return (double) ts / USECS_PER_SEC +
			(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	}
	kv_error(q, psprintf("%s needs seconds since the epoch or a date string, got %s", filter, kv_type_name(v)));
	return 0;					/* not reached */
}

static void
kv_strftime(const KeyQuery *q, KeyValue *v, const char *fmt, const char *filter)
{
	double		secs = kv_epoch_seconds(q, v, filter);
	pg_time_t	t = (pg_time_t) floor(secs);
	struct pg_tm *tm = pg_gmtime(&t);
	char		buf[256];
	size_t		n;

	if (tm == NULL)
		kv_error(q, psprintf("%s: %s seconds is out of range", filter, v->text));
	n = pg_strftime(buf, sizeof(buf), fmt, tm);
	if (n == 0)
		kv_error(q, psprintf("%s: the result of format \"%s\" is empty or too long", filter, fmt));
	v->type = KV_STRING;
	v->text = pnstrdup(buf, n);
}

/*
 * The key's value for one JSON document: NULL when the path finds nothing
 * or null (*len = 0); otherwise its text and length.  A filter that cannot
 * take its input raises an error.
 */
char *
keyquery_eval(const KeyQuery *q, Jsonb *doc, int *len)
{
	LOCAL_FCINFO(fcinfo, 4);
	Datum		res;
	Jsonb	   *jb;
	JsonbValue	jv;
	KeyValue	v;

	*len = 0;
	InitFunctionCallInfoData(*fcinfo, NULL, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(doc);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = q->path;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = PointerGetDatum(q->vars);
	fcinfo->args[2].isnull = false;
	fcinfo->args[3].value = BoolGetDatum(true);	/* silent: a missing member is no value */
	fcinfo->args[3].isnull = false;
	res = jsonb_path_query_first(fcinfo);
	if (fcinfo->isnull)
		return NULL;
	jb = DatumGetJsonbP(res);

	if (JB_ROOT_IS_SCALAR(jb) && JsonbExtractScalar(&jb->root, &jv))
	{
		switch (jv.type)
		{
			case jbvNull:
				v.type = KV_NULL;
				v.text = "null";
				break;
			case jbvString:
				v.type = KV_STRING;
				v.text = pnstrdup(jv.val.string.val, jv.val.string.len);
				break;
			case jbvNumeric:
				v.type = KV_NUMBER;
				v.text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(jv.val.numeric)));
				break;
			case jbvBool:
				v.type = KV_BOOL;
				v.text = jv.val.boolean ? "true" : "false";
				break;
			default:
				v.type = KV_OTHER;
				v.text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				break;
		}
	}
	else
	{
		v.type = KV_OTHER;
		v.text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}

	for (int i = 0; i < q->nfilters; i++)
	{
		switch (q->filters[i])
		{
			case KF_STRFTIME:
				kv_strftime(q, &v, q->args[i], "strftime");
				break;
			case KF_TODATE:
				kv_strftime(q, &v, "%Y-%m-%dT%H:%M:%SZ", "todate");
				break;
			case KF_FROMDATE:
				{
					double		secs = kv_epoch_seconds(q, &v, "fromdate");

					v.type = KV_NUMBER;
					v.text = secs == floor(secs) ? psprintf("%.0f", secs) : psprintf("%.6f", secs);
				}
				break;
			case KF_TOSTRING:
				v.type = KV_STRING;
				break;
			case KF_DOWNCASE:
			case KF_UPCASE:
				if (v.type != KV_STRING)
					kv_error(q, psprintf("%s needs a string, got %s",
										 q->filters[i] == KF_DOWNCASE ? "ascii_downcase" : "ascii_upcase",
										 kv_type_name(&v)));
				v.text = pstrdup(v.text);
				for (char *c = v.text; *c; c++)
				{
					if (q->filters[i] == KF_DOWNCASE && *c >= 'A' && *c <= 'Z')
						*c += 'a' - 'A';
					else if (q->filters[i] == KF_UPCASE && *c >= 'a' && *c <= 'z')
						*c -= 'a' - 'A';
				}
				break;
		}
	}
	if (v.type == KV_NULL)
		return NULL;
	*len = strlen(v.text);
	return v.text;
}
