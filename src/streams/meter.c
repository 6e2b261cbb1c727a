/*
 * meter.c: the shared table of per-shard meters (meter.h).
 *
 * The table.  stream.metrics_slots slots, open addressing: a key (database,
 * stream table, stream id, shard) hashes to a home slot, and lives in the
 * first free slot of the METER_PROBES slots from there.  Lookups on the hot
 * path take no lock: they read the slots' keys racily and confirm a match
 * under the slot's spinlock.  Claiming a slot for a new key, and evicting,
 * happens under the table's LWLock (the insertion lock), so two backends
 * never claim two slots for one key, and no key changes while a claim
 * looks for a place.  A slot once used is never again "free": it is "dead"
 * after eviction, so that a lookup does not stop short of a key behind it.
 *
 * When the table is full.  A slot is evicted when its counts are flushed and
 * it has been idle for METER_EVICT_IDLE (its buckets are full again by
 * then), or when it has been idle for longer than stream.metrics_retention
 * (a deleted stream's or a dropped database's).  When the METER_PROBES
 * slots of a new key hold none to take, the put or read goes on unmetered:
 * neither limited nor counted.  It never waits or fails for want of a slot;
 * the worker logs how many operations went unmetered.
 *
 * Counts.  Each slot keeps METER_MINUTES minutes in a ring (minute mod
 * METER_MINUTES): per counter what was counted and what of it the worker
 * has flushed.  The worker takes the differences (meter_collect), writes
 * them in its own transaction, and only after that committed adds them to
 * the flushed counts (meter_mark_flushed): a failed flush is retried, none
 * is counted twice.  A ring entry needed for a new minute while it still
 * holds unflushed counts (the worker has not flushed for METER_MINUTES
 * minutes) keeps them: they are carried over into the new minute, so
 * counts are attributed late rather than lost.
 *
 * Restarts and crashes.  At a clean shutdown (the control file says so),
 * the postmaster saves every unflushed count to pg_stat/stream_meters.stat
 * after all other processes have exited; the next start loads the file
 * and the workers flush its counts under their minutes.  After a crash, or
 * an immediate shutdown, what was counted since the last flush (at most
 * stream.metrics_flush_interval) is lost, as shared memory is.  Token
 * buckets start full after a restart.
 *
 * Locking rules.  A slot's spinlock guards all of the slot; its key and
 * state change only with the insertion lock held as well.  Under a
 * spinlock nothing raises an error, allocates or takes another lock; the
 * insertion lock is never acquired with a spinlock held.  The postmaster's
 * save at exit runs when no other process is left.
 */
#include "streams/meter.h"
#include "streams/shard.h"

#include <unistd.h>

#include "catalog/pg_control.h"
#include "common/controldata_utils.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define METER_MINUTES		3		/* ring of minutes per slot */
#define METER_PROBES		64		/* slots a key may live in, from its home */
#define METER_EVICT_IDLE	(5 * USECS_PER_SEC)	/* the read allowance is back by then */
#define METER_FILE			"pg_stat/stream_meters.stat"
#define METER_FILE_MAGIC	0x5354524d	/* "STRM" */
#define METER_FILE_VERSION	1

/* bucket sizes: one second of each limit */
#define WRITE_BYTES_CAP		((double) SHARD_WRITE_BYTES_PER_SEC)
#define WRITE_RECORDS_CAP	((double) SHARD_WRITE_RECORDS_PER_SEC)
#define READ_BYTES_CAP		((double) SHARD_READ_BYTES_PER_SEC)
#define READ_CALLS_CAP		((double) SHARD_READ_CALLS_PER_SEC)

typedef struct MeterKey
{
	Oid			dbid;
	Oid			relid;
	int32		stream_id;
	int32		shard_index;
} MeterKey;

typedef struct MeterMinute
{
	int64		minute;			/* 0: not used yet */
	uint64		count[METER_NCOUNTERS];
	uint64		flushed[METER_NCOUNTERS];
	int64		age_max;		/* largest iterator age measured, -1: none */
	int64		age_flushed;	/* largest iterator age flushed, -1: none */
} MeterMinute;

typedef enum SlotState
{
	SLOT_FREE = 0,				/* never used: a lookup stops here */
	SLOT_USED,
	SLOT_DEAD					/* evicted: free to claim, a lookup goes on */
} SlotState;

typedef struct MeterSlot
{
	slock_t		mutex;
	pg_atomic_uint32 state;		/* SlotState */
	uint32		generation;		/* bumped at every claim */
	MeterKey	key;
	TimestampTz last_used;
	int64		bucket_at;		/* bucket clock (us) of the last refill */
	double		write_bytes;
	double		write_records;
	double		read_bytes;		/* may go below zero: a large read is paid off later */
	double		read_calls;
	MeterMinute minutes[METER_MINUTES];
} MeterSlot;

typedef struct MeterShared
{
	LWLock	   *lock;			/* the insertion lock */
	int			nslots;
	pg_atomic_uint64 unmetered;	/* since the worker last took the count */
	pg_atomic_uint64 unmetered_total;	/* since start-up */
	MeterSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} MeterShared;

/* One saved minute of the file written at shutdown. */
typedef struct MeterFileEntry
{
	MeterKey	key;
	int64		minute;
	uint64		count[METER_NCOUNTERS];
	int64		age_max;
} MeterFileEntry;

static MeterShared *meter = NULL;

static void meter_save_at_exit(int code, Datum arg);
static void meter_load_file(void);

Size
meter_shmem_size(void)
{
	return add_size(offsetof(MeterShared, slots),
					mul_size(stream_metrics_slots, sizeof(MeterSlot)));
}

void
meter_shmem_init(void)
{
	bool		found;

	meter = ShmemInitStruct("stream meters", meter_shmem_size(), &found);
	if (!found)
	{
		meter->lock = &(GetNamedLWLockTranche("stream meters"))[0].lock;
		meter->nslots = stream_metrics_slots;
		pg_atomic_init_u64(&meter->unmetered, 0);
		pg_atomic_init_u64(&meter->unmetered_total, 0);
		for (int i = 0; i < meter->nslots; i++)
		{
			SpinLockInit(&meter->slots[i].mutex);
			pg_atomic_init_u32(&meter->slots[i].state, SLOT_FREE);
			meter->slots[i].generation = 0;
		}
	}
	/* the postmaster: counts of the last clean shutdown, and saving them at the next */
	if (!IsUnderPostmaster)
	{
		if (!found)
			meter_load_file();
		on_shmem_exit(meter_save_at_exit, (Datum) 0);
	}
}

/* ---- slots ---- */

static inline void
make_key(StreamInfo *info, StreamShard *shard, MeterKey *key)
{
	key->dbid = MyDatabaseId;
	key->relid = info->relid;
	key->stream_id = info->stream_id;
	key->shard_index = shard->shard_index;
}

static inline bool
key_equal(const MeterKey *a, const MeterKey *b)
{
	return a->dbid == b->dbid && a->relid == b->relid &&
		a->stream_id == b->stream_id && a->shard_index == b->shard_index;
}

static inline uint32
key_home(const MeterKey *key)
{
	return hash_bytes((const unsigned char *) key, sizeof(MeterKey)) % (uint32) meter->nslots;
}

static inline MeterSlot *
slot_at(uint32 home, int probe)
{
	return &meter->slots[(home + probe) % (uint32) meter->nslots];
}

/* The slot holding key, read without locks (confirm under its mutex), or NULL. */
static MeterSlot *
slot_probe(const MeterKey *key, uint32 home)
{
	for (int p = 0; p < Min(METER_PROBES, meter->nslots); p++)
	{
		MeterSlot  *s = slot_at(home, p);
		uint32		state = pg_atomic_read_u32(&s->state);

		if (state == SLOT_FREE)
			return NULL;
		if (state == SLOT_USED && key_equal(&s->key, key))
			return s;
	}
	return NULL;
}

static void
minutes_reset(MeterSlot *s)
{
	for (int r = 0; r < METER_MINUTES; r++)
	{
		MeterMinute *e = &s->minutes[r];

		e->minute = 0;
		memset(e->count, 0, sizeof(e->count));
		memset(e->flushed, 0, sizeof(e->flushed));
		e->age_max = -1;
		e->age_flushed = -1;
	}
}

/* Whether every count of the slot is flushed; its mutex held. */
static bool
slot_flushed(const MeterSlot *s)
{
	for (int r = 0; r < METER_MINUTES; r++)
	{
		const MeterMinute *e = &s->minutes[r];

		if (e->age_max > e->age_flushed)
			return false;
		for (int c = 0; c < METER_NCOUNTERS; c++)
			if (e->count[c] != e->flushed[c])
				return false;
	}
	return true;
}

/* Claim s for key: full buckets, no counts; mutex and insertion lock held. */
static void
slot_assign(MeterSlot *s, const MeterKey *key, TimestampTz now)
{
	s->key = *key;
	s->generation++;
	s->last_used = now;
	s->bucket_at = meter_bucket_clock(now);
	s->write_bytes = WRITE_BYTES_CAP;
	s->write_records = WRITE_RECORDS_CAP;
	s->read_bytes = READ_BYTES_CAP;
	s->read_calls = READ_CALLS_CAP;
	minutes_reset(s);
	pg_atomic_write_u32(&s->state, SLOT_USED);
}

/*
 * Claim a slot for key under the insertion lock: a free or dead one among
 * its probes, else an evictable one.  Returns false when there is none.
 */
static bool
slot_claim(const MeterKey *key, uint32 home, TimestampTz now)
{
	int			nprobes = Min(METER_PROBES, meter->nslots);
	int64		stale = (int64) stream_metrics_retention_min * USECS_PER_MINUTE;
	bool		done = false;

	LWLockAcquire(meter->lock, LW_EXCLUSIVE);
	if (slot_probe(key, home) != NULL)
		done = true;			/* claimed meanwhile */
	for (int p = 0; p < nprobes && !done; p++)
	{
		MeterSlot  *s = slot_at(home, p);

		if (pg_atomic_read_u32(&s->state) != SLOT_USED)
		{
			SpinLockAcquire(&s->mutex);
			slot_assign(s, key, now);
			SpinLockRelease(&s->mutex);
			done = true;
		}
	}
	for (int p = 0; p < nprobes && !done; p++)
	{
		MeterSlot  *s = slot_at(home, p);
		int64		idle;

		SpinLockAcquire(&s->mutex);
		idle = now - s->last_used;
		if ((idle >= METER_EVICT_IDLE && slot_flushed(s)) || idle >= stale)
		{
			slot_assign(s, key, now);
			done = true;
		}
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(meter->lock);
	return done;
}

/*
 * The shard's slot with its mutex held, claimed if need be; NULL (and
 * counted as unmetered) when the table has no room, or without shared memory.
 */
static MeterSlot *
slot_lock(StreamInfo *info, StreamShard *shard, TimestampTz now)
{
	MeterKey	key;
	uint32		home;

	if (meter == NULL)
		return NULL;
	make_key(info, shard, &key);
	home = key_home(&key);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		MeterSlot  *s = slot_probe(&key, home);

		if (s != NULL)
		{
			SpinLockAcquire(&s->mutex);
			if (pg_atomic_read_u32(&s->state) == SLOT_USED && key_equal(&s->key, &key))
			{
				s->last_used = Max(s->last_used, now);
				return s;
			}
			SpinLockRelease(&s->mutex);
		}
		if (!slot_claim(&key, home, now))
			break;
	}
	pg_atomic_fetch_add_u64(&meter->unmetered, 1);
	pg_atomic_fetch_add_u64(&meter->unmetered_total, 1);
	return NULL;
}

/*
 * The ring entry of minute; mutex held.  An entry still holding another
 * minute's unflushed counts carries them into this one (see the head).  A
 * time behind the entry's (backends' clocks race at a minute's turn)
 * counts into the entry's later minute.
 */
static MeterMinute *
minute_entry(MeterSlot *s, int64 minute)
{
	MeterMinute *e = &s->minutes[minute % METER_MINUTES];

	if (e->minute >= minute)
		return e;
	for (int c = 0; c < METER_NCOUNTERS; c++)
	{
		e->count[c] -= e->flushed[c];
		e->flushed[c] = 0;
	}
	if (e->age_max <= e->age_flushed)
		e->age_max = -1;
	e->age_flushed = -1;
	e->minute = minute;
	return e;
}

int64
meter_bucket_clock(TimestampTz now)
{
	if (stream_throttle_test_clock_ms >= 0)
		return (int64) stream_throttle_test_clock_ms * 1000;
	return now;
}

/* Refill the buckets for the time since the last refill; mutex held. */
static void
refill(MeterSlot *s, TimestampTz now)
{
	int64		clock = meter_bucket_clock(now);
	double		secs;

	if (clock <= s->bucket_at)
	{
		/* a clock behind (the tests' clock set back): start from it, adding nothing */
		s->bucket_at = clock;
		return;
	}
	secs = (double) (clock - s->bucket_at) / USECS_PER_SEC;
	s->bucket_at = clock;
	s->write_bytes = Min(WRITE_BYTES_CAP, s->write_bytes + secs * SHARD_WRITE_BYTES_PER_SEC);
	s->write_records = Min(WRITE_RECORDS_CAP, s->write_records + secs * SHARD_WRITE_RECORDS_PER_SEC);
	s->read_bytes = Min(READ_BYTES_CAP, s->read_bytes + secs * SHARD_READ_BYTES_PER_SEC);
	s->read_calls = Min(READ_CALLS_CAP, s->read_calls + secs * SHARD_READ_CALLS_PER_SEC);
}

/* ---- the hot paths ---- */

void
meter_count_write(StreamInfo *info, StreamShard *shard, int records, uint64 bytes,
				  TimestampTz now)
{
	MeterSlot  *s;
	MeterMinute *e;

	if (!stream_track_metrics)
		return;
	s = slot_lock(info, shard, now);
	if (s == NULL)
		return;
	e = minute_entry(s, meter_minute_of(now));
	e->count[METER_INCOMING_RECORDS] += records;
	e->count[METER_INCOMING_BYTES] += bytes;
	SpinLockRelease(&s->mutex);
}

int
meter_admit_write(StreamInfo *info, StreamShard *shard, const uint32 *sizes, int n,
				  bool *refused, TimestampTz now)
{
	MeterSlot  *s = slot_lock(info, shard, now);
	MeterMinute *e;
	uint64		bytes = 0;
	int			nrefused = 0;

	if (s == NULL)
	{
		memset(refused, 0, sizeof(bool) * n);
		return 0;
	}
	refill(s, now);
	for (int i = 0; i < n; i++)
	{
		refused[i] = s->write_records < 1.0 || s->write_bytes < (double) sizes[i];
		if (refused[i])
		{
			nrefused++;
			continue;
		}
		s->write_records -= 1.0;
		s->write_bytes -= (double) sizes[i];
		bytes += sizes[i];
	}
	e = minute_entry(s, meter_minute_of(now));
	e->count[METER_INCOMING_RECORDS] += n - nrefused;
	e->count[METER_INCOMING_BYTES] += bytes;
	e->count[METER_WRITE_THROTTLED] += nrefused;
	SpinLockRelease(&s->mutex);
	return nrefused;
}

bool
meter_admit_read(StreamInfo *info, StreamShard *shard, TimestampTz now)
{
	MeterSlot  *s = slot_lock(info, shard, now);
	bool		ok;

	if (s == NULL)
		return true;
	refill(s, now);
	/* a call may start while any byte is left; what it reads is paid after */
	ok = s->read_calls >= 1.0 && s->read_bytes > 0;
	if (ok)
		s->read_calls -= 1.0;
	else
		minute_entry(s, meter_minute_of(now))->count[METER_READ_THROTTLED]++;
	SpinLockRelease(&s->mutex);
	return ok;
}

void
meter_count_read(StreamInfo *info, StreamShard *shard, int records, uint64 bytes,
				 int64 iterator_age_ms, bool debit, TimestampTz now)
{
	MeterSlot  *s;
	MeterMinute *e;

	if (!stream_track_metrics && !debit)
		return;
	s = slot_lock(info, shard, now);
	if (s == NULL)
		return;
	if (debit)
		s->read_bytes -= (double) bytes;
	if (!stream_track_metrics)
	{
		SpinLockRelease(&s->mutex);
		return;
	}
	e = minute_entry(s, meter_minute_of(now));
	e->count[METER_OUTGOING_RECORDS] += records;
	e->count[METER_OUTGOING_BYTES] += bytes;
	if (iterator_age_ms > e->age_max)
		e->age_max = iterator_age_ms;
	SpinLockRelease(&s->mutex);
}

char *
meter_rate_exceeded_message(StreamInfo *info, StreamShard *shard)
{
	return psprintf("Rate exceeded for shard %s in stream %s under account %s.",
					shard_id_text(shard->shard_index), info->name, STREAM_ACCOUNT);
}

void
meter_raise_rate_exceeded(StreamInfo *info, StreamShard *shard)
{
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_THROUGHPUT),
			 errmsg("ProvisionedThroughputExceededException: %s",
					meter_rate_exceeded_message(info, shard)),
			 errdetail("A shard takes 1 MiB and 1,000 records per second of writes and serves 2 MiB and 5 get_records calls per second of reads (stream.enforce_shard_limits is on)."),
			 errhint("Retry with back-off, or spread the records over more shards.")));
}

/* ---- the worker's side ---- */

int
meter_collect(Oid dbid, MeterDelta **deltas)
{
	int			cap = 64;
	int			n = 0;
	MeterDelta *out;

	if (meter == NULL)
	{
		*deltas = NULL;
		return 0;
	}
	out = palloc(sizeof(MeterDelta) * cap);
	for (int i = 0; i < meter->nslots; i++)
	{
		MeterSlot  *s = &meter->slots[i];
		MeterDelta	found[METER_MINUTES];
		int			nfound = 0;

		if (pg_atomic_read_u32(&s->state) != SLOT_USED || s->key.dbid != dbid)
			continue;
		SpinLockAcquire(&s->mutex);
		if (pg_atomic_read_u32(&s->state) == SLOT_USED && s->key.dbid == dbid)
		{
			for (int r = 0; r < METER_MINUTES; r++)
			{
				MeterMinute *e = &s->minutes[r];
				MeterDelta *d = &found[nfound];
				bool		any = e->age_max > e->age_flushed;

				if (e->minute == 0)
					continue;
				for (int c = 0; c < METER_NCOUNTERS; c++)
				{
					d->count[c] = e->count[c] - e->flushed[c];
					any |= d->count[c] != 0;
				}
				if (!any)
					continue;
				d->slot = i;
				d->generation = s->generation;
				d->ring = r;
				d->relid = s->key.relid;
				d->stream_id = s->key.stream_id;
				d->shard_index = s->key.shard_index;
				d->minute = e->minute;
				d->iterator_age_ms = e->age_max > e->age_flushed ? e->age_max : -1;
				nfound++;
			}
		}
		SpinLockRelease(&s->mutex);

		if (n + nfound > cap)
		{
			cap *= 2;
			out = repalloc(out, sizeof(MeterDelta) * cap);
		}
		memcpy(out + n, found, sizeof(MeterDelta) * nfound);
		n += nfound;
	}
	*deltas = out;
	return n;
}

void
meter_mark_flushed(const MeterDelta *deltas, int n)
{
	if (meter == NULL)
		return;
	for (int i = 0; i < n; i++)
	{
		const MeterDelta *d = &deltas[i];
		MeterSlot  *s = &meter->slots[d->slot];

		SpinLockAcquire(&s->mutex);
		if (pg_atomic_read_u32(&s->state) == SLOT_USED && s->generation == d->generation)
		{
			/* the same ring entry, even if it moved to a later minute meanwhile */
			MeterMinute *e = &s->minutes[d->ring];

			for (int c = 0; c < METER_NCOUNTERS; c++)
				e->flushed[c] += d->count[c];
			if (d->iterator_age_ms > e->age_flushed)
				e->age_flushed = d->iterator_age_ms;
		}
		SpinLockRelease(&s->mutex);
	}
}

uint64
meter_status(int *used, int *nslots, bool take)
{
	*used = 0;
	*nslots = 0;
	if (meter == NULL)
		return 0;
	*nslots = meter->nslots;
	for (int i = 0; i < meter->nslots; i++)
		if (pg_atomic_read_u32(&meter->slots[i].state) == SLOT_USED)
			(*used)++;
	if (take)
		return pg_atomic_exchange_u64(&meter->unmetered, 0);
	return pg_atomic_read_u64(&meter->unmetered_total);
}

bool
meter_shard_minute(StreamInfo *info, StreamShard *shard, int64 minute, uint64 *counts,
				   int64 *iterator_age_ms)
{
	MeterKey	key;
	MeterSlot  *s;
	bool		found = false;

	if (meter == NULL)
		return false;
	make_key(info, shard, &key);
	s = slot_probe(&key, key_home(&key));
	if (s == NULL)
		return false;
	SpinLockAcquire(&s->mutex);
	if (pg_atomic_read_u32(&s->state) == SLOT_USED && key_equal(&s->key, &key))
	{
		MeterMinute *e = &s->minutes[minute % METER_MINUTES];

		if (e->minute == minute)
		{
			memcpy(counts, e->count, sizeof(e->count));
			*iterator_age_ms = e->age_max;
			found = true;
		}
	}
	SpinLockRelease(&s->mutex);
	return found;
}

/* ---- across a clean shutdown ---- */

/*
 * In the postmaster, when it exits: if the server shut down cleanly, save
 * every unflushed minute.  No other process is left, so no lock is needed;
 * after a crash (or an immediate shutdown) shared memory is not trusted.
 */
static void
meter_save_at_exit(int code, Datum arg)
{
	ControlFileData *cf;
	bool		crc_ok;
	FILE	   *f;
	uint32		header[3] = {METER_FILE_MAGIC, METER_FILE_VERSION, sizeof(MeterFileEntry)};
	bool		ok = true;

	if (code != 0 || meter == NULL)
		return;
	cf = get_controlfile(DataDir, &crc_ok);
	if (!crc_ok || cf->state != DB_SHUTDOWNED)
		return;
	f = AllocateFile(METER_FILE ".tmp", PG_BINARY_W);
	if (f == NULL)
		return;
	ok = fwrite(header, sizeof(header), 1, f) == 1;
	for (int i = 0; i < meter->nslots && ok; i++)
	{
		MeterSlot  *s = &meter->slots[i];

		if (pg_atomic_read_u32(&s->state) != SLOT_USED)
			continue;
		for (int r = 0; r < METER_MINUTES && ok; r++)
		{
			MeterMinute *e = &s->minutes[r];
			MeterFileEntry fe;
			bool		any = e->age_max > e->age_flushed;

			if (e->minute == 0)
				continue;
			memset(&fe, 0, sizeof(fe));
			fe.key = s->key;
			fe.minute = e->minute;
			fe.age_max = e->age_max > e->age_flushed ? e->age_max : -1;
			for (int c = 0; c < METER_NCOUNTERS; c++)
			{
				fe.count[c] = e->count[c] - e->flushed[c];
				any |= fe.count[c] != 0;
			}
			if (any)
				ok = fwrite(&fe, sizeof(fe), 1, f) == 1;
		}
	}
	if (FreeFile(f) != 0)
		ok = false;
	if (ok)
		(void) durable_rename(METER_FILE ".tmp", METER_FILE, LOG);
	else
		(void) unlink(METER_FILE ".tmp");
}

/* In the postmaster at start-up: the counts saved at the last clean shutdown. */
static void
meter_load_file(void)
{
	FILE	   *f = AllocateFile(METER_FILE, PG_BINARY_R);
	uint32		header[3];
	MeterFileEntry fe;
	TimestampTz now = GetCurrentTimestamp();
	int			lost = 0;

	if (f == NULL)
		return;
	if (fread(header, sizeof(header), 1, f) == 1 && header[0] == METER_FILE_MAGIC &&
		header[1] == METER_FILE_VERSION && header[2] == sizeof(MeterFileEntry))
	{
		while (fread(&fe, sizeof(fe), 1, f) == 1)
		{
			uint32		home = key_home(&fe.key);
			MeterSlot  *s = slot_probe(&fe.key, home);
			MeterMinute *e;

			if (s == NULL)
			{
				for (int p = 0; p < Min(METER_PROBES, meter->nslots) && s == NULL; p++)
					if (pg_atomic_read_u32(&slot_at(home, p)->state) != SLOT_USED)
					{
						s = slot_at(home, p);
						slot_assign(s, &fe.key, now);
					}
			}
			if (s == NULL)
			{
				lost++;
				continue;
			}
			e = minute_entry(s, fe.minute);
			for (int c = 0; c < METER_NCOUNTERS; c++)
				e->count[c] += fe.count[c];
			if (fe.age_max > e->age_max)
				e->age_max = fe.age_max;
		}
	}
	FreeFile(f);
	(void) unlink(METER_FILE);
	if (lost > 0)
		ereport(LOG,
				(errmsg("stream: %d saved metric minutes found no slot and were dropped", lost),
				 errhint("Raise stream.metrics_slots.")));
}
