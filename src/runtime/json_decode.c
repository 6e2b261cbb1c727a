/*
 * runtime/json_decode.c: JSON object records straight to typed columns.
 *
 * Two passes over one record.  The scan validates the whole text the way
 * jsonb_in would accept it (strictly: anything it is not sure of makes it
 * give up) and notes, per column, the last value token its key named.  The
 * conversion then turns the tokens into Datums in jsonb's key order (length,
 * then bytes), so that when two values fail the same one raises its error
 * as in the jsonb path.  See json_decode.h for the contract.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "runtime/json_decode.h"

typedef enum TokKind
{
	TK_NONE = 0, TK_NULL, TK_TRUE, TK_FALSE, TK_NUM, TK_STR
} TokKind;

typedef struct Tok
{
	TokKind		kind;
	bool		esc;			/* TK_STR with escapes */
	bool		integer;		/* TK_NUM without a fraction */
	const char *p;				/* the string's bytes (no quotes), the number's text */
	int			len;
} Tok;

typedef enum ColKind
{
	CK_OTHER, CK_TEXT, CK_INT2, CK_INT4, CK_INT8, CK_BOOL, CK_TSTZ,
	CK_TIMESTAMP,				/* a number goes to the jsonb path (epoch rule) */
	CK_JSON						/* any value goes to the jsonb path */
} ColKind;

typedef struct Col
{
	const char *name;
	int			namelen;
	ColKind		kind;
	FmgrInfo   *in_func;
	Oid			ioparam;
	int32		typmod;
	int			att;
} Col;

struct JsonDecoder
{
	int			n;
	int			natts;
	bool		enabled;
	bool		utf8;
	Col		   *cols;
	int		   *order;			/* columns in jsonb key order */
	Tok		   *toks;
};

#define MAX_DEPTH 64
#define MAX_NUMLEN 200

static int
jsonb_key_cmp(const Col *a, const Col *b)
{
	if (a->namelen != b->namelen)
		return a->namelen < b->namelen ? -1 : 1;
	return memcmp(a->name, b->name, a->namelen);
}

JsonDecoder *
json_decoder_create(int n, char **names, const Oid *types, const int32 *typmods,
					FmgrInfo *in_funcs, const Oid *ioparams, const int *atts, int natts)
{
	JsonDecoder *d = palloc0(sizeof(JsonDecoder));

	d->n = n;
	d->natts = natts;
	d->enabled = true;
	d->utf8 = GetDatabaseEncoding() == PG_UTF8;
	d->cols = palloc0(sizeof(Col) * Max(n, 1));
	d->order = palloc(sizeof(int) * Max(n, 1));
	d->toks = palloc0(sizeof(Tok) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		Col		   *c = &d->cols[i];

		c->name = names[i];
		c->namelen = strlen(names[i]);
		c->in_func = &in_funcs[i];
		c->ioparam = ioparams[i];
		c->typmod = typmods[i];
		c->att = atts[i];
		switch (types[i])
		{
			case TEXTOID:
				c->kind = CK_TEXT;
				break;
			case INT2OID:
				c->kind = CK_INT2;
				break;
			case INT4OID:
				c->kind = CK_INT4;
				break;
			case INT8OID:
				c->kind = CK_INT8;
				break;
			case BOOLOID:
				c->kind = CK_BOOL;
				break;
			case TIMESTAMPTZOID:
				c->kind = typmods[i] < 0 ? CK_TSTZ : CK_TIMESTAMP;
				break;
			case TIMESTAMPOID:
				c->kind = CK_TIMESTAMP;
				break;
			case JSONOID:
			case JSONBOID:
				c->kind = CK_JSON;
				break;
			default:
				c->kind = CK_OTHER;
				break;
		}
		/* two columns one key could match: the jsonb path's first-match rule decides */
		for (int j = 0; j < i; j++)
			if (d->cols[j].namelen == c->namelen &&
				pg_strncasecmp(d->cols[j].name, c->name, c->namelen) == 0)
				d->enabled = false;
		/* insertion into the key order */
		{
			int			k = i;

			while (k > 0 && jsonb_key_cmp(&d->cols[d->order[k - 1]], c) > 0)
			{
				d->order[k] = d->order[k - 1];
				k--;
			}
			d->order[k] = i;
		}
	}
	return d;
}

/* ---- the scan: false means "not sure", never an error ---- */

typedef struct Scan
{
	const char *p;
	const char *end;
	bool		utf8;
} Scan;

static inline void
skip_ws(Scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* after a number or a literal: what jsonb_in would surely take as its end */
static inline bool
at_delim(Scan *s)
{
	if (s->p >= s->end)
		return true;
	switch (*s->p)
	{
		case ' ':
		case '\n':
		case '\r':
		case '\t':
		case ',':
		case '}':
		case ']':
			return true;
		default:
			return false;
	}
}

static inline int
hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * A string from after its opening quote; sets *esc when it holds escapes.
 * \u escapes are taken only as jsonb_in takes them without complaint: a
 * non-zero code point, surrogates only in pairs, non-ASCII only in a UTF-8
 * database.
 */
static bool
scan_string(Scan *s, Tok *t, bool allow_esc)
{
	const char *p = s->p;
	const char *end = s->end;

	t->kind = TK_STR;
	t->esc = false;
	t->p = p;
	for (;;)
	{
		unsigned char c;

		/* the plain run: most strings are nothing else */
		while (p < end && (c = (unsigned char) *p) != '"' && c != '\\' && c >= 0x20)
			p++;
		if (p >= end)
			return false;
		c = (unsigned char) *p;
		if (c == '"')
			break;
		if (c < 0x20 || !allow_esc)
			return false;
		/* a backslash */
		t->esc = true;
		if (p + 1 >= end)
			return false;
		switch (p[1])
		{
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				p += 2;
				break;
			case 'u':
				{
					int			cp;

					if (end - p < 6 || (cp = hex4(p + 2)) <= 0)
						return false;
					p += 6;
					if (cp >= 0xDC00 && cp <= 0xDFFF)
						return false;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						int			lo;

						if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
							(lo = hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
							return false;
						p += 6;
					}
					if (cp > 0x7F && !s->utf8)
						return false;
					break;
				}
			default:
				return false;
		}
	}
	t->len = p - t->p;
	s->p = p + 1;
	return true;
}

/* A number, strictly RFC 8259's; gives up on exponents, -0 and long ones. */
static bool
scan_number(Scan *s, Tok *t)
{
	const char *p = s->p;
	const char *end = s->end;
	bool		nonzero = false;

	t->kind = TK_NUM;
	t->p = p;
	t->integer = true;
	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return false;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
	{
		nonzero = true;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	else
		return false;
	if (p < end && *p == '.')
	{
		const char *f = ++p;

		t->integer = false;
		while (p < end && *p >= '0' && *p <= '9')
		{
			if (*p != '0')
				nonzero = true;
			p++;
		}
		if (p == f)
			return false;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
		return false;
	/* numeric_out writes -0 as 0: the text would differ */
	if (*t->p == '-' && !nonzero)
		return false;
	t->len = p - t->p;
	if (t->len > MAX_NUMLEN)
		return false;
	s->p = p;
	return at_delim(s);
}

static bool
scan_literal(Scan *s, Tok *t)
{
	const char *p = s->p;
	Size		left = s->end - p;

	if (left >= 4 && memcmp(p, "true", 4) == 0)
	{
		t->kind = TK_TRUE;
		s->p += 4;
	}
	else if (left >= 5 && memcmp(p, "false", 5) == 0)
	{
		t->kind = TK_FALSE;
		s->p += 5;
	}
	else if (left >= 4 && memcmp(p, "null", 4) == 0)
	{
		t->kind = TK_NULL;
		s->p += 4;
	}
	else
		return false;
	return at_delim(s);
}

/* A scalar value; false on a container (and on anything doubtful). */
static bool
scan_scalar(Scan *s, Tok *t)
{
	if (s->p >= s->end)
		return false;
	switch (*s->p)
	{
		case '"':
			s->p++;
			return scan_string(s, t, true);
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			return scan_number(s, t);
		case 't':
		case 'f':
		case 'n':
			return scan_literal(s, t);
		default:
			return false;
	}
}

/* Any value, validated and skipped. */
static bool
skip_value(Scan *s, int depth)
{
	Tok			t;

	if (s->p >= s->end)
		return false;
	if (*s->p == '{' || *s->p == '[')
	{
		char		close = *s->p == '{' ? '}' : ']';
		bool		obj = close == '}';

		if (depth >= MAX_DEPTH)
			return false;
		s->p++;
		skip_ws(s);
		if (s->p < s->end && *s->p == close)
		{
			s->p++;
			return true;
		}
		for (;;)
		{
			if (obj)
			{
				if (s->p >= s->end || *s->p != '"')
					return false;
				s->p++;
				if (!scan_string(s, &t, true))
					return false;
				skip_ws(s);
				if (s->p >= s->end || *s->p != ':')
					return false;
				s->p++;
				skip_ws(s);
			}
			if (!skip_value(s, depth + 1))
				return false;
			skip_ws(s);
			if (s->p >= s->end)
				return false;
			if (*s->p == ',')
			{
				s->p++;
				skip_ws(s);
				continue;
			}
			if (*s->p != close)
				return false;
			s->p++;
			return true;
		}
	}
	return scan_scalar(s, &t);
}

/* the column a key names exactly; -1 none; -2 one only case-insensitively */
static inline int
find_col(JsonDecoder *d, const char *k, int klen)
{
	bool		fold = false;

	for (int i = 0; i < d->n; i++)
	{
		Col		   *c = &d->cols[i];

		if (c->namelen != klen)
			continue;
		if (memcmp(c->name, k, klen) == 0)
			return i;
		/* pg_strncasecmp folds ASCII, and high-bit bytes by the locale */
		if (((c->name[0] | 0x20) == (k[0] | 0x20)) || IS_HIGHBIT_SET(k[0]) || IS_HIGHBIT_SET(c->name[0]))
			fold = true;
	}
	if (fold)
	{
		for (int i = 0; i < d->n; i++)
			if (d->cols[i].namelen == klen && pg_strncasecmp(d->cols[i].name, k, klen) == 0)
				return -2;
	}
	return -1;
}

static bool
scan_record(JsonDecoder *d, const char *data, int len)
{
	Scan		s;

	s.p = data;
	s.end = data + len;
	s.utf8 = d->utf8;
	memset(d->toks, 0, sizeof(Tok) * d->n);
	skip_ws(&s);
	if (s.p >= s.end || *s.p != '{')
		return false;
	s.p++;
	skip_ws(&s);
	if (s.p < s.end && *s.p == '}')
		s.p++;
	else
	{
		for (;;)
		{
			Tok			key;
			int			col;

			if (s.p >= s.end || *s.p != '"')
				return false;
			s.p++;
			/* a key with escapes could name a column once decoded */
			if (!scan_string(&s, &key, false))
				return false;
			skip_ws(&s);
			if (s.p >= s.end || *s.p != ':')
				return false;
			s.p++;
			skip_ws(&s);
			col = find_col(d, key.p, key.len);
			if (col == -2)
				return false;
			if (col >= 0)
			{
				Tok		   *t = &d->toks[col];
				ColKind		k = d->cols[col].kind;

				if (!scan_scalar(&s, t))
					return false;
				if (t->kind != TK_NULL &&
					(k == CK_JSON || ((k == CK_TIMESTAMP || k == CK_TSTZ) && t->kind == TK_NUM)))
					return false;
			}
			else if (!skip_value(&s, 1))
				return false;
			skip_ws(&s);
			if (s.p >= s.end)
				return false;
			if (*s.p == ',')
			{
				s.p++;
				skip_ws(&s);
				continue;
			}
			if (*s.p != '}')
				return false;
			s.p++;
			break;
		}
	}
	skip_ws(&s);
	return s.p == s.end;
}

/* ---- the conversion: the same strings to the same functions, or their result ---- */

/* A string token's value, decoded (validated by the scan). */
static char *
tok_cstring(Tok *t)
{
	char	   *out;
	char	   *o;
	const char *p = t->p;
	const char *end = t->p + t->len;

	if (!t->esc)
		return pnstrdup(t->p, t->len);
	out = o = palloc(t->len + 1);
	while (p < end)
	{
		if (*p != '\\')
		{
			*o++ = *p++;
			continue;
		}
		switch (p[1])
		{
			case 'b':
				*o++ = '\b';
				p += 2;
				break;
			case 'f':
				*o++ = '\f';
				p += 2;
				break;
			case 'n':
				*o++ = '\n';
				p += 2;
				break;
			case 'r':
				*o++ = '\r';
				p += 2;
				break;
			case 't':
				*o++ = '\t';
				p += 2;
				break;
			case 'u':
				{
					pg_wchar	cp = hex4(p + 2);

					p += 6;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
						p += 6;
					}
					/* at most 4 bytes for at least 6 of input */
					unicode_to_utf8(cp, (unsigned char *) o);
					o += pg_utf_mblen((unsigned char *) o);
					break;
				}
			default:			/* " \ / */
				*o++ = p[1];
				p += 2;
				break;
		}
	}
	*o = '\0';
	return out;
}

/* The text the jsonb path gives a type input function for a token. */
static char *
tok_text(Tok *t)
{
	switch (t->kind)
	{
		case TK_TRUE:
			return "true";
		case TK_FALSE:
			return "false";
		case TK_NUM:
			/* no exponent, no -0: numeric_out writes the same digits */
			return pnstrdup(t->p, t->len);
		default:
			return tok_cstring(t);
	}
}

/* A JSON integer that fits int64, or false. */
static inline bool
tok_int64(Tok *t, int64 *out)
{
	const char *p = t->p;
	const char *end = p + t->len;
	bool		neg = false;
	uint64		v = 0;

	if (!t->integer)
		return false;
	if (*p == '-')
	{
		neg = true;
		p++;
	}
	if (end - p > 18)
		return false;			/* the input function decides near the edges */
	while (p < end)
		v = v * 10 + (*p++ - '0');
	*out = neg ? -(int64) v : (int64) v;
	return true;
}

static inline int
digits(const char *p, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/*
 * YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}](Z|+HH[[:]MM]), years 1 to 9999: what
 * timestamptz_in gives for it, independent of the session; false for
 * anything else.
 */
static bool
iso_timestamptz(const char *p, int len, TimestampTz *out)
{
	const char *end = p + len;
	int			y,
				mo,
				d,
				h,
				mi,
				sec,
				off = 0;
	int64		fsec = 0;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (len < 20 || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != ' ') ||
		p[13] != ':' || p[16] != ':')
		return false;
	y = digits(p, 4);
	mo = digits(p + 5, 2);
	d = digits(p + 8, 2);
	h = digits(p + 11, 2);
	mi = digits(p + 14, 2);
	sec = digits(p + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
		sec < 0 || sec > 59)
		return false;
	if (d > mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
		return false;
	p += 19;
	if (p < end && *p == '.')
	{
		int			n = 0;
		int64		scale = 100000;

		p++;
		while (p < end && *p >= '0' && *p <= '9')
		{
			if (++n > 6)
				return false;
			fsec += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
		if (n == 0)
			return false;
	}
	if (p >= end)
		return false;
	if (*p == 'Z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = *p == '+' ? 1 : -1;
		int			oh,
					om = 0;

		p++;
		if (end - p < 2 || (oh = digits(p, 2)) < 0 || oh > 14)
			return false;
		p += 2;
		if (p < end && *p == ':')
			p++;
		if (p < end)
		{
			if (end - p < 2 || (om = digits(p, 2)) < 0 || om > 59)
				return false;
			p += 2;
		}
		off = sign * (oh * 3600 + om * 60);
	}
	else
		return false;
	if (p != end)
		return false;
	*out = ((int64) (date2j(y, mo, d) - POSTGRES_EPOCH_JDATE)) * USECS_PER_DAY +
		(((int64) h * 60 + mi) * 60 + sec - off) * USECS_PER_SEC + fsec;
	return true;
}

static Datum
convert_tok(Col *c, Tok *t)
{
	int64		i;

	switch (c->kind)
	{
		case CK_TEXT:
			if (t->kind == TK_STR && !t->esc)
				return PointerGetDatum(cstring_to_text_with_len(t->p, t->len));
			return PointerGetDatum(cstring_to_text(tok_text(t)));
		case CK_INT8:
			if (t->kind == TK_NUM && tok_int64(t, &i))
				return Int64GetDatum(i);
			break;
		case CK_INT4:
			if (t->kind == TK_NUM && tok_int64(t, &i) && i >= PG_INT32_MIN && i <= PG_INT32_MAX)
				return Int32GetDatum((int32) i);
			break;
		case CK_INT2:
			if (t->kind == TK_NUM && tok_int64(t, &i) && i >= PG_INT16_MIN && i <= PG_INT16_MAX)
				return Int16GetDatum((int16) i);
			break;
		case CK_BOOL:
			if (t->kind == TK_TRUE || t->kind == TK_FALSE)
				return BoolGetDatum(t->kind == TK_TRUE);
			break;
		case CK_TSTZ:
			{
				TimestampTz ts;

				if (t->kind == TK_STR && !t->esc && iso_timestamptz(t->p, t->len, &ts))
					return TimestampTzGetDatum(ts);
				break;
			}
		default:
			break;
	}
	return InputFunctionCall(c->in_func, tok_text(t), c->ioparam, c->typmod);
}

bool
json_decode_record(JsonDecoder *d, const char *data, int len,
				   Datum *values, bool *isnull, bool *present)
{
	if (!stream_json_fast_decode || !d->enabled)
		return false;
	if (!scan_record(d, data, len))
		return false;
	for (int i = 0; i < d->natts; i++)
	{
		values[i] = (Datum) 0;
		isnull[i] = true;
	}
	if (present)
		memset(present, 0, sizeof(bool) * d->natts);
	for (int k = 0; k < d->n; k++)
	{
		int			ci = d->order[k];
		Col		   *c = &d->cols[ci];
		Tok		   *t = &d->toks[ci];

		if (t->kind == TK_NONE)
			continue;
		if (present)
			present[c->att] = true;
		if (t->kind == TK_NULL)
			continue;
		values[c->att] = convert_tok(c, t);
		isnull[c->att] = false;
	}
	return true;
}
