/*
 * parquet/write_parquet.c: the SQL function stream.write_parquet(), COPY
 * (query) TO 'path' for Parquet: checks the caller and the path, plans the
 * query like COPY, feeds the executor's result slots to the writer through a
 * DestReceiver and renames the finished file into place (see
 * stream_write_parquet for the whole story).
 *
 * Rules: only the public writer API (parquet/parquet.h) is used here.  On an
 * error the writer is aborted, which unlinks its file, and a finished but
 * not yet renamed temporary file is removed; no other file is ever
 * unlinked.  The executor's resources go with the (sub)transaction's abort.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "parquet/parquet.h"
#include "stream.h"

static char *
arg_text(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("InvalidArgumentException: %s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/*
 * A path the file system can take: each component at most NAME_MAX bytes,
 * the whole (with room for the temporary name's suffix) under MAXPGPATH.
 * Otherwise open() would fail with ENAMETOOLONG, an internal error.
 */
static void
check_path_length(const char *path)
{
	const char *p = path;

	if (strlen(path) >= MAXPGPATH - 32)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: path is too long (%zu bytes; at most %d)",
						strlen(path), MAXPGPATH - 33)));
	for (;;)
	{
		const char *end = strchr(p, '/');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (len > NAME_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: path component \"%.*s...\" is too long (%zu bytes; at most %d)",
							pg_mbcliplen(p, len, 40), p, len, NAME_MAX)));
		if (end == NULL)
			break;
		p = end + 1;
	}
}

/* Marks the named result columns NOT NULL so that they become REQUIRED. */
static void
mark_not_null(TupleDesc desc, ArrayType *names)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i,
				a;

	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name;
		bool		found = false;

		if (nulls[i])
			continue;
		name = TextDatumGetCString(elems[i]);
		for (a = 0; a < desc->natts; a++)
		{
			if (strcmp(NameStr(TupleDescAttr(desc, a)->attname), name) == 0)
			{
				TupleDescAttr(desc, a)->attnotnull = true;
				found = true;
			}
		}
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("InvalidArgumentException: the query has no column \"%s\"", name)));
	}
}

/*
 * The executor hands each result row to this receiver, which passes the
 * slot's values to the writer as they are: no copy into a tuple table.
 */
typedef struct ParquetDest
{
	DestReceiver pub;
	ParquetWriter *writer;
	int64		rows;
} ParquetDest;

static bool
parquet_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ParquetDest *d = (ParquetDest *) self;

	slot_getallattrs(slot);
	parquet_writer_add_row(d->writer, slot->tts_values, slot->tts_isnull);
	d->rows++;
	return true;
}

static void
parquet_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
parquet_dest_shutdown(DestReceiver *self)
{
}

static void
parquet_dest_destroy(DestReceiver *self)
{
}

static void
reject_query(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: write_parquet needs a single query that returns rows"),
			 errdetail("%s", why),
			 errhint("Use SELECT, TABLE, VALUES or WITH ... SELECT, as in COPY (query) TO.")));
}

/* Points a syntax error's cursor into the query text, not the call. */
static void
export_query_error_callback(void *arg)
{
	const char *query = (const char *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(query);
	}
	else
		errcontext("write_parquet query: %s", query);
}

/*
 * Parses, checks and plans the query text like COPY (query) TO: one
 * read-only SELECT-like statement, no parameters.
 */
static PlannedStmt *
plan_export_query(const char *query)
{
	ErrorContextCallback errcb;
	List	   *raw;
	RawStmt    *rs;
	List	   *rewritten;
	Query	   *q;
	PlannedStmt *plan;

	errcb.callback = export_query_error_callback;
	errcb.arg = unconstify(char *, query);
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = pg_parse_query(query);

	if (list_length(raw) != 1)
		reject_query("The text holds no statement or more than one.");
	rs = linitial_node(RawStmt, raw);
	if (!IsA(rs->stmt, SelectStmt))
		reject_query("Only SELECT, TABLE, VALUES and WITH ... SELECT can be written.");
	if (((SelectStmt *) rs->stmt)->intoClause != NULL)
		reject_query("SELECT INTO creates a table; it cannot be written.");

	rewritten = pg_analyze_and_rewrite_fixedparams(rs, query, NULL, 0, NULL);
	if (list_length(rewritten) != 1)
		reject_query("The query was rewritten into more than one statement.");
	q = linitial_node(Query, rewritten);
	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		reject_query("Only SELECT, TABLE, VALUES and WITH ... SELECT can be written.");
	if (q->hasModifyingCTE)
		reject_query("WITH clauses that modify data are not allowed.");

	plan = pg_plan_query(q, query, CURSOR_OPT_PARALLEL_OK, NULL);

	error_context_stack = errcb.previous;
	return plan;
}

/*
 * stream.write_parquet(query, path, compression): the query's result as a
 * Parquet file on the server, like COPY (query) TO 'path'.  With four more
 * arguments (row_group_bytes, page_bytes, dictionary on/off, columns to
 * write as REQUIRED) it is stream_test.write_parquet_with, which only the
 * tests create (test/sql/test_functions.sql).
 *
 * The query is planned and run by the executor here, as COPY (query) TO
 * does, with the caller's privileges and a fresh snapshot (as SPI gives a
 * volatile function); a DestReceiver feeds each result slot to the writer,
 * which flushes its row groups by size, so memory stays bounded.
 *
 * The file is built as a hidden temporary file next to path, fsynced and
 * renamed over path (then the directory is fsynced), so readers only ever
 * see a complete file.
 */
PG_FUNCTION_INFO_V1(stream_write_parquet);
Datum
stream_write_parquet(PG_FUNCTION_ARGS)
{
	char	   *query = arg_text(fcinfo, 0, "query");
	char	   *path = arg_text(fcinfo, 1, "path");
	StreamCodec codec = codec_from_name(arg_text(fcinfo, 2, "compression"));
	ParquetWriterOptions opts = {0};
	ArrayType  *not_null = NULL;
	char	   *slash;
	char	   *tmp;
	PlannedStmt *plan;
	QueryDesc  *qd;
	ParquetDest *dest;
	TupleDesc	desc;
	int64		rows;
	ParquetWriter *volatile w = NULL;
	volatile bool created = false;
	static uint32 tmp_counter = 0;

	if (PG_NARGS() > 3)
	{
		if (!PG_ARGISNULL(3))
			opts.row_group_bytes = (Size) Max(PG_GETARG_INT64(3), 0);
		if (!PG_ARGISNULL(4))
			opts.page_bytes = (Size) Max(PG_GETARG_INT32(4), 0);
		if (!PG_ARGISNULL(5))
			opts.no_dictionary = !PG_GETARG_BOOL(5);
		if (!PG_ARGISNULL(6))
		{
			not_null = PG_GETARG_ARRAYTYPE_P(6);
			opts.required_not_null = true;
		}
	}

	/* the same rule as COPY ... TO 'file' */
	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_WRITE_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: must be superuser or have privileges of the pg_write_server_files role to write a file on the server"),
				 errhint("Anyone can export with COPY ... TO STDOUT; an administrator can GRANT pg_write_server_files.")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: relative path \"%s\" not allowed for write_parquet", path),
				 errhint("Give an absolute path on the database server.")));
	slash = strrchr(path, '/');
	if (slash == NULL || slash[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: path \"%s\" does not name a file", path)));
	check_path_length(path);
	/*
	 * hidden, so that "*.parquet" globs never pick up a partial file; the
	 * name is clipped so that a file name of NAME_MAX bytes still has one
	 */
	tmp = psprintf("%.*s/.%.*s.%d.%u.tmp", (int) (slash - path), path,
				   pg_mbcliplen(slash + 1, strlen(slash + 1), NAME_MAX - 32), slash + 1,
				   MyProcPid, ++tmp_counter);

	plan = plan_export_query(query);
	{
		/* a Parquet schema needs at least one leaf column: readers refuse the file otherwise */
		ListCell   *lc;
		int			ncols = 0;

		foreach(lc, plan->planTree->targetlist)
			if (!lfirst_node(TargetEntry, lc)->resjunk)
				ncols++;
		if (ncols == 0)
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_INVALID_ARG),
					 errmsg("InvalidArgumentException: write_parquet cannot write a query with no columns"),
					 errdetail("A Parquet file needs at least one column; readers such as DuckDB refuse a file without any."),
					 errhint("Select at least one column or expression, e.g. SELECT 1 AS dummy FROM ...")));
	}

	/* see changes made so far in this transaction, as SPI would */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	dest = palloc0(sizeof(ParquetDest));
	dest->pub.receiveSlot = parquet_dest_receive;
	dest->pub.rStartup = parquet_dest_startup;
	dest->pub.rShutdown = parquet_dest_shutdown;
	dest->pub.rDestroy = parquet_dest_destroy;
	dest->pub.mydest = DestNone;

	created = false;
	qd = CreateQueryDesc(plan, query, GetActiveSnapshot(), InvalidSnapshot,
						 (DestReceiver *) dest, NULL, NULL, 0);
	ExecutorStart(qd, 0);

	desc = CreateTupleDescCopy(qd->tupDesc);
	if (not_null)
		mark_not_null(desc, not_null);

	PG_TRY();
	{
		w = parquet_writer_create_ext(tmp, desc, codec, &opts);
		created = true;
		dest->writer = w;

		ExecutorRun(qd, ForwardScanDirection, 0, true);
		ExecutorFinish(qd);
		ExecutorEnd(qd);
		FreeQueryDesc(qd);
		PopActiveSnapshot();
		rows = dest->rows;

		parquet_writer_finish(w, true);
		w = NULL;
		/* fsync of the file, rename, fsync of the directory */
		durable_rename(tmp, path, ERROR);
	}
	PG_CATCH();
	{
		/* the executor's resources go with the (sub)transaction's abort */
		if (w != NULL)
			parquet_writer_abort(w);
		else if (created)
			(void) unlink(tmp);	/* finished but not renamed; never a file we did not create */
		PG_RE_THROW();
	}
	PG_END_TRY();

	PG_RETURN_INT64(rows);
}
