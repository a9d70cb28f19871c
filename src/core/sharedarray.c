#include "sharedarray.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "shm.h"

#define RELAXED memory_order_relaxed

const char *const par_elem_names[] = {
  "int8", "uint8", "int16", "uint16", "int32", "uint32",
  "int64", "uint64", "float", "double", NULL
};

static const unsigned char elem_size[] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8};

size_t par_elem_size(int elem) { return elem_size[elem]; }

int par_elem_fits_int(int elem, int64_t v) {
  switch (elem) {
    case PAR_INT8: return v >= INT8_MIN && v <= INT8_MAX;
    case PAR_UINT8: return v >= 0 && v <= UINT8_MAX;
    case PAR_INT16: return v >= INT16_MIN && v <= INT16_MAX;
    case PAR_UINT16: return v >= 0 && v <= UINT16_MAX;
    case PAR_INT32: return v >= INT32_MIN && v <= INT32_MAX;
    case PAR_UINT32: return v >= 0 && v <= (int64_t)UINT32_MAX;
    case PAR_UINT64: return v >= 0;
    default: return 1;
  }
}

int par_elem_fits_float(int elem, double v) {
  return elem != PAR_FLOAT || !isfinite(v) || fabs(v) <= FLT_MAX;
}

static void array_destroy(par_object *o) {
  par_array *a = (par_array *)o;
  par_shm_block_drop(&a->blk, o);
  if (a->base) par_object_release(&a->base->hdr);
  free(a);
}

const par_type par_array_type = {"parallel.array", array_destroy};
const par_type par_value_type = {"parallel.value", array_destroy};

par_array *par_array_new(const par_type *type, int elem, size_t n) {
  par_array *a;
  if (n > PAR_ARRAY_MAX_BYTES / 8) return NULL;
  a = calloc(1, sizeof *a);
  if (!a) return NULL;
  par_object_init(&a->hdr, type);
  a->data = par_shm_block_new(&a->blk, (n ? n : 1) * elem_size[elem],
                              type == &par_value_type ? PAR_SHM_K_VALUE : PAR_SHM_K_ARRAY, &a->hdr);
  if (!a->data) { free(a); return NULL; }
  a->blk.hdr->a = (uint64_t)elem;
  a->blk.hdr->b = n;
  a->base = NULL;
  a->n = n;
  a->elem = elem;
  return a;
}

par_array *par_array_view(par_array *a, size_t first, size_t n) {
  par_array *v = calloc(1, sizeof *v);
  par_array *owner = a->base ? a->base : a;
  if (!v) return NULL;
  par_object_init(&v->hdr, &par_array_type);
  /* A view names its base and its range in a block of its own, so that
   * it can travel to another process as itself. */
  if (!par_shm_block_new(&v->blk, 0, PAR_SHM_K_VIEW, &v->hdr)) { free(v); return NULL; }
  v->base = (par_array *)par_object_retain(&owner->hdr);
  v->data = a->data + first * elem_size[a->elem];
  v->n = n;
  v->elem = a->elem;
  v->blk.hdr->a = (uint64_t)a->elem;
  v->blk.hdr->b = n;
  v->blk.hdr->c = (uint64_t)((size_t)(v->data - owner->data) / elem_size[a->elem]);
  v->blk.hdr->ref = owner->blk.loc;
  return v;
}

const par_shm_loc *par_array_loc(const par_array *a) { return &a->blk.loc; }

int par_array_foreign(const par_array *a) { return (a->base ? a->base : a)->blk.foreign; }

par_array *par_array_import(const par_type *type, const par_shm_loc *loc, char *err, size_t errsize) {
  par_object *o = par_shm_lookup(loc);
  par_array *a;
  const par_shm_hdr *h;
  uint32_t kind;
  if (o) {
    if (o->type == type) return (par_array *)o;
    par_object_release(o);
    snprintf(err, errsize, "a malformed shared object handle");
    return NULL;
  }
  a = calloc(1, sizeof *a);
  if (!a) { snprintf(err, errsize, "not enough memory"); return NULL; }
  par_object_init(&a->hdr, type);
  kind = type == &par_value_type ? PAR_SHM_K_VALUE : PAR_SHM_K_ARRAY;
  /* A loc of ours names a view when its block says so. */
  if (type == &par_array_type) {
    size_t avail = 0;
    char ignore[8];
    h = par_shm_map(loc, &avail, ignore, sizeof ignore);
    if (h) {
      if (h->magic == PAR_SHM_MAGIC && h->kind == PAR_SHM_K_VIEW) kind = PAR_SHM_K_VIEW;
      par_shm_unmap(loc);
    }
  }
  a->data = par_shm_block_import(&a->blk, loc, kind, 0, &a->hdr, err, errsize);
  if (!a->data) { free(a); return NULL; }
  h = a->blk.hdr;
  a->elem = (int)h->a;
  a->n = (size_t)h->b;
  if (h->a > PAR_DOUBLE || h->b > PAR_ARRAY_MAX_BYTES / 8) goto bad;
  if (kind == PAR_SHM_K_VIEW) {
    par_array *base = par_array_import(&par_array_type, &h->ref, err, errsize);
    if (!base) { par_shm_block_drop(&a->blk, &a->hdr); free(a); return NULL; }
    if (base->base || base->elem != a->elem || h->c > base->n || a->n > base->n - h->c) {
      par_object_release(&base->hdr);
      goto bad;
    }
    a->base = base;
    a->data = base->data + h->c * elem_size[a->elem];
  } else if ((a->n ? a->n : 1) * elem_size[a->elem] > a->blk.size - PAR_SHM_HDR) {
    goto bad;
  }
  return a;
bad:
  snprintf(err, errsize, "a malformed shared object handle");
  a->base = NULL;
  par_shm_block_drop(&a->blk, &a->hdr);
  free(a);
  return NULL;
}

/* Raw element bits, zero-extended, and back. */
static uint64_t load_bits(const par_array *a, size_t i) {
  void *p = a->data + i * elem_size[a->elem];
  switch (elem_size[a->elem]) {
    case 1: return atomic_load_explicit((_Atomic uint8_t *)p, RELAXED);
    case 2: return atomic_load_explicit((_Atomic uint16_t *)p, RELAXED);
    case 4: return atomic_load_explicit((_Atomic uint32_t *)p, RELAXED);
    default: return atomic_load_explicit((_Atomic uint64_t *)p, RELAXED);
  }
}

static void store_bits(par_array *a, size_t i, uint64_t b) {
  void *p = a->data + i * elem_size[a->elem];
  switch (elem_size[a->elem]) {
    case 1: atomic_store_explicit((_Atomic uint8_t *)p, (uint8_t)b, RELAXED); break;
    case 2: atomic_store_explicit((_Atomic uint16_t *)p, (uint16_t)b, RELAXED); break;
    case 4: atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)b, RELAXED); break;
    default: atomic_store_explicit((_Atomic uint64_t *)p, b, RELAXED); break;
  }
}

static int cas_bits(par_array *a, size_t i, uint64_t *expected, uint64_t desired) {
  void *p = a->data + i * elem_size[a->elem];
  int ok;
  switch (elem_size[a->elem]) {
    case 1: {
      uint8_t e = (uint8_t)*expected;
      ok = atomic_compare_exchange_weak((_Atomic uint8_t *)p, &e, (uint8_t)desired);
      *expected = e;
      break;
    }
    case 2: {
      uint16_t e = (uint16_t)*expected;
      ok = atomic_compare_exchange_weak((_Atomic uint16_t *)p, &e, (uint16_t)desired);
      *expected = e;
      break;
    }
    case 4: {
      uint32_t e = (uint32_t)*expected;
      ok = atomic_compare_exchange_weak((_Atomic uint32_t *)p, &e, (uint32_t)desired);
      *expected = e;
      break;
    }
    default:
      ok = atomic_compare_exchange_weak((_Atomic uint64_t *)p, expected, desired);
      break;
  }
  return ok;
}

static par_scalar from_bits(int elem, uint64_t b) {
  par_scalar s;
  switch (elem) {
    case PAR_INT8: s.i = (int8_t)b; break;
    case PAR_INT16: s.i = (int16_t)b; break;
    case PAR_INT32: s.i = (int32_t)b; break;
    case PAR_FLOAT: {
      uint32_t w = (uint32_t)b;
      float f;
      memcpy(&f, &w, sizeof f);
      s.f = f;
      break;
    }
    case PAR_DOUBLE: memcpy(&s.f, &b, sizeof s.f); break;
    default: s.u = b; break;
  }
  return s;
}

static uint64_t to_bits(int elem, par_scalar s) {
  switch (elem) {
    case PAR_FLOAT: {
      float f = (float)s.f;
      uint32_t w;
      memcpy(&w, &f, sizeof w);
      return w;
    }
    case PAR_DOUBLE: {
      uint64_t b;
      memcpy(&b, &s.f, sizeof b);
      return b;
    }
    default: return s.u;
  }
}

par_scalar par_array_get(const par_array *a, size_t i) {
  return from_bits(a->elem, load_bits(a, i));
}

void par_array_set(par_array *a, size_t i, par_scalar v) {
  store_bits(a, i, to_bits(a->elem, v));
}

/* old + delta for the element type; 0 if it does not fit. */
static int add_checked(int elem, par_scalar old, par_scalar delta, par_scalar *out) {
  if (elem >= PAR_FLOAT) {
    out->f = old.f + delta.f;
    return par_elem_fits_float(elem, out->f);
  }
  if (elem == PAR_UINT64) {
    uint64_t mag = delta.i < 0 ? 0 - (uint64_t)delta.i : (uint64_t)delta.i;
    if (delta.i < 0) {
      if (mag > old.u) return 0;
      out->u = old.u - mag;
    } else {
      if (old.u > UINT64_MAX - mag) return 0;
      out->u = old.u + mag;
    }
    return 1;
  }
  if (__builtin_add_overflow(old.i, delta.i, &out->i)) return 0;
  return par_elem_fits_int(elem, out->i);
}

int par_array_add(par_array *a, size_t i, par_scalar delta, par_scalar *result) {
  uint64_t bits;
  if (a->elem == PAR_INT64) {
    /* The shared counter's type, without the per-type dispatch, and with
     * one locked add instead of a compare-and-swap loop: under contention
     * each failed CAS costs the cache line another trip between the cores.
     * C11 atomics wrap on overflow; an add that overflowed is taken back
     * at once (another thread may glimpse the wrapped value meanwhile: only
     * a counter within delta of the int64 limits ever does). */
    _Atomic int64_t *p = (_Atomic int64_t *)(void *)(a->data + i * sizeof(int64_t));
    int64_t old = atomic_fetch_add(p, delta.i), nv;
    if (__builtin_add_overflow(old, delta.i, &nv)) {
      atomic_fetch_sub(p, delta.i);
      return PAR_ERROR;
    }
    result->i = nv;
    return PAR_OK;
  }
  bits = load_bits(a, i);
  for (;;) {
    par_scalar nv;
    if (!add_checked(a->elem, from_bits(a->elem, bits), delta, &nv)) return PAR_ERROR;
    if (cas_bits(a, i, &bits, to_bits(a->elem, nv))) {
      *result = from_bits(a->elem, to_bits(a->elem, nv));
      return PAR_OK;
    }
  }
}

int par_array_cas(par_array *a, size_t i, par_scalar expected, par_scalar desired) {
  uint64_t want = to_bits(a->elem, expected), nb = to_bits(a->elem, desired);
  for (;;) {
    uint64_t seen = want;
    if (cas_bits(a, i, &seen, nb)) return 1;
    if (seen != want) return 0;
    /* a weak CAS may fail spuriously: only a different value is a failure */
  }
}

void par_array_fill(par_array *a, size_t i, size_t j, par_scalar v) {
  uint64_t b = to_bits(a->elem, v);
  for (; i < j; i++) store_bits(a, i, b);
}

par_scalar par_array_sum(const par_array *a, size_t i, size_t j, int *is_float) {
  par_scalar s;
  double f = 0;
  int64_t total = 0;
  int exact = a->elem < PAR_FLOAT;
  for (; i < j; i++) {
    par_scalar v = par_array_get(a, i);
    if (!exact) {
      if (a->elem >= PAR_FLOAT) f += v.f;
      else if (a->elem == PAR_UINT64) f += (double)v.u;
      else f += (double)v.i;
    } else {
      int64_t t;
      if ((a->elem == PAR_UINT64 && v.u > INT64_MAX) ||
          __builtin_add_overflow(total, v.i, &t)) {
        exact = 0;
        f = (double)total + (a->elem == PAR_UINT64 ? (double)v.u : (double)v.i);
      } else {
        total = t;
      }
    }
  }
  *is_float = !exact;
  if (exact) s.i = total;
  else s.f = f;
  return s;
}

static int less(int elem, par_scalar x, par_scalar y) {
  if (elem >= PAR_FLOAT) return x.f < y.f;
  if (elem == PAR_UINT64) return x.u < y.u;
  return x.i < y.i;
}

size_t par_array_argmin(const par_array *a, size_t i, size_t j, int max) {
  size_t best = i;
  par_scalar bv = par_array_get(a, i);
  for (i++; i < j; i++) {
    par_scalar v = par_array_get(a, i);
    if (max ? less(a->elem, bv, v) : less(a->elem, v, bv)) {
      best = i;
      bv = v;
    }
  }
  return best;
}
