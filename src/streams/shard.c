/*
 * shard.c: shards by index and by shard id; the one shard-id parser; a
 * closed shard's children.
 */
#include "streams/shard.h"
#include "streams/routing.h"
#include "settings.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(stream_shard_index_sql);
PG_FUNCTION_INFO_V1(stream_shard_limit_sql);
PG_FUNCTION_INFO_V1(stream_on_demand_stream_limit_sql);

StreamShard *
shard_by_index(StreamInfo *info, int32 shard_index, bool missing_ok)
{
	for (int i = 0; i < info->nshards; i++)
		if (info->shards[i].shard_index == shard_index)
			return &info->shards[i];
	if (missing_ok)
		return NULL;
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_NOT_FOUND),
			 errmsg("ResourceNotFoundException: Shard %s in stream %s under account %s does not exist",
					shard_id_text(shard_index), info->name, STREAM_ACCOUNT)));
	return NULL;
}

/*
 * A shard id as the API member ShardId: 1 to 128 characters of
 * [a-zA-Z0-9_.-], else ValidationException as Kinesis' request validation.
 */
void
shard_check_id(const char *shard_id)
{
	kinesis_check_name(shard_id, "shardId", SHARD_ID_MAX);
}

/*
 * The digits after the last '-' (or the whole id without one), any number
 * of them, leading zeros ignored, must give at most 2147483647.
 */
int32
shard_parse_id(const char *shard_id)
{
	const char *digits = strrchr(shard_id, '-');
	int64		idx = 0;

	digits = digits ? digits + 1 : shard_id;
	if (*digits == '\0')
		return -1;
	for (const char *d = digits; *d; d++)
	{
		if (*d < '0' || *d > '9')
			return -1;
		idx = idx * 10 + (*d - '0');
		if (idx > PG_INT32_MAX)
			return -1;
	}
	return (int32) idx;
}

/*
 * Resolve a shard id: one that breaks the API's length or pattern
 * constraint is a ValidationException; one without a usable index "Could
 * not find shard"; a missing shard "does not exist" (both
 * ResourceNotFoundException, or NULL with missing_ok).
 */
StreamShard *
shard_by_id(StreamInfo *info, const char *shard_id, bool missing_ok)
{
	int32		idx;

	shard_check_id(shard_id);
	idx = shard_parse_id(shard_id);
	if (idx >= 0)
		return shard_by_index(info, idx, missing_ok);
	if (missing_ok)
		return NULL;
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_NOT_FOUND),
			 errmsg("ResourceNotFoundException: Could not find shard %s in stream %s under account %s.",
					shard_id, info->name, STREAM_ACCOUNT)));
	return NULL;
}

char *
shard_id_text(int32 shard_index)
{
	return psprintf("shardId-%012d", shard_index);
}

/*
 * stream_internal._shard_index(shard_id text) RETURNS int: the index a
 * shard id names, NULL when it names none; ValidationException for a NULL
 * or malformed id, as the C functions raise.
 */
Datum
stream_shard_index_sql(PG_FUNCTION_ARGS)
{
	ErrorContextCallback *saved = error_context_stack;
	char	   *shard_id;
	int32		idx;

	/* called by the extension's plpgsql: its call chain is no use to the user */
	error_context_stack = NULL;
	kinesis_require_arg(PG_ARGISNULL(0), "shardId");
	shard_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	shard_check_id(shard_id);
	idx = shard_parse_id(shard_id);
	error_context_stack = saved;
	if (idx < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(idx);
}

Datum
shard_children_jsonb(StreamInfo *info, StreamShard *shard)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < info->nshards; i++)
	{
		StreamShard *c = &info->shards[i];

		if (c->parent_index != shard->shard_index && c->adjacent_parent_index != shard->shard_index)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfo(&buf, "{\"ShardId\": \"%s\", \"ParentShards\": [\"%s\"",
						 shard_id_text(c->shard_index), shard_id_text(c->parent_index));
		if (c->adjacent_parent_index >= 0)
			appendStringInfo(&buf, ", \"%s\"", shard_id_text(c->adjacent_parent_index));
		appendStringInfo(&buf, "], \"HashKeyRange\": {\"StartingHashKey\": \"%s\", \"EndingHashKey\": \"%s\"}}",
						 routing_hash_key_to_cstring(c->start_hash),
						 routing_hash_key_to_cstring(c->end_hash));
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* stream_internal._shard_limit() RETURNS int: stream.shard_limit, the database's open-shard quota */
Datum
stream_shard_limit_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(stream_shard_limit);
}

/* stream_internal._on_demand_stream_limit() RETURNS int: stream.on_demand_stream_limit, the database's on-demand stream quota */
Datum
stream_on_demand_stream_limit_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(stream_on_demand_stream_limit);
}
