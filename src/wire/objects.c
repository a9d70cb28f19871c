#include "wire/objects.h"

#include <stdio.h>

int par_wire_vias_add(par_wire_vias *v, const par_wire_via *one) {
  if (v->n >= PAR_WIRE_VIAS_MAX) return -1;
  v->via[v->n++] = *one;
  return 0;
}

static int vias_export(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  par_wire_vias *v = (par_wire_vias *)ud;
  int i;
  for (i = 0; i < v->n; i++) {
    int r;
    if (!v->via[i].export_obj) continue;
    r = v->via[i].export_obj(v->via[i].ud, o, h, e);
    if (r != 1) return r;
  }
  snprintf(e->msg, sizeof e->msg, "cannot send %s to another process", o->type->name);
  return -1;
}

static par_object *vias_import(void *ud, const par_wire_handle *h, par_wire_err *e) {
  par_wire_vias *v = (par_wire_vias *)ud;
  int i;
  for (i = 0; i < v->n; i++) {
    par_object *o = NULL;
    int r;
    if (!v->via[i].import_obj) continue;
    r = v->via[i].import_obj(v->via[i].ud, h, &o, e);
    if (r == 0) return o;
    if (r < 0) return NULL;
  }
  snprintf(e->msg, sizeof e->msg, "cannot receive %.100s from another process", h->type);
  return NULL;
}

void par_wire_vias_hooks(par_wire_vias *v, par_wire_objects *out) {
  out->export_obj = vias_export;
  out->import_obj = vias_import;
  out->ud = v;
}
