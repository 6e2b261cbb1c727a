/*
 * stream_catalog.h: a backend-local cache of stream metadata (stream.streams
 * and stream.shards), looked up by name or by id.
 *
 * Pointer lifetime: a StreamInfo (and its shards) belongs to the cache and
 * is valid until the next stream_lookup() or stream_lookup_by_id() in this
 * backend, which frees the whole cache after an invalidation.  Code that
 * looks up another stream, or calls something that may (a read looks its
 * stream up by id), while it still needs a StreamInfo must copy it first
 * (delivery/delivery_batch.c's source_stream does).  Never keep one across transactions.
 */
#ifndef STREAM_CATALOG_H
#define STREAM_CATALOG_H

#include "stream.h"

/* The stream; ResourceNotFoundException (or NULL with missing_ok) when it does not exist. */
extern StreamInfo *stream_lookup(const char *name, bool missing_ok);
extern StreamInfo *stream_lookup_by_id(int32 stream_id, bool missing_ok);
/* A copy of info (its shard arrays) in cxt, which outlives the cache's next reload. */
extern StreamInfo *stream_info_copy(const StreamInfo *info, MemoryContext cxt);

/*
 * Drop the cache at the next lookup, as an invalidation would: a put
 * refused by a shard that closed (seqalloc.h) reloads and routes again.
 */
extern void stream_catalog_forget(void);
/* Has an invalidation (or stream_catalog_forget) made the cache stale? */
extern bool stream_catalog_is_stale(void);

/* A shard's ending sequence number as committed now; false while open (or gone). */
extern bool stream_catalog_shard_ending(int32 stream_id, int32 shard_index, int64 *ending);

/* From _PG_init: register the invalidation callback. */
extern void stream_catalog_init(void);

#endif							/* STREAM_CATALOG_H */
