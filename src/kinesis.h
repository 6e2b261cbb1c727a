/*
 * kinesis.h: the Kinesis contract of the API - its limits, its exceptions
 * and the SQLSTATE each raises with, and the validation of names and
 * required members.
 *
 * Errors come in two styles, on purpose.  A condition of the Kinesis API
 * raises "<Exception>: <Kinesis' own wording>" with the exception's
 * SQLSTATE from KINESIS_EXCEPTIONS below; a condition of PostgreSQL (a hot
 * standby, PREPARE, a corrupt chunk) uses PostgreSQL's style and codes.
 * A message that states a limit is built from the constant here, never
 * from a literal number.
 */
#ifndef STREAM_KINESIS_H
#define STREAM_KINESIS_H

#include "postgres.h"

/* Kinesis limits (kinesis-semantics.md 1.2, 1.6, 1.9) */
#define STREAM_NAME_MAX				128		/* streamName: 1 to 128 of [a-zA-Z0-9_.-] */
#define SHARD_ID_MAX				128		/* shardId: the same pattern */
#define PARTITION_KEY_MAX_CHARS		256
#define RECORD_MAX_BYTES			(1024 * 1024)	/* key + data */
#define PUT_RECORDS_MAX				500
#define PUT_RECORDS_MAX_BYTES		(5 * 1024 * 1024)
#define GET_RECORDS_MAX				10000
#define GET_RECORDS_MAX_BYTES		(10 * 1024 * 1024)
#define SHARD_ITERATOR_MAX_LEN		512		/* the member ShardIterator */
#define EXPLICIT_HASH_KEY_MAX_DIGITS 39		/* 0|([1-9]\d{0,38}) */
#define SEQUENCE_NUMBER_MAX_DIGITS	129		/* 0|([1-9]\d{0,128}) */
#define SUBSCRIBE_MAX_WAIT_MS		(5 * 60 * 1000)	/* a subscription ends after 5 minutes */
#define NEXT_TOKEN_MAX_LEN			1048576	/* the member NextToken */
#define LIST_LIMIT_MAX				10000	/* ListStreams' Limit, ListStreamConsumers' MaxResults */
#define LIST_PAGE_MAX				100		/* ... of which a page holds at most */
#define TAGS_PER_STREAM_MAX			50
#define TAGS_PER_CALL_MAX			10		/* AddTagsToStream's Tags, RemoveTagsFromStream's TagKeys */
#define TAG_KEY_MAX					128		/* characters */
#define TAG_VALUE_MAX				256		/* characters */
#define LIST_TAGS_LIMIT_MAX			50		/* ListTagsForStream's Limit */
#define RETENTION_HOURS_MIN			24
#define RETENTION_HOURS_MAX			8760	/* 365 days */
#define ACCOUNT_SHARDS_MAX			10000	/* open shards of the account: the default of stream.shard_limit */
#define CONSUMERS_PER_STREAM_MAX	20		/* registered (enhanced fan-out) consumers */
#define ON_DEMAND_INITIAL_SHARDS	4		/* an on-demand stream starts with them and keeps them (1.4) */
#define ON_DEMAND_STREAMS_MAX		50		/* on-demand streams of the account: the default of stream.on_demand_stream_limit */
#define STREAM_MODE_SWITCHES_MAX	2		/* UpdateStreamMode switches per stream and rolling 24 hours */
#define RESHARDS_PER_SEC			5		/* SplitShard and MergeShards calls per second of the account */

/* Firehose limits: delivery stream names and BufferingHints */
#define FIREHOSE_NAME_MAX			64
#define FIREHOSE_BUFFER_MB_MIN		1
#define FIREHOSE_BUFFER_MB_MAX		128
#define FIREHOSE_BUFFER_SECONDS_MIN	0
#define FIREHOSE_BUFFER_SECONDS_MAX	900

/*
 * The limits the SQL parts check and quote, by their C names:
 * stream_internal._limit('RETENTION_HOURS_MAX') is 8760.
 */
#define KINESIS_SQL_LIMITS(X) \
	X(STREAM_NAME_MAX) \
	X(RETENTION_HOURS_MIN) \
	X(RETENTION_HOURS_MAX) \
	X(ACCOUNT_SHARDS_MAX) \
	X(CONSUMERS_PER_STREAM_MAX) \
	X(ON_DEMAND_INITIAL_SHARDS) \
	X(ON_DEMAND_STREAMS_MAX) \
	X(STREAM_MODE_SWITCHES_MAX) \
	X(FIREHOSE_NAME_MAX) \
	X(FIREHOSE_BUFFER_MB_MIN) \
	X(FIREHOSE_BUFFER_MB_MAX) \
	X(FIREHOSE_BUFFER_SECONDS_MIN) \
	X(FIREHOSE_BUFFER_SECONDS_MAX) \
	X(LIST_LIMIT_MAX) \
	X(LIST_PAGE_MAX) \
	X(TAGS_PER_STREAM_MAX) \
	X(TAGS_PER_CALL_MAX) \
	X(TAG_KEY_MAX) \
	X(TAG_VALUE_MAX) \
	X(LIST_TAGS_LIMIT_MAX)

/* Per-shard throughput limits (kinesis-semantics.md 1.4, 1.12) */
#define SHARD_WRITE_BYTES_PER_SEC	(1024 * 1024)	/* partition keys and data */
#define SHARD_WRITE_RECORDS_PER_SEC	1000
#define SHARD_READ_BYTES_PER_SEC	(2 * 1024 * 1024)
#define SHARD_READ_CALLS_PER_SEC	5

/* Account id printed in Kinesis-style messages; one database is one account. */
#define STREAM_ACCOUNT				"000000000000"

/*
 * Kinesis exceptions and the SQLSTATE each raises with: the one table.
 * C code raises errcode(ERRCODE_STREAM_<tag>); stream_internal._raise takes
 * the exception's name alone and looks its SQLSTATE up here
 * (kinesis_exception_sqlstate).  A name may appear twice: the first row is
 * its SQLSTATE by default; the other is raised by its own function
 * (ValidationException of a missing member, 22004: kinesis_require_arg,
 * stream_internal._raise_null in SQL).
 */
#define KINESIS_EXCEPTIONS(X) \
	X(NOT_FOUND,		"ResourceNotFoundException",	ERRCODE_UNDEFINED_OBJECT) \
	X(IN_USE,			"ResourceInUseException",		ERRCODE_DUPLICATE_OBJECT) \
	X(INVALID_ARG,		"InvalidArgumentException",		ERRCODE_INVALID_PARAMETER_VALUE) \
	X(VALIDATION,		"ValidationException",			ERRCODE_INVALID_PARAMETER_VALUE) \
	X(NULL_MEMBER,		"ValidationException",			ERRCODE_NULL_VALUE_NOT_ALLOWED) \
	X(EXPIRED_ITERATOR, "ExpiredIteratorException",		ERRCODE_INVALID_PARAMETER_VALUE) \
	X(EXPIRED_NEXT_TOKEN, "ExpiredNextTokenException",	ERRCODE_INVALID_PARAMETER_VALUE) \
	X(LIMIT,			"LimitExceededException",		ERRCODE_PROGRAM_LIMIT_EXCEEDED) \
	X(ACCESS_DENIED,	"AccessDeniedException",		ERRCODE_INSUFFICIENT_PRIVILEGE) \
	X(LEASE_LOST,		"LeaseLostException",			ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE) \
	X(THROUGHPUT,		"ProvisionedThroughputExceededException", ERRCODE_CONFIGURATION_LIMIT_EXCEEDED) \
	X(INVALID_PARAM,	"InvalidParameterValueException", ERRCODE_INVALID_PARAMETER_VALUE)

#define KINESIS_ERRCODE_ENUM(tag, exception, sqlstate) ERRCODE_STREAM_##tag = (sqlstate),
enum
{
	KINESIS_EXCEPTIONS(KINESIS_ERRCODE_ENUM)
};

/* The SQLSTATE of a Kinesis exception by name; -1 for a name not in the table. */
extern int	kinesis_exception_sqlstate(const char *exception);

/* 1 to maxlen characters of [a-zA-Z0-9_.-], else ValidationException naming member. */
extern void kinesis_check_name(const char *name, const char *member, int maxlen);
extern void kinesis_check_stream_name(const char *name);

/* A required member: ValidationException "must not be null" when isnull. */
extern void kinesis_require_arg(bool isnull, const char *member);

/*
 * The bound n breaks, in the words of Kinesis' length and value
 * constraints: "greater than or equal to <min>" or "less than or equal to
 * <max>" (palloc'd).
 */
extern char *kinesis_bound_text(int64 n, int64 min, int64 max);

/* Whether s matches 0|([1-9]\d{0,maxdigits-1}) (hash keys, sequence numbers). */
extern bool kinesis_is_plain_decimal(const char *s, int maxdigits);

#endif							/* STREAM_KINESIS_H */
