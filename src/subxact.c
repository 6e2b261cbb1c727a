/*
 * subxact.c: the subtransaction protocol of one attempt (subxact.h).
 */
#include "postgres.h"

#include "subxact.h"

#include "access/xact.h"

ResourceOwner
subxact_begin(MemoryContext cxt)
{
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	return oldowner;
}

void
subxact_commit(MemoryContext cxt, ResourceOwner oldowner)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = oldowner;
}

void
subxact_release(MemoryContext cxt, ResourceOwner oldowner)
{
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = oldowner;
}

ErrorData *
subxact_rollback(MemoryContext cxt, ResourceOwner oldowner)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	subxact_release(cxt, oldowner);
	return ed;
}
