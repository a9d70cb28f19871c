#include "pipe.h"

#include <stdlib.h>

static void pipe_destroy(par_object *o) {
  par_pipe *p = (par_pipe *)o;
  par_pipe_close(p);
  par_object_release((par_object *)p->in);
  par_object_release((par_object *)p->out);
  free(p);
}

const par_type par_pipe_type = {"parallel.pipe", pipe_destroy};

static par_pipe *end_new(par_queue *in, par_queue *out) {
  par_pipe *p = malloc(sizeof *p);
  if (!p) return NULL;
  par_object_init(&p->hdr, &par_pipe_type);
  p->in = (par_queue *)par_object_retain((par_object *)in);
  p->out = (par_queue *)par_object_retain((par_object *)out);
  return p;
}

int par_pipe_new(par_pipe **a, par_pipe **b) {
  par_queue *ab = par_queue_new(0), *ba = par_queue_new(0);
  *a = *b = NULL;
  if (ab && ba) {
    *a = end_new(ba, ab);
    *b = end_new(ab, ba);
  }
  if (ab) par_object_release((par_object *)ab);
  if (ba) par_object_release((par_object *)ba);
  if (*a && *b) return 1;
  if (*a) par_object_release(&(*a)->hdr);
  if (*b) par_object_release(&(*b)->hdr);
  *a = *b = NULL;
  return 0;
}

/* The incoming direction first: the other end, seeing its recv return
 * "closed" (our out), must then find its send refused (our in), so our in
 * has to be closed by then. */
void par_pipe_close(par_pipe *p) {
  par_queue_close(p->in);
  par_queue_close(p->out);
}
