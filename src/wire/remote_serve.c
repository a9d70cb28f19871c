/*
 * The owner's side of wire/remote.h: requests in, replies out. A request
 * is tried at once on the I/O thread (remote_methods.c); one that would
 * block goes to a helper thread of its own, which retries it in slices
 * and queues its reply. See remote_owner.h for the files around it.
 */
#define _GNU_SOURCE
#include "wire/remote_owner.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

/* How often a helper waiting for a blocking request checks whether it was
 * cancelled or its requester is gone. */
#define SLICE 0.05

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
  drain_wake(o);
  o->woken = 0;
  pthread_mutex_unlock(&o->mu);
  while (box) {
    rreq *next = box->next;
    ro_undo(box);
    box = next;
  }
  /* updates that were replied to but never ended (ro_undo() may end some) */
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
    if (exp[i]) {
      ro_count_exports(-1);
      par_object_release(exp[i]);
    }
  free(exp);
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
    if (!o->woken) {
      o->woken = 1;
      if (write(o->wake[1], "", 1) < 0) { /* full: it is readable already */ }
    }
  }
  o->helpers--;
  pthread_cond_broadcast(&o->idle);
  pthread_mutex_unlock(&o->mu);
  if (gone) ro_undo(r);
}

#define HELPER_STACK (256 * 1024)

static void *helper(void *arg) {
  rreq *r = (rreq *)arg;
  int st;
  for (;;) {
    double d = par_now() + SLICE;
    if (atomic_load(&r->cancelled)) { st = PAR_INTERRUPTED; break; }
    if (d > r->deadline) d = r->deadline;
    st = ro_attempt(r, d);
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
  if (o->max_reply) {
    size_t n = 0;
    for (i = 0; i < r->nout; i++)
      n += r->out[i].tag == 'M' && r->out[i].m ? r->out[i].m->len : r->out[i].tag == 'B' ? r->out[i].len : 0;
    if (n > o->max_reply) {
      ro_give_back(r);
      snprintf(r->err, sizeof r->err, "not enough memory: the reply takes %zu bytes, more than "
               "the worker's memory_limit (%zu)", n, o->max_reply);
      goto failed;
    }
  }
  if (rp_put_u32(out, r->rid) || rp_put_u8(out, (unsigned)status) ||
      rp_put_u64(out, (uint64_t)r->value) || rp_put_u32(out, (uint32_t)r->nout))
    goto nomem;
  for (i = 0; i < r->nout; i++)
    if (rp_put_part(out, peer, &r->out[i], ro_export_part, o, &e) != 0) {
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

void par_remote_owner_limit(par_remote_owner *o, size_t max) { o->max_reply = max; }

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
    r->kind = ro_kind_of(obj);
  }
  if (rp_get_parts(&rd, peer, &r->in, &r->nin, NULL, NULL, e) != 0) {
    /* the peer may have half-read it: the conversation is broken */
    ro_request_free(r);
    return -1;
  }
  if (id == 0 && r->method == PR_CREATE) r->status = ro_create(r);
  else if (!obj || r->method == PR_CREATE) r->status = ro_fail(r, "an object this process never sent");
  else if (r->method == PR_END_UPDATE && r->kind != PR_KIND_DICT) r->status = ro_fail(r, "a malformed request");
  else r->status = ro_attempt(r, 0);
  if (r->status == PAR_TIMEOUT && timeout != 0 && ro_may_block(r->method)) {
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
      r->status = ro_fail(r, "cannot start a thread to wait on");
      finish_async(o, r);
    }
    pthread_attr_destroy(&attr);
    return 0;
  }
  reply_bytes(o, peer, r, out);
  ro_request_free(r);
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
  } else if (o->woken) {
    /* an I/O loop calls this on every poll (rank 0 of an MPI job once per
     * rank): a read() on an empty pipe each time cost 5% of its samples */
    drain_wake(o);
    o->woken = 0;
  }
  pthread_mutex_unlock(&o->mu);
  if (!r) return 0;
  reply_bytes(o, peer, r, out);
  ro_request_free(r);
  return 1;
}
