#include "msg.h"

#include <stdlib.h>
#include <string.h>

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
  par_msg *m = malloc(sizeof *m + refbytes + b->len);
  if (!m) return NULL;
  m->len = b->len;
  m->nrefs = b->nrefs;
  m->refs = (par_object **)(void *)(m + 1);
  m->data = (unsigned char *)m->refs + refbytes;
  if (refbytes) memcpy(m->refs, b->refs, refbytes);
  if (b->len) memcpy(m->data, b->data, b->len);
  b->nrefs = 0;   /* the refs now belong to the message */
  b->len = 0;
  return m;
}

void par_msg_free(par_msg *m) {
  size_t i;
  if (!m) return;
  for (i = 0; i < m->nrefs; i++) par_object_release(m->refs[i]);
  free(m);
}
