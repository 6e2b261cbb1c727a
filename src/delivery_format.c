/*
 * delivery_format.c: what a delivery stream does with one record's bytes.
 *
 * JSON records are mapped onto the columns of a composite type (the
 * "schema", or the destination table's row type) by field name,
 * case-insensitively as Firehose's OpenX JSON SerDe does: strings go
 * through the column type's input function, numbers too (epoch seconds or
 * milliseconds for timestamp columns), nested objects and arrays as JSON
 * text, missing fields and null become NULL.  Rows are then written as CSV
 * (COPY's quoting), JSON lines or Parquet.  Whole-file compression and the
 * Parquet writer come from codec.c and parquet/.
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

#include "codec.h"
#include "parquet/parquet.h"
#include "delivery.h"

RowMapper *
rowmapper_create(Oid typid, Oid relid)
{
	RowMapper  *m = palloc0(sizeof(RowMapper));
	TupleDesc	desc;
	Relation	rel = NULL;
	int			n = 0;

	if (OidIsValid(relid))
	{
		rel = relation_open(relid, AccessShareLock);
		typid = rel->rd_rel->reltype;
		desc = RelationGetDescr(rel);
	}
	else
		desc = lookup_rowtype_tupdesc(typid, -1);

	m->typid = typid;
	m->desc = CreateTupleDescCopy(desc);
	m->desc->tdtypeid = typid;
	m->desc->tdtypmod = -1;
	m->attnums = palloc(sizeof(int) * desc->natts);
	m->names_lower = palloc(sizeof(char *) * desc->natts);
	m->in_funcs = palloc0(sizeof(FmgrInfo) * desc->natts);
	m->out_funcs = palloc0(sizeof(FmgrInfo) * desc->natts);
	m->in_ioparams = palloc(sizeof(Oid) * desc->natts);
	m->typmods = palloc(sizeof(int32) * desc->natts);
	m->types = palloc(sizeof(Oid) * desc->natts);
	m->has_default = palloc0(sizeof(bool) * desc->natts);
	m->is_generated = palloc0(sizeof(bool) * desc->natts);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			infunc,
					outfunc;
		bool		varlena;

		if (att->attisdropped)
			continue;
		m->attnums[n] = i + 1;
		m->names_lower[n] = str_tolower(NameStr(att->attname), strlen(NameStr(att->attname)),
										DEFAULT_COLLATION_OID);
		m->types[n] = att->atttypid;
		m->typmods[n] = att->atttypmod;
		getTypeInputInfo(att->atttypid, &infunc, &m->in_ioparams[n]);
		fmgr_info(infunc, &m->in_funcs[n]);
		getTypeOutputInfo(att->atttypid, &outfunc, &varlena);
		fmgr_info(outfunc, &m->out_funcs[n]);
		if (rel != NULL)
		{
			m->has_default[n] = att->atthasdef || att->attidentity != '\0';
			m->is_generated[n] = att->attgenerated != '\0';
		}
		n++;
	}
	m->natts = n;
	if (rel != NULL)
		relation_close(rel, AccessShareLock);
	else
		ReleaseTupleDesc(desc);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: schema %s has no columns", format_type_be(typid))));
	return m;
}

static bool
is_json_type(Oid t)
{
	return t == JSONOID || t == JSONBOID;
}

static bool
is_timestamp_type(Oid t)
{
	return t == TIMESTAMPOID || t == TIMESTAMPTZOID;
}

/* The JSON text of a scalar or container value. */
static char *
jbv_json_text(JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	else
	{
		Jsonb	   *jb = JsonbValueToJsonb(v);

		return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}
}

static Datum
jbv_to_datum(RowMapper *m, int i, JsonbValue *v)
{
	char	   *s;

	if (is_json_type(m->types[i]))
		s = jbv_json_text(v);
	else
	{
		switch (v->type)
		{
			case jbvString:
				s = pnstrdup(v->val.string.val, v->val.string.len);
				break;
			case jbvNumeric:
				if (is_timestamp_type(m->types[i]))
				{
					/* epoch seconds, or milliseconds when that large (OpenX SerDe) */
					double		x = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																	   NumericGetDatum(v->val.numeric)));
					double		us;

					if (fabs(x) >= 1e11)
						x /= 1000.0;
					us = x * 1e6 - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
					if (!(us > (double) MIN_TIMESTAMP && us < (double) END_TIMESTAMP))
						ereport(ERROR,
								(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
								 errmsg("timestamp out of range")));
					return Int64GetDatum((int64) rint(us));
				}
				s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
				break;
			case jbvBool:
				s = v->val.boolean ? "true" : "false";
				break;
			default:
				s = jbv_json_text(v);
				break;
		}
	}
	return InputFunctionCall(&m->in_funcs[i], s, m->in_ioparams[i], m->typmods[i]);
}

/*
 * Map one JSON object onto the columns; values and isnull are indexed like
 * the composite type's attributes (dropped ones NULL).  present (may be
 * NULL) tells which columns the object named.  Raises an error when the
 * record is not a JSON object or a value does not convert.
 */
void
rowmapper_json_to_row(RowMapper *m, const char *data, int len,
					  Datum *values, bool *isnull, bool *present)
{
	char	   *cstr = pnstrdup(data, len);
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			cur = -1;

	for (int i = 0; i < m->desc->natts; i++)
	{
		values[i] = (Datum) 0;
		isnull[i] = true;
	}
	if (present)
		memset(present, 0, sizeof(bool) * m->desc->natts);

	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(cstr)));
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("record is not a JSON object")));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			cur = -1;
			for (int i = 0; i < m->natts; i++)
			{
				const char *name = m->names_lower[i];
				int			nlen = strlen(name);

				if (nlen == v.val.string.len &&
					pg_strncasecmp(name, v.val.string.val, nlen) == 0)
				{
					cur = i;
					break;
				}
			}
		}
		else if (tok == WJB_VALUE && cur >= 0)
		{
			int			att = m->attnums[cur] - 1;

			if (present)
				present[att] = true;
			if (v.type == jbvNull)
				isnull[att] = true;
			else
			{
				values[att] = jbv_to_datum(m, cur, &v);
				isnull[att] = false;
			}
			cur = -1;
		}
	}
	pfree(cstr);
}

static void
csv_append_value(StringInfo out, const char *s)
{
	bool		quote = (*s == '\0');

	for (const char *p = s; *p && !quote; p++)
		if (*p == ',' || *p == '"' || *p == '\n' || *p == '\r')
			quote = true;
	if (!quote)
	{
		appendStringInfoString(out, s);
		return;
	}
	appendStringInfoChar(out, '"');
	for (const char *p = s; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(out, '"');
		appendStringInfoChar(out, *p);
	}
	appendStringInfoChar(out, '"');
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
		if (m->types[i] == BOOLOID)
			appendStringInfoString(out, DatumGetBool(values[att]) ? "true" : "false");
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

