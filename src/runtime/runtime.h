/*
 * runtime/runtime.h: the in-database consumer runtime.
 *
 * A processor is a registered consumer of one stream (stream.processors):
 * it has an owner, a kind (the client that runs it, registered in kind.c:
 * "delivery" today) and a checkpoint per shard and lane
 * (stream.processor_checkpoints: the next sequence number to process).  The
 * background worker gives every processor of a kind at most one unit of
 * work per round, shared fairly between owners (round.c); a unit is what
 * the client's run_unit callback does between two checkpoints.
 *
 * Exactly once.  A unit covers fixed ranges [from, to) per shard, cut below
 * the readable window (window.c: the stable sequence, the retention horizon,
 * a closed shard's end), so reading them again returns the same records.
 *   - A unit done in one transaction (a table destination, a trigger
 *     function) calls runtime_begin_unit(u, false), makes its effects and
 *     runtime_finish_unit(u) in that transaction: effects and checkpoints
 *     commit together or not at all.
 *   - A unit whose effects leave the database (files) or span transactions
 *     calls runtime_begin_unit(u, true) in a transaction of its own: the
 *     ranges are recorded as the processor's pending unit.  After a crash,
 *     runtime_load_pending() returns it (u->recovered) and the client redoes
 *     exactly that unit; runtime_finish_unit() in the transaction that
 *     records its result drops the pending row.
 * A client keeps its own per-unit state (delivery's file list) in a table
 * of its own keyed by the processor and referencing stream.processor_pending
 * ON DELETE CASCADE, so finishing the unit drops it.
 *
 * Owner code (transforms, trigger functions, a destination's triggers) runs
 * through sandbox.h: as the owner, restricted, in a GUC nest level, with
 * stream.owner_code_timeout per call, in a subtransaction per attempt.
 *
 * Errors.  An error out of run_unit aborts the unit's transaction, leaves
 * the checkpoints where they were and is recorded on the processor's
 * progress row (last_error, failed_attempts); the processor then waits 1 s,
 * doubling to 30 s, before its next unit unless the client asks for it now
 * (wants_now: a flush).  Records a unit gives up on go to
 * stream.processor_errors with runtime_dead_letter(), in the unit's
 * transaction.  stream.processor_status shows a row per processor whose
 * owner the querying role is a member of.
 *
 * Include stream.h (and so postgres.h) before this file.
 */
#ifndef STREAM_RUNTIME_H
#define STREAM_RUNTIME_H

#include "utils/array.h"
#include "utils/hsearch.h"

/* ---- window.c: what a processor may read now ---- */

/*
 * Checkpoints of one processor (the lanes of shard_index, each with its
 * next_seq).  Lanes are the client's: a client that runs a shard as several
 * lanes (by partition key, say) keeps a checkpoint per lane and, reading a
 * lane's range, skips the records of other lanes; runtime_window() is lane 0.
 */
typedef struct ProcessorCheckpoints
{
	int			n;
	int32	   *shard_index;
	int32	   *lane;
	int64	   *next_seq;
} ProcessorCheckpoints;

/* One shard's readable window for a processor. */
typedef struct ShardWindow
{
	StreamShard *shard;
	int64		next;			/* the checkpoint: first number not processed */
	int64		from;			/* where reading starts: max(next, retention horizon) */
	int64		to;				/* end, exclusive: the stable sequence, a closed shard's end + 1 */
	bool		finished;		/* a closed shard processed to its end */
	bool		blocked;		/* a parent is not finished: read nothing of it yet */
	bool		ends;			/* closed, and the window reaches its end (to is end + 1) */
} ShardWindow;

typedef struct ConsumerWindow
{
	StreamInfo *info;
	TimestampTz min_arrival;	/* records older than retention are never read */
	int			nshards;
	ShardWindow *shards;		/* in the order of info->shards */
} ConsumerWindow;

/*
 * The window of every shard of info at lane 0, from the checkpoints (NULL:
 * from each shard's start).  Parents come before children, as the KCL
 * reads them: a shard whose parent (or adjacent parent) is still in the
 * stream and not finished is blocked, so records of one partition key are
 * processed in order across a split or merge.  A parent's last range and a
 * child's first never share a unit.
 */
extern void runtime_window(StreamInfo *info, const ProcessorCheckpoints *cps, ConsumerWindow *w);
/*
 * Finish the closed shards whose window reaches their end with no record
 * left to process: their checkpoint moves past the end (SPI, in the
 * caller's transaction), so their children are no longer blocked.  The
 * window is recomputed; returns how many were finished.
 */
extern int	runtime_finish_empty_ends(int32 processor_id, ProcessorCheckpoints *cps, ConsumerWindow *w);
/* the checkpoint of (shard, lane), dflt when none is recorded */
extern int64 runtime_checkpoint_of(const ProcessorCheckpoints *cps, int32 shard_index, int32 lane, int64 dflt);
/* read [from, to) of one shard within the window; returns the count, *next where to go on */
extern int	runtime_scan(ConsumerWindow *w, StreamShard *shard, int64 from, int64 to, int limit,
						 Size max_bytes, RecordSink sink, void *arg, int64 *next);

/* ---- checkpoint.c: units, pending ranges, checkpoints ---- */

/* A unit of work: per shard (and lane) a fixed range [from, to). */
typedef struct ProcessorUnit
{
	int32		processor_id;
	int64		unit_no;		/* numbers the processor's units: 1, 2, ... */
	int			nranges;
	int32	   *shards;
	int32	   *lanes;
	int64	   *from;
	int64	   *to;
	TimestampTz min_arrival;	/* the retention horizon when the unit was cut */
	bool		recovered;		/* found pending: an earlier attempt did not finish */
} ProcessorUnit;

/* Range i of a unit read: sink gets each record; the shard index is u->shards[i]. */
extern void runtime_read_range(ProcessorUnit *u, StreamInfo *info, int i, RecordSink sink, void *arg);

/* The next calls need SPI (inside runtime_step_begin/end). */
extern void runtime_load_checkpoints(int32 processor_id, ProcessorCheckpoints *cps, MemoryContext cxt);
extern void runtime_unit_init(ProcessorUnit *u, int32 processor_id, int maxranges);
extern void runtime_unit_add(ProcessorUnit *u, int32 shard_index, int32 lane, int64 from, int64 to);
extern bool runtime_load_pending(int32 processor_id, ProcessorUnit *u, MemoryContext cxt);
extern void runtime_begin_unit(ProcessorUnit *u, bool pending);
extern void runtime_finish_unit(ProcessorUnit *u);
extern void runtime_dead_letter(ProcessorUnit *u, const char *error_type, const char *envelope_json);

/* ---- round.c: the worker's rounds over processors ---- */

typedef enum RunResult
{
	RUN_IDLE,					/* nothing due */
	RUN_DONE,					/* a unit done; nothing more due at once */
	RUN_MORE					/* a unit done and more is due at once */
} RunResult;

/* What a unit is run with. */
typedef struct ProcessorRun
{
	int32		processor_id;
	bool		now;			/* wants_now said so: run even if nothing is due by the client's rules */
	int			failed_attempts;	/* units that failed in a row before this one (0 after a success):
									 * a client may shrink its unit after a failure (bisection) and
									 * give a record up to runtime_dead_letter() */
	MemoryContext cxt;			/* lives for this call; also the current context at the call */
} ProcessorRun;

/*
 * A kind of processor: what a client implements.  All callbacks run in the
 * worker.  round_begin and unit_failed may be NULL.
 */
typedef struct ProcessorKind
{
	const char *name;			/* stream.processors.processor_kind */

	/*
	 * Once per round, inside a transaction, with the processors of this kind
	 * that exist now (ascending): the client refreshes what it keeps per
	 * processor and forgets the others.
	 */
	void		(*round_begin) (const int32 *ids, int n, void *arg);

	/* true: run a unit now even while the processor backs off (a flush) */
	bool		(*wants_now) (int32 processor_id, void *arg);

	/*
	 * One unit of work, outside a transaction, with the processor's unit lock
	 * held; runs its own transactions (runtime_step_begin/end).
	 */
	RunResult	(*run_unit) (const ProcessorRun *run, void *arg);

	/* after run_unit raised ed (already rolled back): report, forget caches */
	void		(*unit_failed) (int32 processor_id, ErrorData *ed, void *arg);
} ProcessorKind;

/*
 * The registry of kinds (kind.c): each client registers its kind once, from
 * _PG_init (module.c); stream.processors accepts only registered kinds.
 * kind must be static (the registry keeps the pointer).
 */
extern void runtime_register_kind(const ProcessorKind *kind);
/* the registered kind of that name, NULL when none */
extern const ProcessorKind *runtime_find_kind(const char *name);

/*
 * One round over the processors of kind: each gets at most one unit, and
 * each owner at most UNITS_PER_OWNER units that did something, owners and
 * an owner's processors served in turn across rounds (round.c); a processor
 * is skipped while another backend holds its unit lock or while it backs
 * off.  Returns true when some processor has more to do at once;
 * *extension_missing when the extension is gone.  Call outside a transaction.
 */
extern bool runtime_run_round(const ProcessorKind *kind, void *arg, bool *extension_missing);

/*
 * A client's per-processor state: a hash in cxt keyed by the processor id
 * (an int32 first in each entry of entrysize bytes).  runtime_forget_gone
 * drops the entries of processors not in ids (round_begin's list),
 * release(entry) first if not NULL.
 */
extern HTAB *runtime_state_hash(const char *name, Size entrysize, MemoryContext cxt);
extern void runtime_forget_gone(HTAB *h, const int32 *ids, int n, void (*release) (void *entry));

/*
 * A short transaction of a unit, with a snapshot and SPI; inside a unit it
 * also holds the unit lock (see runtime_try_unit_lock).
 */
extern void runtime_step_begin(void);
extern void runtime_step_end(void);

/*
 * The unit lock of a processor: the round tries it, _processor_drop waits
 * for it.  Held at session level for the unit and at transaction level in
 * each runtime_step_begin/end, so owner code that drops the worker's
 * session-level advisory locks (pg_advisory_unlock_all) cannot free it
 * while the unit runs.  Unlocking also drops every session-level advisory
 * lock owner code took during the unit.
 */
extern bool runtime_try_unit_lock(int32 processor_id);
extern void runtime_unit_unlock(void);

/* SPI helper: run bookkeeping SQL, expecting SPI result code expect */
extern void runtime_sql(const char *sql, int nargs, Oid *types, Datum *args, int expect);
extern ArrayType *runtime_int4_array(const int32 *v, int n);
extern ArrayType *runtime_int8_array(const int64 *v, int n);

#endif							/* STREAM_RUNTIME_H */
