/*
 * md5.h: one-shot MD5 digest used for partition-key routing.
 */
#ifndef STREAM_MD5_H
#define STREAM_MD5_H

extern void stream_md5(const void *data, size_t len, uint8 digest[16]);

#endif							/* STREAM_MD5_H */
