/*
 * access.c: per-stream privilege checks (access.h).
 */
#include "streams/access.h"

#include "miscadmin.h"
#include "utils/acl.h"

bool
access_allows(StreamInfo *info, Oid role, AclMode mode)
{
	return pg_class_aclcheck(info->relid, role, mode) == ACLCHECK_OK;
}

void
access_check(StreamInfo *info, AclMode mode)
{
	if (!access_allows(info, GetUserId(), mode))
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_ACCESS_DENIED),
				 errmsg("AccessDeniedException: User %s is not authorized to %s stream %s",
						GetUserNameFromId(GetUserId(), false),
						mode == ACL_INSERT ? "put records to" : "read records from",
						info->name),
				 errhint("The stream's owner can run stream.grant_stream_access('%s', role, '%s').",
						 info->name, mode == ACL_INSERT ? "write" : "read")));
}
