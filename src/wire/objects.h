/*
 * Which way each shared object crosses a connection: a chain of handlers
 * ("vias") behind one pair of par_wire_objects hooks. Shared memory
 * (arrays, values, locks...) and requests to the owner process (queues,
 * pipes, dicts, pools, futures: wire/remote.h) each add one via; the first
 * that claims an object (by o->type when sending, by h->type when
 * receiving) carries it. An object no via claims is refused as before:
 * "cannot send parallel.timer to another process".
 *
 * Threads: the chain is built before the peer is made and never changes;
 * the vias' own functions say what they lock.
 */
#ifndef PAR_WIRE_OBJECTS_H
#define PAR_WIRE_OBJECTS_H

#include "wire/wire.h"

typedef struct par_wire_via {
  /* 0: h filled; 1: not this via's object (ask the next); -1: refused,
   * e filled. */
  int (*export_obj)(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e);
  /* 0: *out set (one reference for the message); 1: not this via's kind
   * of handle; -1: e filled (a forged or stale handle fails cleanly). */
  int (*import_obj)(void *ud, const par_wire_handle *h, par_object **out, par_wire_err *e);
  void *ud;
} par_wire_via;

#define PAR_WIRE_VIAS_MAX 4

typedef struct par_wire_vias {
  par_wire_via via[PAR_WIRE_VIAS_MAX];
  int n;
} par_wire_vias;

/* Appends one via (asked in the order added). 0, or -1 when full. */
int par_wire_vias_add(par_wire_vias *v, const par_wire_via *one);

/* The hooks for par_wire_peer_new; v must outlive the peer. */
void par_wire_vias_hooks(par_wire_vias *v, par_wire_objects *out);

#endif
