/*
 * caller.c: the role that called the stream API.
 *
 * A SECURITY DEFINER function cannot tell who called it: inside, the current
 * user is its owner, and the session's outer user may be anyone (in the
 * background worker, the bootstrap superuser).  The control-plane functions
 * of schema stream therefore are this one C entry point, which runs as the
 * caller: it notes GetUserId(), then calls the function of the same name and
 * argument types in schema stream_internal, a SECURITY DEFINER function that
 * PUBLIC may not execute (fmgr checks no EXECUTE privilege; the executor
 * checked the public function's).  Inside, stream_internal._caller() is the
 * noted role.  Calls nest; each restores the outer caller, also on error.
 * A set-returning target (a plpgsql function) fills the caller's
 * ReturnSetInfo while the caller is noted.
 *
 * Code that the background worker runs as a user (runtime/sandbox.c) may not call
 * the control plane at all.
 *
 * The public functions are not written by hand: stream_internal._api_entry()
 * (src/sql/00_core.sql) declares stream.<name> from stream_internal.<name>
 * at install time, so the two cannot drift apart.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "runtime/sandbox.h"

PG_FUNCTION_INFO_V1(stream_api_call);
PG_FUNCTION_INFO_V1(stream_caller);

static Oid	current_caller = InvalidOid;

/* the stream_internal function this API function stands for, looked up once per call site */
static FmgrInfo *
api_target(FunctionCallInfo fcinfo)
{
	FmgrInfo   *target = fcinfo->flinfo->fn_extra;
	HeapTuple	tup;
	Form_pg_proc api;
	Oid			target_oid;
	char	   *name;

	if (target != NULL)
		return target;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	api = (Form_pg_proc) GETSTRUCT(tup);
	name = pstrdup(NameStr(api->proname));
	target_oid = LookupFuncName(list_make2(makeString("stream_internal"), makeString(name)),
								api->pronargs, api->proargtypes.values, true);
	if (!OidIsValid(target_oid) || get_func_retset(target_oid) != api->proretset ||
		get_func_rettype(target_oid) != api->prorettype)
		elog(ERROR, "stream.%s has no matching stream_internal.%s", name, name);
	ReleaseSysCache(tup);

	target = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
	fmgr_info_cxt(target_oid, target, fcinfo->flinfo->fn_mcxt);
	fcinfo->flinfo->fn_extra = target;
	return target;
}

/* Every control-plane function of schema stream: see the file header. */
Datum
stream_api_call(PG_FUNCTION_ARGS)
{
	FmgrInfo   *target = api_target(fcinfo);
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Oid			outer = current_caller;
	Datum		result;
	bool		retset;
	Oid			target_oid;

	if (sandbox_active())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("AccessDeniedException: %s cannot be called from code that the stream worker runs for a user",
						get_func_name(fcinfo->flinfo->fn_oid)),
				 errdetail("Transform functions, triggers and checks run by a delivery stream may not change streams, delivery streams or grants."),
				 errhint("Call it from a session of your own.")));

	/* a set-returning target fills the caller's ReturnSetInfo (materialize mode) */
	InitFunctionCallInfoData(*inner, target, fcinfo->nargs, fcinfo->fncollation, NULL, fcinfo->resultinfo);
	for (int i = 0; i < fcinfo->nargs; i++)
	{
		inner->args[i] = fcinfo->args[i];
		if (fcinfo->args[i].isnull && target->fn_strict)
		{
			/* a strict set-returning target returns no rows */
			if (target->fn_retset && fcinfo->resultinfo != NULL && IsA(fcinfo->resultinfo, ReturnSetInfo))
				((ReturnSetInfo *) fcinfo->resultinfo)->isDone = ExprEndResult;
			PG_RETURN_NULL();
		}
	}

	retset = target->fn_retset;
	target_oid = target->fn_oid;
	current_caller = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		current_caller = outer;
	}
	PG_END_TRY();

	/*
	 * Value-per-call would call the target again after the caller was
	 * restored: the targets are plpgsql, which materializes.
	 */
	if (retset &&
		(fcinfo->resultinfo == NULL || !IsA(fcinfo->resultinfo, ReturnSetInfo) ||
		 ((ReturnSetInfo *) fcinfo->resultinfo)->returnMode != SFRM_Materialize))
		elog(ERROR, "%s must return its set in materialize mode", get_func_name(target_oid));
	fcinfo->isnull = inner->isnull;
	return result;
}

/* stream_internal._caller() RETURNS oid: the role that called the API function under way */
Datum
stream_caller(PG_FUNCTION_ARGS)
{
	if (!OidIsValid(current_caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("stream_internal functions run only inside the stream API")));
	PG_RETURN_OID(current_caller);
}
