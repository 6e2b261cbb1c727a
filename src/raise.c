/*
 * raise.c: the errors of the SQL-language parts of the extension.
 */
#include "kinesis.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(stream_raise);

/* Whether state is five SQLSTATE characters of an error (not success, warning or no data). */
static bool
is_error_sqlstate(const char *state)
{
	return strlen(state) == 5 && strspn(state, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5 &&
		strncmp(state, "00", 2) != 0 && strncmp(state, "01", 2) != 0 && strncmp(state, "02", 2) != 0;
}

/*
 * stream_internal._raise(exception, message, sqlstate DEFAULT '22023', hint DEFAULT NULL)
 * Raises "<exception>: <message>" for the SQL functions.  Without a usable
 * SQLSTATE the exception's own from the table in kinesis.h applies
 * (22023 for a name not in it).  The error context stack is cleared first:
 * the caller chain is the extension's own plpgsql (_stream() called from
 * describe_stream() called from ...), noise to the user, who gets the
 * Kinesis-style message, SQLSTATE and hint alone.
 */
Datum
stream_raise(PG_FUNCTION_ARGS)
{
	const char *exception = PG_ARGISNULL(0) ? "InternalFailure" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *message = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *state = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	const char *hint = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	int			code;

	if (state != NULL && is_error_sqlstate(state))
		code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
	else if ((code = kinesis_exception_sqlstate(exception)) < 0)
		code = ERRCODE_INVALID_PARAMETER_VALUE;

	error_context_stack = NULL;
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s: %s", exception, message),
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_VOID();
}
