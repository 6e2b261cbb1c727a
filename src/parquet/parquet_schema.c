/*
 * parquet/parquet_schema.c: which Parquet types a PostgreSQL column becomes,
 * and the schema of the file's footer.
 *
 * Type mapping (physical type, annotation):
 *   bool                 BOOLEAN
 *   int2, int4           INT32, INTEGER(16|32, signed)
 *   int8                 INT64, INTEGER(64, signed)
 *   float4, float8       FLOAT, DOUBLE
 *   numeric(p,s), p<=38  DECIMAL(p,s): INT32 if p<=9, INT64 if p<=18, else
 *                        FIXED_LEN_BYTE_ARRAY(16); values rounded half away
 *                        from zero to s digits like a cast to numeric(p,s)
 *   numeric (no typmod)  DECIMAL(38,9) in FIXED_LEN_BYTE_ARRAY(16), rounded
 *                        to 9 fractional digits; at most 29 integer digits
 *   numeric(p>38)        STRING (text output)
 *                        NaN, ±Infinity or a value too large for the DECIMAL
 *                        raise an error naming the column
 *   text, varchar, bpchar  STRING (bpchar keeps its padding, as COPY does)
 *   json, jsonb          JSON (text form; jsonb through jsonb_out)
 *   bytea                BYTE_ARRAY without annotation
 *   date                 DATE (days since 1970-01-01)
 *   timestamp            INT64 TIMESTAMP(MICROS, isAdjustedToUTC=false)
 *   timestamptz          INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true)
 *   uuid                 FIXED_LEN_BYTE_ARRAY(16) UUID
 *   anything else        STRING holding the type's text output (arrays,
 *                        composites, enums, intervals, time, inet, ...)
 *   domains              as their base type
 * How the values themselves are converted: parquet_values.c.
 *
 * parquet_schema_init_column runs once per column at create, in the writer's
 * context, and sets everything the other files read about the column's type
 * (kind, physical/converted/logical type, value size, DECIMAL precision,
 * scale and limit, output function); nothing changes it later except the
 * dictionary switch (use_dictionary).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "parquet/parquet_int.h"

/* Unconstrained numeric becomes DECIMAL(38,9). */
#define NUMERIC_DEFAULT_PRECISION	38
#define NUMERIC_DEFAULT_SCALE		9
#define DECIMAL_MAX_PRECISION		38

static void
decimal_from_typmod(int32 typmod, int *precision, int *scale)
{
	int			p,
				s;

	if (typmod < (int32) VARHDRSZ)
	{
		*precision = NUMERIC_DEFAULT_PRECISION;
		*scale = NUMERIC_DEFAULT_SCALE;
		return;
	}
	p = ((typmod - VARHDRSZ) >> 16) & 0xffff;
	/* PostgreSQL 15 scales are 11-bit signed */
	s = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;
	/* Parquet needs 0 <= scale <= precision: widen to hold the same values */
	if (s < 0)
	{
		p -= s;
		s = 0;
	}
	else if (s > p)
		p = s;
	*precision = p;
	*scale = s;
}

/*
 * A column's value kind and Parquet types, set in one call so that each type
 * mapping of parquet_schema_init_column reads as one line (CT_NONE, LT_NONE: no annotation).
 */
static inline void
column_set_type(PqColumn *c, PqKind kind, int physical, int converted, int logical)
{
	c->kind = kind;
	c->physical = physical;
	c->converted = converted;
	c->logical = logical;
}

void
parquet_schema_init_column(ParquetWriter *w, PqColumn *c, Form_pg_attribute att, bool required)
{
	int32		typmod = att->atttypmod;
	Oid			typid = getBaseTypeAndTypmod(att->atttypid, &typmod);
	Oid			outfn;
	bool		varlena;
	const char *name = NameStr(att->attname);

	c->name = pstrdup(name);
	if (GetDatabaseEncoding() != PG_UTF8)
		c->name = pg_server_to_any(name, strlen(name), PG_UTF8);
	c->attno = att->attnum - 1;
	c->required = required;
	c->converted = CT_NONE;
	c->logical = LT_NONE;
	c->use_dictionary = (w->dict_bytes > 0);
	getTypeOutputInfo(typid, &outfn, &varlena);
	fmgr_info_cxt(outfn, &c->outfunc, w->cxt);
	c->to_utf8 = (GetDatabaseEncoding() != PG_UTF8);

	switch (typid)
	{
		case BOOLOID:
			column_set_type(c, PK_BOOL, PQ_BOOLEAN, CT_NONE, LT_NONE);
			c->use_dictionary = false;
			break;
		case INT2OID:
			column_set_type(c, PK_INT16, PQ_INT32, CT_INT_16, LT_INTEGER);
			c->int_bits = 16;
			break;
		case INT4OID:
			column_set_type(c, PK_INT32, PQ_INT32, CT_INT_32, LT_INTEGER);
			c->int_bits = 32;
			break;
		case INT8OID:
			column_set_type(c, PK_INT64, PQ_INT64, CT_INT_64, LT_INTEGER);
			c->int_bits = 64;
			break;
		case FLOAT4OID:
			column_set_type(c, PK_FLOAT4, PQ_FLOAT, CT_NONE, LT_NONE);
			break;
		case FLOAT8OID:
			column_set_type(c, PK_FLOAT8, PQ_DOUBLE, CT_NONE, LT_NONE);
			break;
		case NUMERICOID:
			decimal_from_typmod(typmod, &c->precision, &c->scale);
			if (c->precision > DECIMAL_MAX_PRECISION)
			{
				column_set_type(c, PK_OUTPUT, PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
				break;
			}
			column_set_type(c, PK_DECIMAL,
							c->precision <= 9 ? PQ_INT32 :
							c->precision <= 18 ? PQ_INT64 : PQ_FLBA,
							CT_DECIMAL, LT_DECIMAL);
			if (c->physical == PQ_FLBA)
				c->type_length = 16;
			c->dec_limit = 1;
			for (int k = 0; k < c->precision; k++)
				c->dec_limit *= 10;
			break;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
			column_set_type(c, (typid == NAMEOID) ? PK_OUTPUT : PK_VARLENA_TEXT,
							PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
			break;
		case JSONOID:
		case JSONBOID:
			column_set_type(c, (typid == JSONOID) ? PK_VARLENA_TEXT : PK_JSONB,
							PQ_BYTE_ARRAY, CT_JSON, LT_JSON);
			if (typid == JSONBOID)
			{
				MemoryContext old = MemoryContextSwitchTo(w->cxt);

				initStringInfo(&c->text);
				c->aligned_cap = 256;
				c->aligned = palloc(c->aligned_cap);
				MemoryContextSwitchTo(old);
			}
			break;
		case BYTEAOID:
			column_set_type(c, PK_BYTEA, PQ_BYTE_ARRAY, CT_NONE, LT_NONE);
			break;
		case DATEOID:
			column_set_type(c, PK_DATE, PQ_INT32, CT_DATE, LT_DATE);
			break;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			column_set_type(c, PK_TIMESTAMP, PQ_INT64, CT_TIMESTAMP_MICROS, LT_TIMESTAMP);
			c->ts_utc = (typid == TIMESTAMPTZOID);
			break;
		case UUIDOID:
			column_set_type(c, PK_UUID, PQ_FLBA, CT_NONE, LT_UUID);
			c->type_length = UUID_LEN;
			break;
		default:
			column_set_type(c, PK_OUTPUT, PQ_BYTE_ARRAY, CT_UTF8, LT_STRING);
			break;
	}

	switch (c->physical)
	{
		case PQ_INT32:
		case PQ_FLOAT:
			c->value_size = 4;
			break;
		case PQ_INT64:
		case PQ_DOUBLE:
			c->value_size = 8;
			break;
		case PQ_FLBA:
			c->value_size = c->type_length;
			break;
		default:
			c->value_size = 0;
			break;
	}
}

void
parquet_schema_write(ThriftWriter *tw, ParquetWriter *w)
{
	int			i;

	thrift_list_begin(tw, 2, THRIFT_STRUCT, w->ncols + 1);
	thrift_elem_struct_begin(tw);
	thrift_field_string(tw, 4, "schema");
	thrift_field_i32(tw, 5, w->ncols);
	thrift_struct_end(tw);

	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];

		thrift_elem_struct_begin(tw);
		thrift_field_i32(tw, 1, c->physical);
		if (c->physical == PQ_FLBA)
			thrift_field_i32(tw, 2, c->type_length);
		thrift_field_i32(tw, 3, c->required ? REP_REQUIRED : REP_OPTIONAL);
		thrift_field_string(tw, 4, c->name);
		if (c->converted != CT_NONE)
			thrift_field_i32(tw, 6, c->converted);
		if (c->kind == PK_DECIMAL)
		{
			thrift_field_i32(tw, 7, c->scale);
			thrift_field_i32(tw, 8, c->precision);
		}
		if (c->logical != LT_NONE)
		{
			thrift_struct_begin(tw, 10);
			switch (c->logical)
			{
				case LT_DECIMAL:
					thrift_struct_begin(tw, LT_DECIMAL);
					thrift_field_i32(tw, 1, c->scale);
					thrift_field_i32(tw, 2, c->precision);
					thrift_struct_end(tw);
					break;
				case LT_TIMESTAMP:
					thrift_struct_begin(tw, LT_TIMESTAMP);
					thrift_field_bool(tw, 1, c->ts_utc);
					thrift_struct_begin(tw, 2); /* TimeUnit */
					thrift_field_empty_struct(tw, 2);	/* MICROS */
					thrift_struct_end(tw);
					thrift_struct_end(tw);
					break;
				case LT_INTEGER:
					thrift_struct_begin(tw, LT_INTEGER);
					thrift_field_i8(tw, 1, (int8) c->int_bits);
					thrift_field_bool(tw, 2, true);
					thrift_struct_end(tw);
					break;
				default:
					/* STRING, DATE, JSON, UUID: empty structs */
					thrift_field_empty_struct(tw, c->logical);
					break;
			}
			thrift_struct_end(tw);
		}
		thrift_struct_end(tw);
	}
}
