/*
 * md5.c: MD5 (RFC 1321) for routing partition keys.
 *
 * PostgreSQL's pg_md5_binary goes through OpenSSL's EVP interface, which
 * allocates a context, registers it with the resource owner and clears the
 * OpenSSL error queue on every call; for short partition keys that costs
 * more than the hash.  Routing needs only a one-shot digest of a short
 * buffer, so this is a plain implementation written from the RFC.
 */
#include "postgres.h"

#include "md5.h"

static const uint32 md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391
};

static const uint8 md5_r[64] = {
	7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
	5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
	4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
	6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21
};

#define ROTL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))

static void
md5_block(uint32 state[4], const uint8 block[64])
{
	uint32		w[16];
	uint32		a = state[0],
				b = state[1],
				c = state[2],
				d = state[3];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32) block[i * 4] | ((uint32) block[i * 4 + 1] << 8) |
			((uint32) block[i * 4 + 2] << 16) | ((uint32) block[i * 4 + 3] << 24);

	for (int i = 0; i < 64; i++)
	{
		uint32		f;
		int			g;
		uint32		tmp;

		if (i < 16)
		{
			f = (b & c) | (~b & d);
			g = i;
		}
		else if (i < 32)
		{
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
		}
		else if (i < 48)
		{
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
		}
		else
		{
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
		}
		tmp = d;
		d = c;
		c = b;
		b = b + ROTL(a + f + md5_k[i] + w[g], md5_r[i]);
		a = tmp;
	}
	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
}

void
stream_md5(const void *data, size_t len, uint8 digest[16])
{
	uint32		state[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
	const uint8 *p = data;
	size_t		left = len;
	uint8		tail[128];
	size_t		tail_len;
	uint64		bits = (uint64) len * 8;

	while (left >= 64)
	{
		md5_block(state, p);
		p += 64;
		left -= 64;
	}

	/* padding: 0x80, zeros, then the bit length little-endian */
	memcpy(tail, p, left);
	tail[left] = 0x80;
	tail_len = (left < 56) ? 64 : 128;
	memset(tail + left + 1, 0, tail_len - left - 1);
	for (int i = 0; i < 8; i++)
		tail[tail_len - 8 + i] = (uint8) (bits >> (8 * i));
	md5_block(state, tail);
	if (tail_len == 128)
		md5_block(state, tail + 64);

	for (int i = 0; i < 4; i++)
	{
		digest[i * 4] = (uint8) state[i];
		digest[i * 4 + 1] = (uint8) (state[i] >> 8);
		digest[i * 4 + 2] = (uint8) (state[i] >> 16);
		digest[i * 4 + 3] = (uint8) (state[i] >> 24);
	}
}
