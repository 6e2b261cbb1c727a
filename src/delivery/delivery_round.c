/*
 * delivery/delivery_round.c: delivery streams as processors of the
 * consumer runtime, and their flush tickets.
 *
 * The worker's delivery round is a runtime round over the processors of
 * kind "delivery" (runtime/round.c: at most one unit each, shared by
 * owner, unit lock, back-off, error row).  What is delivery's own: the flush requests of
 * flush_delivery_stream.  A request names delivery streams (or all) and
 * carries a ticket; a flushed delivery stream runs a unit whenever its
 * owner's turn in a round reaches it, back-off or not, until its buffer is
 * empty or a unit fails (a flush does not wait for a broken destination);
 * the round reports the highest ticket all of whose flushes are over.
 */
#include "stream.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "runtime/runtime.h"
#include "delivery/delivery.h"
#include "delivery/delivery_int.h"

/*
 * per delivery stream being flushed: the oldest ticket its flushes may
 * have; every ticket below it may be done as far as it is concerned
 */
typedef struct FlushEntry
{
	int32		id;				/* hash key */
	uint32		ticket;
} FlushEntry;

static HTAB *flushes = NULL;
static uint32 latest_ticket = 0;

/* this round's flush requests, for round_begin */
typedef struct RoundArgs
{
	const int32 *flush_ids;
	int			nflush;
	bool		flush_all;
	uint32		first_ticket;	/* the oldest ticket this round's requests may have */
} RoundArgs;

static FlushEntry *
flush_entry(int32 id, bool create, bool *found)
{
	if (flushes == NULL)
		flushes = runtime_state_hash("stream delivery flushes", sizeof(FlushEntry), TopMemoryContext);
	return hash_search(flushes, &id, create ? HASH_ENTER : HASH_FIND, found);
}

static void
flush_done(int32 id)
{
	if (flushes != NULL)
		hash_search(flushes, &id, HASH_REMOVE, NULL);
}

/* note this round's flush requests; forget delivery streams that are gone */
static void
delivery_round_begin(const int32 *ids, int n, void *arg)
{
	RoundArgs  *ra = arg;

	if (ra->nflush > 0 || ra->flush_all)
	{
		for (int i = 0; i < n; i++)
		{
			bool		want = ra->flush_all;

			for (int k = 0; k < ra->nflush && !want; k++)
				if (ra->flush_ids[k] == ids[i])
					want = true;
			if (want)
			{
				bool		found;
				FlushEntry *fe = flush_entry(ids[i], true, &found);

				/*
				 * This round's requests hold the tickets after the previous
				 * round's: any of them may be this delivery stream's, and
				 * none is done until it is drained, which may take rounds
				 * (runtime/round.c shares a round by owner).  A flush still
				 * waiting keeps its older ticket.
				 */
				if (!found)
					fe->ticket = ra->first_ticket;
			}
		}
	}
	runtime_forget_gone(flushes, ids, n, NULL);
	buffer_keep_only(ids, n);
}

static bool
delivery_wants_now(int32 id, void *arg)
{
	bool		found;

	return flushes != NULL && flush_entry(id, false, &found) != NULL;
}

static RunResult
delivery_run_unit(const ProcessorRun *run, void *arg)
{
	bool		drained = false;
	RunResult	r = deliver_unit(run->processor_id, run->now, run->cxt, &drained);

	if (run->now && drained)
		flush_done(run->processor_id);
	return r;
}

static void
delivery_unit_failed(int32 id, ErrorData *ed, void *arg)
{
	char	   *volatile name = NULL;

	/* the name for the message, read again: the unit's transaction is gone */
	PG_TRY();
	{
		MemoryContext cxt = CurrentMemoryContext;

		runtime_step_begin();
		{
			DeliveryConfig *cfg = load_config(id, cxt);

			if (cfg != NULL)
				name = cfg->name;
		}
		runtime_step_end();
	}
	PG_CATCH();
	{
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	ereport(WARNING,
			(errmsg("delivery of Firehose %s failed: %s", name ? name : psprintf("%d", id), ed->message),
			 errdetail("The delivery is retried with back-off; nothing is lost.")));
	buffer_forget(id);
	flush_done(id);				/* a flush does not wait for a broken destination */
}

static const ProcessorKind delivery_kind = {
	.name = "delivery",
	.round_begin = delivery_round_begin,
	.wants_now = delivery_wants_now,
	.run_unit = delivery_run_unit,
	.unit_failed = delivery_unit_failed,
};

void
delivery_init(void)
{
	runtime_register_kind(&delivery_kind);
}

bool
delivery_run_round(const int32 *flush_ids, int nflush, bool flush_all, uint32 ticket,
				   uint32 *done_ticket, bool *extension_missing)
{
	RoundArgs	ra = {flush_ids, nflush, flush_all, latest_ticket + 1};
	bool		more;
	uint32		done;

	if (nflush > 0 || flush_all)
		latest_ticket = ticket;
	more = runtime_run_round(&delivery_kind, &ra, extension_missing);
	done = latest_ticket;

	if (*extension_missing)
	{
		*done_ticket = ticket;
		return false;
	}
	/* which flush tickets are done */
	if (flushes != NULL)
	{
		HASH_SEQ_STATUS status;
		FlushEntry *e;

		hash_seq_init(&status, flushes);
		while ((e = hash_seq_search(&status)) != NULL)
			if (e->ticket - 1 < done)
				done = e->ticket - 1;
	}
	*done_ticket = done;
	return more;
}
