/*
 * analytics/cq_unit.c: continuous queries as processors of the consumer
 * runtime (kind "continuous_query"), one unit of a query per round.
 *
 * A unit, in ONE transaction (exactly once: the source checkpoints, the
 * window state and the output commit together or not at all):
 *  1. cut up to batch_size records per readable shard (parents before
 *     children: runtime_window) and read them;
 *  2. as the owner, in the sandbox: decode each record's JSON into the
 *     declared columns (a record that does not decode goes to
 *     stream.processor_errors, never into a window), take its time (arrival
 *     time, or the event-time column), drop it as late when that time is
 *     below the watermark, and assign it to its windows;
 *  3. as the owner: the query's batch statement pre-aggregates the rows per
 *     window and group and merges the partial states into the state table
 *     (stream_internal._cq_batch() hands it the rows); session windows are
 *     merged where they meet; every window whose end the watermark passed is
 *     finalised into the destination and leaves the state;
 *  4. the watermark, the per-shard marks, the counters and the checkpoints.
 *
 * Watermark: per shard the highest time seen minus the lag; the query's is
 * the minimum over the active shards, never lower than before.  On arrival
 * time a shard with nothing left to read counts with the least arrival its
 * next record can have (arrival_bound: now, or the start of the oldest
 * producer transaction in flight), so the watermark follows the clock yet
 * never passes an in-flight producer.  On event time a shard with nothing to
 * read for idle_timeout stops holding the watermark back; when every shard
 * is idle it stays where it is.  The watermark moves record by record
 * within a unit, so on a single shard the late records are exactly those
 * below the highest time before them minus the lag, whatever the batch size.
 */
#include "stream.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "streams/seqalloc.h"
#include "streams/seqno.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"
#include "runtime/runtime.h"
#include "runtime/sandbox.h"
#include "delivery/delivery_int.h"
#include "analytics/analytics.h"

PG_FUNCTION_INFO_V1(stream_cq_batch);

typedef enum WindowKind
{
	W_TUMBLE,
	W_HOP,
	W_SESSION
} WindowKind;

/* A query's configuration, read at the start of every unit. */
typedef struct CqConfig
{
	int32		id;
	char	   *name;
	bool		running;
	bool		may_read;
	Oid			owner;
	Oid			input_type;
	int			time_attno;		/* 0: arrival time */
	WindowKind	kind;
	int64		size;			/* microseconds: tumble/hop size, session gap */
	int64		slide;
	TimestampTz origin;
	int64		lag;
	int64		idle;
	int			batch_size;
	char	   *batch_sql;
	char	   *merge_sql;
	char	   *emit_sql;
	char	   *late_sql;		/* NULL: late records are only counted */
	TimestampTz watermark;		/* DT_NOBEGIN: none yet */
	int32		stream_id;
} CqConfig;

/* A shard's marks: highest time seen, when it last had records. */
typedef struct ShardMark
{
	int32		shard_index;
	bool		has_max;
	TimestampTz max_time;
	TimestampTz active_at;
	bool		had_records;	/* in this unit */
	bool		active;			/* holds the watermark back */
} ShardMark;

typedef struct RawRec
{
	int32		shard_index;
	int64		seq;
	TimestampTz arrival;
	char	   *data;
	int			len;
	bool		ok;
	bool		late;
	TimestampTz time;			/* a late record's time, and the watermark it was below */
	TimestampTz watermark;
	char	   *error;
	Datum	   *values;
	bool	   *nulls;
} RawRec;

typedef struct Collect
{
	RawRec	   *recs;
	int			n;
	int			cap;
	int32		shard_index;
} Collect;

/* The rows of the unit under way, for stream_internal._cq_batch() (the owner only). */
static List *batch_rows = NIL;
static TupleDesc batch_desc = NULL;
static Oid	batch_owner = InvalidOid;

static Datum
spi_col(int row, int c, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, c, isnull);
}

static char *
spi_str(int row, int c)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, c);
}

static bool
cq_load_config(int32 id, CqConfig *c, MemoryContext cxt)
{
	Oid			t = INT4OID;
	Datum		a = Int32GetDatum(id);
	bool		isnull;
	MemoryContext old;

	if (SPI_execute_with_args(
							  "SELECT q.query_name, q.status = 'RUNNING', p.owner::oid, q.input_type::oid, q.time_attno, "
							  "q.window_kind, q.size_us, q.slide_us, q.origin, q.lag_us, q.idle_us, q.batch_size, "
							  "q.batch_sql, q.merge_sql, q.emit_sql, coalesce(q.watermark, '-infinity'), p.source_stream_id, "
							  "(SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = p.owner) OR "
							  " pg_catalog.has_table_privilege(p.owner, stream_internal._data_table(p.source_stream_id), 'SELECT'), "
							  "q.late_sql "
							  "FROM stream.continuous_queries q JOIN stream.processors p USING (processor_id) "
							  "WHERE q.processor_id = $1", 1, &t, &a, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.continuous_queries");
	if (SPI_processed == 0)
		return false;
	old = MemoryContextSwitchTo(cxt);
	c->id = id;
	c->name = spi_str(0, 1);
	c->running = DatumGetBool(spi_col(0, 2, &isnull));
	c->owner = DatumGetObjectId(spi_col(0, 3, &isnull));
	c->input_type = DatumGetObjectId(spi_col(0, 4, &isnull));
	c->time_attno = DatumGetInt32(spi_col(0, 5, &isnull));
	{
		char	   *k = spi_str(0, 6);

		c->kind = strcmp(k, "tumble") == 0 ? W_TUMBLE : strcmp(k, "hop") == 0 ? W_HOP : W_SESSION;
	}
	c->size = DatumGetInt64(spi_col(0, 7, &isnull));
	c->slide = DatumGetInt64(spi_col(0, 8, &isnull));
	c->origin = DatumGetTimestampTz(spi_col(0, 9, &isnull));
	c->lag = DatumGetInt64(spi_col(0, 10, &isnull));
	c->idle = DatumGetInt64(spi_col(0, 11, &isnull));
	c->batch_size = DatumGetInt32(spi_col(0, 12, &isnull));
	c->batch_sql = spi_str(0, 13);
	c->merge_sql = spi_str(0, 14);
	c->emit_sql = spi_str(0, 15);
	c->watermark = DatumGetTimestampTz(spi_col(0, 16, &isnull));
	c->stream_id = DatumGetInt32(spi_col(0, 17, &isnull));
	c->may_read = DatumGetBool(spi_col(0, 18, &isnull));
	c->late_sql = spi_str(0, 19);
	MemoryContextSwitchTo(old);
	return true;
}

static ShardMark *
cq_load_marks(CqConfig *c, StreamInfo *info, TimestampTz now)
{
	ShardMark  *m = palloc0(sizeof(ShardMark) * Max(info->nshards, 1));
	Oid			t = INT4OID;
	Datum		a = Int32GetDatum(c->id);

	for (int i = 0; i < info->nshards; i++)
	{
		m[i].shard_index = info->shards[i].shard_index;
		m[i].active_at = now;	/* first seen now: idle only after idle_timeout */
	}
	if (SPI_execute_with_args("SELECT shard_index, max_time, active_at FROM stream.continuous_query_shards "
							  "WHERE processor_id = $1", 1, &t, &a, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.continuous_query_shards");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int32		idx = DatumGetInt32(spi_col(r, 1, &isnull));

		for (int i = 0; i < info->nshards; i++)
			if (m[i].shard_index == idx)
			{
				Datum		d = spi_col(r, 2, &isnull);

				m[i].has_max = !isnull;
				if (!isnull)
					m[i].max_time = DatumGetTimestampTz(d);
				m[i].active_at = DatumGetTimestampTz(spi_col(r, 3, &isnull));
			}
	}
	return m;
}

static void
collect_sink(void *arg, const StreamRecord *rec)
{
	Collect    *c = arg;
	bytea	   *d = DatumGetByteaPP(rec->data);
	RawRec	   *r;

	if (c->n >= c->cap)
	{
		c->cap = Max(64, c->cap * 2);
		c->recs = c->recs ? repalloc(c->recs, sizeof(RawRec) * c->cap) : palloc(sizeof(RawRec) * c->cap);
	}
	r = &c->recs[c->n++];
	memset(r, 0, sizeof(*r));
	r->shard_index = c->shard_index;
	r->seq = rec->seq;
	r->arrival = rec->arrival;
	r->len = VARSIZE_ANY_EXHDR(d);
	r->data = palloc(r->len + 1);
	memcpy(r->data, VARDATA_ANY(d), r->len);
	r->data[r->len] = '\0';
}

/* floor((ts - origin) / step) * step + origin, as date_bin */
static TimestampTz
bin(TimestampTz ts, TimestampTz origin, int64 step)
{
	int64		d = ts - origin;
	int64		q = d / step;

	if (d % step < 0)
		q--;
	return origin + q * step;
}

/*
 * The watermark the shards allow: the least highest time of the active
 * shards minus the lag; with no active shard, see the head of the file.
 */
static TimestampTz
shards_watermark(CqConfig *c, ShardMark *m, int n, TimestampTz now)
{
	bool		any = false;
	TimestampTz w = DT_NOEND;

	for (int i = 0; i < n; i++)
	{
		if (!m[i].active)
			continue;
		any = true;
		if (!m[i].has_max)
			return DT_NOBEGIN;
		w = Min(w, m[i].max_time - c->lag);
	}
	if (!any)
		return c->time_attno == 0 ? now - c->idle - c->lag : DT_NOBEGIN;
	return w;
}

/*
 * Arrival time, a shard with nothing left to read: the least arrival time
 * its next record can have.  Arrival times are stamped in order per shard
 * when numbers are reserved (seqalloc), so with no producer in flight and
 * nothing committed since the window was cut, every later record arrives
 * after now (taken before the window); with producers in flight, not before
 * the lowest one's transaction began.  The shard's mark moves up to that
 * bound: the watermark passes neither an idle shard's future records nor an
 * in-flight producer, and needs no idle timeout.
 */
static void
arrival_bound(StreamInfo *info, ShardWindow *sw, ShardMark *m, TimestampTz now)
{
	SeqHoldback hb;
	TimestampTz bound;

	if (sw->shard->closed || sw->from < sw->to)
		return;
	seqalloc_holdback(info, sw->shard, &hb);
	if (hb.stable > sw->to)
		return;					/* committed since: read by the next unit */
	bound = hb.inflight > 0 ? hb.holder_xact_start : now;
	if (!m->has_max || bound > m->max_time)
	{
		m->max_time = bound;
		m->has_max = true;
	}
}

/* decode one record as the owner; errors propagate */
static void
decode_one(RowMapper *rm, RawRec *r, int time_attno)
{
	r->values = palloc(sizeof(Datum) * rm->desc->natts);
	r->nulls = palloc(sizeof(bool) * rm->desc->natts);
	rowmapper_json_to_row(rm, r->data, r->len, r->values, r->nulls, NULL);
	if (time_attno > 0 && r->nulls[time_attno - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the record has no event time (column %s)",
						NameStr(TupleDescAttr(rm->desc, time_attno - 1)->attname))));
}

static void
decode_batch(RowMapper *rm, RawRec *recs, int n, int time_attno)
{
	for (int i = 0; i < n; i++)
	{
		decode_one(rm, &recs[i], time_attno);
		recs[i].ok = true;
	}
}

/* one record in a subtransaction of its own: a failure is marked on it */
static void
decode_alone(RowMapper *rm, RawRec *r, int time_attno, MemoryContext cxt)
{
	ResourceOwner o2 = subxact_begin(cxt);

	r->ok = false;
	PG_TRY();
	{
		decode_one(rm, r, time_attno);
		r->ok = true;
		subxact_commit(cxt, o2);
	}
	PG_CATCH();
	{
		ErrorData  *e2 = subxact_abort(cxt, o2, TIME_LIMIT_FAILS_UNIT);

		r->error = pstrdup(e2->message ? e2->message : "decode error");
	}
	PG_END_TRY();
}

/*
 * Decode every record: the whole batch in one subtransaction, and only when
 * that fails one subtransaction per record, the failures marked.
 */
static void
decode_all(RowMapper *rm, RawRec *recs, int n, int time_attno, MemoryContext cxt)
{
	ResourceOwner oldowner = subxact_begin(cxt);

	PG_TRY();
	{
		decode_batch(rm, recs, n, time_attno);
		subxact_commit(cxt, oldowner);
	}
	PG_CATCH();
	{
		ErrorData  *ed = subxact_abort(cxt, oldowner, TIME_LIMIT_FAILS_UNIT);

		FreeErrorData(ed);
		for (int i = 0; i < n; i++)
			decode_alone(rm, &recs[i], time_attno, cxt);
	}
	PG_END_TRY();
}

static void
add_row(RawRec *r, int natts, TimestampTz ws, TimestampTz we)
{
	Datum	   *v = palloc(sizeof(Datum) * (natts + 2));
	bool	   *nn = palloc(sizeof(bool) * (natts + 2));

	memcpy(v, r->values, sizeof(Datum) * natts);
	memcpy(nn, r->nulls, sizeof(bool) * natts);
	v[natts] = TimestampTzGetDatum(ws);
	v[natts + 1] = TimestampTzGetDatum(we);
	nn[natts] = nn[natts + 1] = false;
	batch_rows = lappend(batch_rows, heap_form_tuple(batch_desc, v, nn));
}

/* the windows of a record at time ts */
static void
assign_windows(CqConfig *c, RawRec *r, int natts, TimestampTz ts)
{
	if (c->kind == W_TUMBLE)
	{
		TimestampTz s = bin(ts, c->origin, c->size);

		add_row(r, natts, s, s + c->size);
	}
	else if (c->kind == W_HOP)
	{
		/* every window start k * slide + origin with start <= ts < start + size */
		for (TimestampTz s = bin(ts, c->origin, c->slide); s + c->size > ts; s -= c->slide)
			add_row(r, natts, s, s + c->size);
	}
	else
		add_row(r, natts, ts, ts + c->size);
}

static void
owner_sql(const char *sql, int nargs, Oid *types, Datum *args, int expect, uint64 *processed)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	if (ret != expect)
		elog(ERROR, "continuous query statement failed (%s)", SPI_result_code_string(ret));
	if (processed)
		*processed = SPI_processed;
}

/* The late records into the query's side output, as its owner. */
static void
late_output(CqConfig *c, RawRec *recs, int n, int64 nlate)
{
	Datum	   *shard = palloc(sizeof(Datum) * nlate);
	Datum	   *seq = palloc(sizeof(Datum) * nlate);
	Datum	   *tm = palloc(sizeof(Datum) * nlate);
	Datum	   *wm = palloc(sizeof(Datum) * nlate);
	Datum	   *data = palloc(sizeof(Datum) * nlate);
	Oid			types[5] = {TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		args[5];
	int			k = 0;

	for (int i = 0; i < n && k < nlate; i++)
	{
		if (!recs[i].late)
			continue;
		shard[k] = CStringGetTextDatum(shard_id_text(recs[i].shard_index));
		seq[k] = PointerGetDatum(seq_to_text_datum(c->stream_id, recs[i].shard_index, recs[i].seq));
		tm[k] = TimestampTzGetDatum(recs[i].time);
		wm[k] = TimestampTzGetDatum(recs[i].watermark);
		data[k] = PointerGetDatum(cstring_to_text_with_len(recs[i].data, recs[i].len));
		k++;
	}
	args[0] = PointerGetDatum(construct_array(shard, k, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(seq, k, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(tm, k, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(wm, k, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(data, k, TEXTOID, -1, false, TYPALIGN_INT));
	owner_sql(c->late_sql, 5, types, args, SPI_OK_INSERT, NULL);
}

/*
 * Move the windows the watermark passed from the state to the destination;
 * returns the rows written.  A table destination is an INSERT; a stream or
 * delivery stream one puts the rows and answers (put, failed, first error):
 * a record refused (a throughput limit) fails the unit, which is redone.
 */
static uint64
emit(const char *sql, TimestampTz watermark)
{
	Oid			t = TIMESTAMPTZOID;
	Datum		a = TimestampTzGetDatum(watermark);
	int			ret = SPI_execute_with_args(sql, 1, &t, &a, NULL, false, 0);
	bool		isnull;
	int64		failed;

	if (ret == SPI_OK_INSERT)
		return SPI_processed;
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "continuous query emission failed (%s)", SPI_result_code_string(ret));
	failed = DatumGetInt64(spi_col(0, 2, &isnull));
	if (failed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("%s", spi_str(0, 3)),
				 errdetail("%lld of the windows' records were refused; the unit is redone with back-off.",
						   (long long) failed)));
	return (uint64) DatumGetInt64(spi_col(0, 1, &isnull));
}

static RunResult
cq_run_unit(const ProcessorRun *run, void *arg)
{
	MemoryContext cxt = run->cxt;
	CqConfig	c;
	StreamInfo *info;
	ProcessorCheckpoints cps;
	ConsumerWindow w;
	ProcessorUnit u;
	ShardMark  *marks;
	Collect		col;
	volatile bool more = false;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz w_start;
	TimestampTz w_cur;
	int64		late = 0;
	int64		failed = 0;
	int64		admitted = 0;
	uint64		emitted = 0;
	int			natts = 0;
	RowMapper  *rm = NULL;
	RunResult	result = RUN_IDLE;

	runtime_step_begin();
	if (!cq_load_config(run->processor_id, &c, cxt) || !c.running)
	{
		runtime_step_end();
		return RUN_IDLE;
	}
	if (!c.may_read)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: the owner of continuous query %s may no longer read its source stream", c.name)));
	info = stream_lookup_by_id(c.stream_id, false);
	runtime_load_checkpoints(c.id, &cps, cxt);
	runtime_window(info, &cps, &w);
	(void) runtime_finish_empty_ends(c.id, &cps, &w);
	marks = cq_load_marks(&c, info, now);

	/* 1. cut and read */
	memset(&col, 0, sizeof(col));
	runtime_unit_init(&u, c.id, Max(w.nshards, 1));
	u.min_arrival = w.min_arrival;
	for (int i = 0; i < w.nshards; i++)
	{
		ShardWindow *sw = &w.shards[i];
		int64		next;
		int			before = col.n;

		marks[i].active = !sw->finished && !sw->blocked;
		if (sw->finished || sw->blocked || sw->from >= sw->to)
			continue;
		col.shard_index = sw->shard->shard_index;
		(void) runtime_scan(&w, sw->shard, sw->from, sw->to, c.batch_size, (Size) 64 * 1024 * 1024,
							collect_sink, &col, &next);
		if (col.n > before || next > sw->next)
		{
			runtime_unit_add(&u, sw->shard->shard_index, 0, sw->next, next);
			if (next < sw->to)
				more = true;
		}
		if (col.n > before)
		{
			marks[i].had_records = true;
			marks[i].active_at = now;
		}
	}
	for (int i = 0; i < w.nshards; i++)
	{
		if (!marks[i].active || marks[i].had_records)
			continue;
		if (c.time_attno == 0)
			arrival_bound(info, &w.shards[i], &marks[i], now);
		else if (marks[i].active_at <= now - c.idle)
			marks[i].active = false;	/* idle: does not hold the watermark back */
	}

	w_start = c.watermark;
	if (u.nranges == 0 && Max(w_start, shards_watermark(&c, marks, w.nshards, now)) <= w_start)
	{
		/* nothing to read and no window to close: write nothing */
		runtime_step_end();
		return RUN_IDLE;
	}
	if (u.nranges > 0)
		runtime_begin_unit(&u, false);

	/* 2, 3: as the owner */
	{
		ResourceOwner oldowner = subxact_begin(cxt);
		Sandbox		sb;

		PG_TRY();
		{
			TimestampTz deadline = sandbox_deadline();

			sandbox_begin(&sb, c.owner, deadline);
			if (col.n > 0)
			{
				rm = rowmapper_create(c.input_type, InvalidOid);
				natts = rm->desc->natts;
				decode_all(rm, col.recs, col.n, c.time_attno, cxt);
			}
			batch_desc = CreateTemplateTupleDesc(natts + 2);
			for (int a = 0; a < natts; a++)
				TupleDescCopyEntry(batch_desc, a + 1, rm->desc, a + 1);
			TupleDescInitEntry(batch_desc, natts + 1, "window_start", TIMESTAMPTZOID, -1, 0);
			TupleDescInitEntry(batch_desc, natts + 2, "window_end", TIMESTAMPTZOID, -1, 0);
			batch_rows = NIL;

			w_cur = w_start;
			for (int i = 0; i < col.n; i++)
			{
				RawRec	   *r = &col.recs[i];
				TimestampTz ts;
				ShardMark  *m = NULL;

				CHECK_FOR_INTERRUPTS();
				if (!r->ok)
				{
					failed++;
					continue;
				}
				ts = c.time_attno == 0 ? r->arrival : DatumGetTimestampTz(r->values[c.time_attno - 1]);
				if (TIMESTAMP_NOT_FINITE(ts))
				{
					r->ok = false;
					r->error = pstrdup("the record's time is not finite");
					failed++;
					continue;
				}
				/* the watermark as the records before this one left it */
				w_cur = Max(w_cur, shards_watermark(&c, marks, w.nshards, now));
				if (ts < w_cur)
				{
					late++;
					r->late = true;
					r->time = ts;
					r->watermark = w_cur;
				}
				else
				{
					assign_windows(&c, r, natts, ts);
					admitted++;
				}
				for (int k = 0; k < w.nshards; k++)
					if (marks[k].shard_index == r->shard_index)
						m = &marks[k];
				if (!m->has_max || ts > m->max_time)
				{
					m->max_time = ts;
					m->has_max = true;
				}
			}
			w_cur = Max(w_cur, shards_watermark(&c, marks, w.nshards, now));

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			batch_owner = c.owner;
			if (batch_rows != NIL)
			{
				owner_sql(c.batch_sql, 0, NULL, NULL, SPI_OK_INSERT, NULL);
				if (c.merge_sql)
					owner_sql(c.merge_sql, 0, NULL, NULL, SPI_OK_INSERT, NULL);
			}
			if (late > 0 && c.late_sql)
				late_output(&c, col.recs, col.n, late);
			if (w_cur > w_start)
				emitted = emit(c.emit_sql, w_cur);
			batch_owner = InvalidOid;
			batch_rows = NIL;
			batch_desc = NULL;
			SPI_finish();
			sandbox_end(&sb);
			subxact_commit(cxt, oldowner);
		}
		PG_CATCH();
		{
			batch_owner = InvalidOid;
			batch_rows = NIL;
			batch_desc = NULL;
			sandbox_abort(&sb);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}

	/* 4. as the worker */
	for (int i = 0; i < col.n; i++)
	{
		RawRec	   *r = &col.recs[i];
		StringInfoData env;

		if (r->ok)
			continue;
		initStringInfo(&env);
		appendStringInfoString(&env, "{\"shardId\":");
		escape_json(&env, shard_id_text(r->shard_index));
		appendStringInfoString(&env, ",\"sequenceNumber\":");
		escape_json(&env, text_to_cstring(seq_to_text_datum(c.stream_id, r->shard_index, r->seq)));
		appendStringInfoString(&env, ",\"errorMessage\":");
		escape_json(&env, r->error ? r->error : "decode error");
		appendStringInfoChar(&env, '}');
		runtime_dead_letter(&u, "RecordDecodeError", env.data);
	}
	{
		Oid			types[8] = {INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, INT8OID, INT4ARRAYOID, INT4ARRAYOID};
		Datum		args[8];
		Datum	   *maxes = palloc(sizeof(Datum) * Max(w.nshards, 1));
		bool	   *maxnull = palloc(sizeof(bool) * Max(w.nshards, 1));
		Datum	   *acts = palloc(sizeof(Datum) * Max(w.nshards, 1));
		int32	   *idx = palloc(sizeof(int32) * Max(w.nshards, 1));
		int			dims[1] = {w.nshards};
		int			lbs[1] = {1};
		Oid			t2[4] = {INT4OID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		a2[4];

		args[0] = Int32GetDatum(c.id);
		args[1] = TimestampTzGetDatum(w_cur);
		args[2] = Int64GetDatum(admitted);
		args[3] = Int64GetDatum(late);
		args[4] = Int64GetDatum(failed);
		args[5] = Int64GetDatum((int64) emitted);
		runtime_sql("UPDATE stream.continuous_queries SET "
					"watermark = CASE WHEN $2 = '-infinity' THEN NULL ELSE $2 END, "
					"records_in = records_in + $3, records_late = records_late + $4, "
					"records_failed = records_failed + $5, rows_emitted = rows_emitted + $6, "
					"last_unit_at = clock_timestamp() WHERE processor_id = $1",
					6, types, args, SPI_OK_UPDATE);
		for (int i = 0; i < w.nshards; i++)
		{
			idx[i] = marks[i].shard_index;
			maxes[i] = TimestampTzGetDatum(marks[i].max_time);
			maxnull[i] = !marks[i].has_max;
			acts[i] = TimestampTzGetDatum(marks[i].active_at);
		}
		a2[0] = Int32GetDatum(c.id);
		a2[1] = PointerGetDatum(runtime_int4_array(idx, w.nshards));
		a2[2] = PointerGetDatum(construct_md_array(maxes, maxnull, 1, dims, lbs, TIMESTAMPTZOID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		a2[3] = PointerGetDatum(construct_md_array(acts, NULL, 1, dims, lbs, TIMESTAMPTZOID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (w.nshards > 0)
			runtime_sql("SELECT stream_internal._cq_marks($1, $2, $3, $4)", 4, t2, a2, SPI_OK_SELECT);
	}
	if (u.nranges > 0)
	{
		runtime_finish_unit(&u);
		result = more ? RUN_MORE : RUN_DONE;
	}
	else if (w_cur > w_start)
		result = RUN_DONE;
	runtime_step_end();
	return result;
}

static void
cq_unit_failed(int32 id, ErrorData *ed, void *arg)
{
	ereport(WARNING,
			(errmsg("continuous query %d failed: %s", id, ed->message),
			 errdetail("The unit is retried with back-off; its records stay unprocessed until it succeeds.")));
}

static const ProcessorKind cq_kind = {
	.name = "continuous_query",
	.run_unit = cq_run_unit,
	.unit_failed = cq_unit_failed,
};

void
analytics_init(void)
{
	runtime_register_kind(&cq_kind);
}

bool
analytics_run_round(bool *extension_missing)
{
	return runtime_run_round(&cq_kind, NULL, extension_missing);
}

/*
 * stream_internal._cq_batch() RETURNS SETOF record: the rows of the unit
 * under way (decoded columns, window_start, window_end), for its owner's
 * batch statement; nothing in any other session or to any other role.
 */
Datum
stream_cq_batch(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	Tuplestorestate *ts;
	ListCell   *lc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || !(rsinfo->allowedModes & SFRM_Materialize) ||
		rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("_cq_batch must be called with a column definition list")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	ts = tuplestore_begin_heap(false, false, work_mem);
	if (OidIsValid(batch_owner) && batch_owner == GetUserId() && batch_desc != NULL &&
		rsinfo->expectedDesc->natts == batch_desc->natts)
	{
		for (int a = 0; a < batch_desc->natts; a++)
			if (TupleDescAttr(rsinfo->expectedDesc, a)->atttypid != TupleDescAttr(batch_desc, a)->atttypid)
				elog(ERROR, "_cq_batch: the column definition list does not match the batch");
		foreach(lc, batch_rows)
			tuplestore_puttuple(ts, lfirst(lc));
	}
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = ts;
	rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	MemoryContextSwitchTo(old);
	return (Datum) 0;
}
