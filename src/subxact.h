/*
 * subxact.h: one internal subtransaction per attempt, with the steps every
 * caller takes in the same order (a JSON conversion in a user's session, a
 * transform call, a record's conversion, a table insert), so they cannot
 * drift apart.  A leaf: it depends on nothing of the extension.  The
 * sandbox's record-vs-batch error policy on top of it is subxact_abort
 * (runtime/sandbox.h).
 *
 * Rules: subxact_begin returns the caller's resource owner and switches to
 * cxt; then either subxact_commit, or in PG_CATCH subxact_rollback, which
 * copies the error into cxt and returns it (the caller decides whether to
 * raise it again).  Either way the caller is back in cxt with its own
 * resource owner.
 *
 * Include postgres.h before this file.
 */
#ifndef STREAM_SUBXACT_H
#define STREAM_SUBXACT_H

#include "utils/elog.h"
#include "utils/palloc.h"
#include "utils/resowner.h"

extern ResourceOwner subxact_begin(MemoryContext cxt);
extern void subxact_commit(MemoryContext cxt, ResourceOwner oldowner);
/* In PG_CATCH: copy whatever was raised into cxt, then roll back. */
extern ErrorData *subxact_rollback(MemoryContext cxt, ResourceOwner oldowner);
/* Roll back (the error already copied or flushed), back in cxt and the old owner. */
extern void subxact_release(MemoryContext cxt, ResourceOwner oldowner);

#endif							/* STREAM_SUBXACT_H */
