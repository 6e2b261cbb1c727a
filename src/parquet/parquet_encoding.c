/*
 * parquet/parquet_encoding.c: a column's converted values as page bytes,
 * and the finished pages (phase 2 of parquet_writer_add_row).
 *
 * Encodings: every column except BOOLEAN starts a chunk with a dictionary;
 * once the dictionary's PLAIN size passes dictionary_bytes, or the first
 * DICT_PROBE_VALUES values turn out nearly all distinct, the page being
 * built is finished with dictionary indices and the rest of the chunk (and
 * of later row groups of the file) is PLAIN.  Definition levels: RLE/bit-
 * packed hybrid with the 4-byte length prefix that v1 pages require.  A
 * jsonb column also keeps a memo from stored jsonb bytes to dictionary
 * entries, so that a repeated value is not printed again.
 *
 * Everything here is row group memory (w->rg_cxt): page buffers, the
 * dictionary, the memo and the finished pages (PqPiece), which wait in a
 * list per column until the row group is written.  The writer's scratch
 * buffers (w->body, w->packed, w->header) are reused by every page.  Nothing
 * here may raise an error for a value: the row was converted before.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "utils/uuid.h"

#include "parquet/parquet_int.h"

/*
 * A chunk whose first DICT_PROBE_VALUES values are over 90% distinct (ids,
 * timestamps, measurements) drops its dictionary early: it would only cost
 * hashing and a dictionary page as large as the data.
 */
#define DICT_PROBE_VALUES	32768

/* ---------------------------------------------------------------- RLE */

static inline void
put_uvarint(StringInfo s, uint32 v)
{
	while (v >= 0x80)
	{
		appendStringInfoCharMacro(s, (char) ((v & 0x7F) | 0x80));
		v >>= 7;
	}
	appendStringInfoCharMacro(s, (char) v);
}

/*
 * RLE/bit-packed hybrid (Encodings.md): repeats of 8 or more become an RLE
 * run, everything else goes into bit-packed groups of 8.  A bit-packed run
 * followed by an RLE run must hold a multiple of 8 values, so a few values
 * of the repeat are taken into the literals first; only the last group of
 * the data is padded.
 */
#define DEFINE_RLE_ENCODER(fname, T) \
static void \
fname(StringInfo out, const T *v, int n, int bw) \
{ \
	int			i = 0; \
	int			lit = 0; \
	int			vbytes = (bw + 7) / 8; \
	\
	while (i < n) \
	{ \
		T			x = v[i]; \
		int			j = i + 1; \
		\
		while (j < n && v[j] == x) \
			j++; \
		if (j - i >= 8) \
		{ \
			int			fill = (8 - ((i - lit) & 7)) & 7; \
			\
			if (j - i - fill >= 8) \
			{ \
				int			k; \
				\
				i += fill; \
				bitpack_run(out, v, lit, i, bw); \
				put_uvarint(out, (uint32) (j - i) << 1); \
				for (k = 0; k < vbytes; k++) \
					appendStringInfoCharMacro(out, (char) ((x >> (8 * k)) & 0xFF)); \
				lit = i = j; \
				continue; \
			} \
		} \
		i = j; \
	} \
	bitpack_run(out, v, lit, n, bw); \
}

#define DEFINE_BITPACK(fname, T) \
static void \
fname(StringInfo out, const T *v, int from, int to, int bw) \
{ \
	int			count = to - from; \
	int			groups = (count + 7) / 8; \
	int			total = groups * 8; \
	uint64		acc = 0; \
	int			nbits = 0; \
	char	   *dst; \
	int			i; \
	\
	if (count <= 0) \
		return; \
	put_uvarint(out, ((uint32) groups << 1) | 1); \
	enlargeStringInfo(out, groups * bw); \
	dst = out->data + out->len; \
	for (i = 0; i < total; i++) \
	{ \
		uint64		x = (i < count) ? (uint64) v[from + i] : 0; \
		\
		acc |= x << nbits; \
		nbits += bw; \
		while (nbits >= 8) \
		{ \
			*dst++ = (char) (acc & 0xFF); \
			acc >>= 8; \
			nbits -= 8; \
		} \
	} \
	out->len += groups * bw; \
	out->data[out->len] = '\0'; \
}

#define bitpack_run bitpack_u8
DEFINE_BITPACK(bitpack_u8, uint8)
DEFINE_RLE_ENCODER(rle_encode_u8, uint8)
#undef bitpack_run
#define bitpack_run bitpack_u32
DEFINE_BITPACK(bitpack_u32, uint32)
DEFINE_RLE_ENCODER(rle_encode_u32, uint32)
#undef bitpack_run

static int
bit_width(uint32 maxval)
{
	int			bw = 0;

	while (maxval > 0)
	{
		bw++;
		maxval >>= 1;
	}
	/* Arrow writes 1 for a one-entry dictionary; every reader takes it */
	return Max(bw, 1);
}

/* ---------------------------------------------------------------- pages */

/*
 * Compress a page into a piece (header + stored body, in row group memory)
 * that the caller links into the chunk or writes out.  The page body is
 * w->body followed by tail/tail_len (PLAIN values, kept where they were
 * buffered so that an uncompressed page copies them once).
 */
void
parquet_encoding_emit_page(ParquetWriter *w, PqColumn *c, bool dictionary_page,
						   int num_values, int encoding, const char *tail,
						   int tail_len, int64 *uncompressed, PqPiece **piece_out)
{
	ThriftWriter tw;
	const char *stored;
	int			stored_len;
	int			body_len = w->body.len + tail_len;
	PqPiece    *piece;
	char	   *dst;

	if (w->codec == STREAM_CODEC_NONE)
	{
		stored = w->body.data;
		stored_len = w->body.len;
	}
	else
	{
		if (tail_len > 0)
			appendBinaryStringInfo(&w->body, tail, tail_len);
		tail_len = 0;
		resetStringInfo(&w->packed);
		codec_compress(w->codec, w->body.data, w->body.len, &w->packed);
		stored = w->packed.data;
		stored_len = w->packed.len;
	}

	resetStringInfo(&w->header);
	thrift_begin(&tw, &w->header);
	thrift_field_i32(&tw, 1, dictionary_page ? PAGE_DICTIONARY : PAGE_DATA);
	thrift_field_i32(&tw, 2, body_len);
	thrift_field_i32(&tw, 3, stored_len + tail_len);
	if (dictionary_page)
	{
		thrift_struct_begin(&tw, 7);
		thrift_field_i32(&tw, 1, num_values);
		thrift_field_i32(&tw, 2, ENC_PLAIN);
		thrift_struct_end(&tw);
	}
	else
	{
		thrift_struct_begin(&tw, 5);
		thrift_field_i32(&tw, 1, num_values);
		thrift_field_i32(&tw, 2, encoding);
		thrift_field_i32(&tw, 3, ENC_RLE);
		thrift_field_i32(&tw, 4, ENC_RLE);
		thrift_struct_end(&tw);
	}
	thrift_end(&tw);

	piece = MemoryContextAlloc(w->rg_cxt, offsetof(PqPiece, data) +
							   w->header.len + stored_len + tail_len);
	piece->next = NULL;
	piece->len = w->header.len + stored_len + tail_len;
	dst = piece->data;
	memcpy(dst, w->header.data, w->header.len);
	dst += w->header.len;
	memcpy(dst, stored, stored_len);
	dst += stored_len;
	if (tail_len > 0)
		memcpy(dst, tail, tail_len);
	*uncompressed += w->header.len + body_len;
	*piece_out = piece;
}

void
parquet_encoding_flush_page(ParquetWriter *w, PqColumn *c)
{
	PqPiece    *piece;
	/* an all-NULL page needs no dictionary (pyarrow chokes on empty ones) */
	bool		dict_page = c->dict_mode && c->nidx > 0;

	if (c->page_rows == 0)
		return;

	resetStringInfo(&w->body);
	if (!c->required)
	{
		int			start;

		appendBinaryStringInfo(&w->body, "\0\0\0\0", 4);
		start = w->body.len;
		if (c->page_nulls == 0 || c->page_nulls == c->page_rows)
		{
			/* the common cases as one RLE run */
			put_uvarint(&w->body, (uint32) c->page_rows << 1);
			appendStringInfoCharMacro(&w->body, c->page_nulls == 0 ? 1 : 0);
		}
		else
			rle_encode_u8(&w->body, c->defs, c->page_rows, 1);
		put_le32(w->body.data + start - 4, (uint32) (w->body.len - start));
	}
	if (dict_page)
	{
		int			bw = bit_width(c->ndict > 0 ? c->ndict - 1 : 0);

		appendStringInfoCharMacro(&w->body, (char) bw);
		rle_encode_u32(&w->body, c->idx, c->nidx, bw);
	}

	parquet_encoding_emit_page(w, c, false, c->page_rows,
							   dict_page ? ENC_RLE_DICTIONARY : ENC_PLAIN,
							   dict_page ? NULL : c->values.data, dict_page ? 0 : c->values.len,
							   &c->chunk_uncompressed, &piece);
	if (c->last_piece)
		c->last_piece->next = piece;
	else
		c->first_piece = piece;
	c->last_piece = piece;
	c->chunk_stored += piece->len;
	c->chunk_values += c->page_rows;
	if (dict_page)
		c->npages_dict++;
	else
		c->npages_plain++;

	c->page_rows = 0;
	c->page_nulls = 0;
	c->nidx = 0;
	c->nbits = 0;
	c->page_bytes = 0;
	resetStringInfo(&c->values);
}

/* ---------------------------------------------------------------- dictionary */

static inline uint32
hash_fixed(const void *p, int size)
{
	uint64		x;

	if (size == 4)
	{
		uint32		v;

		memcpy(&v, p, 4);
		x = v;
	}
	else if (size == 8)
		memcpy(&x, p, 8);
	else
		return hash_bytes((const unsigned char *) p, size);
	/* murmur3 finalizer: cheap and mixes all bits */
	x ^= x >> 33;
	x *= UINT64CONST(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64CONST(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return (uint32) x;
}

/* Dictionary hash of a byte array: 8 bytes per multiply, inlined. */
static inline uint32
hash_byte_array(const char *p, int len)
{
	uint64		h = (uint64) len * UINT64CONST(0x9E3779B97F4A7C15);
	uint64		x;

	while (len >= 8)
	{
		memcpy(&x, p, 8);
		h = (h ^ x) * UINT64CONST(0xbf58476d1ce4e5b9);
		h ^= h >> 31;
		p += 8;
		len -= 8;
	}
	if (len > 0)
	{
		x = 0;
		if (len >= 4)
		{
			uint32		a,
						b;

			memcpy(&a, p, 4);
			memcpy(&b, p + len - 4, 4);
			x = ((uint64) a << 32) | b;
		}
		else
			x = ((uint64) (unsigned char) p[0] << 16) |
				((uint64) (unsigned char) p[len >> 1] << 8) |
				(unsigned char) p[len - 1];
		h = (h ^ x) * UINT64CONST(0x94d049bb133111eb);
	}
	h ^= h >> 32;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 29;
	return (uint32) h;
}

static inline bool
memcmp8(const char *a, const char *b)
{
	uint64		x,
				y;

	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	return x == y;
}

static void
dict_grow_slots(ParquetWriter *w, PqColumn *c)
{
	uint32		nslots = c->nslots * 2;
	uint32		mask = nslots - 1;
	uint32	   *slots = MemoryContextAllocZero(w->rg_cxt, sizeof(uint32) * nslots);
	uint32		e;

	for (e = 0; e < c->ndict; e++)
	{
		uint32		s = c->dict_hash[e] & mask;

		while (slots[s] != 0)
			s = (s + 1) & mask;
		slots[s] = e + 1;
	}
	pfree(c->slots);
	c->slots = slots;
	c->nslots = nslots;
}

/*
 * Index of the value in the chunk's dictionary, adding it if new.  For
 * BYTE_ARRAY, p/len are the bytes and the entry is stored with its length
 * prefix; fixed types store value_size bytes.
 */
static uint32
dict_lookup(ParquetWriter *w, PqColumn *c, const char *p, int len)
{
	bool		ba = (c->physical == PQ_BYTE_ARRAY);
	uint32		h = ba ? hash_byte_array(p, len) : hash_fixed(p, len);
	uint32		mask = c->nslots - 1;
	uint32		s = h & mask;
	uint32		e;

	while ((e = c->slots[s]) != 0)
	{
		e--;
		if (c->dict_hash[e] == h)
		{
			const char *d = c->dict.data + c->dict_off[e];

			if (ba)
			{
				uint32		dl;

				memcpy(&dl, d, 4);
				if (dl == (uint32) len && memcmp(d + 4, p, len) == 0)
					return e;
			}
			else if (len == 8 ? memcmp8(d, p) : memcmp(d, p, len) == 0)
				return e;
		}
		s = (s + 1) & mask;
	}

	e = c->ndict;
	if (e == c->dict_cap)
	{
		c->dict_cap *= 2;
		c->dict_off = repalloc(c->dict_off, sizeof(uint32) * c->dict_cap);
		c->dict_hash = repalloc(c->dict_hash, sizeof(uint32) * c->dict_cap);
	}
	c->dict_off[e] = c->dict.len;
	c->dict_hash[e] = h;
	if (ba)
	{
		uint32		l = len;

		appendBinaryStringInfo(&c->dict, (const char *) &l, 4);
	}
	appendBinaryStringInfo(&c->dict, p, len);
	c->slots[s] = e + 1;
	c->ndict++;
	if (c->ndict * 2 > c->nslots)
		dict_grow_slots(w, c);
	return e;
}

/* Dictionary entry remembered for these stored bytes, or -1. */
static inline int32
memo_find(PqMemo *m, const char *p, int len, uint32 h)
{
	uint32		mask = m->nslots - 1;
	uint32		s = h & mask;
	uint32		e;

	while ((e = m->slots[s]) != 0)
	{
		e--;
		if (m->hash[e] == h)
		{
			const char *d = m->bytes.data + m->off[e];
			uint32		dl;

			memcpy(&dl, d, 4);
			if (dl == (uint32) len && memcmp(d + 4, p, len) == 0)
				return (int32) m->dict_entry[e];
		}
		s = (s + 1) & mask;
	}
	return -1;
}

static void
memo_add(ParquetWriter *w, PqMemo *m, const char *p, int len, uint32 h,
		 uint32 dict_entry)
{
	MemoryContext old;
	uint32		mask;
	uint32		s;
	uint32		e;
	uint32		l = len;

	if ((Size) m->bytes.len + len > w->dict_bytes || memo_find(m, p, len, h) >= 0)
		return;
	old = MemoryContextSwitchTo(w->rg_cxt);
	if (m->n == m->cap)
	{
		m->cap *= 2;
		m->off = repalloc(m->off, sizeof(uint32) * m->cap);
		m->hash = repalloc(m->hash, sizeof(uint32) * m->cap);
		m->dict_entry = repalloc(m->dict_entry, sizeof(uint32) * m->cap);
	}
	if ((m->n + 1) * 2 > m->nslots)
	{
		uint32		nslots = m->nslots * 2;
		uint32	   *slots = palloc0(sizeof(uint32) * nslots);

		for (e = 0; e < m->n; e++)
		{
			s = m->hash[e] & (nslots - 1);
			while (slots[s] != 0)
				s = (s + 1) & (nslots - 1);
			slots[s] = e + 1;
		}
		pfree(m->slots);
		m->slots = slots;
		m->nslots = nslots;
	}
	e = m->n++;
	m->off[e] = m->bytes.len;
	m->hash[e] = h;
	m->dict_entry[e] = dict_entry;
	appendBinaryStringInfo(&m->bytes, (const char *) &l, 4);
	appendBinaryStringInfo(&m->bytes, p, len);
	mask = m->nslots - 1;
	s = h & mask;
	while (m->slots[s] != 0)
		s = (s + 1) & mask;
	m->slots[s] = e + 1;
	MemoryContextSwitchTo(old);
}

/*
 * For the jsonb memo lookup of parquet_values.c; the dictionary's own calls
 * above stay inline.
 */
uint32
parquet_encoding_hash_bytes(const char *p, int len)
{
	return hash_byte_array(p, len);
}

int32
parquet_encoding_memo_find(PqMemo *m, const char *p, int len, uint32 h)
{
	return memo_find(m, p, len, h);
}

/* ---------------------------------------------------------------- values */

static inline void
page_add_def(ParquetWriter *w, PqColumn *c, uint8 def)
{
	if (c->page_rows == c->defs_cap)
	{
		c->defs_cap *= 2;
		c->defs = repalloc(c->defs, c->defs_cap);
	}
	c->defs[c->page_rows] = def;
	c->page_bytes += 1;
	w->rg_bytes += 1;
}

/*
 * Buffers one non-NULL value (fixed: len = value_size) PLAIN or as an index.
 * Returns false for a value already in the dictionary, whose statistics the
 * caller then need not look at again.
 */
static inline bool
page_add_value(ParquetWriter *w, PqColumn *c, const char *p, int len)
{
	Size		plain = (c->physical == PQ_BYTE_ARRAY) ? (Size) len + 4 : (Size) len;
	bool		is_new = true;

	if (c->dict_mode)
	{
		uint32		ndict = c->ndict;
		uint32		e = dict_lookup(w, c, p, len);

		is_new = (c->ndict != ndict);
		c->dict_values++;

		if (c->nidx == c->idx_cap)
		{
			c->idx_cap *= 2;
			c->idx = repalloc(c->idx, sizeof(uint32) * c->idx_cap);
		}
		c->idx[c->nidx++] = e;
	}
	else
	{
		StringInfo	s = &c->values;

		if ((Size) s->len + plain + 1 > (Size) s->maxlen)
			enlargeStringInfo(s, (int) plain);
		if (c->physical == PQ_BYTE_ARRAY)
		{
			uint32		l = len;

			memcpy(s->data + s->len, &l, 4);
			s->len += 4;
		}
		memcpy(s->data + s->len, p, len);
		s->len += len;
		s->data[s->len] = '\0';
	}
	c->page_bytes += plain;
	w->rg_bytes += plain;
	return is_new;
}

/* A value known to be dictionary entry e: what page_add_value would do. */
static inline void
page_add_index(ParquetWriter *w, PqColumn *c, uint32 e)
{
	uint32		dl;
	Size		plain;

	memcpy(&dl, c->dict.data + c->dict_off[e], 4);
	plain = (Size) dl + 4;
	c->dict_values++;
	if (c->nidx == c->idx_cap)
	{
		c->idx_cap *= 2;
		c->idx = repalloc(c->idx, sizeof(uint32) * c->idx_cap);
	}
	c->idx[c->nidx++] = e;
	c->page_bytes += plain;
	w->rg_bytes += plain;
}

static inline void
page_add_bool(ParquetWriter *w, PqColumn *c, bool b)
{
	if ((c->nbits & 7) == 0)
	{
		appendStringInfoCharMacro(&c->values, 0);
		c->page_bytes += 1;
		w->rg_bytes += 1;
	}
	if (b)
		c->values.data[c->values.len - 1] |= (char) (1 << (c->nbits & 7));
	c->nbits++;
}

void
parquet_encoding_decimal_be16(int128 v, char *out)
{
	int			i;
	uint128		u = (uint128) v;

	for (i = 15; i >= 0; i--)
	{
		out[i] = (char) (u & 0xFF);
		u >>= 8;
	}
}

/* Phase 2 of add_row: buffers a converted value and updates the statistics. */

/* Widen a column chunk's min/max statistics by one (non-NaN) value. */
#define TRACK_MINMAX(c, member, x) \
	do { \
		if (!(c)->has_minmax) \
		{ \
			(c)->min.member = (c)->max.member = (x); \
			(c)->has_minmax = true; \
		} \
		else if ((x) < (c)->min.member) \
			(c)->min.member = (x); \
		else if ((x) > (c)->max.member) \
			(c)->max.member = (x); \
	} while (0)

/*
 * Buffer one fixed-width value (PLAIN: its little-endian memory image, the
 * size of type T), widening the statistics when track holds; track may test
 * the value as x (NaN stays out of the bounds).
 */
#define APPEND_FIXED(w, c, T, member, value, track) \
	do { \
		T			x = (value); \
		\
		if (track) \
			TRACK_MINMAX(c, member, x); \
		page_add_value(w, c, (const char *) &x, sizeof(T)); \
	} while (0)

static void
append_value(ParquetWriter *w, PqColumn *c, PqValue *v)
{
	switch (c->physical)
	{
		case PQ_BOOLEAN:
			if (!c->has_minmax)
			{
				c->min.i32 = c->max.i32 = v->v.i32;
				c->has_minmax = true;
			}
			c->min.i32 = Min(c->min.i32, v->v.i32);
			c->max.i32 = Max(c->max.i32, v->v.i32);
			page_add_bool(w, c, v->v.i32 != 0);
			return;

		case PQ_INT32:
			APPEND_FIXED(w, c, int32, i32,
						 (c->kind == PK_DECIMAL) ? (int32) v->v.dec : v->v.i32, true);
			return;

		case PQ_INT64:
			APPEND_FIXED(w, c, int64, i64,
						 (c->kind == PK_DECIMAL) ? (int64) v->v.dec : v->v.i64, true);
			return;

		case PQ_FLOAT:
			APPEND_FIXED(w, c, float4, f4, v->v.f4, !isnan(x));
			return;

		case PQ_DOUBLE:
			APPEND_FIXED(w, c, float8, f8, v->v.f8, !isnan(x));
			return;

		case PQ_FLBA:
			if (c->kind == PK_UUID)
			{
				if (page_add_value(w, c, (const char *) v->v.uuid, UUID_LEN))
					parquet_stats_add_bytes(c, (const char *) v->v.uuid, UUID_LEN);
			}
			else
			{
				char		be[16];

				TRACK_MINMAX(c, dec, v->v.dec);
				parquet_encoding_decimal_be16(v->v.dec, be);
				page_add_value(w, c, be, 16);
			}
			return;

		case PQ_BYTE_ARRAY:
			if (c->kind == PK_JSONB && c->dict_mode)
			{
				if (v->entry >= 0)
				{
					/* seen before in this chunk: its text is in the dictionary */
					page_add_index(w, c, (uint32) v->entry);
					return;
				}
				if (page_add_value(w, c, v->ptr, v->len))
					parquet_stats_add_bytes(c, v->ptr, v->len);
				if (v->raw_ptr != NULL)
					memo_add(w, c->memo, v->raw_ptr, v->raw_len, v->raw_hash,
							 c->idx[c->nidx - 1]);
				return;
			}
			/* a repeated dictionary value cannot move the bounds */
			if (page_add_value(w, c, v->ptr, v->len))
				parquet_stats_add_bytes(c, v->ptr, v->len);
			return;
	}
}

/* The dictionary got too big: finish its page, PLAIN from now on. */
static void
dict_fallback(ParquetWriter *w, PqColumn *c)
{
	parquet_encoding_flush_page(w, c);
	c->dict_mode = false;
	/* high-cardinality data stays so: later chunks of this file skip it */
	c->use_dictionary = false;
}

/* Phase 2 of add_row (see parquet_int.h). */
void
parquet_encoding_append_row(ParquetWriter *w)
{
	int			i;

	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];
		PqValue    *v = &w->row[i];

		if (!c->required)
			page_add_def(w, c, v->isnull ? 0 : 1);
		if (v->isnull)
		{
			c->page_nulls++;
			c->chunk_nulls++;
		}
		else
			append_value(w, c, v);
		c->page_rows++;

		if (c->dict_mode &&
			((Size) c->dict.len > w->dict_bytes ||
			 (c->dict_values == DICT_PROBE_VALUES &&
			  c->ndict > DICT_PROBE_VALUES * 9 / 10)))
			dict_fallback(w, c);
		else if (c->page_bytes >= w->page_bytes)
			parquet_encoding_flush_page(w, c);
	}
}
