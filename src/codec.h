/*
 * codec.h: compression codecs for Parquet pages and for whole delivered files.
 *
 * Block form (codec_compress), one independent block per call, as Parquet
 * pages need: gzip = one gzip member (RFC 1952), snappy = one raw snappy
 * block, zstd = one zstd frame.
 *
 * Stream form (CodecStream), for JSON lines and CSV files: gzip = one gzip
 * member, zstd = one zstd frame, snappy = the snappy *framing* format
 * (stream identifier chunk, then compressed chunks of at most 64 KiB of input
 * each with the masked CRC-32C of their input), which is what Firehose
 * writes for Snappy and what `snzip -t framing2` / python-snappy read.
 */
#ifndef STREAM_CODEC_H
#define STREAM_CODEC_H

#include "postgres.h"
#include "lib/stringinfo.h"

typedef enum StreamCodec
{
	STREAM_CODEC_NONE = 0,
	STREAM_CODEC_GZIP,
	STREAM_CODEC_SNAPPY,
	STREAM_CODEC_ZSTD
} StreamCodec;

/* none|gzip|snappy|zstd (case-insensitive, "uncompressed" = none). */
/* Little-endian uint32, as Parquet and the snappy framing format store them. */
static inline void
put_le32(char *p, uint32 v)
{
	p[0] = (char) (v & 0xFF);
	p[1] = (char) ((v >> 8) & 0xFF);
	p[2] = (char) ((v >> 16) & 0xFF);
	p[3] = (char) ((v >> 24) & 0xFF);
}

extern StreamCodec codec_from_name(const char *name);
/* File name suffix for whole-file compression: "", ".gz", ".snappy", ".zst". */
extern const char *codec_file_suffix(StreamCodec codec);

/* Appends one compressed block of src to out. */
extern void codec_compress(StreamCodec codec, const char *src, size_t len,
						   StringInfo out);

/*
 * Whole-file compression.  Output is appended to the StringInfo passed in,
 * which the caller writes out and resets at will.  The native state is freed
 * by codec_stream_free, or by the reset of the memory context that was
 * current at codec_stream_create (so an error cannot leak it).
 */
typedef struct CodecStream CodecStream;

extern CodecStream *codec_stream_create(StreamCodec codec);
extern void codec_stream_write(CodecStream *cs, const char *data, size_t len,
							   StringInfo out);
extern void codec_stream_finish(CodecStream *cs, StringInfo out);
extern void codec_stream_free(CodecStream *cs);

#endif							/* STREAM_CODEC_H */
