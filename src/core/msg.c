#include "msg.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "spare.h"

/* A large message keeps the memory it was written in, and that memory,
 * once the message is freed (on any thread), becomes the next large
 * message's buffer: no copy, and no fresh pages to fault in. */
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static par_spare spare;

static void *spare_take(size_t n) {
  void *p;
  pthread_mutex_lock(&spare_lock);
  p = par_spare_take(&spare, n);
  pthread_mutex_unlock(&spare_lock);
  return p;
}

static void spare_give(void *p, size_t n) {
  pthread_mutex_lock(&spare_lock);
  par_spare_give(&spare, p, n);
  pthread_mutex_unlock(&spare_lock);
}

void par_buf_init(par_buf *b) {
  memset(b, 0, sizeof *b);
}

void par_buf_reset(par_buf *b) {
  size_t i;
  for (i = 0; i < b->nrefs; i++) par_object_release(b->refs[i]);
  b->nrefs = 0;
  b->len = 0;
}

void par_buf_free(par_buf *b) {
  par_buf_reset(b);
  free(b->data);
  free(b->refs);
  par_buf_init(b);
}

int par_buf_reserve(par_buf *b, size_t extra) {
  size_t need = b->len + extra, cap;
  unsigned char *p;
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  p = realloc(b->data, cap);
  if (!p) return 0;
  b->data = p;
  b->cap = cap;
  return 1;
}

int par_buf_add_ref(par_buf *b, par_object *o) {
  if (b->nrefs == b->refcap) {
    size_t cap = b->refcap ? b->refcap * 2 : 8;
    par_object **r = realloc(b->refs, cap * sizeof *r);
    if (!r) return 0;
    b->refs = r;
    b->refcap = cap;
  }
  b->refs[b->nrefs++] = o;
  return 1;
}

par_msg *par_buf_finish(par_buf *b) {
  size_t refbytes = b->nrefs * sizeof(par_object *);
  int own_block = b->len >= PAR_SPARE_MIN;
  par_msg *m = malloc(sizeof *m + refbytes + (own_block ? 0 : b->len));
  if (!m) return NULL;
  m->len = b->len;
  m->nrefs = b->nrefs;
  m->refs = (par_object **)(void *)(m + 1);
  m->rest = NULL;
  if (refbytes) memcpy(m->refs, b->refs, refbytes);
  if (own_block) {
    m->data = b->data;
    m->block = b->cap;
    b->data = spare_take(b->cap);
    if (!b->data) b->cap = 0;
  } else {
    m->data = (unsigned char *)m->refs + refbytes;
    m->block = 0;
    if (b->len) memcpy(m->data, b->data, b->len);
  }
  b->nrefs = 0;   /* the refs now belong to the message */
  b->len = 0;
  return m;
}

par_msg *par_msg_copy(const par_msg *m) {
  size_t refbytes = m->nrefs * sizeof(par_object *), i;
  par_msg *c = malloc(sizeof *c + refbytes + m->len);
  if (!c) return NULL;
  c->len = m->len;
  c->nrefs = m->nrefs;
  c->refs = (par_object **)(void *)(c + 1);
  c->data = (unsigned char *)c->refs + refbytes;
  c->block = 0;
  c->rest = m->rest ? par_object_retain(m->rest) : NULL;
  for (i = 0; i < m->nrefs; i++) c->refs[i] = par_object_retain(m->refs[i]);
  if (m->len) memcpy(c->data, m->data, m->len);
  return c;
}

void par_msg_free(par_msg *m) {
  size_t i;
  if (!m || PAR_MSG_IS_IMMEDIATE(m)) return;
  for (i = 0; i < m->nrefs; i++) par_object_release(m->refs[i]);
  if (m->rest) par_object_release(m->rest);
  if (m->block) spare_give(m->data, m->block);
  free(m);
}

void par_msg_release_spares(void) {
  pthread_mutex_lock(&spare_lock);
  par_spare_clear(&spare);
  pthread_mutex_unlock(&spare_lock);
}
