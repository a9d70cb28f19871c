/* The export table of wire/remote.h's owner side: see remote_owner.h. */
#include "wire/remote_owner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/future.h"
#include "core/pipe.h"
#include "core/pool.h"
#include "core/queue.h"

static const par_type *const kind_types[PR_KINDS] = {
  &par_queue_type, &par_pipe_type, &par_dict_type, &par_future_type, &par_pool_type
};

int ro_kind_of(const par_object *o) {
  int k;
  for (k = 0; k < PR_KINDS; k++)
    if (o->type == kind_types[k]) return k;
  return -1;
}

static int kind_of_name(const char *name) {
  int k;
  for (k = 0; k < PR_KINDS; k++)
    if (strcmp(name, kind_types[k]->name) == 0) return k;
  return -1;
}

int par_remote_claims(const par_object *o) { return ro_kind_of(o) >= 0; }

static _Atomic long live_exports;

void ro_count_exports(long n) { atomic_fetch_add(&live_exports, n); }

long par_remote_exports_live(void) { return atomic_load(&live_exports); }

/* -------------------------------------------------------------- exports */

static int owner_export(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  par_remote_owner *own = (par_remote_owner *)ud;
  size_t i, hole = SIZE_MAX;
  if (ro_kind_of(o) < 0) return 1;
  pthread_mutex_lock(&own->mu);
  for (i = 0; i < own->nexp; i++) {
    if (own->exp[i] == o) break;
    if (!own->exp[i] && hole == SIZE_MAX) hole = i;
  }
  if (i == own->nexp && hole != SIZE_MAX) {
    /* a released id: no handle of it is in flight any more (its count
     * reached 0), and the other end's proxy of it is gone */
    i = hole;
    own->exp[i] = par_object_retain(o);
    own->sent[i] = 0;
    ro_count_exports(1);
  } else if (i == own->nexp) {
    if (own->nexp == own->capexp) {
      size_t cap = own->capexp ? own->capexp * 2 : 16;
      par_object **n = realloc(own->exp, cap * sizeof *n);
      uint64_t *c = n ? realloc(own->sent, cap * sizeof *c) : NULL;
      if (n) own->exp = n;
      if (!c) {
        pthread_mutex_unlock(&own->mu);
        snprintf(e->msg, sizeof e->msg, "not enough memory");
        return -1;
      }
      own->sent = c;
      own->capexp = cap;
    }
    own->sent[own->nexp] = 0;
    own->exp[own->nexp++] = par_object_retain(o);
    ro_count_exports(1);
  }
  own->sent[i]++;
  pthread_mutex_unlock(&own->mu);
  h->type = o->type->name;
  h->owner = own->self;
  h->id = i + 1;
  return 0;
}

static int owner_import(void *ud, const par_wire_handle *h, par_object **out, par_wire_err *e) {
  par_remote_owner *own = (par_remote_owner *)ud;
  par_object *o = NULL;
  if (kind_of_name(h->type) < 0) return 1;
  pthread_mutex_lock(&own->mu);
  if (h->owner == own->self && h->id >= 1 && h->id <= own->nexp && own->exp[h->id - 1] &&
      strcmp(own->exp[h->id - 1]->type->name, h->type) == 0)
    o = par_object_retain(own->exp[h->id - 1]);
  pthread_mutex_unlock(&own->mu);
  if (!o) {
    snprintf(e->msg, sizeof e->msg, "a %.60s handle this process never sent", h->type);
    return -1;
  }
  *out = o;
  return 0;
}

/* For 'H' parts of replies (a future made by a remote submit). */
int ro_export_part(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  int r = owner_export(ud, o, h, e);
  if (r == 1) snprintf(e->msg, sizeof e->msg, "cannot send %s to another process", o->type->name);
  return r == 0 ? 0 : -1;
}

int par_remote_owner_attach(par_wire_vias *v, par_remote_owner *o) {
  par_wire_via via;
  via.export_obj = owner_export;
  via.import_obj = owner_import;
  via.ud = o;
  return par_wire_vias_add(v, &via);
}

void par_remote_owner_release(par_remote_owner *o, uint64_t id, uint64_t n) {
  par_object *gone = NULL;
  pthread_mutex_lock(&o->mu);
  if (id >= 1 && id <= o->nexp && o->exp[id - 1]) {
    if (o->sent[id - 1] > n) {
      o->sent[id - 1] -= n;
    } else {
      gone = o->exp[id - 1];
      o->exp[id - 1] = NULL;
    }
  }
  pthread_mutex_unlock(&o->mu);
  if (gone) {
    ro_count_exports(-1);
    par_object_release(gone);
  }
}
