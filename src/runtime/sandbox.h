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
 * One subtransaction per attempt (subxact.h: begin, commit, rollback);
 * subxact_abort (in PG_CATCH) first applies the record-vs-batch policy of
 * catch_record_error: errors that concern the whole unit are raised again.
 */
extern ErrorData *subxact_abort(MemoryContext cxt, ResourceOwner oldowner);
extern ErrorData *catch_record_error(MemoryContext cxt);

#endif
