/*
 * locktag.c: stream_internal._xact_lock(), the extension's own locks for its SQL.
 */
#include "stream.h"
#include "locktag.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(stream_xact_lock);

/*
 * stream_internal._xact_lock(kind text, id int): take one of the extension's locks
 * until the end of the transaction.  EXECUTE is for the extension's own
 * SECURITY DEFINER functions only.
 */
Datum
stream_xact_lock(PG_FUNCTION_ARGS)
{
	const char *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		id = PG_GETARG_INT32(1);
	LOCKTAG		tag;

	if (strcmp(kind, "processor_unit") == 0)
		SET_STREAM_LOCKTAG(tag, STREAM_LOCK_PROCESSOR_UNIT, id, 0);
	else if (strcmp(kind, "consumers") == 0)
		SET_STREAM_LOCKTAG(tag, STREAM_LOCK_CONSUMERS, id, 0);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown lock kind \"%s\"", kind),
				 errhint("The kinds are processor_unit and consumers.")));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}
