/*
 * analytics/cq_analyze.c: a continuous query, parsed and analyzed once at
 * creation, taken apart into the SQL the worker runs per unit.
 *
 * The user writes ordinary SQL over one window function:
 *
 *   SELECT k, window_start, window_end, count(*), avg(v)
 *     FROM stream.tumble('s', size => '1 minute') AS t(k text, v numeric)
 *    WHERE v > 0 GROUP BY k, window_start, window_end
 *
 * The window function adds window_start and window_end to the declared
 * columns (the raw parse tree gets them before analysis, so the query reads
 * as written).  PostgreSQL's own parser and analyzer check it; then each
 * aggregate becomes partial state columns with a merge rule (count and sum
 * add, min and max take the least and greatest, avg is a sum and a count),
 * and each output expression is rewritten over the state.  Expressions are
 * printed back by ruleutils with every column reference replaced by a
 * parameter, whose $N the printer here maps onto the column it stands for,
 * outside string literals and quoted names.
 *
 * Only aggregates with a combine function (pg_aggregate.aggcombinefn) can be
 * computed across batches; the others are refused with a hint.
 *
 * stream_internal._cq_analyze(query text) RETURNS jsonb: see the keys below.
 */
#include "stream.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(stream_cq_analyze);

/* parameter ids standing for columns while expressions are printed */
#define P_WSTART	1
#define P_WEND		2
#define P_COL		100			/* + attno of a decoded column */
#define P_GROUP		1000		/* + group key number */
#define P_AGG		2000		/* + aggregate number */

typedef struct AggInfo
{
	Aggref	   *ref;
	const char *name;
	char	   *final;			/* its value over the state, in SQL */
} AggInfo;

typedef struct Analysis
{
	int			ncols;			/* decoded columns (window columns excluded) */
	List	   *groups;			/* group key expressions (not the window columns) */
	List	   *aggs;			/* AggInfo */
	StringInfoData partials;	/* JSON array of state columns */
} Analysis;

static Node *
make_param(int id, Oid type, int32 typmod, Oid collid)
{
	Param	   *p = makeNode(Param);

	p->paramkind = PARAM_EXTERN;
	p->paramid = id;
	p->paramtype = type;
	p->paramtypmod = typmod;
	p->paramcollid = collid;
	p->location = -1;
	return (Node *) p;
}

/* decoded columns and the window columns become parameters */
static Node *
vars_to_params(Node *node, void *ctx)
{
	Analysis   *a = ctx;

	if (node == NULL)
		return NULL;
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;
		int			id;

		if (v->varlevelsup != 0 || v->varno != 1)
			elog(ERROR, "unexpected column reference in a continuous query");
		if (v->varattno == a->ncols + 1)
			id = P_WSTART;
		else if (v->varattno == a->ncols + 2)
			id = P_WEND;
		else if (v->varattno >= 1 && v->varattno <= a->ncols)
			id = P_COL + v->varattno;
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("InvalidArgumentException: a continuous query cannot use a whole-row reference")));
		return make_param(id, v->vartype, v->vartypmod, v->varcollid);
	}
	return expression_tree_mutator(node, vars_to_params, ctx);
}

/* output expressions over the state: group keys and aggregates become parameters */
static Node *
to_state_params(Node *node, void *ctx)
{
	Analysis   *a = ctx;
	ListCell   *lc;
	int			i;

	if (node == NULL)
		return NULL;
	i = 0;
	foreach(lc, a->groups)
	{
		i++;
		if (equal(node, lfirst(lc)))
			return make_param(P_GROUP + i, exprType(node), exprTypmod(node), exprCollation(node));
	}
	if (IsA(node, Aggref))
	{
		i = 0;
		foreach(lc, a->aggs)
		{
			AggInfo    *ai = lfirst(lc);

			i++;
			if (equal(node, ai->ref))
				return make_param(P_AGG + i, exprType(node), exprTypmod(node), exprCollation(node));
		}
		elog(ERROR, "aggregate not collected");
	}
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;

		if (v->varattno == a->ncols + 1)
			return make_param(P_WSTART, v->vartype, v->vartypmod, v->varcollid);
		if (v->varattno == a->ncols + 2)
			return make_param(P_WEND, v->vartype, v->vartypmod, v->varcollid);
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("InvalidArgumentException: column %d of the window function must appear in GROUP BY or be used in an aggregate",
						v->varattno)));
	}
	return expression_tree_mutator(node, to_state_params, ctx);
}

/*
 * Print an expression whose column references are parameters, each $N
 * replaced by what map says; string literals and quoted names are copied
 * untouched.
 */
typedef const char *(*ParamMap) (int id, void *arg);

static char *
print_expr(Node *expr, ParamMap map, void *arg)
{
	char	   *s = deparse_expression(expr, NIL, false, false);
	StringInfoData out;

	initStringInfo(&out);
	for (char *p = s; *p;)
	{
		if (*p == '\'' || *p == '"')
		{
			char		q = *p;

			appendStringInfoChar(&out, *p++);
			while (*p)
			{
				if (*p == q && p[1] == q)
				{
					appendStringInfoChar(&out, *p++);
					appendStringInfoChar(&out, *p++);
					continue;
				}
				if (*p == q)
					break;
				appendStringInfoChar(&out, *p++);
			}
			if (*p)
				appendStringInfoChar(&out, *p++);
		}
		else if (*p == '$' && p[1] >= '0' && p[1] <= '9')
		{
			int			id = 0;

			p++;
			while (*p >= '0' && *p <= '9')
				id = id * 10 + (*p++ - '0');
			appendStringInfoString(&out, map(id, arg));
		}
		else
			appendStringInfoChar(&out, *p++);
	}
	return out.data;
}

typedef struct RawMap
{
	List	   *colnames;
} RawMap;

/* over the decoded rows t */
static const char *
map_raw(int id, void *arg)
{
	RawMap	   *m = arg;

	if (id == P_WSTART)
		return "t.window_start";
	if (id == P_WEND)
		return "t.window_end";
	if (id > P_COL && id <= P_COL + list_length(m->colnames))
		return psprintf("t.%s", quote_identifier(strVal(list_nth(m->colnames, id - P_COL - 1))));
	elog(ERROR, "unexpected parameter $%d in a continuous query", id);
	return NULL;
}

/* over the state rows s */
static const char *
map_state(int id, void *arg)
{
	Analysis   *a = arg;

	if (id == P_WSTART)
		return "s.window_start";
	if (id == P_WEND)
		return "s.window_end";
	if (id > P_GROUP && id <= P_GROUP + list_length(a->groups))
		return psprintf("s.g%d", id - P_GROUP);
	if (id > P_AGG && id <= P_AGG + list_length(a->aggs))
		return ((AggInfo *) list_nth(a->aggs, id - P_AGG - 1))->final;
	ereport(ERROR,
			(errcode(ERRCODE_GROUPING_ERROR),
			 errmsg("InvalidArgumentException: an output of a continuous query uses a column outside GROUP BY and aggregates")));
	return NULL;
}

static void
add_partial(Analysis *a, const char *col, const char *expr, const char *merge)
{
	if (a->partials.len > 1)
		appendStringInfoChar(&a->partials, ',');
	appendStringInfoString(&a->partials, "{\"col\":");
	escape_json(&a->partials, col);
	appendStringInfoString(&a->partials, ",\"expr\":");
	escape_json(&a->partials, expr);
	appendStringInfoString(&a->partials, ",\"merge\":");
	escape_json(&a->partials, merge);
	appendStringInfoChar(&a->partials, '}');
}

/* collect the query's aggregates (each distinct one once) */
static bool
collect_aggs(Node *node, void *ctx)
{
	Analysis   *a = ctx;
	ListCell   *lc;

	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		AggInfo    *ai;

		foreach(lc, a->aggs)
			if (equal(node, ((AggInfo *) lfirst(lc))->ref))
				return false;
		ai = palloc0(sizeof(AggInfo));
		ai->ref = (Aggref *) node;
		a->aggs = lappend(a->aggs, ai);
		return false;				/* nested aggregates are refused by the analyzer */
	}
	return expression_tree_walker(node, collect_aggs, ctx);
}

/* is t one of the types avg() of which is a float8 */
static bool
float_avg(Oid result)
{
	return result == FLOAT8OID;
}

/*
 * Refuse what cannot be merged across batches; make the state columns of
 * aggregate k and its final expression.
 */
static void
plan_aggregate(Analysis *a, AggInfo *ai, int k, RawMap *rm)
{
	Aggref	   *ag = ai->ref;
	HeapTuple	tup;
	Form_pg_aggregate form;
	char	   *name = get_func_name(ag->aggfnoid);
	char	   *fullname = format_procedure(ag->aggfnoid);
	bool		catalog = get_func_namespace(ag->aggfnoid) == PG_CATALOG_NAMESPACE;
	char	   *arg = NULL;
	char	   *filter = "";
	char	   *col = psprintf("a%d", k);

	tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(ag->aggfnoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for aggregate %u", ag->aggfnoid);
	form = (Form_pg_aggregate) GETSTRUCT(tup);
	if (!OidIsValid(form->aggcombinefn))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: aggregate %s cannot be computed incrementally", fullname),
				 errdetail("It has no combine function (pg_aggregate.aggcombinefn), so the partial states of two batches of a window cannot be merged."),
				 errhint("Use combinable aggregates (count, sum, avg, min, max, bool_and, bool_or); for distinct counts and percentiles, sketches such as hll (postgresql-15-hll) or tdigest (postgresql-15-tdigest).")));
	ReleaseSysCache(tup);
	if (ag->aggkind != AGGKIND_NORMAL || ag->aggdistinct != NIL || ag->aggorder != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: %s with DISTINCT, ORDER BY or WITHIN GROUP cannot be computed incrementally", name),
				 errhint("For distinct counts, use a sketch such as hll (postgresql-15-hll).")));
	if (list_length(ag->args) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: aggregate %s is not supported by continuous queries yet", fullname),
				 errdetail("Supported: count, sum, avg, min, max, bool_and, bool_or, every.")));
	if (ag->args != NIL)
		arg = print_expr(vars_to_params((Node *) ((TargetEntry *) linitial(ag->args))->expr, a),
						 map_raw, rm);
	if (ag->aggfilter)
		filter = psprintf(" FILTER (WHERE %s)",
						  print_expr(vars_to_params((Node *) ag->aggfilter, a), map_raw, rm));
	ai->name = name;

	if (catalog && strcmp(name, "count") == 0)
	{
		add_partial(a, col, psprintf("count(%s)%s", arg ? arg : "*", filter), "add");
		ai->final = psprintf("coalesce(s.%s, 0)", col);
	}
	else if (catalog && strcmp(name, "sum") == 0)
	{
		add_partial(a, col, psprintf("sum(%s)%s", arg, filter), "add");
		ai->final = psprintf("s.%s", col);
	}
	else if (catalog && (strcmp(name, "min") == 0 || strcmp(name, "max") == 0))
	{
		add_partial(a, col, psprintf("%s(%s)%s", name, arg, filter),
					strcmp(name, "min") == 0 ? "least" : "greatest");
		ai->final = psprintf("s.%s", col);
	}
	else if (catalog && (strcmp(name, "bool_and") == 0 || strcmp(name, "every") == 0 ||
						 strcmp(name, "bool_or") == 0))
	{
		bool		or = strcmp(name, "bool_or") == 0;

		add_partial(a, col, psprintf("%s(%s)%s", or ? "bool_or" : "bool_and", arg, filter),
					or ? "or" : "and");
		ai->final = psprintf("s.%s", col);
	}
	else if (catalog && strcmp(name, "avg") == 0 &&
			 (ag->aggtype == NUMERICOID || ag->aggtype == FLOAT8OID || ag->aggtype == INTERVALOID))
	{
		/* avg is sum / count, as numeric_avg, int8_avg, float8_avg and interval_avg compute it */
		char	   *s = psprintf("%s_s", col);
		char	   *n = psprintf("%s_n", col);

		add_partial(a, s, float_avg(ag->aggtype) ? psprintf("sum((%s)::float8)%s", arg, filter)
					: psprintf("sum(%s)%s", arg, filter), "add");
		add_partial(a, n, psprintf("count(%s)%s", arg, filter), "add");
		if (ag->aggtype == NUMERICOID)
			ai->final = psprintf("(s.%s::numeric / NULLIF(s.%s, 0)::numeric)", s, n);
		else
			ai->final = psprintf("(s.%s / NULLIF(s.%s, 0)::float8)", s, n);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: aggregate %s is not supported by continuous queries yet", fullname),
				 errdetail("Supported: count, sum, avg, min, max, bool_and, bool_or, every.")));
}

/* the FROM item: one call of stream.tumble, stream.hop or stream.session */
static const char *
window_function(SelectStmt *sel, RangeFunction **rfp)
{
	RangeFunction *rf;
	FuncCall   *fc;
	const char *name;
	ListCell   *lc;

	if (list_length(sel->fromClause) != 1 || !IsA(linitial(sel->fromClause), RangeFunction))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query reads from exactly one window function"),
				 errhint("FROM stream.tumble(...), stream.hop(...) or stream.session(...) AS t(column type, ...)")));
	rf = linitial(sel->fromClause);
	if (list_length(rf->functions) != 1 || rf->ordinality || rf->is_rowsfrom ||
		!IsA(linitial((List *) linitial(rf->functions)), FuncCall))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query reads from exactly one window function")));
	fc = linitial((List *) linitial(rf->functions));
	name = strVal(llast(fc->funcname));
	if ((list_length(fc->funcname) == 2 && strcmp(strVal(linitial(fc->funcname)), "stream") != 0) ||
		list_length(fc->funcname) > 2 ||
		(strcmp(name, "tumble") != 0 && strcmp(name, "hop") != 0 && strcmp(name, "session") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: %s is not a window function of continuous queries", NameListToString(fc->funcname)),
				 errhint("Use stream.tumble, stream.hop or stream.session.")));
	if (rf->coldeflist == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("InvalidArgumentException: the columns decoded from the records need a column definition list"),
				 errhint("FROM stream.%s(...) AS t(ticker text, price numeric, event_time timestamptz)", name)));
	foreach(lc, rf->coldeflist)
	{
		ColumnDef  *cd = lfirst(lc);

		if (strcmp(cd->colname, "window_start") == 0 || strcmp(cd->colname, "window_end") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("InvalidArgumentException: column %s is added by the window function; do not declare it", cd->colname)));
	}
	rf->coldeflist = lappend(rf->coldeflist, makeColumnDef("window_start", TIMESTAMPTZOID, -1, InvalidOid));
	rf->coldeflist = lappend(rf->coldeflist, makeColumnDef("window_end", TIMESTAMPTZOID, -1, InvalidOid));
	*rfp = rf;
	return name;
}

/* the window function's arguments, as its spec function (same signature) makes them: jsonb */
static Datum
window_spec(FuncExpr *fe, const char *kind)
{
	FuncExpr   *spec = copyObject(fe);
	Oid		   *argtypes;
	char	  **argnames;
	char	   *argmodes;
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fe->funcid));
	int			nargs;
	Node	   *r;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fe->funcid);
	nargs = get_func_arg_info(tup, &argtypes, &argnames, &argmodes);
	ReleaseSysCache(tup);
	spec->funcid = LookupFuncName(list_make2(makeString("stream_internal"),
											 makeString(psprintf("_%s_spec", kind))),
								  nargs, argtypes, false);
	spec->funcresulttype = JSONBOID;
	spec->funcretset = false;
	r = eval_const_expressions(NULL, (Node *) spec);
	if (!IsA(r, Const) || ((Const *) r)->constisnull)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: the arguments of stream.%s must be constants", kind)));
	return ((Const *) r)->constvalue;
}

Datum
stream_cq_analyze(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	RawStmt    *rs;
	SelectStmt *sel;
	RangeFunction *rf;
	const char *kind;
	Query	   *q;
	RangeTblEntry *rte;
	RangeTblFunction *rtf;
	Analysis	a;
	RawMap		rm;
	StringInfoData out;
	ListCell   *lc;
	ListCell   *lt;
	bool		has_wstart = false;
	bool		has_wend = false;
	int			i;

	if (list_length(raw) != 1 || !IsA(((RawStmt *) linitial(raw))->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query is one SELECT statement")));
	rs = linitial(raw);
	sel = (SelectStmt *) rs->stmt;
	if (sel->op != SETOP_NONE || sel->withClause || sel->intoClause || sel->valuesLists)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query is one SELECT without WITH, UNION or INTO")));
	kind = window_function(sel, &rf);

	q = parse_analyze_fixedparams(rs, sql, NULL, 0, NULL);
	if (q->hasSubLinks || q->hasWindowFuncs || q->hasTargetSRFs || q->hasRecursive ||
		q->cteList != NIL || q->distinctClause != NIL || q->groupingSets != NIL ||
		q->rowMarks != NIL || list_length(q->rtable) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query cannot use subqueries, window functions, set-returning functions in the select list, DISTINCT, GROUPING SETS or FOR UPDATE")));
	if (q->sortClause != NIL || q->limitCount || q->limitOffset)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query emits each window once; ORDER BY and LIMIT do not apply")));
	if (!q->hasAggs || q->groupClause == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query aggregates per window: GROUP BY window_start, window_end (and keys)")));
	rte = linitial(q->rtable);
	if (rte->rtekind != RTE_FUNCTION || list_length(rte->functions) != 1)
		elog(ERROR, "unexpected range table in a continuous query");
	rtf = linitial(rte->functions);

	memset(&a, 0, sizeof(a));
	a.ncols = list_length(rtf->funccoltypes) - 2;
	rm.colnames = list_truncate(list_copy(rte->eref->colnames), a.ncols);
	initStringInfo(&a.partials);
	appendStringInfoChar(&a.partials, '[');

	/* group keys: the window columns, and the others in order */
	foreach(lc, q->groupClause)
	{
		SortGroupClause *sgc = lfirst(lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, q->targetList);
		Node	   *e = (Node *) tle->expr;

		if (IsA(e, Var) && ((Var *) e)->varattno == a.ncols + 1)
			has_wstart = true;
		else if (IsA(e, Var) && ((Var *) e)->varattno == a.ncols + 2)
			has_wend = true;
		else
			a.groups = lappend(a.groups, e);
	}
	if (!has_wstart || !has_wend)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("InvalidArgumentException: a continuous query groups by window_start and window_end"),
				 errhint("GROUP BY window_start, window_end, and any keys.")));

	collect_aggs((Node *) q->targetList, &a);
	collect_aggs(q->havingQual, &a);
	i = 0;
	foreach(lc, a.aggs)
		plan_aggregate(&a, lfirst(lc), ++i, &rm);
	appendStringInfoChar(&a.partials, ']');

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"kind\":");
	escape_json(&out, kind);
	appendStringInfoString(&out, ",\"spec\":");
	appendStringInfoString(&out, JsonbToCString(NULL, &DatumGetJsonbP(window_spec((FuncExpr *) rtf->funcexpr, kind))->root, -1));

	/* the decoded columns */
	appendStringInfoString(&out, ",\"columns\":[");
	i = 0;
	forboth(lc, rtf->funccoltypes, lt, rtf->funccoltypmods)
	{
		if (i >= a.ncols)
			break;
		if (i > 0)
			appendStringInfoChar(&out, ',');
		appendStringInfoString(&out, "{\"name\":");
		escape_json(&out, strVal(list_nth(rm.colnames, i)));
		appendStringInfoString(&out, ",\"type\":");
		escape_json(&out, format_type_with_typemod(lfirst_oid(lc), lfirst_int(lt)));
		appendStringInfoChar(&out, '}');
		i++;
	}
	appendStringInfoChar(&out, ']');

	/* WHERE, over t */
	appendStringInfoString(&out, ",\"where\":");
	if (q->jointree->quals)
		escape_json(&out, print_expr(vars_to_params(q->jointree->quals, &a), map_raw, &rm));
	else
		appendStringInfoString(&out, "null");

	/* group keys, over t */
	appendStringInfoString(&out, ",\"groups\":[");
	i = 0;
	foreach(lc, a.groups)
	{
		if (i++ > 0)
			appendStringInfoChar(&out, ',');
		escape_json(&out, print_expr(vars_to_params(lfirst(lc), &a), map_raw, &rm));
	}
	appendStringInfoString(&out, "],\"partials\":");
	appendStringInfoString(&out, a.partials.data);

	/* outputs, over the state s */
	appendStringInfoString(&out, ",\"outputs\":[");
	i = 0;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst(lc);

		if (tle->resjunk)
			continue;
		if (i++ > 0)
			appendStringInfoChar(&out, ',');
		appendStringInfoString(&out, "{\"name\":");
		escape_json(&out, tle->resname ? tle->resname : psprintf("column%d", i));
		appendStringInfoString(&out, ",\"expr\":");
		escape_json(&out, print_expr(to_state_params((Node *) tle->expr, &a), map_state, &a));
		appendStringInfoChar(&out, '}');
	}
	appendStringInfoString(&out, "],\"having\":");
	if (q->havingQual)
		escape_json(&out, print_expr(to_state_params(q->havingQual, &a), map_state, &a));
	else
		appendStringInfoString(&out, "null");
	appendStringInfoChar(&out, '}');

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
