/*
 * delivery/delivery_rowmap.c: JSON records to rows of a composite type.
 *
 * The columns of a schema (a table or composite type) are filled by JSON
 * field name, case-insensitively, through each column type's input
 * function (json and jsonb columns take the JSON text, timestamps also
 * epoch seconds or milliseconds); for a table destination it also notes
 * which columns the record named, so the others get their defaults.
 */
#include "stream.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "runtime/json_decode.h"
#include "delivery/delivery_int.h"

RowMapper *
rowmapper_create(Oid typid, Oid relid)
{
	RowMapper  *m = palloc0(sizeof(RowMapper));
	TupleDesc	desc;
	Relation	rel = NULL;
	int			n = 0;

	if (OidIsValid(relid))
	{
		rel = relation_open(relid, AccessShareLock);
		typid = rel->rd_rel->reltype;
		desc = RelationGetDescr(rel);
	}
	else
		desc = lookup_rowtype_tupdesc(typid, -1);

	m->typid = typid;
	m->desc = CreateTupleDescCopy(desc);
	m->desc->tdtypeid = typid;
	m->desc->tdtypmod = -1;
	m->attnums = palloc(sizeof(int) * desc->natts);
	m->names_lower = palloc(sizeof(char *) * desc->natts);
	m->in_funcs = palloc0(sizeof(FmgrInfo) * desc->natts);
	m->out_funcs = palloc0(sizeof(FmgrInfo) * desc->natts);
	m->in_ioparams = palloc(sizeof(Oid) * desc->natts);
	m->typmods = palloc(sizeof(int32) * desc->natts);
	m->types = palloc(sizeof(Oid) * desc->natts);
	m->has_default = palloc0(sizeof(bool) * desc->natts);
	m->is_generated = palloc0(sizeof(bool) * desc->natts);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			infunc,
					outfunc;
		bool		varlena;

		if (att->attisdropped)
			continue;
		m->attnums[n] = i + 1;
		m->names_lower[n] = str_tolower(NameStr(att->attname), strlen(NameStr(att->attname)),
										DEFAULT_COLLATION_OID);
		m->types[n] = att->atttypid;
		m->typmods[n] = att->atttypmod;
		getTypeInputInfo(att->atttypid, &infunc, &m->in_ioparams[n]);
		fmgr_info(infunc, &m->in_funcs[n]);
		getTypeOutputInfo(att->atttypid, &outfunc, &varlena);
		fmgr_info(outfunc, &m->out_funcs[n]);
		if (rel != NULL)
		{
			m->has_default[n] = att->atthasdef || att->attidentity != '\0';
			m->is_generated[n] = att->attgenerated != '\0';
		}
		n++;
	}
	m->natts = n;
	{
		int		   *atts = palloc(sizeof(int) * Max(n, 1));

		for (int i = 0; i < n; i++)
			atts[i] = m->attnums[i] - 1;
		m->decoder = json_decoder_create(n, m->names_lower, m->types, m->typmods, m->in_funcs,
										 m->in_ioparams, atts, desc->natts);
	}
	if (rel != NULL)
		relation_close(rel, AccessShareLock);
	else
		ReleaseTupleDesc(desc);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: schema %s has no columns", format_type_be(typid))));
	return m;
}

static bool
is_json_type(Oid t)
{
	return t == JSONOID || t == JSONBOID;
}

static bool
is_timestamp_type(Oid t)
{
	return t == TIMESTAMPOID || t == TIMESTAMPTZOID;
}

/* The JSON text of a scalar or container value. */
static char *
jbv_json_text(JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	else
	{
		Jsonb	   *jb = JsonbValueToJsonb(v);

		return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}
}

static Datum
jbv_to_datum(RowMapper *m, int i, JsonbValue *v)
{
	char	   *s;

	if (is_json_type(m->types[i]))
		s = jbv_json_text(v);
	else
	{
		switch (v->type)
		{
			case jbvString:
				s = pnstrdup(v->val.string.val, v->val.string.len);
				break;
			case jbvNumeric:
				if (is_timestamp_type(m->types[i]))
				{
					/* epoch seconds, or milliseconds when that large (OpenX SerDe) */
					double		x = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																	   NumericGetDatum(v->val.numeric)));
					double		us;

					if (fabs(x) >= 1e11)
						x /= 1000.0;
					us = x * 1e6 - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
					if (!(us > (double) MIN_TIMESTAMP && us < (double) END_TIMESTAMP))
						ereport(ERROR,
								(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
								 errmsg("timestamp out of range")));
					return Int64GetDatum((int64) rint(us));
				}
				s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
				break;
			case jbvBool:
				s = v->val.boolean ? "true" : "false";
				break;
			default:
				s = jbv_json_text(v);
				break;
		}
	}
	return InputFunctionCall(&m->in_funcs[i], s, m->in_ioparams[i], m->typmods[i]);
}

/*
 * Map one JSON object onto the columns; values and isnull are indexed like
 * the composite type's attributes (dropped ones NULL).  present (may be
 * NULL) tells which columns the object named.  Raises an error when the
 * record is not a JSON object or a value does not convert.
 */
void
rowmapper_json_to_row(RowMapper *m, const char *data, int len,
					  Datum *values, bool *isnull, bool *present)
{
	char	   *cstr;
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			cur = -1;

	if (m->decoder && json_decode_record(m->decoder, data, len, values, isnull, present))
		return;
	cstr = pnstrdup(data, len);
	for (int i = 0; i < m->desc->natts; i++)
	{
		values[i] = (Datum) 0;
		isnull[i] = true;
	}
	if (present)
		memset(present, 0, sizeof(bool) * m->desc->natts);

	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(cstr)));
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("record is not a JSON object")));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			cur = -1;
			for (int i = 0; i < m->natts; i++)
			{
				const char *name = m->names_lower[i];
				int			nlen = strlen(name);

				if (nlen == v.val.string.len &&
					pg_strncasecmp(name, v.val.string.val, nlen) == 0)
				{
					cur = i;
					break;
				}
			}
		}
		else if (tok == WJB_VALUE && cur >= 0)
		{
			int			att = m->attnums[cur] - 1;

			if (present)
				present[att] = true;
			if (v.type == jbvNull)
				isnull[att] = true;
			else
			{
				values[att] = jbv_to_datum(m, cur, &v);
				isnull[att] = false;
			}
			cur = -1;
		}
	}
	pfree(cstr);
}
