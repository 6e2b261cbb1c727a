/*
 * esm/esm_kind.c: event source mappings as processors of the consumer
 * runtime (runtime/runtime.h).
 *
 * A unit is one invocation: the first shard of the mapping that has
 * records (parents before children, runtime_window) gives a batch of at
 * most batch_size records; the function is called with it as the mapping's
 * owner in the sandbox (its own time limit, function_timeout), in a
 * subtransaction, and its effects, the checkpoint and the shard's counters
 * commit in one transaction: exactly once in the database.
 *
 * Errors.  When the function raises (or runs out of time) the
 * subtransaction is rolled back and, in the same transaction, the shard's
 * state says what comes next:
 *   - with bisect_batch_on_function_error a batch of more than one record is
 *     halved (not a retry): the next batches hold at most half as many
 *     records until the checkpoint passes the end of the batch that failed;
 *   - otherwise (or a single record) the batch is retried after 100 ms,
 *     doubling up to 30 s, until maximum_retry_attempts retries failed; then
 *     Lambda's failure record (with the records' data) goes to
 *     on_failure_destination and the checkpoint moves past the batch.
 * Records older than maximum_record_age_in_seconds go to the destination
 * without an invocation (condition RecordAgeExceeded).  With
 * ReportBatchItemFailures a returned {"batchItemFailures": [...]} commits
 * the invocation's effects with the checkpoint at the lowest reported
 * sequence number; that counts as a failed attempt of the rest.
 */
#include "stream.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "streams/access.h"
#include "streams/seqno.h"
#include "streams/stream_catalog.h"

#include "runtime/runtime.h"
#include "runtime/sandbox.h"
#include "esm/esm.h"

#define ESM_MAX_BATCH_BYTES ((Size) 6 * 1024 * 1024)	/* Lambda's payload limit */

typedef struct EsmConfig
{
	int32		id;
	Oid			fn;
	Oid			owner;
	int32		stream_id;
	int			batch_size;
	bool		bisect;
	int			max_retry;
	int			max_age;
	char	   *destination;	/* NULL: failed batches are dropped */
	bool		report_failures;
	bool		enabled;
	int64		timeout_ms;
	TimestampTz at_timestamp;	/* 0: none */
	bool		json_arg;
	bool		json_result;
	char	   *call;			/* "schema.name($1::type)" */
	char	   *fn_text;
} EsmConfig;

typedef struct EsmBatch
{
	int			n;
	int			cap;
	int32		stream_id;
	int32		shard_index;
	TimestampTz at_timestamp;
	int64	   *seq;
	TimestampTz *arrival;
	Datum	   *pkey;
	Datum	   *data;
	Datum	   *seqtext;
	Size		bytes;
} EsmBatch;

static char *
spi_str(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static Datum
spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static EsmConfig *
load_config(int32 id, MemoryContext cxt)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	EsmConfig  *c;
	bool		isnull;
	MemoryContext old;

	if (SPI_execute_with_args(
							  "SELECT e.function_name::oid, p.owner::oid, e.event_source_id, e.batch_size, "
							  "e.bisect_batch_on_function_error, e.maximum_retry_attempts, "
							  "e.maximum_record_age_in_seconds, e.on_failure_destination, "
							  "'ReportBatchItemFailures' = ANY (e.function_response_types), e.enabled, "
							  "(extract(epoch FROM e.function_timeout) * 1000)::bigint, e.starting_position_timestamp, "
							  "f.proargtypes[0] = 'jsonb'::regtype, f.prorettype = 'jsonb'::regtype, "
							  "format('%I.%I($1::%s)', n.nspname, f.proname, f.proargtypes[0]::regtype), "
							  "e.function_name::text "
							  "FROM stream.event_source_mappings e JOIN stream.processors p USING (processor_id) "
							  "JOIN pg_catalog.pg_proc f ON f.oid = e.function_name "
							  "JOIN pg_catalog.pg_namespace n ON n.oid = f.pronamespace "
							  "WHERE e.processor_id = $1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.event_source_mappings");
	if (SPI_processed != 1)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	c = palloc0(sizeof(EsmConfig));
	c->id = id;
	c->fn = DatumGetObjectId(spi_datum(0, 1, &isnull));
	c->owner = DatumGetObjectId(spi_datum(0, 2, &isnull));
	c->stream_id = DatumGetInt32(spi_datum(0, 3, &isnull));
	c->batch_size = DatumGetInt32(spi_datum(0, 4, &isnull));
	c->bisect = DatumGetBool(spi_datum(0, 5, &isnull));
	c->max_retry = DatumGetInt32(spi_datum(0, 6, &isnull));
	c->max_age = DatumGetInt32(spi_datum(0, 7, &isnull));
	c->destination = spi_str(0, 8);
	c->report_failures = DatumGetBool(spi_datum(0, 9, &isnull));
	c->enabled = DatumGetBool(spi_datum(0, 10, &isnull));
	c->timeout_ms = DatumGetInt64(spi_datum(0, 11, &isnull));
	c->at_timestamp = DatumGetTimestampTz(spi_datum(0, 12, &isnull));
	if (isnull)
		c->at_timestamp = 0;
	c->json_arg = DatumGetBool(spi_datum(0, 13, &isnull));
	c->json_result = DatumGetBool(spi_datum(0, 14, &isnull));
	c->call = spi_str(0, 15);
	c->fn_text = spi_str(0, 16);
	MemoryContextSwitchTo(old);
	return c;
}

/* The source stream's metadata, a private copy: the cache may be rebuilt during the unit. */
static StreamInfo *
source_stream(EsmConfig *c, MemoryContext cxt)
{
	StreamInfo *src = stream_lookup_by_id(c->stream_id, true);

	if (src == NULL)
		return NULL;
	return stream_info_copy(src, cxt);
}

static void
collect(void *arg, const StreamRecord *rec)
{
	EsmBatch   *b = arg;

	if (b->at_timestamp != 0 && rec->arrival < b->at_timestamp)
		return;					/* AT_TIMESTAMP: older records are skipped */
	if (b->n >= b->cap)
	{
		b->cap = Max(64, b->cap * 2);
		b->seq = repalloc(b->seq, sizeof(int64) * b->cap);
		b->arrival = repalloc(b->arrival, sizeof(TimestampTz) * b->cap);
		b->pkey = repalloc(b->pkey, sizeof(Datum) * b->cap);
		b->data = repalloc(b->data, sizeof(Datum) * b->cap);
		b->seqtext = repalloc(b->seqtext, sizeof(Datum) * b->cap);
	}
	b->seq[b->n] = rec->seq;
	b->arrival[b->n] = rec->arrival;
	b->pkey[b->n] = datumCopy(rec->partition_key, false, -1);
	b->data[b->n] = datumCopy(rec->data, false, -1);
	b->seqtext[b->n] = PointerGetDatum(seq_to_text_datum(b->stream_id, b->shard_index, rec->seq));
	b->bytes += VARSIZE_ANY(DatumGetPointer(b->data[b->n]));
	b->n++;
}

/* the batch's records from..n-1 as arrays $1..$4 */
static void
batch_args(EsmBatch *b, int from, int n, Datum *args)
{
	args[0] = PointerGetDatum(construct_array(b->pkey + from, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(b->seqtext + from, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(b->data + from, n, BYTEAOID, -1, false, TYPALIGN_INT));
	{
		Datum	   *ts = palloc(sizeof(Datum) * Max(n, 1));

		for (int i = 0; i < n; i++)
			ts[i] = TimestampTzGetDatum(b->arrival[from + i]);
		args[3] = PointerGetDatum(construct_array(ts, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
}

#define BATCH_TYPES {TEXTARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, TIMESTAMPTZARRAYOID, TEXTOID, TEXTOID, TEXTOID}

static const char *event_composite =
"(SELECT pg_catalog.array_agg(ROW(k, s, d, a, $5, $6)::stream.kinesis_event ORDER BY o) "
"FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS r(k, s, d, a, o))";

static const char *event_json =
"(SELECT pg_catalog.jsonb_build_object('Records', pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
"'kinesis', pg_catalog.jsonb_build_object('kinesisSchemaVersion', '1.0', 'partitionKey', k, "
"'sequenceNumber', s, 'data', pg_catalog.translate(pg_catalog.encode(d, 'base64'), E'\\n', ''), "
"'approximateArrivalTimestamp', extract(epoch FROM a)), "
"'eventSource', 'aws:kinesis', 'eventVersion', '1.0', 'eventID', $6 || ':' || s, "
"'eventName', 'aws:kinesis:record', 'invokeIdentityArn', $7, 'awsRegion', 'local', "
"'eventSourceARN', $5) ORDER BY o)) "
"FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS r(k, s, d, a, o))";

/*
 * Run sql with the batch's arguments as the owner in the sandbox, in a
 * subtransaction.  catch: an error of the owner's code is returned (the
 * subtransaction rolled back) rather than raised.  *result: the first
 * column of a jsonb result, as text.
 */
static ErrorData *
run_as_owner(EsmConfig *c, const char *sql, Datum *args, bool catch,
			 char **result, MemoryContext cxt)
{
	Oid			types[7] = BATCH_TYPES;
	ResourceOwner oldowner;
	Sandbox		sb;
	ErrorData  *volatile err = NULL;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), c->timeout_ms);

	if (result)
		*result = NULL;
	oldowner = subxact_begin(cxt);
	PG_TRY();
	{
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		sandbox_begin(&sb, c->owner, deadline);
		ret = SPI_execute_with_args(sql, 7, types, args, NULL, false, 0);
		if (ret < 0)
			elog(ERROR, "invocation returned %s", SPI_result_code_string(ret));
		if (result && SPI_processed == 1 && SPI_tuptable != NULL)
		{
			char	   *v = spi_str(0, 1);

			if (v != NULL)
				*result = MemoryContextStrdup(cxt, v);
		}
		sandbox_end(&sb);
		SPI_finish();
		subxact_commit(cxt, oldowner);
	}
	PG_CATCH();
	{
		sandbox_abort(&sb);
		if (!catch)
			PG_RE_THROW();
		err = subxact_abort(cxt, oldowner, TIME_LIMIT_FAILS_CALL);
	}
	PG_END_TRY();
	return err;
}

/* Lambda's failure record with the records' data, into the destination, as the owner. */
static void
send_failure(EsmConfig *c, StreamInfo *info, EsmBatch *b, int from, int n, const char *condition,
			 int invocations, const char *error, MemoryContext cxt)
{
	Datum		args[7];
	char	   *sql;

	if (c->destination == NULL || n <= 0)
		return;
	batch_args(b, from, n, args);
	args[4] = CStringGetTextDatum(psprintf("arn:aws:kinesis:local:000000000000:stream/%s", info->name));
	args[5] = CStringGetTextDatum(psprintf("shardId-%012d", b->shard_index));
	/* $7: condition and invocation count */
	args[6] = CStringGetTextDatum(psprintf("{\"condition\": \"%s\", \"approximateInvokeCount\": %d}",
										   condition, invocations));
	sql = psprintf("INSERT INTO %s (failure) SELECT pg_catalog.jsonb_build_object("
				   "'requestContext', pg_catalog.jsonb_build_object('requestId', pg_catalog.gen_random_uuid(), "
				   "'functionArn', %s, 'condition', ($7::jsonb)->>'condition', "
				   "'approximateInvokeCount', (($7::jsonb)->>'approximateInvokeCount')::int), "
				   "'responseContext', pg_catalog.jsonb_build_object('statusCode', 200, 'executedVersion', '$LATEST', "
				   "'functionError', 'Unhandled', 'errorMessage', %s), "
				   "'version', '1.0', 'timestamp', pg_catalog.clock_timestamp(), "
				   "'KinesisBatchInfo', pg_catalog.jsonb_build_object('shardId', $6, "
				   "'startSequenceNumber', $2[1], 'endSequenceNumber', $2[pg_catalog.cardinality($2)], "
				   "'approximateArrivalOfFirstRecord', $4[1], "
				   "'approximateArrivalOfLastRecord', $4[pg_catalog.cardinality($4)], "
				   "'batchSize', pg_catalog.cardinality($2), 'streamArn', $5), "
				   "'records', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('partitionKey', k, "
				   "'sequenceNumber', s, 'data', pg_catalog.translate(pg_catalog.encode(d, 'base64'), E'\\n', ''), "
				   "'approximateArrivalTimestamp', a) ORDER BY o) "
				   "FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS r(k, s, d, a, o)))",
				   c->destination, quote_literal_cstr(c->fn_text),
				   error ? quote_literal_cstr(error) : "NULL");
	(void) run_as_owner(c, sql, args, false, NULL, cxt);
}

/* The shard's state row (defaults when none). */
typedef struct ShardState
{
	int			batch_limit;	/* 0: none */
	int64		bisect_end;
	int			attempts;
	bool		backing_off;
} ShardState;

static void
load_shard_state(int32 id, int32 shard, ShardState *s)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(id), Int32GetDatum(shard)};
	bool		isnull;

	memset(s, 0, sizeof(*s));
	if (SPI_execute_with_args("SELECT coalesce(batch_limit, 0), coalesce(bisect_end, 0), attempts, "
							  "coalesce(next_attempt_at > pg_catalog.clock_timestamp(), false) "
							  "FROM stream.event_source_mapping_shards WHERE processor_id = $1 AND shard_index = $2",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.event_source_mapping_shards");
	if (SPI_processed == 1)
	{
		s->batch_limit = DatumGetInt32(spi_datum(0, 1, &isnull));
		s->bisect_end = DatumGetInt64(spi_datum(0, 2, &isnull));
		s->attempts = DatumGetInt32(spi_datum(0, 3, &isnull));
		s->backing_off = DatumGetBool(spi_datum(0, 4, &isnull));
	}
}

static void
save_shard_state(int32 id, int32 shard, ShardState *s, int invocations, bool error, int failed,
				 const char *result, TimestampTz last_arrival, int64 backoff_ms)
{
	Oid			types[11] = {INT4OID, INT4OID, INT4OID, INT8OID, INT4OID, INT8OID, INT4OID, INT4OID,
	TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[11];
	char		nulls[11];

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(id);
	args[1] = Int32GetDatum(shard);
	args[2] = Int32GetDatum(s->batch_limit);
	args[3] = Int64GetDatum(s->bisect_end);
	args[4] = Int32GetDatum(s->attempts);
	args[5] = Int64GetDatum(invocations);
	args[6] = Int32GetDatum(error ? 1 : 0);
	args[7] = Int32GetDatum(failed);
	args[8] = result ? CStringGetTextDatum(result) : (Datum) 0;
	nulls[8] = result ? ' ' : 'n';
	args[9] = TimestampTzGetDatum(last_arrival);
	nulls[9] = last_arrival ? ' ' : 'n';
	args[10] = Int64GetDatum(backoff_ms);
	if (SPI_execute_with_args("INSERT INTO stream.event_source_mapping_shards AS g (processor_id, shard_index, "
							  "batch_limit, bisect_end, attempts, next_attempt_at, invocations, errors, failed_records, "
							  "last_result, last_invoked_at, last_arrival) "
							  "VALUES ($1, $2, NULLIF($3, 0), NULLIF($4, 0), $5, "
							  "CASE WHEN $11 > 0 THEN pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $11 / 1000.0) END, "
							  "$6, $7, $8, $9, CASE WHEN $6 > 0 THEN pg_catalog.clock_timestamp() END, $10) "
							  "ON CONFLICT (processor_id, shard_index) DO UPDATE SET batch_limit = EXCLUDED.batch_limit, "
							  "bisect_end = EXCLUDED.bisect_end, attempts = EXCLUDED.attempts, "
							  "next_attempt_at = EXCLUDED.next_attempt_at, invocations = g.invocations + EXCLUDED.invocations, "
							  "errors = g.errors + EXCLUDED.errors, failed_records = g.failed_records + EXCLUDED.failed_records, "
							  "last_result = coalesce(EXCLUDED.last_result, g.last_result), "
							  "last_invoked_at = coalesce(EXCLUDED.last_invoked_at, g.last_invoked_at), "
							  "last_arrival = coalesce(EXCLUDED.last_arrival, g.last_arrival)",
							  11, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write stream.event_source_mapping_shards");
}

/*
 * The index of the lowest reported failed item of a ReportBatchItemFailures
 * response (0..n-1), -1 for a complete success.  An identifier that names
 * no record of the batch, or is empty, fails the whole batch (Lambda).
 */
static int
first_failed_item(EsmBatch *b, int n, const char *response)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		args[2];
	bool		isnull;
	Datum		d;

	if (response == NULL)
		return -1;
	args[0] = CStringGetTextDatum(response);
	args[1] = PointerGetDatum(construct_array(b->seqtext, n, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT CASE WHEN pg_catalog.jsonb_typeof(j->'batchItemFailures') = 'array' THEN "
							  "(SELECT pg_catalog.min(coalesce(pg_catalog.array_position($2, f->>'itemIdentifier'), 1)) "
							  "FROM pg_catalog.jsonb_array_elements(j->'batchItemFailures') f) END "
							  "FROM (SELECT $1::jsonb AS j) x",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the function's response");
	d = spi_datum(0, 1, &isnull);
	return isnull ? -1 : DatumGetInt32(d) - 1;
}

static void
move_checkpoint(int32 id, int32 shard, int64 from, int64 to)
{
	ProcessorUnit u;

	runtime_unit_init(&u, id, 1);
	runtime_unit_add(&u, shard, 0, from, to);
	runtime_begin_unit(&u, false);
	runtime_finish_unit(&u);
}

static RunResult
esm_run_unit(const ProcessorRun *run, void *arg)
{
	MemoryContext cxt = run->cxt;
	EsmConfig  *c;
	StreamInfo *info;
	ProcessorCheckpoints cps;
	ConsumerWindow w;
	RunResult	result = RUN_IDLE;

	runtime_step_begin();
	c = load_config(run->processor_id, cxt);
	if (c == NULL || !c->enabled || (info = source_stream(c, cxt)) == NULL)
	{
		runtime_step_end();
		return RUN_IDLE;
	}
	/* the owner must still be allowed what creating the mapping required */
	if (!access_allows(info, c->owner, ACL_SELECT) ||
		pg_proc_aclcheck(c->fn, c->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of event source mapping %d may no longer read stream %s or execute %s",
						c->id, info->name, c->fn_text)));
	runtime_load_checkpoints(c->id, &cps, cxt);
	runtime_window(info, &cps, &w);
	(void) runtime_finish_empty_ends(c->id, &cps, &w);

	for (int i = 0; i < w.nshards && result == RUN_IDLE; i++)
	{
		ShardWindow *sw = &w.shards[i];
		ShardState	st;
		EsmBatch	b;
		int64		to = sw->to;
		int64		next;
		int			limit;
		int			n;
		int			old = 0;
		Datum		args[7];
		char	   *response = NULL;
		ErrorData  *err;
		int			failed_at;

		if (sw->finished || sw->blocked || sw->from >= sw->to)
			continue;
		load_shard_state(c->id, sw->shard->shard_index, &st);
		if (st.backing_off)
			continue;
		limit = st.batch_limit > 0 ? st.batch_limit : c->batch_size;
		if (st.bisect_end > 0 && st.bisect_end < to)
			to = st.bisect_end;

		memset(&b, 0, sizeof(b));
		b.stream_id = info->stream_id;
		b.shard_index = sw->shard->shard_index;
		b.at_timestamp = c->at_timestamp;
		b.cap = 64;
		b.seq = palloc(sizeof(int64) * b.cap);
		b.arrival = palloc(sizeof(TimestampTz) * b.cap);
		b.pkey = palloc(sizeof(Datum) * b.cap);
		b.data = palloc(sizeof(Datum) * b.cap);
		b.seqtext = palloc(sizeof(Datum) * b.cap);
		(void) runtime_scan(&w, sw->shard, sw->from, to, limit, ESM_MAX_BATCH_BYTES, collect, &b, &next);
		if (next <= sw->next)
			continue;
		if (b.n == 0)
		{
			/* skipped records only (AT_TIMESTAMP) */
			move_checkpoint(c->id, b.shard_index, sw->next, next);
			result = RUN_MORE;
			break;
		}
		/* records past maximum_record_age_in_seconds: to the destination uninvoked */
		if (c->max_age > 0)
		{
			TimestampTz horizon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -(int64) c->max_age * 1000);

			while (old < b.n && b.arrival[old] < horizon)
				old++;
			if (old > 0)
			{
				send_failure(c, info, &b, 0, old, "RecordAgeExceeded", 0, NULL, cxt);
				st.attempts = 0;
				next = old < b.n ? b.seq[old] : next;
				move_checkpoint(c->id, b.shard_index, sw->next, next);
				if (st.bisect_end > 0 && next >= st.bisect_end)
					st.batch_limit = 0, st.bisect_end = 0;
				save_shard_state(c->id, b.shard_index, &st, 0, false, old, NULL, b.arrival[old - 1], 0);
				result = RUN_MORE;
				break;
			}
		}

		/* the invocation */
		n = b.n;
		batch_args(&b, 0, n, args);
		args[4] = CStringGetTextDatum(psprintf("arn:aws:kinesis:local:000000000000:stream/%s", info->name));
		args[5] = CStringGetTextDatum(psprintf("shardId-%012d", b.shard_index));
		args[6] = CStringGetTextDatum(GetUserNameFromId(c->owner, false));
		{
			char	   *sql = psprintf("SELECT %s", c->call);
			char	   *ev = strstr(sql, "$1::");

			/* the event in place of $1: "name(<event>::type)" */
			*ev = '\0';
			sql = psprintf("%s%s::%s", sql, c->json_arg ? event_json : event_composite, ev + 4);
			err = run_as_owner(c, sql, args, true, c->json_result ? &response : NULL, cxt);
		}
		failed_at = -1;
		if (err == NULL && c->report_failures)
			failed_at = first_failed_item(&b, n, response);

		if (err == NULL && failed_at < 0)
		{
			/* success: effects, checkpoint and counters commit together */
			st.attempts = 0;
			move_checkpoint(c->id, b.shard_index, sw->next, next);
			if (st.bisect_end > 0 && next >= st.bisect_end)
				st.batch_limit = 0, st.bisect_end = 0;
			save_shard_state(c->id, b.shard_index, &st, 1, false, 0, "OK", b.arrival[n - 1], 0);
			result = RUN_MORE;
		}
		else if (err == NULL && failed_at > 0)
		{
			/* partial: the checkpoint goes to the lowest failed item */
			st.attempts++;
			move_checkpoint(c->id, b.shard_index, sw->next, b.seq[failed_at]);
			save_shard_state(c->id, b.shard_index, &st, 1, true, 0,
							 psprintf("PROBLEM: batchItemFailures from %s",
									  TextDatumGetCString(b.seqtext[failed_at])),
							 b.arrival[failed_at - 1], 0);
			result = RUN_MORE;
		}
		else
		{
			const char *msg = err ? err->message : "batchItemFailures reported the first record";
			char	   *problem = psprintf("PROBLEM: %s", msg);

			if (c->bisect && n > 1)
			{
				/* halve, not a retry; until the checkpoint passes the failed batch's end */
				st.batch_limit = (n + 1) / 2;
				if (st.bisect_end == 0)
					st.bisect_end = next;
				st.attempts = 0;
				save_shard_state(c->id, b.shard_index, &st, 1, true, 0, problem, 0, 0);
				result = RUN_MORE;
			}
			else if (c->max_retry >= 0 && st.attempts >= c->max_retry)
			{
				send_failure(c, info, &b, 0, n, "RetryAttemptsExhausted", st.attempts + 1, msg, cxt);
				st.attempts = 0;
				move_checkpoint(c->id, b.shard_index, sw->next, next);
				if (st.bisect_end > 0 && next >= st.bisect_end)
					st.batch_limit = 0, st.bisect_end = 0;
				save_shard_state(c->id, b.shard_index, &st, 1, true, n, problem, b.arrival[n - 1], 0);
				result = RUN_MORE;
			}
			else
			{
				int64		backoff = 100L << Min(st.attempts, 9);

				st.attempts++;
				save_shard_state(c->id, b.shard_index, &st, 1, true, 0, problem, 0, Min(backoff, 30000));
				result = RUN_DONE;
			}
		}
	}
	runtime_step_end();
	return result;
}

static void
esm_unit_failed(int32 id, ErrorData *ed, void *arg)
{
	ereport(WARNING,
			(errmsg("event source mapping %d failed: %s", id, ed->message),
			 errdetail("It is retried with back-off; nothing is lost.")));
}

static bool
esm_wants_now(int32 id, void *arg)
{
	return false;
}

static const ProcessorKind esm_kind = {
	.name = "event_source_mapping",
	.wants_now = esm_wants_now,
	.run_unit = esm_run_unit,
	.unit_failed = esm_unit_failed,
};

void
esm_init(void)
{
	runtime_register_kind(&esm_kind);
}

bool
esm_run_round(bool *extension_missing)
{
	return runtime_run_round(&esm_kind, NULL, extension_missing);
}
