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

#include "delivery.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/datetime.h"

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

/* Percent-encode what is not safe in one path component; NULL if empty. */
char *
prefix_safe_component(const char *value)
{
	StringInfoData out;
	const unsigned char *p;

	if (value == NULL || *value == '\0')
		return NULL;
	initStringInfo(&out);
	for (p = (const unsigned char *) value; *p; p++)
	{
		unsigned char c = *p;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '=' || c == '+' || c == ',' || c == '@' ||
			(c == '.' && !(strcmp(value, ".") == 0 || strcmp(value, "..") == 0)) ||
			c >= 0x80)
			appendStringInfoChar(&out, c);
		else
			appendStringInfo(&out, "%%%02X", c);
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

/* Evaluate a template; keys missing from v raise an error. */
char *
prefix_eval(const PrefixTemplate *t, const PrefixValues *v)
{
	StringInfoData out;
	int			nrandom = 0;

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
						ereport(ERROR,
								(errcode(ERRCODE_STREAM_INVALID_ARG),
								 errmsg("partition key \"%s\" has no value", seg->text)));
				}
				break;
		}
	}

	/* never leave the destination directory */
	if (out.data[0] == '/')
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: evaluated prefix '%s' starts with '/'", out.data)));
	{
		const char *p = out.data;

		while (*p)
		{
			const char *slash = strchr(p, '/');
			int			len = slash ? slash - p : strlen(p);

			if ((len == 2 && p[0] == '.' && p[1] == '.') || (len == 1 && p[0] == '.'))
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_INVALID_ARG),
						 errmsg("InvalidArgumentException: evaluated prefix '%s' contains a '.' or '..' component", out.data)));
			if (!slash)
				break;
			p = slash + 1;
		}
	}
	if (out.len > DELIVERY_PREFIX_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: evaluated prefix is longer than %d characters", DELIVERY_PREFIX_MAX)));
	return out.data;
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
