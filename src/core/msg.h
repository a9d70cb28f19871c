/*
 * A message: the encoded bytes of one or more Lua values plus the shared
 * objects they reference. The message owns one reference to each object in
 * refs[]; par_msg_free releases them, so a message dropped without being
 * decoded (a cancelled task, a queue closed with items in it) leaks nothing.
 * A message is written by one thread, then handed over whole; it is never
 * shared while being written.
 */
#ifndef PAR_MSG_H
#define PAR_MSG_H

#include <stddef.h>
#include "object.h"

typedef struct par_msg {
  size_t len;
  size_t nrefs;
  par_object **refs;        /* points into the same allocation */
  unsigned char *data;      /* idem */
} par_msg;

/* Growable scratch buffer in which a message is built. */
typedef struct par_buf {
  unsigned char *data;
  size_t len, cap;
  par_object **refs;
  size_t nrefs, refcap;
} par_buf;

void par_buf_init(par_buf *b);
void par_buf_reset(par_buf *b);          /* releases refs, keeps capacity */
void par_buf_free(par_buf *b);
int par_buf_reserve(par_buf *b, size_t extra);   /* 0 on out of memory */
int par_buf_add_ref(par_buf *b, par_object *o);  /* takes over one ref */
/* Copies the buffer into a new exact-size message (refs move to it). */
par_msg *par_buf_finish(par_buf *b);

void par_msg_free(par_msg *m);

#endif
