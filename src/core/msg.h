/*
 * A message: the encoded bytes of one or more Lua values plus the shared
 * objects they reference. The message owns one reference to each object in
 * refs[]; par_msg_free releases them, so a message dropped without being
 * decoded (a cancelled task, a queue closed with items in it) leaks nothing.
 * A message is written by one thread, then handed over whole; it is never
 * shared while being written. A long one may go in segments, each a
 * message of its own: the first carries the queue the others follow on.
 */
#ifndef PAR_MSG_H
#define PAR_MSG_H

#include <stddef.h>
#include <stdint.h>
#include "object.h"

typedef struct par_msg {
  size_t len;
  size_t nrefs;
  par_object **refs;        /* points into the same allocation */
  unsigned char *data;      /* idem, or a block of its own (a large message) */
  size_t block;             /* the size of that block; 0 when inline */
  par_object *rest;         /* a message sent in segments: the queue the
                               others arrive on (a reference); else NULL */
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
/* Makes the buffer's contents a message (refs move to it): a copy of exact
 * size, or for a large one the buffer's own memory, the buffer taking a
 * spare block in its place. */
par_msg *par_buf_finish(par_buf *b);

/* A copy of m holding its own references; NULL on out of memory. */
par_msg *par_msg_copy(const par_msg *m);

/* An immediate: a message pointer whose low bit is set holds a small value
 * itself instead of pointing anywhere (a queue's integers and booleans, see
 * l_queue.c): no allocation, no codec. Queues carry it like any message;
 * par_msg_free ignores it; nothing else may be given one. */
#define PAR_MSG_IS_IMMEDIATE(m) (((uintptr_t)(m) & 1u) != 0)

void par_msg_free(par_msg *m);   /* NULL and immediates: nothing to do */

/* Frees the blocks kept for large messages (a state closing: the library
 * may be unloaded next, and with it the only pointers to them). */
void par_msg_release_spares(void);

#endif
