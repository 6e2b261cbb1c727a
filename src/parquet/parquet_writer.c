/*
 * parquet/parquet_writer.c: the writer's life cycle, its row groups and the
 * file (format: parquet.thrift, Encodings.md, LogicalTypes.md; notes in
 * shared/reference/parquet-in-c.md).
 *
 * File layout: "PAR1", row groups (per column: optional dictionary page, then
 * data pages v1), FileMetaData in Thrift compact form, its length, "PAR1".
 *
 * A row goes in two phases (parquet_writer_add_row): every value is converted
 * first (parquet_values.c), which may raise an error and changes nothing;
 * then each value is buffered into its column's page (parquet_encoding.c).
 * Each phase is one call per row, not per value, so that the per-value work
 * stays inlined inside its file.  A page is finished at page_bytes; at
 * row_group_bytes every column writes its chunk (dictionary page, data
 * pages, ColumnChunk metadata with the statistics of parquet_stats.c) and
 * the row group's memory is reset.  The RowGroup structs are kept for the
 * footer that parquet_writer_finish writes.
 *
 * The file is created O_CREAT|O_EXCL and owned by the writer's context: its
 * reset callback (writer_cleanup) closes it and, unless finish got to the
 * end, unlinks it.  So an ERROR anywhere, or the caller's context going
 * away, never leaves a partial file; see parquet_int.h for the contexts.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "parquet/parquet_int.h"

#define PARQUET_CREATED_BY	"stream version 0.1.0 (build pg15)"
#define PARQUET_MAGIC		"PAR1"

/* Smallest page and row group sizes accepted (tests go this low). */
#define MIN_PAGE_BYTES		1024
#define MIN_ROW_GROUP_BYTES	4096

static void writer_cleanup(void *arg);
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
		parquet_schema_init_column(w, &w->cols[w->ncols++], att,
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

/* ---------------------------------------------------------------- rows */

void
parquet_writer_add_row(ParquetWriter *w, Datum *values, bool *isnull)
{
	if (w->finished)
		elog(ERROR, "parquet writer for \"%s\" is already closed", w->path);
	if (w->row_cxt_dirty)
	{
		MemoryContextReset(w->row_cxt);
		w->row_cxt_dirty = false;
	}

	/* convert everything first, so a bad value leaves the writer untouched */
	parquet_values_convert_row(w, values, isnull);
	parquet_encoding_append_row(w);
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
		parquet_encoding_emit_page(w, c, true, c->ndict, ENC_PLAIN,
								   c->dict.data, c->dict.len,
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
		parquet_stats_write(tw, c);
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
		parquet_encoding_flush_page(w, c);
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
	parquet_schema_write(&tw, w);
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
