/*
 * Reference-counted header shared by every object that crosses threads
 * (pools, futures, queues, locks, arrays, dicts, function prototypes).
 *
 * Any thread may retain or release; the release that drops the count to
 * zero calls type->destroy, which frees the object. Counts are C11 atomics,
 * so no mutex guards them.
 */
#ifndef PAR_OBJECT_H
#define PAR_OBJECT_H

#include <stdatomic.h>

typedef struct par_object par_object;

typedef struct par_type {
  const char *name;                 /* Lua metatable name: "parallel.queue" */
  void (*destroy)(par_object *o);   /* frees the object; refs are zero */
} par_type;

struct par_object {
  const par_type *type;
  atomic_long refs;
};

void par_object_init(par_object *o, const par_type *type);
par_object *par_object_retain(par_object *o);
void par_object_release(par_object *o);

/* Status codes of blocking core calls. */
enum {
  PAR_OK = 0,
  PAR_TIMEOUT = 1,     /* the deadline passed */
  PAR_CLOSED = 2,      /* the queue/pool is closed */
  PAR_INTERRUPTED = 3, /* the binding asked the wait to stop */
  PAR_NOMEM = 4,
  PAR_ERROR = 5        /* misuse reported as a status, e.g. releasing an unheld lock */
};

#endif
