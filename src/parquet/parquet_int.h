/*
 * parquet/parquet_int.h: what the files of the Parquet writer share: the
 * parquet.thrift enums, a column's state (PqColumn), the writer
 * (ParquetWriter) and the functions the files call in each other.  Only
 * src/parquet/ includes it; every other module uses parquet/parquet.h.
 *
 * The files, in the order a row travels through them:
 *   parquet_writer.c    create, add_row, finish, abort; column chunks, row
 *                       groups and the file itself
 *   parquet_schema.c    PostgreSQL type -> Parquet types; the footer's schema
 *   parquet_values.c    Datum -> PqValue (DECIMAL, dates, timestamps, text,
 *                       jsonb, output functions)
 *   parquet_encoding.c  PqValue -> page bytes: PLAIN or dictionary indices,
 *                       definition levels (RLE/bit-packed), finished pages
 *   parquet_stats.c     min/max/null statistics of a column chunk
 *   thrift.c            Thrift compact protocol (page headers, footer)
 *   write_parquet.c     the SQL function write_parquet(); uses parquet.h only
 *
 * Memory.  Everything lives under the writer's context w->cxt (a child of
 * the context current at create), whose reset callback closes and unlinks an
 * unfinished file:
 *   - w->cxt: the writer's lifetime: columns, output functions, scratch
 *     buffers (w->body, w->packed, w->header), the RowGroup structs, jsonb
 *     print buffers.
 *   - w->rg_cxt: the current row group: page buffers, dictionary, jsonb memo
 *     and the finished pages (PqPiece).  Reset when the row group has been
 *     written; column_start_chunk then allocates anew.  Nothing that must
 *     outlive a row group may be allocated here.
 *   - w->row_cxt: what converting one row allocates (detoasted values, output
 *     function results, re-encoded text).  Enter it only through
 *     row_cxt_enter (parquet_values.c), which marks it for the reset before
 *     the next row.
 * A PqValue's bytes point into the input Datum, the row context or the
 * column's print buffer: valid until the next row, so add_row buffers them
 * in the same call.  Buffers grown with repalloc stay in their context.
 *
 * Errors.  parquet_writer_add_row converts the whole row (parquet_values.c)
 * before it buffers anything, so every error a value can cause is raised
 * there and leaves the writer as it was.  What runs after conversion
 * (encoding, statistics, writing) must not fail on a value; it can only run
 * out of memory or fail to write, after which the writer is good only for
 * abort (or its context's reset).
 */
#ifndef STREAM_PARQUET_INT_H
#define STREAM_PARQUET_INT_H

#include "postgres.h"

#include "catalog/pg_attribute.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

#include "parquet/parquet.h"
#include "parquet/thrift.h"

/* Byte-array statistics keep at most this many bytes. */
#define STATS_PREFIX		64

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

/* A fixed-width value: of the row being added, or a chunk's minimum or maximum. */
typedef union PqScalar
{
	int32		i32;
	int64		i64;
	float4		f4;
	float8		f8;
	int128		dec;
	uint8		uuid[16];
} PqScalar;

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
	PqScalar	v;
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
	PqScalar	min,
				max;
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

/* ---- parquet_schema.c */

/* Sets c's kind and Parquet types for att (in the writer's context). */
extern void parquet_schema_init_column(ParquetWriter *w, PqColumn *c,
									   Form_pg_attribute att, bool required);
/* The schema list of FileMetaData (field 2). */
extern void parquet_schema_write(ThriftWriter *tw, ParquetWriter *w);

/* ---- parquet_values.c */

/*
 * Phase 1 of add_row: the row's values, converted into w->row.  Raises every
 * error a value can cause; changes nothing but w->row and the row context.
 */
extern void parquet_values_convert_row(ParquetWriter *w, Datum *values,
									   bool *isnull);

/* ---- parquet_encoding.c */

/*
 * Phase 2 of add_row: buffers w->row into the columns' pages and statistics,
 * finishing pages as they fill and dropping dictionaries that do not pay.
 */
extern void parquet_encoding_append_row(ParquetWriter *w);
/* Finishes the column's current page into a piece of its chunk. */
extern void parquet_encoding_flush_page(ParquetWriter *w, PqColumn *c);
/* Compresses a page body; its header and stored bytes become one piece. */
extern void parquet_encoding_emit_page(ParquetWriter *w, PqColumn *c,
									   bool dictionary_page, int num_values,
									   int encoding, const char *tail,
									   int tail_len, int64 *uncompressed,
									   PqPiece **piece_out);
/* The dictionary's hash of a byte array (also keys the jsonb memo). */
extern uint32 parquet_encoding_hash_bytes(const char *p, int len);
/* Dictionary entry the jsonb memo holds for these stored bytes, or -1. */
extern int32 parquet_encoding_memo_find(PqMemo *m, const char *p, int len,
										uint32 h);
/* A DECIMAL as FIXED_LEN_BYTE_ARRAY(16): big-endian two's complement. */
extern void parquet_encoding_decimal_be16(int128 v, char *out);

/* ---- parquet_stats.c */

/* Widens the chunk's byte-array (or UUID) bounds by one value. */
extern void parquet_stats_add_bytes(PqColumn *c, const char *p, int len);
/* The Statistics struct (field 12) of the chunk's ColumnMetaData. */
extern void parquet_stats_write(ThriftWriter *tw, PqColumn *c);

#endif							/* STREAM_PARQUET_INT_H */
