/*
 * runtime/round.c: the worker's rounds over processors.
 *
 * A round lists the processors of a kind and gives each at most one unit
 * of work, so one busy processor cannot starve the others (a unit that
 * leaves more to do makes the worker start the next round at once instead
 * of waiting for its naptime).
 *
 * Fairness between owners.  One worker serves every processor of its
 * database, so a round is shared by owners first, then by an owner's
 * processors: each owner with work gets at most UNITS_PER_OWNER units that
 * did something in a round (a call that finds nothing due, or a processor
 * skipped, costs nothing), its processors taken in turn from where its
 * previous round stopped; the owners are served in turn, the first one
 * moving on by one each round.  An owner with N busy processors thus gets
 * as many units per round as an owner with one: while an owner has work,
 * at most 2 * (owners - 1) * UNITS_PER_OWNER units of other owners run
 * between two of its units, whatever N.  When the budget cuts an owner
 * short, the round reports more to do, so the next round starts at once.
 *
 * Around every unit:
 *  - the processor's unit lock (src/locktag.h), only tried: a unit under
 *    way elsewhere, or a delete_delivery_stream waiting for it, skips the
 *    processor for this round, and no two units of one processor ever run
 *    at once;
 *  - its back-off: after a failed unit the processor waits 1 s, doubling to
 *    30 s (stream_internal._processor_failed), unless the client wants a
 *    unit now (a flush);
 *  - its errors: the unit's transaction is rolled back, the client hears of
 *    it (unit_failed), and the error is recorded on the progress row in a
 *    transaction of its own, whose own failure is only logged.
 * Units run in short transactions (runtime_step_begin/end), each with a
 * fresh snapshot: the worker holds none between them.
 */
#include "stream.h"
#include "locktag.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "runtime/runtime.h"

/* units that did something, per owner and round (see the head of the file) */
#define UNITS_PER_OWNER 1

/* One processor as a round lists it. */
typedef struct RoundEntry
{
	int32		id;
	Oid			owner;
	bool		backing_off;
	int			failed;
} RoundEntry;

/*
 * Where an owner's turn stopped: the processor that did the owner's last
 * unit of a round, per kind.  In TopMemoryContext for the worker's life;
 * owners no longer listed are dropped.
 */
typedef struct OwnerCursorKey
{
	const ProcessorKind *kind;
	Oid			owner;
} OwnerCursorKey;

typedef struct OwnerCursor
{
	OwnerCursorKey key;
	int32		last_id;
	bool		seen;			/* listed in the current round */
} OwnerCursor;

static HTAB *owner_cursors = NULL;
static uint32 round_number = 0;

/*
 * The unit lock of the unit under way (valid between runtime_try_unit_lock
 * and runtime_unit_unlock).  It is held at session level across the unit's
 * transactions, and also at transaction level in each of them: owner code
 * can drop the session-level hold (pg_advisory_unlock_all() releases every
 * session-level advisory lock) but no transaction-level one, so the lock is
 * never free while the unit runs, and runtime_step_end() takes the session
 * hold again before the transaction's hold goes.
 */
static bool unit_locked = false;
static LOCKTAG unit_tag;

void
runtime_step_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* held at session level already: granted at once, in this backend's lock table */
	if (unit_locked && LockAcquire(&unit_tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("the unit lock of processor %u was lost during the unit", unit_tag.locktag_field2),
				 errdetail("Another session holds it now; the unit is given up and redone later.")));
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
runtime_step_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	/* held by this transaction: a session hold again, granted at once (owner code may have dropped it) */
	if (unit_locked)
		(void) LockAcquire(&unit_tag, ExclusiveLock, true, true);
	CommitTransactionCommand();
}

bool
runtime_try_unit_lock(int32 processor_id)
{
	SET_STREAM_LOCKTAG(unit_tag, STREAM_LOCK_PROCESSOR_UNIT, processor_id, 0);
	unit_locked = LockAcquire(&unit_tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	return unit_locked;
}

/*
 * End a unit: its lock goes (every session-level hold of it), and so does
 * every session-level advisory lock that owner code took in it
 * (pg_advisory_lock), which would otherwise stay with the worker for good.
 * The worker holds no other session-level advisory locks between units.
 */
void
runtime_unit_unlock(void)
{
	unit_locked = false;
	LockReleaseSession(USER_LOCKMETHOD);
}

HTAB *
runtime_state_hash(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

void
runtime_forget_gone(HTAB *h, const int32 *ids, int n, void (*release) (void *entry))
{
	HASH_SEQ_STATUS status;
	void	   *e;

	if (h == NULL)
		return;
	hash_seq_init(&status, h);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		int32		id = *(int32 *) e;
		bool		seen = false;

		for (int i = 0; i < n && !seen; i++)
			seen = ids[i] == id;
		if (!seen)
		{
			if (release)
				release(e);
			hash_search(h, &id, HASH_REMOVE, NULL);
		}
	}
}

static int
cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/* The error of a failed unit on its progress row; a failure here is only logged. */
static void
record_failure(int32 processor_id, const char *message)
{
	PG_TRY();
	{
		Oid			types[2] = {INT4OID, TEXTOID};
		Datum		args[2];

		runtime_step_begin();
		args[0] = Int32GetDatum(processor_id);
		args[1] = CStringGetTextDatum(message);
		runtime_sql("SELECT stream_internal._processor_failed($1, $2)", 2, types, args, SPI_OK_SELECT);
		runtime_step_end();
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
}

/*
 * Settings every unit runs with: what a unit writes must not depend on the
 * server's settings (it is redone identically after a crash), and a
 * committed checkpoint must outlive a crash.
 */
static void
configure_session(void)
{
	static bool configured = false;

	if (configured)
		return;
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_SESSION);
	configured = true;
}

/*
 * List the processors of kind, by owner and id, and whether each backs off
 * now; false when the extension is gone.
 */
static bool
list_processors(const ProcessorKind *kind, void *arg, MemoryContext cxt,
				RoundEntry **entries, int *n, bool *extension_missing)
{
	Oid			nsp;
	Oid			argtype = TEXTOID;
	Datum		karg;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	nsp = get_namespace_oid("stream", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("processors", nsp)))
	{
		/* looked up while the transaction still allows catalog access */
		*extension_missing = !OidIsValid(nsp);
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	karg = CStringGetTextDatum(kind->name);
	if (SPI_execute_with_args("SELECT p.processor_id, p.owner::oid, "
							  "coalesce(g.next_attempt_at > clock_timestamp(), false), g.failed_attempts "
							  "FROM stream.processors p JOIN stream.processor_progress g USING (processor_id) "
							  "WHERE p.processor_kind = $1 ORDER BY 2, 1",
							  1, &argtype, &karg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read stream.processors");
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		int32	   *ids;

		*n = SPI_processed;
		*entries = palloc(sizeof(RoundEntry) * Max(*n, 1));
		ids = palloc(sizeof(int32) * Max(*n, 1));
		for (int i = 0; i < *n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			RoundEntry *e = &(*entries)[i];
			bool		isnull;

			e->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			e->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
			e->backing_off = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
			e->failed = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			ids[i] = e->id;
		}
		/* round_begin's list is in order of id */
		qsort(ids, *n, sizeof(int32), cmp_int32);
		MemoryContextSwitchTo(old);
		if (kind->round_begin)
			kind->round_begin(ids, *n, arg);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return true;
}

/*
 * At most one unit of one processor: skipped while it backs off (unless
 * the client wants it now) or while its unit lock is held elsewhere.
 * Returns whether the unit did something (RUN_DONE, RUN_MORE, or failed);
 * *more when it left more to do at once.
 */
static bool
run_processor(const ProcessorKind *kind, void *arg, MemoryContext round_cxt,
			  const RoundEntry *e, bool *more)
{
	ProcessorRun run;
	volatile bool worked = false;

	run.processor_id = e->id;
	run.now = kind->wants_now ? kind->wants_now(e->id, arg) : false;
	run.failed_attempts = e->failed;
	if (e->backing_off && !run.now)
		return false;
	if (!runtime_try_unit_lock(e->id))
		return false;
	run.cxt = AllocSetContextCreate(round_cxt, "processor unit", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(run.cxt);
	PG_TRY();
	{
		RunResult	r = kind->run_unit(&run, arg);

		worked = r != RUN_IDLE;
		if (r == RUN_MORE)
			*more = true;
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(round_cxt);
		ed = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		if (kind->unit_failed)
			kind->unit_failed(e->id, ed, arg);
		record_failure(e->id, ed->message ? ed->message : "unknown error");
		worked = true;
	}
	PG_END_TRY();
	runtime_unit_unlock();
	MemoryContextSwitchTo(round_cxt);
	MemoryContextDelete(run.cxt);
	pgstat_report_stat(false);
	return worked;
}

/* The cursor of (kind, owner), created at 0 (before every id). */
static OwnerCursor *
owner_cursor(const ProcessorKind *kind, Oid owner)
{
	OwnerCursorKey key;
	OwnerCursor *c;
	bool		found;

	if (owner_cursors == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(OwnerCursorKey);
		ctl.entrysize = sizeof(OwnerCursor);
		ctl.hcxt = TopMemoryContext;
		owner_cursors = hash_create("stream processor owner cursors", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.kind = kind;
	key.owner = owner;
	c = hash_search(owner_cursors, &key, HASH_ENTER, &found);
	if (!found)
		c->last_id = 0;
	c->seen = true;
	return c;
}

/* Drop the cursors of kind's owners that this round did not list. */
static void
forget_gone_owners(const ProcessorKind *kind)
{
	HASH_SEQ_STATUS status;
	OwnerCursor *c;

	if (owner_cursors == NULL)
		return;
	hash_seq_init(&status, owner_cursors);
	while ((c = hash_seq_search(&status)) != NULL)
	{
		if (c->key.kind != kind)
			continue;
		if (!c->seen)
			hash_search(owner_cursors, &c->key, HASH_REMOVE, NULL);
		else
			c->seen = false;
	}
}

bool
runtime_run_round(const ProcessorKind *kind, void *arg, bool *extension_missing)
{
	static MemoryContext round_cxt = NULL;
	RoundEntry *entries = NULL;
	int			n = 0;
	int			nowners = 0;
	int		   *owner_start;
	bool		more = false;

	*extension_missing = false;
	if (round_cxt == NULL)
		round_cxt = AllocSetContextCreate(TopMemoryContext, "stream processor round",
										  ALLOCSET_DEFAULT_SIZES);
	configure_session();
	MemoryContextReset(round_cxt);
	if (!list_processors(kind, arg, round_cxt, &entries, &n, extension_missing))
		return false;

	/* entries come by owner: where each owner's processors start */
	owner_start = palloc(sizeof(int) * (n + 1));
	for (int i = 0; i < n; i++)
		if (i == 0 || entries[i].owner != entries[i - 1].owner)
			owner_start[nowners++] = i;
	owner_start[nowners] = n;

	round_number++;
	for (int k = 0; k < nowners; k++)
	{
		/* owners in turn, the first moving on by one each round */
		int			o = (int) ((round_number + k) % (uint32) nowners);
		int			lo = owner_start[o];
		int			cnt = owner_start[o + 1] - lo;
		OwnerCursor *cursor = owner_cursor(kind, entries[lo].owner);
		int			first = 0;
		int			used = 0;

		/* the owner's processors in turn, from after the one its last turn ended with */
		while (first < cnt && entries[lo + first].id <= cursor->last_id)
			first++;
		for (int j = 0; j < cnt; j++)
		{
			const RoundEntry *e = &entries[lo + (first + j) % cnt];

			CHECK_FOR_INTERRUPTS();
			if (used >= UNITS_PER_OWNER)
			{
				/* the budget is spent: the rest of this owner waits for the next round, at once */
				more = true;
				break;
			}
			if (run_processor(kind, arg, round_cxt, e, &more))
			{
				used++;
				cursor->last_id = e->id;
			}
		}
	}
	forget_gone_owners(kind);
	pgstat_report_activity(STATE_IDLE, NULL);
	return more;
}
