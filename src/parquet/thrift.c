/*
 * parquet/thrift.c: Thrift compact protocol encoder for Parquet metadata.
 *
 * Wire rules (thrift-compact-protocol.md): integers are zigzag varints, i8
 * is one raw byte, booleans that are struct fields live in the type nibble
 * of the field header, and a field header is one byte (delta << 4 | type)
 * when the id grows by 1..15, otherwise a type byte plus a zigzag i16 id.
 */
#include "postgres.h"

#include "parquet/thrift.h"

void
thrift_put_uvarint(StringInfo buf, uint64 v)
{
	char		tmp[10];
	int			n = 0;

	while (v >= 0x80)
	{
		tmp[n++] = (char) ((v & 0x7F) | 0x80);
		v >>= 7;
	}
	tmp[n++] = (char) v;
	appendBinaryStringInfo(buf, tmp, n);
}

static inline uint64
zigzag64(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

void
thrift_begin(ThriftWriter *tw, StringInfo buf)
{
	tw->buf = buf;
	tw->depth = 0;
	tw->last_id[0] = 0;
}

void
thrift_end(ThriftWriter *tw)
{
	Assert(tw->depth == 0);
	appendStringInfoCharMacro(tw->buf, 0);
}

static void
field_header(ThriftWriter *tw, int16 id, uint8 type)
{
	int			delta = id - tw->last_id[tw->depth];

	if (delta > 0 && delta <= 15)
		appendStringInfoCharMacro(tw->buf, (char) ((delta << 4) | type));
	else
	{
		appendStringInfoCharMacro(tw->buf, (char) type);
		thrift_put_uvarint(tw->buf, zigzag64(id));
	}
	tw->last_id[tw->depth] = id;
}

void
thrift_field_bool(ThriftWriter *tw, int16 id, bool v)
{
	field_header(tw, id, v ? THRIFT_BOOL_TRUE : THRIFT_BOOL_FALSE);
}

void
thrift_field_i8(ThriftWriter *tw, int16 id, int8 v)
{
	field_header(tw, id, THRIFT_I8);
	appendStringInfoCharMacro(tw->buf, (char) v);
}

void
thrift_field_i16(ThriftWriter *tw, int16 id, int16 v)
{
	field_header(tw, id, THRIFT_I16);
	thrift_put_uvarint(tw->buf, zigzag64(v));
}

void
thrift_field_i32(ThriftWriter *tw, int16 id, int32 v)
{
	field_header(tw, id, THRIFT_I32);
	thrift_put_uvarint(tw->buf, zigzag64(v));
}

void
thrift_field_i64(ThriftWriter *tw, int16 id, int64 v)
{
	field_header(tw, id, THRIFT_I64);
	thrift_put_uvarint(tw->buf, zigzag64(v));
}

void
thrift_field_binary(ThriftWriter *tw, int16 id, const void *data, int len)
{
	field_header(tw, id, THRIFT_BINARY);
	thrift_elem_binary(tw, data, len);
}

void
thrift_field_string(ThriftWriter *tw, int16 id, const char *s)
{
	thrift_field_binary(tw, id, s, strlen(s));
}

static void
push(ThriftWriter *tw)
{
	if (tw->depth + 1 >= THRIFT_MAX_DEPTH)
		elog(ERROR, "thrift structs nested too deeply");
	tw->last_id[++tw->depth] = 0;
}

void
thrift_struct_begin(ThriftWriter *tw, int16 id)
{
	field_header(tw, id, THRIFT_STRUCT);
	push(tw);
}

void
thrift_struct_end(ThriftWriter *tw)
{
	Assert(tw->depth > 0);
	appendStringInfoCharMacro(tw->buf, 0);
	tw->depth--;
}

void
thrift_field_empty_struct(ThriftWriter *tw, int16 id)
{
	field_header(tw, id, THRIFT_STRUCT);
	appendStringInfoCharMacro(tw->buf, 0);
}

void
thrift_list_begin(ThriftWriter *tw, int16 id, uint8 elem_type, int count)
{
	field_header(tw, id, THRIFT_LIST);
	if (count < 15)
		appendStringInfoCharMacro(tw->buf, (char) ((count << 4) | elem_type));
	else
	{
		appendStringInfoCharMacro(tw->buf, (char) (0xF0 | elem_type));
		thrift_put_uvarint(tw->buf, (uint64) count);
	}
}

void
thrift_elem_struct_begin(ThriftWriter *tw)
{
	push(tw);
}

void
thrift_elem_i32(ThriftWriter *tw, int32 v)
{
	thrift_put_uvarint(tw->buf, zigzag64(v));
}

void
thrift_elem_binary(ThriftWriter *tw, const void *data, int len)
{
	thrift_put_uvarint(tw->buf, (uint64) len);
	appendBinaryStringInfo(tw->buf, data, len);
}
