/*
 * deaggregate.c: a stream record's user records (deaggregate.h).
 *
 * An aggregate that kpl.c accepts gives its sub-records: each with its own
 * partition key (as valid UTF-8, kpl_utf8_repair, converted to the
 * database's encoding) and explicit hash key, the enclosing record's
 * sequence number and arrival time, sub-sequence numbers 0, 1, 2, ...
 * Anything else, and an aggregate whose keys the database's encoding
 * cannot hold, is one plain user record.  All or nothing: a record is
 * checked whole before its first user record is handed on.
 *
 * Memory: an aggregate's tables and keys live in a scratch context,
 * deleted before return (also on error: it is a child of the caller's).
 */
#include "streams/deaggregate.h"
#include "streams/kpl.h"

#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* A partition key of the aggregate as a text datum in the database's encoding; 0 when impossible. */
static Datum
key_text(KplSlice s, Oid conv_proc)
{
	uint8	   *utf8 = palloc(3 * s.len + 1);
	size_t		n = kpl_utf8_repair(s.p, s.len, utf8);
	int			enc = GetDatabaseEncoding();

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return PointerGetDatum(cstring_to_text_with_len((char *) utf8, n));
	else
	{
		/* pg_do_encoding_conversion_buf needs MAX_CONVERSION_GROWTH per byte, plus a NUL */
		int			cap = (int) (n * MAX_CONVERSION_GROWTH + 1);
		unsigned char *out = palloc(cap);
		int			done;

		if (!OidIsValid(conv_proc))
			return (Datum) 0;
		done = pg_do_encoding_conversion_buf(conv_proc, PG_UTF8, enc, utf8, (int) n, out, cap, true);
		if ((size_t) done != n)
			return (Datum) 0;
		return PointerGetDatum(cstring_to_text((char *) out));
	}
}

typedef struct SubRecord
{
	Datum		pk;
	Datum		ehk;
	KplSlice	data;
} SubRecord;

int
deaggregate_record(const StreamRecord *rec, bool deaggregate, UserRecordSink sink, void *arg)
{
	bytea	   *d = DatumGetByteaPP(rec->data);
	const uint8 *bytes = (const uint8 *) VARDATA_ANY(d);
	Size		len = VARSIZE_ANY_EXHDR(d);
	KplAggregate agg;
	UserRecord	ur;
	int			count = 0;

	ur.rec = rec;
	if (deaggregate && kpl_inspect(bytes, len, &agg) == KPL_OK)
	{
		MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "KPL aggregate",
													  ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(scratch);
		KplSlice   *pks = palloc_extended(sizeof(KplSlice) * (agg.n_pk + 1), MCXT_ALLOC_HUGE);
		KplSlice   *ehks = palloc_extended(sizeof(KplSlice) * (agg.n_ehk + 1), MCXT_ALLOC_HUGE);
		Datum	   *pk_text = palloc_extended(sizeof(Datum) * (agg.n_pk + 1),
											  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		SubRecord  *subs = palloc_extended(sizeof(SubRecord) * (agg.n_records + 1), MCXT_ALLOC_HUGE);
		Oid			conv = (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
			? InvalidOid : FindDefaultConversionProc(PG_UTF8, GetDatabaseEncoding());
		bool		ok = kpl_prepare(&agg, pks, ehks) == KPL_OK;
		uint64		n = 0;

		if (ok)
		{
			KplIter		it;
			KplUserRecord kr;

			kpl_iter_init(&it, &agg, pks, ehks);
			while (ok && kpl_next(&it, &kr))
			{
				CHECK_FOR_INTERRUPTS();
				/* a key many records share is converted once */
				if (pk_text[kr.pk_index] == (Datum) 0)
					pk_text[kr.pk_index] = key_text(kr.partition_key, conv);
				subs[n].pk = pk_text[kr.pk_index];
				subs[n].ehk = (Datum) 0;
				if (kr.explicit_hash_key.p != NULL)
					subs[n].ehk = PointerGetDatum(cstring_to_text_with_len((const char *) kr.explicit_hash_key.p,
																		   kr.explicit_hash_key.len));
				subs[n].data = kr.data;
				ok = subs[n].pk != (Datum) 0;
				n++;
			}
			ok = ok && n == agg.n_records;
		}
		MemoryContextSwitchTo(old);
		if (ok)
		{
			for (uint64 k = 0; k < n; k++)
			{
				CHECK_FOR_INTERRUPTS();
				ur.sub_seq = (int64) k;
				ur.aggregated = true;
				ur.partition_key = subs[k].pk;
				ur.explicit_hash_key = subs[k].ehk;
				ur.data = (const char *) subs[k].data.p;
				ur.data_len = subs[k].data.len;
				sink(arg, &ur);
				count++;
			}
			MemoryContextDelete(scratch);
			if ((Pointer) d != DatumGetPointer(rec->data))
				pfree(d);
			return count;
		}
		MemoryContextDelete(scratch);
	}
	ur.sub_seq = 0;
	ur.aggregated = false;
	ur.partition_key = rec->partition_key;
	ur.explicit_hash_key = (Datum) 0;
	ur.data = (const char *) bytes;
	ur.data_len = len;
	sink(arg, &ur);
	if ((Pointer) d != DatumGetPointer(rec->data))
		pfree(d);
	return 1;
}
