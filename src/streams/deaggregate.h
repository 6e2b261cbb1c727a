/*
 * deaggregate.h: the user records of a stream record, as the KCL sees
 * them: a KPL aggregate (kpl.h) gives its sub-records, any other record
 * itself (docs/kpl.md).  Used by get_records and read_shard with
 * deaggregate => true, and by delivery streams, where records enter a
 * batch (delivery/delivery_batch.c).
 */
#ifndef STREAM_DEAGGREGATE_H
#define STREAM_DEAGGREGATE_H

#include "stream.h"

/*
 * One user record.  Datums and data are valid only during the sink
 * callback (they point into the scanned record or a scratch context).
 */
typedef struct UserRecord
{
	const StreamRecord *rec;	/* the enclosing record: sequence number, arrival */
	int64		sub_seq;		/* 0, 1, 2, ... within an aggregate; 0 for a plain record */
	bool		aggregated;
	Datum		partition_key;	/* text: the sub-record's own, or the record's */
	Datum		explicit_hash_key;	/* text; (Datum) 0: none */
	const char *data;
	Size		data_len;
} UserRecord;

typedef void (*UserRecordSink) (void *arg, const UserRecord *ur);

/*
 * Hand the user records of rec to sink in order; returns how many (0 for
 * an aggregate of no records, which the KCL also drops).  Without
 * deaggregate, rec itself as one plain user record.
 */
extern int	deaggregate_record(const StreamRecord *rec, bool deaggregate, UserRecordSink sink, void *arg);

#endif							/* STREAM_DEAGGREGATE_H */
