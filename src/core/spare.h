/*
 * Spare large blocks: a few freed blocks kept for the next allocation of a
 * similar size. glibc maps and unmaps each block past its mmap threshold,
 * and that threshold never rises past a block of the same size, so a
 * worker decoding a 1,000,000-element table would fault 16 MB of fresh
 * pages back in every time, costing as much as the decode itself.
 * Not thread-safe: one per owner (a worker state).
 */
#ifndef PAR_SPARE_H
#define PAR_SPARE_H

#include <stddef.h>

#define PAR_SPARE_MIN ((size_t)1 << 20)    /* smaller blocks: malloc's own bins */
#define PAR_SPARE_TOTAL ((size_t)32 << 20) /* most bytes kept at once */
#define PAR_SPARE_SLOTS 2

typedef struct par_spare {
  void *block[PAR_SPARE_SLOTS];
  size_t size[PAR_SPARE_SLOTS];
} par_spare;

/* A kept block of at least n bytes (and at most 2n), or NULL. */
void *par_spare_take(par_spare *s, size_t n);

/* Keeps p (n bytes, from malloc) or frees it. */
void par_spare_give(par_spare *s, void *p, size_t n);

/* Frees every kept block. */
void par_spare_clear(par_spare *s);

#endif
