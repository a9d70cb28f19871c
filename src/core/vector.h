/*
 * Bulk arithmetic on shared arrays (dot, scale, axpy, copy) at C speed.
 *
 * Threads: any; no lock. Like every other array operation, each element
 * is read and written with a relaxed atomic access, so a range operation
 * is atomic per element, not as a whole: split the work between tasks by
 * giving each a view of its own part. Nothing is allocated or freed.
 *
 * Integer element types compute exactly; an integer result that would not
 * fit its element type makes the call fail before it writes anything (a
 * first pass checks). Float types follow IEEE arithmetic (overflow gives
 * inf). Sums run in four lanes, so the last bits of a floating-point dot
 * product can differ from a left-to-right loop's.
 */
#ifndef PAR_VECTOR_H
#define PAR_VECTOR_H

#include "sharedarray.h"

/* Sum of a[k] * b[k] for k in [i, j): exact (*is_float = 0) when both are
 * integer arrays and the total fits an int64, else a double. */
par_scalar par_vector_dot(const par_array *a, const par_array *b, size_t i, size_t j,
                          int *is_float);

/* The factor of scale/axpy: an integer (is_float = 0) or a double. Integer
 * arrays need an integer factor (the binding checks). */
typedef struct par_factor {
  par_scalar v;
  int is_float;
} par_factor;

/* The following return PAR_OK, or PAR_ERROR with *bad the 0-based index of
 * the first element whose result does not fit (nothing written then). */
int par_vector_scale(par_array *a, par_factor k, size_t *bad);
/* a = a + k * b; a and b have the same length. */
int par_vector_axpy(par_array *a, par_factor k, const par_array *b, size_t *bad);
/* a = b, converting; a and b have the same length. Element by element
 * from the first, so a view copied onto an overlapping later one smears. */
int par_vector_copy(par_array *a, const par_array *b, size_t *bad);

#endif
