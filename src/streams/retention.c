/*
 * retention.c: the read side of retention (retention.h).
 */
#include "streams/retention.h"
#include "streams/seqno.h"

/*
 * The lowest sequence number a read may return given the retention period;
 * *min_arrival is the oldest arrival time still retained.
 */
int64
retention_horizon(StreamInfo *info, TimestampTz now, TimestampTz *min_arrival)
{
	*min_arrival = now - (int64) info->retention_hours * USECS_PER_HOUR;
	return SEQ_FROM_BUCKET(seq_bucket_now(*min_arrival));
}
