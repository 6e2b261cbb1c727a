/*
 * runtime/checkpoint.c: a processor's units, pending ranges and checkpoints.
 *
 * The protocol (runtime.h): a unit's ranges are fixed when it begins; its
 * checkpoints advance only in the transaction that records its effects
 * (runtime_finish_unit), so a unit is done once or not at all.  A unit that
 * spans transactions is recorded as pending first, and after a crash the
 * same ranges are found again (runtime_load_pending) and redone.  The SQL
 * of each step is a function of src/sql/35_processors.sql.
 */
#include "stream.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "streams/seqalloc.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"

#include "runtime/runtime.h"

PG_FUNCTION_INFO_V1(stream_stable_seq);

/* stream_internal._stable_seq(stream_id, shard_index) RETURNS bigint: LATEST */
Datum
stream_stable_seq(PG_FUNCTION_ARGS)
{
	StreamInfo *info = stream_lookup_by_id(PG_GETARG_INT32(0), false);
	StreamShard *shard = shard_by_index(info, PG_GETARG_INT32(1), false);

	PG_RETURN_INT64(seqalloc_stable_seq(info, shard));
}

void
runtime_sql(const char *sql, int nargs, Oid *types, Datum *args, int expect)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ret = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	MemoryContextSwitchTo(cxt);	/* SPI returns in its own context */
	if (ret != expect)
		elog(ERROR, "processor bookkeeping failed (%s): %s", SPI_result_code_string(ret), sql);
}

ArrayType *
runtime_int4_array(const int32 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(v[i]);
	return construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT);
}

ArrayType *
runtime_int8_array(const int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static int
int4_elems(Datum d, int32 **out)
{
	Datum	   *e;
	bool	   *nn;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(d), INT4OID, 4, true, TYPALIGN_INT, &e, &nn, &n);
	*out = palloc(sizeof(int32) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = DatumGetInt32(e[i]);
	return n;
}

static int
int8_elems(Datum d, int64 **out)
{
	Datum	   *e;
	bool	   *nn;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &e, &nn, &n);
	*out = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = DatumGetInt64(e[i]);
	return n;
}

static Datum
col(int row, int c, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, c, isnull);
}

void
runtime_load_checkpoints(int32 processor_id, ProcessorCheckpoints *cps, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(processor_id);
	MemoryContext old = CurrentMemoryContext;

	if (SPI_execute_with_args("SELECT shard_index, lane, next_seq FROM stream.processor_checkpoints "
							  "WHERE processor_id = $1", 1, &argtype, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.processor_checkpoints");
	MemoryContextSwitchTo(cxt);
	cps->n = SPI_processed;
	cps->shard_index = palloc(sizeof(int32) * Max(cps->n, 1));
	cps->lane = palloc(sizeof(int32) * Max(cps->n, 1));
	cps->next_seq = palloc(sizeof(int64) * Max(cps->n, 1));
	for (int i = 0; i < cps->n; i++)
	{
		bool		isnull;

		cps->shard_index[i] = DatumGetInt32(col(i, 1, &isnull));
		cps->lane[i] = DatumGetInt32(col(i, 2, &isnull));
		cps->next_seq[i] = DatumGetInt64(col(i, 3, &isnull));
	}
	MemoryContextSwitchTo(old);
}

void
runtime_unit_init(ProcessorUnit *u, int32 processor_id, int maxranges)
{
	memset(u, 0, sizeof(*u));
	u->processor_id = processor_id;
	u->shards = palloc(sizeof(int32) * Max(maxranges, 1));
	u->lanes = palloc(sizeof(int32) * Max(maxranges, 1));
	u->from = palloc(sizeof(int64) * Max(maxranges, 1));
	u->to = palloc(sizeof(int64) * Max(maxranges, 1));
}

void
runtime_unit_add(ProcessorUnit *u, int32 shard_index, int32 lane, int64 from, int64 to)
{
	u->shards[u->nranges] = shard_index;
	u->lanes[u->nranges] = lane;
	u->from[u->nranges] = from;
	u->to[u->nranges] = to;
	u->nranges++;
}

/* The processor's pending unit into u (allocated in cxt); false if none. */
bool
runtime_load_pending(int32 processor_id, ProcessorUnit *u, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(processor_id);
	bool		isnull;
	MemoryContext old = CurrentMemoryContext;

	memset(u, 0, sizeof(*u));
	u->processor_id = processor_id;
	if (SPI_execute_with_args("SELECT unit_no, shard_indexes, lanes, from_seqs, to_seqs, min_arrival "
							  "FROM stream.processor_pending WHERE processor_id = $1",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.processor_pending");
	if (SPI_processed == 0)
	{
		MemoryContextSwitchTo(old);	/* SPI returns in its own context */
		return false;
	}
	MemoryContextSwitchTo(cxt);
	u->recovered = true;
	u->unit_no = DatumGetInt64(col(0, 1, &isnull));
	u->nranges = int4_elems(col(0, 2, &isnull), &u->shards);
	if (int4_elems(col(0, 3, &isnull), &u->lanes) != u->nranges ||
		int8_elems(col(0, 4, &isnull), &u->from) != u->nranges ||
		int8_elems(col(0, 5, &isnull), &u->to) != u->nranges)
		elog(ERROR, "the pending unit of processor %d is malformed", processor_id);
	u->min_arrival = DatumGetTimestampTz(col(0, 6, &isnull));
	MemoryContextSwitchTo(old);
	return true;
}

/* Number the unit; with pending, record its ranges (commit before any effect outside the database). */
void
runtime_begin_unit(ProcessorUnit *u, bool pending)
{
	Oid			types[7] = {INT4OID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZOID, BOOLOID};
	Datum		args[7];
	bool		isnull;
	MemoryContext cxt = CurrentMemoryContext;

	args[0] = Int32GetDatum(u->processor_id);
	args[1] = PointerGetDatum(runtime_int4_array(u->shards, u->nranges));
	args[2] = PointerGetDatum(runtime_int4_array(u->lanes, u->nranges));
	args[3] = PointerGetDatum(runtime_int8_array(u->from, u->nranges));
	args[4] = PointerGetDatum(runtime_int8_array(u->to, u->nranges));
	args[5] = TimestampTzGetDatum(u->min_arrival);
	args[6] = BoolGetDatum(pending);
	if (SPI_execute_with_args("SELECT stream_internal._processor_begin_unit($1, $2, $3, $4, $5, $6, $7)",
							  7, types, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not begin a unit of processor %d", u->processor_id);
	u->unit_no = DatumGetInt64(col(0, 1, &isnull));
	MemoryContextSwitchTo(cxt);
}

/* In the transaction of the unit's effects: checkpoints, pending row gone, back-off over. */
void
runtime_finish_unit(ProcessorUnit *u)
{
	Oid			types[5] = {INT4OID, INT8OID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
	Datum		args[5];

	args[0] = Int32GetDatum(u->processor_id);
	args[1] = Int64GetDatum(u->unit_no);
	args[2] = PointerGetDatum(runtime_int4_array(u->shards, u->nranges));
	args[3] = PointerGetDatum(runtime_int4_array(u->lanes, u->nranges));
	args[4] = PointerGetDatum(runtime_int8_array(u->to, u->nranges));
	runtime_sql("SELECT stream_internal._processor_finish_unit($1, $2, $3, $4, $5)",
				5, types, args, SPI_OK_SELECT);
}

/* A record the unit gives up on, with the client's envelope (a JSON object). */
void
runtime_dead_letter(ProcessorUnit *u, const char *error_type, const char *envelope_json)
{
	Oid			types[4] = {INT4OID, INT8OID, TEXTOID, JSONBOID};
	Datum		args[4];

	args[0] = Int32GetDatum(u->processor_id);
	args[1] = Int64GetDatum(u->unit_no);
	args[2] = CStringGetTextDatum(error_type);
	args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(envelope_json));
	runtime_sql("INSERT INTO stream.processor_errors (processor_id, unit_no, error_type, envelope) "
				"VALUES ($1, $2, $3, $4)", 4, types, args, SPI_OK_INSERT);
}
