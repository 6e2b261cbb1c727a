/*
 * delivery/delivery_transform.c: the transform, Firehose's Lambda contract
 * as a SQL function, f(stream.firehose_record[]) RETURNS SETOF
 * stream.firehose_result.
 *
 * Records go to the function in chunks (at most 10,000 records or 3 MiB);
 * each call runs as the owner in the sandbox, in a subtransaction per
 * attempt, and is tried up to 1 + DELIVERY_TRANSFORM_RETRIES times, except
 * that a call that ran out of time or returned too much is not retried.  A
 * chunk whose calls all fail fails its records (Lambda.FunctionError); a
 * result per recordId says Ok (new data, partition keys), Dropped or
 * ProcessingFailed; unknown or repeated recordIds are ignored, missing ones
 * fail.
 *
 * A call's response is read through a cursor, a few rows at a time, and may
 * hold at most TRANSFORM_RESPONSE_BYTES (Lambda's 6 MB response limit,
 * counted on the values returned): the worker never holds more of it than
 * that, whatever the owner's function returns (many rows of unknown
 * recordIds, or huge data).
 */
#include "stream.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "streams/seqno.h"
#include "streams/shard.h"

#include "runtime/sandbox.h"
#include "delivery/delivery_int.h"

#define TRANSFORM_CHUNK_BYTES	(3 * 1024 * 1024)
#define TRANSFORM_CHUNK_RECORDS	10000
#define TRANSFORM_RESPONSE_BYTES	(6 * 1024 * 1024)
#define TRANSFORM_FETCH_ROWS	1000

static Oid
stream_type_oid(const char *name)
{
	Oid			t = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum(name),
									ObjectIdGetDatum(stream_nsp()));

	if (!OidIsValid(t))
		elog(ERROR, "type stream.%s is missing", name);
	return t;
}

/* a record's id: its sequence number, and ".<n>" for sub-record n of a KPL aggregate */
#define RECORD_ID_MAX	(SEQ_TEXT_LEN + 1 + 20)

typedef struct IdEntry
{
	char		k[RECORD_ID_MAX + 1];
	int			idx;
	bool		seen;
} IdEntry;

static char *
record_id(Batch *b, SrcRec *r)
{
	char	   *seq = seq_to_text(b->info->stream_id, r->shard_index, r->seq);

	return r->aggregated ? psprintf("%s." INT64_FORMAT, seq, r->sub_seq) : seq;
}

static void
transform_chunk(Batch *b, int lo, int hi, const char *fn_sql, TupleDesc in_desc,
				Oid in_type, Oid in_array_type, TimestampTz deadline, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	Datum	   *elems = palloc(sizeof(Datum) * (hi - lo));
	ArrayType  *arr;
	HTAB	   *ids;
	HASHCTL		ctl;
	volatile int attempt;
	char	   *volatile errmsg_text = NULL;
	volatile bool done = false;
	volatile bool timed_out = false;
	volatile bool too_big = false;

	for (int i = lo; i < hi; i++)
	{
		SrcRec	   *r = &b->recs[i];
		Datum		v[7];
		bool		n[7] = {false, false, false, false, false, false, false};
		bytea	   *d = palloc(VARHDRSZ + r->len);

		SET_VARSIZE(d, VARHDRSZ + r->len);
		memcpy(VARDATA(d), r->data, r->len);
		v[0] = CStringGetTextDatum(record_id(b, r));
		v[1] = TimestampTzGetDatum(r->arrival);
		v[2] = PointerGetDatum(d);
		v[3] = PointerGetDatum(cstring_to_text_with_len(r->pkey, r->pkey_len));
		v[4] = PointerGetDatum(seq_to_text_datum(b->info->stream_id, r->shard_index, r->seq));
		v[5] = CStringGetTextDatum(shard_id_text(r->shard_index));
		v[6] = Int64GetDatum(r->sub_seq);
		if (cfg->direct_put)
			n[3] = n[4] = n[5] = n[6] = true;
		elems[i - lo] = heap_copy_tuple_as_datum(heap_form_tuple(in_desc, v, n), in_desc);
	}
	arr = construct_array(elems, hi - lo, in_type, -1, false, TYPALIGN_DOUBLE);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = RECORD_ID_MAX + 1;
	ctl.entrysize = sizeof(IdEntry);
	ctl.hcxt = cxt;

	/*
	 * a call that ran out of time is not retried: one hung transform must not
	 * hold the worker 4 times; nor one that returned too much (it would again)
	 */
	for (attempt = 1; attempt <= 1 + DELIVERY_TRANSFORM_RETRIES && !done && !timed_out && !too_big; attempt++)
	{
		ResourceOwner oldowner = subxact_begin(cxt);
		Sandbox		sb;

		PG_TRY();
		{
			Oid			argtype = in_array_type;
			Datum		arg = PointerGetDatum(arr);
			Portal		portal;
			MemoryContext rowcxt;
			Size		response = 0;

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			ids = hash_create("transform record ids", hi - lo, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			for (int i = lo; i < hi; i++)
			{
				char	   *k = record_id(b, &b->recs[i]);
				IdEntry    *e = hash_search(ids, k, HASH_ENTER, NULL);

				e->idx = i;
				e->seen = false;
			}
			/* what one row of the response needs while it is looked at */
			rowcxt = AllocSetContextCreate(CurrentMemoryContext, "transform response row", ALLOCSET_SMALL_SIZES);

			/* the owner's function runs at the first fetch, in the sandbox; so does reading its rows */
			sandbox_begin(&sb, cfg->owner, deadline);
			portal = SPI_cursor_open_with_args(NULL, fn_sql, 1, &argtype, &arg, NULL, false, 0);
			for (;;)
			{
				SPI_cursor_fetch(portal, true, TRANSFORM_FETCH_ROWS);
				if (SPI_processed == 0)
					break;
				for (uint64 row = 0; row < SPI_processed; row++)
				{
					bool		isnull;
					char	   *rid;
					char	   *result;
					Datum		dd;
					Datum		kd;
					bool		knull;
					IdEntry    *e;
					SrcRec	   *r;
					MemoryContext rowold;

					CHECK_FOR_INTERRUPTS();
					MemoryContextReset(rowcxt);
					rowold = MemoryContextSwitchTo(rowcxt);
					rid = spi_text(row, 1);
					result = spi_text(row, 2);
					dd = spi_datum(row, 3, &isnull);
					kd = spi_datum(row, 4, &knull);
					response += (rid ? strlen(rid) : 0) + (result ? strlen(result) : 0) +
						(isnull ? 0 : toast_raw_datum_size(dd)) + (knull ? 0 : toast_raw_datum_size(kd));
					if (response > TRANSFORM_RESPONSE_BYTES)
					{
						too_big = true;
						ereport(ERROR,
								(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
								 errmsg("the transform's response exceeds %d bytes (Lambda's 6 MB response limit)",
										TRANSFORM_RESPONSE_BYTES),
								 errdetail("Rows of unknown recordIds and the data and partition keys returned count.")));
					}

					if (rid == NULL || strlen(rid) > RECORD_ID_MAX ||
						(e = hash_search(ids, rid, HASH_FIND, NULL)) == NULL || e->seen)
					{
						MemoryContextSwitchTo(rowold);
						continue;	/* unknown or repeated recordId: ignored */
					}
					e->seen = true;
					r = &b->recs[e->idx];
					r->attempts = attempt;
					if (result != NULL && strcmp(result, "Ok") == 0)
					{
						if (isnull)
						{
							MemoryContext o = MemoryContextSwitchTo(cxt);

							fail_record(r, "processing-failed", "Lambda.MissingData",
										"The transform returned result Ok without data.");
							MemoryContextSwitchTo(o);
						}
						else
						{
							bytea	   *od = DatumGetByteaPP(dd);
							MemoryContext o = MemoryContextSwitchTo(cxt);

							r->status = REC_OK;
							r->outlen = VARSIZE_ANY_EXHDR(od);
							r->out = palloc(r->outlen + 1);
							memcpy(r->out, VARDATA_ANY(od), r->outlen);
							r->out[r->outlen] = '\0';
							r->lambda_keys = knull ? NULL : DatumGetJsonbPCopy(kd);
							MemoryContextSwitchTo(o);
						}
					}
					else if (result != NULL && strcmp(result, "Dropped") == 0)
						r->status = REC_DROPPED;
					else
					{
						MemoryContext o = MemoryContextSwitchTo(cxt);

						if (result != NULL && strcmp(result, "ProcessingFailed") == 0)
							fail_record(r, "processing-failed", "Lambda.ProcessingFailed",
										"The transform returned result ProcessingFailed.");
						else
							fail_record(r, "processing-failed", "Lambda.InvalidResult",
										psprintf("The transform returned result '%s'; expected Ok, Dropped or ProcessingFailed.",
												 result ? result : "null"));
						MemoryContextSwitchTo(o);
					}
					MemoryContextSwitchTo(rowold);
				}
				SPI_freetuptable(SPI_tuptable);
			}
			SPI_cursor_close(portal);
			sandbox_end(&sb);
			{
				MemoryContext o = MemoryContextSwitchTo(cxt);

				for (int i = lo; i < hi; i++)
				{
					char	   *k = record_id(b, &b->recs[i]);
					IdEntry    *e = hash_search(ids, k, HASH_FIND, NULL);

					if (e && !e->seen)
						fail_record(&b->recs[i], "processing-failed", "Lambda.MissingRecordId",
									"The transform did not return this recordId.");
				}
				MemoryContextSwitchTo(o);
			}
			SPI_finish();
			subxact_commit(cxt, oldowner);
			done = true;
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			sandbox_abort(&sb);
			ed = subxact_abort(cxt, oldowner, TIME_LIMIT_FAILS_CALL);
			errmsg_text = pstrdup(ed->message);
			timed_out = sandbox_timed_out(ed->sqlerrcode);
			ereport(WARNING,
					(errmsg("Firehose %s: transform attempt %d failed: %s",
							cfg->name, (int) attempt, ed->message)));
		}
		PG_END_TRY();
	}
	if (!done)
	{
		for (int i = lo; i < hi; i++)
		{
			fail_record(&b->recs[i], "processing-failed", "Lambda.FunctionError",
						errmsg_text);
			b->recs[i].attempts = attempt - 1;
		}
	}
}

void
run_transform(Batch *b, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	HeapTuple	proc;
	char	   *fn_sql;
	Oid			in_type = stream_type_oid("firehose_record");
	Oid			in_array_type = get_array_type(in_type);
	TupleDesc	in_desc = lookup_rowtype_tupdesc_copy(in_type, -1);
	int			lo = 0;
	/* every chunk and attempt of the batch's transform shares one time limit */
	TimestampTz deadline = sandbox_deadline();

	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(cfg->transform));
	if (!HeapTupleIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("ResourceNotFoundException: the transform function of Firehose %s (oid %u) no longer exists",
						cfg->name, cfg->transform)));
	ReleaseSysCache(proc);
	fn_sql = psprintf("SELECT record_id, result, data, partition_keys FROM %s.%s($1)",
					  quote_identifier(get_namespace_name(get_func_namespace(cfg->transform))),
					  quote_identifier(get_func_name(cfg->transform)));
	BlessTupleDesc(in_desc);

	while (lo < b->nrecs)
	{
		int			hi = lo;
		Size		bytes = 0;

		while (hi < b->nrecs && hi - lo < TRANSFORM_CHUNK_RECORDS &&
			   (hi == lo || bytes + b->recs[hi].len <= TRANSFORM_CHUNK_BYTES))
			bytes += b->recs[hi++].len;
		transform_chunk(b, lo, hi, fn_sql, in_desc, in_type, in_array_type, deadline, cxt);
		lo = hi;
	}
}

