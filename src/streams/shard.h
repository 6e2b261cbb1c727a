/*
 * shard.h: a stream's shards by index and by shard id, and the shard id's
 * text form "shardId-<12 digits>".
 *
 * shard_parse_id is the one reader of shard ids, for C and (as
 * stream_internal._shard_index) for SQL.  It is lenient, as Kinesis is:
 * "shardId-000000000001", "shardId-0000000000001", "anything-1" and "1"
 * all address shard 1.  The StreamShard pointers returned belong to the
 * StreamInfo they came from (stream_catalog.h: valid until the next lookup).
 * A shard's children are the shards whose parent or adjacent parent it is.
 */
#ifndef STREAM_SHARD_H
#define STREAM_SHARD_H

#include "stream.h"

/* The shard with this index; ResourceNotFoundException (or NULL with missing_ok) when there is none. */
extern StreamShard *shard_by_index(StreamInfo *info, int32 shard_index, bool missing_ok);
/* The shard a shard id names; ValidationException or ResourceNotFoundException (or NULL). */
extern StreamShard *shard_by_id(StreamInfo *info, const char *shard_id, bool missing_ok);
/* The index a shard id names, or -1 when it names none; validate it first. */
extern int32 shard_parse_id(const char *shard_id);
/* The member ShardId's constraints: ValidationException when broken. */
extern void shard_check_id(const char *shard_id);
/* "shardId-%012d", palloc'd. */
extern char *shard_id_text(int32 shard_index);
/*
 * The ChildShards of a closed shard read to its end, as GetRecords returns
 * them: a jsonb array of {ShardId, ParentShards, HashKeyRange}, a merge
 * child naming both parents.
 */
extern Datum shard_children_jsonb(StreamInfo *info, StreamShard *shard);

#endif							/* STREAM_SHARD_H */
