/*
 * test/kpl/fuzz_kpl.c: fuzz the KPL decoder (src/streams/kpl.c) outside
 * the server, under AddressSanitizer or valgrind (test/scripts/75_kpl_fuzz.sh).
 *
 *   fuzz_kpl SEED ITERATIONS
 *
 * Every input is copied into a heap block of exactly its length, so a read
 * past its end is caught by the sanitizer or valgrind.  Inputs:
 *   - round trips: random tables and records (0-byte data, 126/127/128-byte
 *     fields around the varint boundary, empty and multibyte keys, explicit
 *     hash keys, up to thousands of records) encoded by kpl_encode; the
 *     decoder must give back exactly what went in;
 *   - mutations of those encodings (bit flips, random bytes, insertions,
 *     deletions, truncations, duplicated spans, varints made long), with the
 *     digest recomputed most of the time so that the protobuf reader, not
 *     the MD5 check, sees them;
 *   - random protobuf built from random tags, wire types, lengths and
 *     nesting (deep groups, nested messages, unknown fields);
 *   - plain random bytes behind the magic.
 * Whatever the decoder says, every slice it hands out must lie inside the
 * input and every repaired string must be valid UTF-8 without NUL.  Fails
 * (exit 1) on the first violation, printing the seed and iteration.
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "streams/kpl.h"
#include "md5.h"

/* port.h maps these to libpgport's, which this program does not link */
#undef printf
#undef fprintf

static uint64 rng_state;

static uint64
rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64CONST(2685821657736338717);
}

static size_t
rnd_below(size_t n)
{
	return n == 0 ? 0 : (size_t) (rnd() % n);
}

static unsigned long iteration;
static unsigned long long seed;
static long counts[8];

#define FAIL(...) \
	do { \
		fprintf(stderr, "fuzz_kpl: seed %llu iteration %lu: ", seed, iteration); \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, "\n"); \
		exit(1); \
	} while (0)

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		FAIL("out of memory");
	return p;
}

/* a growable byte buffer */
typedef struct Buf
{
	uint8	   *p;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_reserve(Buf *b, size_t more)
{
	if (b->len + more > b->cap)
	{
		b->cap = (b->len + more) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			FAIL("out of memory");
	}
}

static void
buf_byte(Buf *b, uint8 c)
{
	buf_reserve(b, 1);
	b->p[b->len++] = c;
}

static void
buf_bytes(Buf *b, const uint8 *p, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_varint(Buf *b, uint64 v)
{
	while (v >= 0x80)
	{
		buf_byte(b, (uint8) (v | 0x80));
		v >>= 7;
	}
	buf_byte(b, (uint8) v);
}

static bool
slice_inside(KplSlice s, const uint8 *base, size_t len)
{
	if (s.p == NULL)
		return s.len == 0;
	return s.p >= base && s.len <= len && (size_t) (s.p - base) <= len - s.len;
}

static bool
valid_utf8_no_nul(const uint8 *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		uint8		c = s[i];
		int			need;
		uint32		cp;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			need = 2, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			need = 3, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			need = 4, cp = c & 0x07;
		else
			return false;
		if (i + need > n)
			return false;
		for (int k = 1; k < need; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += need;
	}
	return true;
}

static void
check_repair(KplSlice s)
{
	uint8	   *out = xmalloc(3 * s.len + 1);
	size_t		n = kpl_utf8_repair(s.p, s.len, out);

	if (n > 3 * s.len)
		FAIL("kpl_utf8_repair wrote %zu bytes for %zu", n, s.len);
	if (!valid_utf8_no_nul(out, n))
		FAIL("kpl_utf8_repair gave invalid UTF-8");
	/* valid input without NUL comes back unchanged */
	if (valid_utf8_no_nul(s.p, s.len) && (n != s.len || memcmp(out, s.p, n) != 0))
		FAIL("kpl_utf8_repair changed valid UTF-8");
	free(out);
}

/*
 * Decode data (copied to an exact-size block) and check every slice.
 * Returns the status; with want_* set, also compares the records.
 */
typedef struct Expected
{
	KplSlice   *pks;
	KplSlice   *ehks;
	KplEncodeRecord *recs;
	size_t		n;
	bool		bad_index;		/* a record names an entry past its table */
} Expected;

static KplStatus
decode_and_check(const uint8 *src, size_t len, const Expected *want)
{
	uint8	   *data = xmalloc(len);
	KplAggregate agg;
	KplStatus	st;
	KplSlice   *pks;
	KplSlice   *ehks;
	KplIter		it;
	KplUserRecord rec;
	uint64		n = 0;

	if (len > 0)
		memcpy(data, src, len);
	st = kpl_inspect(data, len, &agg);
	if (st == KPL_OK)
	{
		if (!slice_inside(agg.msg, data, len))
			FAIL("message slice outside the input");
		/* tables hold at least 2 bytes an entry: bounded by the input */
		if (agg.n_pk > len || agg.n_ehk > len || agg.n_records > len)
			FAIL("table sizes %u/%u/%llu beyond input length %zu", agg.n_pk, agg.n_ehk,
				 (unsigned long long) agg.n_records, len);
		pks = xmalloc(sizeof(KplSlice) * (agg.n_pk + 1));
		ehks = xmalloc(sizeof(KplSlice) * (agg.n_ehk + 1));
		st = kpl_prepare(&agg, pks, ehks);
		if (st == KPL_OK)
		{
			for (uint32 i = 0; i < agg.n_pk; i++)
				if (!slice_inside(pks[i], data, len))
					FAIL("partition key table entry %u outside the input", i);
			for (uint32 i = 0; i < agg.n_ehk; i++)
				if (!slice_inside(ehks[i], data, len))
					FAIL("hash key table entry %u outside the input", i);
			kpl_iter_init(&it, &agg, pks, ehks);
			while (kpl_next(&it, &rec))
			{
				if (!slice_inside(rec.partition_key, data, len) ||
					!slice_inside(rec.explicit_hash_key, data, len) ||
					!slice_inside(rec.data, data, len))
					FAIL("record %llu: slice outside the input", (unsigned long long) n);
				if (rec.data.p == NULL)
					FAIL("record %llu: no data", (unsigned long long) n);
				check_repair(rec.partition_key);
				if (rec.explicit_hash_key.p != NULL &&
					!kpl_is_java_integer(rec.explicit_hash_key.p, rec.explicit_hash_key.len))
					FAIL("record %llu: hash key passed prepare but is no integer", (unsigned long long) n);
				if (want != NULL)
				{
					const KplEncodeRecord *w;
					KplSlice	wpk;

					if (n >= want->n)
						FAIL("more records than encoded");
					w = &want->recs[n];
					wpk = want->pks[w->pk_index];
					if (rec.partition_key.len != wpk.len ||
						memcmp(rec.partition_key.p, wpk.p, wpk.len) != 0)
						FAIL("record %llu: partition key differs", (unsigned long long) n);
					if ((w->ehk_index < 0) != (rec.explicit_hash_key.p == NULL))
						FAIL("record %llu: explicit hash key presence differs", (unsigned long long) n);
					if (w->ehk_index >= 0)
					{
						KplSlice	we = want->ehks[w->ehk_index];

						if (we.len != rec.explicit_hash_key.len ||
							memcmp(we.p, rec.explicit_hash_key.p, we.len) != 0)
							FAIL("record %llu: explicit hash key differs", (unsigned long long) n);
					}
					if (rec.data.len != w->data.len ||
						(w->data.len > 0 && memcmp(rec.data.p, w->data.p, w->data.len) != 0))
						FAIL("record %llu: data differs", (unsigned long long) n);
				}
				n++;
			}
			if (n != agg.n_records)
				FAIL("iterated %llu records, inspect counted %llu", (unsigned long long) n,
					 (unsigned long long) agg.n_records);
			if (want != NULL && n != want->n)
				FAIL("decoded %llu records, encoded %zu", (unsigned long long) n, want->n);
		}
		free(pks);
		free(ehks);
	}
	free(data);
	counts[st]++;
	return st;
}

/* a random field value: lengths around the varint boundaries, multibyte, digits */
static KplSlice
random_bytes(Buf *arena, int kind)
{
	static const size_t sizes[] = {0, 1, 2, 126, 127, 128, 129, 255, 256, 16383, 16384};
	size_t		n = (rnd_below(4) == 0) ? sizes[rnd_below(lengthof(sizes))] : rnd_below(40);
	size_t		start = arena->len;

	for (size_t i = 0; i < n; i++)
	{
		if (kind == 1)			/* a decimal hash key */
			buf_byte(arena, (uint8) ('0' + rnd_below(10)));
		else if (kind == 2 && rnd_below(3) == 0)	/* multibyte UTF-8: é, 中, 😀 */
		{
			static const char *mb[] = {"\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
			const char *m = mb[rnd_below(3)];

			buf_bytes(arena, (const uint8 *) m, strlen(m));
		}
		else if (kind == 2)
			buf_byte(arena, (uint8) ('a' + rnd_below(26)));
		else
			buf_byte(arena, (uint8) rnd());
	}
	if (kind == 1 && n > 0 && rnd_below(8) == 0)
		arena->p[start] = rnd_below(2) ? '-' : '+';
	/* an offset for now: the arena moves as it grows (fix_slices) */
	return (KplSlice) {(const uint8 *) (uintptr_t) start, arena->len - start};
}

/* make offsets in an arena into pointers */
static void
fix_slices(KplSlice *s, size_t n, const Buf *arena)
{
	for (size_t i = 0; i < n; i++)
		s[i].p = arena->p + (uintptr_t) s[i].p;
}

/*
 * Encode random tables and records; fills want (pointing into *arena) and
 * returns the encoding.  bad_index: one record names an entry past its
 * table (if there are records).
 */
static uint8 *
random_aggregate(Buf *arena, Expected *want, size_t *outlen, bool bad_index)
{
	uint32		n_pk = 1 + rnd_below(rnd_below(5) == 0 ? 300 : 6);
	uint32		n_ehk = rnd_below(3) == 0 ? 0 : rnd_below(rnd_below(5) == 0 ? 100 : 4);
	size_t		n = rnd_below(50) == 0 ? 1000 + rnd_below(4000) : rnd_below(20);
	uint64		size;
	uint8	   *out;

	arena->len = 0;
	want->pks = xmalloc(sizeof(KplSlice) * n_pk);
	want->ehks = xmalloc(sizeof(KplSlice) * (n_ehk + 1));
	want->recs = xmalloc(sizeof(KplEncodeRecord) * (n + 1));
	want->n = n;
	for (uint32 i = 0; i < n_pk; i++)
		want->pks[i] = random_bytes(arena, 2);
	for (uint32 i = 0; i < n_ehk; i++)
		want->ehks[i] = random_bytes(arena, 1);
	for (size_t i = 0; i < n; i++)
	{
		want->recs[i].pk_index = rnd_below(n_pk);
		want->recs[i].ehk_index = (n_ehk > 0 && rnd_below(2)) ? (int64) rnd_below(n_ehk) : -1;
		/* an empty hash key entry is no integer: keep records that name one valid */
		want->recs[i].data = random_bytes(arena, 0);
	}
	fix_slices(want->pks, n_pk, arena);
	fix_slices(want->ehks, n_ehk, arena);
	for (size_t i = 0; i < n; i++)
		fix_slices(&want->recs[i].data, 1, arena);
	for (size_t i = 0; i < n; i++)
		if (want->recs[i].ehk_index >= 0 &&
			!kpl_is_java_integer(want->ehks[want->recs[i].ehk_index].p,
								 want->ehks[want->recs[i].ehk_index].len))
			want->recs[i].ehk_index = -1;
	want->bad_index = bad_index && n > 0;
	if (want->bad_index)
	{
		KplEncodeRecord *r = &want->recs[rnd_below(n)];

		if (rnd_below(2))
			r->pk_index = n_pk + rnd_below(3);
		else
		{
			r->ehk_index = n_ehk + rnd_below(3);
			/* an integer at that index would be needed only if it existed */
		}
	}
	size = kpl_encoded_size(want->pks, n_pk, want->ehks, n_ehk, want->recs, n);
	out = xmalloc(size);
	*outlen = kpl_encode(want->pks, n_pk, want->ehks, n_ehk, want->recs, n, out);
	if (*outlen != size)
		FAIL("kpl_encode wrote %zu bytes, kpl_encoded_size said %llu", *outlen, (unsigned long long) size);
	return out;
}

static void
free_expected(Expected *e)
{
	free(e->pks);
	free(e->ehks);
	free(e->recs);
}

/* Wrap a protobuf message: magic, message, digest (a wrong one sometimes). */
static uint8 *
wrap(const uint8 *msg, size_t len, bool good_digest, size_t *outlen)
{
	uint8	   *out = xmalloc(len + KPL_MAGIC_LEN + KPL_DIGEST_LEN);

	memcpy(out, kpl_magic, KPL_MAGIC_LEN);
	if (len > 0)
		memcpy(out + KPL_MAGIC_LEN, msg, len);
	stream_md5(out + KPL_MAGIC_LEN, len, out + KPL_MAGIC_LEN + len);
	if (!good_digest)
		out[KPL_MAGIC_LEN + len + rnd_below(KPL_DIGEST_LEN)] ^= 1 + rnd_below(255);
	*outlen = len + KPL_MAGIC_LEN + KPL_DIGEST_LEN;
	return out;
}

/* Mutate the message part of an encoding in place or into a new buffer. */
static uint8 *
mutate(const uint8 *enc, size_t enclen, size_t *outlen)
{
	Buf			m = {0};
	size_t		msglen = enclen - KPL_MAGIC_LEN - KPL_DIGEST_LEN;
	int			rounds = 1 + rnd_below(4);
	uint8	   *out;

	buf_bytes(&m, enc + KPL_MAGIC_LEN, msglen);
	for (int k = 0; k < rounds; k++)
	{
		size_t		pos = rnd_below(m.len + 1);

		switch (rnd_below(8))
		{
			case 0:				/* flip a bit */
				if (m.len > 0)
					m.p[rnd_below(m.len)] ^= (uint8) (1 << rnd_below(8));
				break;
			case 1:				/* a random byte */
				if (m.len > 0)
					m.p[rnd_below(m.len)] = (uint8) rnd();
				break;
			case 2:				/* insert random bytes */
				{
					size_t		n = 1 + rnd_below(8);

					buf_reserve(&m, n);
					memmove(m.p + pos + n, m.p + pos, m.len - pos);
					for (size_t i = 0; i < n; i++)
						m.p[pos + i] = (uint8) rnd();
					m.len += n;
				}
				break;
			case 3:				/* delete a span */
				if (m.len > 0 && pos < m.len)
				{
					size_t		n = 1 + rnd_below(Min(m.len - pos, 16));

					memmove(m.p + pos, m.p + pos + n, m.len - pos - n);
					m.len -= n;
				}
				break;
			case 4:				/* truncate */
				m.len = rnd_below(m.len + 1);
				break;
			case 5:				/* duplicate a span */
				if (m.len > 0 && pos < m.len)
				{
					size_t		n = 1 + rnd_below(Min(m.len - pos, 64));

					buf_reserve(&m, n);
					memmove(m.p + pos + n, m.p + pos, m.len - pos);
					m.len += n;
				}
				break;
			case 6:				/* a varint made overlong: continuation bytes */
				{
					size_t		n = 1 + rnd_below(12);

					buf_reserve(&m, n);
					memmove(m.p + pos + n, m.p + pos, m.len - pos);
					memset(m.p + pos, 0x80 | (uint8) rnd_below(128), n);
					m.len += n;
				}
				break;
			default:			/* a huge length prefix */
				{
					static const uint8 big[] = {0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07};

					buf_reserve(&m, sizeof(big));
					memmove(m.p + pos + sizeof(big), m.p + pos, m.len - pos);
					memcpy(m.p + pos, big, sizeof(big));
					m.len += sizeof(big);
				}
				break;
		}
	}
	out = wrap(m.p, m.len, rnd_below(10) != 0, outlen);
	free(m.p);
	return out;
}

/*
 * random protobuf: random fields, nesting, groups.  Below the top a message
 * has few fields, so the tree stays small; chain: one nested field per
 * level, for deep nesting.
 */
static void
random_message(Buf *b, int depth, bool chain)
{
	int			fields = chain ? 1 : depth == 0 ? (int) rnd_below(12) : (int) rnd_below(3);

	for (int i = 0; i < fields; i++)
	{
		uint32		field = rnd_below(4) == 0 ? (uint32) rnd() : 1 + rnd_below(5);
		int			wt = rnd_below(10) == 0 ? (int) rnd_below(8) : (int) rnd_below(6);

		if (chain)
			wt = rnd_below(2) ? 2 : 3;
		if (wt == 4 && rnd_below(2))
			wt = 3;
		buf_varint(b, ((uint64) field << 3) | wt);
		switch (wt)
		{
			case 0:
				buf_varint(b, rnd_below(3) == 0 ? rnd() : rnd_below(300));
				break;
			case 1:
				for (int k = 0; k < 8; k++)
					buf_byte(b, (uint8) rnd());
				break;
			case 5:
				for (int k = 0; k < 4; k++)
					buf_byte(b, (uint8) rnd());
				break;
			case 2:
				{
					Buf			inner = {0};

					if (depth < 120 && (chain || rnd_below(3) == 0))
						random_message(&inner, depth + 1, chain);
					else
						for (size_t k = rnd_below(20); k > 0; k--)
							buf_byte(&inner, (uint8) rnd());
					buf_varint(b, rnd_below(20) == 0 ? inner.len + rnd_below(3) : inner.len);
					buf_bytes(b, inner.p, inner.len);
					free(inner.p);
				}
				break;
			case 3:
				/* a group, deep at times, closed with its own number (mostly) */
				if (depth < 150 && (chain || rnd_below(3) == 0))
					random_message(b, depth + 1, chain);
				buf_varint(b, ((uint64) (rnd_below(10) == 0 ? field + 1 : field) << 3) | 4);
				break;
			default:
				break;
		}
	}
}

/* groups nested exactly n deep inside a record: around KPL_MAX_DEPTH */
static uint8 *
deep_groups(int n, size_t *outlen)
{
	Buf			rec = {0};
	Buf			msg = {0};
	uint8	   *out;

	buf_byte(&rec, 0x08);		/* partition_key_index 0 */
	buf_byte(&rec, 0x00);
	buf_byte(&rec, 0x1A);		/* data: empty */
	buf_byte(&rec, 0x00);
	for (int i = 0; i < n; i++)
		buf_byte(&rec, (7 << 3) | 3);
	for (int i = 0; i < n; i++)
		buf_byte(&rec, (7 << 3) | 4);
	buf_byte(&msg, 0x0A);		/* partition key "k" */
	buf_byte(&msg, 0x01);
	buf_byte(&msg, 'k');
	buf_byte(&msg, 0x1A);
	buf_varint(&msg, rec.len);
	buf_bytes(&msg, rec.p, rec.len);
	out = wrap(msg.p, msg.len, true, outlen);
	free(rec.p);
	free(msg.p);
	return out;
}

/*
 * A record naming partition key index v of a two-entry table ("k0", "k1"):
 * the KCL reads (int) v, so only the low 32 bits count, and negative ones
 * name nothing.
 */
static void
check_index_alias(uint64 v)
{
	Buf			rec = {0};
	Buf			msg = {0};
	size_t		len;
	uint8	   *d;
	int32		want = (int32) (uint32) v;
	KplAggregate agg;
	KplSlice	pks[2],
				ehks[1];
	KplIter		it;
	KplUserRecord r;
	KplStatus	st;

	buf_byte(&rec, 0x08);
	buf_varint(&rec, v);
	buf_byte(&rec, 0x1A);
	buf_byte(&rec, 0x00);
	buf_bytes(&msg, (const uint8 *) "\x0a\x02k0\x0a\x02k1", 8);
	buf_byte(&msg, 0x1A);
	buf_varint(&msg, rec.len);
	buf_bytes(&msg, rec.p, rec.len);
	d = wrap(msg.p, msg.len, true, &len);
	st = kpl_inspect(d, len, &agg);
	if (want == 0 || want == 1)
	{
		if (st != KPL_OK || kpl_prepare(&agg, pks, ehks) != KPL_OK)
			FAIL("index %llu (int %d) refused", (unsigned long long) v, want);
		kpl_iter_init(&it, &agg, pks, ehks);
		if (!kpl_next(&it, &r) || r.partition_key.len != 2 || r.partition_key.p[1] != '0' + want)
			FAIL("index %llu did not name k%d", (unsigned long long) v, want);
	}
	else if (st != KPL_BAD_INDEX)
		FAIL("index %llu (int %d) gave status %d, not KPL_BAD_INDEX", (unsigned long long) v, want, st);
	free(rec.p);
	free(msg.p);
	free(d);
}

int
main(int argc, char **argv)
{
	unsigned long iterations;
	Buf			arena = {0};

	if (argc != 3)
	{
		fprintf(stderr, "usage: fuzz_kpl SEED ITERATIONS\n");
		return 2;
	}
	seed = strtoull(argv[1], NULL, 10);
	iterations = strtoul(argv[2], NULL, 10);
	rng_state = seed * 2 + 1;

	/* nesting right at the limit parses; one deeper does not */
	{
		size_t		len;
		uint8	   *d = deep_groups(KPL_MAX_DEPTH - 1, &len);

		if (decode_and_check(d, len, NULL) != KPL_OK)
			FAIL("groups nested %d deep in a record were refused", KPL_MAX_DEPTH - 1);
		free(d);
		d = deep_groups(KPL_MAX_DEPTH, &len);
		if (decode_and_check(d, len, NULL) != KPL_BAD_PROTOBUF)
			FAIL("groups nested %d deep in a record were accepted", KPL_MAX_DEPTH);
		free(d);
		d = deep_groups(100000, &len);
		if (decode_and_check(d, len, NULL) != KPL_BAD_PROTOBUF)
			FAIL("groups nested 100000 deep were accepted");
		free(d);
	}

	{
		static const uint64 idx[] = {0, 1, 2, 127, 128, UINT64CONST(0x7fffffff), UINT64CONST(0x80000000),
			UINT64CONST(0xffffffff), UINT64CONST(0x100000000), UINT64CONST(0x100000001),
			UINT64CONST(0x8000000000000000), UINT64CONST(0x8000000000000001), PG_UINT64_MAX};

		for (size_t i = 0; i < lengthof(idx); i++)
			check_index_alias(idx[i]);
	}

	for (iteration = 0; iteration < iterations; iteration++)
	{
		size_t		len;
		uint8	   *d;
		Expected	want;

		switch (iteration % 4)
		{
			case 0:				/* round trip */
				d = random_aggregate(&arena, &want, &len, rnd_below(8) == 0);
				if (decode_and_check(d, len, want.bad_index ? NULL : &want) !=
					(want.bad_index ? KPL_BAD_INDEX : KPL_OK))
					FAIL("a valid encoding was not decoded, or one with a bad index was");
				free_expected(&want);
				free(d);
				break;
			case 1:				/* mutated encoding */
				{
					uint8	   *enc = random_aggregate(&arena, &want, &len, false);

					d = mutate(enc, len, &len);
					(void) decode_and_check(d, len, NULL);
					/* every prefix of short mutants: truncation anywhere */
					if (len < 64)
						for (size_t k = 0; k < len; k++)
							(void) decode_and_check(d, k, NULL);
					free_expected(&want);
					free(enc);
					free(d);
				}
				break;
			case 2:				/* random protobuf */
				{
					Buf			m = {0};

					random_message(&m, 0, rnd_below(10) == 0);
					d = wrap(m.p, m.len, rnd_below(20) != 0, &len);
					(void) decode_and_check(d, len, NULL);
					free(m.p);
					free(d);
				}
				break;
			default:			/* random bytes, with and without the magic */
				{
					size_t		n = rnd_below(64);

					d = xmalloc(n + KPL_MAGIC_LEN);
					memcpy(d, kpl_magic, KPL_MAGIC_LEN);
					for (size_t k = 0; k < n; k++)
						d[KPL_MAGIC_LEN + k] = (uint8) rnd();
					(void) decode_and_check(d, n + KPL_MAGIC_LEN, NULL);
					(void) decode_and_check(d + KPL_MAGIC_LEN, n, NULL);
					{
						KplSlice	s = {d, n + KPL_MAGIC_LEN};

						check_repair(s);
					}
					free(d);
				}
				break;
		}
	}
	free(arena.p);
	printf("fuzz_kpl: seed %llu, %lu iterations: ok %ld, not aggregate %ld, bad digest %ld, "
		   "bad protobuf %ld, bad index %ld, bad hash key %ld\n",
		   seed, iterations, counts[KPL_OK], counts[KPL_NOT_AGGREGATE], counts[KPL_BAD_DIGEST],
		   counts[KPL_BAD_PROTOBUF], counts[KPL_BAD_INDEX], counts[KPL_BAD_HASH_KEY]);
	return 0;
}
