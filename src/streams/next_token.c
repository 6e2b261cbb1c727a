/*
 * next_token.c: the NextToken of the list functions (list_streams,
 * list_stream_consumers, list_shards): where the next page starts, signed, valid for
 * stream.next_token_lifetime (Kinesis: 300 s, then ExpiredNextTokenException).
 *
 * A token is base64 of ('N', kind, creation time in Unix ms, position)
 * followed by the tag of iterator_sign (iterator.h), the key that signs
 * shard iterators: a token names no position the server did not hand out,
 * and one kind's token is refused by another function (the kind is
 * signed).  The position is the last key of the page, text the caller
 * chooses (a stream name, a stream id and a consumer name).
 *
 *   stream_internal._next_token(kind text, position text) RETURNS text
 *   stream_internal._next_token_position(kind text, token text) RETURNS text
 */
#include "stream.h"
#include "settings.h"
#include "streams/iterator.h"

#include "common/base64.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(stream_next_token);
PG_FUNCTION_INFO_V1(stream_next_token_position);

#define NEXT_TOKEN_MARK		'N'
#define NEXT_TOKEN_HEAD		(1 + 1 + 8)	/* mark, kind, creation ms */

static uint8
token_kind(text *kind)
{
	if (VARSIZE_ANY_EXHDR(kind) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: a next token's kind is one character")));
	return (uint8) VARDATA_ANY(kind)[0];
}

Datum
stream_next_token(PG_FUNCTION_ARGS)
{
	uint8		kind = token_kind(PG_GETARG_TEXT_PP(0));
	text	   *pos = PG_GETARG_TEXT_PP(1);
	int			poslen = VARSIZE_ANY_EXHDR(pos);
	int			rawlen = NEXT_TOKEN_HEAD + poslen + TOKEN_TAG_LEN;
	uint8	   *raw = palloc(rawlen);
	int64		ms = iterator_unix_ms(GetCurrentTimestamp());
	int			enclen = pg_b64_enc_len(rawlen);
	char	   *out = palloc(enclen + 1);
	int			n;

	raw[0] = NEXT_TOKEN_MARK;
	raw[1] = kind;
	for (int i = 0; i < 8; i++)
		raw[2 + i] = (uint8) ((uint64) ms >> (8 * (7 - i)));
	memcpy(raw + NEXT_TOKEN_HEAD, VARDATA_ANY(pos), poslen);
	iterator_sign(raw, NEXT_TOKEN_HEAD + poslen, raw + NEXT_TOKEN_HEAD + poslen);
	n = pg_b64_encode((const char *) raw, rawlen, out, enclen);
	if (n < 0)
		elog(ERROR, "could not encode a next token");
	out[n] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

static void
invalid_token(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: Invalid NextToken."),
			 errhint("Pass the next_token a call of the same function returned.")));
}

Datum
stream_next_token_position(PG_FUNCTION_ARGS)
{
	uint8		kind = token_kind(PG_GETARG_TEXT_PP(0));
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			len = strlen(token);
	int			cap;
	uint8	   *raw;
	int			rawlen;
	uint8		tag[TOKEN_TAG_LEN];
	uint8		diff = 0;
	uint64		ms = 0;
	int64		now_ms = iterator_unix_ms(GetCurrentTimestamp());

	if (len < 1 || len > NEXT_TOKEN_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value at 'nextToken' failed to satisfy constraint: Member must have length %s",
						kinesis_bound_text(len, 1, NEXT_TOKEN_MAX_LEN))));
	cap = pg_b64_dec_len(len);
	raw = palloc(cap + 1);
	rawlen = pg_b64_decode(token, len, (char *) raw, cap);
	if (rawlen < NEXT_TOKEN_HEAD + TOKEN_TAG_LEN || raw[0] != NEXT_TOKEN_MARK || raw[1] != kind)
		invalid_token();
	iterator_sign(raw, rawlen - TOKEN_TAG_LEN, tag);
	for (int i = 0; i < TOKEN_TAG_LEN; i++)	/* constant time */
		diff |= tag[i] ^ raw[rawlen - TOKEN_TAG_LEN + i];
	if (diff != 0)
		invalid_token();
	for (int i = 0; i < 8; i++)
		ms = (ms << 8) | raw[2 + i];
	if (now_ms - (int64) ms > stream_next_token_lifetime_ms)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_EXPIRED_NEXT_TOKEN),
				 errmsg("ExpiredNextTokenException: The NextToken has expired. It was issued at %lld ms, more than %d milliseconds before now (%lld ms).",
						(long long) ms, stream_next_token_lifetime_ms, (long long) now_ms),
				 errhint("List again from the start, or from exclusive_start_stream_name / the last name you got.")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len((const char *) raw + NEXT_TOKEN_HEAD,
											  rawlen - NEXT_TOKEN_HEAD - TOKEN_TAG_LEN));
}
