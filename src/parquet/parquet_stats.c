/*
 * parquet/parquet_stats.c: the statistics of a column chunk.
 *
 * Statistics per chunk: null_count, min_value/max_value (TYPE_ORDER: signed
 * for numbers and DECIMAL, unsigned bytes for strings, bytea and UUID; NaN
 * left out), plus the deprecated min/max for types whose old signed order
 * agrees.  Byte arrays are truncated to STATS_PREFIX bytes at a UTF-8
 * boundary: min as a prefix, max as a prefix with its last ASCII byte
 * incremented, and is_{min,max}_value_exact says when that happened.
 *
 * Fixed-width bounds are widened inline as values are appended
 * (TRACK_MINMAX in parquet_encoding.c); byte-array and UUID bounds come here
 * and are kept as truncated copies in the column (minb/maxb, no allocation).
 * Bounds belong to the current chunk: column_start_chunk clears them.
 */
#include "postgres.h"

#include "parquet/parquet_int.h"

static int
cmp_bytes(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	if (r != 0)
		return r;
	return (alen > blen) - (alen < blen);
}

/* Longest prefix of at most STATS_PREFIX bytes that ends on a UTF-8 boundary. */
static int
stats_cut(const char *p, int len)
{
	int			cut = STATS_PREFIX;

	if (len <= cut)
		return len;
	while (cut > 0 && (((unsigned char) p[cut]) & 0xC0) == 0x80)
		cut--;
	return cut;
}

static void
stats_set_min(PqColumn *c, const char *p, int len)
{
	int			cut = stats_cut(p, len);

	memcpy(c->minb, p, cut);
	c->minlen = cut;
	c->min_exact = (cut == len);
}

static void
stats_set_max(PqColumn *c, const char *p, int len)
{
	int			cut = stats_cut(p, len);

	if (cut == len)
	{
		memcpy(c->maxb, p, len);
		c->maxlen = len;
		c->max_exact = true;
		return;
	}
	/* an upper bound: bump the last ASCII byte of the prefix, drop the rest */
	while (cut > 0 && ((unsigned char) p[cut - 1]) >= 0x7F)
		cut--;
	if (cut == 0)
	{
		c->max_unbounded = true;
		return;
	}
	memcpy(c->maxb, p, cut);
	c->maxb[cut - 1]++;
	c->maxlen = cut;
	c->max_exact = false;
}

void
parquet_stats_add_bytes(PqColumn *c, const char *p, int len)
{
	if (!c->has_minmax)
	{
		c->has_minmax = true;
		stats_set_min(c, p, len);
		stats_set_max(c, p, len);
		return;
	}
	if (cmp_bytes(p, len, c->minb, c->minlen) < 0)
		stats_set_min(c, p, len);
	if (!c->max_unbounded && cmp_bytes(p, len, c->maxb, c->maxlen) > 0)
		stats_set_max(c, p, len);
}

/*
 * stats_fixed_bytes for a number of C type T kept in min/max.member: copy
 * its memory image (PLAIN is little-endian) to out and return its size;
 * signed_zero writes a zero bound as -0 (min) or +0 (max), for floats.
 */
#define STATS_FIXED(T, member, signed_zero) \
	do { \
		T			v = want_max ? c->max.member : c->min.member; \
		\
		if ((signed_zero) && v == 0) \
			v = want_max ? (T) 0 : -(T) 0; \
		memcpy(out, &v, sizeof(T)); \
		return sizeof(T); \
	} while (0)

/* PLAIN bytes of a fixed-width min or max for the Statistics struct. */
static int
stats_fixed_bytes(PqColumn *c, bool want_max, char *out)
{
	switch (c->physical)
	{
		case PQ_BOOLEAN:
			out[0] = (char) (want_max ? c->max.i32 : c->min.i32);
			return 1;
		case PQ_INT32:
			STATS_FIXED(int32, i32, false);
		case PQ_INT64:
			STATS_FIXED(int64, i64, false);
		case PQ_FLOAT:
			/* zero bounds are written as -0.0 (min) and +0.0 (max) */
			STATS_FIXED(float4, f4, true);
		case PQ_DOUBLE:
			STATS_FIXED(float8, f8, true);
		case PQ_FLBA:
			if (c->kind == PK_DECIMAL)
			{
				parquet_encoding_decimal_be16(want_max ? c->max.dec : c->min.dec, out);
				return 16;
			}
			/* UUID bounds live in minb/maxb */
			break;
	}
	return -1;
}

void
parquet_stats_write(ThriftWriter *tw, PqColumn *c)
{
	char		minv[16],
				maxv[16];
	const char *minp = NULL,
			   *maxp = NULL;
	int			minl = 0,
				maxl = 0;
	bool		legacy = false;

	if (c->has_minmax)
	{
		if (c->physical == PQ_BYTE_ARRAY || c->kind == PK_UUID)
		{
			minp = c->minb;
			minl = c->minlen;
			if (!c->max_unbounded)
			{
				maxp = c->maxb;
				maxl = c->maxlen;
			}
		}
		else
		{
			minl = stats_fixed_bytes(c, false, minv);
			maxl = stats_fixed_bytes(c, true, maxv);
			minp = minv;
			maxp = maxv;
			/* the deprecated fields use signed order: same as ours here */
			legacy = (c->physical != PQ_FLBA);
		}
	}

	thrift_struct_begin(tw, 12);
	if (legacy)
	{
		thrift_field_binary(tw, 1, maxp, maxl);
		thrift_field_binary(tw, 2, minp, minl);
	}
	thrift_field_i64(tw, 3, c->chunk_nulls);
	if (maxp)
		thrift_field_binary(tw, 5, maxp, maxl);
	if (minp)
		thrift_field_binary(tw, 6, minp, minl);
	if (maxp)
		thrift_field_bool(tw, 7, c->max_exact);
	if (minp)
		thrift_field_bool(tw, 8, c->min_exact);
	thrift_struct_end(tw);
}
