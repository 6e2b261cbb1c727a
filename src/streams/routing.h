/*
 * routing.h: which shard a record goes to.  A partition key's hash key is
 * the MD5 of its UTF-8 bytes read as an unsigned big-endian 128-bit
 * integer (or the record's explicit hash key); the record goes to the open
 * shard whose [starting, ending] hash-key range holds it.
 */
#ifndef STREAM_ROUTING_H
#define STREAM_ROUTING_H

#include "stream.h"

extern uint128 routing_hash_key(const char *key, int len);
/* A decimal hash key as Kinesis accepts it; false for anything else. */
extern bool routing_parse_hash_key(const char *s, uint128 *out);
extern char *routing_hash_key_to_cstring(uint128 value);
/* The open shard that holds hash; InternalFailure when none does. */
extern StreamShard *routing_open_shard(StreamInfo *info, uint128 hash);

#endif							/* STREAM_ROUTING_H */
