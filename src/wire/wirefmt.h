/*
 * Byte-level pieces of the flattened format shared by the wire layer's
 * files (doc/wire.md, "Flattened messages"): the kinds of references and
 * the two integer encodings.
 *
 * A size is the codec's: 7-bit groups, most significant first, the last
 * byte marked with 0x80 (1 to 10 bytes for 64 bits). A u64 is 8 bytes,
 * little-endian.
 */
#ifndef PAR_WIREFMT_H
#define PAR_WIREFMT_H

#include <stddef.h>
#include <stdint.h>

enum { WIRE_REF_DUMP = 1, WIRE_REF_PROTO = 2, WIRE_REF_HANDLE = 3 };

#define WIREFMT_SIZE_MAX 10

static inline size_t wirefmt_put_size(unsigned char *out, uint64_t x) {
  unsigned char tmp[WIREFMT_SIZE_MAX];
  size_t n = 0, i;
  do { tmp[n++] = (unsigned char)(x & 0x7f); x >>= 7; } while (x);
  tmp[0] |= 0x80;
  for (i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* Bytes read (1..10), or 0 when truncated or over 64 bits. */
static inline size_t wirefmt_get_size(const unsigned char *p, size_t avail, uint64_t *out) {
  uint64_t x = 0;
  size_t i;
  for (i = 0; i < avail && i < WIREFMT_SIZE_MAX; i++) {
    if (x >> 57) return 0;
    x = (x << 7) | (uint64_t)(p[i] & 0x7f);
    if (p[i] & 0x80) { *out = x; return i + 1; }
  }
  return 0;
}

static inline void wirefmt_put_u64(unsigned char *out, uint64_t x) {
  int i;
  for (i = 0; i < 8; i++) out[i] = (unsigned char)(x >> (8 * i));
}

static inline uint64_t wirefmt_get_u64(const unsigned char *p) {
  uint64_t x = 0;
  int i;
  for (i = 7; i >= 0; i--) x = (x << 8) | p[i];
  return x;
}

/* The content id of a function's dump (wire.c). */
uint64_t par_wire_content_id(const void *bytes, size_t len);

#endif
