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
 * One subtransaction per attempt: begin in cxt; on the way out, committed
 * or rolled back, back in cxt and the caller's resource owner.
 * subxact_rollback (in PG_CATCH) returns any error, copied into cxt;
 * subxact_abort first applies the record-vs-batch policy of
 * catch_record_error: errors that concern the whole unit are raised again.
 */
extern ResourceOwner subxact_begin(MemoryContext cxt);
extern void subxact_commit(MemoryContext cxt, ResourceOwner oldowner);
extern ErrorData *subxact_rollback(MemoryContext cxt, ResourceOwner oldowner);
extern ErrorData *subxact_abort(MemoryContext cxt, ResourceOwner oldowner);
extern ErrorData *catch_record_error(MemoryContext cxt);

/* a pinned search path for the extension's own SQL in a user's session */
extern int	safe_search_path_begin(void);
extern void safe_search_path_end(int level);

#endif
