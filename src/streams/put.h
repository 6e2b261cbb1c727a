/*
 * put.h: put_records' record arrays and their validation, which other
 * builders of records share (stream.aggregate_records, aggregate.c).
 */
#ifndef STREAM_PUT_H
#define STREAM_PUT_H

#include "stream.h"

#include "fmgr.h"

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

/*
 * Record i of the arrays: partition key and data not NULL, the key 1 to 256
 * characters, key plus data at most 1 MiB, the explicit hash key (NULL:
 * none) of the member's pattern and in range, with Kinesis' errors naming
 * records.<i+1>.<member>; returns its hash key.
 */
extern uint128 put_array_record(const PutArrays *a, int i, text **key, bytea **data, text **ehk);

#endif							/* STREAM_PUT_H */
