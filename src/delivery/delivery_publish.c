/*
 * delivery/delivery_publish.c: the server-directory destination, step 3
 * of a file batch and the checks at creation.
 *
 * Publishing renames a committed file list's temporary files from the
 * batch's staging directory into place, each target directory opened by
 * descriptor (never through a symbolic link, destdir.c) and fsynced once
 * its files are in; a file already under its final name is left alone, so
 * publishing again after a crash finishes what was begun.  Clean-up
 * removes only the worker's own temporary files of a staging directory.
 */
#include "stream.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "delivery/delivery_int.h"

PG_FUNCTION_INFO_V1(stream_delivery_check_destination);

/*
 * stream_internal._delivery_check_destination(destination text): at creation, the
 * server must be able to create the destination and write in it (as the
 * worker will), or the delivery stream is refused with the reason.
 */
Datum
stream_delivery_check_destination(PG_FUNCTION_ARGS)
{
	char	   *dest = text_to_cstring(PG_GETARG_TEXT_PP(0));
	volatile int probe_errno = 0;
	ErrorContextCallback *saved = error_context_stack;

	/* called by create_delivery_stream: its plpgsql call chain is no use to the user */
	error_context_stack = NULL;

	if (dest[0] != '/' || dest[1] == '\0' || strstr(dest, "/./") != NULL || strstr(dest, "/../") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: destination \"%s\" must be an absolute directory path without . or .. components",
						dest)));
	/* room below it for a staging path or prefix, object name and the longest prefix */
	if (strlen(dest) + 1 + DELIVERY_PREFIX_MAX + DELIVERY_OBJECT_NAME_MAX + 64 >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: destination \"%s\" is too long: at most %d bytes",
						dest, (int) (MAXPGPATH - 1 - DELIVERY_PREFIX_MAX - DELIVERY_OBJECT_NAME_MAX - 64 - 1))));
	PG_TRY();
	{
		/* as the worker will: by descriptor, refusing links and a foreign staging directory */
		DestDir    *root = destdir_open_root(dest, CurrentMemoryContext);
		DestDir    *sroot = destdir_staging_root(root, true);

		probe_errno = destdir_probe_write(sroot);
		destdir_close(sroot);
		destdir_close(root);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(ErrorContext);
		ed = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: the server cannot write destination \"%s\"", dest),
				 errdetail("%s", ed->message),
				 errhint("The directory must be writable by the operating system user the database server runs as.")));
	}
	PG_END_TRY();
	if (probe_errno != 0)
	{
		errno = probe_errno;
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_INVALID_ARG),
				 errmsg("InvalidArgumentException: the server cannot write destination \"%s\": could not create a file in \"%s/" DELIVERY_STAGING_NAME "\": %m",
						dest, dest),
				 errhint("The directory must be writable by the operating system user the database server runs as.")));
	}
	error_context_stack = saved;
	PG_RETURN_VOID();
}

/* the directory part of a relative path ("" for none) */
static char *
rel_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? pnstrdup(path, slash - path) : pstrdup("");
}

static const char *
rel_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/*
 * Step 3: rename the temporary files of a committed file list from the
 * batch's staging directory into place.  Every directory on the way is
 * opened by descriptor (a symbolic link is refused with an error, the
 * batch waits), each target directory is fsynced once its files are in.
 * Returns false when a file has neither its temporary nor its final name
 * (someone removed it): the batch is then written again.
 */
bool
publish_files(DeliveryConfig *cfg, const char *files_json, const char *staging, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(files_json)));
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	List	   *paths = NIL,
			   *tmps = NIL;
	char	   *path = NULL,
			   *tmp = NULL,
			   *key = NULL;
	int			expected = JB_ROOT_IS_ARRAY(jb) ? JB_ROOT_COUNT(jb) : -1;
	int			n;
	bool	   *done;
	char	  **dirs;
	DestDir    *root,
			   *sroot,
			   *sdir = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT)
			path = tmp = NULL;
		else if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type == jbvString)
		{
			if (strcmp(key, "path") == 0)
				path = pnstrdup(v.val.string.val, v.val.string.len);
			else if (strcmp(key, "tmp") == 0)
				tmp = pnstrdup(v.val.string.val, v.val.string.len);
		}
		else if (tok == WJB_END_OBJECT && path && tmp)
		{
			if (!destdir_is_tmp_name(rel_basename(tmp)) || path[0] == '\0' || path[strlen(path) - 1] == '/')
				elog(ERROR, "file list of a pending batch is malformed: \"%s\" from \"%s\"", path, tmp);
			paths = lappend(paths, path);
			tmps = lappend(tmps, tmp);
		}
	}
	n = list_length(paths);
	if (n != expected)
		elog(ERROR, "file list of a pending batch is malformed: %d of %d files found", n, expected);

	root = destdir_open_root(cfg->destination, cxt);
	sroot = destdir_staging_root(root, false);
	if (sroot != NULL && staging != NULL)
		sdir = destdir_open_staging(sroot, staging);
	done = palloc0(sizeof(bool) * Max(n, 1));
	dirs = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		dirs[i] = rel_dirname(list_nth(paths, i));
	for (int i = 0; i < n; i++)
	{
		DestDir    *dir;

		if (done[i])
			continue;
		dir = dirs[i][0] ? destdir_open_path(root, dirs[i], true) : root;
		/* every file of this directory, then its fsync */
		for (int j = i; j < n; j++)
		{
			const char *final = list_nth(paths, j);
			const char *tmpname = rel_basename(list_nth(tmps, j));

			CHECK_FOR_INTERRUPTS();
			if (done[j] || strcmp(dirs[j], dirs[i]) != 0)
				continue;
			if (sdir != NULL && destdir_has_file(sdir, tmpname))
				destdir_rename(sdir, tmpname, dir, rel_basename(final));
			else if (!destdir_has_file(dir, rel_basename(final)))
			{
				MemoryContextSwitchTo(old);
				return false;
			}
			done[j] = true;
		}
		destdir_fsync(dir);
		if (dir != root)
			destdir_close(dir);
	}
	destdir_close(sdir);
	destdir_close(sroot);
	destdir_close(root);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Remove a batch's staging directory, if there is one: only the temporary
 * files the worker made in it (see destdir_remove_staging).
 */
void
remove_staging(DeliveryConfig *cfg, const char *staging, MemoryContext cxt)
{
	MemoryContext old;
	DestDir    *root,
			   *sroot;

	if (staging == NULL)
		return;
	old = MemoryContextSwitchTo(cxt);
	root = destdir_open_root(cfg->destination, cxt);
	sroot = destdir_staging_root(root, false);
	if (sroot != NULL)
		destdir_remove_staging(sroot, staging);
	destdir_close(sroot);
	destdir_close(root);
	MemoryContextSwitchTo(old);
}

