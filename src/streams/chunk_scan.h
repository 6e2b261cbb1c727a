/*
 * chunk_scan.h: reading a shard's records from its chunks.
 */
#ifndef STREAM_CHUNK_SCAN_H
#define STREAM_CHUNK_SCAN_H

#include "stream.h"

/*
 * Feed a shard's records with from_seq <= seq < to_seq, oldest first, to
 * sink, skipping those that arrived before min_arrival, up to limit records
 * and max_bytes (at least one record).  *next_from is where the next read
 * continues.  Returns the number of records passed to sink.  Readers take
 * the range from read_window (read.h).
 */
extern int	chunk_scan(StreamInfo *info, StreamShard *shard, int64 from_seq,
					   int64 to_seq, TimestampTz min_arrival, int limit,
					   Size max_bytes, RecordSink sink, void *arg,
					   int64 *next_from);

/* What a scan passed on, beyond the count. */
typedef struct ScanTally
{
	Size		bytes;			/* partition keys and data, as max_bytes counts them */
	TimestampTz first_arrival;	/* of the first record passed on (0: none) */
	TimestampTz last_arrival;	/* of the last */
} ScanTally;

/*
 * chunk_scan that also tallies what it passed on; with sink NULL it only
 * counts (out-of-line values are not fetched).
 */
extern int	chunk_scan_tally(StreamInfo *info, StreamShard *shard, int64 from_seq,
							 int64 to_seq, TimestampTz min_arrival, int limit,
							 Size max_bytes, RecordSink sink, void *arg,
							 int64 *next_from, ScanTally *tally);

#endif							/* STREAM_CHUNK_SCAN_H */
