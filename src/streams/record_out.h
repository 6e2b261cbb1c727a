/*
 * record_out.h: what a read does with the records a chunk scan hands on -
 * remember the first (AT_TIMESTAMP), build stream.record[] (get_records,
 * subscribe_to_shard) or rows of a tuplestore (read_shard).  Each forms its
 * output straight from the scanned tuple, so a record is copied once.
 *
 * Memory: the array lives in a scratch buffer this backend keeps for all
 * reads; collector_array's result is valid only until the next read, so
 * copy it into the result (heap_form_tuple does) before reading again.
 */
#ifndef STREAM_RECORD_OUT_H
#define STREAM_RECORD_OUT_H

#include "stream.h"
#include "streams/seqno.h"

#include "access/tupdesc.h"
#include "utils/tuplestore.h"

typedef struct RecordCollector
{
	int32		stream_id;
	int32		shard_index;
	int			count;
	int64		first_seq;
	TimestampTz last_arrival;
	int64		last_seq;
	TupleDesc	desc;			/* of stream.record */
	Oid			rectype;
	char	   *array;			/* get_records: the result array, built in place
								 * in the backend's scratch buffer */
	char		header[64];		/* composite datum header of the first record */
	Size		hoff;
	struct
	{
		int32		vl_len_;
		char		digits[SEQ_TEXT_LEN];
	}			seqbuf;			/* last sequence number as a text datum */
	Size		array_used;
	Size		array_cap;
	Tuplestorestate *store;		/* read_shard */
} RecordCollector;

/* Prepare c to collect up to limit records into a stream.record[] of type rectype. */
extern void collector_init_array(RecordCollector *c, Oid rectype, int limit);
/* The stream.record[] collected so far (see Memory above). */
extern Datum collector_array(RecordCollector *c);

/* Record sinks; arg is the RecordCollector. */
extern void collect_first(void *arg, const StreamRecord *rec);	/* count, first_seq */
extern void collect_datum(void *arg, const StreamRecord *rec);	/* into the array */
extern void collect_row(void *arg, const StreamRecord *rec);	/* desc and store set by the caller */

#endif							/* STREAM_RECORD_OUT_H */
