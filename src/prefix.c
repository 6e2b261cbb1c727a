/*
 * prefix.c: object key templates of delivery streams.
 *
 * A prefix is literal text with Firehose's expressions (kinesis-semantics.md
 * 5.3): !{timestamp:<DateTimeFormatter pattern>} (UTC, the arrival time of
 * the oldest record in the object, the same instant for every occurrence),
 * !{firehose:random-string}, !{firehose:error-output-type},
 * !{partitionKeyFromQuery:<key>} and !{partitionKeyFromLambda:<key>}.
 * Keys become directories on the server, so every value from a record is
 * made safe for a path (percent-encoded) and no evaluated prefix may climb
 * out of the destination.
 */
#include "stream.h"

#include <limits.h>
#include <math.h>

#include "delivery.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"

static void
invalid_prefix(const char *member, const char *prefix, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: %s '%s' is invalid: %s", member, prefix, why)));
}

/*
 * Append ts formatted by a java.time.format.DateTimeFormatter pattern: the
 * letters y/u (year), M (month), d (day), D (day of year), H (hour 0-23),
 * h (1-12), m, s, S (fraction), a (AM/PM); 'quoted' text is literal, ''
 * is a quote, other characters are copied.
 */
void
prefix_format_timestamp(StringInfo out, const char *pattern, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	static const char *const mon_short[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static const int cum_days[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	const char *p = pattern;

	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range for a prefix")));

	while (*p)
	{
		char		c = *p;
		int			n = 1;

		if (c == '\'')
		{
			p++;
			if (*p == '\'')
			{
				appendStringInfoChar(out, '\'');
				p++;
				continue;
			}
			while (*p && !(*p == '\'' && p[1] != '\''))
			{
				if (*p == '\'')
					p++;		/* '' inside quotes */
				appendStringInfoChar(out, *p);
				p++;
			}
			if (*p != '\'')
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_INVALID_ARG),
						 errmsg("InvalidArgumentException: unterminated quote in timestamp pattern '%s'", pattern)));
			p++;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
		{
			appendStringInfoChar(out, c);
			p++;
			continue;
		}
		while (p[n] == c)
			n++;
		switch (c)
		{
			case 'y':
			case 'u':
				if (n == 2)
					appendStringInfo(out, "%02d", tm.tm_year % 100);
				else
					appendStringInfo(out, "%0*d", Max(n, 1), tm.tm_year);
				break;
			case 'M':
			case 'L':
				if (n >= 3)
					appendStringInfoString(out, mon_short[tm.tm_mon - 1]);
				else
					appendStringInfo(out, "%0*d", n, tm.tm_mon);
				break;
			case 'd':
				appendStringInfo(out, "%0*d", n, tm.tm_mday);
				break;
			case 'D':
				{
					int			yday = cum_days[tm.tm_mon - 1] + tm.tm_mday;

					if (tm.tm_mon > 2 && isleap(tm.tm_year))
						yday++;
					appendStringInfo(out, "%0*d", n, yday);
				}
				break;
			case 'H':
				appendStringInfo(out, "%0*d", n, tm.tm_hour);
				break;
			case 'h':
				appendStringInfo(out, "%0*d", n, tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12);
				break;
			case 'a':
				appendStringInfoString(out, tm.tm_hour < 12 ? "AM" : "PM");
				break;
			case 'm':
				appendStringInfo(out, "%0*d", n, tm.tm_min);
				break;
			case 's':
				appendStringInfo(out, "%0*d", n, tm.tm_sec);
				break;
			case 'S':
				{
					char		frac[7];

					snprintf(frac, sizeof(frac), "%06d", (int) fsec);
					for (int i = 0; i < n; i++)
						appendStringInfoChar(out, i < 6 ? frac[i] : '0');
				}
				break;
			default:
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_INVALID_ARG),
						 errmsg("InvalidArgumentException: unsupported letter '%c' in timestamp pattern '%s'", c, pattern),
						 errhint("Supported: y, u, M, d, D, H, h, a, m, s, S; quote literal letters with '...'.")));
		}
		p += n;
	}
}

/*
 * Parse a prefix.  member names the parameter in messages.  Checks the
 * syntax only; which expressions are allowed where is the caller's rule.
 */
PrefixTemplate *
prefix_parse(const char *s, const char *member)
{
	PrefixTemplate *t = palloc0(sizeof(PrefixTemplate));
	int			cap = 8;
	const char *p = s;
	StringInfoData lit;

	t->segs = palloc(sizeof(PrefixSeg) * cap);
	initStringInfo(&lit);

#define ADD_SEG(k, txt) \
	do { \
		if (t->nsegs >= cap) { cap *= 2; t->segs = repalloc(t->segs, sizeof(PrefixSeg) * cap); } \
		t->segs[t->nsegs].kind = (k); t->segs[t->nsegs].text = (txt); t->nsegs++; \
	} while (0)

	if (strlen(s) > 1024)
		invalid_prefix(member, s, "it is longer than 1024 characters");
	while (*p)
	{
		if (p[0] == '!' && p[1] == '{')
		{
			const char *end = strchr(p + 2, '}');
			char	   *expr;
			char	   *colon;
			char	   *ns,
					   *val;

			if (end == NULL)
				invalid_prefix(member, s, "an expression !{...} is not closed");
			if (lit.len > 0)
			{
				ADD_SEG(PSEG_LITERAL, pstrdup(lit.data));
				resetStringInfo(&lit);
			}
			expr = pnstrdup(p + 2, end - (p + 2));
			colon = strchr(expr, ':');
			if (colon == NULL)
				invalid_prefix(member, s, psprintf("expression !{%s} has no namespace", expr));
			*colon = '\0';
			ns = expr;
			val = colon + 1;
			t->has_expressions = true;
			if (strcmp(ns, "timestamp") == 0)
			{
				StringInfoData probe;

				if (*val == '\0')
					invalid_prefix(member, s, "!{timestamp:} needs a pattern");
				initStringInfo(&probe);
				prefix_format_timestamp(&probe, val, 0);	/* validates the pattern */
				pfree(probe.data);
				ADD_SEG(PSEG_TIMESTAMP, pstrdup(val));
				t->has_timestamp = true;
			}
			else if (strcmp(ns, "firehose") == 0 && strcmp(val, "random-string") == 0)
				ADD_SEG(PSEG_RANDOM, NULL);
			else if (strcmp(ns, "firehose") == 0 && strcmp(val, "error-output-type") == 0)
			{
				ADD_SEG(PSEG_ERROR_TYPE, NULL);
				t->has_error_type = true;
			}
			else if (strcmp(ns, "partitionKeyFromQuery") == 0 && *val)
			{
				ADD_SEG(PSEG_KEY_QUERY, pstrdup(val));
				t->has_query_keys = true;
			}
			else if (strcmp(ns, "partitionKeyFromLambda") == 0 && *val)
			{
				ADD_SEG(PSEG_KEY_LAMBDA, pstrdup(val));
				t->has_lambda_keys = true;
			}
			else
				invalid_prefix(member, s,
							   psprintf("unknown expression !{%s:%s}; expected timestamp, firehose:random-string, firehose:error-output-type, partitionKeyFromQuery or partitionKeyFromLambda",
										ns, val));
			p = end + 1;
			continue;
		}
		appendStringInfoChar(&lit, *p);
		p++;
	}
	if (lit.len > 0)
		ADD_SEG(PSEG_LITERAL, pstrdup(lit.data));
	if (s[0] == '/')
		invalid_prefix(member, s, "it must not start with '/'");
	return t;
#undef ADD_SEG
}

/*
 * A partition value made into (part of) one path component: characters
 * outside a safe set are percent-encoded, so '%' reads back unambiguously.
 * NULL, with *why set, for a value that cannot name a path component
 * whatever the encoding: empty, with a NUL byte, not UTF-8, with a '/',
 * '.' or '..', the staging directory's name, or longer than
 * DELIVERY_PARTITION_VALUE_MAX bytes once encoded.
 */
char *
prefix_partition_value(const char *value, int len, const char **why)
{
	StringInfoData out;
	int			valid;

	*why = NULL;
	if (len == 0)
	{
		*why = "is empty";
		return NULL;
	}
	if (memchr(value, '\0', len) != NULL)
	{
		*why = "contains a NUL byte";
		return NULL;
	}
	valid = pg_encoding_verifymbstr(PG_UTF8, value, len);
	if (valid < len)
	{
		*why = psprintf("is not valid UTF-8 (invalid byte 0x%02x at offset %d)",
						(unsigned char) value[valid], valid);
		return NULL;
	}
	if (memchr(value, '/', len) != NULL)
	{
		*why = "contains '/'";
		return NULL;
	}
	if ((len == 1 && value[0] == '.') || (len == 2 && value[0] == '.' && value[1] == '.'))
	{
		*why = "is '.' or '..'";
		return NULL;
	}
	if (len == strlen(DELIVERY_STAGING_NAME) && memcmp(value, DELIVERY_STAGING_NAME, len) == 0)
	{
		*why = "is " DELIVERY_STAGING_NAME ", the name of the destination's staging directory";
		return NULL;
	}
	initStringInfo(&out);
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) value[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '=' || c == '+' || c == ',' || c == '@' ||
			c == '.' || c >= 0x80)
			appendStringInfoChar(&out, c);
		else
			appendStringInfo(&out, "%%%02X", c);
		if (out.len > DELIVERY_PARTITION_VALUE_MAX)
		{
			*why = psprintf("is longer than %d bytes once encoded for a path", DELIVERY_PARTITION_VALUE_MAX);
			pfree(out.data);
			return NULL;
		}
	}
	return out.data;
}

static uint32
mix32(uint32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/*
 * What is wrong with an evaluated prefix as a relative path, or NULL: it
 * must not start with '/', have '.' or '..' components, name the staging
 * directory as its first component, exceed DELIVERY_PREFIX_MAX bytes, or
 * have a directory component over DELIVERY_COMPONENT_MAX bytes; its last
 * (partial) component and an object name of up to DELIVERY_OBJECT_NAME_MAX
 * bytes form the file name, which must fit DELIVERY_COMPONENT_MAX too.
 */
static char *
prefix_path_problem(const char *path, bool check_total)
{
	const char *p = path;
	bool		first = true;

	if (path[0] == '/')
		return psprintf("evaluated prefix '%s' starts with '/'", path);
	if (check_total && strlen(path) > DELIVERY_PREFIX_MAX)
		return psprintf("evaluated prefix is %zu bytes, longer than %d", strlen(path), DELIVERY_PREFIX_MAX);
	for (;;)
	{
		const char *slash = strchr(p, '/');
		int			len = slash ? slash - p : strlen(p);

		if ((len == 2 && p[0] == '.' && p[1] == '.') || (len == 1 && p[0] == '.'))
			return psprintf("evaluated prefix '%s' contains a '.' or '..' component", path);
		if (first && slash && len == strlen(DELIVERY_STAGING_NAME) &&
			strncmp(p, DELIVERY_STAGING_NAME, len) == 0)
			return psprintf("evaluated prefix '%s' starts with the reserved directory " DELIVERY_STAGING_NAME, path);
		if (slash && len > DELIVERY_COMPONENT_MAX)
			return psprintf("a directory name of the evaluated prefix is %d bytes (at most %d): '%.*s'",
							len, DELIVERY_COMPONENT_MAX, len, p);
		if (!slash && len + DELIVERY_OBJECT_NAME_MAX > DELIVERY_COMPONENT_MAX)
			return psprintf("the text after the last '/' of the evaluated prefix is %d bytes; with the object name "
							"(up to %d bytes) a file name would exceed %d bytes",
							len, DELIVERY_OBJECT_NAME_MAX, DELIVERY_COMPONENT_MAX);
		first = false;
		if (!slash)
			break;
		p = slash + 1;
	}
	return NULL;
}

/*
 * Evaluate a template.  With why NULL, keys missing from v and evaluated
 * prefixes that are no valid relative path raise an error; otherwise NULL is
 * returned with *why set.
 */
static char *
prefix_eval_internal(const PrefixTemplate *t, const PrefixValues *v, char **why, bool check_total)
{
	StringInfoData out;
	int			nrandom = 0;
	char	   *problem;

	initStringInfo(&out);
	for (int i = 0; i < t->nsegs; i++)
	{
		const PrefixSeg *seg = &t->segs[i];

		switch (seg->kind)
		{
			case PSEG_LITERAL:
				appendStringInfoString(&out, seg->text);
				break;
			case PSEG_TIMESTAMP:
				prefix_format_timestamp(&out, seg->text, v->ts);
				break;
			case PSEG_RANDOM:
				{
					uint32		a = mix32(v->seed ^ mix32(0x9e3779b9u + nrandom++));
					uint32		b = mix32(a + 0x7f4a7c15u);

					appendStringInfo(&out, "%08x-%02x", a, b & 0xff);
				}
				break;
			case PSEG_ERROR_TYPE:
				appendStringInfoString(&out, v->error_type ? v->error_type : "processing-failed");
				break;
			case PSEG_KEY_QUERY:
			case PSEG_KEY_LAMBDA:
				{
					bool		found = false;
					char		tag = seg->kind == PSEG_KEY_QUERY ? 'q' : 'l';

					for (int k = 0; k < v->nkeys; k++)
					{
						if (v->key_names[k][0] == tag && strcmp(v->key_names[k] + 2, seg->text) == 0)
						{
							if (v->key_values[k] == NULL)
								break;
							appendStringInfoString(&out, v->key_values[k]);
							found = true;
							break;
						}
					}
					if (!found)
					{
						if (why)
						{
							*why = psprintf("partition key \"%s\" has no value", seg->text);
							return NULL;
						}
						ereport(ERROR,
								(errcode(ERRCODE_STREAM_INVALID_ARG),
								 errmsg("partition key \"%s\" has no value", seg->text)));
					}
				}
				break;
		}
	}

	/* never leave the destination directory, never a name the file system refuses */
	problem = prefix_path_problem(out.data, check_total);
	if (problem != NULL)
	{
		if (why)
		{
			*why = problem;
			return NULL;
		}
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: %s", problem)));
	}
	return out.data;
}

char *
prefix_eval_checked(const PrefixTemplate *t, const PrefixValues *v, char **why)
{
	return prefix_eval_internal(t, v, why, true);
}

char *
prefix_eval(const PrefixTemplate *t, const PrefixValues *v)
{
	return prefix_eval_internal(t, v, NULL, true);
}

/* A directory name with nkeys values and fixed bytes: each key's share of what is left. */
static void
close_component(int limit, int fixed, int nkeys, const int *keysegs, int *budget)
{
	if (nkeys == 0)
		return;
	for (int k = 0; k < nkeys; k++)
		budget[keysegs[k]] = Min(budget[keysegs[k]], (limit - fixed) / nkeys);
}

/*
 * Refuse, at creation, a template some evaluation of which the file system
 * would refuse.  Each path component is taken at its longest: timestamps at
 * 9999-12-31 23:59:59.999999, the longest error output type, and each
 * partition value at the most bytes it may have there: its share of what
 * the component's literal parts leave (keys sharing a directory name share
 * its 255 bytes), at most DELIVERY_PARTITION_VALUE_MAX.  A share below
 * DELIVERY_PARTITION_VALUE_MIN bytes refuses the template.  Records whose
 * values make a longer name, or an evaluated prefix over
 * DELIVERY_PREFIX_MAX bytes, are failed one by one (prefix_eval_checked).
 */
void
prefix_check_worst_case(const PrefixTemplate *t, const char *member, const char *prefix)
{
	PrefixValues v;
	char	   *why = NULL;
	char	   *path;
	struct pg_tm tm;
	TimestampTz ts;
	int		   *budget = palloc(sizeof(int) * Max(t->nsegs, 1));
	int		   *keysegs = palloc(sizeof(int) * Max(t->nsegs, 1));
	int			nk = 0;
	int			fixed = 0;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = 9999;
	tm.tm_mon = 12;
	tm.tm_mday = 31;
	tm.tm_hour = 23;
	tm.tm_min = 59;
	tm.tm_sec = 59;
	if (tm2timestamp(&tm, 999999, NULL, &ts) != 0)
		elog(ERROR, "could not build the latest timestamp");

	/* each key's room, component by component */
	for (int i = 0; i < t->nsegs; i++)
	{
		const PrefixSeg *seg = &t->segs[i];
		StringInfoData text;

		budget[i] = DELIVERY_PARTITION_VALUE_MAX;
		if (seg->kind == PSEG_KEY_QUERY || seg->kind == PSEG_KEY_LAMBDA)
		{
			keysegs[nk++] = i;
			continue;
		}
		initStringInfo(&text);
		if (seg->kind == PSEG_LITERAL)
			appendStringInfoString(&text, seg->text);
		else if (seg->kind == PSEG_TIMESTAMP)
			prefix_format_timestamp(&text, seg->text, ts);
		else if (seg->kind == PSEG_RANDOM)
			appendStringInfoString(&text, "00000000-00");
		else
			appendStringInfoString(&text, "format-conversion-failed");	/* the longest error output type */
		for (int c = 0; c < text.len; c++)
		{
			if (text.data[c] == '/')
			{
				close_component(DELIVERY_COMPONENT_MAX, fixed, nk, keysegs, budget);
				fixed = 0;
				nk = 0;
			}
			else
				fixed++;
		}
		pfree(text.data);
	}
	close_component(DELIVERY_COMPONENT_MAX - DELIVERY_OBJECT_NAME_MAX, fixed, nk, keysegs, budget);

	/* a key named twice gets the smaller room; evaluate with every value at its longest */
	memset(&v, 0, sizeof(v));
	v.ts = ts;
	v.error_type = "format-conversion-failed";
	v.key_names = palloc(sizeof(char *) * Max(t->nsegs, 1));
	v.key_values = palloc(sizeof(char *) * Max(t->nsegs, 1));
	for (int i = 0; i < t->nsegs; i++)
	{
		const PrefixSeg *seg = &t->segs[i];
		int			room;
		char	   *val;

		if (seg->kind != PSEG_KEY_QUERY && seg->kind != PSEG_KEY_LAMBDA)
			continue;
		room = budget[i];
		for (int j = 0; j < t->nsegs; j++)
			if (t->segs[j].kind == seg->kind && strcmp(t->segs[j].text, seg->text) == 0)
				room = Min(room, budget[j]);
		if (room < DELIVERY_PARTITION_VALUE_MIN)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: %s '%s' is invalid: it leaves %d bytes for partition key \"%s\" in a directory or file name, at least %d are needed",
							member, prefix, Max(room, 0), seg->text, DELIVERY_PARTITION_VALUE_MIN),
					 errdetail("A directory name may have at most %d bytes, shared by the partition values in it; "
							   "the object name after the last '/' takes up to %d of a file name's %d.",
							   DELIVERY_COMPONENT_MAX, DELIVERY_OBJECT_NAME_MAX, DELIVERY_COMPONENT_MAX),
					 errhint("Put a '/' between long parts of the prefix, or shorten its literal text.")));
		val = palloc(room + 1);
		memset(val, 'x', room);
		val[room] = '\0';
		v.key_names[v.nkeys] = psprintf("%c:%s", seg->kind == PSEG_KEY_QUERY ? 'q' : 'l', seg->text);
		v.key_values[v.nkeys++] = val;
	}
	path = prefix_eval_internal(t, &v, &why, false);
	if (path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: %s '%s' is invalid: at its longest, %s", member, prefix, why),
				 errdetail("Each directory name may have at most %d bytes; the object name after the last '/' takes up to %d of a file name's %d.",
						   DELIVERY_COMPONENT_MAX, DELIVERY_OBJECT_NAME_MAX, DELIVERY_COMPONENT_MAX),
				 errhint("Put a '/' between long parts of the prefix, or shorten its literal text.")));
}

/*
 * The template actually used: a prefix without a timestamp expression gets
 * !{timestamp:yyyy/MM/dd/HH/} appended (Firehose's rule).
 */
char *
prefix_effective(const char *prefix, bool error_prefix)
{
	if (prefix == NULL)
		prefix = "";
	if (strstr(prefix, "!{timestamp:") != NULL)
		return pstrdup(prefix);
	return psprintf("%s!{timestamp:yyyy/MM/dd/HH/}", prefix);
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
