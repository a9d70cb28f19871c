#include "vector.h"

#include <stdatomic.h>
#include <string.h>

#define RELAXED memory_order_relaxed

typedef __int128 wide;

/* The double fast path: the same relaxed atomic accesses as sharedarray.c,
 * without its per-element dispatch on the element type. */
static inline double ld_double(const par_array *a, size_t i) {
  uint64_t b = atomic_load_explicit((_Atomic uint64_t *)(void *)a->data + i, RELAXED);
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

static inline void st_double(par_array *a, size_t i, double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  atomic_store_explicit((_Atomic uint64_t *)(void *)a->data + i, b, RELAXED);
}

static double as_double(const par_array *a, size_t i) {
  par_scalar s;
  if (a->elem == PAR_DOUBLE) return ld_double(a, i);
  s = par_array_get(a, i);
  if (par_elem_is_float(a->elem)) return s.f;
  if (a->elem == PAR_UINT64) return (double)s.u;
  return (double)s.i;
}

static wide as_wide(const par_array *a, size_t i) {
  par_scalar s = par_array_get(a, i);
  return a->elem == PAR_UINT64 ? (wide)s.u : (wide)s.i;
}

static int wide_fits(int elem, wide v) {
  if (elem == PAR_UINT64) return v >= 0 && v <= (wide)UINT64_MAX;
  if (v < INT64_MIN || v > INT64_MAX) return 0;
  return par_elem_fits_int(elem, (int64_t)v);
}

static void set_wide(par_array *a, size_t i, wide v) {
  par_scalar s;
  if (a->elem == PAR_UINT64) s.u = (uint64_t)v;
  else s.i = (int64_t)v;
  par_array_set(a, i, s);
}

static void set_double(par_array *a, size_t i, double d) {
  par_scalar s;
  if (a->elem == PAR_DOUBLE) { st_double(a, i, d); return; }
  s.f = d;
  par_array_set(a, i, s);
}

static double factor_double(par_factor k) {
  return k.is_float ? k.v.f : (double)k.v.i;
}

par_scalar par_vector_dot(const par_array *a, const par_array *b, size_t i, size_t j,
                          int *is_float) {
  par_scalar r;
  if (par_elem_is_float(a->elem) || par_elem_is_float(b->elem)) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t k = i;
    if (a->elem == PAR_DOUBLE && b->elem == PAR_DOUBLE) {
      for (; k + 4 <= j; k += 4) {
        s0 += ld_double(a, k) * ld_double(b, k);
        s1 += ld_double(a, k + 1) * ld_double(b, k + 1);
        s2 += ld_double(a, k + 2) * ld_double(b, k + 2);
        s3 += ld_double(a, k + 3) * ld_double(b, k + 3);
      }
    }
    for (; k < j; k++) s0 += as_double(a, k) * as_double(b, k);
    *is_float = 1;
    r.f = (s0 + s1) + (s2 + s3);
    return r;
  }
  {
    wide total = 0;
    double f = 0;
    int exact = 1;
    size_t k;
    for (k = i; k < j; k++) {
      wide x = as_wide(a, k), y = as_wide(b, k), p;
      if (!exact) {
        f += (double)x * (double)y;
      } else if (__builtin_mul_overflow(x, y, &p) || __builtin_add_overflow(total, p, &total)) {
        exact = 0;
        f = (double)total + (double)x * (double)y;
      }
    }
    if (exact && total >= INT64_MIN && total <= INT64_MAX) {
      *is_float = 0;
      r.i = (int64_t)total;
    } else {
      *is_float = 1;
      r.f = exact ? (double)total : f;
    }
    return r;
  }
}

/* An integer array's new element k: a*x + y*b (y: 1 for scale's nothing). */
static int int_result(const par_array *a, size_t k, wide x, const par_array *b, wide *out) {
  wide v = as_wide(a, k), p;
  if (__builtin_mul_overflow(v, b ? (wide)1 : x, &v)) return 0;
  if (b) {
    if (__builtin_mul_overflow(x, as_wide(b, k), &p) || __builtin_add_overflow(v, p, &v))
      return 0;
  }
  *out = v;
  return wide_fits(a->elem, v);
}

/* scale and axpy on integer arrays: check every element, then write. */
static int int_update(par_array *a, wide x, const par_array *b, size_t *bad) {
  size_t k;
  wide v;
  for (k = 0; k < a->n; k++)
    if (!int_result(a, k, x, b, &v)) { *bad = k; return PAR_ERROR; }
  for (k = 0; k < a->n; k++) {
    /* a concurrent writer may have changed the element since the check */
    if (!int_result(a, k, x, b, &v)) { *bad = k; return PAR_ERROR; }
    set_wide(a, k, v);
  }
  return PAR_OK;
}

int par_vector_scale(par_array *a, par_factor k, size_t *bad) {
  size_t i;
  if (!par_elem_is_float(a->elem)) return int_update(a, (wide)k.v.i, NULL, bad);
  {
    double f = factor_double(k);
    if (a->elem == PAR_DOUBLE)
      for (i = 0; i < a->n; i++) st_double(a, i, ld_double(a, i) * f);
    else
      for (i = 0; i < a->n; i++) set_double(a, i, as_double(a, i) * f);
  }
  return PAR_OK;
}

int par_vector_axpy(par_array *a, par_factor k, const par_array *b, size_t *bad) {
  size_t i;
  if (!par_elem_is_float(a->elem)) return int_update(a, (wide)k.v.i, b, bad);
  {
    double f = factor_double(k);
    if (a->elem == PAR_DOUBLE && b->elem == PAR_DOUBLE)
      for (i = 0; i < a->n; i++) st_double(a, i, ld_double(a, i) + f * ld_double(b, i));
    else
      for (i = 0; i < a->n; i++) set_double(a, i, as_double(a, i) + f * as_double(b, i));
  }
  return PAR_OK;
}

int par_vector_copy(par_array *a, const par_array *b, size_t *bad) {
  size_t i;
  if (a->elem == b->elem) {
    for (i = 0; i < a->n; i++) par_array_set(a, i, par_array_get(b, i));
  } else if (par_elem_is_float(a->elem)) {
    for (i = 0; i < a->n; i++) set_double(a, i, as_double(b, i));
  } else {
    for (i = 0; i < a->n; i++)
      if (!wide_fits(a->elem, as_wide(b, i))) { *bad = i; return PAR_ERROR; }
    for (i = 0; i < a->n; i++) {
      wide v = as_wide(b, i);
      if (!wide_fits(a->elem, v)) { *bad = i; return PAR_ERROR; }
      set_wide(a, i, v);
    }
  }
  return PAR_OK;
}
