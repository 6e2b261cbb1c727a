/*
 * seqmark.h: the durable high-water mark of sequence numbers, and where a
 * shard's counter may start when it is rebuilt (after a restart or an
 * eviction) without handing out a number twice.  The counters themselves
 * are seqalloc.h; why the mark exists: the head of seqalloc.c.
 *
 * Locking: seqmark_read/advance/claim take the heavyweight mark lock
 * themselves and must be called with no shared-memory lock held.  The
 * per-database start marks (the *_locked functions) live in shared memory
 * guarded by seqalloc's table LWLock: the caller holds it, exclusively to
 * change them, at least shared to read them.
 */
#ifndef STREAM_SEQMARK_H
#define STREAM_SEQMARK_H

#include "stream.h"

/* Shared memory of the per-database start marks (seqalloc's set-up calls these). */
extern Size seqmark_shmem_size(void);
extern void seqmark_shmem_init(void);

/* The database's mark: every number ever handed out in it lies below. */
extern int64 seqmark_read(void);
/* Make the mark at least needed (moved well beyond) and durable; returns it. */
extern int64 seqmark_advance(int64 needed);
/*
 * Without shared memory: the first of count numbers at or above floor and
 * the mark in the given hour bucket or later, with the mark moved past them.
 */
extern int64 seqmark_claim(int64 floor, int64 bucket, int count);

/* Where a counter first built since start-up may start (caller: exclusive). */
extern int64 seqmark_startup_locked(int64 current_mark);
/* A counter that reached next_seq leaves the table (caller: exclusive). */
extern void seqmark_note_dropped_locked(Oid dbid, int64 next_seq);
/* Above every number of the database's dropped counters (caller: shared). */
extern int64 seqmark_dropped_max_locked(Oid dbid);

#endif							/* STREAM_SEQMARK_H */
