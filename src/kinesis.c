/*
 * kinesis.c: the exception table's lookup, the limits the SQL parts read
 * (stream_internal._limit) and the validation every request of the API
 * starts with (names, required members, decimal patterns).
 *
 * Validation raises before anything is looked up or changed, as Kinesis'
 * request validation does: a ValidationException says which member broke
 * which constraint, in Kinesis' words.
 */
#include "kinesis.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(stream_check_name_sql);
PG_FUNCTION_INFO_V1(stream_limit_sql);

typedef struct KinesisException
{
	const char *name;
	int			sqlstate;
} KinesisException;

#define KINESIS_EXCEPTION_ROW(tag, exception, sqlstate) {exception, sqlstate},
static const KinesisException kinesis_exceptions[] = {
	KINESIS_EXCEPTIONS(KINESIS_EXCEPTION_ROW)
};

int
kinesis_exception_sqlstate(const char *exception)
{
	for (size_t i = 0; i < lengthof(kinesis_exceptions); i++)
		if (strcmp(kinesis_exceptions[i].name, exception) == 0)
			return kinesis_exceptions[i].sqlstate;
	return -1;
}

/*
 * Validate a resource name as Kinesis and Firehose do: 1 to maxlen
 * characters of [a-zA-Z0-9_.-]; member names the field in the message.
 */
void
kinesis_check_name(const char *name, const char *member, int maxlen)
{
	int			n = strlen(name);

	if (n < 1 || n > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_VALIDATION),
				 errmsg("ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length %s",
						name, member, kinesis_bound_text(n, 1, maxlen))));
	for (int i = 0; i < n; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_STREAM_VALIDATION),
					 errmsg("ValidationException: 1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
							name, member)));
	}
}

void
kinesis_check_stream_name(const char *name)
{
	kinesis_check_name(name, "streamName", STREAM_NAME_MAX);
}

/* A required argument of a SQL function, reported as Kinesis' validation does. */
void
kinesis_require_arg(bool isnull, const char *member)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_NULL_MEMBER),
				 errmsg("ValidationException: 1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null",
						member)));
}

char *
kinesis_bound_text(int64 n, int64 min, int64 max)
{
	if (n < min)
		return psprintf("greater than or equal to %lld", (long long) min);
	return psprintf("less than or equal to %lld", (long long) max);
}

/*
 * Whether s matches the API pattern 0|([1-9]\d{0,maxdigits-1}): a decimal
 * number without leading zeros (explicit hash keys, sequence numbers).
 */
bool
kinesis_is_plain_decimal(const char *s, int maxdigits)
{
	size_t		len = strlen(s);

	if (len < 1 || len > (size_t) maxdigits || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * stream_internal._check_name(name text, member text, max_length int): the same
 * validation for names checked in SQL (streams, delivery streams).
 */
Datum
stream_check_name_sql(PG_FUNCTION_ARGS)
{
	char	   *member;
	ErrorContextCallback *saved = error_context_stack;

	/* called by the extension's plpgsql: its call chain is no use to the user */
	error_context_stack = NULL;
	/* which member and its limit are the caller's to say: never NULL */
	kinesis_require_arg(PG_ARGISNULL(1), "member");
	kinesis_require_arg(PG_ARGISNULL(2), "max_length");
	member = text_to_cstring(PG_GETARG_TEXT_PP(1));
	kinesis_require_arg(PG_ARGISNULL(0), member);
	kinesis_check_name(text_to_cstring(PG_GETARG_TEXT_PP(0)), member, PG_GETARG_INT32(2));
	error_context_stack = saved;
	PG_RETURN_VOID();
}

typedef struct KinesisLimit
{
	const char *name;
	int64		value;
} KinesisLimit;

#define KINESIS_LIMIT_ROW(name) {#name, (name)},
static const KinesisLimit kinesis_sql_limits[] = {
	KINESIS_SQL_LIMITS(KINESIS_LIMIT_ROW)
};

/*
 * stream_internal._limit(name text) RETURNS bigint: a limit of kinesis.h by
 * its C name, so that SQL checks and messages quote the one constant.
 */
Datum
stream_limit_sql(PG_FUNCTION_ARGS)
{
	const char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	for (size_t i = 0; i < lengthof(kinesis_sql_limits); i++)
		if (strcmp(kinesis_sql_limits[i].name, name) == 0)
			PG_RETURN_INT64(kinesis_sql_limits[i].value);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("no Kinesis limit is named \"%.*s\"", pg_mbcliplen(name, strlen(name), 128), name),
			 errhint("The limits are KINESIS_SQL_LIMITS in src/kinesis.h.")));
	PG_RETURN_NULL();
}
