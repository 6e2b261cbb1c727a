/*
 * put.h: the validation of put_record and put_records that other record
 * builders share (stream.aggregate_records, aggregate.c).
 */
#ifndef STREAM_PUT_H
#define STREAM_PUT_H

#include "stream.h"

#include "utils/array.h"

/*
 * One record's partition key (1 to 256 characters), key plus data (1 MiB)
 * and optional explicit hash key (pattern, then range), with Kinesis'
 * errors naming member path (e.g. "records.3."); returns its hash key.
 */
extern uint128 put_validate_record(text *key, bytea *data, text *ehk, const char *path);
/* A one-dimensional array's elements; ValidationException for more dimensions. */
extern Datum *put_array_elements(ArrayType *arr, Oid elemtype, bool **nulls, int *n);

#endif							/* STREAM_PUT_H */
