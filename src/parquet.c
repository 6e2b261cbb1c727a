/*
 * parquet.c: Parquet writer (format: parquet.thrift, Encodings.md,
 * LogicalTypes.md; notes in shared/reference/parquet-in-c.md).
 *
 * File layout: "PAR1", row groups (per column: optional dictionary page, then
 * data pages v1), FileMetaData in Thrift compact form, its length, "PAR1".
 *
 * Type mapping (physical type, annotation):
 *   bool                 BOOLEAN
 *   int2, int4           INT32, INTEGER(16|32, signed)
 *   int8                 INT64, INTEGER(64, signed)
 *   float4, float8       FLOAT, DOUBLE
 *   numeric(p,s), p<=38  DECIMAL(p,s): INT32 if p<=9, INT64 if p<=18, else
 *                        FIXED_LEN_BYTE_ARRAY(16); values rounded half away
 *                        from zero to s digits like a cast to numeric(p,s)
 *   numeric (no typmod)  DECIMAL(38,9) in FIXED_LEN_BYTE_ARRAY(16), rounded
 *                        to 9 fractional digits; at most 29 integer digits
 *   numeric(p>38)        STRING (text output)
 *                        NaN, ±Infinity or a value too large for the DECIMAL
 *                        raise an error naming the column
 *   text, varchar, bpchar  STRING (bpchar keeps its padding, as COPY does)
 *   json, jsonb          JSON (text form; jsonb through jsonb_out)
 *   bytea                BYTE_ARRAY without annotation
 *   date                 DATE (days since 1970-01-01)
 *   timestamp            INT64 TIMESTAMP(MICROS, isAdjustedToUTC=false)
 *   timestamptz          INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true)
 *   uuid                 FIXED_LEN_BYTE_ARRAY(16) UUID
 *   anything else        STRING holding the type's text output (arrays,
 *                        composites, enums, intervals, time, inet, ...)
 *   domains              as their base type
 * ±infinity in date and timestamps is clamped to +/- the largest value of the
 * physical type (INT32_MAX or INT64_MAX, negated for -infinity), which is how
 * DuckDB itself stores infinite dates and timestamps, so DuckDB reads them
 * back as ±infinity; other readers see far-away dates.  Finite timestamps after 294246 AD, which overflow INT64 once
 * moved to the Unix epoch, raise an error.  Text is written as UTF-8
 * (converted from the server encoding when that differs).
 *
 * Encodings: every column except BOOLEAN starts a chunk with a dictionary;
 * once the dictionary's PLAIN size passes dictionary_bytes, or the first
 * DICT_PROBE_VALUES values turn out nearly all distinct, the page being
 * built is finished with dictionary indices and the rest of the chunk (and
 * of later row groups of the file) is PLAIN.  Definition levels: RLE/bit-
 * packed hybrid with the 4-byte length prefix that v1 pages require.
 *
 * Statistics per chunk: null_count, min_value/max_value (TYPE_ORDER: signed
 * for numbers and DECIMAL, unsigned bytes for strings, bytea and UUID; NaN
 * left out), plus the deprecated min/max for types whose old signed order
 * agrees.  Byte arrays are truncated to STATS_PREFIX bytes at a UTF-8
 * boundary: min as a prefix, max as a prefix with its last ASCII byte
 * incremented, and is_{min,max}_value_exact says when that happened.
 */
#include "postgres.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "parquet.h"
#include "stream.h"
#include "thrift.h"

#define PARQUET_CREATED_BY	"stream version 0.1.0 (build pg15)"
#define PARQUET_MAGIC		"PAR1"

/* Unconstrained numeric becomes DECIMAL(38,9). */
#define NUMERIC_DEFAULT_PRECISION	38
#define NUMERIC_DEFAULT_SCALE		9
#define DECIMAL_MAX_PRECISION		38

/* Byte-array statistics keep at most this many bytes. */
#define STATS_PREFIX		64

/*
 * A chunk whose first DICT_PROBE_VALUES values are over 90% distinct (ids,
 * timestamps, measurements) drops its dictionary early: it would only cost
 * hashing and a dictionary page as large as the data.
 */
#define DICT_PROBE_VALUES	32768

/* Smallest page and row group sizes accepted (tests go this low). */
#define MIN_PAGE_BYTES		1024
#define MIN_ROW_GROUP_BYTES	4096

/* Unix epoch minus PostgreSQL epoch (2000-01-01). */
#define EPOCH_SHIFT_DAYS	(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define EPOCH_SHIFT_USECS	((int64) EPOCH_SHIFT_DAYS * USECS_PER_DAY)

/* parquet.thrift enums */
enum
{
	PQ_BOOLEAN = 0, PQ_INT32 = 1, PQ_INT64 = 2, PQ_FLOAT = 4, PQ_DOUBLE = 5,
	PQ_BYTE_ARRAY = 6, PQ_FLBA = 7
};
enum
{
	CT_NONE = -1, CT_UTF8 = 0, CT_DECIMAL = 5, CT_DATE = 6,
	CT_TIMESTAMP_MICROS = 10, CT_INT_16 = 16, CT_INT_32 = 17, CT_INT_64 = 18,
	CT_JSON = 19
};
enum
{
	LT_NONE = 0, LT_STRING = 1, LT_DECIMAL = 5, LT_DATE = 6, LT_TIMESTAMP = 8,
	LT_INTEGER = 10, LT_JSON = 12, LT_UUID = 14
};
enum
{
	ENC_PLAIN = 0, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8
};
enum
{
	PAGE_DATA = 0, PAGE_DICTIONARY = 2
};
enum
{
	REP_REQUIRED = 0, REP_OPTIONAL = 1
};

/* How a PostgreSQL value is turned into a Parquet value. */
typedef enum PqKind
{
	PK_BOOL,
	PK_INT16,
	PK_INT32,
	PK_INT64,
	PK_FLOAT4,
	PK_FLOAT8,
	PK_DECIMAL,
	PK_VARLENA_TEXT,			/* text, varchar, bpchar, json: bytes as stored */
	PK_BYTEA,
	PK_DATE,
	PK_TIMESTAMP,
	PK_UUID,
	PK_JSONB,					/* jsonb: its text form, printed without fmgr */
	PK_OUTPUT					/* type output function, as STRING or JSON */
} PqKind;

/* One converted value of the row being added. */
typedef struct PqValue
{
	bool		isnull;
	int			len;			/* BYTE_ARRAY length */
	const char *ptr;			/* BYTE_ARRAY bytes */
	int32		entry;			/* PK_JSONB: known dictionary entry, or -1 */
	uint32		raw_hash;		/* PK_JSONB: hash of raw_ptr/raw_len */
	const char *raw_ptr;		/* PK_JSONB: stored bytes, to remember */
	int			raw_len;
	union
	{
		int32		i32;
		int64		i64;
		float4		f4;
		float8		f8;
		int128		dec;
		uint8		uuid[16];
	}			v;
} PqValue;

/*
 * Stored jsonb bytes -> dictionary entry of their text, for the chunk being
 * built: a repeated jsonb value then costs a hash lookup instead of being
 * printed again (same bytes, same text).  Open addressing like the
 * dictionary; it stops growing at the dictionary's byte limit.
 */
typedef struct PqMemo
{
	StringInfoData bytes;		/* per entry: uint32 length, then the bytes */
	uint32		n;
	uint32		cap;
	uint32	   *off;			/* entry -> offset in bytes */
	uint32	   *hash;			/* entry -> hash */
	uint32	   *dict_entry;		/* entry -> dictionary entry */
	uint32	   *slots;			/* entry + 1, 0 = free */
	uint32		nslots;
} PqMemo;

/* A finished page (header + stored body) waiting for its row group's flush. */
typedef struct PqPiece
{
	struct PqPiece *next;
	int			len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} PqPiece;

typedef struct PqColumn
{
	/* schema */
	char	   *name;			/* UTF-8 */
	int			attno;			/* index into values[] / isnull[] */
	PqKind		kind;
	int			physical;
	int			type_length;	/* FLBA only */
	int			value_size;		/* PLAIN bytes per value for fixed types */
	bool		required;
	int			converted;
	int			logical;
	bool		ts_utc;
	int			int_bits;
	int			precision;
	int			scale;
	int128		dec_limit;		/* 10^precision */
	bool		to_utf8;		/* re-encode text from the server encoding */
	FmgrInfo	outfunc;
	StringInfoData text;		/* PK_JSONB: text of the current row's value */
	PqMemo	   *memo;			/* PK_JSONB in dictionary mode, else NULL */
	char	   *aligned;		/* PK_JSONB: 4-byte header copy of short values */
	int			aligned_cap;
	bool		use_dictionary; /* try a dictionary for the next chunk */

	/* current page (row group memory) */
	int			page_rows;		/* levels, NULLs included */
	int			page_nulls;
	uint8	   *defs;
	int			defs_cap;
	StringInfoData values;		/* PLAIN values */
	int			nbits;			/* BOOLEAN: bits used in values */
	uint32	   *idx;			/* dictionary indices */
	int			nidx;
	int			idx_cap;
	Size		page_bytes;

	/* current chunk */
	PqPiece    *first_piece;
	PqPiece    *last_piece;
	int64		chunk_values;
	int64		chunk_nulls;
	int64		chunk_uncompressed; /* data pages, headers included */
	int64		chunk_stored;
	int			npages_plain;
	int			npages_dict;
	bool		dict_mode;

	/* dictionary of the current chunk */
	StringInfoData dict;		/* PLAIN body of the dictionary page */
	uint32		ndict;
	uint32		dict_cap;
	int64		dict_values;	/* non-NULL values looked up in this chunk */
	uint32	   *dict_off;		/* entry -> offset in dict */
	uint32	   *dict_hash;		/* entry -> hash */
	uint32	   *slots;			/* open addressing: entry + 1, 0 = free */
	uint32		nslots;

	/* statistics of the current chunk */
	bool		has_minmax;
	bool		max_unbounded;	/* byte arrays: no valid truncated max */
	bool		min_exact;
	bool		max_exact;
	union
	{
		int32		i32;
		int64		i64;
		float4		f4;
		float8		f8;
		int128		dec;
	}			min, max;
	int			minlen;
	int			maxlen;
	char		minb[STATS_PREFIX + 1];
	char		maxb[STATS_PREFIX + 1];
} PqColumn;

struct ParquetWriter
{
	MemoryContext cxt;			/* the writer's lifetime */
	MemoryContext rg_cxt;		/* buffers of the current row group */
	MemoryContext row_cxt;		/* per-row detoasting and output functions */
	MemoryContextCallback cleanup;
	char	   *path;			/* for messages */
	int			dir_fd;			/* name is relative to it (AT_FDCWD: a path) */
	char	   *name;
	int			fd;
	bool		finished;
	StreamCodec codec;
	int			codec_id;		/* CompressionCodec enum */
	Size		row_group_bytes;
	Size		page_bytes;
	Size		dict_bytes;

	int			ncols;
	PqColumn   *cols;
	PqValue    *row;			/* converted values of the row being added */
	bool		row_cxt_dirty;

	uint64		offset;			/* bytes written */
	int64		rows;
	int64		rg_rows;
	Size		rg_bytes;
	int			nrowgroups;
	StringInfoData rowgroups;	/* serialized RowGroup structs */

	StringInfoData body;		/* scratch: page body before compression */
	StringInfoData packed;		/* scratch: compressed body */
	StringInfoData header;		/* scratch: page header */
};

static void writer_cleanup(void *arg);
static void flush_page(ParquetWriter *w, PqColumn *c);
static void flush_row_group(ParquetWriter *w);
static void column_start_chunk(ParquetWriter *w, PqColumn *c);

/* ---------------------------------------------------------------- file I/O */

static void
write_all(ParquetWriter *w, const char *data, size_t len)
{
	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		n = write(w->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			/* a short write without errno most likely means a full disk */
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write to file \"%s\": %m", w->path)));
		}
		data += n;
		len -= n;
		w->offset += n;
	}
}

/* ---------------------------------------------------------------- schema */

static void
decimal_from_typmod(int32 typmod, int *precision, int *scale)
{
	int			p,
				s;

	if (typmod < (int32) VARHDRSZ)
	{
		*precision = NUMERIC_DEFAULT_PRECISION;
		*scale = NUMERIC_DEFAULT_SCALE;
		return;
	}
	p = ((typmod - VARHDRSZ) >> 16) & 0xffff;
	/* PostgreSQL 15 scales are 11-bit signed */
	s = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;
	/* Parquet needs 0 <= scale <= precision: widen to hold the same values */
	if (s < 0)
	{
		p -= s;
		s = 0;
	}
	else if (s > p)
		p = s;
	*precision = p;
	*scale = s;
}

/*
 * A column's value kind and Parquet types, set in one call so that each type
 * mapping of column_init reads as one line (CT_NONE, LT_NONE: no annotation).
 */
static inline void
column_set_type(PqColumn *c, PqKind kind, int physical, int converted, int logical)
{
	c->kind = kind;
	c->physical = physical;
	c->converted = converted;
	c->logical = logical;
}

static void
column_init(ParquetWriter *w, PqColumn *c, Form_pg_attribute att, bool required)
{
	int32		typmod = att->atttypmod;
	Oid			typid = getBaseTypeAndTypmod(att->atttypid, &typmod);
	Oid			outfn;
	bool		varlena;
	const char *name = NameStr(att->attname);

	c->name = pstrdup(name);
	if (GetDatabaseEncoding() != PG_UTF8)
		c->name = pg_server_to_any(name, strlen(name), PG_UTF8);
	c->attno = att->attnum - 1;
	c->required = required;
	c->converted = CT_NONE;
	c->logical = LT_NONE;
	c->use_dictionary = (w->dict_bytes > 0);
	getTypeOutputInfo(typid, &outfn, &varlena);
	fmgr_info_cxt(outfn, &c->outfunc, w->cxt);
	c->to_utf8 = (GetDatabaseEncoding() != PG_UTF8);

	switch (typid)
	{
		case BOOLOID:
			column_set_type(c, PK_BOOL, PQ_BOOLEAN, CT_NONE, LT_NONE);
			c->use_dictionary = false;
			break;
		case INT2OID:
			column_set_type(c, PK_INT16, PQ_INT32, CT_INT_16, LT_INTEGER);
			c->int_bits = 16;
			break;
		case INT4OID:
			column_set_type(c, PK_INT32, PQ_INT32, CT_INT_32, LT_INTEGER);
			c->int_bits = 32;
			break;
		case INT8OID:
			column_set_type(c, PK_INT64, PQ_INT64, CT_INT_64, LT_INTEGER);
			c->int_bits = 64;
			break;
		case FLOAT4OID:
			column_set_type(c, PK_FLOAT4, PQ_FLOAT, CT_NONE, LT_NONE);
			break;
		case FLOAT8OID:
			column_set_type(c, PK_FLOAT8, PQ_DOUBLE, CT_NONE, LT_NONE);
			break;
		case NUMERICOID:
			decimal_from_typmod(typmod, &c->precision, &c->scale);
			if (c->precision > DECIMAL_MAX_PRECISION)
			{
				column_set_type(c, PK_OUTPUT, PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
				break;
			}
			column_set_type(c, PK_DECIMAL,
							c->precision <= 9 ? PQ_INT32 :
							c->precision <= 18 ? PQ_INT64 : PQ_FLBA,
							CT_DECIMAL, LT_DECIMAL);
			if (c->physical == PQ_FLBA)
				c->type_length = 16;
			c->dec_limit = 1;
			for (int k = 0; k < c->precision; k++)
				c->dec_limit *= 10;
			break;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
			column_set_type(c, (typid == NAMEOID) ? PK_OUTPUT : PK_VARLENA_TEXT,
							PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
			break;
		case JSONOID:
		case JSONBOID:
			column_set_type(c, (typid == JSONOID) ? PK_VARLENA_TEXT : PK_JSONB,
							PQ_BYTE_ARRAY, CT_JSON, LT_JSON);
			if (typid == JSONBOID)
			{
				MemoryContext old = MemoryContextSwitchTo(w->cxt);

				initStringInfo(&c->text);
				c->aligned_cap = 256;
				c->aligned = palloc(c->aligned_cap);
				MemoryContextSwitchTo(old);
			}
			break;
		case BYTEAOID:
			column_set_type(c, PK_BYTEA, PQ_BYTE_ARRAY, CT_NONE, LT_NONE);
			break;
		case DATEOID:
			column_set_type(c, PK_DATE, PQ_INT32, CT_DATE, LT_DATE);
			break;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			column_set_type(c, PK_TIMESTAMP, PQ_INT64, CT_TIMESTAMP_MICROS, LT_TIMESTAMP);
			c->ts_utc = (typid == TIMESTAMPTZOID);
			break;
		case UUIDOID:
			column_set_type(c, PK_UUID, PQ_FLBA, CT_NONE, LT_UUID);
			c->type_length = UUID_LEN;
			break;
		default:
			column_set_type(c, PK_OUTPUT, PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
			break;
	}

	switch (c->physical)
	{
		case PQ_INT32:
		case PQ_FLOAT:
			c->value_size = 4;
			break;
		case PQ_INT64:
		case PQ_DOUBLE:
			c->value_size = 8;
			break;
		case PQ_FLBA:
			c->value_size = c->type_length;
			break;
		default:
			c->value_size = 0;
			break;
	}
}

static void
write_schema(ThriftWriter *tw, ParquetWriter *w)
{
	int			i;

	thrift_list_begin(tw, 2, THRIFT_STRUCT, w->ncols + 1);
	thrift_elem_struct_begin(tw);
	thrift_field_string(tw, 4, "schema");
	thrift_field_i32(tw, 5, w->ncols);
	thrift_struct_end(tw);

	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];

		thrift_elem_struct_begin(tw);
		thrift_field_i32(tw, 1, c->physical);
		if (c->physical == PQ_FLBA)
			thrift_field_i32(tw, 2, c->type_length);
		thrift_field_i32(tw, 3, c->required ? REP_REQUIRED : REP_OPTIONAL);
		thrift_field_string(tw, 4, c->name);
		if (c->converted != CT_NONE)
			thrift_field_i32(tw, 6, c->converted);
		if (c->kind == PK_DECIMAL)
		{
			thrift_field_i32(tw, 7, c->scale);
			thrift_field_i32(tw, 8, c->precision);
		}
		if (c->logical != LT_NONE)
		{
			thrift_struct_begin(tw, 10);
			switch (c->logical)
			{
				case LT_DECIMAL:
					thrift_struct_begin(tw, LT_DECIMAL);
					thrift_field_i32(tw, 1, c->scale);
					thrift_field_i32(tw, 2, c->precision);
					thrift_struct_end(tw);
					break;
				case LT_TIMESTAMP:
					thrift_struct_begin(tw, LT_TIMESTAMP);
					thrift_field_bool(tw, 1, c->ts_utc);
					thrift_struct_begin(tw, 2); /* TimeUnit */
					thrift_field_empty_struct(tw, 2);	/* MICROS */
					thrift_struct_end(tw);
					thrift_struct_end(tw);
					break;
				case LT_INTEGER:
					thrift_struct_begin(tw, LT_INTEGER);
					thrift_field_i8(tw, 1, (int8) c->int_bits);
					thrift_field_bool(tw, 2, true);
					thrift_struct_end(tw);
					break;
				default:
					/* STRING, DATE, JSON, UUID: empty structs */
					thrift_field_empty_struct(tw, c->logical);
					break;
			}
			thrift_struct_end(tw);
		}
		thrift_struct_end(tw);
	}
}

/* ---------------------------------------------------------------- create */

ParquetWriter *
parquet_writer_create(const char *path, TupleDesc desc, StreamCodec codec,
					  Size row_group_bytes)
{
	ParquetWriterOptions opts = {0};

	opts.row_group_bytes = row_group_bytes;
	return parquet_writer_create_ext(path, desc, codec, &opts);
}

ParquetWriter *
parquet_writer_create_ext(const char *path, TupleDesc desc, StreamCodec codec,
						  const ParquetWriterOptions *opts)
{
	MemoryContext cxt;
	MemoryContext old;
	ParquetWriter *w;
	mode_t		oumask;
	int			i;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "parquet writer",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	w = palloc0(sizeof(ParquetWriter));
	w->cxt = cxt;
	w->fd = -1;
	w->dir_fd = opts->dir_path ? opts->dir_fd : AT_FDCWD;
	w->name = pstrdup(path);
	w->path = opts->dir_path ? psprintf("%s/%s", opts->dir_path, path) : w->name;
	w->codec = codec;
	switch (codec)
	{
		case STREAM_CODEC_NONE:
			w->codec_id = 0;
			break;
		case STREAM_CODEC_SNAPPY:
			w->codec_id = 1;
			break;
		case STREAM_CODEC_GZIP:
			w->codec_id = 2;
			break;
		case STREAM_CODEC_ZSTD:
			w->codec_id = 6;
			break;
	}
	w->row_group_bytes = opts->row_group_bytes ? opts->row_group_bytes : PARQUET_DEFAULT_ROW_GROUP_BYTES;
	w->row_group_bytes = Max(Min(w->row_group_bytes, PARQUET_MAX_ROW_GROUP_BYTES), MIN_ROW_GROUP_BYTES);
	w->page_bytes = opts->page_bytes ? opts->page_bytes : PARQUET_DEFAULT_PAGE_BYTES;
	w->page_bytes = Max(Min(w->page_bytes, w->row_group_bytes), MIN_PAGE_BYTES);
	w->dict_bytes = opts->no_dictionary ? 0 :
		(opts->dictionary_bytes ? opts->dictionary_bytes : PARQUET_DEFAULT_DICTIONARY_BYTES);

	w->cols = palloc0(sizeof(PqColumn) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		column_init(w, &w->cols[w->ncols++], att,
					opts->required_not_null && att->attnotnull);
	}
	w->row = palloc0(sizeof(PqValue) * Max(w->ncols, 1));
	initStringInfo(&w->rowgroups);
	initStringInfo(&w->body);
	initStringInfo(&w->packed);
	initStringInfo(&w->header);
	w->rg_cxt = AllocSetContextCreate(cxt, "parquet row group",
									  ALLOCSET_DEFAULT_SIZES);
	w->row_cxt = AllocSetContextCreate(cxt, "parquet row",
									   ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < w->ncols; i++)
		column_start_chunk(w, &w->cols[i]);

	/* from here on an error or a context reset removes the file */
	w->cleanup.func = writer_cleanup;
	w->cleanup.arg = w;
	MemoryContextRegisterResetCallback(cxt, &w->cleanup);

	/* like COPY TO: readable by others, whatever the server's umask */
	oumask = umask(S_IWGRP | S_IWOTH);
	w->fd = openat(w->dir_fd, w->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | PG_BINARY, 0666);
	umask(oumask);
	if (w->fd < 0)
	{
		int			save_errno = errno;

		w->finished = true;		/* nothing of ours to unlink */
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", w->path)));
	}
	write_all(w, PARQUET_MAGIC, 4);
	MemoryContextSwitchTo(old);
	return w;
}

/* Runs when the writer's context goes away: only finish keeps the file. */
static void
writer_cleanup(void *arg)
{
	ParquetWriter *w = (ParquetWriter *) arg;

	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (!w->finished)
		(void) unlinkat(w->dir_fd, w->name, 0);
	w->finished = true;
}

void
parquet_writer_abort(ParquetWriter *w)
{
	if (w == NULL)
		return;
	MemoryContextDelete(w->cxt);
}

/* ---------------------------------------------------------------- chunks */

static void
column_start_chunk(ParquetWriter *w, PqColumn *c)
{
	MemoryContext old = MemoryContextSwitchTo(w->rg_cxt);

	c->page_rows = 0;
	c->page_nulls = 0;
	c->defs_cap = 1024;
	c->defs = palloc(c->defs_cap);
	initStringInfo(&c->values);
	c->nbits = 0;
	c->idx = NULL;
	c->nidx = 0;
	c->idx_cap = 0;
	c->page_bytes = 0;

	c->first_piece = c->last_piece = NULL;
	c->chunk_values = 0;
	c->chunk_nulls = 0;
	c->chunk_uncompressed = 0;
	c->chunk_stored = 0;
	c->npages_plain = 0;
	c->npages_dict = 0;

	c->dict_mode = c->use_dictionary;
	c->ndict = 0;
	c->dict_values = 0;
	if (c->dict_mode)
	{
		initStringInfo(&c->dict);
		c->dict_cap = 256;
		c->dict_off = palloc(sizeof(uint32) * c->dict_cap);
		c->dict_hash = palloc(sizeof(uint32) * c->dict_cap);
		c->nslots = 1024;
		c->slots = palloc0(sizeof(uint32) * c->nslots);
		c->idx_cap = 1024;
		c->idx = palloc(sizeof(uint32) * c->idx_cap);
	}
	c->memo = NULL;
	if (c->dict_mode && c->kind == PK_JSONB)
	{
		c->memo = palloc0(sizeof(PqMemo));
		initStringInfo(&c->memo->bytes);
		c->memo->cap = 256;
		c->memo->off = palloc(sizeof(uint32) * c->memo->cap);
		c->memo->hash = palloc(sizeof(uint32) * c->memo->cap);
		c->memo->dict_entry = palloc(sizeof(uint32) * c->memo->cap);
		c->memo->nslots = 1024;
		c->memo->slots = palloc0(sizeof(uint32) * c->memo->nslots);
	}

	c->has_minmax = false;
	c->max_unbounded = false;
	c->min_exact = c->max_exact = true;
	c->minlen = c->maxlen = 0;
	MemoryContextSwitchTo(old);
}

/* ---------------------------------------------------------------- RLE */

static inline void
put_uvarint(StringInfo s, uint32 v)
{
	while (v >= 0x80)
	{
		appendStringInfoCharMacro(s, (char) ((v & 0x7F) | 0x80));
		v >>= 7;
	}
	appendStringInfoCharMacro(s, (char) v);
}

/*
 * RLE/bit-packed hybrid (Encodings.md): repeats of 8 or more become an RLE
 * run, everything else goes into bit-packed groups of 8.  A bit-packed run
 * followed by an RLE run must hold a multiple of 8 values, so a few values
 * of the repeat are taken into the literals first; only the last group of
 * the data is padded.
 */
#define DEFINE_RLE_ENCODER(fname, T) \
static void \
fname(StringInfo out, const T *v, int n, int bw) \
{ \
	int			i = 0; \
	int			lit = 0; \
	int			vbytes = (bw + 7) / 8; \
	\
	while (i < n) \
	{ \
		T			x = v[i]; \
		int			j = i + 1; \
		\
		while (j < n && v[j] == x) \
			j++; \
		if (j - i >= 8) \
		{ \
			int			fill = (8 - ((i - lit) & 7)) & 7; \
			\
			if (j - i - fill >= 8) \
			{ \
				int			k; \
				\
				i += fill; \
				bitpack_run(out, v, lit, i, bw); \
				put_uvarint(out, (uint32) (j - i) << 1); \
				for (k = 0; k < vbytes; k++) \
					appendStringInfoCharMacro(out, (char) ((x >> (8 * k)) & 0xFF)); \
				lit = i = j; \
				continue; \
			} \
		} \
		i = j; \
	} \
	bitpack_run(out, v, lit, n, bw); \
}

#define DEFINE_BITPACK(fname, T) \
static void \
fname(StringInfo out, const T *v, int from, int to, int bw) \
{ \
	int			count = to - from; \
	int			groups = (count + 7) / 8; \
	int			total = groups * 8; \
	uint64		acc = 0; \
	int			nbits = 0; \
	char	   *dst; \
	int			i; \
	\
	if (count <= 0) \
		return; \
	put_uvarint(out, ((uint32) groups << 1) | 1); \
	enlargeStringInfo(out, groups * bw); \
	dst = out->data + out->len; \
	for (i = 0; i < total; i++) \
	{ \
		uint64		x = (i < count) ? (uint64) v[from + i] : 0; \
		\
		acc |= x << nbits; \
		nbits += bw; \
		while (nbits >= 8) \
		{ \
			*dst++ = (char) (acc & 0xFF); \
			acc >>= 8; \
			nbits -= 8; \
		} \
	} \
	out->len += groups * bw; \
	out->data[out->len] = '\0'; \
}

#define bitpack_run bitpack_u8
DEFINE_BITPACK(bitpack_u8, uint8)
DEFINE_RLE_ENCODER(rle_encode_u8, uint8)
#undef bitpack_run
#define bitpack_run bitpack_u32
DEFINE_BITPACK(bitpack_u32, uint32)
DEFINE_RLE_ENCODER(rle_encode_u32, uint32)
#undef bitpack_run

static int
bit_width(uint32 maxval)
{
	int			bw = 0;

	while (maxval > 0)
	{
		bw++;
		maxval >>= 1;
	}
	/* Arrow writes 1 for a one-entry dictionary; every reader takes it */
	return Max(bw, 1);
}

/* ---------------------------------------------------------------- pages */

/*
 * Compress a page and append its header and stored body to the column's
 * pieces.  The page body is w->body followed by tail/tail_len (PLAIN values,
 * kept where they were buffered so that an uncompressed page copies them once).
 */
static void
emit_page(ParquetWriter *w, PqColumn *c, bool dictionary_page, int num_values,
		  int encoding, const char *tail, int tail_len,
		  int64 *uncompressed, PqPiece **piece_out)
{
	ThriftWriter tw;
	const char *stored;
	int			stored_len;
	int			body_len = w->body.len + tail_len;
	PqPiece    *piece;
	char	   *dst;

	if (w->codec == STREAM_CODEC_NONE)
	{
		stored = w->body.data;
		stored_len = w->body.len;
	}
	else
	{
		if (tail_len > 0)
			appendBinaryStringInfo(&w->body, tail, tail_len);
		tail_len = 0;
		resetStringInfo(&w->packed);
		codec_compress(w->codec, w->body.data, w->body.len, &w->packed);
		stored = w->packed.data;
		stored_len = w->packed.len;
	}

	resetStringInfo(&w->header);
	thrift_begin(&tw, &w->header);
	thrift_field_i32(&tw, 1, dictionary_page ? PAGE_DICTIONARY : PAGE_DATA);
	thrift_field_i32(&tw, 2, body_len);
	thrift_field_i32(&tw, 3, stored_len + tail_len);
	if (dictionary_page)
	{
		thrift_struct_begin(&tw, 7);
		thrift_field_i32(&tw, 1, num_values);
		thrift_field_i32(&tw, 2, ENC_PLAIN);
		thrift_struct_end(&tw);
	}
	else
	{
		thrift_struct_begin(&tw, 5);
		thrift_field_i32(&tw, 1, num_values);
		thrift_field_i32(&tw, 2, encoding);
		thrift_field_i32(&tw, 3, ENC_RLE);
		thrift_field_i32(&tw, 4, ENC_RLE);
		thrift_struct_end(&tw);
	}
	thrift_end(&tw);

	piece = MemoryContextAlloc(w->rg_cxt, offsetof(PqPiece, data) +
							   w->header.len + stored_len + tail_len);
	piece->next = NULL;
	piece->len = w->header.len + stored_len + tail_len;
	dst = piece->data;
	memcpy(dst, w->header.data, w->header.len);
	dst += w->header.len;
	memcpy(dst, stored, stored_len);
	dst += stored_len;
	if (tail_len > 0)
		memcpy(dst, tail, tail_len);
	*uncompressed += w->header.len + body_len;
	*piece_out = piece;
}

static void
flush_page(ParquetWriter *w, PqColumn *c)
{
	PqPiece    *piece;
	/* an all-NULL page needs no dictionary (pyarrow chokes on empty ones) */
	bool		dict_page = c->dict_mode && c->nidx > 0;

	if (c->page_rows == 0)
		return;

	resetStringInfo(&w->body);
	if (!c->required)
	{
		int			start;

		appendBinaryStringInfo(&w->body, "\0\0\0\0", 4);
		start = w->body.len;
		if (c->page_nulls == 0 || c->page_nulls == c->page_rows)
		{
			/* the common cases as one RLE run */
			put_uvarint(&w->body, (uint32) c->page_rows << 1);
			appendStringInfoCharMacro(&w->body, c->page_nulls == 0 ? 1 : 0);
		}
		else
			rle_encode_u8(&w->body, c->defs, c->page_rows, 1);
		put_le32(w->body.data + start - 4, (uint32) (w->body.len - start));
	}
	if (dict_page)
	{
		int			bw = bit_width(c->ndict > 0 ? c->ndict - 1 : 0);

		appendStringInfoCharMacro(&w->body, (char) bw);
		rle_encode_u32(&w->body, c->idx, c->nidx, bw);
	}

	emit_page(w, c, false, c->page_rows,
			  dict_page ? ENC_RLE_DICTIONARY : ENC_PLAIN,
			  dict_page ? NULL : c->values.data, dict_page ? 0 : c->values.len,
			  &c->chunk_uncompressed, &piece);
	if (c->last_piece)
		c->last_piece->next = piece;
	else
		c->first_piece = piece;
	c->last_piece = piece;
	c->chunk_stored += piece->len;
	c->chunk_values += c->page_rows;
	if (dict_page)
		c->npages_dict++;
	else
		c->npages_plain++;

	c->page_rows = 0;
	c->page_nulls = 0;
	c->nidx = 0;
	c->nbits = 0;
	c->page_bytes = 0;
	resetStringInfo(&c->values);
}

/* ---------------------------------------------------------------- statistics */

static int
cmp_bytes(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	if (r != 0)
		return r;
	return (alen > blen) - (alen < blen);
}

/* Longest prefix of at most STATS_PREFIX bytes that ends on a UTF-8 boundary. */
static int
stats_cut(const char *p, int len)
{
	int			cut = STATS_PREFIX;

	if (len <= cut)
		return len;
	while (cut > 0 && (((unsigned char) p[cut]) & 0xC0) == 0x80)
		cut--;
	return cut;
}

static void
stats_set_min(PqColumn *c, const char *p, int len)
{
	int			cut = stats_cut(p, len);

	memcpy(c->minb, p, cut);
	c->minlen = cut;
	c->min_exact = (cut == len);
}

static void
stats_set_max(PqColumn *c, const char *p, int len)
{
	int			cut = stats_cut(p, len);

	if (cut == len)
	{
		memcpy(c->maxb, p, len);
		c->maxlen = len;
		c->max_exact = true;
		return;
	}
	/* an upper bound: bump the last ASCII byte of the prefix, drop the rest */
	while (cut > 0 && ((unsigned char) p[cut - 1]) >= 0x7F)
		cut--;
	if (cut == 0)
	{
		c->max_unbounded = true;
		return;
	}
	memcpy(c->maxb, p, cut);
	c->maxb[cut - 1]++;
	c->maxlen = cut;
	c->max_exact = false;
}

static inline void
stats_bytes(PqColumn *c, const char *p, int len)
{
	if (!c->has_minmax)
	{
		c->has_minmax = true;
		stats_set_min(c, p, len);
		stats_set_max(c, p, len);
		return;
	}
	if (cmp_bytes(p, len, c->minb, c->minlen) < 0)
		stats_set_min(c, p, len);
	if (!c->max_unbounded && cmp_bytes(p, len, c->maxb, c->maxlen) > 0)
		stats_set_max(c, p, len);
}

static void
decimal_to_be16(int128 v, char *out)
{
	int			i;
	uint128		u = (uint128) v;

	for (i = 15; i >= 0; i--)
	{
		out[i] = (char) (u & 0xFF);
		u >>= 8;
	}
}

/*
 * stats_fixed_bytes for a number of C type T kept in min/max.member: copy
 * its memory image (PLAIN is little-endian) to out and return its size;
 * signed_zero writes a zero bound as -0 (min) or +0 (max), for floats.
 */
#define STATS_FIXED(T, member, signed_zero) \
	do { \
		T			v = want_max ? c->max.member : c->min.member; \
		\
		if ((signed_zero) && v == 0) \
			v = want_max ? (T) 0 : -(T) 0; \
		memcpy(out, &v, sizeof(T)); \
		return sizeof(T); \
	} while (0)

/* PLAIN bytes of a fixed-width min or max for the Statistics struct. */
static int
stats_fixed_bytes(PqColumn *c, bool want_max, char *out)
{
	switch (c->physical)
	{
		case PQ_BOOLEAN:
			out[0] = (char) (want_max ? c->max.i32 : c->min.i32);
			return 1;
		case PQ_INT32:
			STATS_FIXED(int32, i32, false);
		case PQ_INT64:
			STATS_FIXED(int64, i64, false);
		case PQ_FLOAT:
			/* zero bounds are written as -0.0 (min) and +0.0 (max) */
			STATS_FIXED(float4, f4, true);
		case PQ_DOUBLE:
			STATS_FIXED(float8, f8, true);
		case PQ_FLBA:
			if (c->kind == PK_DECIMAL)
			{
				decimal_to_be16(want_max ? c->max.dec : c->min.dec, out);
				return 16;
			}
			/* UUID bounds live in minb/maxb */
			break;
	}
	return -1;
}

static void
write_statistics(ThriftWriter *tw, PqColumn *c)
{
	char		minv[16],
				maxv[16];
	const char *minp = NULL,
			   *maxp = NULL;
	int			minl = 0,
				maxl = 0;
	bool		legacy = false;

	if (c->has_minmax)
	{
		if (c->physical == PQ_BYTE_ARRAY || c->kind == PK_UUID)
		{
			minp = c->minb;
			minl = c->minlen;
			if (!c->max_unbounded)
			{
				maxp = c->maxb;
				maxl = c->maxlen;
			}
		}
		else
		{
			minl = stats_fixed_bytes(c, false, minv);
			maxl = stats_fixed_bytes(c, true, maxv);
			minp = minv;
			maxp = maxv;
			/* the deprecated fields use signed order: same as ours here */
			legacy = (c->physical != PQ_FLBA);
		}
	}

	thrift_struct_begin(tw, 12);
	if (legacy)
	{
		thrift_field_binary(tw, 1, maxp, maxl);
		thrift_field_binary(tw, 2, minp, minl);
	}
	thrift_field_i64(tw, 3, c->chunk_nulls);
	if (maxp)
		thrift_field_binary(tw, 5, maxp, maxl);
	if (minp)
		thrift_field_binary(tw, 6, minp, minl);
	if (maxp)
		thrift_field_bool(tw, 7, c->max_exact);
	if (minp)
		thrift_field_bool(tw, 8, c->min_exact);
	thrift_struct_end(tw);
}

/* ---------------------------------------------------------------- dictionary */

static inline uint32
hash_fixed(const void *p, int size)
{
	uint64		x;

	if (size == 4)
	{
		uint32		v;

		memcpy(&v, p, 4);
		x = v;
	}
	else if (size == 8)
		memcpy(&x, p, 8);
	else
		return hash_bytes((const unsigned char *) p, size);
	/* murmur3 finalizer: cheap and mixes all bits */
	x ^= x >> 33;
	x *= UINT64CONST(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64CONST(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return (uint32) x;
}

/* Dictionary hash of a byte array: 8 bytes per multiply, inlined. */
static inline uint32
hash_byte_array(const char *p, int len)
{
	uint64		h = (uint64) len * UINT64CONST(0x9E3779B97F4A7C15);
	uint64		x;

	while (len >= 8)
	{
		memcpy(&x, p, 8);
		h = (h ^ x) * UINT64CONST(0xbf58476d1ce4e5b9);
		h ^= h >> 31;
		p += 8;
		len -= 8;
	}
	if (len > 0)
	{
		x = 0;
		if (len >= 4)
		{
			uint32		a,
						b;

			memcpy(&a, p, 4);
			memcpy(&b, p + len - 4, 4);
			x = ((uint64) a << 32) | b;
		}
		else
			x = ((uint64) (unsigned char) p[0] << 16) |
				((uint64) (unsigned char) p[len >> 1] << 8) |
				(unsigned char) p[len - 1];
		h = (h ^ x) * UINT64CONST(0x94d049bb133111eb);
	}
	h ^= h >> 32;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 29;
	return (uint32) h;
}

static inline bool
memcmp8(const char *a, const char *b)
{
	uint64		x,
				y;

	memcpy(&x, a, 8);
	memcpy(&y, b, 8);
	return x == y;
}

static void
dict_grow_slots(ParquetWriter *w, PqColumn *c)
{
	uint32		nslots = c->nslots * 2;
	uint32		mask = nslots - 1;
	uint32	   *slots = MemoryContextAllocZero(w->rg_cxt, sizeof(uint32) * nslots);
	uint32		e;

	for (e = 0; e < c->ndict; e++)
	{
		uint32		s = c->dict_hash[e] & mask;

		while (slots[s] != 0)
			s = (s + 1) & mask;
		slots[s] = e + 1;
	}
	pfree(c->slots);
	c->slots = slots;
	c->nslots = nslots;
}

/*
 * Index of the value in the chunk's dictionary, adding it if new.  For
 * BYTE_ARRAY, p/len are the bytes and the entry is stored with its length
 * prefix; fixed types store value_size bytes.
 */
static uint32
dict_lookup(ParquetWriter *w, PqColumn *c, const char *p, int len)
{
	bool		ba = (c->physical == PQ_BYTE_ARRAY);
	uint32		h = ba ? hash_byte_array(p, len) : hash_fixed(p, len);
	uint32		mask = c->nslots - 1;
	uint32		s = h & mask;
	uint32		e;

	while ((e = c->slots[s]) != 0)
	{
		e--;
		if (c->dict_hash[e] == h)
		{
			const char *d = c->dict.data + c->dict_off[e];

			if (ba)
			{
				uint32		dl;

				memcpy(&dl, d, 4);
				if (dl == (uint32) len && memcmp(d + 4, p, len) == 0)
					return e;
			}
			else if (len == 8 ? memcmp8(d, p) : memcmp(d, p, len) == 0)
				return e;
		}
		s = (s + 1) & mask;
	}

	e = c->ndict;
	if (e == c->dict_cap)
	{
		c->dict_cap *= 2;
		c->dict_off = repalloc(c->dict_off, sizeof(uint32) * c->dict_cap);
		c->dict_hash = repalloc(c->dict_hash, sizeof(uint32) * c->dict_cap);
	}
	c->dict_off[e] = c->dict.len;
	c->dict_hash[e] = h;
	if (ba)
	{
		uint32		l = len;

		appendBinaryStringInfo(&c->dict, (const char *) &l, 4);
	}
	appendBinaryStringInfo(&c->dict, p, len);
	c->slots[s] = e + 1;
	c->ndict++;
	if (c->ndict * 2 > c->nslots)
		dict_grow_slots(w, c);
	return e;
}

/* Dictionary entry remembered for these stored bytes, or -1. */
static inline int32
memo_find(PqMemo *m, const char *p, int len, uint32 h)
{
	uint32		mask = m->nslots - 1;
	uint32		s = h & mask;
	uint32		e;

	while ((e = m->slots[s]) != 0)
	{
		e--;
		if (m->hash[e] == h)
		{
			const char *d = m->bytes.data + m->off[e];
			uint32		dl;

			memcpy(&dl, d, 4);
			if (dl == (uint32) len && memcmp(d + 4, p, len) == 0)
				return (int32) m->dict_entry[e];
		}
		s = (s + 1) & mask;
	}
	return -1;
}

static void
memo_add(ParquetWriter *w, PqMemo *m, const char *p, int len, uint32 h,
		 uint32 dict_entry)
{
	MemoryContext old;
	uint32		mask;
	uint32		s;
	uint32		e;
	uint32		l = len;

	if ((Size) m->bytes.len + len > w->dict_bytes || memo_find(m, p, len, h) >= 0)
		return;
	old = MemoryContextSwitchTo(w->rg_cxt);
	if (m->n == m->cap)
	{
		m->cap *= 2;
		m->off = repalloc(m->off, sizeof(uint32) * m->cap);
		m->hash = repalloc(m->hash, sizeof(uint32) * m->cap);
		m->dict_entry = repalloc(m->dict_entry, sizeof(uint32) * m->cap);
	}
	if ((m->n + 1) * 2 > m->nslots)
	{
		uint32		nslots = m->nslots * 2;
		uint32	   *slots = palloc0(sizeof(uint32) * nslots);

		for (e = 0; e < m->n; e++)
		{
			s = m->hash[e] & (nslots - 1);
			while (slots[s] != 0)
				s = (s + 1) & (nslots - 1);
			slots[s] = e + 1;
		}
		pfree(m->slots);
		m->slots = slots;
		m->nslots = nslots;
	}
	e = m->n++;
	m->off[e] = m->bytes.len;
	m->hash[e] = h;
	m->dict_entry[e] = dict_entry;
	appendBinaryStringInfo(&m->bytes, (const char *) &l, 4);
	appendBinaryStringInfo(&m->bytes, p, len);
	mask = m->nslots - 1;
	s = h & mask;
	while (m->slots[s] != 0)
		s = (s + 1) & mask;
	m->slots[s] = e + 1;
	MemoryContextSwitchTo(old);
}

/* ---------------------------------------------------------------- values */

static inline void
page_add_def(ParquetWriter *w, PqColumn *c, uint8 def)
{
	if (c->page_rows == c->defs_cap)
	{
		c->defs_cap *= 2;
		c->defs = repalloc(c->defs, c->defs_cap);
	}
	c->defs[c->page_rows] = def;
	c->page_bytes += 1;
	w->rg_bytes += 1;
}

/*
 * Buffers one non-NULL value (fixed: len = value_size) PLAIN or as an index.
 * Returns false for a value already in the dictionary, whose statistics the
 * caller then need not look at again.
 */
static inline bool
page_add_value(ParquetWriter *w, PqColumn *c, const char *p, int len)
{
	Size		plain = (c->physical == PQ_BYTE_ARRAY) ? (Size) len + 4 : (Size) len;
	bool		is_new = true;

	if (c->dict_mode)
	{
		uint32		ndict = c->ndict;
		uint32		e = dict_lookup(w, c, p, len);

		is_new = (c->ndict != ndict);
		c->dict_values++;

		if (c->nidx == c->idx_cap)
		{
			c->idx_cap *= 2;
			c->idx = repalloc(c->idx, sizeof(uint32) * c->idx_cap);
		}
		c->idx[c->nidx++] = e;
	}
	else
	{
		StringInfo	s = &c->values;

		if ((Size) s->len + plain + 1 > (Size) s->maxlen)
			enlargeStringInfo(s, (int) plain);
		if (c->physical == PQ_BYTE_ARRAY)
		{
			uint32		l = len;

			memcpy(s->data + s->len, &l, 4);
			s->len += 4;
		}
		memcpy(s->data + s->len, p, len);
		s->len += len;
		s->data[s->len] = '\0';
	}
	c->page_bytes += plain;
	w->rg_bytes += plain;
	return is_new;
}

/* A value known to be dictionary entry e: what page_add_value would do. */
static inline void
page_add_index(ParquetWriter *w, PqColumn *c, uint32 e)
{
	uint32		dl;
	Size		plain;

	memcpy(&dl, c->dict.data + c->dict_off[e], 4);
	plain = (Size) dl + 4;
	c->dict_values++;
	if (c->nidx == c->idx_cap)
	{
		c->idx_cap *= 2;
		c->idx = repalloc(c->idx, sizeof(uint32) * c->idx_cap);
	}
	c->idx[c->nidx++] = e;
	c->page_bytes += plain;
	w->rg_bytes += plain;
}

static inline void
page_add_bool(ParquetWriter *w, PqColumn *c, bool b)
{
	if ((c->nbits & 7) == 0)
	{
		appendStringInfoCharMacro(&c->values, 0);
		c->page_bytes += 1;
		w->rg_bytes += 1;
	}
	if (b)
		c->values.data[c->values.len - 1] |= (char) (1 << (c->nbits & 7));
	c->nbits++;
}

/* Parses numeric_out's text into an integer scaled by 10^scale. */
static int128
decimal_from_text(PqColumn *c, const char *text)
{
	const char *s = text;
	bool		neg = false;
	int128		v = 0;
	int			intdigits = 0;
	int			i;

	if (*s == '-')
	{
		neg = true;
		s++;
	}
	if (!isdigit((unsigned char) *s))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("numeric value %s cannot be written to Parquet column \"%s\"",
						text, c->name),
				 errdetail("Parquet DECIMAL(%d,%d) has no NaN or infinity.",
						   c->precision, c->scale),
				 errhint("Filter the value out, or cast the column to float8 or text.")));

	for (; isdigit((unsigned char) *s); s++)
	{
		if (intdigits > 0 || *s != '0')
			intdigits++;
		if (intdigits > c->precision - c->scale)
			goto out_of_range;
		v = v * 10 + (*s - '0');
	}
	if (*s == '.')
		s++;
	for (i = 0; i < c->scale; i++)
	{
		v *= 10;
		if (isdigit((unsigned char) *s))
			v += *s++ - '0';
	}
	/* more digits than the scale: round half away from zero, as numeric does */
	if (isdigit((unsigned char) *s) && *s >= '5')
		v += 1;
	if (v >= c->dec_limit)
		goto out_of_range;
	return neg ? -v : v;

out_of_range:
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("numeric value %s does not fit Parquet column \"%s\" of type DECIMAL(%d,%d)",
					text, c->name, c->precision, c->scale),
			 errdetail("DECIMAL(%d,%d) holds at most %d digits before the decimal point.",
					   c->precision, c->scale, c->precision - c->scale),
			 errhint("Cast the column to numeric with a suitable precision and scale, to float8 or to text.")));
	return 0;					/* keep compiler quiet */
}

/*
 * The same value as decimal_from_text(numeric_out(d)), read straight from
 * the numeric's stored form: sign, weight, display scale and base-10000
 * digits (the on-disk format, which pg_upgrade keeps stable).  Returns false
 * for NaN, infinities, values out of the column's range and anything
 * unexpected; the caller then takes the text path, which raises the error.
 */
/* u below 10^34 can take 4 more digits without overflowing int128 */
#define U_GUARD		((int128) 100000000000000000LL * 100000000000000000LL)

static bool
decimal_from_numeric(PqColumn *c, Datum d, int128 *out)
{
	static const int pow10[5] = {1, 10, 100, 1000, 10000};
	struct varlena *t = (struct varlena *) DatumGetPointer(d);
	const char *p;
	const char *digits;
	int			len;
	int			ndigits;
	uint16		hdr;
	int			weight;
	int			dscale;
	bool		neg;
	int			f;
	int			i;
	int			last;
	int			pending;
	int128		u = 0;
	int128		v;

	if (VARATT_IS_EXTERNAL(t) || VARATT_IS_COMPRESSED(t))
		return false;
	p = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	if (len < 2)
		return false;
	memcpy(&hdr, p, sizeof(uint16));
	switch (hdr & 0xC000)
	{
		case 0x8000:			/* short format */
			neg = (hdr & 0x2000) != 0;
			dscale = (hdr & 0x1F80) >> 7;
			weight = hdr & 0x003F;
			if (hdr & 0x0040)
				weight |= ~0x003F;
			digits = p + 2;
			ndigits = (len - 2) / 2;
			break;
		case 0x0000:			/* long format, positive */
		case 0x4000:			/* long format, negative */
			{
				int16		w16;

				if (len < 4)
					return false;
				neg = (hdr & 0xC000) == 0x4000;
				dscale = hdr & 0x3FFF;
				memcpy(&w16, p + 2, sizeof(int16));
				weight = w16;
				digits = p + 4;
				ndigits = (len - 4) / 2;
				break;
			}
		default:				/* NaN, +-Infinity */
			return false;
	}
	/* 10000^10 is beyond any DECIMAL(38) */
	if (weight > 9)
		return false;

	/*
	 * u: the digits down to decimal exponent -f, where f is one past the
	 * column's scale (the rounding digit) unless numeric_out prints fewer
	 * (dscale).  Base-10000 digit i covers exponents b .. b + 3, b = 4 *
	 * (weight - i).  Anything suspicious returns false: the text path is
	 * always exact.
	 */
	f = Min(c->scale + 1, dscale);
	last = 4 * (weight + 1);	/* lowest exponent taken into u so far */
	for (i = 0; i < ndigits; i++)
	{
		int			b = 4 * (weight - i);
		int16		nd;

		if (b + 4 <= -f)
			break;
		memcpy(&nd, digits + 2 * i, sizeof(int16));
		if (u >= U_GUARD || nd < 0 || nd >= 10000)
			return false;
		if (b >= -f)
		{
			u = u * 10000 + nd;
			last = b;
		}
		else
		{
			/* the group straddles -f: keep its upper digits */
			u = u * pow10[b + 4 + f] + nd / pow10[-f - b];
			last = -f;
			break;
		}
	}
	/* scale u to exponent -(scale + 1) */
	for (pending = last + c->scale + 1; pending > 0; pending -= 4)
	{
		if (u >= U_GUARD)
			return false;
		u *= pow10[Min(pending, 4)];
	}
	{
		/* digits below -f were left out, so past dscale this is 0 */
		int			rd;

		if (u <= (int128) PG_INT64_MAX)
		{
			int64		u64 = (int64) u;

			rd = (int) (u64 % 10);
			v = u64 / 10;
		}
		else
		{
			rd = (int) (u % 10);
			v = u / 10;
		}
		/* the first digit past the scale rounds half away from zero */
		if (rd >= 5)
			v += 1;
	}
	if (v >= c->dec_limit)
		return false;
	*out = neg ? -v : v;
	return true;
}

static const char *
to_utf8(PqColumn *c, const char *p, int *len)
{
	char	   *u;

	if (!c->to_utf8)
		return p;
	u = pg_server_to_any(p, *len, PG_UTF8);
	if (u != p)
		*len = strlen(u);
	return u;
}

/*
 * Switch to the writer's per-row context (reset before the next row because
 * it is marked dirty); returns the context to switch back to.  Every
 * conversion that allocates (detoasting, output functions, re-encoding) goes
 * through here so none can forget the mark.
 */
static inline MemoryContext
row_cxt_enter(ParquetWriter *w)
{
	w->row_cxt_dirty = true;
	return MemoryContextSwitchTo(w->row_cxt);
}

/* Phase 1 of add_row: may raise errors, changes nothing in the writer. */
static void
convert_value(ParquetWriter *w, PqColumn *c, Datum d, PqValue *out)
{
	switch (c->kind)
	{
		case PK_BOOL:
			out->v.i32 = DatumGetBool(d) ? 1 : 0;
			break;
		case PK_INT16:
			out->v.i32 = DatumGetInt16(d);
			break;
		case PK_INT32:
			out->v.i32 = DatumGetInt32(d);
			break;
		case PK_INT64:
			out->v.i64 = DatumGetInt64(d);
			break;
		case PK_FLOAT4:
			out->v.f4 = DatumGetFloat4(d);
			break;
		case PK_FLOAT8:
			out->v.f8 = DatumGetFloat8(d);
			break;
		case PK_DATE:
			{
				DateADT		v = DatumGetDateADT(d);

				if (DATE_IS_NOBEGIN(v))
					out->v.i32 = -PG_INT32_MAX;
				else if (DATE_IS_NOEND(v))
					out->v.i32 = PG_INT32_MAX;
				else
					out->v.i32 = v + EPOCH_SHIFT_DAYS;	/* cannot overflow */
				break;
			}
		case PK_TIMESTAMP:
			{
				Timestamp	v = DatumGetTimestamp(d);

				if (TIMESTAMP_IS_NOBEGIN(v))
					out->v.i64 = -PG_INT64_MAX;
				else if (TIMESTAMP_IS_NOEND(v))
					out->v.i64 = PG_INT64_MAX;
				else if (pg_add_s64_overflow(v, EPOCH_SHIFT_USECS, &out->v.i64) ||
						 out->v.i64 == PG_INT64_MAX)
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("timestamp out of range for Parquet column \"%s\"", c->name),
							 errdetail("Parquet stores microseconds since 1970 in 64 bits.")));
				break;
			}
		case PK_UUID:
			memcpy(out->v.uuid, DatumGetUUIDP(d)->data, UUID_LEN);
			break;
		case PK_DECIMAL:
			{
				MemoryContext old;
				char	   *s;

				if (decimal_from_numeric(c, d, &out->v.dec))
					break;
				old = row_cxt_enter(w);
				s = OutputFunctionCall(&c->outfunc, d);
				out->v.dec = decimal_from_text(c, s);
				MemoryContextSwitchTo(old);
				break;
			}
		case PK_VARLENA_TEXT:
		case PK_BYTEA:
			{
				struct varlena *t = (struct varlena *) DatumGetPointer(d);

				if (VARATT_IS_COMPRESSED(t) || VARATT_IS_EXTERNAL(t))
				{
					MemoryContext old = row_cxt_enter(w);

					t = pg_detoast_datum_packed(t);
					MemoryContextSwitchTo(old);
				}
				out->ptr = VARDATA_ANY(t);
				out->len = VARSIZE_ANY_EXHDR(t);
				if (c->kind == PK_VARLENA_TEXT && c->to_utf8)
				{
					MemoryContext old = row_cxt_enter(w);

					out->ptr = to_utf8(c, out->ptr, &out->len);
					MemoryContextSwitchTo(old);
				}
				break;
			}
		case PK_JSONB:
			{
				struct varlena *t = (struct varlena *) DatumGetPointer(d);
				Jsonb	   *jb;

				out->entry = -1;
				out->raw_ptr = NULL;
				if (c->memo != NULL && c->dict_mode && !VARATT_IS_EXTERNAL(t) &&
					!VARATT_IS_COMPRESSED(t))
				{
					out->raw_ptr = VARDATA_ANY(t);
					out->raw_len = VARSIZE_ANY_EXHDR(t);
					out->raw_hash = hash_byte_array(out->raw_ptr, out->raw_len);
					out->entry = memo_find(c->memo, out->raw_ptr, out->raw_len,
										   out->raw_hash);
					if (out->entry >= 0)
						break;
				}
				if (VARATT_IS_EXTENDED(t) && !VARATT_IS_SHORT(t))
				{
					MemoryContext old = row_cxt_enter(w);

					jb = (Jsonb *) pg_detoast_datum(t);
					MemoryContextSwitchTo(old);
				}
				else if (VARATT_IS_SHORT(t))
				{
					/* jsonb wants its 4-byte header and int alignment */
					Size		n = VARSIZE_SHORT(t) - VARHDRSZ_SHORT;

					if (n + VARHDRSZ > (Size) c->aligned_cap)
					{
						c->aligned_cap = (int) Max(n + VARHDRSZ, (Size) c->aligned_cap * 2);
						c->aligned = repalloc(c->aligned, c->aligned_cap);
					}
					SET_VARSIZE(c->aligned, n + VARHDRSZ);
					memcpy(VARDATA(c->aligned), VARDATA_SHORT(t), n);
					jb = (Jsonb *) c->aligned;
				}
				else
					jb = (Jsonb *) t;
				/* what jsonb_out prints, into a buffer kept between rows */
				if (c->text.maxlen > 8 * 1024 * 1024)
				{
					pfree(c->text.data);
					c->text.data = MemoryContextAlloc(w->cxt, 1024);
					c->text.maxlen = 1024;
				}
				resetStringInfo(&c->text);
				{
					/* the printer's own allocations (iterators, numbers) */
					MemoryContext old = row_cxt_enter(w);

					(void) JsonbToCString(&c->text, &jb->root, VARSIZE(jb));
					out->ptr = c->text.data;
					out->len = c->text.len;
					out->ptr = to_utf8(c, out->ptr, &out->len);
					MemoryContextSwitchTo(old);
				}
				break;
			}
		case PK_OUTPUT:
			{
				MemoryContext old = row_cxt_enter(w);

				out->ptr = OutputFunctionCall(&c->outfunc, d);
				out->len = strlen(out->ptr);
				out->ptr = to_utf8(c, out->ptr, &out->len);
				MemoryContextSwitchTo(old);
				break;
			}
	}
}

/* Phase 2 of add_row: buffers a converted value and updates the statistics. */

/* Widen a column chunk's min/max statistics by one (non-NaN) value. */
#define TRACK_MINMAX(c, member, x) \
	do { \
		if (!(c)->has_minmax) \
		{ \
			(c)->min.member = (c)->max.member = (x); \
			(c)->has_minmax = true; \
		} \
		else if ((x) < (c)->min.member) \
			(c)->min.member = (x); \
		else if ((x) > (c)->max.member) \
			(c)->max.member = (x); \
	} while (0)

/*
 * Buffer one fixed-width value (PLAIN: its little-endian memory image, the
 * size of type T), widening the statistics when track holds; track may test
 * the value as x (NaN stays out of the bounds).
 */
#define APPEND_FIXED(w, c, T, member, value, track) \
	do { \
		T			x = (value); \
		\
		if (track) \
			TRACK_MINMAX(c, member, x); \
		page_add_value(w, c, (const char *) &x, sizeof(T)); \
	} while (0)

static void
append_value(ParquetWriter *w, PqColumn *c, PqValue *v)
{
	switch (c->physical)
	{
		case PQ_BOOLEAN:
			if (!c->has_minmax)
			{
				c->min.i32 = c->max.i32 = v->v.i32;
				c->has_minmax = true;
			}
			c->min.i32 = Min(c->min.i32, v->v.i32);
			c->max.i32 = Max(c->max.i32, v->v.i32);
			page_add_bool(w, c, v->v.i32 != 0);
			return;

		case PQ_INT32:
			APPEND_FIXED(w, c, int32, i32,
						 (c->kind == PK_DECIMAL) ? (int32) v->v.dec : v->v.i32, true);
			return;

		case PQ_INT64:
			APPEND_FIXED(w, c, int64, i64,
						 (c->kind == PK_DECIMAL) ? (int64) v->v.dec : v->v.i64, true);
			return;

		case PQ_FLOAT:
			APPEND_FIXED(w, c, float4, f4, v->v.f4, !isnan(x));
			return;

		case PQ_DOUBLE:
			APPEND_FIXED(w, c, float8, f8, v->v.f8, !isnan(x));
			return;

		case PQ_FLBA:
			if (c->kind == PK_UUID)
			{
				if (page_add_value(w, c, (const char *) v->v.uuid, UUID_LEN))
					stats_bytes(c, (const char *) v->v.uuid, UUID_LEN);
			}
			else
			{
				char		be[16];

				TRACK_MINMAX(c, dec, v->v.dec);
				decimal_to_be16(v->v.dec, be);
				page_add_value(w, c, be, 16);
			}
			return;

		case PQ_BYTE_ARRAY:
			if (c->kind == PK_JSONB && c->dict_mode)
			{
				if (v->entry >= 0)
				{
					/* seen before in this chunk: its text is in the dictionary */
					page_add_index(w, c, (uint32) v->entry);
					return;
				}
				if (page_add_value(w, c, v->ptr, v->len))
					stats_bytes(c, v->ptr, v->len);
				if (v->raw_ptr != NULL)
					memo_add(w, c->memo, v->raw_ptr, v->raw_len, v->raw_hash,
							 c->idx[c->nidx - 1]);
				return;
			}
			/* a repeated dictionary value cannot move the bounds */
			if (page_add_value(w, c, v->ptr, v->len))
				stats_bytes(c, v->ptr, v->len);
			return;
	}
}

/* The dictionary got too big: finish its page, PLAIN from now on. */
static void
dict_fallback(ParquetWriter *w, PqColumn *c)
{
	flush_page(w, c);
	c->dict_mode = false;
	/* high-cardinality data stays so: later chunks of this file skip it */
	c->use_dictionary = false;
}

void
parquet_writer_add_row(ParquetWriter *w, Datum *values, bool *isnull)
{
	int			i;

	if (w->finished)
		elog(ERROR, "parquet writer for \"%s\" is already closed", w->path);
	if (w->row_cxt_dirty)
	{
		MemoryContextReset(w->row_cxt);
		w->row_cxt_dirty = false;
	}

	/* convert everything first, so a bad value leaves the writer untouched */
	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];
		PqValue    *v = &w->row[i];

		v->isnull = isnull[c->attno];
		if (v->isnull)
		{
			if (c->required)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("null value in column \"%s\" of a REQUIRED Parquet column", c->name),
						 errdetail("The column is NOT NULL in the schema of the file \"%s\".", w->path)));
			continue;
		}
		convert_value(w, c, values[c->attno], v);
	}

	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];
		PqValue    *v = &w->row[i];

		if (!c->required)
			page_add_def(w, c, v->isnull ? 0 : 1);
		if (v->isnull)
		{
			c->page_nulls++;
			c->chunk_nulls++;
		}
		else
			append_value(w, c, v);
		c->page_rows++;

		if (c->dict_mode &&
			((Size) c->dict.len > w->dict_bytes ||
			 (c->dict_values == DICT_PROBE_VALUES &&
			  c->ndict > DICT_PROBE_VALUES * 9 / 10)))
			dict_fallback(w, c);
		else if (c->page_bytes >= w->page_bytes)
			flush_page(w, c);
	}
	w->rows++;
	w->rg_rows++;

	if (w->row_cxt_dirty)
	{
		MemoryContextReset(w->row_cxt);
		w->row_cxt_dirty = false;
	}
	if (w->rg_bytes >= w->row_group_bytes)
		flush_row_group(w);
}

/* ---------------------------------------------------------------- row groups */

static void
write_column_chunk(ParquetWriter *w, ThriftWriter *tw, PqColumn *c,
				   int64 *rg_uncompressed, int64 *rg_stored)
{
	uint64		chunk_start = w->offset;
	uint64		dict_offset = 0;
	int64		uncompressed = 0;
	bool		has_dict = (c->npages_dict > 0);
	PqPiece    *p;

	if (has_dict)
	{
		PqPiece    *piece;

		resetStringInfo(&w->body);
		emit_page(w, c, true, c->ndict, ENC_PLAIN, c->dict.data, c->dict.len,
				  &uncompressed, &piece);
		dict_offset = w->offset;
		write_all(w, piece->data, piece->len);
		pfree(piece);
	}
	{
		uint64		data_offset = w->offset;

		for (p = c->first_piece; p != NULL; p = p->next)
		{
			CHECK_FOR_INTERRUPTS();
			write_all(w, p->data, p->len);
		}
		uncompressed += c->chunk_uncompressed;

		/* ColumnChunk */
		thrift_elem_struct_begin(tw);
		thrift_field_i64(tw, 2, (int64) chunk_start);
		thrift_struct_begin(tw, 3);
		thrift_field_i32(tw, 1, c->physical);
		{
			int			n = 1 + (c->npages_plain > 0 || has_dict) + has_dict;

			thrift_list_begin(tw, 2, THRIFT_I32, n);
			if (c->npages_plain > 0 || has_dict)
				thrift_elem_i32(tw, ENC_PLAIN);
			thrift_elem_i32(tw, ENC_RLE);
			if (has_dict)
				thrift_elem_i32(tw, ENC_RLE_DICTIONARY);
		}
		thrift_list_begin(tw, 3, THRIFT_BINARY, 1);
		thrift_elem_binary(tw, c->name, strlen(c->name));
		thrift_field_i32(tw, 4, w->codec_id);
		thrift_field_i64(tw, 5, c->chunk_values);
		thrift_field_i64(tw, 6, uncompressed);
		thrift_field_i64(tw, 7, (int64) (w->offset - chunk_start));
		thrift_field_i64(tw, 9, (int64) data_offset);
		if (has_dict)
			thrift_field_i64(tw, 11, (int64) dict_offset);
		write_statistics(tw, c);
		/* encoding_stats: lets readers see the chunk is dictionary-encoded */
		thrift_list_begin(tw, 13, THRIFT_STRUCT,
						  has_dict + (c->npages_dict > 0) + (c->npages_plain > 0));
		if (has_dict)
		{
			thrift_elem_struct_begin(tw);
			thrift_field_i32(tw, 1, PAGE_DICTIONARY);
			thrift_field_i32(tw, 2, ENC_PLAIN);
			thrift_field_i32(tw, 3, 1);
			thrift_struct_end(tw);
		}
		if (c->npages_dict > 0)
		{
			thrift_elem_struct_begin(tw);
			thrift_field_i32(tw, 1, PAGE_DATA);
			thrift_field_i32(tw, 2, ENC_RLE_DICTIONARY);
			thrift_field_i32(tw, 3, c->npages_dict);
			thrift_struct_end(tw);
		}
		if (c->npages_plain > 0)
		{
			thrift_elem_struct_begin(tw);
			thrift_field_i32(tw, 1, PAGE_DATA);
			thrift_field_i32(tw, 2, ENC_PLAIN);
			thrift_field_i32(tw, 3, c->npages_plain);
			thrift_struct_end(tw);
		}
		thrift_struct_end(tw);	/* ColumnMetaData */
		thrift_struct_end(tw);	/* ColumnChunk */
	}
	*rg_uncompressed += uncompressed;
	*rg_stored += (int64) (w->offset - chunk_start);
}

static void
flush_row_group(ParquetWriter *w)
{
	ThriftWriter tw;
	uint64		rg_start = w->offset;
	int64		uncompressed = 0;
	int64		stored = 0;
	int			i;

	if (w->rg_rows == 0)
		return;

	thrift_begin(&tw, &w->rowgroups);
	thrift_list_begin(&tw, 1, THRIFT_STRUCT, w->ncols);
	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];

		CHECK_FOR_INTERRUPTS();
		flush_page(w, c);
		write_column_chunk(w, &tw, c, &uncompressed, &stored);
	}
	thrift_field_i64(&tw, 2, uncompressed);
	thrift_field_i64(&tw, 3, w->rg_rows);
	thrift_field_i64(&tw, 5, (int64) rg_start);
	thrift_field_i64(&tw, 6, stored);
	thrift_field_i16(&tw, 7, (int16) Min(w->nrowgroups, PG_INT16_MAX));
	thrift_end(&tw);
	w->nrowgroups++;

	MemoryContextReset(w->rg_cxt);
	w->rg_rows = 0;
	w->rg_bytes = 0;
	for (i = 0; i < w->ncols; i++)
		column_start_chunk(w, &w->cols[i]);
}

/* ---------------------------------------------------------------- finish */

uint64
parquet_writer_finish(ParquetWriter *w, bool do_fsync)
{
	ThriftWriter tw;
	StringInfoData footer;
	char		len[4];
	uint64		size;
	int			i;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	if (w->finished)
		elog(ERROR, "parquet writer for \"%s\" is already closed", w->path);
	flush_row_group(w);

	initStringInfo(&footer);
	thrift_begin(&tw, &footer);
	thrift_field_i32(&tw, 1, 1);
	write_schema(&tw, w);
	thrift_field_i64(&tw, 3, w->rows);
	/* RowGroup structs were serialized as each group was written */
	thrift_list_begin(&tw, 4, THRIFT_STRUCT, w->nrowgroups);
	appendBinaryStringInfo(&footer, w->rowgroups.data, w->rowgroups.len);
	thrift_field_string(&tw, 6, PARQUET_CREATED_BY);
	thrift_list_begin(&tw, 7, THRIFT_STRUCT, w->ncols);
	for (i = 0; i < w->ncols; i++)
	{
		thrift_elem_struct_begin(&tw);
		thrift_field_empty_struct(&tw, 1);	/* TYPE_ORDER */
		thrift_struct_end(&tw);
	}
	thrift_end(&tw);

	put_le32(len, (uint32) footer.len);
	write_all(w, footer.data, footer.len);
	write_all(w, len, 4);
	write_all(w, PARQUET_MAGIC, 4);

	if (do_fsync && pg_fsync(w->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", w->path)));
	if (close(w->fd) != 0)
	{
		w->fd = -1;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", w->path)));
	}
	w->fd = -1;
	w->finished = true;
	size = w->offset;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(w->cxt);
	return size;
}

/* ---------------------------------------------------------------- SQL */

static char *
arg_text(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("InvalidArgumentException: %s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/*
 * A path the file system can take: each component at most NAME_MAX bytes,
 * the whole (with room for the temporary name's suffix) under MAXPGPATH.
 * Otherwise open() would fail with ENAMETOOLONG, an internal error.
 */
static void
check_path_length(const char *path)
{
	const char *p = path;

	if (strlen(path) >= MAXPGPATH - 32)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: path is too long (%zu bytes; at most %d)",
						strlen(path), MAXPGPATH - 33)));
	for (;;)
	{
		const char *end = strchr(p, '/');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len > NAME_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: path component \"%.*s...\" is too long (%zu bytes; at most %d)",
							pg_mbcliplen(p, len, 40), p, len, NAME_MAX)));
		if (end == NULL)
			break;
		p = end + 1;
	}
}

/* Marks the named result columns NOT NULL so that they become REQUIRED. */
static void
mark_not_null(TupleDesc desc, ArrayType *names)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i,
				a;

	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name;
		bool		found = false;

		if (nulls[i])
			continue;
		name = TextDatumGetCString(elems[i]);
		for (a = 0; a < desc->natts; a++)
		{
			if (strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) == 0)
			{
				TupleDescAttr(desc, a)->attnotnull = true;
				found = true;
			}
		}
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("InvalidArgumentException: the query has no column \"%s\"", name)));
	}
}

/*
 * The executor hands each result row to this receiver, which passes the
 * slot's values to the writer as they are: no copy into a tuple table.
 */
typedef struct ParquetDest
{
	DestReceiver pub;
	ParquetWriter *writer;
	int64		rows;
} ParquetDest;

static bool
parquet_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ParquetDest *d = (ParquetDest *) self;

	slot_getallattrs(slot);
	parquet_writer_add_row(d->writer, slot->tts_values, slot->tts_isnull);
	d->rows++;
	return true;
}

static void
parquet_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
parquet_dest_shutdown(DestReceiver *self)
{
}

static void
parquet_dest_destroy(DestReceiver *self)
{
}

static void
reject_query(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: write_parquet needs a single query that returns rows"),
			 errdetail("%s", why),
			 errhint("Use SELECT, TABLE, VALUES or WITH ... SELECT, as in COPY (query) TO.")));
}

/* Points a syntax error's cursor into the query text, not the call. */
static void
export_query_error_callback(void *arg)
{
	const char *query = (const char *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(query);
	}
	else
		errcontext("write_parquet query: %s", query);
}

/*
 * Parses, checks and plans the query text like COPY (query) TO: one
 * read-only SELECT-like statement, no parameters.
 */
static PlannedStmt *
plan_export_query(const char *query)
{
	ErrorContextCallback errcb;
	List	   *raw;
	RawStmt    *rs;
	List	   *rewritten;
	Query	   *q;
	PlannedStmt *plan;

	errcb.callback = export_query_error_callback;
	errcb.arg = unconstify(char *, query);
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = pg_parse_query(query);

	if (list_length(raw) != 1)
		reject_query("The text holds no statement or more than one.");
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		reject_query("Only SELECT, TABLE, VALUES and WITH ... SELECT can be written.");
	if (((SelectStmt *) rs->stmt)->intoClause != NULL)
		reject_query("SELECT INTO creates a table; it cannot be written.");

	rewritten = pg_analyze_and_rewrite_fixedparams(rs, query, NULL, 0, NULL);
	if (list_length(rewritten) != 1)
		reject_query("The query was rewritten into more than one statement.");
	q = linitial_node(Query, rewritten);
	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		reject_query("Only SELECT, TABLE, VALUES and WITH ... SELECT can be written.");
	if (q->hasModifyingCTE)
		reject_query("WITH clauses that modify data are not allowed.");

	plan = pg_plan_query(q, query, CURSOR_OPT_PARALLEL_OK, NULL);

	error_context_stack = errcb.previous;
	return plan;
}

/*
 * stream.write_parquet(query, path, compression): the query's result as a
 * Parquet file on the server, like COPY (query) TO 'path'.  The internal
 * variant stream_internal._write_parquet_with adds row_group_bytes, page_bytes,
 * dictionary on/off and columns to write as REQUIRED, for tests.
 *
 * The query is planned and run by the executor here, as COPY (query) TO
 * does, with the caller's privileges and a fresh snapshot (as SPI gives a
 * volatile function); a DestReceiver feeds each result slot to the writer,
 * which flushes its row groups by size, so memory stays bounded.
 *
 * The file is built as a hidden temporary file next to path, fsynced and
 * renamed over path (then the directory is fsynced), so readers only ever
 * see a complete file.
 */
PG_FUNCTION_INFO_V1(stream_write_parquet);
Datum
stream_write_parquet(PG_FUNCTION_ARGS)
{
	char	   *query = arg_text(fcinfo, 0, "query");
	char	   *path = arg_text(fcinfo, 1, "path");
	StreamCodec codec = codec_from_name(arg_text(fcinfo, 2, "compression"));
	ParquetWriterOptions opts = {0};
	ArrayType  *not_null = NULL;
	char	   *slash;
	char	   *tmp;
	PlannedStmt *plan;
	QueryDesc  *qd;
	ParquetDest *dest;
	TupleDesc	desc;
	int64		rows;
	ParquetWriter *volatile w = NULL;
	volatile bool created = false;
	static uint32 tmp_counter = 0;

	if (PG_NARGS() > 3)
	{
		if (!PG_ARGISNULL(3))
			opts.row_group_bytes = (Size) Max(PG_GETARG_INT64(3), 0);
		if (!PG_ARGISNULL(4))
			opts.page_bytes = (Size) Max(PG_GETARG_INT32(4), 0);
		if (!PG_ARGISNULL(5))
			opts.no_dictionary = !PG_GETARG_BOOL(5);
		if (!PG_ARGISNULL(6))
		{
			not_null = PG_GETARG_ARRAYTYPE_P(6);
			opts.required_not_null = true;
		}
	}

	/* the same rule as COPY ... TO 'file' */
	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: must be superuser or have privileges of the pg_write_server_files role to write a file on the server"),
				 errhint("Anyone can export with COPY ... TO STDOUT; an administrator can GRANT pg_write_server_files.")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: relative path \"%s\" not allowed for write_parquet", path),
				 errhint("Give an absolute path on the database server.")));
	slash = strrchr(path, '/');
	if (slash == NULL || slash[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: path \"%s\" does not name a file", path)));
	check_path_length(path);
	/*
	 * hidden, so that "*.parquet" globs never pick up a partial file; the
	 * name is clipped so that a file name of NAME_MAX bytes still has one
	 */
	tmp = psprintf("%.*s/.%.*s.%d.%u.tmp", (int) (slash - path), path,
				   pg_mbcliplen(slash + 1, strlen(slash + 1), NAME_MAX - 32), slash + 1,
				   MyProcPid, ++tmp_counter);

	plan = plan_export_query(query);
	{
		/* a Parquet schema needs at least one leaf column: readers refuse the file otherwise */
		ListCell   *lc;
		int			ncols = 0;

		foreach(lc, plan->planTree->targetlist)
			if (!lfirst_node(TargetEntry, lc)->resjunk)
				ncols++;
		if (ncols == 0)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: write_parquet cannot write a query with no columns"),
					 errdetail("A Parquet file needs at least one column; readers such as DuckDB refuse a file without any."),
					 errhint("Select at least one column or expression, e.g. SELECT 1 AS dummy FROM ...")));
	}

	/* see changes made so far in this transaction, as SPI would */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	dest = palloc0(sizeof(ParquetDest));
	dest->pub.receiveSlot = parquet_dest_receive;
	dest->pub.rStartup = parquet_dest_startup;
	dest->pub.rShutdown = parquet_dest_shutdown;
	dest->pub.rDestroy = parquet_dest_destroy;
	dest->pub.mydest = DestNone;

	created = false;
	qd = CreateQueryDesc(plan, query, GetActiveSnapshot(), InvalidSnapshot,
						 (DestReceiver *) dest, NULL, NULL, 0);
	ExecutorStart(qd, 0);

	desc = CreateTupleDescCopy(qd->tupDesc);
	if (not_null)
		mark_not_null(desc, not_null);

	PG_TRY();
	{
		w = parquet_writer_create_ext(tmp, desc, codec, &opts);
		created = true;
		dest->writer = w;

		ExecutorRun(qd, ForwardScanDirection, 0, true);
		ExecutorFinish(qd);
		ExecutorEnd(qd);
		FreeQueryDesc(qd);
		PopActiveSnapshot();
		rows = dest->rows;

		parquet_writer_finish(w, true);
		w = NULL;
		/* fsync of the file, rename, fsync of the directory */
		durable_rename(tmp, path, ERROR);
	}
	PG_CATCH();
	{
		/* the executor's resources go with the (sub)transaction's abort */
		if (w != NULL)
			parquet_writer_abort(w);
		else if (created)
			(void) unlink(tmp);	/* finished but not renamed; never a file we did not create */
		PG_RE_THROW();
	}
	PG_END_TRY();

	PG_RETURN_INT64(rows);
}

/*
 * stream_internal._compress(data, compression): data compressed as a whole file
 * (gzip member, zstd frame or snappy framing format), fed in uneven pieces
 * to exercise the stream code; for tests of the delivery file formats.
 */
PG_FUNCTION_INFO_V1(stream_compress_file);
Datum
stream_compress_file(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	StreamCodec codec = codec_from_name(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	const char *p = VARDATA_ANY(data);
	size_t		left = VARSIZE_ANY_EXHDR(data);
	size_t		piece = 1000;
	StringInfoData out;
	CodecStream *cs;
	bytea	   *result;

	initStringInfo(&out);
	cs = codec_stream_create(codec);
	while (left > 0)
	{
		size_t		n = Min(left, piece);

		codec_stream_write(cs, p, n, &out);
		p += n;
		left -= n;
		piece = piece * 3 + 7;	/* small and large writes */
	}
	codec_stream_finish(cs, &out);
	codec_stream_free(cs);

	result = palloc(VARHDRSZ + out.len);
	SET_VARSIZE(result, VARHDRSZ + out.len);
	memcpy(VARDATA(result), out.data, out.len);
	PG_RETURN_BYTEA_P(result);
}
