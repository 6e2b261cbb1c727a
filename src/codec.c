/*
 * codec.c: gzip (zlib), snappy (libsnappy's C API) and zstd (libzstd).
 *
 * Block compression keeps one compressor per backend and reuses it, since
 * Parquet compresses every page separately and setting up a zstd or zlib
 * context costs more than compressing a small page.  Libraries allocate with
 * malloc; every call that can fail checks and reports before touching the
 * output, so an ereport never leaves a half-written StringInfo behind.
 */
#include "postgres.h"

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "fmgr.h"
#include "port/pg_crc32c.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "codec.h"
#include "stream.h"

/* zstd level 3 is libzstd's default and what DuckDB and Arrow write. */
#define CODEC_ZSTD_LEVEL		3
#define CODEC_GZIP_LEVEL		Z_DEFAULT_COMPRESSION
/* gzip wrapper instead of zlib's: windowBits 15 + 16 (Parquet requires it). */
#define CODEC_GZIP_WINDOW		(15 + 16)

/* Snappy framing format (framing_format.txt in google/snappy). */
#define SNAPPY_FRAME_MAX_INPUT	65536
#define SNAPPY_CHUNK_COMPRESSED		0x00
#define SNAPPY_CHUNK_UNCOMPRESSED	0x01
static const char snappy_stream_id[10] = {
	(char) 0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y'
};

static ZSTD_CCtx *block_zstd = NULL;
static z_stream block_gzip;
static bool block_gzip_ready = false;

StreamCodec
codec_from_name(const char *name)
{
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("InvalidArgumentException: compression must not be null"),
				 errhint("Use none, gzip, snappy or zstd.")));
	if (pg_strcasecmp(name, "none") == 0 || pg_strcasecmp(name, "uncompressed") == 0)
		return STREAM_CODEC_NONE;
	if (pg_strcasecmp(name, "gzip") == 0)
		return STREAM_CODEC_GZIP;
	if (pg_strcasecmp(name, "snappy") == 0)
		return STREAM_CODEC_SNAPPY;
	if (pg_strcasecmp(name, "zstd") == 0)
		return STREAM_CODEC_ZSTD;
	ereport(ERROR,
			(errcode(ERRCODE_STREAM_INVALID_ARG),
			 errmsg("InvalidArgumentException: Unknown compression \"%s\".", name),
			 errhint("Use none, gzip, snappy or zstd.")));
	return STREAM_CODEC_NONE;	/* keep compiler quiet */
}

const char *
codec_file_suffix(StreamCodec codec)
{
	switch (codec)
	{
		case STREAM_CODEC_NONE:
			return "";
		case STREAM_CODEC_GZIP:
			return ".gz";
		case STREAM_CODEC_SNAPPY:
			return ".snappy";
		case STREAM_CODEC_ZSTD:
			return ".zst";
	}
	return "";
}

/* Room for n more bytes at out->data + out->len. */
static char *
reserve(StringInfo out, size_t n)
{
	if (n >= (size_t) (MaxAllocSize - out->len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("compressed data would exceed %zu bytes", (size_t) MaxAllocSize)));
	enlargeStringInfo(out, (int) n);
	return out->data + out->len;
}

static void
advance(StringInfo out, size_t n)
{
	out->len += (int) n;
	out->data[out->len] = '\0';
}

static void
zstd_check(size_t rc, const char *what)
{
	if (ZSTD_isError(rc))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("zstd %s failed: %s", what, ZSTD_getErrorName(rc))));
}

static void
zlib_fail(z_stream *zs, int rc, const char *what)
{
	ereport(ERROR,
			(errcode(rc == Z_MEM_ERROR ? ERRCODE_OUT_OF_MEMORY : ERRCODE_INTERNAL_ERROR),
			 errmsg("zlib %s failed: %s", what,
					zs->msg ? zs->msg : zError(rc))));
}

static void
snappy_block(const char *src, size_t len, StringInfo out)
{
	size_t		cap = snappy_max_compressed_length(len);
	char	   *dst = reserve(out, cap);
	snappy_status rc = snappy_compress(src, len, dst, &cap);

	if (rc != SNAPPY_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("snappy compression failed with status %d", (int) rc)));
	advance(out, cap);
}

void
codec_compress(StreamCodec codec, const char *src, size_t len, StringInfo out)
{
	switch (codec)
	{
		case STREAM_CODEC_NONE:
			memcpy(reserve(out, len), src, len);
			advance(out, len);
			break;

		case STREAM_CODEC_SNAPPY:
			snappy_block(src, len, out);
			break;

		case STREAM_CODEC_ZSTD:
			{
				size_t		cap = ZSTD_compressBound(len);
				char	   *dst;
				size_t		rc;

				if (block_zstd == NULL)
				{
					block_zstd = ZSTD_createCCtx();
					if (block_zstd == NULL)
						ereport(ERROR,
								(errcode(ERRCODE_OUT_OF_MEMORY),
								 errmsg("out of memory creating a zstd context")));
				}
				dst = reserve(out, cap);
				rc = ZSTD_compressCCtx(block_zstd, dst, cap, src, len, CODEC_ZSTD_LEVEL);
				zstd_check(rc, "compression");
				advance(out, rc);
				break;
			}

		case STREAM_CODEC_GZIP:
			{
				z_stream   *zs = &block_gzip;
				int			rc;
				size_t		cap;

				if (!block_gzip_ready)
				{
					memset(zs, 0, sizeof(*zs));
					rc = deflateInit2(zs, CODEC_GZIP_LEVEL, Z_DEFLATED,
									  CODEC_GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY);
					if (rc != Z_OK)
						zlib_fail(zs, rc, "initialisation");
					block_gzip_ready = true;
				}
				else if ((rc = deflateReset(zs)) != Z_OK)
					zlib_fail(zs, rc, "reset");

				if (len > UINT_MAX)
					elog(ERROR, "gzip block of %zu bytes is too large", len);
				cap = deflateBound(zs, (uLong) len);
				zs->next_in = (Bytef *) src;
				zs->avail_in = (uInt) len;
				zs->next_out = (Bytef *) reserve(out, cap);
				zs->avail_out = (uInt) cap;
				rc = deflate(zs, Z_FINISH);
				if (rc != Z_STREAM_END)
					zlib_fail(zs, rc, "compression");
				advance(out, cap - zs->avail_out);
				break;
			}
	}
}

/* ---------------------------------------------------------------- streams */

struct CodecStream
{
	StreamCodec codec;
	MemoryContext cxt;
	MemoryContextCallback cb;
	bool		started;		/* snappy stream identifier written */
	ZSTD_CCtx  *zstd;
	z_stream	gzip;
	bool		gzip_ready;
	char	   *pending;		/* snappy: input not yet framed */
	size_t		npending;
	StringInfoData scratch;		/* snappy: one compressed chunk */
};

static void
codec_stream_release(void *arg)
{
	CodecStream *cs = (CodecStream *) arg;

	if (cs->zstd)
		ZSTD_freeCCtx(cs->zstd);
	cs->zstd = NULL;
	if (cs->gzip_ready)
		deflateEnd(&cs->gzip);
	cs->gzip_ready = false;
}

CodecStream *
codec_stream_create(StreamCodec codec)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "stream codec",
											  ALLOCSET_SMALL_SIZES);
	CodecStream *cs = MemoryContextAllocZero(cxt, sizeof(CodecStream));

	cs->codec = codec;
	cs->cxt = cxt;
	cs->cb.func = codec_stream_release;
	cs->cb.arg = cs;
	MemoryContextRegisterResetCallback(cxt, &cs->cb);

	if (codec == STREAM_CODEC_ZSTD)
	{
		cs->zstd = ZSTD_createCCtx();
		if (cs->zstd == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory creating a zstd context")));
		zstd_check(ZSTD_CCtx_setParameter(cs->zstd, ZSTD_c_compressionLevel,
										  CODEC_ZSTD_LEVEL), "setup");
		/* a content checksum lets readers detect a damaged file */
		zstd_check(ZSTD_CCtx_setParameter(cs->zstd, ZSTD_c_checksumFlag, 1), "setup");
	}
	else if (codec == STREAM_CODEC_GZIP)
	{
		int			rc = deflateInit2(&cs->gzip, CODEC_GZIP_LEVEL, Z_DEFLATED,
									  CODEC_GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY);

		if (rc != Z_OK)
			zlib_fail(&cs->gzip, rc, "initialisation");
		cs->gzip_ready = true;
	}
	else if (codec == STREAM_CODEC_SNAPPY)
	{
		cs->pending = MemoryContextAlloc(cxt, SNAPPY_FRAME_MAX_INPUT);
		cs->scratch.data = NULL;
	}
	return cs;
}

/* One framing-format chunk holding src (at most 64 KiB). */
static void
snappy_frame(CodecStream *cs, const char *src, size_t len, StringInfo out)
{
	pg_crc32c	crc;
	uint32		masked;
	char		hdr[8];
	const char *body;
	size_t		blen;

	if (cs->scratch.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cs->cxt);

		initStringInfo(&cs->scratch);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&cs->scratch);
	snappy_block(src, len, &cs->scratch);

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, src, len);
	FIN_CRC32C(crc);
	masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8;

	/* incompressible input is stored as is, as the format allows */
	if ((size_t) cs->scratch.len < len)
	{
		hdr[0] = SNAPPY_CHUNK_COMPRESSED;
		body = cs->scratch.data;
		blen = cs->scratch.len;
	}
	else
	{
		hdr[0] = SNAPPY_CHUNK_UNCOMPRESSED;
		body = src;
		blen = len;
	}
	/* chunk length: 3 bytes little-endian, covering the CRC and the body */
	hdr[1] = (char) ((blen + 4) & 0xFF);
	hdr[2] = (char) (((blen + 4) >> 8) & 0xFF);
	hdr[3] = (char) (((blen + 4) >> 16) & 0xFF);
	put_le32(hdr + 4, masked);
	appendBinaryStringInfo(out, hdr, 8);
	appendBinaryStringInfo(out, body, (int) blen);
}

static void
snappy_start(CodecStream *cs, StringInfo out)
{
	if (!cs->started)
	{
		appendBinaryStringInfo(out, snappy_stream_id, sizeof(snappy_stream_id));
		cs->started = true;
	}
}

void
codec_stream_write(CodecStream *cs, const char *data, size_t len, StringInfo out)
{
	switch (cs->codec)
	{
		case STREAM_CODEC_NONE:
			memcpy(reserve(out, len), data, len);
			advance(out, len);
			break;

		case STREAM_CODEC_SNAPPY:
			snappy_start(cs, out);
			while (len > 0)
			{
				size_t		n;

				/* whole chunks straight from the caller's buffer */
				if (cs->npending == 0 && len >= SNAPPY_FRAME_MAX_INPUT)
				{
					snappy_frame(cs, data, SNAPPY_FRAME_MAX_INPUT, out);
					data += SNAPPY_FRAME_MAX_INPUT;
					len -= SNAPPY_FRAME_MAX_INPUT;
					continue;
				}
				n = Min(len, SNAPPY_FRAME_MAX_INPUT - cs->npending);
				memcpy(cs->pending + cs->npending, data, n);
				cs->npending += n;
				data += n;
				len -= n;
				if (cs->npending == SNAPPY_FRAME_MAX_INPUT)
				{
					snappy_frame(cs, cs->pending, cs->npending, out);
					cs->npending = 0;
				}
			}
			break;

		case STREAM_CODEC_ZSTD:
			{
				ZSTD_inBuffer in = {data, len, 0};

				while (in.pos < in.size)
				{
					size_t		cap = ZSTD_CStreamOutSize();
					ZSTD_outBuffer ob = {reserve(out, cap), cap, 0};

					zstd_check(ZSTD_compressStream2(cs->zstd, &ob, &in, ZSTD_e_continue),
							   "compression");
					advance(out, ob.pos);
				}
				break;
			}

		case STREAM_CODEC_GZIP:
			{
				z_stream   *zs = &cs->gzip;

				zs->next_in = (Bytef *) data;
				while (len > 0)
				{
					uInt		chunk = (uInt) Min(len, (size_t) (1 << 30));

					zs->avail_in = chunk;
					do
					{
						size_t		cap = Max(deflateBound(zs, chunk), 65536);
						int			rc;

						zs->next_out = (Bytef *) reserve(out, cap);
						zs->avail_out = (uInt) cap;
						rc = deflate(zs, Z_NO_FLUSH);
						if (rc != Z_OK && rc != Z_BUF_ERROR)
							zlib_fail(zs, rc, "compression");
						advance(out, cap - zs->avail_out);
					} while (zs->avail_in > 0);
					len -= chunk;
				}
				break;
			}
	}
}

void
codec_stream_finish(CodecStream *cs, StringInfo out)
{
	switch (cs->codec)
	{
		case STREAM_CODEC_NONE:
			break;

		case STREAM_CODEC_SNAPPY:
			snappy_start(cs, out);
			if (cs->npending > 0)
				snappy_frame(cs, cs->pending, cs->npending, out);
			cs->npending = 0;
			break;

		case STREAM_CODEC_ZSTD:
			{
				ZSTD_inBuffer in = {NULL, 0, 0};
				size_t		left;

				do
				{
					size_t		cap = ZSTD_CStreamOutSize();
					ZSTD_outBuffer ob = {reserve(out, cap), cap, 0};

					left = ZSTD_compressStream2(cs->zstd, &ob, &in, ZSTD_e_end);
					zstd_check(left, "compression");
					advance(out, ob.pos);
				} while (left != 0);
				break;
			}

		case STREAM_CODEC_GZIP:
			{
				z_stream   *zs = &cs->gzip;
				int			rc;

				zs->next_in = NULL;
				zs->avail_in = 0;
				do
				{
					size_t		cap = 65536;

					zs->next_out = (Bytef *) reserve(out, cap);
					zs->avail_out = (uInt) cap;
					rc = deflate(zs, Z_FINISH);
					if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
						zlib_fail(zs, rc, "compression");
					advance(out, cap - zs->avail_out);
				} while (rc != Z_STREAM_END);
				break;
			}
	}
}

void
codec_stream_free(CodecStream *cs)
{
	/* the reset callback frees the native state */
	MemoryContextDelete(cs->cxt);
}

/* ---------------------------------------------------------------- SQL (tests) */

/*
 * stream_test.compress(data, compression), which only the tests create
 * (test/sql/test_functions.sql): data compressed as a whole file
 * (gzip member, zstd frame or snappy framing format), fed in uneven pieces
 * to exercise the stream code; for tests of the delivery file formats.
 */
PG_FUNCTION_INFO_V1(stream_compress_file);
Datum
stream_compress_file(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	StreamCodec codec = codec_from_name(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	const char *p = VARDATA_ANY(data);
	size_t		left = VARSIZE_ANY_EXHDR(data);
	size_t		piece = 1000;
	StringInfoData out;
	CodecStream *cs;
	bytea	   *result;

	initStringInfo(&out);
	cs = codec_stream_create(codec);
	while (left > 0)
	{
		size_t		n = Min(left, piece);

		codec_stream_write(cs, p, n, &out);
		p += n;
		left -= n;
		piece = piece * 3 + 7;	/* small and large writes */
	}
	codec_stream_finish(cs, &out);
	codec_stream_free(cs);

	result = palloc(VARHDRSZ + out.len);
	SET_VARSIZE(result, VARHDRSZ + out.len);
	memcpy(VARDATA(result), out.data, out.len);
	PG_RETURN_BYTEA_P(result);
}
