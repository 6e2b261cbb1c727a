/*
 * chunk.h: the chunk tables that hold a stream's records.
 *
 * A stream's records live in stream_data.s<id>, range-partitioned on the
 * per-shard sequence number into chunks stream_data.s<id>_<k>; chunk k
 * holds the hour buckets [k * chunk_hours, (k + 1) * chunk_hours).  Every
 * chunk has the layout (shard_id int4, seq int8, arrival timestamptz,
 * partition_key text, data bytea) with the primary key (shard_id, seq),
 * as stream_internal._create_stream_table makes the parent and
 * stream_internal._add_chunk its chunks (src/sql/00_core.sql); chunk_open
 * checks it, as the direct insert and scan paths rely on exactly that.
 * The names are spelled here only (chunk_table_name, chunk_name): the SQL
 * parts call stream_internal._data_table, _chunk_table and _chunk_number,
 * which are these functions.
 */
#ifndef STREAM_CHUNK_H
#define STREAM_CHUNK_H

#include "stream.h"

#include "storage/lockdefs.h"
#include "utils/relcache.h"

#define CHUNK_NATTS 5			/* shard_id, seq, arrival, partition_key, data */
#define CHUNK_SCHEMA "stream_data"	/* the schema of data tables and chunks */

/* The stream's data table's name, s<id>, in out (NAMEDATALEN bytes). */
extern void chunk_table_name(char *out, int32 stream_id);
/* Chunk k's name, s<id>_<k>, in out (NAMEDATALEN bytes). */
extern void chunk_name(char *out, int32 stream_id, int64 chunk_no);
/* Whether relname is the name of one of the stream's chunks, and which. */
extern bool chunk_number(const char *relname, int32 stream_id, int64 *chunk_no);

/* The number of the chunk that holds seq. */
extern int64 chunk_of(StreamInfo *info, int64 seq);
/* The chunk's OID, InvalidOid when it does not exist. */
extern Oid	chunk_relid(StreamInfo *info, int64 chunk_no);
/* Open and lock a chunk, checking its layout; NULL when it does not exist. */
extern Relation chunk_open(StreamInfo *info, int64 chunk_no, LOCKMODE mode);
/* Highest committed sequence number of a shard, or -1. */
extern int64 chunk_max_seq(StreamInfo *info, StreamShard *shard);

#endif							/* STREAM_CHUNK_H */
