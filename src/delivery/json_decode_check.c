/*
 * delivery/json_decode_check.c: the fast JSON decoder against the jsonb path.
 *
 * stream_internal._json_decode_check(schema, record) decodes one record
 * onto a schema both ways, each in a subtransaction, and says how they
 * compare: 'fast' (the scanner decided, same values or the same error),
 * 'general' (the scanner declined), or 'DIFF: ...'.  For the differential
 * test (test/scripts/84_json_decode_diff.py); superuser only.
 */
#include "stream.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "settings.h"
#include "subxact.h"
#include "runtime/json_decode.h"
#include "delivery/delivery_int.h"

typedef struct Outcome
{
	bool		decided;		/* the fast run: the scanner did not decline */
	char	   *error;			/* sqlstate and message, or NULL */
	Datum	   *values;
	bool	   *isnull;
	bool	   *present;
} Outcome;

static void
run_one(RowMapper *m, const char *data, int len, bool fast, Outcome *o)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner;
	int			natts = m->desc->natts;

	o->values = palloc0(sizeof(Datum) * natts);
	o->isnull = palloc0(sizeof(bool) * natts);
	o->present = palloc0(sizeof(bool) * natts);
	o->error = NULL;
	o->decided = true;
	owner = subxact_begin(cxt);
	PG_TRY();
	{
		if (fast)
			o->decided = json_decode_record(m->decoder, data, len, o->values, o->isnull, o->present);
		else
		{
			bool		saved = stream_json_fast_decode;

			stream_json_fast_decode = false;
			PG_TRY();
			{
				rowmapper_json_to_row(m, data, len, o->values, o->isnull, o->present);
			}
			PG_FINALLY();
			{
				stream_json_fast_decode = saved;
			}
			PG_END_TRY();
		}
		subxact_commit(cxt, owner);
	}
	PG_CATCH();
	{
		ErrorData  *ed = subxact_rollback(cxt, owner);

		o->error = psprintf("%s: %s", unpack_sql_state(ed->sqlerrcode), ed->message);
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(stream_json_decode_check);
Datum
stream_json_decode_check(PG_FUNCTION_ARGS)
{
	Oid			typid = PG_GETARG_OID(0);
	bytea	   *rec = PG_GETARG_BYTEA_PP(1);
	RowMapper  *m = rowmapper_create(typid, InvalidOid);
	Outcome		g,
				f;

	run_one(m, VARDATA_ANY(rec), VARSIZE_ANY_EXHDR(rec), false, &g);
	run_one(m, VARDATA_ANY(rec), VARSIZE_ANY_EXHDR(rec), true, &f);
	if (!f.decided)
		PG_RETURN_TEXT_P(cstring_to_text("general"));
	if (g.error || f.error)
	{
		if (g.error && f.error && strcmp(g.error, f.error) == 0)
			PG_RETURN_TEXT_P(cstring_to_text("fast"));
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("DIFF: error general <%s> fast <%s>",
												  g.error ? g.error : "none",
												  f.error ? f.error : "none")));
	}
	for (int i = 0; i < m->natts; i++)
	{
		int			att = m->attnums[i] - 1;
		int16		typlen;
		bool		typbyval;

		if (g.present[att] != f.present[att] || g.isnull[att] != f.isnull[att])
			PG_RETURN_TEXT_P(cstring_to_text(psprintf("DIFF: column %s present %d/%d null %d/%d",
													  m->names_lower[i], g.present[att], f.present[att],
													  g.isnull[att], f.isnull[att])));
		if (g.isnull[att])
			continue;
		get_typlenbyval(m->types[i], &typlen, &typbyval);
		if (!datumIsEqual(g.values[att], f.values[att], typbyval, typlen))
			PG_RETURN_TEXT_P(cstring_to_text(psprintf("DIFF: column %s general <%s> fast <%s>",
													  m->names_lower[i],
													  OutputFunctionCall(&m->out_funcs[i], g.values[att]),
													  OutputFunctionCall(&m->out_funcs[i], f.values[att]))));
	}
	PG_RETURN_TEXT_P(cstring_to_text("fast"));
}
