/*
 * runtime/json_decode.h: JSON object records straight to typed columns.
 *
 * A streaming scanner over a record's bytes that fills the columns of a
 * schema without building a jsonb: fields not in the schema are skipped
 * (but validated), integers, booleans, text and ISO-8601 timestamps with a
 * zone are converted in place, everything else through the column type's
 * input function with the very string the jsonb path would pass it.
 *
 * The contract is the jsonb path's (jsonb_in, then each key matched
 * case-insensitively to a column, the last of duplicate keys winning, values
 * converted in jsonb key order): json_decode_record either gives the same
 * values and raises the same errors, or returns false having raised nothing
 * and left no partial state the caller keeps, when the record holds
 * something it does not decide alone (invalid JSON, a key that matches only
 * case-insensitively, an exponent, -0, \u0000, a lone surrogate, a container
 * or a number for a json or timestamp column, ...): the caller then runs the
 * jsonb path, which gives the result or the error.
 *
 * Include postgres.h and fmgr.h before this file.
 */
#ifndef STREAM_JSON_DECODE_H
#define STREAM_JSON_DECODE_H

typedef struct JsonDecoder JsonDecoder;

/*
 * A decoder for n columns: name (lower case, as matched), type, typmod,
 * input function and its ioparam, and the index in values/isnull/present
 * (natts of them).  Allocated in the current memory context.
 */
extern JsonDecoder *json_decoder_create(int n, char **names, const Oid *types,
										const int32 *typmods, FmgrInfo *in_funcs,
										const Oid *ioparams, const int *atts, int natts);

/*
 * Decode one record: true with values, isnull and present (may be NULL)
 * filled; false when the general path must decide (nothing raised).
 */
extern bool json_decode_record(JsonDecoder *d, const char *data, int len,
							   Datum *values, bool *isnull, bool *present);

#endif
