/*
 * parquet/thrift.h: Thrift compact protocol encoder, just enough for Parquet's
 * FileMetaData and PageHeader (no messages, maps or sets).
 *
 * Structs are written as "field header + value" sequences closed by a STOP
 * byte; the field header stores the id as a delta to the previous field of
 * the same struct, so the writer keeps one "last id" per nesting level.
 */
#ifndef STREAM_THRIFT_H
#define STREAM_THRIFT_H

#include "postgres.h"
#include "lib/stringinfo.h"

/* Compact protocol type codes (also used as list element types). */
#define THRIFT_BOOL_TRUE	1
#define THRIFT_BOOL_FALSE	2
#define THRIFT_I8			3
#define THRIFT_I16			4
#define THRIFT_I32			5
#define THRIFT_I64			6
#define THRIFT_DOUBLE		7
#define THRIFT_BINARY		8
#define THRIFT_LIST			9
#define THRIFT_STRUCT		12

#define THRIFT_MAX_DEPTH	16

typedef struct ThriftWriter
{
	StringInfo	buf;
	int			depth;			/* index into last_id of the open struct */
	int16		last_id[THRIFT_MAX_DEPTH];
} ThriftWriter;

/* Starts a bare top-level struct (no envelope) appended to buf. */
extern void thrift_begin(ThriftWriter *tw, StringInfo buf);
/* Closes the top-level struct. */
extern void thrift_end(ThriftWriter *tw);

extern void thrift_put_uvarint(StringInfo buf, uint64 v);

/* Fields of the open struct. */
extern void thrift_field_bool(ThriftWriter *tw, int16 id, bool v);
extern void thrift_field_i8(ThriftWriter *tw, int16 id, int8 v);
extern void thrift_field_i16(ThriftWriter *tw, int16 id, int16 v);
extern void thrift_field_i32(ThriftWriter *tw, int16 id, int32 v);
extern void thrift_field_i64(ThriftWriter *tw, int16 id, int64 v);
extern void thrift_field_binary(ThriftWriter *tw, int16 id, const void *data, int len);
extern void thrift_field_string(ThriftWriter *tw, int16 id, const char *s);
extern void thrift_struct_begin(ThriftWriter *tw, int16 id);
extern void thrift_struct_end(ThriftWriter *tw);
/* An empty struct field, e.g. StringType{} inside a LogicalType union. */
extern void thrift_field_empty_struct(ThriftWriter *tw, int16 id);
extern void thrift_list_begin(ThriftWriter *tw, int16 id, uint8 elem_type, int count);

/* List elements: no field header. */
extern void thrift_elem_struct_begin(ThriftWriter *tw);
extern void thrift_elem_i32(ThriftWriter *tw, int32 v);
extern void thrift_elem_binary(ThriftWriter *tw, const void *data, int len);

#endif							/* STREAM_THRIFT_H */
