/*
 * retention.h: the trim horizon, the read side of retention.
 *
 * Reads skip records older than the retention period at once; dropping
 * the chunks that hold only such records is maintenance's part, in SQL
 * (stream_internal._trim_chunks and run_maintenance, src/sql/00_core.sql).
 */
#ifndef STREAM_RETENTION_H
#define STREAM_RETENTION_H

#include "stream.h"

/*
 * The lowest sequence number a read may return at now given the retention
 * period; *min_arrival is the oldest arrival time still retained.
 */
extern int64 retention_horizon(StreamInfo *info, TimestampTz now, TimestampTz *min_arrival);

#endif							/* STREAM_RETENTION_H */
