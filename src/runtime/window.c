/*
 * runtime/window.c: what a processor may read now, and reading it.
 *
 * A processor reads a shard between its checkpoint and the shard's
 * readable end: below the stable sequence (every number under it is
 * committed or will never be, so reading again returns the same records),
 * and not past a closed shard's last number; records older than the
 * retention horizon are not read.  Every read of the runtime and of its
 * clients goes through runtime_scan(): the one call site of the stream
 * read path here.
 */
#include "stream.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "runtime/runtime.h"

/* the stream read path: every read of a processor's records comes here */
static int
read_path(StreamInfo *info, StreamShard *shard, int64 from, int64 to, TimestampTz min_arrival,
		  int limit, Size max_bytes, RecordSink sink, void *arg, int64 *next)
{
	return storage_read(info, shard, from, to, min_arrival, limit, max_bytes, sink, arg, next);
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
	int64		trim_seq = stream_trim_horizon_seq(info, GetCurrentTimestamp(), &w->min_arrival);

	w->info = info;
	w->nshards = info->nshards;
	w->shards = palloc0(sizeof(ShardWindow) * Max(info->nshards, 1));
	for (int i = 0; i < info->nshards; i++)
	{
		StreamShard *shard = &info->shards[i];
		ShardWindow *sw = &w->shards[i];
		int64		stable = seqalloc_stable_seq(info, shard);

		sw->shard = shard;
		sw->next = runtime_checkpoint_of(cps, shard->shard_index, 0, shard->starting_seq);
		sw->from = Max(sw->next, trim_seq);
		sw->to = shard->closed ? Min(stable, shard->ending_seq + 1) : stable;
		sw->finished = shard->closed && sw->next > shard->ending_seq;
	}
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
	StreamShard *shard = stream_get_shard(info, u->shards[i], false);
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
