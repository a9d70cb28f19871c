/*
 * The owner's side of wire/remote.h: the export table of one connection,
 * and requests served on the core objects, no Lua. See remote.h for the
 * threads (the I/O thread, one helper thread per request that blocks) and
 * what `mu` guards. Objects are released, messages freed and requests
 * undone only after `mu` is let go: freeing may run destructors.
 */
#define _GNU_SOURCE
#include "wire/remote_parts.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/dict.h"
#include "core/future.h"
#include "core/pipe.h"
#include "core/pool.h"
#include "core/queue.h"

/* How often a helper waiting for a blocking request checks whether it was
 * cancelled or its requester is gone. */
#define SLICE 0.05

typedef struct rreq rreq;
struct rreq {
  rreq *next;                 /* in the pending list or the outbox */
  par_remote_owner *own;
  uint32_t rid;
  int method, kind;
  par_object *obj;            /* one reference */
  double deadline;            /* absolute; INFINITY: none */
  int64_t arg;
  par_remote_part *in;
  size_t nin;
  size_t done;                /* push_many: items that went in */
  /* outcome */
  int status;
  int64_t value;
  par_remote_part *out;
  size_t nout, cap;
  char err[256];
  _Atomic int cancelled;      /* the requester asked to stop */
  int gone;                   /* the requester is gone: undo (mu) */
};

typedef struct held {
  uint64_t token;
  par_dict *d;                /* one reference */
  par_dict_entry *e;
} held;

struct par_remote_owner {
  pthread_mutex_t mu;
  pthread_cond_t idle;
  uint64_t self;
  par_object **exp;           /* exported objects, id = index + 1; NULL: released */
  uint64_t *sent;             /* how many handles of each went out, less those released */
  size_t nexp, capexp;
  rreq *pending;              /* with helpers */
  rreq *outbox, *outbox_tail; /* finished, reply not yet flattened */
  int helpers;
  int wake[2];                /* the outbox is not empty: [0] readable */
  held *held;                 /* dict keys being updated by the other end */
  size_t nheld, capheld;
  uint64_t next_token;
};

static const par_type *const kind_types[PR_KINDS] = {
  &par_queue_type, &par_pipe_type, &par_dict_type, &par_future_type, &par_pool_type
};

static int kind_of(const par_object *o) {
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

int par_remote_claims(const par_object *o) { return kind_of(o) >= 0; }

/* -------------------------------------------------------------- exports */

static int owner_export(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  par_remote_owner *own = (par_remote_owner *)ud;
  size_t i, hole = SIZE_MAX;
  if (kind_of(o) < 0) return 1;
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
static int export_part(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
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

/* --------------------------------------------------------------- outcome */

static int add_out(rreq *r, unsigned char tag, par_msg *m, unsigned char *bytes, size_t len,
                   par_object *obj) {
  if (r->nout == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 4;
    par_remote_part *n = realloc(r->out, cap * sizeof *n);
    if (!n) {
      par_msg_free(m);
      free(bytes);
      if (obj) par_object_release(obj);
      return PAR_NOMEM;
    }
    r->out = n;
    r->cap = cap;
  }
  memset(&r->out[r->nout], 0, sizeof r->out[r->nout]);
  r->out[r->nout].tag = tag;
  r->out[r->nout].m = m;
  r->out[r->nout].bytes = bytes;
  r->out[r->nout].len = len;
  r->out[r->nout].obj = obj;
  r->nout++;
  return PAR_OK;
}

static int fail(rreq *r, const char *text) {
  snprintf(r->err, sizeof r->err, "%s", text);
  return PR_FAILED;
}

static const par_remote_part *arg_part(rreq *r, size_t i, unsigned char tag) {
  return i < r->nin && r->in[i].tag == tag ? &r->in[i] : NULL;
}

static int hold_update(par_remote_owner *o, par_dict *d, par_dict_entry *e, uint64_t *token) {
  int r = PAR_OK;
  pthread_mutex_lock(&o->mu);
  if (o->nheld == o->capheld) {
    size_t cap = o->capheld ? o->capheld * 2 : 4;
    held *n = realloc(o->held, cap * sizeof *n);
    if (!n) r = PAR_NOMEM;
    else { o->held = n; o->capheld = cap; }
  }
  if (r == PAR_OK) {
    *token = ++o->next_token;
    o->held[o->nheld].token = *token;
    o->held[o->nheld].d = (par_dict *)par_object_retain((par_object *)d);
    o->held[o->nheld].e = e;
    o->nheld++;
  }
  pthread_mutex_unlock(&o->mu);
  return r;
}

/* Takes the held update `token` out of the table: 1 when found. */
static int unhold(par_remote_owner *o, uint64_t token, held *out) {
  size_t i;
  int found = 0;
  pthread_mutex_lock(&o->mu);
  for (i = 0; i < o->nheld; i++)
    if (o->held[i].token == token) {
      *out = o->held[i];
      o->held[i] = o->held[--o->nheld];
      found = 1;
      break;
    }
  pthread_mutex_unlock(&o->mu);
  return found;
}

static int serve_queue(rreq *r, double deadline) {
  par_queue *push_q, *pop_q;
  const par_remote_part *p;
  int st = PAR_OK;
  if (r->kind == PR_KIND_PIPE) {
    par_pipe *pp = (par_pipe *)r->obj;
    push_q = pp->out;
    pop_q = pp->in;
  } else {
    push_q = pop_q = (par_queue *)r->obj;
  }
  switch (r->method) {
    case PR_PUSH:
      if (!(p = arg_part(r, 0, 'M'))) return fail(r, "a malformed request");
      st = par_queue_push(push_q, p->m, deadline);
      if (st == PAR_OK) r->in[0].m = NULL;
      return st;
    case PR_POP: {
      par_msg *m = NULL;
      st = par_queue_pop(pop_q, &m, deadline);
      return st == PAR_OK ? add_out(r, 'M', m, NULL, 0, NULL) : st;
    }
    case PR_PUSH_MANY: {
      /* the items are the request's parts, in order; r->done went in */
      while (r->done < r->nin) {
        par_msg *m = r->in[r->done].m;
        st = par_queue_push(push_q, m, deadline);
        if (st != PAR_OK) break;
        r->in[r->done].m = NULL;
        r->done++;
      }
      r->value = (int64_t)r->done;
      return st;
    }
    case PR_POP_MANY: {
      size_t n = 0, i;
      par_msg **ms = par_queue_pop_many(pop_q, r->arg > 0 ? (size_t)r->arg : 1, deadline, &n, &st);
      if (!ms) return st;
      for (i = 0; i < n; i++)
        if (add_out(r, 'M', ms[i], NULL, 0, NULL) != PAR_OK) {
          /* back in their order: the last first */
          size_t j = n;
          while (j-- > i + 1) par_queue_unpop(pop_q, ms[j]);
          st = PAR_NOMEM;
          break;
        }
      free(ms);
      return st;
    }
    case PR_CLOSE:
      if (r->kind == PR_KIND_PIPE) par_pipe_close((par_pipe *)r->obj);
      else par_queue_close(push_q);
      return PAR_OK;
    case PR_COUNT:
      r->value = (int64_t)par_queue_count(pop_q);
      r->arg = par_queue_closed(pop_q);
      return PAR_OK;
    case PR_CAPACITY:
      r->value = (int64_t)par_queue_capacity(push_q);
      return PAR_OK;
    case PR_TASK_DONE:
      return par_queue_task_done(push_q);
    case PR_JOIN:
      return par_queue_join(push_q, deadline);
    case PR_POLL:
      return par_queue_poll(pop_q, deadline);
    default:
      return fail(r, "a method this object does not have");
  }
}

/* The requester a dict sees updating a key: one per calling Lua state of
 * the other end (the request's arg), never a thread of this process (odd). */
static uintptr_t requester(const rreq *r) {
  return ((uintptr_t)r->own ^ ((uintptr_t)r->arg * (uintptr_t)0x9E3779B97F4A7C15u)) | 1u;
}

static int serve_dict(rreq *r, double deadline) {
  par_dict *d = (par_dict *)r->obj;
  const par_remote_part *k = arg_part(r, 0, 'B');
  size_t a;
  for (a = 0; a < r->nin; a++)       /* a dict holds messages only */
    if (r->in[a].tag == 'M' && rp_is_immediate(r->in[a].m)) return fail(r, "a malformed request");
  switch (r->method) {
    case PR_GET: {
      par_msg *m = NULL;
      int found;
      if (!k) return fail(r, "a malformed request");
      found = par_dict_get(d, k->bytes, k->len, &m);
      if (found < 0) return PAR_NOMEM;
      r->value = found;
      return found ? add_out(r, 'M', m, NULL, 0, NULL) : PAR_OK;
    }
    case PR_SET: {
      par_msg *v, *old = NULL;
      int st;
      if (!k || r->nin < 2) return fail(r, "a malformed request");
      v = r->in[1].tag == 'M' ? r->in[1].m : NULL;
      st = par_dict_set_as(d, k->bytes, k->len, v, &old, deadline, requester(r));
      if (st == PAR_OK) r->in[1].m = NULL;
      par_msg_free(old);
      return st;
    }
    case PR_COUNT:
      r->value = (int64_t)par_dict_count(d);
      return PAR_OK;
    case PR_ITEMS: {
      par_dict_item *items = NULL;
      size_t n = 0, i;
      int st = PAR_OK;
      if (par_dict_items(d, r->arg != 0, &items, &n) < 0) return PAR_NOMEM;
      for (i = 0; i < n && st == PAR_OK; i++) {
        st = add_out(r, 'B', NULL, items[i].key, items[i].klen, NULL);
        items[i].key = NULL;
        if (st == PAR_OK && r->arg) {
          st = add_out(r, 'M', items[i].value, NULL, 0, NULL);
          items[i].value = NULL;
        }
      }
      par_dict_items_free(items, n);
      return st;
    }
    case PR_BEGIN_UPDATE: {
      par_dict_entry *e = NULL;
      par_msg *cur = NULL;
      uint64_t token;
      int st;
      if (!k) return fail(r, "a malformed request");
      st = par_dict_begin_update_as(d, k->bytes, k->len, &e, &cur, deadline, requester(r));
      if (st != PAR_OK) return st;
      if (hold_update(r->own, d, e, &token) != PAR_OK) {
        par_msg *old = NULL;
        par_dict_end_update(d, e, 0, NULL, &old);
        par_msg_free(cur);
        return PAR_NOMEM;
      }
      r->value = (int64_t)token;
      return cur ? add_out(r, 'M', cur, NULL, 0, NULL) : add_out(r, 'N', NULL, NULL, 0, NULL);
    }
    case PR_END_UPDATE: {
      held h;
      par_msg *old = NULL;
      if (!unhold(r->own, (uint64_t)r->arg, &h)) return fail(r, "an update this process does not hold");
      if (r->nin == 1) {
        par_msg *v = r->in[0].tag == 'M' ? r->in[0].m : NULL;
        par_dict_end_update(h.d, h.e, 1, v, &old);
        r->in[0].m = NULL;
      } else {
        par_dict_end_update(h.d, h.e, 0, NULL, &old);
      }
      par_msg_free(old);
      par_object_release((par_object *)h.d);
      return PAR_OK;
    }
    default:
      return fail(r, "a method this object does not have");
  }
}

/* PR_WAIT_ANY: waits until one of the futures named in part 0 is done;
 * its index goes in r->value. A waitset made for each slice: the
 * futures' subscriptions never outlive the helper's attempt. */
static int wait_any(rreq *r, double deadline) {
  const par_remote_part *p = arg_part(r, 0, 'B');
  par_future **fs;
  par_future *done;
  par_waitset *ws;
  size_t n, i;
  int st = PAR_OK;
  if (!p || p->len == 0 || p->len % 8 != 0) return fail(r, "a malformed request");
  n = p->len / 8;
  fs = calloc(n, sizeof *fs);
  if (!fs) return PAR_NOMEM;
  pthread_mutex_lock(&r->own->mu);
  for (i = 0; i < n; i++) {
    uint64_t id;
    memcpy(&id, p->bytes + 8 * i, 8);
    if (id < 1 || id > r->own->nexp || !r->own->exp[id - 1] ||
        r->own->exp[id - 1]->type != &par_future_type) break;
    fs[i] = (par_future *)par_object_retain(r->own->exp[id - 1]);
  }
  pthread_mutex_unlock(&r->own->mu);
  if (i < n) st = fail(r, "a future this process never sent");
  ws = st == PAR_OK ? par_waitset_new() : NULL;
  if (st == PAR_OK && !ws) st = PAR_NOMEM;
  for (i = 0; st == PAR_OK && i < n; i++)
    if (!par_waitset_add(ws, fs[i])) st = PAR_NOMEM;
  if (st == PAR_OK) {
    done = par_waitset_next(ws, deadline, &st);
    if (done) {
      for (i = 0; i < n && fs[i] != done; i++) {}
      r->value = (int64_t)i;
      par_object_release(&done->hdr);
      st = PAR_OK;
    }
  }
  if (ws) par_waitset_release(ws);
  for (i = 0; i < n; i++)
    if (fs[i]) par_object_release(&fs[i]->hdr);
  free(fs);
  return st;
}

static int serve_future(rreq *r, double deadline) {
  par_future *f = (par_future *)r->obj;
  switch (r->method) {
    case PR_WAIT: {
      int st = par_future_wait(f, deadline);
      r->value = par_future_state(f);
      if (st == PAR_OK && r->arg) {
        const par_msg *res;
        if (par_future_kind(f) == PAR_KIND_GROUP)
          return fail(r, "the results of a map_async future cannot be sent to another process yet");
        res = par_future_result(f);
        if (res) {
          par_msg *copy = par_msg_copy(res);
          if (!copy) return PAR_NOMEM;
          return add_out(r, 'M', copy, NULL, 0, NULL);
        }
      }
      return st;
    }
    case PR_STATE: r->value = par_future_state(f); return PAR_OK;
    case PR_CANCEL: r->value = par_future_cancel(f); return PAR_OK;
    case PR_INTERRUPT: r->value = par_future_interrupt(f); return PAR_OK;
    case PR_KILL: {
      par_object *owner = par_future_owner(f);
      if (owner && owner->type == &par_pool_type) r->value = par_pool_kill((par_pool *)owner, f);
      else r->value = par_future_interrupt(f);
      return PAR_OK;
    }
    case PR_WAIT_ANY: return wait_any(r, deadline);
    default:
      return fail(r, "a method this object does not have");
  }
}

static int serve_pool(rreq *r) {
  par_pool *p = (par_pool *)r->obj;
  switch (r->method) {
    case PR_SUBMIT: {
      const par_remote_part *tt = arg_part(r, 1, 'B');
      par_future *f;
      double timeout = 0;
      int st;
      if (!arg_part(r, 0, 'M') || rp_is_immediate(r->in[0].m) || r->arg < 0 ||
          r->arg >= PR_TASK_KINDS || (r->nin > 1 && (!tt || tt->len != sizeof timeout)))
        return fail(r, "a malformed request");
      if (tt) memcpy(&timeout, tt->bytes, sizeof timeout);
      f = par_future_new((int)r->arg, r->in[0].m);
      if (!f) return PAR_NOMEM;
      r->in[0].m = NULL;
      f->timeout = timeout;
      st = par_pool_submit(p, f);
      if (st != PAR_OK) {
        par_object_release(&f->hdr);
        return st;
      }
      return add_out(r, 'H', NULL, NULL, 0, &f->hdr);
    }
    case PR_SHUT_DOWN:
      par_pool_shutdown(p, 0, r->arg != 0, 0);
      return PAR_OK;
    case PR_INFO: {
      /* a backend that kills a task is one of worker processes */
      const char *backend = p->ops->kill ? "process" : "threads";
      size_t len = strlen(backend);
      unsigned char *name = malloc(len);
      if (!name) return PAR_NOMEM;
      memcpy(name, backend, len);
      r->value = 2 * (int64_t)p->nworkers + (atomic_load(&p->closed) != 0);
      return add_out(r, 'B', NULL, name, len, NULL);
    }
    default:
      return fail(r, "a method this object does not have");
  }
}

/* One try of r, waiting until deadline at most (0: not at all). */
static int attempt(rreq *r, double deadline) {
  switch (r->kind) {
    case PR_KIND_QUEUE:
    case PR_KIND_PIPE: return serve_queue(r, deadline);
    case PR_KIND_DICT: return serve_dict(r, deadline);
    case PR_KIND_FUTURE: return serve_future(r, deadline);
    default: return serve_pool(r);
  }
}

static int may_block(int method) {
  switch (method) {
    case PR_PUSH: case PR_POP: case PR_PUSH_MANY: case PR_POP_MANY: case PR_JOIN: case PR_POLL:
    case PR_SET: case PR_BEGIN_UPDATE: case PR_WAIT: case PR_WAIT_ANY:
      return 1;
    default:
      return 0;
  }
}

static void rreq_free(rreq *r) {
  par_remote_parts_free(r->in, r->nin);
  par_remote_parts_free(r->out, r->nout);
  if (r->obj) par_object_release(r->obj);
  free(r);
}

/* The requester is gone: what r took is given back. Without mu. */
static void undo(rreq *r) {
  if (r->status == PAR_OK) {
    if (r->method == PR_POP || r->method == PR_POP_MANY) {
      par_queue *q = r->kind == PR_KIND_PIPE ? ((par_pipe *)r->obj)->in : (par_queue *)r->obj;
      size_t i = r->nout;
      while (i-- > 0)
        if (r->out[i].tag == 'M' && par_queue_unpop(q, r->out[i].m) == PAR_OK) r->out[i].m = NULL;
    } else if (r->method == PR_BEGIN_UPDATE) {
      held h;
      if (unhold(r->own, (uint64_t)r->value, &h)) {
        par_msg *old = NULL;
        par_dict_end_update(h.d, h.e, 0, NULL, &old);
        par_msg_free(old);
        par_object_release((par_object *)h.d);
      }
    }
  }
  rreq_free(r);
}

/* ------------------------------------------------------------ the owner */

par_remote_owner *par_remote_owner_new(uint64_t self) {
  par_remote_owner *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  if (pipe2(o->wake, O_CLOEXEC | O_NONBLOCK) != 0) { free(o); return NULL; }
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->idle, NULL);
  o->self = self;
  return o;
}

int par_remote_owner_fd(par_remote_owner *o) { return o ? o->wake[0] : -1; }

static void drain_wake(par_remote_owner *o) {
  char buf[64];
  while (read(o->wake[0], buf, sizeof buf) > 0) {}
}

void par_remote_owner_reset(par_remote_owner *o) {
  rreq *box, *p;
  par_object **exp;
  held *hs;
  size_t nexp, nheld, i;
  if (!o) return;
  pthread_mutex_lock(&o->mu);
  for (p = o->pending; p; p = p->next) {
    p->gone = 1;
    atomic_store(&p->cancelled, 1);
  }
  box = o->outbox;
  o->outbox = o->outbox_tail = NULL;
  exp = o->exp;
  nexp = o->nexp;
  o->exp = NULL;
  free(o->sent);
  o->sent = NULL;
  o->nexp = o->capexp = 0;
  pthread_mutex_unlock(&o->mu);
  drain_wake(o);
  while (box) {
    rreq *next = box->next;
    undo(box);
    box = next;
  }
  /* updates that were replied to but never ended (undo() may end some) */
  pthread_mutex_lock(&o->mu);
  hs = o->held;
  nheld = o->nheld;
  o->held = NULL;
  o->nheld = o->capheld = 0;
  pthread_mutex_unlock(&o->mu);
  for (i = 0; i < nheld; i++) {
    par_msg *old = NULL;
    par_dict_end_update(hs[i].d, hs[i].e, 0, NULL, &old);
    par_msg_free(old);
    par_object_release((par_object *)hs[i].d);
  }
  free(hs);
  for (i = 0; i < nexp; i++)
    if (exp[i]) par_object_release(exp[i]);
  free(exp);
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
  if (gone) par_object_release(gone);
}


void par_remote_owner_free(par_remote_owner *o) {
  if (!o) return;
  par_remote_owner_reset(o);
  pthread_mutex_lock(&o->mu);
  while (o->helpers > 0) pthread_cond_wait(&o->idle, &o->mu);
  pthread_mutex_unlock(&o->mu);
  par_remote_owner_reset(o);     /* what the last helpers left */
  close(o->wake[0]);
  close(o->wake[1]);
  pthread_cond_destroy(&o->idle);
  pthread_mutex_destroy(&o->mu);
  free(o);
}

/* A helper's (or the I/O thread's) request is finished: into the outbox,
 * or undone when its requester is gone. */
static void finish_async(par_remote_owner *o, rreq *r) {
  rreq **pp;
  int gone;
  pthread_mutex_lock(&o->mu);
  for (pp = &o->pending; *pp; pp = &(*pp)->next)
    if (*pp == r) { *pp = r->next; break; }
  r->next = NULL;
  gone = r->gone;
  if (!gone) {
    if (o->outbox_tail) o->outbox_tail->next = r;
    else o->outbox = r;
    o->outbox_tail = r;
    if (write(o->wake[1], "", 1) < 0) { /* full: it is readable already */ }
  }
  o->helpers--;
  pthread_cond_broadcast(&o->idle);
  pthread_mutex_unlock(&o->mu);
  if (gone) undo(r);
}

#define HELPER_STACK (256 * 1024)

static void *helper(void *arg) {
  rreq *r = (rreq *)arg;
  int st;
  for (;;) {
    double d = par_now() + SLICE;
    if (atomic_load(&r->cancelled)) { st = PAR_INTERRUPTED; break; }
    if (d > r->deadline) d = r->deadline;
    st = attempt(r, d);
    if (st != PAR_TIMEOUT || par_now() >= r->deadline) break;
  }
  r->status = st;
  finish_async(r->own, r);
  return NULL;
}

static int reply_bytes(par_remote_owner *o, par_wire_peer *peer, rreq *r, par_buf *out) {
  size_t mark = out->len, i;
  par_wire_err e;
  int status = r->status;
  e.msg[0] = 0;
  if (status == PR_FAILED) goto failed;
  if (rp_put_u32(out, r->rid) || rp_put_u8(out, (unsigned)status) ||
      rp_put_u64(out, (uint64_t)r->value) || rp_put_u32(out, (uint32_t)r->nout))
    goto nomem;
  for (i = 0; i < r->nout; i++)
    if (rp_put_part(out, peer, &r->out[i], export_part, o, &e) != 0) {
      out->len = mark;
      snprintf(r->err, sizeof r->err, "%s", e.msg);
      goto failed;
    }
  return 0;
nomem:
  out->len = mark;
  snprintf(r->err, sizeof r->err, "not enough memory");
failed: {
    par_remote_part text;
    memset(&text, 0, sizeof text);
    text.tag = 'B';
    text.bytes = (unsigned char *)r->err;
    text.len = strlen(r->err);
    if (rp_put_u32(out, r->rid) || rp_put_u8(out, PR_FAILED) || rp_put_u64(out, 0) ||
        rp_put_u32(out, 1) || rp_put_part(out, peer, &text, NULL, NULL, &e))
      out->len = mark;
    return 0;
  }
}

int par_remote_serve(par_remote_owner *o, par_wire_peer *peer, const unsigned char *req,
                     size_t len, par_buf *out, par_wire_err *e) {
  rp_reader rd;
  rreq *r;
  uint64_t id;
  unsigned char method;
  double timeout;
  par_object *obj = NULL;
  pthread_t t;
  pthread_attr_t attr;
  rd.p = req;
  rd.end = req + len;
  r = calloc(1, sizeof *r);
  if (!r) { snprintf(e->msg, sizeof e->msg, "not enough memory"); return -1; }
  r->own = o;
  if (rp_get(&rd, &r->rid, 4) || rp_get(&rd, &id, 8) || rp_get(&rd, &method, 1) ||
      rp_get(&rd, &timeout, 8) || rp_get(&rd, &r->arg, 8) || method == 0 || method >= PR_METHODS) {
    free(r);
    snprintf(e->msg, sizeof e->msg, "a malformed request");
    return -1;
  }
  r->method = method;
  pthread_mutex_lock(&o->mu);
  if (id >= 1 && id <= o->nexp && o->exp[id - 1]) obj = par_object_retain(o->exp[id - 1]);
  pthread_mutex_unlock(&o->mu);
  if (obj) {
    r->obj = obj;
    r->kind = kind_of(obj);
  }
  if (rp_get_parts(&rd, peer, &r->in, &r->nin, NULL, NULL, e) != 0) {
    /* the peer may have half-read it: the conversation is broken */
    rreq_free(r);
    return -1;
  }
  if (!obj) r->status = fail(r, "an object this process never sent");
  else if (r->method == PR_END_UPDATE && r->kind != PR_KIND_DICT) r->status = fail(r, "a malformed request");
  else r->status = attempt(r, 0);
  if (r->status == PAR_TIMEOUT && timeout != 0 && may_block(r->method)) {
    r->deadline = timeout < 0 ? INFINITY : par_now() + timeout;
    pthread_mutex_lock(&o->mu);
    r->next = o->pending;
    o->pending = r;
    o->helpers++;
    pthread_mutex_unlock(&o->mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* A helper only waits: the default stack (8 MiB of address space each)
     * made a process under `ulimit -v` refuse the second or third waiting
     * worker ("cannot start a thread to wait on"). */
    pthread_attr_setstacksize(&attr, HELPER_STACK);
    if (pthread_create(&t, &attr, helper, r) != 0) {
      r->status = fail(r, "cannot start a thread to wait on");
      finish_async(o, r);
    }
    pthread_attr_destroy(&attr);
    return 0;
  }
  reply_bytes(o, peer, r, out);
  rreq_free(r);
  return 1;
}

void par_remote_cancel(par_remote_owner *o, const unsigned char *bytes, size_t len) {
  uint32_t rid;
  rreq *p;
  if (len < 4) return;
  memcpy(&rid, bytes, 4);
  pthread_mutex_lock(&o->mu);
  for (p = o->pending; p; p = p->next)
    if (p->rid == rid) atomic_store(&p->cancelled, 1);
  pthread_mutex_unlock(&o->mu);
}

int par_remote_next_reply(par_remote_owner *o, par_wire_peer *peer, par_buf *out) {
  rreq *r;
  pthread_mutex_lock(&o->mu);
  r = o->outbox;
  if (r) {
    o->outbox = r->next;
    if (!o->outbox) o->outbox_tail = NULL;
  } else {
    char c;
    while (read(o->wake[0], &c, 1) > 0) {}
  }
  pthread_mutex_unlock(&o->mu);
  if (!r) return 0;
  reply_bytes(o, peer, r, out);
  rreq_free(r);
  return 1;
}
