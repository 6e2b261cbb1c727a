/*
 * destdir.c: a delivery destination's directories, worked on by descriptor.
 *
 * Anyone who may write a destination directory could plant symbolic links
 * in it, or swap one in for a directory between two batches.  So below the
 * destination the worker never resolves a path: each directory is opened
 * relative to its parent's descriptor with O_NOFOLLOW | O_DIRECTORY (a link
 * is refused with an error naming it), and files are created, renamed,
 * tested and removed relative to an open directory.  The destination's own
 * path is the administrator's and is resolved as configured.
 *
 * The staging directory (DELIVERY_STAGING_NAME) must belong to the server's
 * OS user and be writable by nobody else.  In it each batch gets a directory
 * of its own, created exclusively (mode 0700) under a name with a random
 * part; clean-up removes only the regular files named <n>.tmp of the
 * server's user in that directory, then the directory itself: never
 * anything the worker did not create, never through a link.
 */
#include "stream.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delivery/delivery_int.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#define STAGING_RANDOM_BYTES	8

/* A descriptor's lifetime ends with its memory context at the latest. */
static void
destdir_release(void *arg)
{
	DestDir    *d = (DestDir *) arg;

	if (d->fd >= 0)
	{
		close(d->fd);
		ReleaseExternalFD();
	}
	d->fd = -1;
}

static void
reserve_fd(const char *path)
{
	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("ServiceUnavailableException: too many open files to open \"%s\"", path)));
}

static DestDir *
destdir_wrap(int fd, const char *path, MemoryContext cxt)
{
	DestDir    *d = MemoryContextAllocZero(cxt, sizeof(DestDir));

	d->fd = fd;
	d->path = MemoryContextStrdup(cxt, path);
	d->cxt = cxt;
	d->cb.func = destdir_release;
	d->cb.arg = d;
	MemoryContextRegisterResetCallback(cxt, &d->cb);
	return d;
}

void
destdir_close(DestDir *d)
{
	if (d != NULL)
		destdir_release(d);
}

/* A single path component: no '/', not empty, not '.' or '..'. */
static void
check_component(const DestDir *parent, const char *name)
{
	if (name[0] == '\0' || strchr(name, '/') != NULL ||
		strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		elog(ERROR, "\"%s\" is no single file name in \"%s\"", name, parent->path);
}

/* Why openat(O_NOFOLLOW | O_DIRECTORY) refused an existing name. */
static void
refuse_entry(const DestDir *parent, const char *name, const char *path, int open_errno)
{
	struct stat st;

	if (fstatat(parent->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("ServiceUnavailableException: \"%s\" is a symbolic link; delivery never follows links below its destination",
						path),
				 errhint("Replace the link with a directory, or remove it.")));
	errno = open_errno;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("ServiceUnavailableException: could not open directory \"%s\": %m", path)));
}

/* fsync a directory: an entry made in it survives a crash */
void
destdir_fsync(DestDir *d)
{
	if (pg_fsync(d->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not fsync directory \"%s\": %m", d->path)));
}

/*
 * The subdirectory name of parent, never through a link; created (0755,
 * the parent fsynced) when missing and create is set, else NULL.
 */
DestDir *
destdir_open_sub(DestDir *parent, const char *name, bool create)
{
	char	   *path;
	bool		created = false;
	int			fd;

	check_component(parent, name);
	path = psprintf("%s/%s", parent->path, name);
	if (create)
	{
		if (mkdirat(parent->fd, name, 0755) == 0)
			created = true;
		else if (errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("ServiceUnavailableException: could not create directory \"%s\": %m", path)));
	}
	reserve_fd(path);
	fd = openat(parent->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
	{
		int			save_errno = errno;

		ReleaseExternalFD();
		if (save_errno == ENOENT && !create)
			return NULL;
		refuse_entry(parent, name, path, save_errno);
	}
	if (created)
	{
		/* readable by the lake's readers, whatever the server's umask */
		(void) fchmod(fd, 0755);
		destdir_fsync(parent);
	}
	return destdir_wrap(fd, path, parent->cxt);
}

/*
 * The destination directory, created (with missing parents) if need be.
 * Existing components are resolved as the administrator configured them;
 * a component made here must still be the directory made when it is opened.
 */
DestDir *
destdir_open_root(const char *dest, MemoryContext cxt)
{
	char	   *copy = pstrdup(dest);
	char	   *p = copy + 1;
	DestDir    *cur;
	int			fd;

	if (dest[0] != '/')
		elog(ERROR, "destination \"%s\" is not an absolute path", dest);
	reserve_fd("/");
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not open directory \"/\": %m")));
	}
	cur = destdir_wrap(fd, "", cxt);
	while (*p)
	{
		char	   *slash = strchr(p, '/');
		char	   *path;
		DestDir    *next;

		if (slash)
			*slash = '\0';
		if (*p == '\0')
		{
			p = slash + 1;		/* "//" */
			continue;
		}
		path = psprintf("%s/%s", cur->path, p);
		reserve_fd(path);
		fd = openat(cur->fd, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
		{
			int			save_errno = errno;

			ReleaseExternalFD();
			if (save_errno != ENOENT)
			{
				errno = save_errno;
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("ServiceUnavailableException: could not open directory \"%s\": %m", path)));
			}
			/* the destination itself may be created, as S3 creates prefixes */
			next = destdir_open_sub(cur, p, true);
		}
		else
			next = destdir_wrap(fd, path, cxt);
		destdir_close(cur);
		cur = next;
		if (!slash)
			break;
		p = slash + 1;
	}
	if (cur->path[0] == '\0')
		cur->path = MemoryContextStrdup(cxt, "/");
	return cur;
}

/* rel_dir ("a/b/c", empty components skipped) below root, each level by descriptor. */
DestDir *
destdir_open_path(DestDir *root, const char *rel_dir, bool create)
{
	char	   *copy = pstrdup(rel_dir);
	char	   *p = copy;
	DestDir    *cur = root;

	for (;;)
	{
		char	   *slash = strchr(p, '/');

		if (slash)
			*slash = '\0';
		if (*p)
		{
			DestDir    *next = destdir_open_sub(cur, p, create);

			if (cur != root)
				destdir_close(cur);
			if (next == NULL)
				return NULL;
			cur = next;
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	pfree(copy);
	return cur;
}

/*
 * The destination's staging directory (NULL when missing and not create):
 * the server's OS user's, writable by no one else, or an error.
 */
DestDir *
destdir_staging_root(DestDir *root, bool create)
{
	DestDir    *d = destdir_open_sub(root, DELIVERY_STAGING_NAME, create);
	struct stat st;

	if (d == NULL)
		return NULL;
	if (fstat(d->fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not stat directory \"%s\": %m", d->path)));
	if (st.st_uid != geteuid())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ServiceUnavailableException: staging directory \"%s\" is not owned by the database server's operating system user",
						d->path),
				 errhint("Remove it: the server creates it again.")));
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ServiceUnavailableException: staging directory \"%s\" is writable by other users", d->path),
				 errhint("Make it writable by its owner only (chmod 755).")));
	return d;
}

/* "<database>-<id>-<batch>-<16 random hex digits>": no one can plant it in advance */
char *
destdir_staging_name(int32 id, int64 batch_no)
{
	uint8		r[STAGING_RANDOM_BYTES];
	char		hex[STAGING_RANDOM_BYTES * 2 + 1];

	if (!pg_strong_random(r, sizeof(r)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random staging directory name")));
	for (int i = 0; i < STAGING_RANDOM_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	return psprintf("%u-%d-" INT64_FORMAT "-%s", MyDatabaseId, id, batch_no, hex);
}

/* The batch's staging directory, created here (it must not exist) for the server's user only. */
DestDir *
destdir_create_staging(DestDir *sroot, const char *name)
{
	char	   *path;
	DestDir    *d;
	struct stat st;

	check_component(sroot, name);
	path = psprintf("%s/%s", sroot->path, name);
	if (mkdirat(sroot->fd, name, 0700) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not create staging directory \"%s\": %m", path)));
	d = destdir_open_sub(sroot, name, false);
	if (d == NULL || fstat(d->fd, &st) != 0 || st.st_uid != geteuid())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ServiceUnavailableException: staging directory \"%s\" was replaced after it was created", path)));
	destdir_fsync(sroot);
	return d;
}

/*
 * A batch's staging directory if it is one the worker made (a directory of
 * the server's user, not a link); NULL otherwise, with a warning unless it
 * is just missing.
 */
DestDir *
destdir_open_staging(DestDir *sroot, const char *name)
{
	char	   *path = psprintf("%s/%s", sroot->path, name);
	struct stat st;
	DestDir    *d;
	int			fd;

	check_component(sroot, name);
	reserve_fd(path);
	fd = openat(sroot->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
	{
		int			save_errno = errno;

		ReleaseExternalFD();
		if (save_errno != ENOENT)
		{
			errno = save_errno;
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("leaving \"%s\" alone: it is not a staging directory of the server's: %m", path)));
		}
		return NULL;
	}
	d = destdir_wrap(fd, path, sroot->cxt);
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid())
	{
		ereport(WARNING,
				(errmsg("leaving \"%s\" alone: it is not a staging directory of the server's", path)));
		destdir_close(d);
		return NULL;
	}
	return d;
}

/* names the worker gives its temporary files: <n>.tmp */
bool
destdir_is_tmp_name(const char *name)
{
	const char *p = name;

	while (*p >= '0' && *p <= '9')
		p++;
	return p > name && strcmp(p, ".tmp") == 0;
}

/* A regular file (not a link) name in d? */
bool
destdir_has_file(DestDir *d, const char *name)
{
	struct stat st;

	check_component(d, name);
	if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return S_ISREG(st.st_mode);
	if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not stat \"%s/%s\": %m", d->path, name)));
	return false;
}

/* rename, replacing an entry at the target (a link is replaced, never followed) */
void
destdir_rename(DestDir *from, const char *from_name, DestDir *to, const char *to_name)
{
	check_component(from, from_name);
	check_component(to, to_name);
	if (renameat(from->fd, from_name, to->fd, to_name) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not rename \"%s/%s\" to \"%s/%s\": %m",
						from->path, from_name, to->path, to_name)));
}

/* A new file name in d, opened for writing: fails if anything is there. */
int
destdir_create_file(DestDir *d, const char *name, mode_t mode)
{
	int			fd;

	check_component(d, name);
	fd = openat(d->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | PG_BINARY, mode);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not create file \"%s/%s\": %m", d->path, name)));
	return fd;
}

/*
 * Remove the batch staging directory name of sroot: its <n>.tmp regular
 * files of the server's user, then itself.  Anything else in it stays (and
 * so does the directory, with a warning).
 */
void
destdir_remove_staging(DestDir *sroot, const char *name)
{
	DestDir    *d = destdir_open_staging(sroot, name);
	List	   *names = NIL;
	ListCell   *lc;
	DIR		   *dir;
	int			fd;

	if (d == NULL)
		return;
	/* a second descriptor for readdir: fdopendir owns the one it is given */
	reserve_fd(d->path);
	fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL)
	{
		int			save_errno = errno;

		if (fd >= 0)
			close(fd);
		ReleaseExternalFD();
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("ServiceUnavailableException: could not read directory \"%s\": %m", d->path)));
	}
	PG_TRY();
	{
		struct dirent *de;

		while ((de = readdir(dir)) != NULL)
			if (destdir_is_tmp_name(de->d_name))
				names = lappend(names, pstrdup(de->d_name));
	}
	PG_FINALLY();
	{
		closedir(dir);
		ReleaseExternalFD();
	}
	PG_END_TRY();

	foreach(lc, names)
	{
		char	   *n = lfirst(lc);
		struct stat st;

		CHECK_FOR_INTERRUPTS();
		if (fstatat(d->fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
			!S_ISREG(st.st_mode) || st.st_uid != geteuid())
			continue;
		if (unlinkat(d->fd, n, 0) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("ServiceUnavailableException: could not remove \"%s/%s\": %m", d->path, n)));
	}
	destdir_close(d);
	if (unlinkat(sroot->fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove staging directory \"%s/%s\": %m", sroot->path, name)));
}

/*
 * Can the server create a file in d?  0, or the errno of the failure.  The
 * probe has a random name, is created exclusively and removed by descriptor.
 */
int
destdir_probe_write(DestDir *d)
{
	uint8		r[4];
	char	   *name;
	int			fd;
	int			save_errno = 0;

	if (!pg_strong_random(r, sizeof(r)))
		r[0] = r[1] = r[2] = r[3] = 0;
	name = psprintf(".probe-%d-%02x%02x%02x%02x", MyProcPid, r[0], r[1], r[2], r[3]);
	fd = openat(d->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | PG_BINARY, 0600);
	if (fd < 0)
		return errno;
	if (write(fd, "x", 1) != 1)
		save_errno = errno ? errno : ENOSPC;
	close(fd);
	(void) unlinkat(d->fd, name, 0);
	return save_errno;
}
