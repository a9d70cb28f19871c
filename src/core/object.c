#include "object.h"

void par_object_init(par_object *o, const par_type *type) {
  o->type = type;
  atomic_init(&o->refs, 1);
}

par_object *par_object_retain(par_object *o) {
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
  return o;
}

void par_object_release(par_object *o) {
  if (o && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
    o->type->destroy(o);
}
