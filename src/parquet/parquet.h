/*
 * parquet/parquet.h: a Parquet file writer for PostgreSQL tuples; the only
 * header of src/parquet/ that other modules include.
 *
 * One file per writer, flat schema (one leaf per non-dropped attribute of the
 * TupleDesc, in order), OPTIONAL columns unless asked to make NOT NULL
 * attributes REQUIRED, data pages v1 with PLAIN or RLE_DICTIONARY values,
 * chunk statistics, and the chosen codec on every page.  Rows are buffered
 * per row group (so memory stays around row_group_bytes) and each full row
 * group is written out at once.  Type mapping: see parquet_schema.c.
 *
 * Errors: parquet_writer_add_row converts the whole row before it buffers
 * anything, so a value that cannot be written (numeric NaN or out of the
 * DECIMAL range, NULL in a REQUIRED column, ...) raises an error and leaves
 * the writer as it was.  If the writer's memory context (a child of the one
 * current at create) is reset or deleted before parquet_writer_finish, the
 * file is closed and unlinked, so an error never leaves a partial file.
 */
#ifndef STREAM_PARQUET_H
#define STREAM_PARQUET_H

#include "postgres.h"
#include "access/tupdesc.h"

#include "codec.h"

#define PARQUET_DEFAULT_ROW_GROUP_BYTES	((Size) 128 * 1024 * 1024)
#define PARQUET_DEFAULT_PAGE_BYTES		((Size) 1024 * 1024)
#define PARQUET_DEFAULT_DICTIONARY_BYTES ((Size) 1024 * 1024)
#define PARQUET_MAX_ROW_GROUP_BYTES		((Size) 512 * 1024 * 1024)

typedef struct ParquetWriter ParquetWriter;

typedef struct ParquetWriterOptions
{
	Size		row_group_bytes;	/* 0: PARQUET_DEFAULT_ROW_GROUP_BYTES */
	Size		page_bytes;		/* 0: PARQUET_DEFAULT_PAGE_BYTES */
	Size		dictionary_bytes;	/* 0: default; past this a chunk falls back to PLAIN */
	bool		no_dictionary;	/* PLAIN only */
	bool		required_not_null;	/* attnotnull attributes become REQUIRED */
	const char *dir_path;		/* set: path is a file name in the directory
								 * open as dir_fd (dir_path names it in
								 * messages), created and removed relative
								 * to it */
	int			dir_fd;
} ParquetWriterOptions;

/* Creates path with O_CREAT|O_EXCL|O_NOFOLLOW; row_group_bytes 0 means the default. */
extern ParquetWriter *parquet_writer_create(const char *path, TupleDesc desc,
											StreamCodec codec, Size row_group_bytes);
extern ParquetWriter *parquet_writer_create_ext(const char *path, TupleDesc desc,
												StreamCodec codec,
												const ParquetWriterOptions *opts);
/* values/isnull are indexed like desc's attributes (dropped ones ignored). */
extern void parquet_writer_add_row(ParquetWriter *w, Datum *values, bool *isnull);
/* Writes the footer, fsyncs if asked, closes; returns the file size. */
extern uint64 parquet_writer_finish(ParquetWriter *w, bool do_fsync);
/* Closes and unlinks the file; safe in error cleanup (PG_CATCH). */
extern void parquet_writer_abort(ParquetWriter *w);

#endif							/* STREAM_PARQUET_H */
