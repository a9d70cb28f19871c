/* Requests served on the owner's core objects (wire/remote.h): one try of
 * a request, and its undoing. See remote_owner.h. */
#include "wire/remote_owner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/future.h"
#include "core/pipe.h"
#include "core/pool.h"
#include "core/queue.h"

/* --------------------------------------------------------------- outcome */

/* Room in r->out for k more parts: PAR_OK or PAR_NOMEM. */
static int out_room(rreq *r, size_t k) {
  size_t cap = r->cap ? r->cap : 4;
  par_remote_part *n;
  if (r->nout + k <= r->cap) return PAR_OK;
  while (cap < r->nout + k) cap *= 2;
  if (!(n = realloc(r->out, cap * sizeof *n))) return PAR_NOMEM;
  r->out = n;
  r->cap = cap;
  return PAR_OK;
}

static int add_out(rreq *r, unsigned char tag, par_msg *m, unsigned char *bytes, size_t len,
                   par_object *obj) {
  if (out_room(r, 1) != PAR_OK) {
    par_msg_free(m);
    free(bytes);
    if (obj) par_object_release(obj);
    return PAR_NOMEM;
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

int ro_fail(rreq *r, const char *text) {
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

/* The messages of ps[0..n) back at the front of q where they were popped
 * from, in one go and in order; the parts whose message went give it up.
 * PAR_OK, or PAR_NOMEM with every message still in its part. */
static int unpop_parts(par_queue *q, par_remote_part *ps, size_t n) {
  par_msg **ms;
  size_t i;
  int st;
  if (n == 0) return PAR_OK;
  if (!(ms = calloc(n, sizeof *ms))) return PAR_NOMEM;
  for (i = 0; i < n; i++) ms[i] = ps[i].tag == 'M' ? ps[i].m : NULL;
  st = par_queue_unpop_all(q, ms, n);
  if (st == PAR_OK)
    for (i = 0; i < n; i++)
      if (ps[i].tag == 'M') ps[i].m = NULL;
  free(ms);
  return st;
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
      if (!(p = arg_part(r, 0, 'M'))) return ro_fail(r, "a malformed request");
      st = par_queue_push(push_q, p->m, deadline);
      if (st == PAR_OK) r->in[0].m = NULL;
      return st;
    case PR_POP: {
      par_msg *m = NULL;
      st = par_queue_pop(pop_q, &m, deadline);
      return st == PAR_OK ? add_out(r, 'M', m, NULL, 0, NULL) : st;
    }
    case PR_PUSH_MANY: {
      if (r->arg == PR_TO_FRONT) {
        size_t i;
        for (i = r->done; i < r->nin; i++)
          if (r->in[i].tag != 'M') return ro_fail(r, "a malformed request");
        st = unpop_parts(pop_q, r->in + r->done, r->nin - r->done);
        if (st == PAR_OK) r->done = r->nin;
        r->value = (int64_t)r->done;
        return st;
      }
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
      if (out_room(r, n) != PAR_OK) {
        /* no room for the reply: the batch goes back, or is lost */
        if (par_queue_unpop_all(pop_q, ms, n) != PAR_OK)
          for (i = 0; i < n; i++) par_msg_free(ms[i]);
        free(ms);
        return PAR_NOMEM;
      }
      for (i = 0; i < n; i++) add_out(r, 'M', ms[i], NULL, 0, NULL);
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
      return ro_fail(r, "a method this object does not have");
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
    if (r->in[a].tag == 'M' && rp_is_immediate(r->in[a].m)) return ro_fail(r, "a malformed request");
  switch (r->method) {
    case PR_GET: {
      par_msg *m = NULL;
      int found;
      if (!k) return ro_fail(r, "a malformed request");
      found = par_dict_get(d, k->bytes, k->len, &m);
      if (found < 0) return PAR_NOMEM;
      r->value = found;
      return found ? add_out(r, 'M', m, NULL, 0, NULL) : PAR_OK;
    }
    case PR_SET: {
      par_msg *v, *old = NULL;
      int st;
      if (!k || r->nin < 2) return ro_fail(r, "a malformed request");
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
      if (!k) return ro_fail(r, "a malformed request");
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
      if (!unhold(r->own, (uint64_t)r->arg, &h)) return ro_fail(r, "an update this process does not hold");
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
      return ro_fail(r, "a method this object does not have");
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
  if (!p || p->len == 0 || p->len % 8 != 0) return ro_fail(r, "a malformed request");
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
  if (i < n) st = ro_fail(r, "a future this process never sent");
  for (i = 0; st == PAR_OK && i < n; i++)
    if (par_pool_runs_self(fs[i])) st = ro_fail(r, PAR_SELF_WAIT_MSG);
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
      int st;
      /* on the I/O thread of the worker process asking (its first try):
       * the task that process runs waits for its own future */
      if (par_pool_runs_self(f)) return ro_fail(r, PAR_SELF_WAIT_MSG);
      st = par_future_wait(f, deadline);
      r->value = par_future_state(f);
      if (st == PAR_OK && r->arg) {
        const par_msg *res;
        if (par_future_kind(f) == PAR_KIND_GROUP)
          return ro_fail(r, "the results of a map_async future cannot be sent to another process yet");
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
      return ro_fail(r, "a method this object does not have");
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
        return ro_fail(r, "a malformed request");
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
      return ro_fail(r, "a method this object does not have");
  }
}

int ro_create(rreq *r) {
  const par_remote_part *cap = arg_part(r, 0, 'B');
  switch (r->arg) {
    case PR_KIND_QUEUE: {
      uint64_t n;
      par_queue *q;
      if (!cap || cap->len != sizeof n) return ro_fail(r, "a malformed request");
      memcpy(&n, cap->bytes, sizeof n);
      if (n > SIZE_MAX / 2) return ro_fail(r, "a malformed request");
      q = par_queue_new((size_t)n);
      if (!q) return PAR_NOMEM;
      return add_out(r, 'H', NULL, NULL, 0, (par_object *)q);
    }
    case PR_KIND_DICT: {
      par_dict *d = par_dict_new();
      if (!d) return PAR_NOMEM;
      return add_out(r, 'H', NULL, NULL, 0, (par_object *)d);
    }
    case PR_KIND_PIPE: {
      par_pipe *a, *b;
      int st;
      if (!par_pipe_new(&a, &b)) return PAR_NOMEM;
      st = add_out(r, 'H', NULL, NULL, 0, &a->hdr);
      if (st != PAR_OK) {
        par_object_release(&b->hdr);
        return st;
      }
      return add_out(r, 'H', NULL, NULL, 0, &b->hdr);
    }
    default:
      return ro_fail(r, "a malformed request");
  }
}

/* One try of r, waiting until deadline at most (0: not at all). */
int ro_attempt(rreq *r, double deadline) {
  switch (r->kind) {
    case PR_KIND_QUEUE:
    case PR_KIND_PIPE: return serve_queue(r, deadline);
    case PR_KIND_DICT: return serve_dict(r, deadline);
    case PR_KIND_FUTURE: return serve_future(r, deadline);
    default: return serve_pool(r);
  }
}

int ro_may_block(int method) {
  switch (method) {
    case PR_PUSH: case PR_POP: case PR_PUSH_MANY: case PR_POP_MANY: case PR_JOIN: case PR_POLL:
    case PR_SET: case PR_BEGIN_UPDATE: case PR_WAIT: case PR_WAIT_ANY:
      return 1;
    default:
      return 0;
  }
}

void ro_request_free(rreq *r) {
  par_remote_parts_free(r->in, r->nin);
  par_remote_parts_free(r->out, r->nout);
  if (r->obj) par_object_release(r->obj);
  free(r);
}

/* The requester is gone: what r took is given back. Without mu. */
void ro_undo(rreq *r) {
  ro_give_back(r);
  ro_request_free(r);
}

void ro_give_back(rreq *r) {
  if (r->status == PAR_OK) {
    if (r->method == PR_POP || r->method == PR_POP_MANY) {
      par_queue *q = r->kind == PR_KIND_PIPE ? ((par_pipe *)r->obj)->in : (par_queue *)r->obj;
      unpop_parts(q, r->out, r->nout);   /* no memory: they are freed with r */
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
}
