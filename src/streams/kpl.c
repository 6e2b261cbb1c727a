/*
 * kpl.c: the KPL aggregated record format (kpl.h).
 *
 * The protobuf reader follows protobuf-java, which the KCL parses with:
 * varints of at most 10 bytes (bits past 64 dropped), tags and lengths
 * read as varints cut to 32 bits, field number 0 and wire types 6 and 7
 * invalid, a negative or overlong length invalid, an end-group tag where
 * none is open invalid.  A field of a known number but another wire type
 * is an unknown field, skipped as every unknown field is (groups with
 * their nesting).  Scalars seen twice: the last wins; repeated fields keep
 * their order.  proto2 required fields (Record.partition_key_index,
 * Record.data, Tag.key) must be present, or parseFrom fails.
 *
 * After parsing, the KCL reads a record's table index as (int) of the
 * uint64: only its low 32 bits count, and they must name an entry.  The
 * KCL then derives every record's hash key, new BigInteger(explicit hash
 * key) or the MD5 of the partition key; a hash key that is no integer
 * throws there.  Both cases make the KCL emit the records before the bad
 * one and lose the rest; here they make the whole record a plain record
 * (kpl_inspect/kpl_prepare fail), so nothing is lost.  The KCL's check of
 * each hash key against the shard's range, which drops the whole
 * aggregate, is not made at all: see docs/kpl.md.
 */
#include "postgres.h"

#include "streams/kpl.h"
#include "md5.h"

const uint8 kpl_magic[KPL_MAGIC_LEN] = {0xF3, 0x89, 0x9A, 0xC2};

/* protobuf wire types */
#define WT_VARINT	0
#define WT_FIXED64	1
#define WT_LEN		2
#define WT_SGROUP	3
#define WT_EGROUP	4
#define WT_FIXED32	5

typedef struct PbReader
{
	const uint8 *p;
	const uint8 *end;
} PbReader;

static bool
rd_varint(PbReader *r, uint64 *out)
{
	uint64		v = 0;

	/* shifts 0, 7, ..., 63: ten bytes at most */
	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		b;

		if (r->p >= r->end)
			return false;
		b = *r->p++;
		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
		{
			*out = v;
			return true;
		}
	}
	return false;
}

static bool
rd_tag(PbReader *r, uint32 *field, int *wt)
{
	uint64		v;
	uint32		tag;

	if (!rd_varint(r, &v))
		return false;
	tag = (uint32) v;
	*field = tag >> 3;
	*wt = tag & 7;
	return *field != 0;
}

/* A length-delimited field's bytes. */
static bool
rd_len(PbReader *r, KplSlice *out)
{
	uint64		v;
	int32		n;

	if (!rd_varint(r, &v))
		return false;
	n = (int32) (uint32) v;
	if (n < 0 || (size_t) n > (size_t) (r->end - r->p))
		return false;
	out->p = r->p;
	out->len = (size_t) n;
	r->p += n;
	return true;
}

static bool skip_field(PbReader *r, uint32 field, int wt, int depth);

/* Skip a group's fields up to its end-group tag (the start tag is read). */
static bool
skip_group(PbReader *r, uint32 field, int depth)
{
	if (depth > KPL_MAX_DEPTH)
		return false;
	for (;;)
	{
		uint32		f;
		int			wt;

		if (r->p >= r->end || !rd_tag(r, &f, &wt))
			return false;
		if (wt == WT_EGROUP)
			return f == field;
		if (!skip_field(r, f, wt, depth))
			return false;
	}
}

/* Skip one field whose tag was read; depth: of the message it is in. */
static bool
skip_field(PbReader *r, uint32 field, int wt, int depth)
{
	uint64		v;
	KplSlice	s;

	switch (wt)
	{
		case WT_VARINT:
			return rd_varint(r, &v);
		case WT_FIXED64:
			if (r->end - r->p < 8)
				return false;
			r->p += 8;
			return true;
		case WT_FIXED32:
			if (r->end - r->p < 4)
				return false;
			r->p += 4;
			return true;
		case WT_LEN:
			return rd_len(r, &s);
		case WT_SGROUP:
			return skip_group(r, field, depth + 1);
		default:				/* an end group with none open, or 6, 7 */
			return false;
	}
}

/* The fields of a Tag message: key is required. */
static bool
parse_tag(KplSlice m, int depth)
{
	PbReader	r = {m.p, m.p + m.len};
	bool		has_key = false;

	if (depth > KPL_MAX_DEPTH)
		return false;
	while (r.p < r.end)
	{
		uint32		f;
		int			wt;
		KplSlice	s;

		if (!rd_tag(&r, &f, &wt))
			return false;
		if (f == 1 && wt == WT_LEN)
		{
			if (!rd_len(&r, &s))
				return false;
			has_key = true;
		}
		else if (!skip_field(&r, f, wt, depth))
			return false;
	}
	return has_key;
}

typedef struct RecordFields
{
	uint64		pk_index;
	uint64		ehk_index;
	bool		has_ehk;
	KplSlice	data;
} RecordFields;

/* The fields of a Record message: partition_key_index and data are required. */
static bool
parse_record(KplSlice m, int depth, RecordFields *out)
{
	PbReader	r = {m.p, m.p + m.len};
	bool		has_pk = false;
	bool		has_data = false;

	if (depth > KPL_MAX_DEPTH)
		return false;
	out->has_ehk = false;
	while (r.p < r.end)
	{
		uint32		f;
		int			wt;
		KplSlice	s;

		if (!rd_tag(&r, &f, &wt))
			return false;
		if (f == 1 && wt == WT_VARINT)
		{
			if (!rd_varint(&r, &out->pk_index))
				return false;
			has_pk = true;
		}
		else if (f == 2 && wt == WT_VARINT)
		{
			if (!rd_varint(&r, &out->ehk_index))
				return false;
			out->has_ehk = true;
		}
		else if (f == 3 && wt == WT_LEN)
		{
			if (!rd_len(&r, &out->data))
				return false;
			has_data = true;
		}
		else if (f == 4 && wt == WT_LEN)
		{
			if (!rd_len(&r, &s) || !parse_tag(s, depth + 1))
				return false;
		}
		else if (!skip_field(&r, f, wt, depth))
			return false;
	}
	return has_pk && has_data;
}

/*
 * The KCL's (int) of a uint64 index: the low 32 bits, signed; false when
 * negative, which names no entry whatever the table holds.
 */
static bool
java_int_index(uint64 v, uint32 *out)
{
	int32		i = (int32) (uint32) v;

	*out = (uint32) i;
	return i >= 0;
}

/*
 * The next field of AggregatedRecord that is one of its own (1, 2, 3, as
 * length-delimited) into *s, skipping any other; 0 at the end, -1 when the
 * message is malformed.
 */
static int
next_top_field(PbReader *r, KplSlice *s)
{
	while (r->p < r->end)
	{
		uint32		f;
		int			wt;

		if (!rd_tag(r, &f, &wt))
			return -1;
		if ((f == 1 || f == 2 || f == 3) && wt == WT_LEN)
			return rd_len(r, s) ? (int) f : -1;
		if (!skip_field(r, f, wt, 0))
			return -1;
	}
	return 0;
}

KplStatus
kpl_inspect(const uint8 *data, size_t len, KplAggregate *agg)
{
	uint8		digest[KPL_DIGEST_LEN];
	PbReader	r;
	uint32		max_pk = 0;
	uint32		max_ehk = 0;
	bool		any_ehk = false;
	bool		negative = false;

	memset(agg, 0, sizeof(*agg));
	/* the KCL: magic, then more than a digest's worth of bytes */
	if (len < KPL_MAGIC_LEN || memcmp(data, kpl_magic, KPL_MAGIC_LEN) != 0 ||
		len - KPL_MAGIC_LEN <= KPL_DIGEST_LEN)
		return KPL_NOT_AGGREGATE;
	agg->msg.p = data + KPL_MAGIC_LEN;
	agg->msg.len = len - KPL_MAGIC_LEN - KPL_DIGEST_LEN;
	stream_md5(agg->msg.p, agg->msg.len, digest);
	if (memcmp(digest, agg->msg.p + agg->msg.len, KPL_DIGEST_LEN) != 0)
		return KPL_BAD_DIGEST;

	r.p = agg->msg.p;
	r.end = agg->msg.p + agg->msg.len;
	for (;;)
	{
		KplSlice	s;
		int			f = next_top_field(&r, &s);
		RecordFields rf;
		uint32		i;

		if (f == 0)
			break;
		if (f < 0 || (f == 1 && agg->n_pk == PG_UINT32_MAX) || (f == 2 && agg->n_ehk == PG_UINT32_MAX))
			return KPL_BAD_PROTOBUF;
		if (f == 1)
			agg->n_pk++;
		else if (f == 2)
			agg->n_ehk++;
		else
		{
			if (!parse_record(s, 1, &rf))
				return KPL_BAD_PROTOBUF;
			if (!java_int_index(rf.pk_index, &i))
				negative = true;
			max_pk = Max(max_pk, i);
			if (rf.has_ehk)
			{
				if (!java_int_index(rf.ehk_index, &i))
					negative = true;
				max_ehk = Max(max_ehk, i);
				any_ehk = true;
			}
			agg->n_records++;
		}
	}
	/* the tables are complete only now: entries and records may interleave */
	if (negative || (agg->n_records > 0 && max_pk >= agg->n_pk))
		return KPL_BAD_INDEX;
	if (any_ehk && max_ehk >= agg->n_ehk)
		return KPL_BAD_INDEX;
	return KPL_OK;
}

bool
kpl_is_java_integer(const uint8 *s, size_t len)
{
	size_t		i = 0;

	if (len > 0 && (s[0] == '+' || s[0] == '-'))
		i = 1;
	if (i == len)
		return false;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

KplStatus
kpl_prepare(const KplAggregate *agg, KplSlice *pks, KplSlice *ehks)
{
	PbReader	r = {agg->msg.p, agg->msg.p + agg->msg.len};
	uint32		npk = 0;
	uint32		nehk = 0;
	KplIter		it;
	KplUserRecord rec;

	for (;;)
	{
		KplSlice	s;
		int			f = next_top_field(&r, &s);

		if (f == 0)
			break;
		if (f < 0)
			return KPL_BAD_PROTOBUF;
		if (f == 1 && npk < agg->n_pk)
			pks[npk++] = s;
		else if (f == 2 && nehk < agg->n_ehk)
			ehks[nehk++] = s;
	}
	if (npk != agg->n_pk || nehk != agg->n_ehk)
		return KPL_BAD_PROTOBUF;	/* not the message kpl_inspect saw */

	/* every hash key a record names must be an integer (the KCL parses each) */
	kpl_iter_init(&it, agg, pks, ehks);
	while (kpl_next(&it, &rec))
		if (rec.explicit_hash_key.p != NULL &&
			!kpl_is_java_integer(rec.explicit_hash_key.p, rec.explicit_hash_key.len))
			return KPL_BAD_HASH_KEY;
	return KPL_OK;
}

void
kpl_iter_init(KplIter *it, const KplAggregate *agg, const KplSlice *pks, const KplSlice *ehks)
{
	it->p = agg->msg.p;
	it->end = agg->msg.p + agg->msg.len;
	it->pks = pks;
	it->ehks = ehks;
	it->n_pk = agg->n_pk;
	it->n_ehk = agg->n_ehk;
}

/*
 * The next user record.  The message passed kpl_inspect and kpl_prepare,
 * so nothing here fails on it; should it anyway (a message other than the
 * one inspected), the iteration ends.
 */
bool
kpl_next(KplIter *it, KplUserRecord *rec)
{
	PbReader	r = {it->p, it->end};
	KplSlice	s;
	int			f;

	while ((f = next_top_field(&r, &s)) > 0)
	{
		RecordFields rf;
		uint32		pk,
					ehk = 0;

		if (f != 3)
			continue;
		if (!parse_record(s, 1, &rf) ||
			!java_int_index(rf.pk_index, &pk) || pk >= it->n_pk ||
			(rf.has_ehk && (!java_int_index(rf.ehk_index, &ehk) || ehk >= it->n_ehk)))
			break;
		it->p = r.p;
		rec->pk_index = pk;
		rec->partition_key = it->pks[pk];
		rec->explicit_hash_key.p = NULL;
		rec->explicit_hash_key.len = 0;
		if (rf.has_ehk)
			rec->explicit_hash_key = it->ehks[ehk];
		rec->data = rf.data;
		return true;
	}
	it->p = it->end;
	return false;
}

/*
 * Length of the well-formed UTF-8 sequence at in[0..len) (Unicode 3.9,
 * Table 3-7), or, negated, of its maximal subpart: the longest prefix that
 * begins some well-formed sequence (at least 1).
 */
static int
utf8_sequence(const uint8 *in, size_t len)
{
	uint8		b = in[0];
	int			need;
	uint8		lo = 0x80,
				hi = 0xBF;

	if (b < 0x80)
		return 1;
	if (b >= 0xC2 && b <= 0xDF)
		need = 2;
	else if (b >= 0xE0 && b <= 0xEF)
	{
		need = 3;
		if (b == 0xE0)
			lo = 0xA0;
		else if (b == 0xED)
			hi = 0x9F;
	}
	else if (b >= 0xF0 && b <= 0xF4)
	{
		need = 4;
		if (b == 0xF0)
			lo = 0x90;
		else if (b == 0xF4)
			hi = 0x8F;
	}
	else
		return -1;
	for (int i = 1; i < need; i++)
	{
		if ((size_t) i >= len || in[i] < lo || in[i] > hi)
			return -i;
		lo = 0x80;
		hi = 0xBF;
	}
	return need;
}

size_t
kpl_utf8_repair(const uint8 *in, size_t len, uint8 *out)
{
	size_t		i = 0;
	size_t		o = 0;

	while (i < len)
	{
		int			n = in[i] == 0 ? -1 : utf8_sequence(in + i, len - i);

		if (n > 0)
		{
			memcpy(out + o, in + i, n);
			o += n;
			i += n;
		}
		else
		{
			/* U+FFFD */
			out[o++] = 0xEF;
			out[o++] = 0xBF;
			out[o++] = 0xBD;
			i += -n;
		}
	}
	return o;
}

/* ---- encoding ---- */

static uint64
varint_size(uint64 v)
{
	uint64		n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

static uint8 *
put_varint(uint8 *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (uint8) (v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8) v;
	return p;
}

/* a length-delimited field: tag, length, bytes */
static uint64
len_field_size(uint64 len)
{
	return 1 + varint_size(len) + len;
}

static uint64
record_size(const KplEncodeRecord *r)
{
	uint64		n = 1 + varint_size(r->pk_index) + len_field_size(r->data.len);

	if (r->ehk_index >= 0)
		n += 1 + varint_size((uint64) r->ehk_index);
	return n;
}

uint64
kpl_encoded_size(const KplSlice *pks, uint32 n_pk, const KplSlice *ehks, uint32 n_ehk,
				 const KplEncodeRecord *recs, size_t n)
{
	uint64		size = KPL_MAGIC_LEN + KPL_DIGEST_LEN;

	for (uint32 i = 0; i < n_pk; i++)
		size += len_field_size(pks[i].len);
	for (uint32 i = 0; i < n_ehk; i++)
		size += len_field_size(ehks[i].len);
	for (size_t i = 0; i < n; i++)
		size += len_field_size(record_size(&recs[i]));
	return size;
}

static uint8 *
put_len_field(uint8 *p, uint8 tag, const uint8 *bytes, size_t len)
{
	*p++ = tag;
	p = put_varint(p, len);
	if (len > 0)
		memcpy(p, bytes, len);
	return p + len;
}

/* Fields in number order, as protobuf serialises: the tables, then the records. */
size_t
kpl_encode(const KplSlice *pks, uint32 n_pk, const KplSlice *ehks, uint32 n_ehk,
		   const KplEncodeRecord *recs, size_t n, uint8 *out)
{
	uint8	   *p = out;
	uint8	   *msg;

	memcpy(p, kpl_magic, KPL_MAGIC_LEN);
	p += KPL_MAGIC_LEN;
	msg = p;
	for (uint32 i = 0; i < n_pk; i++)
		p = put_len_field(p, (1 << 3) | WT_LEN, pks[i].p, pks[i].len);
	for (uint32 i = 0; i < n_ehk; i++)
		p = put_len_field(p, (2 << 3) | WT_LEN, ehks[i].p, ehks[i].len);
	for (size_t i = 0; i < n; i++)
	{
		const KplEncodeRecord *r = &recs[i];

		*p++ = (3 << 3) | WT_LEN;
		p = put_varint(p, record_size(r));
		*p++ = (1 << 3) | WT_VARINT;
		p = put_varint(p, r->pk_index);
		if (r->ehk_index >= 0)
		{
			*p++ = (2 << 3) | WT_VARINT;
			p = put_varint(p, (uint64) r->ehk_index);
		}
		p = put_len_field(p, (3 << 3) | WT_LEN, r->data.p, r->data.len);
	}
	stream_md5(msg, p - msg, p);
	p += KPL_DIGEST_LEN;
	return p - out;
}
