/*-------------------------------------------------------------------------
 *
 * bgw/autoscale.c
 *	  The database worker's on-demand scaling: it follows the write rate of
 *	  every open shard of the database's ON_DEMAND streams, splits the
 *	  shards that stay hot and merges neighbours that stay cold.
 *
 * The rule (README, "Capacity"):
 *	- Every stream.on_demand_scaling_interval the worker looks at each open
 *	  shard's counts of the current minute (and of the minute before, at a
 *	  minute's turn) as shared memory holds them (streams/meter.h: records
 *	  put, and records refused over the limits when they are enforced).  A
 *	  shard's load over the interval since the last look is its share of a
 *	  shard's write capacity: the larger of its bytes per second over
 *	  1 MiB/s and its records per second over 1,000/s.
 *	- Hot: a load of at least stream.on_demand_split_threshold.  A shard
 *	  found hot at every look for stream.on_demand_split_after is split, at
 *	  the hash key that halves the load of its latest records
 *	  (_on_demand_split_key), or not at all when one hash key carries nine
 *	  tenths of it: no split spreads one partition key.
 *	- Cold: a load of at most stream.on_demand_merge_threshold (capped at
 *	  half the split threshold, so that a merged shard is not hot).  Two
 *	  adjacent shards, each cold at every look for
 *	  stream.on_demand_merge_after and together still cold, are merged, the
 *	  coldest pair first, as long as the stream keeps 4 open shards.
 *	- At most one reshard per stream per look, a split before a merge; at
 *	  most RESHARDS_PER_SEC (5) in the database per second, Kinesis' rate
 *	  for SplitShard and MergeShards; a split only within stream.shard_limit.
 *
 * Rules a reader must keep:
 *	- The look is one short read-only unit (unit.c); each reshard is a unit
 *	  of its own (_on_demand_split, _on_demand_merge in
 *	  src/sql/11_capacity.sql), which only tries the locks users can hold
 *	  and answers 'busy' rather than wait: the stream comes again at the
 *	  next look.
 *	- What the worker knows of a shard lives in this backend: after the
 *	  worker restarts, every sustained period starts again.  Shards not seen
 *	  open at a look are forgotten.
 *	- Memory: the shards' trackers in a hash table of their own context,
 *	  kept across looks; a look's lists in the caller's context, reset by
 *	  the caller for each look.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "bgw/worker_int.h"
#include "streams/meter.h"
#include "streams/shard.h"
#include "streams/stream_catalog.h"

#define ON_DEMAND_LIST_QUERY \
	"SELECT stream_id FROM stream.streams WHERE stream_mode = 'ON_DEMAND' AND stream_status = 'ACTIVE' " \
	"ORDER BY stream_id"
#define ON_DEMAND_SPLIT_QUERY	"SELECT stream_internal._on_demand_split($1, $2, $3)"
#define ON_DEMAND_MERGE_QUERY	"SELECT stream_internal._on_demand_merge($1, $2, $3)"
#define SPLIT_SAMPLE_RECORDS	2000	/* the latest records a split key is measured from */

typedef struct ShardKey
{
	int32		stream_id;
	int32		shard_index;
} ShardKey;

/* What the worker knows of one open shard of an on-demand stream. */
typedef struct ShardTrack
{
	ShardKey	key;			/* hash key: first */
	Oid			relid;			/* the stream's table: a recreated stream starts afresh */
	uint64		look;			/* the last look that saw it open */
	TimestampTz at;				/* of that look */
	int64		minute;			/* the counts below are of this minute, as they stood then */
	uint64		records;		/* put */
	uint64		refused;		/* refused over the limits */
	uint64		bytes;			/* put */
	double		load;			/* share of the write capacity over the last interval; -1: none yet */
	TimestampTz hot_since;		/* 0: not hot at the last look */
	TimestampTz cold_since;		/* 0: not cold at the last look */
} ShardTrack;

/* A reshard the look decided on. */
typedef struct Reshard
{
	int32		stream_id;
	char	   *stream_name;
	bool		split;
	int32		a;				/* the shard to split, or the lower of two to merge */
	int32		b;				/* the upper of two to merge */
	double		load;			/* the shard's load, or the pair's */
	char	   *answer;			/* the SQL's, in the caller's context */
} Reshard;

typedef struct Look
{
	MemoryContext context;		/* the caller's: the decisions */
	List	   *reshards;
	bool		extension_missing;
	Reshard    *current;		/* the one reshard_unit runs */
} Look;

static HTAB *tracks = NULL;
static uint64 look_count = 0;
static TimestampTz recent_reshards[RESHARDS_PER_SEC];	/* ring of the latest reshards' times */
static int	recent_next = 0;

static void
tracks_init(void)
{
	HASHCTL		ctl;

	if (tracks != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ShardKey);
	ctl.entrysize = sizeof(ShardTrack);
	ctl.hcxt = AllocSetContextCreate(TopMemoryContext, "stream on-demand scaling",
									 ALLOCSET_SMALL_SIZES);
	tracks = hash_create("stream on-demand shards", 256, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static double
merge_threshold(void)
{
	return Min(stream_on_demand_merge_threshold, stream_on_demand_split_threshold / 2);
}

/*
 * Take the shard's counts now and, from the last look's, its load over
 * the interval between; then whether it is hot or cold, and since when.
 */
static void
measure(ShardTrack *t, StreamInfo *info, StreamShard *shard, TimestampTz now)
{
	int64		minute = meter_minute_of(now);
	uint64		c[METER_NCOUNTERS];
	int64		age;
	uint64		records,
				refused,
				bytes;
	uint64		d_records,
				d_refused,
				d_bytes;
	double		secs;
	TimestampTz from = t->at;

	if (!meter_shard_minute(info, shard, minute, c, &age))
		memset(c, 0, sizeof(c));
	records = c[METER_INCOMING_RECORDS];
	refused = c[METER_WRITE_THROTTLED];
	bytes = c[METER_INCOMING_BYTES];

	if (t->at == 0 || t->minute > minute)
		from = 0;				/* the first look, or a clock set back: measure from now on */
	else if (t->minute == minute)
	{
		/* a slot evicted and claimed again meanwhile restarts from zero */
		d_records = records >= t->records ? records - t->records : records;
		d_refused = refused >= t->refused ? refused - t->refused : refused;
		d_bytes = bytes >= t->bytes ? bytes - t->bytes : bytes;
	}
	else
	{
		uint64		p[METER_NCOUNTERS];

		d_records = records;
		d_refused = refused;
		d_bytes = bytes;
		if (t->minute == minute - 1 && meter_shard_minute(info, shard, t->minute, p, &age))
		{
			/* the rest of the last look's minute, then the new one */
			d_records += p[METER_INCOMING_RECORDS] >= t->records ? p[METER_INCOMING_RECORDS] - t->records : 0;
			d_refused += p[METER_WRITE_THROTTLED] >= t->refused ? p[METER_WRITE_THROTTLED] - t->refused : 0;
			d_bytes += p[METER_INCOMING_BYTES] >= t->bytes ? p[METER_INCOMING_BYTES] - t->bytes : 0;
		}
		else if (t->minute < minute - 1)
			from = Max(from, meter_minute_start(minute));	/* away a minute or more: this minute alone */
	}

	t->at = now;
	t->minute = minute;
	t->records = records;
	t->refused = refused;
	t->bytes = bytes;
	if (from == 0 || now <= from)
		return;

	secs = (double) (now - from) / USECS_PER_SEC;
	/* refused records weigh as much as the average record put */
	if (d_refused > 0 && d_records > 0)
		d_bytes += (uint64) ((double) d_bytes / d_records * d_refused);
	t->load = Max((double) (d_records + d_refused) / secs / SHARD_WRITE_RECORDS_PER_SEC,
				  (double) d_bytes / secs / SHARD_WRITE_BYTES_PER_SEC);

	if (t->load >= stream_on_demand_split_threshold)
	{
		if (t->hot_since == 0)
			t->hot_since = from;
	}
	else
		t->hot_since = 0;
	if (t->load <= merge_threshold())
	{
		if (t->cold_since == 0)
			t->cold_since = from;
	}
	else
		t->cold_since = 0;
}

static bool
sustained(TimestampTz since, int period_ms, TimestampTz now)
{
	return since != 0 && now - since >= (int64) period_ms * 1000;
}

/*
 * One stream: measure its open shards (ordered by hash range) and decide
 * on at most one reshard.
 */
static void
look_at_stream(Look *lk, int32 stream_id, TimestampTz now)
{
	StreamInfo *info = stream_lookup_by_id(stream_id, true);
	ShardTrack **open;
	Reshard    *r = NULL;
	int			hottest = -1;
	int			coldest = -1;
	double		coldest_load = 0;

	if (info == NULL || info->nopen == 0)
		return;
	open = palloc(sizeof(ShardTrack *) * info->nopen);
	for (int i = 0; i < info->nopen; i++)
	{
		StreamShard *shard = info->open_shards[i];
		ShardKey	key = {info->stream_id, shard->shard_index};
		bool		found;
		ShardTrack *t = hash_search(tracks, &key, HASH_ENTER, &found);

		if (!found || t->relid != info->relid)
		{
			memset(t, 0, sizeof(*t));
			t->key = key;
			t->relid = info->relid;
			t->load = -1;
		}
		t->look = look_count;
		measure(t, info, shard, now);
		open[i] = t;
	}

	for (int i = 0; i < info->nopen; i++)
		if (sustained(open[i]->hot_since, stream_on_demand_split_after_ms, now) &&
			(hottest < 0 || open[i]->load > open[hottest]->load))
			hottest = i;
	if (hottest < 0 && info->nopen > ON_DEMAND_INITIAL_SHARDS)
	{
		/* open shards partition the hash range: neighbours in this order are adjacent */
		for (int i = 0; i + 1 < info->nopen; i++)
		{
			double		pair = open[i]->load + open[i + 1]->load;

			if (sustained(open[i]->cold_since, stream_on_demand_merge_after_ms, now) &&
				sustained(open[i + 1]->cold_since, stream_on_demand_merge_after_ms, now) &&
				pair <= merge_threshold() && (coldest < 0 || pair < coldest_load))
			{
				coldest = i;
				coldest_load = pair;
			}
		}
	}
	if (hottest >= 0 || coldest >= 0)
	{
		MemoryContext old = MemoryContextSwitchTo(lk->context);

		r = palloc0(sizeof(Reshard));
		r->stream_id = info->stream_id;
		r->stream_name = pstrdup(info->name);
		r->split = hottest >= 0;
		r->a = open[r->split ? hottest : coldest]->key.shard_index;
		r->b = r->split ? -1 : open[coldest + 1]->key.shard_index;
		r->load = r->split ? open[hottest]->load : coldest_load;
		lk->reshards = lappend(lk->reshards, r);
		MemoryContextSwitchTo(old);
	}
	pfree(open);
}

/* unit: the on-demand streams, each one's shards measured and its reshard decided */
static void
look_unit(void *arg)
{
	Look	   *lk = arg;
	List	   *ids = NIL;
	ListCell   *lc;
	TimestampTz now;

	if (!OidIsValid(get_extension_oid(STREAM_EXTENSION_NAME, true)))
	{
		lk->extension_missing = true;
		return;
	}
	unit_select(ON_DEMAND_LIST_QUERY, 0, NULL, NULL, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ids = lappend_int(ids, DatumGetInt32(d));
	}
	now = GetCurrentTimestamp();
	look_count++;
	foreach(lc, ids)
	{
		CHECK_FOR_INTERRUPTS();
		look_at_stream(lk, lfirst_int(lc), now);
	}
}

/* unit: one reshard the look decided on; its answer into the caller's context */
static void
reshard_unit(void *arg)
{
	Look	   *lk = arg;
	Reshard    *r = lk->current;
	Oid			types[3] = {INT4OID, INT4OID, INT4OID};
	Datum		values[3];
	bool		isnull;
	Datum		d;

	values[0] = Int32GetDatum(r->stream_id);
	values[1] = Int32GetDatum(r->a);
	values[2] = Int32GetDatum(r->split ? SPLIT_SAMPLE_RECORDS : r->b);
	unit_select(r->split ? ON_DEMAND_SPLIT_QUERY : ON_DEMAND_MERGE_QUERY, 3, types, values, false);
	if (SPI_processed != 1)
		elog(ERROR, "on-demand reshard returned " UINT64_FORMAT " rows", SPI_processed);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	r->answer = MemoryContextStrdup(lk->context, isnull ? "" : TextDatumGetCString(d));
}

/* Whether Kinesis' reshard rate leaves room for one more now. */
static bool
reshard_rate_allows(TimestampTz now)
{
	TimestampTz oldest = recent_reshards[recent_next];

	return oldest == 0 || now - oldest >= USECS_PER_SEC;
}

static void
reshard_done(TimestampTz now)
{
	recent_reshards[recent_next] = now;
	recent_next = (recent_next + 1) % RESHARDS_PER_SEC;
}

/* What the answer means for the shards' trackers, and the log. */
static void
after_reshard(Reshard *r, const char *dbname)
{
	ShardKey	key = {r->stream_id, r->a};
	ShardTrack *t = hash_search(tracks, &key, HASH_FIND, NULL);

	if (strncmp(r->answer, "split ", 6) == 0 || strcmp(r->answer, "merged") == 0)
	{
		ereport(LOG,
				(errmsg("stream worker: %s shard%s %s%s%s of on-demand stream \"%s\" in database \"%s\"",
						r->split ? "split" : "merged", r->split ? "" : "s",
						shard_id_text(r->a), r->split ? "" : " and ",
						r->split ? "" : shard_id_text(r->b), r->stream_name, dbname),
				 errdetail(r->split ?
						   "Its write load was %.2f of a shard's capacity for stream.on_demand_split_after; new starting hash key %s." :
						   "Their write load was %.2f of a shard's capacity together, cold for stream.on_demand_merge_after%s.",
						   r->load, r->split ? r->answer + 6 : "")));
		return;
	}
	/* a split that would not help, or no room for it: wait another sustained period */
	if (t != NULL && (strcmp(r->answer, "one_key") == 0 || strcmp(r->answer, "shard_limit") == 0))
		t->hot_since = 0;
	ereport(DEBUG1,
			(errmsg("stream worker: no %s of shard %s of on-demand stream \"%s\": %s",
					r->split ? "split" : "merge", shard_id_text(r->a), r->stream_name, r->answer)));
}

/* Forget the shards no look saw open this time (closed, or their stream gone or provisioned). */
static void
tracks_forget_unseen(void)
{
	HASH_SEQ_STATUS seq;
	ShardTrack *t;

	hash_seq_init(&seq, tracks);
	while ((t = hash_seq_search(&seq)) != NULL)
		if (t->look != look_count)
			(void) hash_search(tracks, &t->key, HASH_REMOVE, NULL);
}

/*
 * A look at this database's on-demand streams and the reshards it decides
 * on.  Returns false when the extension no longer exists.
 */
bool
autoscale_round(MemoryContext context, const char *dbname)
{
	Look		lk;
	ListCell   *lc;

	MemoryContextReset(context);
	MemoryContextSwitchTo(context);
	memset(&lk, 0, sizeof(lk));
	lk.context = context;
	tracks_init();

	if (!run_unit(look_unit, &lk))
		ereport(WARNING,
				(errmsg("stream on-demand scaling failed to measure the write rates in database \"%s\"", dbname),
				 errdetail("The next look is in %d ms.", stream_on_demand_interval_ms)));
	else
		tracks_forget_unseen();
	foreach(lc, lk.reshards)
	{
		TimestampTz now = GetCurrentTimestamp();

		CHECK_FOR_INTERRUPTS();
		if (lk.extension_missing || !reshard_rate_allows(now))
			break;				/* the rest at the next look */
		lk.current = lfirst(lc);
		reshard_done(now);
		if (run_unit(reshard_unit, &lk))
			after_reshard(lk.current, dbname);
		else
			ereport(WARNING,
					(errmsg("stream on-demand scaling failed to %s shard %s of stream \"%s\" in database \"%s\"",
							lk.current->split ? "split" : "merge", shard_id_text(lk.current->a),
							lk.current->stream_name, dbname),
					 errdetail("It is tried again at a later look.")));
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return !lk.extension_missing;
}
