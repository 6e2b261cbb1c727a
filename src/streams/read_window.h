/*
 * read_window.h: THE readable window of a shard - the one rule of what any
 * reader may see now.  get_records, read_shard, subscribe_to_shard, an
 * AT_TIMESTAMP iterator's search and delivery's buffering and batches all
 * take their range from read_window.
 *
 * A record is readable when its number is
 *  - below the shard's stable sequence (seqalloc.h): every number below
 *    belongs to an ended transaction, so a reader never skips one that
 *    commits later;
 *  - at or above the retention horizon (retention.h), and it arrived no
 *    earlier than min_arrival;
 *  - not past a closed shard's ending sequence number.
 * Compute the window first, then scan (chunk_scan takes its snapshot after).
 */
#ifndef STREAM_READ_WINDOW_H
#define STREAM_READ_WINDOW_H

#include "stream.h"

typedef struct ReadWindow
{
	int64		from;			/* the requested start, raised to the retention horizon */
	int64		to;				/* end (exclusive): the stable sequence or a closed shard's end + 1 */
	int64		stable;			/* the shard's stable sequence */
	TimestampTz min_arrival;	/* records that arrived earlier have expired */
} ReadWindow;

/* The window of shard at now for a reader that would start at from. */
extern ReadWindow read_window(StreamInfo *info, StreamShard *shard, int64 from, TimestampTz now);

#endif							/* STREAM_READ_WINDOW_H */
