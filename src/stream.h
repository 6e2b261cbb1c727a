/*
 * stream.h: declarations shared by the concerns of the stream extension.
 *
 * Each concern lives in its own file: routing (hash keys), seqalloc
 * (sequence numbers and the last stable sequence), catalog (stream
 * metadata cache), storage (chunk tables), put, iterator and worker.
 */
#ifndef STREAM_H
#define STREAM_H

#include "postgres.h"
#include "datatype/timestamp.h"
#include "nodes/parsenodes.h"
#include "utils/relcache.h"

/* Kinesis limits (kinesis-semantics.md 1.2, 1.6, 1.9) */
#define STREAM_NAME_MAX				128
#define PARTITION_KEY_MAX_CHARS		256
#define RECORD_MAX_BYTES			(1024 * 1024)	/* key + data */
#define PUT_RECORDS_MAX				500
#define PUT_RECORDS_MAX_BYTES		(5 * 1024 * 1024)
#define GET_RECORDS_MAX				10000
#define GET_RECORDS_MAX_BYTES		(10 * 1024 * 1024)

/* A per-shard sequence is (hour bucket << 32) | counter. */
#define SEQ_BUCKET_SHIFT			32
#define SEQ_BUCKET(seq)				((int64) (seq) >> SEQ_BUCKET_SHIFT)
#define SEQ_FROM_BUCKET(b)			((int64) (b) << SEQ_BUCKET_SHIFT)
#define SEQ_TEXT_LEN				40

/* Kinesis exceptions map onto these SQLSTATEs. */
#define ERRCODE_STREAM_NOT_FOUND	ERRCODE_UNDEFINED_OBJECT
#define ERRCODE_STREAM_IN_USE		ERRCODE_DUPLICATE_OBJECT
#define ERRCODE_STREAM_INVALID_ARG	ERRCODE_INVALID_PARAMETER_VALUE
#define ERRCODE_STREAM_LIMIT		ERRCODE_PROGRAM_LIMIT_EXCEEDED

/* Account id printed in Kinesis-style messages; one database is one account. */
#define STREAM_ACCOUNT				"000000000000"

typedef unsigned __int128 uint128;

/* ---- routing.c ---- */
extern uint128 routing_hash_key(const char *key, int len);
extern bool routing_parse_hash_key(const char *s, uint128 *out);
extern char *routing_hash_key_to_cstring(uint128 value);

/* ---- catalog.c ---- */
typedef struct StreamShard
{
	int32		shard_index;
	uint128		start_hash;
	uint128		end_hash;
	int64		starting_seq;
	int64		ending_seq;		/* valid only when closed */
	bool		closed;
} StreamShard;

typedef struct StreamInfo
{
	char		name[STREAM_NAME_MAX + 1];	/* hash key */
	int32		stream_id;
	Oid			relid;			/* partitioned parent stream_data.s<id> */
	Oid			chunk_nsp;		/* namespace of the chunk tables */
	int32		retention_hours;
	int32		chunk_hours;
	bool		active;
	bool		notify;			/* NOTIFY stream_<id> with the shard id at commit */
	int			nshards;
	StreamShard *shards;		/* ordered by shard_index */
	int			nopen;
	StreamShard **open_shards;	/* open shards ordered by hash range */
} StreamInfo;

extern StreamInfo *stream_lookup(const char *name, bool missing_ok);
extern StreamInfo *stream_lookup_by_id(int32 stream_id, bool missing_ok);
extern StreamShard *stream_route(StreamInfo *info, uint128 hash);
extern StreamShard *stream_find_shard(StreamInfo *info, const char *shard_id,
									  bool missing_ok);
extern void stream_check_access(StreamInfo *info, AclMode mode);
extern void stream_check_name(const char *name);
extern void stream_check_resource_name(const char *name, const char *member, int maxlen);
extern void stream_check_shard_id(const char *shard_id);
extern StreamShard *stream_get_shard(StreamInfo *info, int32 shard_index, bool missing_ok);
extern bool stream_is_plain_decimal(const char *s, int maxdigits);
extern void stream_require_arg(bool isnull, const char *member);
extern const uint8 *stream_iterator_secret(int *len);
extern void stream_catalog_init(void);

/* ---- seqalloc.c ---- */
extern Size seqalloc_shmem_size(void);
extern void seqalloc_shmem_init(void);
extern void seqalloc_init(void);
extern int64 seqalloc_reserve(StreamInfo *info, StreamShard *shard, int count,
							  TimestampTz *arrival);
extern int64 seqalloc_stable_seq(StreamInfo *info, StreamShard *shard);
extern void seqalloc_forget_stream(int32 stream_id);
extern bool seqalloc_wait_for_records(StreamInfo *info, StreamShard *shard,
									  int64 from_seq, long timeout_ms);
extern char *seq_to_text(int32 stream_id, int32 shard_index, int64 seq);
extern text *seq_to_text_datum(int32 stream_id, int32 shard_index, int64 seq);
extern void seq_format(char *out, int32 stream_id, int32 shard_index, int64 seq);
extern void seq_format_seq(char *out, int64 seq);
extern bool seq_from_text(const char *text, int32 *stream_id,
						  int32 *shard_index, int64 *seq);
extern int64 seq_bucket_now(TimestampTz now);

/* ---- storage.c ---- */
/*
 * A record as a scan sees it.  The datums point into a pinned buffer (or a
 * detoasted copy) and are valid only during the sink callback.
 */
typedef struct StreamRecord
{
	int64		seq;
	TimestampTz arrival;
	Datum		partition_key;
	Datum		data;
} StreamRecord;

typedef void (*RecordSink) (void *arg, const StreamRecord *rec);

typedef struct PutItem
{
	int			input_index;
	StreamShard *shard;
	text	   *partition_key;
	bytea	   *data;
	int64		seq;
	TimestampTz arrival;
} PutItem;

extern void storage_insert(StreamInfo *info, PutItem *items, int nitems);
extern int	storage_read(StreamInfo *info, StreamShard *shard, int64 from_seq,
						 int64 to_seq, TimestampTz min_arrival, int limit,
						 Size max_bytes, RecordSink sink, void *arg,
						 int64 *next_from);
extern int64 storage_max_seq(StreamInfo *info, StreamShard *shard);
extern int64 stream_trim_horizon_seq(StreamInfo *info, TimestampTz now,
									 TimestampTz *min_arrival);

#endif							/* STREAM_H */
