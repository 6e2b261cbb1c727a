/*
 * delivery/delivery_files.c: the server-directory destination, steps 2 of
 * a file batch: its objects.
 *
 * Each record goes to the object its partition values name (data, error
 * or backup; at most DELIVERY_MAX_PARTITIONS data objects a batch), is
 * converted into it as the owner, and every object is finished into an
 * fsynced temporary file created exclusively in the batch's own staging
 * directory.  Object names are a function of the delivery stream, the
 * batch number and the object's key alone, so a batch redone after a crash
 * makes the same names.  The list of final names is what the batch
 * commits before anything is published (delivery_publish.c).
 */
#include "stream.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "md5.h"
#include "delivery/delivery_int.h"

#define GROUP_KEY_MAX		1024

typedef enum ObjKind
{
	OBJ_DATA,
	OBJ_ERROR,
	OBJ_BACKUP
} ObjKind;

typedef struct OutObject
{
	char		key[GROUP_KEY_MAX]; /* hash key: kind + partition values */
	ObjKind		kind;
	const char *error_type;
	int			nkeys;
	char	  **key_names;
	char	  **key_values;
	TimestampTz oldest;
	StringInfo	buf;
	void	   *pw;				/* parquet writer */
	char	   *tmp_name;		/* in the staging directory */
	char	   *tmp_path;
	char	   *rel_path;
	int64		records;
	uint64		bytes;
	int			index;
} OutObject;

typedef struct FileOutput
{
	Batch	   *b;
	DestDir    *dir;			/* the batch's own staging directory */
	char	   *staging;		/* its path */
	HTAB	   *objects;
	OutObject **list;
	int			nobjects;
	int			cap;
	RowMapper  *mapper;
	MemoryContext cxt;
} FileOutput;

static OutObject *
get_object(FileOutput *fo, ObjKind kind, const char *error_type, int nkeys,
		   char **names, char **values, bool *toomany)
{
	char		key[GROUP_KEY_MAX];
	StringInfoData k;
	OutObject  *o;
	bool		found;
	MemoryContext old;

	initStringInfo(&k);
	appendStringInfo(&k, "%d\x1f%s", (int) kind, error_type ? error_type : "");
	for (int i = 0; i < nkeys; i++)
		appendStringInfo(&k, "\x1f%s", values[i]);
	if (k.len >= GROUP_KEY_MAX)
	{
		*toomany = true;
		return NULL;
	}
	memset(key, 0, sizeof(key));
	memcpy(key, k.data, k.len);
	pfree(k.data);
	o = hash_search(fo->objects, key, HASH_FIND, &found);
	if (found)
		return o;
	if (kind == OBJ_DATA && fo->nobjects >= DELIVERY_MAX_PARTITIONS)
	{
		*toomany = true;
		return NULL;
	}
	o = hash_search(fo->objects, key, HASH_ENTER, &found);
	old = MemoryContextSwitchTo(fo->cxt);
	o->kind = kind;
	o->error_type = error_type;
	o->nkeys = nkeys;
	o->key_names = names;
	o->key_values = palloc(sizeof(char *) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
		o->key_values[i] = pstrdup(values[i]);
	o->oldest = DT_NOEND;
	o->buf = makeStringInfo();
	o->pw = NULL;
	o->records = 0;
	o->bytes = 0;
	o->index = fo->nobjects;
	o->tmp_name = psprintf("%d.tmp", o->index);
	o->tmp_path = psprintf("%s/%s", fo->staging, o->tmp_name);
	o->rel_path = NULL;
	if (fo->nobjects >= fo->cap)
	{
		fo->cap = Max(16, fo->cap * 2);
		fo->list = fo->list ? repalloc(fo->list, sizeof(OutObject *) * fo->cap)
			: palloc(sizeof(OutObject *) * fo->cap);
	}
	fo->list[fo->nobjects++] = o;
	MemoryContextSwitchTo(old);
	return o;
}


/* Append one OK record to its object; errors here become record failures. */
static void
write_data_record(FileOutput *fo, OutObject *o, SrcRec *r, Datum *values, bool *isnull)
{
	DeliveryConfig *cfg = fo->b->cfg;

	switch (cfg->format)
	{
		case DFMT_RAW:
			appendBinaryStringInfo(o->buf, r->out, r->outlen);
			break;
		case DFMT_JSON:
			if (fo->mapper == NULL)
			{
				appendBinaryStringInfo(o->buf, r->out, r->outlen);
				if (r->outlen == 0 || r->out[r->outlen - 1] != '\n')
					appendStringInfoChar(o->buf, '\n');
				break;
			}
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			json_append_row(o->buf, fo->mapper, values, isnull);
			break;
		case DFMT_CSV:
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			csv_append_row(o->buf, fo->mapper, values, isnull);
			break;
		case DFMT_PARQUET:
			rowmapper_json_to_row(fo->mapper, r->out, r->outlen, values, isnull, NULL);
			if (o->pw == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(fo->cxt);

				o->pw = delivery_parquet_open(fo->dir, o->tmp_name, fo->mapper, cfg->compression);
				MemoryContextSwitchTo(old);
			}
			delivery_parquet_add(o->pw, values, isnull);
			break;
	}
	o->records++;
	if (r->arrival < o->oldest)
		o->oldest = r->arrival;
}


/* route_records' state for route_record */
typedef struct RouteState
{
	FileOutput *fo;
	int			nkeys;
	char	  **names;
	MemoryContext rec_cxt;
	Datum	   *values;
	bool	   *isnull;
	OutObject  *only;			/* without partition keys: the one data object */
} RouteState;

/* Convert one record into the object its partition values name. */
static void
route_record(SrcRec *r, void *arg)
{
	RouteState *rs = (RouteState *) arg;
	char	  **vals;
	OutObject  *o;
	bool		toomany = false;
	MemoryContext old;

	old = MemoryContextSwitchTo(rs->rec_cxt);
	vals = palloc(sizeof(char *) * Max(rs->nkeys, 1));
	if (rs->nkeys > 0)
	{
		PrefixValues v;
		char	   *why = NULL;
		bool		ok;

		/* an error while the keys are extracted (a jq filter) is a partitioning failure */
		convert_error_type = "processing-failed";
		convert_error_code = "DynamicPartitioning.MetadataExtractionFailed";
		ok = partition_values(rs->fo->b, r, rs->names, vals, rs->nkeys);
		convert_error_type = NULL;
		convert_error_code = NULL;
		if (ok)
		{
			/* the evaluated prefix must make a path the file system takes */
			memset(&v, 0, sizeof(v));
			v.ts = r->arrival;
			v.nkeys = rs->nkeys;
			v.key_names = rs->names;
			v.key_values = vals;
			if (prefix_eval_checked(rs->fo->b->cfg->prefix_t, &v, &why) == NULL)
			{
				fail_record(r, "processing-failed", "DynamicPartitioning.InvalidPartitionKeyValue",
							psprintf("The partition key values make an invalid prefix: %s.", why));
				ok = false;
			}
		}
		if (!ok)
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(rs->rec_cxt);
			return;
		}
	}
	MemoryContextSwitchTo(old);
	o = rs->only;
	if (o == NULL)
		o = get_object(rs->fo, OBJ_DATA, NULL, rs->nkeys, rs->names, vals, &toomany);
	if (o != NULL && rs->nkeys == 0)
		rs->only = o;
	if (o == NULL)
	{
		fail_record(r, "processing-failed", "DynamicPartitioning.PartitionLimitExceeded",
					psprintf("More than %d active partitions in one buffer. A key with a new value in almost every record "
							 "(a raw timestamp, say) makes a partition per record: reduce it, e.g. \".ts | strftime(\\\"%%Y-%%m-%%d\\\")\".",
							 DELIVERY_MAX_PARTITIONS));
		MemoryContextReset(rs->rec_cxt);
		return;
	}
	old = MemoryContextSwitchTo(rs->rec_cxt);
	write_data_record(rs->fo, o, r, rs->values, rs->isnull);
	MemoryContextSwitchTo(old);
	MemoryContextReset(rs->rec_cxt);
}

/*
 * Route the OK records to their objects, converting each; a record that
 * fails conversion is failed alone (see convert_records).
 */
static void
route_records(FileOutput *fo, MemoryContext cxt)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	PrefixTemplate *t = cfg->prefix_t;
	RouteState	rs;

	rs.fo = fo;
	rs.nkeys = 0;
	rs.rec_cxt = AllocSetContextCreate(cxt, "delivery record", ALLOCSET_DEFAULT_SIZES);
	rs.values = NULL;
	rs.isnull = NULL;
	rs.only = NULL;
	rs.names = palloc(sizeof(char *) * Max(t->nsegs, 1));
	for (int i = 0; i < t->nsegs; i++)
	{
		if (t->segs[i].kind == PSEG_KEY_QUERY || t->segs[i].kind == PSEG_KEY_LAMBDA)
		{
			char	   *n = psprintf("%c:%s", t->segs[i].kind == PSEG_KEY_QUERY ? 'q' : 'l', t->segs[i].text);
			bool		dup = false;

			for (int k = 0; k < rs.nkeys; k++)
				if (strcmp(rs.names[k], n) == 0)
					dup = true;
			if (!dup)
				rs.names[rs.nkeys++] = n;
		}
	}
	if (fo->mapper)
	{
		rs.values = palloc(sizeof(Datum) * fo->mapper->desc->natts);
		rs.isnull = palloc(sizeof(bool) * fo->mapper->desc->natts);
	}

	convert_records(b, cxt, rs.rec_cxt, route_record, &rs);
}

static void
object_name(StringInfo out, FileOutput *fo, OutObject *o)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	uint8		digest[16];
	char	   *seedtext = psprintf("%u/%d/" INT64_FORMAT "/%s", MyDatabaseId, cfg->id, b->unit.unit_no, o->key);
	PrefixValues v;
	char	   *ext;

	stream_md5(seedtext, strlen(seedtext), digest);
	memset(&v, 0, sizeof(v));
	v.ts = o->oldest;
	v.error_type = o->error_type;
	v.nkeys = o->nkeys;
	v.key_names = o->key_names;
	v.key_values = o->key_values;
	v.seed = ((uint32) digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3];
	appendStringInfoString(out, prefix_eval(o->kind == OBJ_DATA ? cfg->prefix_t :
											o->kind == OBJ_ERROR ? cfg->error_t : cfg->backup_t, &v));
	appendStringInfo(out, "%s-%d-", cfg->name, cfg->version);
	prefix_format_timestamp(out, "yyyy-MM-dd-HH-mm-ss", o->oldest);
	appendStringInfoChar(out, '-');
	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			appendStringInfoChar(out, '-');
		appendStringInfo(out, "%02x", digest[i]);
	}
	if (o->kind == OBJ_DATA)
		ext = (char *) delivery_file_extension(cfg->format, cfg->compression);
	else if (o->kind == OBJ_ERROR)
		ext = (char *) delivery_file_extension(DFMT_JSON, cfg->format == DFMT_PARQUET ? STREAM_CODEC_NONE : cfg->compression);
	else
		ext = (char *) delivery_file_extension(DFMT_RAW, cfg->format == DFMT_PARQUET ? STREAM_CODEC_NONE : cfg->compression);
	appendStringInfoString(out, ext);
}

/* Finish every object into its fsynced temporary file; build the file list. */
static void
finish_objects(FileOutput *fo)
{
	Batch	   *b = fo->b;
	DeliveryConfig *cfg = b->cfg;
	bool		first = true;

	initStringInfo(&b->files);
	appendStringInfoChar(&b->files, '[');
	for (int i = 0; i < fo->nobjects; i++)
	{
		OutObject  *o = fo->list[i];
		StringInfoData name;

		if (o->records == 0)
			continue;
		initStringInfo(&name);
		object_name(&name, fo, o);
		o->rel_path = name.data;
		if (o->pw != NULL)
		{
			/* created 0644 (see parquet_writer_create_ext) */
			o->bytes = delivery_parquet_finish(o->pw);
			o->pw = NULL;
		}
		else
		{
			StreamCodec comp = cfg->compression;

			if (cfg->format == DFMT_PARQUET && o->kind != OBJ_DATA)
				comp = STREAM_CODEC_NONE;	/* parquet compresses pages, not error files */
			if (comp != STREAM_CODEC_NONE)
			{
				StringInfoData z;

				initStringInfo(&z);
				delivery_compress_file(comp, o->buf, &z);
				pfree(o->buf->data);
				*o->buf = z;
			}
			delivery_write_file(fo->dir, o->tmp_name, o->buf->data, o->buf->len);
			o->bytes = o->buf->len;
			pfree(o->buf->data);
			o->buf->data = NULL;
		}
		if (!first)
			appendStringInfoChar(&b->files, ',');
		first = false;
		appendStringInfoString(&b->files, "{\"kind\":");
		escape_json(&b->files, o->kind == OBJ_DATA ? "data" : o->kind == OBJ_ERROR ? "error" : "backup");
		appendStringInfoString(&b->files, ",\"path\":");
		escape_json(&b->files, o->rel_path);
		appendStringInfoString(&b->files, ",\"tmp\":");
		escape_json(&b->files, o->tmp_path);
		appendStringInfo(&b->files, ",\"records\":" INT64_FORMAT ",\"bytes\":" UINT64_FORMAT "}",
						 o->records, (uint64) o->bytes);
		if (o->kind == OBJ_DATA)
			b->out_bytes += o->bytes;
		b->nfiles++;
	}
	appendStringInfoChar(&b->files, ']');
}


void
write_file_batch(Batch *b, MemoryContext cxt, const char *staging)
{
	DeliveryConfig *cfg = b->cfg;
	FileOutput	fo;
	HASHCTL		ctl;
	TimestampTz now = GetCurrentTimestamp();

	memset(&fo, 0, sizeof(fo));
	fo.b = b;
	fo.cxt = cxt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = GROUP_KEY_MAX;
	ctl.entrysize = sizeof(OutObject);
	ctl.hcxt = cxt;
	fo.objects = hash_create("delivery objects", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	/* a fresh staging directory of the batch's own, under the name recorded in its pending row */
	if (staging == NULL)
		elog(ERROR, "the pending batch of Firehose %s has no staging directory", cfg->name);
	{
		DestDir    *root = destdir_open_root(cfg->destination, cxt);
		DestDir    *sroot = destdir_staging_root(root, true);

		fo.dir = destdir_create_staging(sroot, staging);
		fo.staging = fo.dir->path;
		destdir_close(sroot);
		destdir_close(root);
	}

	if (cfg->format == DFMT_CSV || cfg->format == DFMT_PARQUET ||
		(cfg->format == DFMT_JSON && OidIsValid(cfg->schema)))
	{
		Oid			typrelid = get_typ_typrelid(cfg->schema);

		/* the type cache opens a composite type's relation to read its columns */
		if (OidIsValid(typrelid))
			lock_or_retry(cfg, typrelid, AccessShareLock, psprintf("schema %s", format_type_be(cfg->schema)));
		fo.mapper = rowmapper_create(cfg->schema, InvalidOid);
	}

	/* source record backup: the records as they came, before the transform */
	if (cfg->backup_t != NULL)
	{
		bool		toomany = false;
		OutObject  *o = get_object(&fo, OBJ_BACKUP, NULL, 0, NULL, NULL, &toomany);

		for (int i = 0; i < b->nrecs; i++)
		{
			appendBinaryStringInfo(o->buf, b->recs[i].data, b->recs[i].len);
			o->records++;
			if (b->recs[i].arrival < o->oldest)
				o->oldest = b->recs[i].arrival;
		}
	}

	if (OidIsValid(cfg->transform))
		run_transform(b, cxt);
	route_records(&fo, cxt);

	/* counts and error objects */
	for (int i = 0; i < b->nrecs; i++)
	{
		SrcRec	   *r = &b->recs[i];

		if (r->status == REC_OK)
			b->delivered++;
		else if (r->status == REC_DROPPED)
			b->dropped++;
		else
		{
			bool		toomany = false;
			OutObject  *o = get_object(&fo, OBJ_ERROR, r->error_type, 0, NULL, NULL, &toomany);

			append_error_line(o->buf, b, r, now);
			o->records++;
			if (r->arrival < o->oldest)
				o->oldest = r->arrival;
			b->failed++;
		}
	}
	finish_objects(&fo);
}

