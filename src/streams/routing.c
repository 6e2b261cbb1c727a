/*
 * routing.c: partition keys to 128-bit hash keys, exactly as Kinesis does.
 *
 * The hash key is the MD5 of the partition key's UTF-8 bytes read as an
 * unsigned big-endian 128-bit integer; a record goes to the open shard whose
 * [starting, ending] hash-key range holds it (the catalog keeps the open
 * shards sorted by range for the binary search).
 */
#include "streams/routing.h"
#include "md5.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(stream_hash_key);

uint128
routing_hash_key(const char *key, int len)
{
	uint8		digest[16];
	uint128		h = 0;

	stream_md5(key, len, digest);
	for (int i = 0; i < 16; i++)
		h = (h << 8) | digest[i];
	return h;
}

/*
 * Parse a decimal hash key as Kinesis accepts it: 0 or [1-9][0-9]{0,38},
 * no larger than 2^128 - 1.  Returns false on anything else.
 */
bool
routing_parse_hash_key(const char *s, uint128 *out)
{
	uint128		v = 0;
	const uint128 max = ~(uint128) 0;
	int			n = strlen(s);

	if (n == 0 || n > 39 || (n > 1 && s[0] == '0'))
		return false;
	for (int i = 0; i < n; i++)
	{
		int			d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = s[i] - '0';
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

char *
routing_hash_key_to_cstring(uint128 value)
{
	char		buf[41];
	int			pos = sizeof(buf) - 1;

	buf[pos] = '\0';
	do
	{
		buf[--pos] = '0' + (int) (value % 10);
		value /= 10;
	} while (value != 0);
	return pstrdup(buf + pos);
}

/* The open shard whose hash-key range holds hash. */
StreamShard *
routing_open_shard(StreamInfo *info, uint128 hash)
{
	int			lo = 0,
				hi = info->nopen - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		StreamShard *sh = info->open_shards[mid];

		if (hash < sh->start_hash)
			hi = mid - 1;
		else if (hash > sh->end_hash)
			lo = mid + 1;
		else
			return sh;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("InternalFailure: no open shard of stream %s covers hash key %s",
					info->name, routing_hash_key_to_cstring(hash))));
	return NULL;				/* keep compiler quiet */
}

/* stream.hash_key(partition_key text) RETURNS numeric */
Datum
stream_hash_key(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	uint128		h;

	h = routing_hash_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	PG_RETURN_DATUM(DirectFunctionCall3(numeric_in,
										CStringGetDatum(routing_hash_key_to_cstring(h)),
										ObjectIdGetDatum(InvalidOid),
										Int32GetDatum(-1)));
}
