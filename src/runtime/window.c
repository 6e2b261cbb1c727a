/*
 * runtime/window.c: what a processor may read now, and reading it.
 *
 * A processor reads a shard between its checkpoint and the shard's
 * readable end, the one readable window of streams/read_window.h: below
 * the stable sequence (every number under it is committed or will never
 * be, so reading again returns the same records), not past a closed
 * shard's last number, and nothing older than the retention horizon.
 * Every read of the runtime and of its clients goes through read_path()
 * here: the one call site of the stream read path.
 */
#include "stream.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "streams/chunk_scan.h"
#include "streams/read_window.h"
#include "streams/shard.h"

#include "runtime/runtime.h"

static void
count_none(void *arg, const StreamRecord *rec)
{
}

/* the stream read path: every read of a processor's records comes here */
static int
read_path(StreamInfo *info, StreamShard *shard, int64 from, int64 to, TimestampTz min_arrival,
		  int limit, Size max_bytes, RecordSink sink, void *arg, int64 *next)
{
	return chunk_scan(info, shard, from, to, min_arrival, limit, max_bytes, sink, arg, next);
}

int64
runtime_checkpoint_of(const ProcessorCheckpoints *cps, int32 shard_index, int32 lane, int64 dflt)
{
	if (cps == NULL)
		return dflt;
	for (int i = 0; i < cps->n; i++)
		if (cps->shard_index[i] == shard_index && cps->lane[i] == lane)
			return cps->next_seq[i];
	return dflt;
}

void
runtime_window(StreamInfo *info, const ProcessorCheckpoints *cps, ConsumerWindow *w)
{
	TimestampTz now = GetCurrentTimestamp();

	w->info = info;
	w->nshards = info->nshards;
	w->shards = palloc0(sizeof(ShardWindow) * Max(info->nshards, 1));
	w->min_arrival = DT_NOBEGIN;
	for (int i = 0; i < info->nshards; i++)
	{
		StreamShard *shard = &info->shards[i];
		ShardWindow *sw = &w->shards[i];
		ReadWindow	rw;

		sw->shard = shard;
		sw->next = runtime_checkpoint_of(cps, shard->shard_index, 0, shard->starting_seq);
		rw = read_window(info, shard, sw->next, now);
		sw->from = rw.from;
		sw->to = rw.to;
		sw->finished = shard->closed && sw->next > shard->ending_seq;
		sw->ends = shard->closed && rw.to > shard->ending_seq;
		w->min_arrival = rw.min_arrival;	/* the same for every shard at now */
	}
	for (int i = 0; i < info->nshards; i++)
	{
		StreamShard *shard = &info->shards[i];

		w->shards[i].blocked = false;
		for (int k = 0; k < info->nshards; k++)
			if ((info->shards[k].shard_index == shard->parent_index ||
				 info->shards[k].shard_index == shard->adjacent_parent_index) &&
				!w->shards[k].finished)
				w->shards[i].blocked = true;
	}
}

int
runtime_finish_empty_ends(int32 processor_id, ProcessorCheckpoints *cps, ConsumerWindow *w)
{
	int			finished = 0;

	for (int i = 0; i < w->nshards; i++)
	{
		ShardWindow *sw = &w->shards[i];
		int64		next;
		Oid			types[3] = {INT4OID, INT4OID, INT8OID};
		Datum		args[3];

		if (sw->finished || !sw->ends || sw->blocked)
			continue;
		/* a record left: the client's next unit finishes the shard */
		if (read_path(w->info, sw->shard, sw->from, sw->to, w->min_arrival, 1, (Size) 1 << 40,
					  count_none, NULL, &next) > 0)
			continue;
		args[0] = Int32GetDatum(processor_id);
		args[1] = Int32GetDatum(sw->shard->shard_index);
		args[2] = Int64GetDatum(sw->to);
		runtime_sql("SELECT stream_internal._processor_checkpoint_to($1, $2, 0, $3)",
					3, types, args, SPI_OK_SELECT);
		finished++;
	}
	if (finished > 0)
	{
		/* the checkpoints as they are now, for the window and for the caller */
		runtime_load_checkpoints(processor_id, cps, CurrentMemoryContext);
		runtime_window(w->info, cps, w);
	}
	return finished;
}

int
runtime_scan(ConsumerWindow *w, StreamShard *shard, int64 from, int64 to, int limit,
			 Size max_bytes, RecordSink sink, void *arg, int64 *next)
{
	return read_path(w->info, shard, from, to, w->min_arrival, limit, max_bytes, sink, arg, next);
}

/*
 * Range i of a unit, every record of it: the same records on every call,
 * as the range lies below the stable sequence it was cut at.
 */
void
runtime_read_range(ProcessorUnit *u, StreamInfo *info, int i, RecordSink sink, void *arg)
{
	StreamShard *shard = shard_by_index(info, u->shards[i], false);
	int64		from = u->from[i];
	int64		next;

	while (from < u->to[i])
	{
		int			n;

		CHECK_FOR_INTERRUPTS();
		n = read_path(info, shard, from, u->to[i], u->min_arrival, INT_MAX,
					  (Size) 1 << 40, sink, arg, &next);
		if (n == 0 || next <= from)
			break;
		from = next;
	}
}
