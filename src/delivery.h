/*
 * delivery.h: delivery streams (Firehose): declarations shared by
 * delivery.c (catalog, direct put, batches, exactly-once protocol, worker
 * round), delivery_format.c (record conversion and file writers) and
 * prefix.c (object key templates).
 *
 * Include stream.h (and so postgres.h) before this file.
 */
#ifndef STREAM_DELIVERY_H
#define STREAM_DELIVERY_H

#include <sys/types.h>

#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "codec.h"

/* Firehose limits (kinesis-semantics.md 5.1, 5.2, 5.6) */
#define DELIVERY_NAME_MAX			64
#define DELIVERY_RECORD_MAX_BYTES	(1000 * 1024)
#define DELIVERY_BATCH_MAX			500
#define DELIVERY_BATCH_MAX_BYTES	(4 * 1024 * 1024)
#define DELIVERY_MAX_PARTITIONS		500
#define DELIVERY_TRANSFORM_RETRIES	3
#define DELIVERY_PREFIX_MAX			512
/* file names: a path component holds 255 bytes (NAME_MAX) */
#define DELIVERY_COMPONENT_MAX		255
/* a partition value, percent-encoded for a path: at most, and the least room a prefix must leave it */
#define DELIVERY_PARTITION_VALUE_MAX	128
#define DELIVERY_PARTITION_VALUE_MIN	16
/* <name, 64>-<version, 10>-yyyy-MM-dd-HH-mm-ss-<uuid, 36><extension, up to 16> */
#define DELIVERY_OBJECT_NAME_MAX	(64 + 1 + 10 + 1 + 19 + 1 + 36 + 16)
/* the directory under a destination where batches are staged: no key may name it */
#define DELIVERY_STAGING_NAME		".firehose-staging"

typedef enum DeliveryFormat
{
	DFMT_JSON,
	DFMT_CSV,
	DFMT_PARQUET,
	DFMT_RAW
} DeliveryFormat;


/* ---- prefix.c: object key templates ---- */
typedef enum PrefixSegKind
{
	PSEG_LITERAL,
	PSEG_TIMESTAMP,				/* text: the DateTimeFormatter pattern */
	PSEG_RANDOM,				/* !{firehose:random-string} */
	PSEG_ERROR_TYPE,			/* !{firehose:error-output-type} */
	PSEG_KEY_QUERY,				/* !{partitionKeyFromQuery:text} */
	PSEG_KEY_LAMBDA				/* !{partitionKeyFromLambda:text} */
} PrefixSegKind;

typedef struct PrefixSeg
{
	PrefixSegKind kind;
	char	   *text;
} PrefixSeg;

typedef struct PrefixTemplate
{
	int			nsegs;
	PrefixSeg  *segs;
	bool		has_timestamp;
	bool		has_error_type;
	bool		has_query_keys;
	bool		has_lambda_keys;
	bool		has_expressions;
} PrefixTemplate;

/* Values a template is evaluated with. */
typedef struct PrefixValues
{
	TimestampTz ts;				/* oldest record of the object */
	const char *error_type;		/* NULL outside the error prefix */
	int			nkeys;
	char	  **key_names;		/* "q:<name>" or "l:<name>" */
	char	  **key_values;		/* already made safe for paths */
	uint32		seed;			/* for random strings: deterministic */
} PrefixValues;

extern PrefixTemplate *prefix_parse(const char *s, const char *member);
extern char *prefix_eval(const PrefixTemplate *t, const PrefixValues *v);
extern char *prefix_eval_checked(const PrefixTemplate *t, const PrefixValues *v, char **why);
extern void prefix_check_worst_case(const PrefixTemplate *t, const char *member, const char *prefix);
extern void prefix_format_timestamp(StringInfo out, const char *pattern, TimestampTz ts);
extern char *prefix_partition_value(const char *value, int len, const char **why);

/* Partition key queries: SQL/JSON paths, or the jq subset Firehose users write. */
typedef struct KeyQuery KeyQuery;
extern KeyQuery *keyquery_compile(const char *key, const char *expr);
extern char *keyquery_eval(const KeyQuery *q, Jsonb *doc, int *len);
extern char *jsonb_scalar_text(Jsonb *jb);
extern char *prefix_effective(const char *prefix, bool error_prefix);

/* ---- destdir.c: directories below a destination, by descriptor, never through a link ---- */
typedef struct DestDir
{
	int			fd;				/* -1 once closed */
	char	   *path;			/* for messages */
	MemoryContext cxt;			/* closes the descriptor when reset at the latest */
	MemoryContextCallback cb;
} DestDir;

extern DestDir *destdir_open_root(const char *dest, MemoryContext cxt);
extern DestDir *destdir_open_sub(DestDir *parent, const char *name, bool create);
extern DestDir *destdir_open_path(DestDir *root, const char *rel_dir, bool create);
extern void destdir_close(DestDir *d);
extern void destdir_fsync(DestDir *d);
extern DestDir *destdir_staging_root(DestDir *root, bool create);
extern char *destdir_staging_name(int32 id, int64 batch_no);
extern DestDir *destdir_create_staging(DestDir *sroot, const char *name);
extern DestDir *destdir_open_staging(DestDir *sroot, const char *name);
extern void destdir_remove_staging(DestDir *sroot, const char *name);
extern bool destdir_is_tmp_name(const char *name);
extern bool destdir_has_file(DestDir *d, const char *name);
extern void destdir_rename(DestDir *from, const char *from_name, DestDir *to, const char *to_name);
extern int	destdir_create_file(DestDir *d, const char *name, mode_t mode);
extern int	destdir_probe_write(DestDir *d);

/* ---- delivery_format.c: JSON to rows, writers ---- */

/* Maps JSON objects onto the columns of a composite type. */
typedef struct RowMapper
{
	TupleDesc	desc;			/* live columns only, blessed when a named type */
	Oid			typid;			/* the composite type */
	int			natts;
	int		   *attnums;		/* position in the composite type (1-based) */
	char	  **names_lower;
	FmgrInfo   *in_funcs;
	Oid		   *in_ioparams;
	int32	   *typmods;
	Oid		   *types;
	FmgrInfo   *out_funcs;
	bool	   *has_default;	/* table destination: column has a default */
	bool	   *is_generated;
} RowMapper;

extern RowMapper *rowmapper_create(Oid typid, Oid relid);
extern void rowmapper_json_to_row(RowMapper *m, const char *data, int len,
								  Datum *values, bool *isnull, bool *present);
extern void csv_append_row(StringInfo out, RowMapper *m, Datum *values, bool *isnull);
extern void json_append_row(StringInfo out, RowMapper *m, Datum *values, bool *isnull);
extern void delivery_compress_file(StreamCodec c, StringInfo in, StringInfo out);
extern const char *delivery_file_extension(DeliveryFormat f, StreamCodec c);
extern void delivery_write_file(DestDir *dir, const char *name, const char *data, Size len);
extern void *delivery_parquet_open(DestDir *dir, const char *name, RowMapper *m, StreamCodec c);
extern void delivery_parquet_add(void *w, Datum *values, bool *isnull);
extern uint64 delivery_parquet_finish(void *w);

/* ---- delivery.c: called by the background worker (bgw/db_worker.c) ---- */

/*
 * One delivery round of the current database: each delivery stream gets at
 * most one unit of work, each in transactions of its own.  flush_ids names
 * delivery streams to flush now (flush_all: all of them).  Returns true when
 * some delivery stream has more to deliver at once; *extension_missing when
 * the extension is gone.  ticket numbers this round's flush requests;
 * *done_ticket is the highest ticket whose flushes are all over.  Call
 * outside a transaction.
 */
extern bool delivery_run_round(const int32 *flush_ids, int nflush, bool flush_all,
							   uint32 ticket, uint32 *done_ticket,
							   bool *extension_missing);

#endif							/* STREAM_DELIVERY_H */
