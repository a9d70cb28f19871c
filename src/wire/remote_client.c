/*
 * The client's side of wire/remote.h: proxies of objects an owner sent
 * (par_remote_obj), and calls on them: one request, then wait for its
 * reply. Threads: any; `mu` guards the pending calls and the table of
 * proxies; `send_mu` keeps a request's flatten and its send together, so
 * the peer's payloads leave in the order they were flattened.
 */
#define _GNU_SOURCE
#include "wire/remote_parts.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

typedef struct slot slot;
struct slot {
  slot *next;
  uint32_t rid;
  int done;
  par_remote_reply *r;
};

struct par_remote_client {
  pthread_mutex_t mu, send_mu;
  pthread_cond_t cv;
  par_remote_link link;
  uint64_t owner;
  par_wire_peer *peer;
  uint32_t next_rid;
  slot *pending;
  par_remote_obj **objs;     /* by id - 1; NULL: none alive here */
  uint64_t *got;             /* by id - 1: handles received since the last release */
  size_t nobjs;
  uint64_t *rel;             /* (id, handles) pairs to let go at the owner */
  size_t nrel, caprel;
  int releasing;             /* the link sends them (par_remote_client_releases) */
};

static const char *const kind_names[PR_KINDS] = {
  "parallel.queue", "parallel.pipe", "parallel.dict", "parallel.future", "parallel.pool"
};

static void remote_destroy(par_object *o);

const par_type par_remote_types[PR_KINDS] = {
  {"parallel.queue (remote)", remote_destroy},
  {"parallel.pipe (remote)", remote_destroy},
  {"parallel.dict (remote)", remote_destroy},
  {"parallel.future (remote)", remote_destroy},
  {"parallel.pool (remote)", remote_destroy},
};

int par_remote_kind(const par_object *o) {
  int k;
  for (k = 0; k < PR_KINDS; k++)
    if (o->type == &par_remote_types[k]) return k;
  return -1;
}

/* The proxy's last reference went: it leaves the table, and the handles
 * received for it are let go at the next par_remote_client_releases. */
static void remote_destroy(par_object *o) {
  par_remote_obj *r = (par_remote_obj *)o;
  par_remote_client *c = r->client;
  if (c) {
    pthread_mutex_lock(&c->mu);
    if (r->id >= 1 && r->id <= c->nobjs && c->objs[r->id - 1] == r) {
      c->objs[r->id - 1] = NULL;
      if (c->releasing && c->got[r->id - 1] > 0) {
        if (c->nrel + 2 > c->caprel) {
          size_t cap = c->caprel ? c->caprel * 2 : 32;
          uint64_t *n = realloc(c->rel, cap * sizeof *n);
          if (n) { c->rel = n; c->caprel = cap; }
        }
        /* out of memory: never let go (kept until the connection ends) */
        if (c->nrel + 2 <= c->caprel) {
          c->rel[c->nrel++] = r->id;
          c->rel[c->nrel++] = c->got[r->id - 1];
          c->got[r->id - 1] = 0;
        }
      }
    }
    pthread_mutex_unlock(&c->mu);
  }
  free(r);
}

int par_remote_client_releases(par_remote_client *c, par_buf *out) {
  int n;
  pthread_mutex_lock(&c->mu);
  c->releasing = 1;
  n = (int)(c->nrel / 2);
  if (n > 0) {
    if (!par_buf_reserve(out, c->nrel * 8)) {
      n = -1;
    } else {
      memcpy(out->data + out->len, c->rel, c->nrel * 8);
      out->len += c->nrel * 8;
      c->nrel = 0;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return n;
}

static par_object *client_import_handle(par_remote_client *c, int kind, uint64_t id,
                                        par_wire_err *e) {
  par_remote_obj *r = NULL;
  pthread_mutex_lock(&c->mu);
  if (id > c->nobjs) {
    size_t n = c->nobjs ? c->nobjs : 16;
    par_remote_obj **grown;
    while (n < id) n *= 2;
    uint64_t *got;
    if (id > ((size_t)1 << 40) || !(grown = realloc(c->objs, n * sizeof *grown))) goto nomem;
    c->objs = grown;
    if (!(got = realloc(c->got, n * sizeof *got))) goto nomem;
    memset(grown + c->nobjs, 0, (n - c->nobjs) * sizeof *grown);
    memset(got + c->nobjs, 0, (n - c->nobjs) * sizeof *got);
    c->got = got;
    c->nobjs = n;
  }
  r = c->objs[id - 1];
  if (r && r->kind == kind && atomic_load(&r->hdr.refs) > 0) {
    par_object_retain(&r->hdr);
  } else {
    r = calloc(1, sizeof *r);
    if (!r) goto nomem;
    par_object_init(&r->hdr, &par_remote_types[kind]);
    r->client = c;
    r->id = id;
    r->kind = kind;
    c->objs[id - 1] = r;
  }
  c->got[id - 1]++;
  pthread_mutex_unlock(&c->mu);
  return &r->hdr;
nomem:
  pthread_mutex_unlock(&c->mu);
  snprintf(e->msg, sizeof e->msg, "not enough memory");
  return NULL;
}

static int kind_of_name(const char *name) {
  int k;
  for (k = 0; k < PR_KINDS; k++)
    if (strcmp(name, kind_names[k]) == 0) return k;
  return -1;
}

static int client_import(void *ud, const par_wire_handle *h, par_object **out, par_wire_err *e) {
  par_remote_client *c = (par_remote_client *)ud;
  int kind = kind_of_name(h->type);
  if (kind < 0) return 1;
  if (h->owner != c->owner || h->id == 0) {
    snprintf(e->msg, sizeof e->msg, "a %.60s handle of a process this one cannot reach", h->type);
    return -1;
  }
  *out = client_import_handle(c, kind, h->id, e);
  return *out ? 0 : -1;
}

/* 'H' parts of replies: the handle's owner is the one replying. */
static par_object *reply_import(void *ud, const par_wire_handle *h, par_wire_err *e) {
  par_remote_client *c = (par_remote_client *)ud;
  int kind = kind_of_name(h->type);
  if (kind < 0 || h->id == 0) {
    snprintf(e->msg, sizeof e->msg, "a malformed reply");
    return NULL;
  }
  return client_import_handle(c, kind, h->id, e);
}

static int client_export(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  par_remote_client *c = (par_remote_client *)ud;
  int kind = par_remote_kind(o);
  par_remote_obj *r = (par_remote_obj *)o;
  if (kind < 0) return 1;
  if (r->client != c) {
    snprintf(e->msg, sizeof e->msg, "cannot send %s to a process other than its owner", kind_names[kind]);
    return -1;
  }
  h->type = kind_names[kind];
  h->owner = c->owner;
  h->id = r->id;
  return 0;
}

int par_remote_client_attach(par_wire_vias *v, par_remote_client *c) {
  par_wire_via via;
  via.export_obj = client_export;
  via.import_obj = client_import;
  via.ud = c;
  return par_wire_vias_add(v, &via);
}

par_remote_client *par_remote_client_new(const par_remote_link *link, uint64_t owner) {
  par_remote_client *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->send_mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->link = *link;
  c->owner = owner;
  return c;
}

void par_remote_client_set_peer(par_remote_client *c, par_wire_peer *peer) { c->peer = peer; }

void par_remote_client_free(par_remote_client *c) {
  size_t i;
  if (!c) return;
  /* proxies still alive (a state not closed) must not reach a freed client */
  for (i = 0; i < c->nobjs; i++)
    if (c->objs[i]) c->objs[i]->client = NULL;
  free(c->objs);
  free(c->got);
  free(c->rel);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->send_mu);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void par_remote_client_deliver(par_remote_client *c, const unsigned char *bytes, size_t len) {
  rp_reader rd;
  uint32_t rid;
  unsigned char status;
  int64_t value;
  par_remote_part *parts = NULL;
  size_t nparts = 0;
  par_wire_err e;
  slot *s;
  rd.p = bytes;
  rd.end = bytes + len;
  e.msg[0] = 0;
  if (rp_get(&rd, &rid, 4) || rp_get(&rd, &status, 1) || rp_get(&rd, &value, 8)) return;
  if (rp_get_parts(&rd, c->peer, &parts, &nparts, reply_import, c, &e) != 0) {
    status = PR_FAILED;
    value = 0;
  }
  pthread_mutex_lock(&c->mu);
  for (s = c->pending; s; s = s->next)
    if (s->rid == rid && !s->done) break;
  if (s) {
    s->r->status = status;
    s->r->value = value;
    s->r->parts = parts;
    s->r->nparts = nparts;
    if (status == PR_FAILED && e.msg[0])
      snprintf(s->r->error, sizeof s->r->error, "%s", e.msg);
    else if (status == PR_FAILED && nparts == 1 && parts[0].tag == 'B')
      snprintf(s->r->error, sizeof s->r->error, "%.*s", (int)parts[0].len, (const char *)parts[0].bytes);
    s->done = 1;
    parts = NULL;
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  par_remote_parts_free(parts, nparts);   /* nobody waits for it */
}

static int send_frame(par_remote_client *c, par_buf *b, int cancel, par_remote_reply *r) {
  par_wire_err e;
  if (c->link.send(c->link.ud, b->data, b->len, cancel, &e) != 0) {
    snprintf(r->error, sizeof r->error, "%s", e.msg);
    return -1;
  }
  return 0;
}

int par_remote_call(par_remote_obj *o, int method, double timeout, int64_t arg,
                    par_remote_part *parts, size_t nparts, par_remote_reply *r,
                    par_remote_stop_fn stop, void *stop_ud) {
  par_remote_client *c = o->client;
  par_buf b;
  par_wire_err e;
  slot s, **pp;
  size_t i;
  int rc = -1, cancelled = 0;
  unsigned char m = (unsigned char)method;
  memset(r, 0, sizeof *r);
  if (!c) {
    snprintf(r->error, sizeof r->error, "%s is closed", o->hdr.type->name);
    par_remote_parts_free(parts, nparts);
    return -1;
  }
  par_buf_init(&b);
  memset(&s, 0, sizeof s);
  s.r = r;
  pthread_mutex_lock(&c->mu);
  s.rid = ++c->next_rid;
  s.next = c->pending;
  c->pending = &s;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_lock(&c->send_mu);
  if (rp_put_u32(&b, s.rid) || rp_put_u64(&b, o->id) || rp_put_u8(&b, m) ||
      rp_put(&b, &timeout, 8) || rp_put_u64(&b, (uint64_t)arg) || rp_put_u32(&b, (uint32_t)nparts)) {
    snprintf(r->error, sizeof r->error, "not enough memory");
    pthread_mutex_unlock(&c->send_mu);
    goto done;
  }
  for (i = 0; i < nparts; i++)
    if (rp_put_part(&b, c->peer, &parts[i], NULL, NULL, &e) != 0) {
      snprintf(r->error, sizeof r->error, "%s", e.msg);
      pthread_mutex_unlock(&c->send_mu);
      goto done;
    }
  i = send_frame(c, &b, 0, r) == 0;
  pthread_mutex_unlock(&c->send_mu);
  if (!i) goto done;
  pthread_mutex_lock(&c->mu);
  while (!s.done) {
    if (c->link.pump) {
      int broken;
      pthread_mutex_unlock(&c->mu);
      broken = c->link.pump(c->link.ud, par_now() + 0.05, &e) != 0;
      pthread_mutex_lock(&c->mu);
      if (broken && !s.done) {
        snprintf(r->error, sizeof r->error, "the process that owns this %s is gone (%.300s)",
                 kind_names[o->kind], e.msg);
        break;
      }
    } else {
      /* Another thread delivers (MPI's communication thread, which spins
       * while there is traffic): a short yielding spin first, as it does;
       * a sleep and a wake-up cost milliseconds on a loaded machine. */
      double spin_until = par_now() + 2e-4;
      while (!s.done && par_now() < spin_until) {
        pthread_mutex_unlock(&c->mu);
        sched_yield();
        pthread_mutex_lock(&c->mu);
      }
      if (!s.done) par_cond_wait_until(&c->cv, &c->mu, par_now() + 0.05);
    }
    if (!s.done && !cancelled && stop && stop(stop_ud)) {
      par_buf cb;
      cancelled = 1;
      pthread_mutex_unlock(&c->mu);
      par_buf_init(&cb);
      if (rp_put_u32(&cb, s.rid) == 0) {
        pthread_mutex_lock(&c->send_mu);
        send_frame(c, &cb, 1, r);
        pthread_mutex_unlock(&c->send_mu);
      }
      par_buf_free(&cb);
      pthread_mutex_lock(&c->mu);
    }
  }
  rc = s.done ? 0 : -1;
  pthread_mutex_unlock(&c->mu);
done:
  pthread_mutex_lock(&c->mu);
  for (pp = &c->pending; *pp; pp = &(*pp)->next)
    if (*pp == &s) { *pp = s.next; break; }
  pthread_mutex_unlock(&c->mu);
  par_buf_free(&b);
  par_remote_parts_free(parts, nparts);
  return rc;
}
