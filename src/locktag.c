/*
 * locktag.c: stream_internal._xact_lock(), the extension's own locks for its SQL.
 */
#include "stream.h"
#include "locktag.h"

#include "fmgr.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(stream_xact_lock);
PG_FUNCTION_INFO_V1(stream_xact_lock_within);
PG_FUNCTION_INFO_V1(stream_resharding);

static void
lock_tag(const char *kind, int32 id, LOCKTAG *tag)
{
	if (strcmp(kind, "processor_unit") == 0)
		SET_STREAM_LOCKTAG(*tag, STREAM_LOCK_PROCESSOR_UNIT, id, 0);
	else if (strcmp(kind, "consumers") == 0)
		SET_STREAM_LOCKTAG(*tag, STREAM_LOCK_CONSUMERS, id, 0);
	else if (strcmp(kind, "reshard") == 0)
		SET_STREAM_LOCKTAG(*tag, STREAM_LOCK_RESHARD, id, 0);
	else if (strcmp(kind, "shard_limit") == 0)
		SET_STREAM_LOCKTAG(*tag, STREAM_LOCK_SHARD_LIMIT, 0, 0);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown lock kind \"%s\"", kind),
				 errhint("The kinds are processor_unit, consumers, reshard and shard_limit.")));
}

/*
 * stream_internal._xact_lock(kind text, id int): take one of the extension's locks
 * until the end of the transaction.  EXECUTE is for the extension's own
 * SECURITY DEFINER functions only.
 */
Datum
stream_xact_lock(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;

	lock_tag(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT32(1), &tag);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}

/*
 * stream_internal._xact_lock_within(kind, id, timeout_ms) RETURNS bool: the
 * same, waiting at most timeout_ms (false then), so that one open
 * transaction cannot stall every caller behind it for good.
 */
Datum
stream_xact_lock_within(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PG_GETARG_INT32(2));

	lock_tag(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_INT32(1), &tag);
	while (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_BOOL(true);
}

/*
 * stream_internal._resharding(stream_id int) RETURNS bool: is another
 * transaction splitting, merging or scaling the stream now?  It then shows
 * as UPDATING.  Probes the reshard lock without waiting and keeps nothing.
 */
Datum
stream_resharding(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;

	SET_STREAM_LOCKTAG(tag, STREAM_LOCK_RESHARD, PG_GETARG_INT32(0), 0);
	if (LockAcquire(&tag, ShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		PG_RETURN_BOOL(true);
	LockRelease(&tag, ShareLock, false);
	PG_RETURN_BOOL(false);
}
