/*
 * delivery/delivery_batch.c: one batch of a delivery stream, the
 * exactly-once steps as functions.
 *
 * See delivery/README.md for the state machine.  A batch is a unit of the
 * consumer runtime (runtime/runtime.h): its ranges are fixed when it
 * begins, and its manifest row and counters commit in the transaction that
 * advances the checkpoints (runtime_finish_unit).
 */
#include "stream.h"

#include <limits.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "streams/access.h"
#include "streams/deaggregate.h"
#include "streams/stream_catalog.h"

#include "runtime/runtime.h"
#include "delivery/delivery_int.h"

/* One user record into the batch (Firehose de-aggregates a Kinesis source's KPL records). */
static void
collect_user_record(void *arg, const UserRecord *ur)
{
	Batch	   *b = arg;
	SrcRec	   *r;
	text	   *k = DatumGetTextPP(ur->partition_key);

	if (b->nrecs >= b->cap)
	{
		b->cap = Max(1024, b->cap * 2);
		b->recs = b->recs ? repalloc_huge(b->recs, sizeof(SrcRec) * b->cap)
			: palloc_extended(sizeof(SrcRec) * b->cap, MCXT_ALLOC_HUGE);
	}
	r = &b->recs[b->nrecs++];
	memset(r, 0, sizeof(*r));
	r->seq = ur->rec->seq;
	r->sub_seq = ur->sub_seq;
	r->aggregated = ur->aggregated;
	r->arrival = ur->rec->arrival;
	r->len = ur->data_len;
	r->data = palloc(r->len + 1);
	memcpy(r->data, ur->data, r->len);
	r->data[r->len] = '\0';
	r->pkey_len = VARSIZE_ANY_EXHDR(k);
	r->pkey = pnstrdup(VARDATA_ANY(k), r->pkey_len);
	r->status = REC_OK;
	r->out = r->data;
	r->outlen = r->len;
	r->attempts = 1;
	b->bytes += r->len + r->pkey_len;
	if ((Pointer) k != DatumGetPointer(ur->partition_key))
		pfree(k);
}

/*
 * A stream record of the batch's ranges.  A unit's ranges are whole stream
 * records, so an aggregate's user records are all in the one unit and
 * delivered exactly once together; the batch's counts (manifest, progress)
 * are user records.
 */
static void
collect_record(void *arg, const StreamRecord *rec)
{
	Batch	   *b = arg;

	/* Firehose's DirectPut takes records as they are */
	(void) deaggregate_record(rec, !b->cfg->direct_put, collect_user_record, b);
}

/*
 * The delivery stream's owner must still hold what creating it required:
 * read access to a source stream, and the right to write server files for a
 * directory destination.  Checked for every batch, so a revoke stops
 * delivery (the batch waits, with the error shown) rather than leaking.
 */
static void
check_owner_privileges(Batch *b)
{
	DeliveryConfig *cfg = b->cfg;

	if (!cfg->direct_put &&
		!access_allows(b->info, cfg->owner, ACL_SELECT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of delivery stream %s may no longer read stream %s",
						cfg->name, b->info->name),
				 errhint("Grant it again with stream.grant_stream_access(), or delete the delivery stream.")));
	if (cfg->destination != NULL && !superuser_arg(cfg->owner) &&
		!has_privs_of_role(cfg->owner, ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of delivery stream %s may no longer write server files",
						cfg->name),
				 errhint("Grant it pg_write_server_files again, or delete the delivery stream.")));
}

/* Every record of the batch's ranges, as the owner may still read them. */
void
read_batch(Batch *b)
{
	check_owner_privileges(b);
	for (int i = 0; i < b->unit.nranges; i++)
	{
		int			first = b->nrecs;

		runtime_read_range(&b->unit, b->info, i, collect_record, b);
		for (int j = first; j < b->nrecs; j++)
			b->recs[j].shard_index = b->unit.shards[i];
	}
}

/* The source stream's metadata, a private copy: the cache may be rebuilt while the batch runs. */
static StreamInfo *
source_stream(DeliveryConfig *cfg, MemoryContext cxt)
{
	StreamInfo *src = stream_lookup_by_id(cfg->source_stream_id, true);

	if (src == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NOT_FOUND),
				 errmsg("ResourceNotFoundException: the source stream of Firehose %s no longer exists", cfg->name)));
	return stream_info_copy(src, cxt);
}

/*
 * The last step (a file batch's step 4, or the table's single
 * transaction): the manifest row and counters, and through the runtime the
 * checkpoints, the pending unit gone and the back-off over.
 */
static void
finish_batch(Batch *b)
{
	ProcessorUnit *u = &b->unit;
	Oid			types[12] = {INT4OID, INT8OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, JSONBOID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT4OID, INT8OID};
	Datum		args[12];

	args[0] = Int32GetDatum(b->cfg->id);
	args[1] = Int64GetDatum(u->unit_no);
	args[2] = PointerGetDatum(runtime_int4_array(u->shards, u->nranges));
	args[3] = PointerGetDatum(runtime_int8_array(u->from, u->nranges));
	args[4] = PointerGetDatum(runtime_int8_array(u->to, u->nranges));
	args[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(b->files.data));
	args[6] = Int64GetDatum(b->nrecs);
	args[7] = Int64GetDatum(b->delivered);
	args[8] = Int64GetDatum(b->dropped);
	args[9] = Int64GetDatum(b->failed);
	args[10] = Int32GetDatum(b->nfiles);
	args[11] = Int64GetDatum(b->out_bytes);
	runtime_sql("SELECT stream_internal._delivery_finish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
				12, types, args, SPI_OK_SELECT);
	runtime_finish_unit(u);
}

/* a file batch's own state in stream.delivery_pending: its staging directory, then its file list */
static void
set_staging(Batch *b, const char *staging)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];

	args[0] = Int32GetDatum(b->cfg->id);
	args[1] = CStringGetTextDatum(staging);
	runtime_sql("SELECT stream_internal._delivery_stage($1, $2)", 2, types, args, SPI_OK_SELECT);
}

static void
set_files(Batch *b, const char *files)
{
	Oid			types[2] = {INT4OID, JSONBOID};
	Datum		args[2];
	char		nulls[2] = {' ', files ? ' ' : 'n'};

	args[0] = Int32GetDatum(b->cfg->id);
	args[1] = files ? DirectFunctionCall1(jsonb_in, CStringGetDatum(files)) : (Datum) 0;
	if (SPI_execute_with_args("SELECT stream_internal._delivery_set_files($1, $2)", 2, types, args,
							  nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record the files of a batch of Firehose %s", b->cfg->name);
}

static void
load_file_state(Batch *b, char **files, char **staging, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(b->cfg->id);

	*files = *staging = NULL;
	if (SPI_execute_with_args("SELECT files::text, staging FROM stream.delivery_pending WHERE delivery_stream_id = $1",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.delivery_pending");
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		*files = spi_text(0, 1);
		*staging = spi_text(0, 2);
		MemoryContextSwitchTo(old);
	}
}

/* an unpredictable staging directory, recorded before it exists */
static char *
new_staging(Batch *b, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	char	   *staging = destdir_staging_name(b->cfg->id, b->unit.unit_no);

	MemoryContextSwitchTo(old);
	set_staging(b, staging);
	return staging;
}

/*
 * Step 1 after a crash: the pending batch's file state.  Without a file
 * list it is written again from scratch: what an interrupted attempt staged
 * goes, and the new attempt stages under a new name, recorded before it is
 * created.
 */
static void
recover_begin(Batch *b, char **files, char **staging, MemoryContext cxt)
{
	load_file_state(b, files, staging, cxt);
	if (*files == NULL)
	{
		remove_staging(b->cfg, *staging, cxt);
		*staging = new_staging(b, cxt);
	}
}

/* A table destination: rows, error rows, manifest and checkpoints in this one transaction. */
static void
table_batch(Batch *b, MemoryContext cxt)
{
	MemoryContext old;

	runtime_begin_unit(&b->unit, false);
	old = MemoryContextSwitchTo(cxt);
	initStringInfo(&b->files);
	/* a locked destination fails the batch before the transform spends its time */
	lock_or_retry(b->cfg, resolve_table(b->cfg), RowExclusiveLock,
				  psprintf("destination table %s", b->cfg->destination_table));
	read_batch(b);
	if (OidIsValid(b->cfg->transform))
		run_transform(b, cxt);
	deliver_to_table(b, cxt);
	MemoryContextSwitchTo(old);
	finish_batch(b);
}

/* Step 2: read, transform and write the temporary files; commit their names. */
static char *
file_batch_write(Batch *b, const char *staging, MemoryContext cxt)
{
	MemoryContext old;

	runtime_step_begin();
	old = MemoryContextSwitchTo(cxt);
	read_batch(b);
	write_file_batch(b, cxt, staging);
	MemoryContextSwitchTo(old);
	set_files(b, b->files.data);
	runtime_step_end();
	return b->files.data;
}

/* After a crash past step 2: the counts for the progress row come from the committed file list. */
static void
counts_from_files(Batch *b, const char *files)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(files)));
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		is_data = false,
				is_error = false;

	initStringInfo(&b->files);
	appendStringInfoString(&b->files, files);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			b->nfiles++;
		else if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && strcmp(key, "kind") == 0 && v.type == jbvString)
		{
			is_data = v.val.string.len == 4 && strncmp(v.val.string.val, "data", 4) == 0;
			is_error = v.val.string.len == 5 && strncmp(v.val.string.val, "error", 5) == 0;
		}
		else if (tok == WJB_VALUE && v.type == jbvNumeric)
		{
			int64		x = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));

			if (strcmp(key, "records") == 0 && is_data)
				b->delivered += x;
			else if (strcmp(key, "records") == 0 && is_error)
				b->failed += x;
			else if (strcmp(key, "bytes") == 0 && is_data)
				b->out_bytes += x;
		}
	}
	/* recovery: how many records the ranges held is not known here; the others were dropped */
	b->nrecs = b->delivered + b->failed;
}

/*
 * Step 3: rename into place.  A file that vanished before it was published
 * makes the batch be written again (its file list goes).
 */
static bool
file_batch_publish(Batch *b, const char *files, const char *staging, MemoryContext cxt)
{
	if (!publish_files(b->cfg, files, staging, cxt))
	{
		ereport(WARNING,
				(errmsg("Firehose %s: a file of batch " INT64_FORMAT " vanished before it was published; writing the batch again",
						b->cfg->name, b->unit.unit_no)));
		runtime_step_begin();
		set_files(b, NULL);
		runtime_step_end();
		return false;
	}
	remove_staging(b->cfg, staging, cxt);
	return true;
}

/*
 * One unit of work for a delivery stream: finish a pending batch, or cut and
 * deliver a new one if its buffer is due.  Runs its own transactions.
 * *drained when nothing more is buffered.
 */
RunResult
deliver_unit(int32 id, bool force, MemoryContext cxt, bool *drained)
{
	Batch	   *b = palloc0(sizeof(Batch));
	bool		full = false;
	char	   *files = NULL;
	char	   *staging = NULL;

	batch_cxt = cxt;
	/* step 1: look at the buffer; record the batch as pending */
	runtime_step_begin();
	b->cfg = load_config(id, cxt);
	if (b->cfg == NULL)
	{
		runtime_step_end();
		return RUN_IDLE;
	}
	b->info = source_stream(b->cfg, cxt);
	if (runtime_load_pending(id, &b->unit, cxt))
		recover_begin(b, &files, &staging, cxt);
	else
	{
		ProcessorCheckpoints cps;
		MemoryContext old = MemoryContextSwitchTo(cxt);

		runtime_load_checkpoints(id, &cps, cxt);
		if (!buffer_due(b->cfg, b->info, force, &cps, b, &full))
		{
			MemoryContextSwitchTo(old);
			runtime_step_end();
			*drained = true;	/* nothing (more) to flush */
			return RUN_IDLE;
		}
		MemoryContextSwitchTo(old);
		if (b->cfg->destination == NULL)
		{
			table_batch(b, cxt);
			runtime_step_end();
			buffer_forget(id);
			*drained = !full;
			return full ? RUN_MORE : RUN_DONE;
		}
		runtime_begin_unit(&b->unit, true);
		staging = new_staging(b, cxt);
	}
	runtime_step_end();

	/* step 2: write the temporary files, commit their names */
	if (files == NULL)
		files = file_batch_write(b, staging, cxt);
	else
		counts_from_files(b, files);

	/* step 3: rename into place */
	if (!file_batch_publish(b, files, staging, cxt))
		return RUN_MORE;

	/* step 4: manifest, checkpoints, pending row gone */
	runtime_step_begin();
	finish_batch(b);
	runtime_step_end();
	buffer_forget(id);
	if (b->unit.recovered)
		return RUN_MORE;		/* after recovery, look at the buffer at once */
	*drained = !full;
	return full ? RUN_MORE : RUN_DONE;
}
