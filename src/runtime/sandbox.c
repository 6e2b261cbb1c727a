/*
 * sandbox.c: code the background worker runs on a user's behalf.
 *
 * The worker is one superuser session serving every stream of its database.
 * It runs code that users own: a delivery stream's transform function, and
 * the triggers, defaults, domain checks, index expressions and type I/O of
 * its destination.  Between sandbox_begin() and sandbox_end():
 *  - the current user is the owner, in a security-restricted operation (no
 *    SET ROLE, no temporary objects, no cursors WITH HOLD);
 *  - settings live in a GUC nest level of their own that is rolled back at
 *    the end, committed or not, as index builds and VACUUM do around user
 *    code: set_config(..., false) cannot change the worker's search_path or
 *    default_transaction_read_only;
 *  - triggers deferred to commit fire before the end, as the owner, not at
 *    the worker's commit as the superuser;
 *  - the owner's code may run until a deadline, enforced with the statement
 *    timeout: callers take one sandbox_deadline() per phase of a batch and
 *    pass it to every sandbox of that phase, so that retries, a call per
 *    record or row, or many chunks share one stream.owner_code_timeout
 *    rather than each getting its own.  Code that catches the cancel
 *    (plpgsql's EXCEPTION WHEN query_canceled) is cancelled again as soon
 *    as the catch has rolled back its subtransaction, and a call that
 *    returns after the deadline fails all the same;
 *  - the control plane refuses to run (caller.c).
 *
 * Rules for callers: begin inside a subtransaction of their own; on success
 * call sandbox_end(), on error sandbox_abort() first thing in PG_CATCH, then
 * roll the subtransaction back.  The time limit raises ERRCODE_QUERY_CANCELED;
 * sandbox_timed_out() tells it from a cancel request.
 *
 * Every attempt follows the subtransaction protocol of subxact.h
 * (subxact_begin, then subxact_commit, or in PG_CATCH subxact_rollback: the
 * caller decides); subxact_abort here adds the record-vs-batch policy of
 * catch_record_error.
 */
#include "runtime/sandbox.h"
#include "settings.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/guc.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

static Sandbox *active = NULL;
static TimestampTz last_deadline = 0;

bool
sandbox_active(void)
{
	return active != NULL;
}

/* Is this error the time limit of the call that just failed? */
bool
sandbox_timed_out(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED && last_deadline != 0 &&
		GetCurrentTimestamp() >= last_deadline;
}

/* The deadline of a phase of owner code that starts now; 0: no limit. */
TimestampTz
sandbox_deadline(void)
{
	if (stream_owner_code_timeout_ms <= 0)
		return 0;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), stream_owner_code_timeout_ms);
}

static void
arm_timer(Sandbox *sb, TimestampTz deadline)
{
	sb->timer = false;
	sb->deadline = deadline;
	last_deadline = 0;
	if (deadline == 0 || sb->outer != NULL)
		return;
	last_deadline = deadline;
	/* a deadline already past fires at once */
	enable_timeout_at(STATEMENT_TIMEOUT, deadline);
	sb->timer = true;
}

static bool
out_of_time(Sandbox *sb)
{
	return sb->timer && GetCurrentTimestamp() >= sb->deadline;
}

/*
 * An error that skips sandbox_abort() still ends the sandbox: rolling back
 * the subtransaction it began in (or the transaction) forgets it.
 */
static void
forget_aborted(SubTransactionId subid)
{
	while (active != NULL && (subid == InvalidSubTransactionId || active->subid >= subid))
	{
		if (active->timer)
			disable_timeout(STATEMENT_TIMEOUT, false);
		active = active->outer;
	}
}

static void
on_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		forget_aborted(InvalidSubTransactionId);
}

static void
on_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	forget_aborted(mySubid);

	/*
	 * The time limit's cancel is raised once; owner code that caught it (a
	 * subtransaction inside the sandbox rolled back) gets it again at its
	 * next CHECK_FOR_INTERRUPTS, until it gives up.
	 */
	if (active != NULL && out_of_time(active))
	{
		InterruptPending = true;
		QueryCancelPending = true;
	}
}

void
sandbox_begin(Sandbox *sb, Oid owner, TimestampTz deadline)
{
	static bool callbacks = false;

	if (!callbacks)
	{
		RegisterXactCallback(on_xact, NULL);
		RegisterSubXactCallback(on_subxact, NULL);
		callbacks = true;
	}
	GetUserIdAndSecContext(&sb->save_user, &sb->save_sec);
	sb->subid = GetCurrentSubTransactionId();
	sb->outer = active;
	sb->timer = false;
	sb->guc_level = NewGUCNestLevel();
	SetUserIdAndSecContext(owner, sb->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	active = sb;
	arm_timer(sb, deadline);
}

void
sandbox_end(Sandbox *sb)
{
	ConstraintsSetStmt *all_now = makeNode(ConstraintsSetStmt);

	/* SET CONSTRAINTS ALL IMMEDIATE: fires what was deferred, still as the owner */
	all_now->constraints = NIL;
	all_now->deferred = false;
	AfterTriggerSetState(all_now);

	if (sb->timer)
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		/* code that caught the cancel and returned after its deadline failed all the same */
		if (out_of_time(sb))
		{
			QueryCancelPending = false; /* that was ours */
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling statement due to statement timeout")));
		}
	}
	AtEOXact_GUC(false, sb->guc_level);
	SetUserIdAndSecContext(sb->save_user, sb->save_sec);
	active = sb->outer;
}

void
sandbox_abort(Sandbox *sb)
{
	if (active != sb)
		return;					/* never began, or its subtransaction is gone */
	if (sb->timer)
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (out_of_time(sb))
			QueryCancelPending = false; /* a cancel raised again after a catch: ours */
	}
	/* the subtransaction's rollback undoes the settings from guc_level up */
	SetUserIdAndSecContext(sb->save_user, sb->save_sec);
	active = sb->outer;
}

/* Rethrow errors that must not be turned into record failures. */
static ErrorData *
catch_record_error(MemoryContext cxt)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	/*
	 * Cancels, shutdown, and system or resource errors (I/O, disk full, out
	 * of memory: classes 53 and 58) concern the batch, not the record; they
	 * may also leave a file writer half way through a row.  The batch fails
	 * and is retried whole.
	 */
	if (sandbox_timed_out(ed->sqlerrcode))
	{
		/* owner code ran out of time: that call failed, like a Lambda timeout */
		ed->message = psprintf("owner code ran longer than stream.owner_code_timeout (%d ms)",
							   stream_owner_code_timeout_ms);
		FlushErrorState();
		return ed;
	}
	if (ed->sqlerrcode == ERRCODE_QUERY_CANCELED || ed->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		ERRCODE_TO_CATEGORY(ed->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
		ERRCODE_TO_CATEGORY(ed->sqlerrcode) == ERRCODE_SYSTEM_ERROR)
		PG_RE_THROW();
	FlushErrorState();
	return ed;
}

/* In PG_CATCH: copy the error (or rethrow it, see catch_record_error), then roll back. */
ErrorData *
subxact_abort(MemoryContext cxt, ResourceOwner oldowner, SandboxTimeLimit time_limit)
{
	ErrorData  *ed = catch_record_error(cxt);
	bool		timed_out = sandbox_timed_out(ed->sqlerrcode);

	subxact_release(cxt, oldowner);
	if (timed_out && time_limit == TIME_LIMIT_FAILS_UNIT)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("%s", ed->message),
				 errdetail("The time limit concerns the whole unit, not the record; the unit is retried with back-off.")));
	return ed;
}
