/*
 * iterator.c: shard iterators (iterator.h).
 *
 * The token is base64 of (version, stream id, shard index, next sequence
 * to read, creation time) followed by an HMAC-SHA256 tag over those bytes
 * and the database OID, keyed by the secret in stream.secret.  A tampered
 * or forged iterator fails the tag check.  The key is read once per
 * backend and again after stream.secret is invalidated (the extension
 * dropped and created anew: iterators of the old one stop working).
 */
#include "streams/iterator.h"
#include "settings.h"
#include "streams/access.h"
#include "streams/chunk_scan.h"
#include "streams/read_window.h"
#include "streams/record_out.h"
#include "streams/retention.h"
#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stream_get_shard_iterator);

#define ITERATOR_VERSION	1
#define ITERATOR_BODY_LEN	25	/* version 1 + stream 4 + shard 4 + seq 8 + ms 8 */
#define ITERATOR_TAG_LEN	TOKEN_TAG_LEN
#define ITERATOR_RAW_LEN	(ITERATOR_BODY_LEN + ITERATOR_TAG_LEN)
#define ITERATOR_TEXT_LEN	(4 * ((ITERATOR_RAW_LEN + 2) / 3))	/* padded base64 */

/* The signing key, in TopMemoryContext; re-read when stale. */
static uint8 *secret = NULL;
static int	secret_len = 0;
static Oid	secret_relid = InvalidOid;
static bool secret_stale = true;

static void
secret_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == secret_relid)
		secret_stale = true;
}

void
iterator_init(void)
{
	CacheRegisterRelcacheCallback(secret_invalidate, (Datum) 0);
}

/*
 * The HMAC key that signs shard iterators.  It lives in stream.secret, which
 * no ordinary role may read, so it is read here with a plain heap scan
 * rather than through SQL permissions.
 */
static const uint8 *
iterator_secret(int *len)
{
	if (secret == NULL || secret_stale)
	{
		Relation	rel;
		TableScanDesc scan;
		HeapTuple	tup;
		Snapshot	snap;

		if (secret != NULL)
			pfree(secret);
		secret = NULL;
		secret_stale = false;
		secret_relid = get_relname_relid("secret", get_namespace_oid("stream", false));
		if (!OidIsValid(secret_relid))
			elog(ERROR, "stream.secret is missing");
		rel = table_open(secret_relid, AccessShareLock);
		snap = RegisterSnapshot(GetLatestSnapshot());
		scan = table_beginscan(rel, snap, 0, NULL);
		tup = heap_getnext(scan, ForwardScanDirection);
		if (tup != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(d);

				secret_len = VARSIZE_ANY_EXHDR(b);
				secret = MemoryContextAlloc(TopMemoryContext, secret_len);
				memcpy(secret, VARDATA_ANY(b), secret_len);
			}
		}
		table_endscan(scan);
		UnregisterSnapshot(snap);
		table_close(rel, AccessShareLock);
		if (secret == NULL || secret_len < 16)
			elog(ERROR, "stream.secret holds no usable key");
	}
	*len = secret_len;
	return secret;
}

static void
put_be(uint8 *p, uint64 v, int n)
{
	for (int i = n - 1; i >= 0; i--)
	{
		p[i] = v & 0xff;
		v >>= 8;
	}
}

static uint64
get_be(const uint8 *p, int n)
{
	uint64		v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * The tag of a signed token (iterators, next tokens): the first 16 bytes of
 * HMAC-SHA256 over the database OID and body, keyed by stream.secret.
 * Tokens of different kinds differ in their first byte.
 */
void
iterator_sign(const uint8 *body, size_t len, uint8 *tag)
{
	int			keylen;
	const uint8 *key = iterator_secret(&keylen);
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		db[4];
	uint8		full[PG_SHA256_DIGEST_LENGTH];

	put_be(db, MyDatabaseId, 4);
	if (ctx == NULL ||
		pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, db, sizeof(db)) < 0 ||
		pg_hmac_update(ctx, body, len) < 0 ||
		pg_hmac_final(ctx, full, sizeof(full)) < 0)
		elog(ERROR, "could not compute a token tag: %s", pg_hmac_error(ctx));
	pg_hmac_free(ctx);
	memcpy(tag, full, ITERATOR_TAG_LEN);
}

static void
iterator_tag(const uint8 *body, uint8 *tag)
{
	iterator_sign(body, ITERATOR_BODY_LEN, tag);
}

char *
iterator_encode(const ShardIterator *it)
{
	uint8		raw[ITERATOR_RAW_LEN];
	int			enclen = pg_b64_enc_len(ITERATOR_RAW_LEN);
	char	   *out = palloc(enclen + 1);
	int			n;

	raw[0] = ITERATOR_VERSION;
	put_be(raw + 1, (uint32) it->stream_id, 4);
	put_be(raw + 5, (uint32) it->shard_index, 4);
	put_be(raw + 9, (uint64) it->from_seq, 8);
	put_be(raw + 17, (uint64) it->created_ms, 8);
	iterator_tag(raw, raw + ITERATOR_BODY_LEN);
	n = pg_b64_encode((const char *) raw, ITERATOR_RAW_LEN, out, enclen);
	if (n < 0)
		elog(ERROR, "could not encode shard iterator");
	out[n] = '\0';
	return out;
}

static void
invalid_iterator(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: Invalid ShardIterator."),
			 errhint("Use a shard iterator returned by stream.get_shard_iterator() or get_records().")));
}

void
iterator_decode(const char *text, ShardIterator *it)
{
	int			len = strlen(text);
	uint8		raw[ITERATOR_RAW_LEN + 8];
	uint8		tag[ITERATOR_TAG_LEN];
	uint8		diff = 0;

	if (len < 1 || len > SHARD_ITERATOR_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'shardIterator' failed to satisfy constraint: Member must have length %s",
						text, kinesis_bound_text(len, 1, SHARD_ITERATOR_MAX_LEN))));
	if (len != ITERATOR_TEXT_LEN ||
		pg_b64_dec_len(len) > (int) sizeof(raw) ||
		pg_b64_decode(text, len, (char *) raw, sizeof(raw)) != ITERATOR_RAW_LEN ||
		raw[0] != ITERATOR_VERSION)
		invalid_iterator();
	iterator_tag(raw, tag);
	for (int i = 0; i < ITERATOR_TAG_LEN; i++)	/* constant time */
		diff |= tag[i] ^ raw[ITERATOR_BODY_LEN + i];
	if (diff != 0)
		invalid_iterator();
	it->stream_id = (int32) get_be(raw + 1, 4);
	it->shard_index = (int32) get_be(raw + 5, 4);
	it->from_seq = (int64) get_be(raw + 9, 8);
	it->created_ms = (int64) get_be(raw + 17, 8);
}

/*
 * StartingSequenceNumber as the API member: pattern 0|([1-9]\d{0,128}),
 * else ValidationException (before any semantic check, as Kinesis).
 */
static void
check_starting_seq_pattern(const char *seqtext)
{
	if (!kinesis_is_plain_decimal(seqtext, SEQUENCE_NUMBER_MAX_DIGITS))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,%d})",
						seqtext, SEQUENCE_NUMBER_MAX_DIGITS - 1)));
}

static int64
parse_starting_seq(const char *seqtext, StreamInfo *info, StreamShard *shard)
{
	int32		stream_id,
				shard_index;
	int64		seq;

	if (!seq_from_text(seqtext, &stream_id, &shard_index, &seq))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: StartingSequenceNumber %s used in GetShardIterator on shard %s in stream %s under account %s is invalid.",
						seqtext, shard_id_text(shard->shard_index), info->name, STREAM_ACCOUNT)));
	if (stream_id != info->stream_id)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: StartingSequenceNumber %s used in GetShardIterator on shard %s in stream %s under account %s is invalid because it did not come from this stream.",
						seqtext, shard_id_text(shard->shard_index), info->name, STREAM_ACCOUNT)));
	if (shard_index != shard->shard_index)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Invalid StartingSequenceNumber. It encodes %s, while it was used in a call to a shard with %s",
						shard_id_text(shard_index), shard_id_text(shard->shard_index))));
	return seq;
}

/* Compute a new iterator's position; shared by get_shard_iterator, read_shard and subscribe_to_shard. */
ShardIterator
iterator_start(const char *name, const char *shard_id, const char *type,
			   const char *seqtext, bool has_ts, TimestampTz ts)
{
	TimestampTz now = GetCurrentTimestamp();
	StreamInfo *info;
	StreamShard *shard;
	ShardIterator it;
	TimestampTz min_arrival;
	int64		trim_seq;

	/* the request's constraints first (ValidationException), then its meaning */
	kinesis_check_stream_name(name);
	shard_check_id(shard_id);
	if (strcmp(type, "TRIM_HORIZON") != 0 && strcmp(type, "LATEST") != 0 &&
		strcmp(type, "AT_SEQUENCE_NUMBER") != 0 && strcmp(type, "AFTER_SEQUENCE_NUMBER") != 0 &&
		strcmp(type, "AT_TIMESTAMP") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, TRIM_HORIZON, AT_SEQUENCE_NUMBER]",
						type)));
	if (seqtext != NULL)
		check_starting_seq_pattern(seqtext);
	if (strstr(type, "SEQUENCE_NUMBER") != NULL && seqtext == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified %s and no StartingSequenceNumber.",
						type)));
	if (strstr(type, "SEQUENCE_NUMBER") == NULL && seqtext != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified %s and also a StartingSequenceNumber.",
						type)));
	if (strcmp(type, "AT_TIMESTAMP") == 0)
	{
		if (!has_ts)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")));
		if (ts > now)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: %s, currentTimestampInMillis: %lld",
							TIMESTAMP_NOT_FINITE(ts) ? "infinity" :
							psprintf("%lld", (long long) iterator_unix_ms(ts)),
							(long long) iterator_unix_ms(now))));
	}

	info = stream_lookup(name, false);
	access_check(info, ACL_SELECT);
	shard = shard_by_id(info, shard_id, false);
	trim_seq = retention_horizon(info, now, &min_arrival);

	it.stream_id = info->stream_id;
	it.shard_index = shard->shard_index;
	it.created_ms = iterator_unix_ms(now);
	if (strcmp(type, "TRIM_HORIZON") == 0)
		it.from_seq = Max(trim_seq, shard->starting_seq);
	else if (strcmp(type, "LATEST") == 0)
		it.from_seq = seqalloc_stable_seq(info, shard);	/* in-flight puts still come */
	else if (strcmp(type, "AT_SEQUENCE_NUMBER") == 0)
		it.from_seq = parse_starting_seq(seqtext, info, shard);
	else if (strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0)
		it.from_seq = parse_starting_seq(seqtext, info, shard) + 1;
	else
	{
		/*
		 * AT_TIMESTAMP: the first readable record that arrived at or after
		 * ts (arrival times are monotonic per shard), else where the next
		 * one will be.
		 */
		TimestampTz at = Max(ts, min_arrival);
		ReadWindow	w = read_window(info, shard,
									Max(SEQ_FROM_BUCKET(seq_bucket_now(at)), shard->starting_seq),
									now);
		RecordCollector first;
		int64		next;

		memset(&first, 0, sizeof(first));
		if (chunk_scan(info, shard, w.from, w.to, at, 1, GET_RECORDS_MAX_BYTES,
					   collect_first, &first, &next) == 1)
			it.from_seq = first.first_seq;
		else
			it.from_seq = Max(next, w.from);
	}
	return it;
}

/* Arguments 0-4 of get_shard_iterator and read_shard: name, shard, type, sequence, timestamp. */
ShardIterator
iterator_start_args(FunctionCallInfo fcinfo)
{
	kinesis_require_arg(PG_ARGISNULL(0), "streamName");
	kinesis_require_arg(PG_ARGISNULL(1), "shardId");
	kinesis_require_arg(PG_ARGISNULL(2), "shardIteratorType");
	return iterator_start(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						  text_to_cstring(PG_GETARG_TEXT_PP(1)),
						  text_to_cstring(PG_GETARG_TEXT_PP(2)),
						  PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
						  !PG_ARGISNULL(4),
						  PG_ARGISNULL(4) ? 0 : PG_GETARG_TIMESTAMPTZ(4));
}

/* stream.get_shard_iterator(stream_name, shard_id, type, starting_sequence_number, timestamp) */
Datum
stream_get_shard_iterator(PG_FUNCTION_ARGS)
{
	ShardIterator it = iterator_start_args(fcinfo);

	PG_RETURN_TEXT_P(cstring_to_text(iterator_encode(&it)));
}

void
iterator_check_expiry(const ShardIterator *it, TimestampTz now)
{
	if (iterator_unix_ms(now) - it->created_ms > stream_iterator_lifetime_ms)
	{
		TimestampTz created = it->created_ms * 1000 -
			(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
		/* one static buffer behind timestamptz_to_str: copy each in turn */
		char	   *created_text = pstrdup(timestamptz_to_str(created));
		char	   *now_text = pstrdup(timestamptz_to_str(now));

		ereport(ERROR,
				(errcode(ERRCODE_STREAM_EXPIRED_ITERATOR),
				 errmsg("ExpiredIteratorException: Iterator expired. The iterator was created at time %s while right now it is %s which is further in the future than the tolerated delay of %d milliseconds.",
						created_text, now_text,
						stream_iterator_lifetime_ms),
				 errhint("Get a new iterator with stream.get_shard_iterator(), e.g. AFTER_SEQUENCE_NUMBER of the last record read.")));
	}
}
