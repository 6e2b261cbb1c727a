/*
 * runtime/kind.c: the registry of processor kinds, the one list of what
 * stream.processors.processor_kind may say.
 *
 * A client of the runtime (delivery today) registers its ProcessorKind once
 * per process, from _PG_init (module.c), before any SQL of the extension
 * runs: the CHECK constraint on stream.processors calls
 * stream_internal._processor_kind_known(), which loads the library and so
 * sees the registry filled.  A kind that is not registered cannot be stored,
 * so the worker never meets a processor that no client runs.
 *
 * Memory: the registry holds the clients' static ProcessorKind structs, never
 * copies; it lives for the process and is never changed after _PG_init.
 */
#include "stream.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "runtime/runtime.h"

#define MAX_PROCESSOR_KINDS 8

static const ProcessorKind *kinds[MAX_PROCESSOR_KINDS];
static int	nkinds = 0;

PG_FUNCTION_INFO_V1(stream_processor_kind_known);

void
runtime_register_kind(const ProcessorKind *kind)
{
	if (runtime_find_kind(kind->name) != NULL)
		elog(ERROR, "processor kind \"%s\" is registered twice", kind->name);
	if (nkinds >= MAX_PROCESSOR_KINDS)
		elog(ERROR, "more than %d processor kinds", MAX_PROCESSOR_KINDS);
	kinds[nkinds++] = kind;
}

const ProcessorKind *
runtime_find_kind(const char *name)
{
	for (int i = 0; i < nkinds; i++)
		if (strcmp(kinds[i]->name, name) == 0)
			return kinds[i];
	return NULL;
}

/*
 * stream_internal._processor_kind_known(kind text) RETURNS bool: whether a
 * client registered kind; the CHECK of stream.processors.processor_kind.
 * IMMUTABLE: the registry is fixed for a build of the library.
 */
Datum
stream_processor_kind_known(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(runtime_find_kind(text_to_cstring(PG_GETARG_TEXT_PP(0))) != NULL);
}
