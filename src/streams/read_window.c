/*
 * read_window.c: the readable window of a shard (read_window.h).
 */
#include "streams/read_window.h"
#include "streams/retention.h"
#include "streams/seqalloc.h"

ReadWindow
read_window(StreamInfo *info, StreamShard *shard, int64 from, TimestampTz now)
{
	ReadWindow	w;
	int64		trim_seq;

	/* the stable sequence before the snapshot the scan takes */
	w.stable = seqalloc_stable_seq(info, shard);
	trim_seq = retention_horizon(info, now, &w.min_arrival);
	w.from = Max(from, trim_seq);
	w.to = shard->closed ? Min(w.stable, shard->ending_seq + 1) : w.stable;
	return w;
}
