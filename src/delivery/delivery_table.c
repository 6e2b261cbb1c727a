/*
 * delivery/delivery_table.c: the table destination (Redshift COPY's analogue).
 *
 * Records become rows of the table's type (columns by name; a column the
 * record does not name gets its default), are inserted as the owner in the
 * sandbox, grouped by the defaulted columns they name; a group that fails
 * is inserted row by row and a row that fails goes to the error rows.  A
 * failure of the table itself (missing, no privilege, disk full, locks,
 * owner code out of time) fails the whole batch, retried with back-off.
 * Rows, error rows, manifest and checkpoints commit in one transaction.
 */
#include "stream.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/varlena.h"

#include "streams/seqno.h"

#include "runtime/runtime.h"
#include "runtime/sandbox.h"
#include "delivery/delivery_int.h"

Oid
resolve_table(DeliveryConfig *cfg)
{
	List	   *names = stringToQualifiedNameList(cfg->destination_table);
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("ResourceNotFoundException: destination table %s of Firehose %s does not exist",
						cfg->destination_table, cfg->name)));
	return relid;
}

typedef struct TableRow
{
	SrcRec	   *rec;
	Datum		row;
	uint64		mask;			/* defaulted columns the record named */
} TableRow;

static char *
insert_sql(RowMapper *m, Oid relid, uint64 mask)
{
	StringInfoData cols,
				sel;
	int			bit = 0;

	initStringInfo(&cols);
	initStringInfo(&sel);
	for (int i = 0; i < m->natts; i++)
	{
		const char *col = quote_identifier(NameStr(TupleDescAttr(m->desc, m->attnums[i] - 1)->attname));
		bool		include = true;

		if (m->is_generated[i])
			include = false;
		else if (m->has_default[i])
		{
			include = bit < 64 ? (mask & ((uint64) 1 << bit)) != 0 : true;
			bit++;
		}
		if (!include)
			continue;
		if (cols.len > 0)
		{
			appendStringInfoString(&cols, ", ");
			appendStringInfoString(&sel, ", ");
		}
		appendStringInfoString(&cols, col);
		appendStringInfo(&sel, "r.%s", col);
	}
	if (cols.len == 0)
		return psprintf("INSERT INTO %s.%s DEFAULT VALUES",
						quote_identifier(get_namespace_name(get_rel_namespace(relid))),
						quote_identifier(get_rel_name(relid)));
	return psprintf("INSERT INTO %s.%s (%s) SELECT %s FROM unnest($1) r",
					quote_identifier(get_namespace_name(get_rel_namespace(relid))),
					quote_identifier(get_rel_name(relid)), cols.data, sel.data);
}

/* Insert rows (all with one mask) as the owner; true if it worked. */
static bool
insert_rows(DeliveryConfig *cfg, RowMapper *m, Oid relid, TableRow *rows, int n,
			uint64 mask, TimestampTz deadline, MemoryContext cxt, char **errmsg_out)
{
	ResourceOwner oldowner;
	Sandbox		sb;
	volatile bool ok = false;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	ArrayType  *arr;
	Oid			arrtype = get_array_type(m->typid);

	for (int i = 0; i < n; i++)
		elems[i] = rows[i].row;
	arr = construct_array(elems, n, m->typid, -1, false, TYPALIGN_DOUBLE);

	oldowner = subxact_begin(cxt);
	PG_TRY();
	{
		Datum		arg = PointerGetDatum(arr);
		int			ret;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		sandbox_begin(&sb, cfg->owner, deadline);
		ret = SPI_execute_with_args(insert_sql(m, relid, mask), 1, &arrtype, &arg, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "insert into the destination table returned %s", SPI_result_code_string(ret));
		sandbox_end(&sb);
		SPI_finish();
		subxact_commit(cxt, oldowner);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		sandbox_abort(&sb);
		/* triggers or checks out of time: the batch, not row by row */
		ed = subxact_abort(cxt, oldowner, TIME_LIMIT_FAILS_UNIT);

		*errmsg_out = pstrdup(ed->message);
		/* the table itself is the problem: retry the whole batch later */
		if (ed->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
			ed->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
			ed->sqlerrcode == ERRCODE_DISK_FULL ||
			ed->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
			ed->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
			ed->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
			ed->sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION)
			ereport(ERROR,
					(errcode(ed->sqlerrcode),
					 errmsg("ServiceUnavailableException: cannot insert into %s: %s",
							cfg->destination_table, ed->message)));
	}
	PG_END_TRY();
	return ok;
}

static int
cmp_mask(const void *a, const void *b)
{
	uint64		x = ((const TableRow *) a)->mask;
	uint64		y = ((const TableRow *) b)->mask;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* deliver_to_table's state for table_record */
typedef struct TableState
{
	RowMapper  *m;
	TableRow   *rows;
	int			nrows;
	Datum	   *values;
	bool	   *isnull;
	bool	   *present;
} TableState;

/* Convert one record into a row of the destination table. */
static void
table_record(SrcRec *r, void *arg)
{
	TableState *ts = (TableState *) arg;
	RowMapper  *m = ts->m;
	HeapTuple	tup;
	uint64		mask = 0;
	int			bit = 0;

	rowmapper_json_to_row(m, r->out, r->outlen, ts->values, ts->isnull, ts->present);
	for (int i = 0; i < m->natts; i++)
	{
		if (!m->has_default[i] || m->is_generated[i])
			continue;
		if (bit < 64 && ts->present[m->attnums[i] - 1])
			mask |= (uint64) 1 << bit;
		bit++;
	}
	tup = heap_form_tuple(m->desc, ts->values, ts->isnull);
	ts->rows[ts->nrows].rec = r;
	ts->rows[ts->nrows].row = heap_copy_tuple_as_datum(tup, m->desc);
	ts->rows[ts->nrows].mask = mask;
	ts->nrows++;
	heap_freetuple(tup);
}

/* Convert, insert; failed records are the processor's error rows. Same transaction. */
void
deliver_to_table(Batch *b, MemoryContext cxt)
{
	DeliveryConfig *cfg = b->cfg;
	Oid			relid = resolve_table(cfg);
	RowMapper  *m;
	TableRow   *rows = palloc_extended(sizeof(TableRow) * Max(b->nrecs, 1), MCXT_ALLOC_HUGE);
	TableState	ts;
	int			nrows;
	TimestampTz deadline;

	lock_or_retry(cfg, relid, RowExclusiveLock, psprintf("destination table %s", cfg->destination_table));
	m = rowmapper_create(InvalidOid, relid);

	/*
	 * convert, resuming after a record that fails; ts lives in memory (not a
	 * register of convert_records' frame), so nrows survives the longjmp
	 */
	ts.m = m;
	ts.rows = rows;
	ts.nrows = 0;
	ts.values = palloc(sizeof(Datum) * m->desc->natts);
	ts.isnull = palloc(sizeof(bool) * m->desc->natts);
	ts.present = palloc(sizeof(bool) * m->desc->natts);
	convert_records(b, cxt, NULL, table_record, &ts);
	nrows = ts.nrows;

	/*
	 * insert per mask group; a group that fails is inserted row by row.  All
	 * of it shares one time limit: a trigger that fails every row just
	 * before the limit must not hold the worker once per row.
	 */
	qsort(rows, nrows, sizeof(TableRow), cmp_mask);
	deadline = sandbox_deadline();
	for (int i = 0; i < nrows;)
	{
		int			j = i + 1;
		char	   *msg = NULL;

		while (j < nrows && rows[j].mask == rows[i].mask)
			j++;
		if (!insert_rows(cfg, m, relid, rows + i, j - i, rows[i].mask, deadline, cxt, &msg))
		{
			for (int k = i; k < j; k++)
			{
				char	   *msg1 = NULL;

				if (!insert_rows(cfg, m, relid, rows + k, 1, rows[k].mask, deadline, cxt, &msg1))
					fail_record(rows[k].rec, "table-insert-failed", "Table.InsertFailed", msg1);
			}
		}
		i = j;
	}

	/* failed records: the processor's error rows (stream.delivery_failed_records), in this transaction */
	{
		StringInfoData env;
		TimestampTz now = GetCurrentTimestamp();
		int			nerr = 0;

		initStringInfo(&env);
		for (int i = 0; i < b->nrecs; i++)
		{
			SrcRec	   *r = &b->recs[i];

			if (r->status == REC_OK)
				b->delivered++;
			else if (r->status == REC_DROPPED)
				b->dropped++;
			else
			{
				resetStringInfo(&env);
				append_error_line(&env, b, r, now);
				env.data[--env.len] = '\0';
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				runtime_dead_letter(&b->unit, r->error_type, env.data);
				SPI_finish();
				b->failed++;
				nerr++;
			}
		}
		appendStringInfo(&b->files, "[{\"kind\":\"table\",\"path\":");
		escape_json(&b->files, cfg->destination_table);
		appendStringInfo(&b->files, ",\"records\":" INT64_FORMAT "}", b->delivered);
		if (nerr > 0)
			appendStringInfo(&b->files, ",{\"kind\":\"error\",\"path\":\"stream.delivery_failed_records\",\"records\":%d}", nerr);
		appendStringInfoChar(&b->files, ']');
		b->nfiles = 1;
	}
}

