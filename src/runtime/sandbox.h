/*
 * runtime/sandbox.h: run code that a background worker runs on a user's
 * behalf as that user, with nothing of it surviving the call, one
 * subtransaction per attempt (sandbox.c).
 */
#ifndef STREAM_SANDBOX_H
#define STREAM_SANDBOX_H

#include "postgres.h"
#include "datatype/timestamp.h"
#include "utils/resowner.h"

#include "subxact.h"

typedef struct Sandbox
{
	Oid			save_user;
	int			save_sec;
	int			guc_level;
	bool		timer;			/* armed STATEMENT_TIMEOUT */
	TimestampTz deadline;		/* when the owner's time is up (with timer) */
	SubTransactionId subid;		/* begun in this subtransaction */
	struct Sandbox *outer;
} Sandbox;

extern TimestampTz sandbox_deadline(void);
extern void sandbox_begin(Sandbox *sb, Oid owner, TimestampTz deadline);
extern void sandbox_end(Sandbox *sb);
extern void sandbox_abort(Sandbox *sb);
extern bool sandbox_active(void);
extern bool sandbox_timed_out(int sqlerrcode);

/*
 * What the time limit of owner code means to the caller of subxact_abort:
 * the failure of that one call (a transform, like a Lambda timeout), or of
 * the whole unit (code called once per record or row: failing each record
 * in turn would hold the worker once per record).
 */
typedef enum SandboxTimeLimit
{
	TIME_LIMIT_FAILS_CALL,
	TIME_LIMIT_FAILS_UNIT
} SandboxTimeLimit;

/*
 * One subtransaction per attempt (subxact.h: begin, commit, rollback);
 * subxact_abort (in PG_CATCH) rolls back with the sandbox's error policy:
 * cancels, shutdown, resource and system errors concern the whole unit and
 * are raised again; the time limit is reported as such ("owner code ran
 * longer than stream.owner_code_timeout") and, with TIME_LIMIT_FAILS_UNIT,
 * raised again for the unit; any other error is returned, copied into cxt.
 */
extern ErrorData *subxact_abort(MemoryContext cxt, ResourceOwner oldowner,
								SandboxTimeLimit time_limit);

#endif
