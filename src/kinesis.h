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

/* Account id printed in Kinesis-style messages; one database is one account. */
#define STREAM_ACCOUNT				"000000000000"

/*
 * Kinesis exceptions and the SQLSTATE each raises with: the one table.
 * C code raises errcode(ERRCODE_STREAM_<tag>); stream_internal._raise looks
 * the exception's name up (kinesis_exception_sqlstate) when its caller
 * gives no SQLSTATE.  A name may appear twice: the first row is its
 * SQLSTATE by default (ValidationException of a missing member is 22004).
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
	X(LEASE_LOST,		"LeaseLostException",			ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)

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
