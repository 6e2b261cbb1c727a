/*
 * raise.c: the errors of the SQL-language parts of the extension.  They
 * name a Kinesis exception and nothing else: its SQLSTATE comes from the
 * one table in kinesis.h, as for the C functions.
 */
#include "kinesis.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(stream_raise);
PG_FUNCTION_INFO_V1(stream_raise_null_sql);

/*
 * stream_internal._raise(exception, message, hint DEFAULT NULL, detail DEFAULT NULL)
 * Raises "<exception>: <message>" for the SQL functions, with the
 * exception's SQLSTATE from the one table (KINESIS_EXCEPTIONS in kinesis.h);
 * a name not in it is the extension's own bug.  A missing member is
 * stream_internal._raise_null below.  The error context stack is cleared
 * first: the caller chain is the extension's own plpgsql (_stream() called from
 * describe_stream() called from ...), noise to the user, who gets the
 * Kinesis-style message, SQLSTATE and hint alone.
 */
Datum
stream_raise(PG_FUNCTION_ARGS)
{
	const char *exception = PG_ARGISNULL(0) ? "(null)" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *message = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *hint = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	const char *detail = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	int			code = kinesis_exception_sqlstate(exception);

	/* a name not in the table is a bug of the caller (PUBLIC may call this too) */
	if (code < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_internal._raise: \"%.*s\" is not a Kinesis exception",
						pg_mbcliplen(exception, strlen(exception), 128), exception),
				 errhint("The exceptions are KINESIS_EXCEPTIONS in src/kinesis.h.")));

	error_context_stack = NULL;
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s: %s", exception, message),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_VOID();
}

/*
 * stream_internal._raise_null(member text): ValidationException "must not be
 * null" (22004) for a member the SQL parts found NULL, in the same words as
 * the C functions' kinesis_require_arg.
 */
Datum
stream_raise_null_sql(PG_FUNCTION_ARGS)
{
	/* called by the extension's plpgsql: its call chain is no use to the user */
	error_context_stack = NULL;
	kinesis_require_arg(PG_ARGISNULL(0), "member");
	kinesis_require_arg(true, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
