/*
 * Typed shared memory: parallel.array and parallel.value (an array of one).
 *
 * Threads: any. There is no mutex: every element access is a C11 atomic
 * (relaxed loads and stores, read-modify-write loops with compare-and-swap
 * for add and cas; float and double go through their bit patterns), so
 * concurrent a[i] reads and writes are well defined and add never loses an
 * update. Operations over a range (fill, sum, min, max) are atomic per
 * element, not as a whole.
 * Memory: the shared-memory arena (shm.h), so that worker processes map
 * the same elements; a view's block only describes it (base, range).
 * Ownership: the object that allocated the buffer frees it. A view shares
 * its memory and holds a reference to that owner (`base`), so the buffer
 * lives as long as any view of it.
 */
#ifndef PAR_SHAREDARRAY_H
#define PAR_SHAREDARRAY_H

#include <stddef.h>
#include <stdint.h>
#include "object.h"
#include "shm.h"

enum {
  PAR_INT8, PAR_UINT8, PAR_INT16, PAR_UINT16, PAR_INT32, PAR_UINT32,
  PAR_INT64, PAR_UINT64, PAR_FLOAT, PAR_DOUBLE
};

/* Element type names in enum order, NULL-terminated (luaL_checkoption). */
extern const char *const par_elem_names[];

/* One element's value: i for signed integer types, u for uint64 (and the
 * bits of the other unsigned ones through i), f for float and double. */
typedef union par_scalar {
  int64_t i;
  uint64_t u;
  double f;
} par_scalar;

typedef struct par_array {
  par_object hdr;
  struct par_array *base;   /* owner of the memory; NULL if this is it */
  unsigned char *data;
  size_t n;
  int elem;
  par_shm_block blk;        /* the memory (a view: its range's description) */
} par_array;

/* The largest array accepted (1 TiB): beyond it no machine this runs on
 * has the memory, and allocators (sanitizers' included) fail badly. */
#define PAR_ARRAY_MAX_BYTES ((size_t)1 << 40)

extern const par_type par_array_type;   /* "parallel.array" */
extern const par_type par_value_type;   /* "parallel.value" */

size_t par_elem_size(int elem);
static inline int par_elem_is_float(int elem) { return elem >= PAR_FLOAT; }
/* Whether v fits the element type (signed input; float types: v finite
 * and in range, or not finite). */
int par_elem_fits_int(int elem, int64_t v);
int par_elem_fits_float(int elem, double v);

/* Zero-filled; type is &par_array_type or &par_value_type. NULL on out of
 * memory. */
par_array *par_array_new(const par_type *type, int elem, size_t n);
/* n elements of a starting at 0-based index first (bounds checked by the
 * caller). */
par_array *par_array_view(par_array *a, size_t first, size_t n);

/* Its block's name, for another process. */
const par_shm_loc *par_array_loc(const par_array *a);
/* Whether its memory was mapped from another process. */
int par_array_foreign(const par_array *a);
/* The array (type: array or value) another process's loc names: this
 * process's own object when loc is one of ours and still alive, else a new
 * object over the mapped memory (a view: over its mapped base). One
 * reference; NULL with err filled. */
par_array *par_array_import(const par_type *type, const par_shm_loc *loc, char *err, size_t errsize);

par_scalar par_array_get(const par_array *a, size_t i);
void par_array_set(par_array *a, size_t i, par_scalar v);
/* Atomic add; integer types take delta.i, float types delta.f. Returns
 * PAR_ERROR (and leaves the element alone) if the result would not fit. */
int par_array_add(par_array *a, size_t i, par_scalar delta, par_scalar *result);
/* Atomic compare-and-swap on the element's representation; 1 if swapped. */
int par_array_cas(par_array *a, size_t i, par_scalar expected, par_scalar desired);
void par_array_fill(par_array *a, size_t i, size_t j, par_scalar v);

/* Sum of [i, j): integer types sum exactly while the total fits an
 * int64 (*is_float = 0), then continue as double. */
par_scalar par_array_sum(const par_array *a, size_t i, size_t j, int *is_float);
/* Index (in [i, j)) of the least / greatest element; j > i. */
size_t par_array_argmin(const par_array *a, size_t i, size_t j, int max);

#endif
