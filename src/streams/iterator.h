/*
 * iterator.h: shard iterators - where a read starts, and the signed token
 * that carries the position between calls.
 *
 * An iterator type (TRIM_HORIZON, LATEST, AT_/AFTER_SEQUENCE_NUMBER,
 * AT_TIMESTAMP) becomes a position once, when the iterator is made; the
 * token is opaque to the caller and signed, so it names no stream or shard
 * the server did not hand out.  Privileges are checked again on every read.
 */
#ifndef STREAM_ITERATOR_H
#define STREAM_ITERATOR_H

#include "stream.h"

#include "fmgr.h"

typedef struct ShardIterator
{
	int32		stream_id;
	int32		shard_index;
	int64		from_seq;		/* next sequence number to read */
	int64		created_ms;		/* Unix epoch milliseconds */
} ShardIterator;

/* A timestamp as Unix epoch milliseconds, the unit of created_ms. */
static inline int64
iterator_unix_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

/* A new iterator's position (get_shard_iterator, read_shard, subscribe_to_shard). */
extern ShardIterator iterator_start(const char *name, const char *shard_id, const char *type,
									const char *seqtext, bool has_ts, TimestampTz ts);
/* The same from arguments 0-4 (name, shard, type, sequence, timestamp) of a SQL function. */
extern ShardIterator iterator_start_args(FunctionCallInfo fcinfo);

/* The token's text and back; InvalidArgumentException for a token not ours. */
extern char *iterator_encode(const ShardIterator *it);
extern void iterator_decode(const char *text, ShardIterator *it);
/* ExpiredIteratorException when it is older than stream.iterator_lifetime at now. */
extern void iterator_check_expiry(const ShardIterator *it, TimestampTz now);

/*
 * A signed token's tag (16 bytes at tag) over body: HMAC with the key that
 * signs iterators (next_token.c signs with it too).
 */
#define TOKEN_TAG_LEN 16
extern void iterator_sign(const uint8 *body, size_t len, uint8 *tag);

/* From _PG_init: register the invalidation of the signing key. */
extern void iterator_init(void);

#endif							/* STREAM_ITERATOR_H */
