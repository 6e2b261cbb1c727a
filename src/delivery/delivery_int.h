/*
 * delivery/delivery_int.h: what the files of src/delivery/ share (delivery
 * streams, Firehose's model): limits, the configuration, a batch and its
 * records, and each file's functions.  Other modules include
 * delivery/delivery.h only.
 *
 * Include stream.h (and so postgres.h) before this file.
 */
#ifndef STREAM_DELIVERY_INT_H
#define STREAM_DELIVERY_INT_H

#include <sys/types.h>

#include "access/tupdesc.h"
#include "storage/lockdefs.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "codec.h"
#include "runtime/runtime.h"

/*
 * Firehose limits (kinesis-semantics.md 5.1, 5.2, 5.6); those the SQL parts
 * check too (the name, BufferingHints) are FIREHOSE_* in kinesis.h.
 */
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
#define DELIVERY_OBJECT_NAME_MAX	(FIREHOSE_NAME_MAX + 1 + 10 + 1 + 19 + 1 + 36 + 16)
/* the directory under a destination where batches are staged: no key may name it */
#define DELIVERY_STAGING_NAME		".firehose-staging"

typedef enum DeliveryFormat
{
	DFMT_JSON,
	DFMT_CSV,
	DFMT_PARQUET,
	DFMT_RAW
} DeliveryFormat;


/* ---- delivery_prefix.c: object key templates ---- */
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

extern char *prefix_effective(const char *prefix, bool error_prefix);

/* ---- delivery_partition.c: partition key queries (SQL/JSON paths, or the jq subset Firehose users write) ---- */
typedef struct KeyQuery KeyQuery;
extern KeyQuery *keyquery_compile(const char *key, const char *expr);
extern char *keyquery_eval(const KeyQuery *q, Jsonb *doc, int *len);
extern char *jsonb_scalar_text(Jsonb *jb);

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

/* ---- delivery_rowmap.c: JSON to rows; delivery_output.c: formats and writers ---- */

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
	struct JsonDecoder *decoder;	/* the fast path (runtime/json_decode.h) */
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

/* ---- delivery_catalog.c: configuration, names, catalog lookups ---- */
typedef struct DeliveryConfig
{
	int32		id;
	char	   *name;
	bool		direct_put;
	int32		source_stream_id;
	char	   *destination;	/* NULL for a table destination */
	char	   *destination_table;
	DeliveryFormat format;
	Oid			schema;
	StreamCodec compression;
	Size		buffer_bytes;
	int			interval_s;
	char	   *prefix;
	char	   *error_prefix;	/* effective, never NULL */
	char	   *backup_prefix;	/* NULL: no backup */
	Oid			transform;
	Oid			owner;
	int32		version;
	int			nkeys;
	char	  **key_names;
	KeyQuery  **key_queries;
	PrefixTemplate *prefix_t;
	PrefixTemplate *error_t;
	PrefixTemplate *backup_t;
} DeliveryConfig;


extern void check_delivery_name(const char *name);
extern Oid	stream_nsp(void);
extern int	catalog_spi(const char *sql, int nargs, Oid *argtypes, Datum *args, bool read_only, long count);
extern void catalog_load_checkpoints(int32 id, ProcessorCheckpoints *cps, MemoryContext cxt);
extern char *spi_text(int row, int col);
extern Datum spi_datum(int row, int col, bool *isnull);
extern DeliveryConfig *load_config(int32 id, MemoryContext cxt);
extern void lock_or_retry(DeliveryConfig *cfg, Oid relid, LOCKMODE mode, const char *what);

/* the name cache of put and flush */
typedef struct DeliveryNameEntry
{
	char		name[FIREHOSE_NAME_MAX + 1];
	int32		delivery_stream_id;
	int32		stream_id;
	bool		direct_put;
} DeliveryNameEntry;

extern DeliveryNameEntry *delivery_lookup_name(const char *name);

/* ---- a batch and its records (delivery_batch.c) ---- */
typedef enum RecStatus
{
	REC_OK,
	REC_DROPPED,
	REC_FAILED
} RecStatus;

typedef struct SrcRec
{
	int32		shard_index;
	int64		seq;
	int64		sub_seq;		/* a KPL sub-record's number within its aggregate */
	bool		aggregated;		/* a KPL sub-record (de-aggregated as Firehose does) */
	TimestampTz arrival;
	char	   *data;
	int			len;
	char	   *pkey;
	int			pkey_len;
	/* after the transform */
	RecStatus	status;
	char	   *out;
	int			outlen;
	Jsonb	   *lambda_keys;
	const char *error_type;
	const char *error_code;
	char	   *error_message;
	int			attempts;
} SrcRec;

typedef struct Batch
{
	DeliveryConfig *cfg;
	StreamInfo *info;
	ProcessorUnit unit;			/* its ranges; unit.unit_no is the batch number */
	SrcRec	   *recs;
	int			nrecs;
	int			cap;
	Size		bytes;
	/* results */
	int64		delivered;
	int64		dropped;
	int64		failed;
	int64		out_bytes;
	StringInfoData files;		/* jsonb array text of the files */
	int			nfiles;
} Batch;


extern void read_batch(Batch *b);

/* ---- delivery_convert.c: record failures, conversion as the owner, the error envelope ---- */
extern MemoryContext batch_cxt;	/* where record failures keep their messages */
extern const char *convert_error_type;
extern const char *convert_error_code;
extern void fail_record(SrcRec *r, const char *type, const char *code, const char *message);
extern void append_error_line(StringInfo out, Batch *b, SrcRec *r, TimestampTz now);

/* Converts one OK record; an error it raises fails that record alone. */
typedef void (*ConvertRecordFn) (SrcRec *r, void *arg);
extern void convert_records(Batch *b, MemoryContext cxt, MemoryContext scratch,
							ConvertRecordFn convert, void *arg);

/* ---- delivery_partition.c ---- */
extern bool partition_values(Batch *b, SrcRec *r, char **names, char **values, int nkeys);

/* ---- delivery_transform.c ---- */
extern void run_transform(Batch *b, MemoryContext cxt);

/* ---- delivery_files.c, delivery_publish.c: a server directory ---- */
extern void write_file_batch(Batch *b, MemoryContext cxt, const char *staging);
extern bool publish_files(DeliveryConfig *cfg, const char *files_json, const char *staging, MemoryContext cxt);
extern void remove_staging(DeliveryConfig *cfg, const char *staging, MemoryContext cxt);

/* ---- delivery_table.c ---- */
extern Oid	resolve_table(DeliveryConfig *cfg);
extern void deliver_to_table(Batch *b, MemoryContext cxt);

/* ---- delivery_buffer.c: what is buffered, when a batch is due ---- */
extern void buffer_forget(int32 id);
extern void buffer_keep_only(const int32 *ids, int n);
extern bool buffer_due(DeliveryConfig *cfg, StreamInfo *info, bool force,
					   ProcessorCheckpoints *cps, Batch *b, bool *full);

/* ---- delivery_batch.c ---- */
extern RunResult deliver_unit(int32 id, bool force, MemoryContext cxt, bool *drained);

#endif							/* STREAM_DELIVERY_INT_H */
