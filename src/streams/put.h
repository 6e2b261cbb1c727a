/*
 * put.h: the validation of put_record and put_records that other record
 * builders share (stream.aggregate_records, aggregate.c).
 */
#ifndef STREAM_PUT_H
#define STREAM_PUT_H

#include "stream.h"

#include "fmgr.h"

/*
 * One record's partition key (1 to 256 characters), key plus data (1 MiB)
 * and optional explicit hash key (pattern, then range), with Kinesis'
 * errors naming member path (e.g. "records.3."); returns its hash key.
 */
extern uint128 put_validate_record(text *key, bytea *data, text *ehk, const char *path);
/*
 * The record arrays partition_keys text[], data bytea[] and (may be NULL)
 * explicit_hash_keys text[] of a SQL function, its arguments arg to
 * arg + 2: one-dimensional and of one length, else ValidationException.
 */
typedef struct PutArrays
{
	int			n;
	Datum	   *keys;
	bool	   *key_nulls;
	Datum	   *datas;
	bool	   *data_nulls;
	Datum	   *ehks;			/* NULL: none given */
	bool	   *ehk_nulls;
} PutArrays;

extern void put_arrays(FunctionCallInfo fcinfo, int arg, PutArrays *a);

#endif							/* STREAM_PUT_H */
