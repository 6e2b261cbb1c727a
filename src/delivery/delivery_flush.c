/*
 * delivery/delivery_flush.c: flush_delivery_stream.
 *
 * A flush notes the stable sequence of every shard, posts a request to the
 * database's worker (which then runs the delivery stream's units at once,
 * back-off or not, until its buffer is empty) and waits until the request
 * is done; it returns true when every record below the noted sequences has
 * been delivered.  The owner and the delivery stream's producers may flush.
 */
#include "stream.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "streams/access.h"
#include "streams/stream_catalog.h"

#include "runtime/runtime.h"
#include "bgw/worker.h"
#include "delivery/delivery_int.h"

PG_FUNCTION_INFO_V1(stream_flush_delivery_stream);

static void
count_none(void *arg, const StreamRecord *rec)
{
}

/*
 * stream.flush_delivery_stream(delivery_stream_name, timeout_seconds) RETURNS bool
 * Asks the worker to deliver what is buffered now and waits for it; true
 * when every record buffered at the call has been delivered.
 */
Datum
stream_flush_delivery_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	int			timeout_s = PG_ARGISNULL(1) ? 60 : PG_GETARG_INT32(1);
	DeliveryNameEntry *e;
	StreamInfo *info;
	DeliveryNameEntry entry;
	int			n;
	int64	   *targets;
	uint32		ticket;
	TimestampTz deadline;
	bool		gone = false;
	bool		ok = true;
	Oid			owner = InvalidOid;

	kinesis_require_arg(PG_ARGISNULL(0), "deliveryStreamName");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* a copy: an invalidation during the SPI calls below frees the cache */
	entry = *delivery_lookup_name(name);
	e = &entry;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(e->delivery_stream_id);
		bool		isnull;

		if (catalog_spi("SELECT owner FROM stream.processors WHERE processor_id = $1",
						1, &argtype, &arg, true, 1) == SPI_OK_SELECT && SPI_processed == 1)
			owner = DatumGetObjectId(spi_datum(0, 1, &isnull));
	}
	SPI_finish();
	info = stream_lookup_by_id(e->stream_id, false);
	if (!has_privs_of_role(GetUserId(), owner) &&
		!access_allows(info, GetUserId(), ACL_INSERT))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: User %s is not authorized to flush Firehose %s",
						GetUserNameFromId(GetUserId(), false), name)));

	n = info->nshards;
	targets = palloc(sizeof(int64) * Max(n, 1));
	{
		/* what is readable now: the ends of the windows from each shard's start */
		ConsumerWindow now;

		runtime_window(info, NULL, &now);
		for (int i = 0; i < n; i++)
		{
			targets[i] = now.shards[i].to;
		}
	}

	if (!stream_worker_post_request(e->delivery_stream_id, &ticket))
	{
		ereport(WARNING,
				(errmsg("no stream worker runs for this database: nothing was flushed"),
				 errhint("Add stream to shared_preload_libraries.")));
		PG_RETURN_BOOL(false);
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) timeout_s * 1000);
	while (!stream_worker_request_done(ticket, &gone))
	{
		CHECK_FOR_INTERRUPTS();
		if (gone || GetCurrentTimestamp() >= deadline)
		{
			ok = false;
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (!ok)
		PG_RETURN_BOOL(false);

	/*
	 * delivered up to the targets?  (a fresh snapshot in READ COMMITTED)
	 * The checkpoints are the extension's bookkeeping, readable by its owner
	 * only (the caller was checked above), so any owner or producer may flush.
	 */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		ProcessorCheckpoints cps;
		ConsumerWindow w;

		catalog_load_checkpoints(e->delivery_stream_id, &cps, CurrentMemoryContext);
		runtime_window(info, &cps, &w);
		for (int i = 0; i < n && ok; i++)
		{
			ShardWindow *sw = &w.shards[i];
			int64		next;

			if (sw->next >= targets[i])
				continue;
			/* numbers below the target that hold no record do not count */
			if (runtime_scan(&w, sw->shard, sw->from, targets[i], 1, (Size) 1 << 40,
							 count_none, NULL, &next) > 0)
				ok = false;
		}
	}
	SPI_finish();
	PG_RETURN_BOOL(ok);
}
