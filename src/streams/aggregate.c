/*
 * aggregate.c: stream.aggregate_records(partition_keys text[], data bytea[],
 * explicit_hash_keys text[] DEFAULT NULL) RETURNS bytea - one KPL
 * aggregated record (kpl.h) of user records, for producers that want
 * fewer, larger records.
 *
 * Each user record is validated as put_records validates a record (put.h);
 * the aggregate itself must fit a record (1 MiB: put_record checks it
 * again with the partition key it is put with).  Partition keys and
 * explicit hash keys go into the tables once each, in order of first use,
 * as the KPL writes them.  Keys are UTF-8 in the format: in a database of
 * another encoding they are converted.
 */
#include "streams/kpl.h"
#include "streams/put.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(stream_aggregate_records);

/* Distinct keys in order of first use: an open-addressing set of their indexes. */
typedef struct KeyTable
{
	uint32	   *slots;			/* index + 1; 0: empty */
	uint32		mask;
	KplSlice   *entries;
	uint32		n;
} KeyTable;

static void
keytable_init(KeyTable *t, int capacity)
{
	uint32		size = 16;

	while (size < (uint32) capacity * 2)
		size <<= 1;
	t->slots = palloc0_array(uint32, size);
	t->mask = size - 1;
	t->entries = palloc_array(KplSlice, Max(capacity, 1));
	t->n = 0;
}

static uint32
keytable_index(KeyTable *t, const char *p, size_t len)
{
	uint32		h = hash_bytes((const unsigned char *) p, (int) len) & t->mask;

	for (;;)
	{
		uint32		s = t->slots[h];

		if (s == 0)
		{
			t->entries[t->n].p = (const uint8 *) p;
			t->entries[t->n].len = len;
			t->slots[h] = ++t->n;
			return t->n - 1;
		}
		if (t->entries[s - 1].len == len && memcmp(t->entries[s - 1].p, p, len) == 0)
			return s - 1;
		h = (h + 1) & t->mask;
	}
}

/* A key's bytes as UTF-8 (the format's strings); *len set. */
static const char *
key_utf8(text *t, size_t *len)
{
	const char *p = VARDATA_ANY(t);
	int			n = VARSIZE_ANY_EXHDR(t);
	const char *u = pg_server_to_any(p, n, PG_UTF8);

	*len = (u == p) ? (size_t) n : strlen(u);
	return u;
}

Datum
stream_aggregate_records(PG_FUNCTION_ARGS)
{
	PutArrays	a;
	int			nkeys;
	KeyTable	pk_table,
				ehk_table;
	KplEncodeRecord *recs;
	uint64		size;
	bytea	   *out;

	put_arrays(fcinfo, 0, &a);
	nkeys = a.n;
	if (nkeys < 1)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1")));

	keytable_init(&pk_table, nkeys);
	keytable_init(&ehk_table, a.ehks ? nkeys : 0);
	recs = palloc_extended(sizeof(KplEncodeRecord) * nkeys, MCXT_ALLOC_HUGE);
	for (int i = 0; i < nkeys; i++)
	{
		text	   *key;
		bytea	   *data;
		text	   *ehk;
		const char *p;
		size_t		len;

		CHECK_FOR_INTERRUPTS();
		(void) put_array_record(&a, i, &key, &data, &ehk);

		p = key_utf8(key, &len);
		recs[i].pk_index = keytable_index(&pk_table, p, len);
		recs[i].ehk_index = -1;
		if (ehk != NULL)		/* validated: ASCII digits */
			recs[i].ehk_index = keytable_index(&ehk_table, VARDATA_ANY(ehk), VARSIZE_ANY_EXHDR(ehk));
		recs[i].data.p = (const uint8 *) VARDATA_ANY(data);
		recs[i].data.len = VARSIZE_ANY_EXHDR(data);
	}

	size = kpl_encoded_size(pk_table.entries, pk_table.n, ehk_table.entries, ehk_table.n, recs, nkeys);
	if (size > RECORD_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to %d",
						RECORD_MAX_BYTES),
				 errdetail("The aggregate of %d records would be " UINT64_FORMAT " bytes; a record may hold at most %d (partition key plus data).",
						   nkeys, size, RECORD_MAX_BYTES),
				 errhint("Aggregate fewer records per call.")));
	out = palloc(VARHDRSZ + size);
	SET_VARSIZE(out, VARHDRSZ + size);
	if (kpl_encode(pk_table.entries, pk_table.n, ehk_table.entries, ehk_table.n, recs, nkeys,
				   (uint8 *) VARDATA(out)) != size)
		elog(ERROR, "KPL aggregate encoded to an unexpected size");
	PG_RETURN_BYTEA_P(out);
}
