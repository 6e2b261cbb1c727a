/*
 * delivery/delivery_prefix.c: object key templates of delivery streams.
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

#include "delivery/delivery_int.h"
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
