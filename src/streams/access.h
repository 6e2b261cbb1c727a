/*
 * access.h: per-stream privileges.  INSERT on a stream's table allows
 * puts, SELECT allows reads (stream.grant_stream_access grants them).
 * They are checked against the role that calls, on every call, so an
 * iterator handed to another role reads nothing that role may not see.
 */
#ifndef STREAM_ACCESS_H
#define STREAM_ACCESS_H

#include "stream.h"

#include "nodes/parsenodes.h"

/* Whether role may put (ACL_INSERT) or read (ACL_SELECT) the stream. */
extern bool access_allows(StreamInfo *info, Oid role, AclMode mode);
/* The same for the current user; AccessDeniedException when not. */
extern void access_check(StreamInfo *info, AclMode mode);

#endif							/* STREAM_ACCESS_H */
