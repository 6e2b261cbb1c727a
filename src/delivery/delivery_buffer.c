/*
 * delivery/delivery_buffer.c: buffer accounting, when a batch is due.
 *
 * Per delivery stream and shard the worker remembers how far past the
 * checkpoint it has counted (bytes, records, the oldest arrival), so each
 * round scans only what arrived since; a batch is due when the buffered
 * bytes reach buffer_size_mb or the oldest record is buffer_interval_seconds
 * old (or at once with a flush).  The batch's ranges are cut at what was
 * counted, every number below the stable sequence (runtime/window.c).  The
 * counts are forgotten when a checkpoint moves or a unit fails.
 */
#include "stream.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "streams/stream_catalog.h"

#include "runtime/runtime.h"
#include "delivery/delivery_int.h"

PG_FUNCTION_INFO_V1(stream_delivery_buffer);

typedef struct ShardScan
{
	int32		shard_index;
	int64		cp;				/* checkpoint the scan started from */
	int64		scanned_to;
	Size		bytes;
	int64		count;
	TimestampTz oldest;
} ShardScan;

/* per delivery stream: how far past its checkpoints the worker has counted */
typedef struct DsState
{
	int32		id;				/* hash key */
	int			nshards;
	ShardScan  *scans;
} DsState;

static HTAB *ds_states = NULL;
static MemoryContext ds_state_cxt = NULL;

typedef struct ScanCount
{
	Size		bytes;
	int64		count;
	TimestampTz first_arrival;
} ScanCount;

static void
count_record(void *arg, const StreamRecord *rec)
{
	ScanCount  *c = arg;

	if (c->count == 0)
		c->first_arrival = rec->arrival;
	c->count++;
	c->bytes += toast_raw_datum_size(rec->partition_key) - VARHDRSZ +
		toast_raw_datum_size(rec->data) - VARHDRSZ;
}

static DsState *
ds_state(int32 id)
{
	bool		found;
	DsState    *s;

	if (ds_states == NULL)
	{
		ds_state_cxt = AllocSetContextCreate(TopMemoryContext, "stream delivery state",
											 ALLOCSET_SMALL_SIZES);
		ds_states = runtime_state_hash("stream delivery streams", sizeof(DsState), ds_state_cxt);
	}
	s = hash_search(ds_states, &id, HASH_ENTER, &found);
	if (!found)
	{
		s->nshards = 0;
		s->scans = NULL;
	}
	return s;
}

static ShardScan *
shard_scan(DsState *s, int32 shard_index, int64 cp)
{
	ShardScan  *sc = NULL;

	for (int i = 0; i < s->nshards; i++)
		if (s->scans[i].shard_index == shard_index)
			sc = &s->scans[i];
	if (sc == NULL)
	{
		s->scans = s->scans ? repalloc(s->scans, sizeof(ShardScan) * (s->nshards + 1))
			: MemoryContextAlloc(ds_state_cxt, sizeof(ShardScan));
		sc = &s->scans[s->nshards++];
		sc->shard_index = shard_index;
		sc->cp = -1;
	}
	if (sc->cp != cp)
	{
		sc->cp = cp;
		sc->scanned_to = cp;
		sc->bytes = 0;
		sc->count = 0;
		sc->oldest = 0;
	}
	return sc;
}

/* count again from the checkpoints: they moved, or the unit failed */
void
buffer_forget(int32 id)
{
	DsState    *s = ds_state(id);

	for (int i = 0; i < s->nshards; i++)
		s->scans[i].cp = -1;
}

static void
release_scans(void *entry)
{
	DsState    *s = entry;

	if (s->scans)
		pfree(s->scans);
}

/* forget the counts of delivery streams that are gone */
void
buffer_keep_only(const int32 *ids, int n)
{
	runtime_forget_gone(ds_states, ids, n, release_scans);
}

/*
 * Decide whether a delivery stream's buffer is due; if so fill the batch's
 * ranges.  *full when the size limit cut the batch (more is waiting).
 */
bool
buffer_due(DeliveryConfig *cfg, StreamInfo *info, bool force,
		   ProcessorCheckpoints *cps, Batch *b, bool *full)
{
	TimestampTz now = GetCurrentTimestamp();
	DsState    *st = ds_state(cfg->id);
	ConsumerWindow w;
	Size		total = 0;
	int64		count = 0;
	TimestampTz oldest = DT_NOEND;

	*full = false;
	runtime_window(info, cps, &w);
	/* parents with nothing left end now, so their children are not held back */
	(void) runtime_finish_empty_ends(cfg->id, cps, &w);
	runtime_unit_init(&b->unit, cfg->id, info->nshards);
	b->unit.min_arrival = w.min_arrival;

	for (int i = 0; i < w.nshards; i++)
	{
		ShardWindow *sw = &w.shards[i];
		ShardScan  *sc = shard_scan(st, sw->shard->shard_index, sw->next);

		/* children wait for the batch that ends their parents (runtime_window) */
		if (sw->finished || sw->blocked)
			continue;
		if (!*full && sc->scanned_to < sw->to && total + sc->bytes < cfg->buffer_bytes)
		{
			ScanCount	c;
			int64		next;

			memset(&c, 0, sizeof(c));
			(void) runtime_scan(&w, sw->shard, Max(sc->scanned_to, sw->from), sw->to, INT_MAX,
								cfg->buffer_bytes - total - sc->bytes, count_record, &c, &next);
			if (c.count > 0 && sc->count == 0)
				sc->oldest = c.first_arrival;
			sc->count += c.count;
			sc->bytes += c.bytes;
			sc->scanned_to = Max(next, sc->scanned_to);
			if (next < sw->to)
				*full = true;
		}
		if (sc->count > 0)
		{
			runtime_unit_add(&b->unit, sw->shard->shard_index, 0, sw->next, sc->scanned_to);
			total += sc->bytes;
			count += sc->count;
			if (sc->oldest < oldest)
				oldest = sc->oldest;
			/* the batch ends a parent: its children are due right after */
			if (sw->ends && sc->scanned_to > sw->shard->ending_seq)
				*full = true;
		}
		if (total >= cfg->buffer_bytes)
			*full = true;
	}
	if (count == 0)
		return false;
	if (*full || force || cfg->interval_s == 0)
		return true;
	return now - oldest >= (int64) cfg->interval_s * USECS_PER_SEC;
}

/*
 * stream_internal._delivery_buffer(delivery_stream_id) RETURNS TABLE(buffered_records
 * bigint, buffered_bytes bigint, oldest_buffered timestamptz): what is
 * past the checkpoints and not yet delivered (counted up to 1 GiB).
 */
Datum
stream_delivery_buffer(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		id = PG_GETARG_INT32(0);
	int32		stream_id;
	StreamInfo *info;
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(id);
	ProcessorCheckpoints cps;
	ScanCount	total;
	Datum		values[3];
	bool		nulls[3] = {false, false, true};
	bool		isnull;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * No row unless the calling role is a member of the delivery stream's
	 * owner (superusers are): PUBLIC may call this, the status view does.
	 */
	if (catalog_spi("SELECT source_stream_id, owner FROM stream.processors WHERE processor_id = $1",
					1, &argtype, &arg, true, 1) != SPI_OK_SELECT || SPI_processed != 1 ||
		!is_member_of_role(GetUserId(), DatumGetObjectId(spi_datum(0, 2, &isnull))))
	{
		SPI_finish();
		return (Datum) 0;
	}
	stream_id = DatumGetInt32(spi_datum(0, 1, &isnull));
	catalog_load_checkpoints(id, &cps, rsinfo->econtext->ecxt_per_query_memory);
	SPI_finish();

	info = stream_lookup_by_id(stream_id, true);
	memset(&total, 0, sizeof(total));
	total.first_arrival = DT_NOEND;
	if (info != NULL)
	{
		ConsumerWindow w;

		runtime_window(info, &cps, &w);
		for (int i = 0; i < w.nshards; i++)
		{
			ShardWindow *sw = &w.shards[i];
			ScanCount	c;
			int64		next;

			memset(&c, 0, sizeof(c));
			if (sw->next >= sw->to)
				continue;
			(void) runtime_scan(&w, sw->shard, sw->from, sw->to, INT_MAX,
								(Size) 1024 * 1024 * 1024, count_record, &c, &next);
			total.count += c.count;
			total.bytes += c.bytes;
			if (c.count > 0 && c.first_arrival < total.first_arrival)
				total.first_arrival = c.first_arrival;
		}
	}
	values[0] = Int64GetDatum(total.count);
	values[1] = Int64GetDatum((int64) total.bytes);
	if (total.count > 0)
	{
		values[2] = TimestampTzGetDatum(total.first_arrival);
		nulls[2] = false;
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
