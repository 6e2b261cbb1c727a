/*
 * parquet/parquet_values.c: a PostgreSQL Datum as the Parquet value of its
 * column (phase 1 of parquet_writer_add_row; the type mapping is in
 * parquet_schema.c).
 *
 * Every error a value can cause is raised here, before the writer changes:
 * NULL in a REQUIRED column, NaN, infinity or an out-of-range numeric for a
 * DECIMAL column, timestamps that do not fit.  ±infinity in date and timestamps is clamped to +/- the
 * largest value of the physical type (INT32_MAX or INT64_MAX, negated for
 * -infinity), which is how DuckDB itself stores infinite dates and
 * timestamps, so DuckDB reads them back as ±infinity; other readers see
 * far-away dates.  Finite timestamps after 294246 AD, which overflow INT64
 * once moved to the Unix epoch, raise an error.  Text is written as UTF-8
 * (converted from the server encoding when that differs).
 *
 * Memory: whatever a conversion allocates goes into the writer's row context
 * through row_cxt_enter; the PqValue may point there, into the Datum or into
 * the column's jsonb print buffer, all valid until the next row.
 */
#include "postgres.h"

#include "common/int.h"
#include "mb/pg_wchar.h"
#include "utils/date.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "parquet/parquet_int.h"

/* Unix epoch minus PostgreSQL epoch (2000-01-01). */
#define EPOCH_SHIFT_DAYS	(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define EPOCH_SHIFT_USECS	((int64) EPOCH_SHIFT_DAYS * USECS_PER_DAY)

/* Parses numeric_out's text into an integer scaled by 10^scale. */
static int128
decimal_from_text(PqColumn *c, const char *text)
{
	const char *s = text;
	bool		neg = false;
	int128		v = 0;
	int			intdigits = 0;
	int			i;

	if (*s == '-')
	{
		neg = true;
		s++;
	}
	if (!isdigit((unsigned char) *s))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("numeric value %s cannot be written to Parquet column \"%s\"",
						text, c->name),
				 errdetail("Parquet DECIMAL(%d,%d) has no NaN or infinity.",
						   c->precision, c->scale),
				 errhint("Filter the value out, or cast the column to float8 or text.")));

	for (; isdigit((unsigned char) *s); s++)
	{
		if (intdigits > 0 || *s != '0')
			intdigits++;
		if (intdigits > c->precision - c->scale)
			goto out_of_range;
		v = v * 10 + (*s - '0');
	}
	if (*s == '.')
		s++;
	for (i = 0; i < c->scale; i++)
	{
		v *= 10;
		if (isdigit((unsigned char) *s))
			v += *s++ - '0';
	}
	/* more digits than the scale: round half away from zero, as numeric does */
	if (isdigit((unsigned char) *s) && *s >= '5')
		v += 1;
	if (v >= c->dec_limit)
		goto out_of_range;
	return neg ? -v : v;

out_of_range:
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("numeric value %s does not fit Parquet column \"%s\" of type DECIMAL(%d,%d)",
					text, c->name, c->precision, c->scale),
			 errdetail("DECIMAL(%d,%d) holds at most %d digits before the decimal point.",
					   c->precision, c->scale, c->precision - c->scale),
			 errhint("Cast the column to numeric with a suitable precision and scale, to float8 or to text.")));
	return 0;					/* keep compiler quiet */
}

/*
 * The same value as decimal_from_text(numeric_out(d)), read straight from
 * the numeric's stored form: sign, weight, display scale and base-10000
 * digits (the on-disk format, which pg_upgrade keeps stable).  Returns false
 * for NaN, infinities, values out of the column's range and anything
 * unexpected; the caller then takes the text path, which raises the error.
 */
/* u below 10^34 can take 4 more digits without overflowing int128 */
#define U_GUARD		((int128) 100000000000000000LL * 100000000000000000LL)

static bool
decimal_from_numeric(PqColumn *c, Datum d, int128 *out)
{
	static const int pow10[5] = {1, 10, 100, 1000, 10000};
	struct varlena *t = (struct varlena *) DatumGetPointer(d);
	const char *p;
	const char *digits;
	int			len;
	int			ndigits;
	uint16		hdr;
	int			weight;
	int			dscale;
	bool		neg;
	int			f;
	int			i;
	int			last;
	int			pending;
	int128		u = 0;
	int128		v;

	if (VARATT_IS_EXTERNAL(t) || VARATT_IS_COMPRESSED(t))
		return false;
	p = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	if (len < 2)
		return false;
	memcpy(&hdr, p, sizeof(uint16));
	switch (hdr & 0xC000)
	{
		case 0x8000:			/* short format */
			neg = (hdr & 0x2000) != 0;
			dscale = (hdr & 0x1F80) >> 7;
			weight = hdr & 0x003F;
			if (hdr & 0x0040)
				weight |= ~0x003F;
			digits = p + 2;
			ndigits = (len - 2) / 2;
			break;
		case 0x0000:			/* long format, positive */
		case 0x4000:			/* long format, negative */
			{
				int16		w16;

				if (len < 4)
					return false;
				neg = (hdr & 0xC000) == 0x4000;
				dscale = hdr & 0x3FFF;
				memcpy(&w16, p + 2, sizeof(int16));
				weight = w16;
				digits = p + 4;
				ndigits = (len - 4) / 2;
				break;
			}
		default:				/* NaN, +-Infinity */
			return false;
	}
	/* 10000^10 is beyond any DECIMAL(38) */
	if (weight > 9)
		return false;

	/*
	 * u: the digits down to decimal exponent -f, where f is one past the
	 * column's scale (the rounding digit) unless numeric_out prints fewer
	 * (dscale).  Base-10000 digit i covers exponents b .. b + 3, b = 4 *
	 * (weight - i).  Anything suspicious returns false: the text path is
	 * always exact.
	 */
	f = Min(c->scale + 1, dscale);
	last = 4 * (weight + 1);	/* lowest exponent taken into u so far */
	for (i = 0; i < ndigits; i++)
	{
		int			b = 4 * (weight - i);
		int16		nd;

		if (b + 4 <= -f)
			break;
		memcpy(&nd, digits + 2 * i, sizeof(int16));
		if (u >= U_GUARD || nd < 0 || nd >= 10000)
			return false;
		if (b >= -f)
		{
			u = u * 10000 + nd;
			last = b;
		}
		else
		{
			/* the group straddles -f: keep its upper digits */
			u = u * pow10[b + 4 + f] + nd / pow10[-f - b];
			last = -f;
			break;
		}
	}
	/* scale u to exponent -(scale + 1) */
	for (pending = last + c->scale + 1; pending > 0; pending -= 4)
	{
		if (u >= U_GUARD)
			return false;
		u *= pow10[Min(pending, 4)];
	}
	{
		/* digits below -f were left out, so past dscale this is 0 */
		int			rd;

		if (u <= (int128) PG_INT64_MAX)
		{
			int64		u64 = (int64) u;

			rd = (int) (u64 % 10);
			v = u64 / 10;
		}
		else
		{
			rd = (int) (u % 10);
			v = u / 10;
		}
		/* the first digit past the scale rounds half away from zero */
		if (rd >= 5)
			v += 1;
	}
	if (v >= c->dec_limit)
		return false;
	*out = neg ? -v : v;
	return true;
}

static const char *
to_utf8(PqColumn *c, const char *p, int *len)
{
	char	   *u;

	if (!c->to_utf8)
		return p;
	u = pg_server_to_any(p, *len, PG_UTF8);
	if (u != p)
		*len = strlen(u);
	return u;
}

/*
 * Switch to the writer's per-row context (reset before the next row because
 * it is marked dirty); returns the context to switch back to.  Every
 * conversion that allocates (detoasting, output functions, re-encoding) goes
 * through here so none can forget the mark.
 */
static inline MemoryContext
row_cxt_enter(ParquetWriter *w)
{
	w->row_cxt_dirty = true;
	return MemoryContextSwitchTo(w->row_cxt);
}

/* Phase 1 of add_row: may raise errors, changes nothing in the writer. */
static void
convert_value(ParquetWriter *w, PqColumn *c, Datum d, PqValue *out)
{
	switch (c->kind)
	{
		case PK_BOOL:
			out->v.i32 = DatumGetBool(d) ? 1 : 0;
			break;
		case PK_INT16:
			out->v.i32 = DatumGetInt16(d);
			break;
		case PK_INT32:
			out->v.i32 = DatumGetInt32(d);
			break;
		case PK_INT64:
			out->v.i64 = DatumGetInt64(d);
			break;
		case PK_FLOAT4:
			out->v.f4 = DatumGetFloat4(d);
			break;
		case PK_FLOAT8:
			out->v.f8 = DatumGetFloat8(d);
			break;
		case PK_DATE:
			{
				DateADT		v = DatumGetDateADT(d);

				if (DATE_IS_NOBEGIN(v))
					out->v.i32 = -PG_INT32_MAX;
				else if (DATE_IS_NOEND(v))
					out->v.i32 = PG_INT32_MAX;
				else
					out->v.i32 = v + EPOCH_SHIFT_DAYS;	/* cannot overflow */
				break;
			}
		case PK_TIMESTAMP:
			{
				Timestamp	v = DatumGetTimestamp(d);

				if (TIMESTAMP_IS_NOBEGIN(v))
					out->v.i64 = -PG_INT64_MAX;
				else if (TIMESTAMP_IS_NOEND(v))
					out->v.i64 = PG_INT64_MAX;
				else if (pg_add_s64_overflow(v, EPOCH_SHIFT_USECS, &out->v.i64) ||
						 out->v.i64 == PG_INT64_MAX)
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("timestamp out of range for Parquet column \"%s\"", c->name),
							 errdetail("Parquet stores microseconds since 1970 in 64 bits.")));
				break;
			}
		case PK_UUID:
			memcpy(out->v.uuid, DatumGetUUIDP(d)->data, UUID_LEN);
			break;
		case PK_DECIMAL:
			{
				MemoryContext old;
				char	   *s;

				if (decimal_from_numeric(c, d, &out->v.dec))
					break;
				old = row_cxt_enter(w);
				s = OutputFunctionCall(&c->outfunc, d);
				out->v.dec = decimal_from_text(c, s);
				MemoryContextSwitchTo(old);
				break;
			}
		case PK_VARLENA_TEXT:
		case PK_BYTEA:
			{
				struct varlena *t = (struct varlena *) DatumGetPointer(d);

				if (VARATT_IS_COMPRESSED(t) || VARATT_IS_EXTERNAL(t))
				{
					MemoryContext old = row_cxt_enter(w);

					t = pg_detoast_datum_packed(t);
					MemoryContextSwitchTo(old);
				}
				out->ptr = VARDATA_ANY(t);
				out->len = VARSIZE_ANY_EXHDR(t);
				if (c->kind == PK_VARLENA_TEXT && c->to_utf8)
				{
					MemoryContext old = row_cxt_enter(w);

					out->ptr = to_utf8(c, out->ptr, &out->len);
					MemoryContextSwitchTo(old);
				}
				break;
			}
		case PK_JSONB:
			{
				struct varlena *t = (struct varlena *) DatumGetPointer(d);
				Jsonb	   *jb;

				out->entry = -1;
				out->raw_ptr = NULL;
				if (c->memo != NULL && c->dict_mode && !VARATT_IS_EXTERNAL(t) &&
					!VARATT_IS_COMPRESSED(t))
				{
					out->raw_ptr = VARDATA_ANY(t);
					out->raw_len = VARSIZE_ANY_EXHDR(t);
					out->raw_hash = parquet_encoding_hash_bytes(out->raw_ptr,
																out->raw_len);
					out->entry = parquet_encoding_memo_find(c->memo, out->raw_ptr,
															out->raw_len,
															out->raw_hash);
					if (out->entry >= 0)
						break;
				}
				if (VARATT_IS_EXTENDED(t) && !VARATT_IS_SHORT(t))
				{
					MemoryContext old = row_cxt_enter(w);

					jb = (Jsonb *) pg_detoast_datum(t);
					MemoryContextSwitchTo(old);
				}
				else if (VARATT_IS_SHORT(t))
				{
					/* jsonb wants its 4-byte header and int alignment */
					Size		n = VARSIZE_SHORT(t) - VARHDRSZ_SHORT;

					if (n + VARHDRSZ > (Size) c->aligned_cap)
					{
						c->aligned_cap = (int) Max(n + VARHDRSZ, (Size) c->aligned_cap * 2);
						c->aligned = repalloc(c->aligned, c->aligned_cap);
					}
					SET_VARSIZE(c->aligned, n + VARHDRSZ);
					memcpy(VARDATA(c->aligned), VARDATA_SHORT(t), n);
					jb = (Jsonb *) c->aligned;
				}
				else
					jb = (Jsonb *) t;
				/* what jsonb_out prints, into a buffer kept between rows */
				if (c->text.maxlen > 8 * 1024 * 1024)
				{
					pfree(c->text.data);
					c->text.data = MemoryContextAlloc(w->cxt, 1024);
					c->text.maxlen = 1024;
				}
				resetStringInfo(&c->text);
				{
					/* the printer's own allocations (iterators, numbers) */
					MemoryContext old = row_cxt_enter(w);

					(void) JsonbToCString(&c->text, &jb->root, VARSIZE(jb));
					out->ptr = c->text.data;
					out->len = c->text.len;
					out->ptr = to_utf8(c, out->ptr, &out->len);
					MemoryContextSwitchTo(old);
				}
				break;
			}
		case PK_OUTPUT:
			{
				MemoryContext old = row_cxt_enter(w);

				out->ptr = OutputFunctionCall(&c->outfunc, d);
				out->len = strlen(out->ptr);
				out->ptr = to_utf8(c, out->ptr, &out->len);
				MemoryContextSwitchTo(old);
				break;
			}
	}
}

/* Phase 1 of add_row (see parquet_int.h). */
void
parquet_values_convert_row(ParquetWriter *w, Datum *values, bool *isnull)
{
	int			i;

	for (i = 0; i < w->ncols; i++)
	{
		PqColumn   *c = &w->cols[i];
		PqValue    *v = &w->row[i];

		v->isnull = isnull[c->attno];
		if (v->isnull)
		{
			if (c->required)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("null value in column \"%s\" of a REQUIRED Parquet column", c->name),
						 errdetail("The column is NOT NULL in the schema of the file \"%s\".", w->path)));
			continue;
		}
		convert_value(w, c, values[c->attno], v);
	}
}
