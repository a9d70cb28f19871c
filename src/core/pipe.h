/*
 * One end of a parallel.pipe: two queues, one per direction, shared with
 * the other end. Threads: any. No lock of its own: the queues lock
 * themselves and the fields never change after creation. Each end holds a
 * reference to both queues; destroying an end (its last reference gone)
 * closes both directions, so a peer blocked in recv wakes up with
 * PAR_CLOSED instead of waiting forever.
 */
#ifndef PAR_PIPE_H
#define PAR_PIPE_H

#include "queue.h"

typedef struct par_pipe {
  par_object hdr;
  par_queue *in, *out;
} par_pipe;

extern const par_type par_pipe_type;   /* "parallel.pipe" */

/* Two connected ends, one reference each; 0 on out of memory. */
int par_pipe_new(par_pipe **a, par_pipe **b);
void par_pipe_close(par_pipe *p);

#endif
