/* The shared-memory via: see shmvia.h. */
#include "wire/shmvia.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sharedarray.h"
#include "core/shm.h"
#include "core/sync.h"

/* An object kept alive for the other side: how many handles of it were
 * sent and not let go yet; pinned: kept until the other side is gone. */
typedef struct kept {
  par_object *o;
  uint64_t sent;
  int pinned;
} kept;

/* Up: handles received of a block, under the name they came with. */
typedef struct got {
  par_shm_loc loc;
  uint64_t n;
} got;

struct par_shm_via {
  int up;
  _Atomic uint32_t dest;     /* the other side's pid (0: not known) */
  pthread_mutex_t mu;
  kept *slots;               /* open addressing, by pointer; o NULL: empty */
  size_t cap, n;
  got *gots;                 /* the other side's objects imported here */
  size_t ngots, capgots;
  unsigned long drops;       /* par_shm_drops() when gots were looked at last */
};

static const par_type *const types[] = {
  &par_array_type, &par_value_type, &par_lock_type, &par_rlock_type, &par_semaphore_type,
  &par_condition_type, &par_event_type, &par_barrier_type, NULL
};

static const par_type *type_named(const char *name) {
  int i;
  for (i = 0; types[i]; i++)
    if (strcmp(types[i]->name, name) == 0) return types[i];
  return NULL;
}

static const par_shm_block *block_of(par_object *o) {
  if (o->type == &par_array_type || o->type == &par_value_type) return &((par_array *)o)->blk;
  return par_sync_block(o);
}

static size_t slot_of(par_object *o, size_t cap) {
  uintptr_t x = (uintptr_t)o;
  return (size_t)((x >> 4) * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
}

/* Keeps o alive for the other side (mu held): one more handle sent, or
 * pinned. 0, or -1 on out of memory. */
static int keep(par_shm_via *v, par_object *o, int pin) {
  size_t i;
  if (v->n * 2 >= v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64, j;
    kept *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (j = 0; j < v->cap; j++)
      if (v->slots[j].o) {
        for (i = slot_of(v->slots[j].o, cap); s[i].o; i = (i + 1) & (cap - 1)) {}
        s[i] = v->slots[j];
      }
    free(v->slots);
    v->slots = s;
    v->cap = cap;
  }
  for (i = slot_of(o, v->cap); v->slots[i].o; i = (i + 1) & (v->cap - 1))
    if (v->slots[i].o == o) break;
  if (!v->slots[i].o) {
    v->slots[i].o = par_object_retain(o);
    v->slots[i].sent = 0;
    v->slots[i].pinned = 0;
    v->n++;
  }
  if (pin) v->slots[i].pinned = 1;
  else v->slots[i].sent++;
  return 0;
}

/* Empties slot i, moving back the ones its probe sequence held up (mu held). */
static void unslot(par_shm_via *v, size_t i) {
  size_t j = i, mask = v->cap - 1;
  v->slots[i].o = NULL;
  v->n--;
  for (;;) {
    size_t k;
    j = (j + 1) & mask;
    if (!v->slots[j].o) return;
    k = slot_of(v->slots[j].o, v->cap);
    if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
    v->slots[i] = v->slots[j];
    v->slots[j].o = NULL;
    i = j;
  }
}

static int refuse(par_wire_err *e, const char *fmt, const char *name) {
  snprintf(e->msg, sizeof e->msg, fmt, name);
  return -1;
}

int par_shm_via_carries(par_object *o, par_wire_err *e) {
  if (!type_named(o->type->name) || !block_of(o)) return 0;
  if (o->type == &par_barrier_type && ((par_barrier *)o)->action)
    return refuse(e, "cannot send %s with an action to another process (its action is a "
                  "function of this process; make the barrier without one)", o->type->name);
  return 1;
}

static int via_export(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  par_shm_via *v = (par_shm_via *)ud;
  const par_shm_block *b;
  int r = par_shm_via_carries(o, e);
  if (r <= 0) return r < 0 ? -1 : 1;
  b = block_of(o);
  /* down: kept until the worker is gone; up: what this worker made (its
   * block, freed here once its last reference goes) kept until it exits */
  if (!v->up || !b->foreign) {
    pthread_mutex_lock(&v->mu);
    r = keep(v, o, 0);
    pthread_mutex_unlock(&v->mu);
    if (r != 0) return refuse(e, "%s", "not enough memory");
  }
  h->type = o->type->name;
  {
    par_shm_loc loc;
    if (!par_shm_loc_relay(&b->loc, (pid_t)atomic_load(&v->dest), &loc)) loc = b->loc;
    h->owner = loc.owner;
    h->id = loc.id;
  }
  return 0;
}

/* What the other side holds of: a lock it made and holds when it dies. */
static int holdable(const par_object *o) {
  return o->type == &par_lock_type || o->type == &par_rlock_type ||
         o->type == &par_condition_type;
}

static int via_import(void *ud, const par_wire_handle *h, par_object **out, par_wire_err *e) {
  par_shm_via *v = (par_shm_via *)ud;
  const par_type *t = type_named(h->type);
  par_shm_loc loc;
  if (!t) return 1;
  loc.owner = h->owner;
  loc.id = h->id;
  par_shm_loc_local(&loc);
  if (t == &par_array_type || t == &par_value_type)
    *out = (par_object *)par_array_import(t, &loc, e->msg, sizeof e->msg);
  else
    *out = par_sync_import(t, &loc, e->msg, sizeof e->msg);
  if (!*out) return -1;
  /* A lock the worker made: if it dies holding it, par_shm_via_gone frees it. */
  if (!v->up && holdable(*out) && block_of(*out)->foreign &&
      par_shm_loc_pid(&block_of(*out)->loc) == (pid_t)atomic_load(&v->dest)) {
    int r;
    pthread_mutex_lock(&v->mu);
    r = keep(v, *out, 1);
    pthread_mutex_unlock(&v->mu);
    if (r != 0) {
      par_object_release(*out);
      *out = NULL;
      return refuse(e, "%s", "not enough memory");
    }
  }
  if (block_of(*out)->foreign &&
      (v->up || par_shm_loc_pid(&loc) == (pid_t)atomic_load(&v->dest))) {
    /* counted, to be let go once its last reference here is gone */
    size_t i;
    pthread_mutex_lock(&v->mu);
    for (i = 0; i < v->ngots; i++)
      if (v->gots[i].loc.owner == loc.owner && v->gots[i].loc.id == loc.id) break;
    if (i == v->ngots && v->ngots == v->capgots) {
      size_t cap = v->capgots ? v->capgots * 2 : 16;
      got *g = realloc(v->gots, cap * sizeof *g);
      if (g) { v->gots = g; v->capgots = cap; }
    }
    if (i < v->capgots) {       /* out of memory: never let go, as before */
      if (i == v->ngots) {
        v->gots[i].loc = loc;
        v->gots[i].n = 0;
        v->ngots++;
      }
      v->gots[i].n++;
    }
    pthread_mutex_unlock(&v->mu);
  }
  return 0;
}

int par_shm_via_releases(par_shm_via *v, par_buf *out) {
  size_t i = 0;
  int n = 0;
  unsigned long d = par_shm_drops();
  pthread_mutex_lock(&v->mu);
  if (d == v->drops) {          /* nothing imported went since */
    pthread_mutex_unlock(&v->mu);
    return 0;
  }
  v->drops = d;
  while (i < v->ngots) {
    par_object *o = par_shm_lookup(&v->gots[i].loc);
    if (o) {
      par_object_release(o);     /* still used here */
      i++;
      continue;
    }
    if (!par_buf_reserve(out, 24)) { n = -1; v->drops = d - 1; break; }
    memcpy(out->data + out->len, &v->gots[i].loc.owner, 8);
    memcpy(out->data + out->len + 8, &v->gots[i].loc.id, 8);
    memcpy(out->data + out->len + 16, &v->gots[i].n, 8);
    out->len += 24;
    n++;
    v->gots[i] = v->gots[--v->ngots];
  }
  pthread_mutex_unlock(&v->mu);
  return n;
}

long par_shm_via_take_releases(par_shm_via *v, const unsigned char *p, size_t len, uint32_t n) {
  uint32_t i;
  if (len / 24 < n) return -1;
  for (i = 0; v && i < n; i++, p += 24) {
    par_shm_loc loc;
    uint64_t k;
    memcpy(&loc.owner, p, 8);
    memcpy(&loc.id, p + 8, 8);
    memcpy(&k, p + 16, 8);
    par_shm_via_release(v, &loc, k);
  }
  return (long)n * 24;
}

void par_shm_via_release(par_shm_via *v, const par_shm_loc *name, uint64_t n) {
  par_shm_loc loc = *name;
  par_object *o, *gone = NULL;
  size_t i;
  par_shm_loc_local(&loc);
  o = par_shm_lookup(&loc);
  if (!o) return;
  pthread_mutex_lock(&v->mu);
  if (v->cap)
    for (i = slot_of(o, v->cap); v->slots[i].o; i = (i + 1) & (v->cap - 1))
      if (v->slots[i].o == o) {
        v->slots[i].sent = v->slots[i].sent > n ? v->slots[i].sent - n : 0;
        if (v->slots[i].sent == 0 && !v->slots[i].pinned) {
          gone = o;
          unslot(v, i);
        }
        break;
      }
  pthread_mutex_unlock(&v->mu);
  if (gone) par_object_release(gone);
  par_object_release(o);
}

void par_shm_via_peer(par_shm_via *v, uint32_t pid) { atomic_store(&v->dest, pid); }

par_shm_via *par_shm_via_new(int up) {
  par_shm_via *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  v->up = up;
  pthread_mutex_init(&v->mu, NULL);
  return v;
}

int par_shm_via_attach(par_shm_via *v, par_wire_vias *vias) {
  par_wire_via one;
  one.export_obj = via_export;
  one.import_obj = via_import;
  one.ud = v;
  return par_wire_vias_add(vias, &one);
}

void par_shm_via_gone(par_shm_via *v, uint32_t pid) {
  kept *slots;
  size_t cap, i;
  pthread_mutex_lock(&v->mu);
  slots = v->slots;
  cap = v->cap;
  v->slots = NULL;
  v->cap = v->n = 0;
  v->ngots = 0;
  pthread_mutex_unlock(&v->mu);
  for (i = 0; i < cap; i++) {
    par_object *o = slots[i].o;
    if (!o) continue;
    if (pid) {
      if (o->type == &par_condition_type) par_lock_recover(((par_condition *)o)->lock, pid);
      else par_lock_recover(o, pid);
    }
  }
  for (i = 0; i < cap; i++) {
    /* Up: what this worker made is left as it is, never freed (freeing
     * writes the free list into the block): this process is ending, and
     * the others still use that memory. */
    if (slots[i].o && !(v->up && !block_of(slots[i].o)->foreign)) par_object_release(slots[i].o);
  }
  free(slots);
}

size_t par_shm_via_kept(par_shm_via *v) {
  size_t n;
  pthread_mutex_lock(&v->mu);
  n = v->n;
  pthread_mutex_unlock(&v->mu);
  return n;
}

void par_shm_via_free(par_shm_via *v) {
  if (!v) return;
  par_shm_via_gone(v, 0);
  free(v->gots);
  pthread_mutex_destroy(&v->mu);
  free(v);
}
