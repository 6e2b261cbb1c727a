/*
 * seqno.h: the sequence number as a value - its layout, its hour bucket and
 * its 40-digit text form.  No allocation here (that is seqalloc.h).
 *
 * Within a shard a sequence number is (hour bucket << 32) | counter, where
 * the bucket counts hours since 1970: a chunk covers whole buckets, so its
 * name follows from a sequence number.  The text form is '4', the 19-digit
 * sequence, the 10-digit stream id and the 10-digit shard index: text order
 * is order within a shard, and the text says where it came from.
 */
#ifndef STREAM_SEQNO_H
#define STREAM_SEQNO_H

#include "stream.h"

#define SEQ_BUCKET_SHIFT			32
#define SEQ_BUCKET(seq)				((int64) (seq) >> SEQ_BUCKET_SHIFT)
#define SEQ_FROM_BUCKET(b)			((int64) (b) << SEQ_BUCKET_SHIFT)
#define SEQ_TEXT_LEN				40

/* Hours since the Unix epoch at now: the bucket of a number taken then. */
extern int64 seq_bucket_now(TimestampTz now);
/*
 * The first of count consecutive numbers at or above candidate, in bucket
 * or later, that fit in one bucket's counter half.
 */
extern int64 seq_first_of_run(int64 candidate, int64 bucket, int count);

/* Write the SEQ_TEXT_LEN digits at out (no terminator). */
extern void seq_format(char *out, int32 stream_id, int32 shard_index, int64 seq);
/* Rewrite only the sequence digits of a formatted number. */
extern void seq_format_seq(char *out, int64 seq);
extern char *seq_to_text(int32 stream_id, int32 shard_index, int64 seq);
extern text *seq_to_text_datum(int32 stream_id, int32 shard_index, int64 seq);
/* Parse the text form; false when text is not a sequence number of ours. */
extern bool seq_from_text(const char *text, int32 *stream_id,
						  int32 *shard_index, int64 *seq);

#endif							/* STREAM_SEQNO_H */
