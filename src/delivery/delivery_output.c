/*
 * delivery/delivery_output.c: output formats of a file destination.
 *
 * CSV lines as COPY writes them, JSON lines with the schema's columns,
 * whole-file compression (gzip member, zstd frame, snappy framing format),
 * file name extensions, and the writers: a temporary file created
 * exclusively in the staging directory and fsynced, or a Parquet writer.
 */
#include "stream.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "parquet/parquet.h"
#include "delivery/delivery_int.h"

static void
csv_append_value_len(StringInfo out, const char *s, int len)
{
	bool		quote = (len == 0);
	const char *end = s + len;

	for (const char *p = s; p < end && !quote; p++)
		if (*p == ',' || *p == '"' || *p == '\n' || *p == '\r')
			quote = true;
	if (!quote)
	{
		appendBinaryStringInfo(out, s, len);
		return;
	}
	appendStringInfoChar(out, '"');
	for (const char *p = s; p < end; p++)
	{
		if (*p == '"')
			appendStringInfoChar(out, '"');
		appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '"');
}

static void
csv_append_value(StringInfo out, const char *s)
{
	csv_append_value_len(out, s, strlen(s));
}

/* One CSV line as COPY ... (FORMAT csv) writes it: NULL is empty, "" is an empty string. */
void
csv_append_row(StringInfo out, RowMapper *m, Datum *values, bool *isnull)
{
	for (int i = 0; i < m->natts; i++)
	{
		int			att = m->attnums[i] - 1;

		if (i > 0)
			appendStringInfoChar(out, ',');
		if (isnull[att])
			continue;
		/* what the output functions write, without the call and the copy */
		if (m->types[i] == BOOLOID)
			appendStringInfoString(out, DatumGetBool(values[att]) ? "true" : "false");
		else if (m->types[i] == INT8OID || m->types[i] == INT4OID || m->types[i] == INT2OID)
		{
			char		buf[MAXINT8LEN + 1];
			int64		v = m->types[i] == INT8OID ? DatumGetInt64(values[att]) :
				m->types[i] == INT4OID ? DatumGetInt32(values[att]) : DatumGetInt16(values[att]);

			appendBinaryStringInfo(out, buf, pg_lltoa(v, buf));
		}
		else if (m->types[i] == TEXTOID)
		{
			text	   *t = DatumGetTextPP(values[att]);

			csv_append_value_len(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		}
		else
			csv_append_value(out, OutputFunctionCall(&m->out_funcs[i], values[att]));
	}
	appendStringInfoChar(out, '\n');
}

/* One JSON line with the schema's columns (row_to_json). */
void
json_append_row(StringInfo out, RowMapper *m, Datum *values, bool *isnull)
{
	HeapTuple	tup = heap_form_tuple(m->desc, values, isnull);
	Datum		json = DirectFunctionCall1(row_to_json, HeapTupleGetDatum(tup));
	text	   *t = DatumGetTextPP(json);

	appendBinaryStringInfo(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	appendStringInfoChar(out, '\n');
	heap_freetuple(tup);
}

/* Whole-file compression of JSON lines, CSV and raw files. */
void
delivery_compress_file(StreamCodec c, StringInfo in, StringInfo out)
{
	CodecStream *cs;

	cs = codec_stream_create(c);
	codec_stream_write(cs, in->data, in->len, out);
	codec_stream_finish(cs, out);
	codec_stream_free(cs);
}

const char *
delivery_file_extension(DeliveryFormat f, StreamCodec c)
{
	/* Parquet compresses inside its pages; other files are compressed whole */
	if (f == DFMT_PARQUET)
		return ".parquet";
	return psprintf("%s%s", f == DFMT_JSON ? ".json" : f == DFMT_CSV ? ".csv" : "",
					codec_file_suffix(c));
}

/*
 * Write a whole new file name in dir (the batch's own staging directory),
 * fsync it, readable by others (0644).  It is created exclusively, never
 * through something planted at its name.
 */
void
delivery_write_file(DestDir *dir, const char *name, const char *data, Size len)
{
	int			fd = destdir_create_file(dir, name, 0644);
	Size		done = 0;

	PG_TRY();
	{
		(void) fchmod(fd, 0644);
		while (done < len)
		{
			ssize_t		n;

			CHECK_FOR_INTERRUPTS();
			errno = 0;
			n = write(fd, data + done, Min(len - done, (Size) 1024 * 1024));
			if (n <= 0)
			{
				if (errno == 0)
					errno = ENOSPC;
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("ServiceUnavailableException: could not write file \"%s/%s\": %m", dir->path, name)));
			}
			done += n;
		}
		if (pg_fsync(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("ServiceUnavailableException: could not fsync file \"%s/%s\": %m", dir->path, name)));
	}
	PG_CATCH();
	{
		close(fd);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (close(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not close file \"%s/%s\": %m", dir->path, name)));
}

void *
delivery_parquet_open(DestDir *dir, const char *name, RowMapper *m, StreamCodec c)
{
	ParquetWriterOptions opts;

	memset(&opts, 0, sizeof(opts));
	opts.dir_fd = dir->fd;
	opts.dir_path = dir->path;
	return parquet_writer_create_ext(name, m->desc, c, &opts);
}

void
delivery_parquet_add(void *w, Datum *values, bool *isnull)
{
	parquet_writer_add_row((ParquetWriter *) w, values, isnull);
}

uint64
delivery_parquet_finish(void *w)
{
	return parquet_writer_finish((ParquetWriter *) w, true);
}
