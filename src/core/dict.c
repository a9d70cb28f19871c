#include "dict.h"
#include "clock.h"
#include "sync.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct par_dict_entry {
  par_dict_entry *chain;              /* bucket chain */
  par_dict_entry *prev, *next;        /* insertion order */
  uint64_t hash;
  par_msg *value;                     /* NULL: placeholder of an update */
  uintptr_t updater;                  /* thread id while busy, else 0 */
  size_t klen;
  unsigned char key[];
};

struct par_dict {
  par_object hdr;
  pthread_mutex_t mu;
  pthread_cond_t cv;                  /* an update ended */
  par_dict_entry **buckets;
  size_t nbuckets, nentries, count;   /* count: entries with a value */
  par_dict_entry *first, *last;
  int sleepers;
};

static void dict_destroy(par_object *o) {
  par_dict *d = (par_dict *)o;
  par_dict_entry *e = d->first;
  while (e) {
    par_dict_entry *next = e->next;
    par_msg_free(e->value);
    free(e);
    e = next;
  }
  free(d->buckets);
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

const par_type par_dict_type = {"parallel.dict", dict_destroy};

par_dict *par_dict_new(void) {
  par_dict *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->nbuckets = 16;
  d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
  if (!d->buckets) { free(d); return NULL; }
  par_object_init(&d->hdr, &par_dict_type);
  pthread_mutex_init(&d->mu, NULL);
  par_cond_init(&d->cv);
  return d;
}

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  while (n--) h = (h ^ *p++) * 1099511628211ULL;
  return h;
}

static par_dict_entry *find(par_dict *d, const void *key, size_t klen, uint64_t h) {
  par_dict_entry *e = d->buckets[h & (d->nbuckets - 1)];
  for (; e; e = e->chain)
    if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
  return NULL;
}

static void grow(par_dict *d) {
  size_t n = d->nbuckets * 2;
  par_dict_entry **b = calloc(n, sizeof *b), *e;
  if (!b) return;   /* longer chains, still correct */
  for (e = d->first; e; e = e->next) {
    e->chain = b[e->hash & (n - 1)];
    b[e->hash & (n - 1)] = e;
  }
  free(d->buckets);
  d->buckets = b;
  d->nbuckets = n;
}

static par_dict_entry *insert(par_dict *d, const void *key, size_t klen, uint64_t h) {
  par_dict_entry *e = malloc(sizeof *e + klen);
  size_t slot;
  if (!e) return NULL;
  memcpy(e->key, key, klen);
  e->klen = klen;
  e->hash = h;
  e->value = NULL;
  e->updater = 0;
  /* Grow first: the rehash walks the insertion list, so e must not be on
   * it yet (it would be linked into its bucket twice, a chain pointing to
   * itself, and a lookup of an absent key there would never end). */
  if (d->nentries + 1 > d->nbuckets) grow(d);
  e->next = NULL;
  e->prev = d->last;
  if (d->last) d->last->next = e; else d->first = e;
  d->last = e;
  d->nentries++;
  slot = h & (d->nbuckets - 1);
  e->chain = d->buckets[slot];
  d->buckets[slot] = e;
  return e;
}

static void remove_entry(par_dict *d, par_dict_entry *e) {
  par_dict_entry **pp = &d->buckets[e->hash & (d->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->chain;
  *pp = e->chain;
  if (e->prev) e->prev->next = e->next; else d->first = e->next;
  if (e->next) e->next->prev = e->prev; else d->last = e->prev;
  d->nentries--;
  free(e);
}

/* Waits (mu held) until no other thread updates the key; the entry may
 * appear or vanish meanwhile, so it is looked up again each time. */
static int wait_idle(par_dict *d, const void *key, size_t klen, uint64_t h,
                     par_dict_entry **out, double deadline, uintptr_t me) {
  for (;;) {
    par_dict_entry *e = find(d, key, klen, h);
    *out = e;
    if (!e || !e->updater) return PAR_OK;
    if (e->updater == me) return PAR_ERROR;
    d->sleepers++;
    if (par_cond_wait_until(&d->cv, &d->mu, deadline) == PAR_TIMEOUT) {
      d->sleepers--;
      e = find(d, key, klen, h);
      *out = e;
      return !e || !e->updater ? PAR_OK : PAR_TIMEOUT;
    }
    d->sleepers--;
  }
}

int par_dict_get(par_dict *d, const void *key, size_t klen, par_msg **out) {
  uint64_t h = hash_bytes(key, klen);
  par_dict_entry *e;
  int r = 0;
  *out = NULL;
  pthread_mutex_lock(&d->mu);
  e = find(d, key, klen, h);
  if (e && e->value) {
    *out = par_msg_copy(e->value);
    r = *out ? 1 : -1;
  }
  pthread_mutex_unlock(&d->mu);
  return r;
}

static void store(par_dict *d, par_dict_entry *e, par_msg *v, par_msg **old) {
  *old = e->value;
  if (e->value) d->count--;
  e->value = v;
  if (v) d->count++;
  else if (!e->updater) remove_entry(d, e);
}

int par_dict_set(par_dict *d, const void *key, size_t klen, par_msg *v,
                 par_msg **old, double deadline) {
  return par_dict_set_as(d, key, klen, v, old, deadline, par_thread_id());
}

int par_dict_set_as(par_dict *d, const void *key, size_t klen, par_msg *v,
                    par_msg **old, double deadline, uintptr_t who) {
  uint64_t h = hash_bytes(key, klen);
  par_dict_entry *e;
  int r;
  *old = NULL;
  pthread_mutex_lock(&d->mu);
  r = wait_idle(d, key, klen, h, &e, deadline, who);
  if (r == PAR_OK && !e && v && !(e = insert(d, key, klen, h))) r = PAR_NOMEM;
  if (r == PAR_OK && e) store(d, e, v, old);
  pthread_mutex_unlock(&d->mu);
  return r;
}

int par_dict_begin_update(par_dict *d, const void *key, size_t klen,
                          par_dict_entry **out, par_msg **current, double deadline) {
  return par_dict_begin_update_as(d, key, klen, out, current, deadline, par_thread_id());
}

int par_dict_begin_update_as(par_dict *d, const void *key, size_t klen, par_dict_entry **out,
                             par_msg **current, double deadline, uintptr_t who) {
  uint64_t h = hash_bytes(key, klen);
  par_dict_entry *e;
  int r;
  *current = NULL;
  *out = NULL;
  pthread_mutex_lock(&d->mu);
  r = wait_idle(d, key, klen, h, &e, deadline, who);
  if (r == PAR_OK && !e && !(e = insert(d, key, klen, h))) r = PAR_NOMEM;
  if (r == PAR_OK && e->value && !(*current = par_msg_copy(e->value))) r = PAR_NOMEM;
  if (r == PAR_OK) {
    e->updater = who;
    *out = e;
  } else if (e && !e->value && !e->updater) {
    remove_entry(d, e);
  }
  pthread_mutex_unlock(&d->mu);
  return r;
}

void par_dict_end_update(par_dict *d, par_dict_entry *e, int commit, par_msg *v,
                         par_msg **old) {
  *old = NULL;
  pthread_mutex_lock(&d->mu);
  e->updater = 0;
  if (commit) store(d, e, v, old);
  else if (!e->value) remove_entry(d, e);
  if (d->sleepers) pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

size_t par_dict_count(par_dict *d) {
  size_t n;
  pthread_mutex_lock(&d->mu);
  n = d->count;
  pthread_mutex_unlock(&d->mu);
  return n;
}

void par_dict_items_free(par_dict_item *items, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    free(items[i].key);
    par_msg_free(items[i].value);
  }
  free(items);
}

int par_dict_items(par_dict *d, int with_values, par_dict_item **items, size_t *n) {
  par_dict_entry *e;
  par_dict_item *it;
  size_t k = 0;
  *items = NULL;
  *n = 0;
  pthread_mutex_lock(&d->mu);
  if (d->count == 0) {
    pthread_mutex_unlock(&d->mu);
    return 0;
  }
  it = calloc(d->count, sizeof *it);
  if (!it) {
    pthread_mutex_unlock(&d->mu);
    return -1;
  }
  for (e = d->first; e; e = e->next) {
    if (!e->value) continue;
    it[k].key = malloc(e->klen ? e->klen : 1);
    if (!it[k].key) break;
    memcpy(it[k].key, e->key, e->klen);
    it[k].klen = e->klen;
    k++;
    if (with_values && !(it[k - 1].value = par_msg_copy(e->value))) break;
  }
  pthread_mutex_unlock(&d->mu);
  if (e) {
    /* out of memory: free outside mu (values release objects) */
    par_dict_items_free(it, k);
    return -1;
  }
  *items = it;
  *n = k;
  return 0;
}
