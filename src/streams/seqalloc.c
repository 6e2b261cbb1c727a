/*
 * seqalloc.c: per-shard sequence numbers that never make a reader skip.
 *
 * A sequence number handed out before commit can become visible after a
 * higher one; a reader that has moved past the higher one would never see
 * it (peers-postgres.md section 6).  Serialising producers per shard until
 * commit cures that but makes one open transaction block every producer of
 * its shard.  Instead, as Kafka does with its last stable offset:
 *
 *  - numbers come from a counter per shard in shared memory, taken under a
 *    spinlock held briefly (see the locking rules below), never until
 *    commit;
 *  - each transaction that took numbers on a shard registers the lowest of
 *    them as in flight, and unregisters at commit or abort, after the
 *    commit is visible in the proc array;
 *  - a reader first computes the shard's stable sequence (the lowest number
 *    in flight, or the next number to hand out), then takes a fresh
 *    snapshot and reads only below it.  Every number below it belongs to a
 *    transaction that has committed (visible in that snapshot) or aborted.
 *
 * No number is ever handed out twice, also across crashes and for numbers
 * that aborted transactions took: a shard's counter never passes the
 * durable high-water mark it knows (ShardState.reserved), and a counter
 * rebuilt after a restart or an eviction starts above every number handed
 * out before.  The mark and the rebuild rule are seqmark.c.
 *
 * Resharding closes a shard (seqalloc_close_shard): under the counter's
 * mutex, the shard's ending sequence number becomes the next number to hand
 * out, which is never handed out, and the counter refuses every later
 * reservation (seqalloc_try_reserve returns false), so every number ever
 * taken on the shard lies below its end, also for transactions that were
 * open at the split and put again afterwards: their later puts are refused
 * and routed again (put.c).  Until the resharding transaction ends the
 * close is pending: a refused producer waits for the stream's reshard lock
 * (locktag.h), which the resharding (sub)transaction holds until it ends,
 * and the entry is not evicted.  At abort, also of the
 * subtransaction that closed it, the shard opens again; at commit a
 * reader waiting on it is woken to see the end.  The catalog row
 * (stream.shards.ending_seq) commits with it, so after a crash a rebuilt
 * counter reads it (stream_catalog_shard_ending) and stays closed; an
 * uncommitted close is lost with the split.
 *
 * Without shared_preload_libraries there is no shared memory; producers then
 * serialise per shard with a transaction-scoped lock and take the highest
 * committed number plus one, or the mark, which each put moves past its
 * numbers (seqmark_claim): numbers still become visible in order, and none
 * is handed out twice.  A close there takes the shard's put lock until
 * commit (waiting for the producers in flight), and a producer that got the
 * lock after a close reloads the catalog when an invalidation arrived.
 *
 * Locking rules.  shared->lock (an LWLock) guards the membership of the
 * counter table and of the per-database start marks (seqmark.c): exclusive
 * to add or remove an entry, shared to find one and for as long as the
 * entry is used, so that no entry is removed under its user
 * (shard_state_locked returns with it held).  A subscriber that sleeps without the LWLock keeps its entry
 * alive by counting itself in ShardState.subscribers instead; eviction and
 * seqalloc_forget_stream leave an entry with subscribers or anything in
 * flight.  Each entry's mutex (a spinlock) guards every field but the key;
 * pool_mutex guards the free list of in-flight nodes.  Order: shared->lock
 * before a shard's mutex, never the other way; pool_mutex is never taken
 * with a shard's mutex held.  Under a spinlock nothing may raise an error,
 * allocate or take another lock; the in-flight list of a shard is walked
 * there (stable_locked), so that section grows with the transactions in
 * flight on the shard.  The heavyweight mark lock (seqmark_advance, _claim)
 * is taken with no shared-memory lock held, and a condition variable is
 * broadcast after the mutex is released.  held[] and own_in_use are this
 * backend's own.
 */
#include "streams/seqalloc.h"
#include "streams/chunk.h"
#include "streams/seqmark.h"
#include "streams/seqno.h"
#include "streams/stream_catalog.h"
#include "locktag.h"
#include "settings.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/inval.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "access/twophase.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "storage/condition_variable.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "storage/latch.h"
#include "utils/wait_event.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "access/htup_details.h"
#include "funcapi.h"

/*
 * A counter belongs to one shard of one stream table: stream ids start
 * again at 1 when the extension is created anew, and a database OID may be
 * reused, but a new stream table gets a new relation OID.
 */
typedef struct ShardKey
{
	Oid			dbid;
	Oid			relid;			/* the stream's table, stream_data.s<id> */
	int32		stream_id;
	int32		shard_index;
} ShardKey;

typedef struct InflightNode
{
	dlist_node	link;			/* in a shard's in-flight list or the free list */
	int64		min_seq;
	int64		max_seq;		/* highest number this transaction took on the shard */
	int			pid;			/* of the transaction's backend (stream.consumer_lag) */
	TimestampTz xact_start;		/* when that transaction started */
} InflightNode;

typedef struct ShardState
{
	ShardKey	key;
	slock_t		mutex;			/* guards everything below */
	bool		initialized;
	int64		next_seq;
	int64		reserved;		/* next_seq never passes this durable mark */
	TimestampTz last_arrival;
	dlist_head	inflight;
	int			subscribers;	/* sessions waiting on wakeup; keeps the entry alive */
	ConditionVariable wakeup;	/* broadcast when records may have become stable */
	bool		closed;			/* resharded: refuses every reservation */
	TransactionId closer_xid;	/* valid while the close is pending (not committed) */
} ShardState;

typedef struct SeqallocShared
{
	LWLock	   *lock;			/* guards the hash tables' membership */
	slock_t		pool_mutex;		/* guards free_nodes */
	dlist_head	free_nodes;
	int			nnodes;
	InflightNode nodes[FLEXIBLE_ARRAY_MEMBER];
} SeqallocShared;

/* What this backend's current transaction holds in flight. */
typedef struct HeldNode
{
	ShardState *shard;
	InflightNode *node;
} HeldNode;

static SeqallocShared *shared = NULL;
static HTAB *shard_table = NULL;
static HeldNode *held = NULL;
static int	nheld = 0;
static int	held_cap = 0;

/*
 * held[] by shard: an open-addressing table of held[] positions + 1 (0 =
 * empty), twice held_cap in size, so that a transaction on many shards
 * finds its node in constant time rather than by a walk over held[].
 */
static int *held_slots = NULL;
static int	held_mask = 0;
static bool xact_put = false;	/* this transaction put records */

/* Shards this transaction closed, while the close is pending. */
typedef struct ClosingShard
{
	ShardState *shard;
	SubTransactionId subid;		/* the subtransaction that closed it */
} ClosingShard;

static ClosingShard *closing = NULL;
static int	nclosing = 0;
static int	closing_cap = 0;


/*
 * In-flight registrations.  Every process slot owns OWN_NODES of its own,
 * so that no other role's open transactions can deny it puts on that many
 * shards; transactions on more shards draw on a shared pool of
 * POOL_NODES_PER_BACKEND per backend, of which one transaction may hold at
 * most stream.max_shards_per_transaction.
 */
#define OWN_NODES				32
#define POOL_NODES_PER_BACKEND	32

static int
process_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static int
inflight_node_count(void)
{
	return process_slots() * OWN_NODES + MaxBackends * POOL_NODES_PER_BACKEND;
}

static uint32 own_in_use = 0;	/* bit i: this backend's own node i is held */

Size
seqalloc_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(SeqallocShared, nodes),
					mul_size(inflight_node_count(), sizeof(InflightNode)));
	size = add_size(size, hash_estimate_size(stream_max_shards, sizeof(ShardState)));
	size = add_size(size, seqmark_shmem_size());
	return size;
}

void
seqalloc_shmem_init(void)
{
	bool		found;
	HASHCTL		info;
	int			n = inflight_node_count();

	shared = ShmemInitStruct("stream sequence allocator",
							 offsetof(SeqallocShared, nodes) + n * sizeof(InflightNode),
							 &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("stream"))->lock;
		SpinLockInit(&shared->pool_mutex);
		dlist_init(&shared->free_nodes);
		shared->nnodes = n;
		for (int i = process_slots() * OWN_NODES; i < n; i++)
			dlist_push_tail(&shared->free_nodes, &shared->nodes[i].link);
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(ShardKey);
	info.entrysize = sizeof(ShardState);
	shard_table = ShmemInitHash("stream shard counters",
								stream_max_shards, stream_max_shards,
								&info, HASH_ELEM | HASH_BLOBS);
	seqmark_shmem_init();
}

/* ---- transaction bookkeeping ---- */

static inline uint32
held_hash(ShardState *st)
{
	return hash_bytes_uint32((uint32) ((uintptr_t) st >> 3)) & held_mask;
}

/* Empty the index of held[] (each entry's slot, found past slots already emptied). */
static void
held_clear(void)
{
	for (int i = 0; i < nheld; i++)
	{
		uint32		h = held_hash(held[i].shard);

		while (held_slots[h] != i + 1)
			h = (h + 1) & held_mask;
		held_slots[h] = 0;
	}
}

static void return_node(InflightNode *node);

/* Lowest number in flight, or the next to hand out; caller holds st->mutex. */
static int64
stable_locked(ShardState *st)
{
	int64		stable = st->next_seq;
	dlist_iter	iter;

	dlist_foreach(iter, &st->inflight)
	{
		InflightNode *node = dlist_container(InflightNode, link, iter.cur);

		if (node->min_seq < stable)
			stable = node->min_seq;
	}
	return stable;
}

/*
 * End this transaction's in-flight registrations.  Subscribers waiting on
 * a shard are woken at commit, and at abort only when the abort lets other
 * transactions' records become stable: a rolled-back put alone wakes no one.
 */
static void
release_inflight(bool committed)
{
	for (int i = 0; i < nheld; i++)
	{
		ShardState *st = held[i].shard;
		InflightNode *node = held[i].node;
		int64		before;
		bool		wake;

		SpinLockAcquire(&st->mutex);
		before = stable_locked(st);
		dlist_delete(&node->link);
		wake = st->subscribers > 0 &&
			(committed || stable_locked(st) > Max(before, node->max_seq + 1));
		SpinLockRelease(&st->mutex);
		if (wake)
			ConditionVariableBroadcast(&st->wakeup);

		return_node(node);
	}
	held_clear();
	nheld = 0;
}

/*
 * End the pending closes made since (and including) subtransaction subid,
 * all of them with InvalidSubTransactionId: committed, they stay closed and
 * waiting readers are woken to see the end; aborted, the shards open again.
 * The entries cannot have gone: a pending close is never evicted.
 */
static void
end_closes(bool committed, SubTransactionId subid)
{
	int			keep = 0;

	for (int i = 0; i < nclosing; i++)
	{
		ShardState *st = closing[i].shard;
		bool		wake;

		if (subid != InvalidSubTransactionId && closing[i].subid < subid)
		{
			closing[keep++] = closing[i];
			continue;
		}
		SpinLockAcquire(&st->mutex);
		st->closer_xid = InvalidTransactionId;
		if (!committed)
			st->closed = false;
		wake = committed && st->subscribers > 0;
		SpinLockRelease(&st->mutex);
		if (wake)
			ConditionVariableBroadcast(&st->wakeup);
	}
	nclosing = keep;
}

static void
seqalloc_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && nclosing > 0)
		end_closes(false, mySubid);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the parent now owns the closes */
		for (int i = 0; i < nclosing; i++)
			if (closing[i].subid == mySubid)
				closing[i].subid = parentSubid;
	}
}

static void
seqalloc_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (nclosing > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has resharded a stream"),
						 errdetail("The shards it closed would refuse every producer until COMMIT PREPARED."),
						 errhint("Split, merge or scale streams outside two-phase transactions.")));
			if (xact_put)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has put records to a stream"),
						 errdetail("Records put in a prepared transaction would hold back every reader of their shards until COMMIT PREPARED."),
						 errhint("Put stream records outside two-phase transactions.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* runs after the commit is visible in the proc array */
			if (nheld > 0)
				release_inflight(true);
			if (nclosing > 0)
				end_closes(true, InvalidSubTransactionId);
			xact_put = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			if (nheld > 0)
				release_inflight(false);
			if (nclosing > 0)
				end_closes(false, InvalidSubTransactionId);
			xact_put = false;
			break;
		default:
			break;
	}
}

void
seqalloc_init(void)
{
	RegisterXactCallback(seqalloc_xact_callback, NULL);
	RegisterSubXactCallback(seqalloc_subxact_callback, NULL);
}

/* ---- shard counters ---- */

static InflightNode *held_node_for(ShardState *st);

/*
 * Remove a counter from the table, remembering how far it got so that a
 * rebuilt one starts above.  Caller holds shared->lock exclusively and
 * knows that nothing is in flight on it.
 */
static void
drop_entry(ShardState *st)
{
	seqmark_note_dropped_locked(st->key.dbid, st->next_seq);
	hash_search(shard_table, &st->key, HASH_REMOVE, NULL);
}

/*
 * May the entry go?  Not with puts in flight, subscribers, or a pending
 * close: rebuilt from the committed catalog, that shard would be open.
 * Caller holds st->mutex.
 */
static bool
entry_idle_locked(ShardState *st)
{
	return dlist_is_empty(&st->inflight) && st->subscribers == 0 &&
		!TransactionIdIsValid(st->closer_xid);
}

/*
 * Make room in a full table: drop every entry with nothing in flight and no
 * subscriber (streams deleted, databases dropped, shards unused).  That is
 * safe because an entry is rebuilt above everything it ever handed out
 * (see shard_state_locked).  Caller holds shared->lock exclusively; the
 * walk over the whole table stalls every producer for its length.
 */
static int
evict_idle_entries(void)
{
	HASH_SEQ_STATUS status;
	ShardState *st;
	int			evicted = 0;

	hash_seq_init(&status, shard_table);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		bool		idle;

		SpinLockAcquire(&st->mutex);
		idle = entry_idle_locked(st);
		SpinLockRelease(&st->mutex);
		if (idle && held_node_for(st) == NULL)
		{
			drop_entry(st);
			evicted++;
		}
	}
	return evicted;
}

/* The counter table's key of a shard. */
static void
shard_key(StreamInfo *info, StreamShard *shard, ShardKey *key)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->relid = info->relid;
	key->stream_id = info->stream_id;
	key->shard_index = shard->shard_index;
}

/*
 * Find (or create and initialise) a shard's counter.  Returns with
 * shared->lock held in shared mode, so that seqalloc_forget_stream cannot
 * remove the entry while the caller uses it.
 */
static ShardState *
shard_state_locked(StreamInfo *info, StreamShard *shard)
{
	ShardKey	key;
	ShardState *st;
	bool		found;

	shard_key(info, shard, &key);

	for (;;)
	{
		int64		max_seq;
		int64		mark;
		int64		start;
		int64		ending = 0;
		bool		closed;

		LWLockAcquire(shared->lock, LW_SHARED);
		st = hash_search(shard_table, &key, HASH_FIND, &found);
		if (st != NULL && st->initialized)
			return st;
		LWLockRelease(shared->lock);

		if (st == NULL)
		{
			LWLockAcquire(shared->lock, LW_EXCLUSIVE);
			/* stream.max_shards bounds the table (shared memory has slack beyond) */
			st = hash_search(shard_table, &key, HASH_FIND, &found);
			if (st == NULL && hash_get_num_entries(shard_table) >= stream_max_shards)
				(void) evict_idle_entries();
			if (st == NULL && hash_get_num_entries(shard_table) < stream_max_shards)
				st = hash_search(shard_table, &key, HASH_ENTER_NULL, &found);
			if (st == NULL)
			{
				LWLockRelease(shared->lock);
				ereport(ERROR,
						(errcode(ERRCODE_STREAM_LIMIT),
						 errmsg("LimitExceededException: more than stream.max_shards (%d) shards are in use",
								stream_max_shards),
						 errhint("Raise stream.max_shards and restart the server.")));
			}
			if (!found)
			{
				SpinLockInit(&st->mutex);
				st->initialized = false;
				st->closed = false;
				st->closer_xid = InvalidTransactionId;
				st->next_seq = 0;
				st->reserved = 0;
				st->last_arrival = 0;
				dlist_init(&st->inflight);
				st->subscribers = 0;
				ConditionVariableInit(&st->wakeup);
			}
			LWLockRelease(shared->lock);
		}

		/*
		 * First use since start-up (or since the entry was evicted).  The
		 * committed maximum is not enough: numbers taken by transactions
		 * that aborted were stable, so a reader's iterator may already
		 * point past them.  The durable mark lies above all of them.  Whether
		 * the shard is closed comes from the catalog as committed now, not
		 * from info, which may predate the close.
		 */
		closed = stream_catalog_shard_ending(info->stream_id, shard->shard_index, &ending);
		max_seq = chunk_max_seq(info, shard);
		mark = seqmark_read();
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		start = seqmark_startup_locked(mark);
		LWLockRelease(shared->lock);

		LWLockAcquire(shared->lock, LW_SHARED);
		st = hash_search(shard_table, &key, HASH_FIND, &found);
		if (st != NULL)
		{
			/* read under the lock: an entry evicted meanwhile raised it */
			start = Max(start, seqmark_dropped_max_locked(MyDatabaseId));
			SpinLockAcquire(&st->mutex);
			if (!st->initialized)
			{
				st->next_seq = Max(Max(max_seq + 1, shard->starting_seq), start);
				st->reserved = mark;	/* durable, and at least start */
				if (closed)
				{
					st->closed = true;
					st->next_seq = Max(st->next_seq, ending + 1);
				}
				st->initialized = true;
			}
			SpinLockRelease(&st->mutex);
			return st;
		}
		LWLockRelease(shared->lock);
	}
}

static InflightNode *
held_node_for(ShardState *st)
{
	if (held_slots == NULL)
		return NULL;
	for (uint32 h = held_hash(st);; h = (h + 1) & held_mask)
	{
		int			i = held_slots[h];

		if (i == 0)
			return NULL;
		if (held[i - 1].shard == st)
			return held[i - 1].node;
	}
}

/* Append to held[] (room was made by held_reserve) and index it. */
static void
held_add(ShardState *st, InflightNode *node)
{
	uint32		h = held_hash(st);

	held[nheld].shard = st;
	held[nheld].node = node;
	nheld++;
	while (held_slots[h] != 0)
		h = (h + 1) & held_mask;
	held_slots[h] = nheld;
}

/* Room for n more held nodes: held[] and its index grow together. */
static void
held_reserve(int n)
{
	if (nheld + n <= held_cap)
		return;
	held_cap = Max(16, held_cap);
	while (nheld + n > held_cap)
		held_cap *= 2;
	held = held ? repalloc(held, held_cap * sizeof(HeldNode))
		: MemoryContextAlloc(TopMemoryContext, held_cap * sizeof(HeldNode));
	if (held_slots != NULL)
		pfree(held_slots);
	held_mask = 2 * held_cap - 1;	/* held_cap is a power of two */
	held_slots = MemoryContextAllocZero(TopMemoryContext, sizeof(int) * (held_mask + 1));
	for (int i = 0; i < nheld; i++)
	{
		uint32		h = held_hash(held[i].shard);

		while (held_slots[h] != 0)
			h = (h + 1) & held_mask;
		held_slots[h] = i + 1;
	}
}

/* This backend's own node i, or -1 when node is from the shared pool. */
static int
own_index(InflightNode *node)
{
	int			i = (int) (node - &shared->nodes[MyProc->pgprocno * OWN_NODES]);

	return (i >= 0 && i < OWN_NODES) ? i : -1;
}

static InflightNode *
take_free_node(void)
{
	InflightNode *node = NULL;

	StaticAssertStmt(OWN_NODES <= 32, "own_in_use is a 32-bit mask");
	if (own_in_use != PG_UINT32_MAX >> (32 - OWN_NODES))
	{
		int			i = 0;

		while (own_in_use & ((uint32) 1 << i))
			i++;
		own_in_use |= (uint32) 1 << i;
		return &shared->nodes[MyProc->pgprocno * OWN_NODES + i];
	}
	SpinLockAcquire(&shared->pool_mutex);
	if (!dlist_is_empty(&shared->free_nodes))
		node = dlist_container(InflightNode, link, dlist_pop_head_node(&shared->free_nodes));
	SpinLockRelease(&shared->pool_mutex);
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_LIMIT),
				 errmsg("LimitExceededException: too many shards have puts in flight"),
				 errdetail("This transaction has puts in flight on %d shards; beyond %d, a transaction draws on a pool shared by all sessions, and that is used up.",
						   nheld, OWN_NODES),
				 errhint("Commit transactions that put to many shards sooner.")));
	return node;
}

/* Give a node back: to this backend's own set or to the shared pool. */
static void
return_node(InflightNode *node)
{
	int			i = own_index(node);

	if (i >= 0)
	{
		own_in_use &= ~((uint32) 1 << i);
		return;
	}
	SpinLockAcquire(&shared->pool_mutex);
	dlist_push_head(&shared->free_nodes, &node->link);
	SpinLockRelease(&shared->pool_mutex);
}

/*
 * Serialised allocation for servers that did not preload the library.
 * False when a close committed while this producer waited for the shard's
 * lock (the invalidation it sent has arrived): the caller routes again.
 */
static bool
reserve_without_shmem(StreamInfo *info, StreamShard *shard, int count, int64 floor,
					  int64 *first, TimestampTz *arrival)
{
	LOCKTAG		tag;
	TimestampTz now;

	SET_STREAM_LOCKTAG(tag, STREAM_LOCK_SHARD_PUT, info->stream_id, shard->shard_index);
	if (LockAcquire(&tag, ExclusiveLock, false, false) != LOCKACQUIRE_ALREADY_CLEAR)
	{
		AcceptInvalidationMessages();
		if (stream_catalog_is_stale())
			return false;
	}

	/* holding the lock until commit, the committed maximum is exact */
	now = GetCurrentTimestamp();
	/* numbers of rolled-back puts are not handed out again either */
	*first = seqmark_claim(Max(Max(chunk_max_seq(info, shard) + 1, shard->starting_seq), floor),
						   seq_bucket_now(now), count);
	*arrival = now;
	return true;
}

/*
 * Reserve count numbers on st, which the caller found with shared->lock
 * held in shared mode; with existing == NULL the transaction's node for
 * the shard is node (taken by the caller).  RESERVE_MARK, with *need set,
 * when the counter would pass the durable mark (the caller moves the mark
 * and tries again); RESERVE_CLOSED, with *pending, when the shard is
 * closed.  Caller holds shared->lock; st->mutex is taken here.
 */
typedef enum ReserveResult
{
	RESERVE_DONE,
	RESERVE_MARK,
	RESERVE_CLOSED
} ReserveResult;

static ReserveResult
reserve_on(ShardState *st, InflightNode *existing, InflightNode *node, int count,
		   int64 floor, TimestampTz now, int64 known_mark, int64 *first, TimestampTz *arrival,
		   int64 *need, bool *pending)
{
	SpinLockAcquire(&st->mutex);
	if (unlikely(st->closed))
	{
		*pending = TransactionIdIsValid(st->closer_xid);
		SpinLockRelease(&st->mutex);
		return RESERVE_CLOSED;
	}
	st->reserved = Max(st->reserved, known_mark);
	*first = seq_first_of_run(Max(st->next_seq, floor), seq_bucket_now(now), count);
	*need = *first + count;
	if (*need > st->reserved)
	{
		SpinLockRelease(&st->mutex);
		return RESERVE_MARK;
	}
	st->next_seq = *need;
	if (now < st->last_arrival)
		now = st->last_arrival;
	st->last_arrival = now;
	if (existing == NULL)
	{
		node->min_seq = *first;
		node->max_seq = *need - 1;
		node->pid = MyProcPid;
		node->xact_start = GetCurrentTransactionStartTimestamp();
		dlist_push_tail(&st->inflight, &node->link);
	}
	else
		existing->max_seq = *need - 1;	/* in flight with a lower number */
	SpinLockRelease(&st->mutex);
	if (existing == NULL)
		held_add(st, node);
	*arrival = now;
	return RESERVE_DONE;
}

/* The node to register st with, or NULL when already registered; shared->lock held. */
static InflightNode *
node_for_new_shard(ShardState *st, InflightNode **existing)
{
	*existing = held_node_for(st);
	if (*existing != NULL)
		return NULL;
	if (nheld >= stream_max_shards_per_xact)
	{
		LWLockRelease(shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_LIMIT),
				 errmsg("LimitExceededException: a transaction may put to at most %d shards",
						stream_max_shards_per_xact),
				 errhint("Commit more often, or raise stream.max_shards_per_transaction.")));
	}
	return take_free_node();
}

/*
 * Reserve counts[i] consecutive numbers on each of n distinct shards for
 * the current transaction and stamp their arrival times (monotonic per
 * shard); firsts[i] and arrivals[i] for shards[i].  The shards' counters
 * are found under one acquisition of shared->lock (the per-shard cost of a
 * put over many shards); a counter to build, or a mark to move, drops the
 * lock for that shard and takes it again.  Returns n, or the index of the
 * first shard that is closed (resharded; *pending while the resharding
 * transaction has not ended, for seqalloc_wait_for_closer): the shards
 * before it hold their numbers, which the caller may leave unused.
 */
static int
reserve_many(StreamInfo *info, StreamShard *const *shards, const int *counts, int n,
			 int64 floor, int64 *firsts, TimestampTz *arrivals, bool *pending)
{
	TimestampTz now;
	int64		known_mark = 0;
	int			i = 0;

	*pending = false;
	xact_put = true;
	if (shared == NULL)
	{
		for (i = 0; i < n; i++)
			if (!reserve_without_shmem(info, shards[i], counts[i], floor, &firsts[i], &arrivals[i]))
				return i;
		return n;
	}

	held_reserve(n);
	now = GetCurrentTimestamp();
	while (i < n)
	{
		ShardState *st = shard_state_locked(info, shards[i]);
		ReserveResult r = RESERVE_DONE;
		int64		need = 0;

		for (;;)
		{
			InflightNode *existing;
			InflightNode *node;
			ShardKey	key;

			/* registered by reserve_on, under the shard's mutex, with the first number */
			node = node_for_new_shard(st, &existing);
			r = reserve_on(st, existing, node, counts[i], floor, now, known_mark,
						   &firsts[i], &arrivals[i], &need, pending);
			if (r != RESERVE_DONE)
			{
				if (node != NULL)
					return_node(node);
				break;
			}
			known_mark = 0;
			if (++i == n)
				break;
			/* the next shard's counter, if it is built, under the same lock */
			shard_key(info, shards[i], &key);
			st = hash_search(shard_table, &key, HASH_FIND, NULL);
			if (st == NULL || !st->initialized)
				break;
		}
		LWLockRelease(shared->lock);

		if (r == RESERVE_CLOSED)
			return i;
		/* past the durable mark: move it (rare), holding nothing shared */
		if (r == RESERVE_MARK)
			known_mark = seqmark_advance(need);
	}
	return n;
}

/* See seqalloc.h: reserve_many without a floor. */
int
seqalloc_try_reserve_many(StreamInfo *info, StreamShard *const *shards, const int *counts,
						  int n, int64 *firsts, TimestampTz *arrivals, bool *pending)
{
	return reserve_many(info, shards, counts, n, 0, firsts, arrivals, pending);
}

/*
 * Reserve count consecutive numbers on a shard for the current transaction
 * and stamp their arrival time (monotonic per shard): the first in *first.
 * False when the shard is closed (resharded); *pending when the
 * resharding transaction has not ended, for seqalloc_wait_for_closer.
 */
bool
seqalloc_try_reserve(StreamInfo *info, StreamShard *shard, int count,
					 int64 *first_out, TimestampTz *arrival, bool *pending)
{
	return reserve_many(info, &shard, &count, 1, 0, first_out, arrival, pending) == 1;
}

/*
 * The same, the first number at least floor: the counter jumps there (the
 * numbers skipped are gaps, as those of rolled-back puts are).
 */
bool
seqalloc_try_reserve_above(StreamInfo *info, StreamShard *shard, int count, int64 floor,
						   int64 *first_out, TimestampTz *arrival, bool *pending)
{
	return reserve_many(info, &shard, &count, 1, floor, first_out, arrival, pending) == 1;
}

/* Whether seq may have been handed out in this database: it lies below the durable mark. */
bool
seqalloc_was_issued(int64 seq)
{
	return seq >= 0 && seq < seqmark_read();
}

/* The same where no shard can close (delivery's direct put): the first number. */
int64
seqalloc_reserve(StreamInfo *info, StreamShard *shard, int count,
				 TimestampTz *arrival)
{
	int64		first;
	bool		pending;

	if (!seqalloc_try_reserve(info, shard, count, &first, arrival, &pending))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("InternalFailure: shard %d of stream %s is closed",
						shard->shard_index, info->name)));
	return first;
}

/*
 * After a refusal: while the close is pending, wait for the stream's
 * reshard lock, which the resharding transaction holds until it commits
 * or rolls back (the subtransaction that took it, too), so that its
 * catalog change is committed or gone (this transaction's own lock does
 * not make it wait).  Then make the catalog cache reload.
 */
void
seqalloc_wait_for_closer(StreamInfo *info, bool pending)
{
	if (pending)
	{
		LOCKTAG		tag;

		SET_STREAM_LOCKTAG(tag, STREAM_LOCK_RESHARD, info->stream_id, 0);
		(void) LockAcquire(&tag, ShareLock, false, false);
		LockRelease(&tag, ShareLock, false);
	}
	AcceptInvalidationMessages();
	stream_catalog_forget();
}

/*
 * Close a shard for a split or merge: from now on it refuses reservations,
 * and its ending sequence number, returned, lies above every number it
 * handed out.  The close is pending until this transaction ends (see the
 * file header); the caller holds the stream's reshard lock.  Without
 * shared memory the shard's put lock is taken instead, held until commit,
 * once the producers in flight on the shard have committed.
 */
int64
seqalloc_close_shard(StreamInfo *info, StreamShard *shard)
{
	ShardState *st;
	int64		ending;
	TransactionId xid = GetCurrentTransactionId();

	if (shared == NULL)
	{
		LOCKTAG		tag;

		SET_STREAM_LOCKTAG(tag, STREAM_LOCK_SHARD_PUT, info->stream_id, shard->shard_index);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		return seqmark_claim(Max(chunk_max_seq(info, shard) + 1, shard->starting_seq),
							 seq_bucket_now(GetCurrentTimestamp()), 1);
	}

	if (nclosing >= closing_cap)
	{
		closing_cap = Max(16, closing_cap * 2);
		closing = closing ? repalloc(closing, closing_cap * sizeof(ClosingShard))
			: MemoryContextAlloc(TopMemoryContext, closing_cap * sizeof(ClosingShard));
	}
	st = shard_state_locked(info, shard);
	SpinLockAcquire(&st->mutex);
	if (st->closed)
	{
		SpinLockRelease(&st->mutex);
		LWLockRelease(shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_IN_USE),
				 errmsg("ResourceInUseException: Shard shardId-%012d in stream %s under account %s is not active.",
						shard->shard_index, info->name, STREAM_ACCOUNT)));
	}
	/* the next number is never handed out: every one taken lies below */
	ending = st->next_seq;
	st->next_seq = ending + 1;
	st->closed = true;
	st->closer_xid = xid;
	SpinLockRelease(&st->mutex);
	LWLockRelease(shared->lock);
	closing[nclosing].shard = st;
	closing[nclosing].subid = GetCurrentSubTransactionId();
	nclosing++;
	return ending;
}

/*
 * A standby cannot know which numbers are still in flight on the primary,
 * so it could not read without skipping: refuse rather than guess.
 */
static void
refuse_in_recovery(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("reading a stream on a hot standby is not supported"),
				 errdetail("A standby does not know which sequence numbers are still in flight on the primary."),
				 errhint("Read streams on the primary.")));
}

/*
 * The shard's stable sequence: every number below it belongs to a
 * transaction that has ended.  Call before taking the snapshot to read with.
 */
int64
seqalloc_stable_seq(StreamInfo *info, StreamShard *shard)
{
	ShardState *st;
	int64		stable;

	refuse_in_recovery();

	if (shared == NULL)
	{
		/*
		 * Producers serialise and commit in order: what is committed is
		 * stable.  A committed close waited for every producer of the shard.
		 */
		if (shard->closed)
			return shard->ending_seq + 1;
		return chunk_max_seq(info, shard) + 1;
	}

	st = shard_state_locked(info, shard);
	SpinLockAcquire(&st->mutex);
	stable = stable_locked(st);
	SpinLockRelease(&st->mutex);
	LWLockRelease(shared->lock);
	return stable;
}

/*
 * What holds the shard's stable sequence back: the counter, and the
 * transaction in flight with the lowest number.
 */
void
seqalloc_holdback(StreamInfo *info, StreamShard *shard, SeqHoldback *hb)
{
	ShardState *st;
	dlist_iter	iter;
	InflightNode *lowest = NULL;

	refuse_in_recovery();
	memset(hb, 0, sizeof(*hb));
	if (shared == NULL)
	{
		/* producers serialise on a lock until commit: nothing is held back unseen */
		hb->stable = hb->next = chunk_max_seq(info, shard) + 1;
		return;
	}
	st = shard_state_locked(info, shard);
	SpinLockAcquire(&st->mutex);
	hb->stable = stable_locked(st);
	hb->next = st->next_seq;
	dlist_foreach(iter, &st->inflight)
	{
		InflightNode *node = dlist_container(InflightNode, link, iter.cur);

		hb->inflight++;
		if (lowest == NULL || node->min_seq < lowest->min_seq)
			lowest = node;
	}
	if (lowest != NULL)
	{
		hb->holder_pid = lowest->pid;
		hb->holder_xact_start = lowest->xact_start;
	}
	SpinLockRelease(&st->mutex);
	LWLockRelease(shared->lock);
}

/*
 * Drop the counters of a deleted stream.  Entries with puts still in flight
 * stay; they are harmless and go when the server restarts.  Users of an
 * entry hold shared->lock, so none is removed under them; if the deletion
 * rolls back, counters are rebuilt from the committed records on next use.
 */
static void
seqalloc_forget_stream(int32 stream_id)
{
	HASH_SEQ_STATUS status;
	ShardState *st;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, shard_table);
	while ((st = hash_seq_search(&status)) != NULL)
	{
		bool		idle;

		if (st->key.dbid != MyDatabaseId || st->key.stream_id != stream_id)
			continue;
		SpinLockAcquire(&st->mutex);
		idle = entry_idle_locked(st);
		SpinLockRelease(&st->mutex);
		if (idle && held_node_for(st) == NULL)
			drop_entry(st);
	}
	LWLockRelease(shared->lock);
}

/*
 * Wait until the shard's stable sequence passes from_seq (new records may
 * be readable) or timeout_ms elapse.  The wake-up comes from the committing
 * transaction itself, through the shard's condition variable.  Returns
 * true when there may be something new to read.
 */
bool
seqalloc_wait_for_records(StreamInfo *info, StreamShard *shard, int64 from_seq,
						  long timeout_ms, bool (*stop) (void *arg), void *stop_arg)
{
	ShardState *st;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	bool		found = false;

	refuse_in_recovery();

	if (shared == NULL)
	{
		/* no shared memory: poll every 10 ms */
		for (;;)
		{
			if (seqalloc_stable_seq(info, shard) > from_seq)
				return true;
			if (GetCurrentTimestamp() >= deadline || (stop != NULL && stop(stop_arg)))
				return false;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}

	st = shard_state_locked(info, shard);
	SpinLockAcquire(&st->mutex);
	st->subscribers++;
	SpinLockRelease(&st->mutex);
	LWLockRelease(shared->lock);

	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&st->wakeup);
		for (;;)
		{
			long		remaining;

			SpinLockAcquire(&st->mutex);
			/* a committed close ends the shard: the reader sees its end */
			found = stable_locked(st) > from_seq ||
				(st->closed && !TransactionIdIsValid(st->closer_xid));
			SpinLockRelease(&st->mutex);
			if (found)
				break;
			remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (remaining <= 0 || (stop != NULL && stop(stop_arg)))
				break;
			(void) ConditionVariableTimedSleep(&st->wakeup, remaining, PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		/* off the wait list before the entry may be removed */
		ConditionVariableCancelSleep();
		SpinLockAcquire(&st->mutex);
		st->subscribers--;
		SpinLockRelease(&st->mutex);
	}
	PG_END_TRY();
	return found;
}

/* Wake every session waiting for the shard's records (they look again, and at stop). */
void
seqalloc_wake_subscribers(StreamInfo *info, StreamShard *shard)
{
	ShardState *st;

	if (shared == NULL)
		return;
	st = shard_state_locked(info, shard);
	LWLockRelease(shared->lock);
	/* an entry evicted meanwhile stays in shared memory: at worst a spurious wake-up */
	ConditionVariableBroadcast(&st->wakeup);
}

/* ---- SQL-callable helpers for the control plane ---- */

PG_FUNCTION_INFO_V1(stream_forget_stream);
PG_FUNCTION_INFO_V1(stream_close_shard);

/*
 * stream_internal._close_shard(stream_id int, shard_index int) RETURNS
 * bigint: close an open shard for a split or merge (the caller holds the
 * stream's reshard lock and records the ending sequence number returned).
 */
Datum
stream_close_shard(PG_FUNCTION_ARGS)
{
	StreamInfo *info = stream_lookup_by_id(PG_GETARG_INT32(0), false);
	StreamShard *shard = NULL;
	LOCKTAG		tag;

	/* only inside a reshard: producers it refuses wait for this lock */
	SET_STREAM_LOCKTAG(tag, STREAM_LOCK_RESHARD, info->stream_id, 0);
	if (!LockHeldByMe(&tag, ExclusiveLock))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream_internal._close_shard needs the stream's reshard lock"),
				 errhint("Close shards through stream.split_shard, merge_shards or update_shard_count.")));
	for (int i = 0; i < info->nshards; i++)
		if (info->shards[i].shard_index == PG_GETARG_INT32(1))
			shard = &info->shards[i];
	if (shard == NULL || shard->closed)
		ereport(ERROR,
				(errcode(ERRCODE_STREAM_IN_USE),
				 errmsg("ResourceInUseException: Shard shardId-%012d in stream %s under account %s is not active.",
						PG_GETARG_INT32(1), info->name, STREAM_ACCOUNT)));
	PG_RETURN_INT64(seqalloc_close_shard(info, shard));
}

/* stream_internal._forget_stream(stream_id int): called by delete_stream */
Datum
stream_forget_stream(PG_FUNCTION_ARGS)
{
	seqalloc_forget_stream(PG_GETARG_INT32(0));
	PG_RETURN_VOID();
}
