/*
 * seqmark.c: the durable high-water mark of sequence numbers and where a
 * rebuilt counter may start, so that no number is handed out twice, also
 * across crashes and for numbers that aborted transactions took (a reader
 * may have moved past those: they were stable once the transaction ended).
 *
 * As PostgreSQL's own sequences log ahead, a durable mark per database lies
 * above every number handed out: the sequence stream.sequence_mark.  A
 * shard's counter (seqalloc.c) never passes the mark it knows; to go
 * further a producer moves the mark ahead by SEQ_MARK_AHEAD numbers with
 * setval and flushes that WAL record before it takes any number above the
 * old mark (seqmark_advance).  After a restart, or when an evicted counter
 * is rebuilt, a counter starts at the mark (or above the shard's highest
 * committed number).  Moving the mark costs one WAL flush per SEQ_MARK_AHEAD
 * numbers of the busiest shard and one per hour bucket; a crash skips at
 * most that many numbers.  Without shared memory each put moves the mark
 * past its numbers under the mark lock instead (seqmark_claim).
 *
 * Locking rules.  Who moves the mark queues on the heavyweight lock
 * STREAM_LOCK_SEQUENCE_MARK (never one a user can hold), taken with no
 * shared-memory lock held and released as soon as the mark is written, so
 * no producer waits for another's transaction.  The per-database start
 * marks (DatabaseMarks) are a shared hash table guarded by seqalloc's table
 * LWLock, which this file never takes: callers of the *_locked functions
 * hold it (exclusive to add or change an entry, shared to read one).
 */
#include "streams/seqmark.h"
#include "streams/seqno.h"
#include "locktag.h"

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

/*
 * How far ahead of the numbers in use the durable mark is moved: the most
 * numbers one crash can skip, and the numbers per WAL flush on the put path.
 */
#define SEQ_MARK_AHEAD			((int64) 1 << 20)

/*
 * Per database: where counters rebuilt in this server's life may start.
 * Every number handed out before start-up lies below startup_mark (the
 * durable mark when the database's first counter was built), and every
 * number handed out by a counter since dropped from the table lies below
 * dropped_max.  A rebuilt counter starts at the larger of the two (or above
 * its shard's committed maximum), not at the current mark, so building many
 * counters does not push the mark ahead for each.
 */
typedef struct DatabaseMarks
{
	Oid			dbid;
	int64		startup_mark;
	int64		dropped_max;
} DatabaseMarks;

#define MAX_DATABASE_MARKS	1024

static HTAB *database_marks = NULL; /* under seqalloc's table lock */

Size
seqmark_shmem_size(void)
{
	return hash_estimate_size(MAX_DATABASE_MARKS, sizeof(DatabaseMarks));
}

void
seqmark_shmem_init(void)
{
	HASHCTL		info;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(DatabaseMarks);
	database_marks = ShmemInitHash("stream database marks",
								   MAX_DATABASE_MARKS, MAX_DATABASE_MARKS,
								   &info, HASH_ELEM | HASH_BLOBS);
}

/* ---- the durable high-water mark ---- */

static Oid
mark_relid(void)
{
	Oid			nsp = get_namespace_oid("stream", false);
	Oid			relid = get_relname_relid("sequence_mark", nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "sequence stream.sequence_mark is missing");
	return relid;
}

/*
 * The sequence belongs to the extension and no role but its owner may touch
 * it, so it is read and moved as the bootstrap superuser; no user code runs
 * in between (sequences have no triggers).
 */
typedef struct SavedUser
{
	Oid			userid;
	int			sec_context;
} SavedUser;

static void
become_superuser(SavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
restore_user(const SavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

static int64
mark_read(Oid relid)
{
	SavedUser	saved;
	Datum		d;
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(relid);
	fcinfo->args[0].isnull = false;
	become_superuser(&saved);
	d = pg_sequence_last_value(fcinfo);
	restore_user(&saved);
	/* NULL until the first setval */
	return fcinfo->isnull ? 0 : DatumGetInt64(d);
}

static void
mark_write(Oid relid, int64 mark)
{
	SavedUser	saved;

	become_superuser(&saved);
	(void) DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(relid),
							   Int64GetDatum(mark), BoolGetDatum(true));
	restore_user(&saved);
}

/*
 * Those who move the mark queue on a lock of our own (never one a user can
 * hold), released as soon as the mark is written, so no producer waits for
 * another's transaction.
 */
static void
mark_lock(LOCKTAG *tag)
{
	SET_STREAM_LOCKTAG(*tag, STREAM_LOCK_SEQUENCE_MARK, 0, 0);
	(void) LockAcquire(tag, ExclusiveLock, false, false);
}

/* The database's mark: every number ever handed out in it lies below. */
int64
seqmark_read(void)
{
	return mark_read(mark_relid());
}

/* Make the mark at least needed, SEQ_MARK_AHEAD beyond, and durable; returns it. */
int64
seqmark_advance(int64 needed)
{
	LOCKTAG		tag;
	Oid			relid = mark_relid();
	int64		mark;

	mark_lock(&tag);
	mark = mark_read(relid);
	if (mark < needed)
	{
		mark = needed + SEQ_MARK_AHEAD;
		mark_write(relid, mark);
		/* durable before any number above the old mark is handed out */
		XLogFlush(XactLastRecEnd);
	}
	LockRelease(&tag, ExclusiveLock, false);
	return mark;
}

/*
 * Without shared memory: the first of count numbers at or above floor and
 * the mark, with the mark moved past them.  Readers then read only
 * committed numbers, so the mark need not be flushed: a crash can lose only
 * numbers that no reader has passed.
 */
int64
seqmark_claim(int64 floor, int64 bucket, int count)
{
	LOCKTAG		tag;
	Oid			relid = mark_relid();
	int64		first;

	mark_lock(&tag);
	first = seq_first_of_run(Max(floor, mark_read(relid)), bucket, count);
	mark_write(relid, first + count);
	LockRelease(&tag, ExclusiveLock, false);
	return first;
}

/* ---- where a rebuilt counter may start ---- */

/*
 * The database's start-up mark (see DatabaseMarks), recorded by the first
 * counter built in it since start-up as the mark that counter saw.  When
 * the table is full, the current mark: the safe, wasteful answer.  Caller
 * holds seqalloc's table lock exclusively.
 */
int64
seqmark_startup_locked(int64 current_mark)
{
	DatabaseMarks *dm;
	bool		found;

	dm = hash_search(database_marks, &MyDatabaseId, HASH_ENTER_NULL, &found);
	if (dm != NULL && !found)
	{
		dm->startup_mark = current_mark;
		dm->dropped_max = 0;
	}
	return dm != NULL ? dm->startup_mark : current_mark;
}

/*
 * Remember how far a counter leaving the table got, so that a rebuilt one
 * starts above.  Without an entry, rebuilt counters start at the current
 * mark.  Caller holds seqalloc's table lock exclusively.
 */
void
seqmark_note_dropped_locked(Oid dbid, int64 next_seq)
{
	DatabaseMarks *dm = hash_search(database_marks, &dbid, HASH_FIND, NULL);

	if (dm != NULL)
		dm->dropped_max = Max(dm->dropped_max, next_seq);
}

/* 0 when no counter of the database was dropped; caller holds the lock shared. */
int64
seqmark_dropped_max_locked(Oid dbid)
{
	DatabaseMarks *dm = hash_search(database_marks, &dbid, HASH_FIND, NULL);

	return dm != NULL ? dm->dropped_max : 0;
}
