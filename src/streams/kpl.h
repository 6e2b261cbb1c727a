/*
 * kpl.h: the KPL aggregated record (kinesis-semantics.md 2.1): the decoder
 * that de-aggregates as the KCL's AggregatorUtil.deaggregate does, and the
 * encoder of stream.aggregate_records.
 *
 *   magic F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf
 *
 * Pure C over the caller's buffers: no allocation, no error reports,
 * nothing of the server's but the types of c.h and stream_md5, so that
 * test/kpl/ can build it into a fuzzer that runs outside PostgreSQL.
 * Every read is checked against the end of its input (varints, lengths,
 * nested messages, skipped unknown fields and groups), and nesting is
 * bounded (KPL_MAX_DEPTH): no input makes it read out of bounds or recurse
 * without limit.  Slices point into the input; they live as long as it.
 *
 * Decoding is three steps: kpl_inspect() says whether the data is an
 * aggregate the KCL would de-aggregate and how large its tables are; the
 * caller provides the tables and kpl_prepare() fills them; kpl_next()
 * then hands out the user records in protobuf order (sub-sequence
 * numbers 0, 1, 2, ...).  Anything but KPL_OK from the first two: deliver
 * the record as it is.
 */
#ifndef STREAM_KPL_H
#define STREAM_KPL_H

#include "c.h"

#define KPL_MAGIC_LEN		4
#define KPL_DIGEST_LEN		16
/* protobuf-java's default recursion limit, nested messages and groups counted */
#define KPL_MAX_DEPTH		100

extern const uint8 kpl_magic[KPL_MAGIC_LEN];

typedef struct KplSlice
{
	const uint8 *p;				/* NULL: absent */
	size_t		len;
} KplSlice;

typedef enum KplStatus
{
	KPL_OK = 0,
	KPL_NOT_AGGREGATE,			/* no magic, or nothing after it but a digest */
	KPL_BAD_DIGEST,				/* the MD5 trailer does not match */
	KPL_BAD_PROTOBUF,			/* malformed, a required field missing, nested too deep */
	KPL_BAD_INDEX,				/* a record names a table entry that does not exist */
	KPL_BAD_HASH_KEY			/* a record's explicit hash key is no decimal integer */
} KplStatus;

typedef struct KplAggregate
{
	KplSlice	msg;			/* the protobuf AggregatedRecord */
	uint32		n_pk;			/* partition_key_table entries */
	uint32		n_ehk;			/* explicit_hash_key_table entries */
	uint64		n_records;
} KplAggregate;

typedef struct KplUserRecord
{
	uint32		pk_index;		/* its entry in the partition key table */
	KplSlice	partition_key;	/* raw bytes of the table entry (kpl_utf8_repair) */
	KplSlice	explicit_hash_key;	/* p == NULL: the record has none */
	KplSlice	data;
} KplUserRecord;

typedef struct KplIter
{
	const uint8 *p;
	const uint8 *end;
	const KplSlice *pks;
	const KplSlice *ehks;
	uint32		n_pk;
	uint32		n_ehk;
} KplIter;

/* Step 1: whether data[0..len) is an aggregate the KCL de-aggregates. */
extern KplStatus kpl_inspect(const uint8 *data, size_t len, KplAggregate *agg);
/* Step 2: fill pks[n_pk] and ehks[n_ehk]; checks the hash keys records name. */
extern KplStatus kpl_prepare(const KplAggregate *agg, KplSlice *pks, KplSlice *ehks);
/* Step 3: the user records in order; false after the last. */
extern void kpl_iter_init(KplIter *it, const KplAggregate *agg, const KplSlice *pks, const KplSlice *ehks);
extern bool kpl_next(KplIter *it, KplUserRecord *rec);

/*
 * A protobuf string as valid UTF-8 without NUL bytes, as text needs it:
 * each maximal ill-formed subsequence (Unicode 3.9, "maximal subpart") and
 * each NUL becomes U+FFFD.  out has room for 3 * len bytes; returns the
 * length written.
 */
extern size_t kpl_utf8_repair(const uint8 *in, size_t len, uint8 *out);
/* Whether s is what java.math.BigInteger(String) parses: [+-]?[0-9]+ (ASCII digits). */
extern bool kpl_is_java_integer(const uint8 *s, size_t len);

/* ---- encoding ---- */

typedef struct KplEncodeRecord
{
	uint32		pk_index;
	int64		ehk_index;		/* -1: none */
	KplSlice	data;
} KplEncodeRecord;

/* Bytes of the aggregate (magic, message, digest) for these tables and records. */
extern uint64 kpl_encoded_size(const KplSlice *pks, uint32 n_pk, const KplSlice *ehks, uint32 n_ehk,
							   const KplEncodeRecord *recs, size_t n);
/* Write it at out, which has room for kpl_encoded_size() bytes; returns the bytes written. */
extern size_t kpl_encode(const KplSlice *pks, uint32 n_pk, const KplSlice *ehks, uint32 n_ehk,
						 const KplEncodeRecord *recs, size_t n, uint8 *out);

#endif							/* STREAM_KPL_H */
