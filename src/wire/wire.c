/*
 * Flatten and rebuild (wire.h; the format is in doc/wire.md, "Flattened
 * messages"). No Lua state: only the dumps held by par_proto objects, the
 * codec bytes as they are, and the backend's hooks for shared objects.
 *
 * Threads: every call on a peer holds p->mu for its whole length; nothing
 * here calls back into Lua, and the hooks are called with p->mu held (they
 * must not call into the same peer).
 * Ownership: a peer holds one reference to each prototype in `recv` and to
 * each stream's queue; reset and free release them. A flatten never
 * retains anything; a rebuilt message owns its refs (par_msg_free).
 */
#define _GNU_SOURCE
#include "wire/wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/proto.h"
#include "core/queue.h"
#include "wire/wirefmt.h"

typedef struct recv_slot { uint64_t id; par_proto *p; } recv_slot;
typedef struct stream_slot { uint32_t id; par_queue *q; } stream_slot;

struct par_wire_peer {
  pthread_mutex_t mu;
  par_wire_objects objs;
  uint64_t *sent;           /* open addressing, 0 = empty; ids the other end has */
  size_t nsent, capsent;    /* capsent: a power of two, or 0 */
  recv_slot *recv;          /* idem, keyed by id: prototypes it sent us */
  size_t nrecv, caprecv;
  stream_slot *streams;     /* streams it is sending us (few: a plain array) */
  size_t nstreams, capstreams;
  uint32_t next_stream;
  par_wire_stats stats;
  par_buf scratch;          /* a rebuilt message is assembled here */
};

/* ------------------------------------------------------------ errors */

static int corrupt(par_wire_err *e, const char *what) {
  return par_wire_fail(e, "corrupt message from the other process (%s)", what);
}

/* ------------------------------------------------------------ content ids */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27; x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A 64-bit hash of the dump, never 0 (0 marks an empty slot); the same on
 * every host (doc/wire.md spells it out). */
uint64_t par_wire_content_id(const void *bytes, size_t len) {
  const unsigned char *s = bytes;
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len, w = 0;
  size_t i = 0, r;
  for (; i + 8 <= len; i += 8) {
    h = (h ^ mix64(wirefmt_get_u64(s + i))) * 0x100000001b3ULL;
    h = (h << 29) | (h >> 35);
  }
  for (r = len - i; r > 0; r--) w = (w << 8) | s[i + r - 1];
  h = mix64(h ^ mix64(w ^ (uint64_t)(len - i)));
  return h ? h : 1;
}

static uint64_t proto_wire_id(par_proto *p) {
  uint64_t id = atomic_load_explicit(&p->wire_id, memory_order_relaxed);
  if (!id) {
    id = par_wire_content_id(p->dump, p->len);
    atomic_store_explicit(&p->wire_id, id, memory_order_relaxed);
  }
  return id;
}

/* ------------------------------------------------------------ id sets */

static size_t slot_of(uint64_t id, size_t cap) { return (size_t)mix64(id) & (cap - 1); }

static int sent_has(const par_wire_peer *p, uint64_t id) {
  size_t i;
  if (!p->capsent) return 0;
  for (i = slot_of(id, p->capsent); p->sent[i]; i = (i + 1) & (p->capsent - 1))
    if (p->sent[i] == id) return 1;
  return 0;
}

/* Room for `more` new ids at a load under one half. 0 on out of memory. */
static int sent_reserve(par_wire_peer *p, size_t more) {
  size_t cap = p->capsent ? p->capsent : 16, i;
  uint64_t *n;
  while ((p->nsent + more) * 2 > cap) cap *= 2;
  if (cap == p->capsent) return 1;
  n = calloc(cap, sizeof *n);
  if (!n) return 0;
  for (i = 0; i < p->capsent; i++) {
    size_t j;
    if (!p->sent[i]) continue;
    for (j = slot_of(p->sent[i], cap); n[j]; j = (j + 1) & (cap - 1)) {}
    n[j] = p->sent[i];
  }
  free(p->sent);
  p->sent = n;
  p->capsent = cap;
  return 1;
}

static void sent_add(par_wire_peer *p, uint64_t id) {     /* after sent_reserve */
  size_t i;
  for (i = slot_of(id, p->capsent); p->sent[i]; i = (i + 1) & (p->capsent - 1))
    if (p->sent[i] == id) return;
  p->sent[i] = id;
  p->nsent++;
}

static par_proto *recv_get(const par_wire_peer *p, uint64_t id) {
  size_t i;
  if (!p->caprecv) return NULL;
  for (i = slot_of(id, p->caprecv); p->recv[i].id; i = (i + 1) & (p->caprecv - 1))
    if (p->recv[i].id == id) return p->recv[i].p;
  return NULL;
}

/* Keeps q (taking over the caller's reference) under id. 0 on out of memory. */
static int recv_put(par_wire_peer *p, uint64_t id, par_proto *q) {
  size_t i;
  if ((p->nrecv + 1) * 2 > p->caprecv) {
    size_t cap = p->caprecv ? p->caprecv * 2 : 16;
    recv_slot *n = calloc(cap, sizeof *n);
    if (!n) return 0;
    for (i = 0; i < p->caprecv; i++) {
      size_t j;
      if (!p->recv[i].id) continue;
      for (j = slot_of(p->recv[i].id, cap); n[j].id; j = (j + 1) & (cap - 1)) {}
      n[j] = p->recv[i];
    }
    free(p->recv);
    p->recv = n;
    p->caprecv = cap;
  }
  for (i = slot_of(id, p->caprecv); p->recv[i].id; i = (i + 1) & (p->caprecv - 1)) {}
  p->recv[i].id = id;
  p->recv[i].p = q;
  p->nrecv++;
  return 1;
}

/* ------------------------------------------------------------ peers */

par_wire_peer *par_wire_peer_new(const par_wire_objects *objs) {
  par_wire_peer *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
  if (objs) p->objs = *objs;
  par_buf_init(&p->scratch);
  return p;
}

static void forget(par_wire_peer *p) {
  size_t i;
  for (i = 0; i < p->caprecv; i++)
    if (p->recv[i].id) par_object_release(&p->recv[i].p->hdr);
  free(p->recv);
  free(p->sent);
  p->recv = NULL;
  p->sent = NULL;
  p->nrecv = p->caprecv = p->nsent = p->capsent = 0;
  for (i = 0; i < p->nstreams; i++) {
    par_queue_close(p->streams[i].q);
    par_object_release((par_object *)p->streams[i].q);
  }
  p->nstreams = 0;
}

void par_wire_peer_reset(par_wire_peer *p) {
  pthread_mutex_lock(&p->mu);
  forget(p);
  pthread_mutex_unlock(&p->mu);
}

void par_wire_peer_free(par_wire_peer *p) {
  if (!p) return;
  forget(p);
  free(p->streams);
  par_buf_free(&p->scratch);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

void par_wire_peer_stats(par_wire_peer *p, par_wire_stats *out) {
  pthread_mutex_lock(&p->mu);
  *out = p->stats;
  out->protos_cached = p->nrecv;
  out->streams_open = p->nstreams;
  pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ writing */

typedef struct writer { unsigned char *p; } writer;

static void w_byte(writer *w, int c) { *w->p++ = (unsigned char)c; }

static void w_size(writer *w, uint64_t x) { w->p += wirefmt_put_size(w->p, x); }

static void w_raw(writer *w, const void *s, size_t n) {
  if (n) memcpy(w->p, s, n);
  w->p += n;
}

static void w_u64(writer *w, uint64_t x) { wirefmt_put_u64(w->p, x); w->p += 8; }

/* A flattened reference, decided before anything is written. */
typedef struct ref_plan {
  int kind;                /* WIRE_REF_DUMP, _PROTO, _HANDLE */
  uint64_t id;
  par_wire_handle h;
} ref_plan;

#define PLAN_STACK 16

static int flatten(par_wire_peer *p, int kind, uint32_t stream, const par_msg *m, par_buf *out,
                   par_wire_err *e) {
  ref_plan stack_plan[PLAN_STACK], *plan = stack_plan;
  size_t i, need = 1 + WIREFMT_SIZE_MAX * 3 + m->len, fresh = 0;
  writer w;
  int rc = -1;
  if (m->nrefs > PLAN_STACK && !(plan = malloc(m->nrefs * sizeof *plan)))
    return par_wire_fail(e, "not enough memory");
  /* First decide every reference (the only step that may refuse), and
   * only then write and mark prototypes sent: a refused message leaves
   * the peer as it was. */
  for (i = 0; i < m->nrefs; i++) {
    par_object *o = m->refs[i];
    if (o->type == &par_proto_type) {
      par_proto *pr = (par_proto *)o;
      size_t j;
      plan[i].id = proto_wire_id(pr);
      plan[i].kind = WIRE_REF_PROTO;
      if (!sent_has(p, plan[i].id)) {
        for (j = 0; j < i; j++)     /* a prototype twice in one message: dump once */
          if (plan[j].kind == WIRE_REF_DUMP && plan[j].id == plan[i].id) break;
        if (j == i) {
          plan[i].kind = WIRE_REF_DUMP;
          need += WIREFMT_SIZE_MAX + pr->len;
          fresh++;
        }
      }
      need += 1 + 8;
    } else if (!p->objs.export_obj) {
      par_wire_fail(e, "cannot send %s to another process", o->type->name);
      goto done;
    } else {
      memset(&plan[i].h, 0, sizeof plan[i].h);
      if (p->objs.export_obj(p->objs.ud, o, &plan[i].h, e) != 0) goto done;
      if (!plan[i].h.type) { par_wire_fail(e, "cannot send %s to another process", o->type->name); goto done; }
      plan[i].kind = WIRE_REF_HANDLE;
      need += 1 + WIREFMT_SIZE_MAX * 3 + strlen(plan[i].h.type);
    }
  }
  if (!par_buf_reserve(out, need) || (fresh && !sent_reserve(p, fresh))) {
    par_wire_fail(e, "not enough memory");
    goto done;
  }
  w.p = out->data + out->len;
  w_byte(&w, kind);
  if (kind != PAR_WIRE_K_MESSAGE) w_size(&w, stream);
  w_size(&w, m->nrefs);
  for (i = 0; i < m->nrefs; i++) {
    w_byte(&w, plan[i].kind);
    if (plan[i].kind == WIRE_REF_HANDLE) {
      size_t n = strlen(plan[i].h.type);
      w_size(&w, n);
      w_raw(&w, plan[i].h.type, n);
      w_size(&w, plan[i].h.owner);
      w_size(&w, plan[i].h.id);
      continue;
    }
    w_u64(&w, plan[i].id);
    if (plan[i].kind == WIRE_REF_DUMP) {
      par_proto *pr = (par_proto *)m->refs[i];
      w_size(&w, pr->len);
      w_raw(&w, pr->dump, pr->len);
      sent_add(p, plan[i].id);
      p->stats.dumps_sent++;
    } else {
      p->stats.ids_sent++;
    }
  }
  w_size(&w, m->len);
  w_raw(&w, m->data, m->len);
  out->len = (size_t)(w.p - out->data);
  rc = 0;
done:
  if (plan != stack_plan) free(plan);
  return rc;
}

int par_wire_flatten(par_wire_peer *p, const par_msg *m, par_buf *out, uint32_t *stream,
                     par_wire_err *e) {
  int rc;
  uint32_t s = 0;
  pthread_mutex_lock(&p->mu);
  if (m->rest) {
    if (++p->next_stream == 0) p->next_stream = 1;
    s = p->next_stream;
  }
  rc = flatten(p, m->rest ? PAR_WIRE_K_FIRST : PAR_WIRE_K_MESSAGE, s, m, out, e);
  pthread_mutex_unlock(&p->mu);
  if (stream) *stream = rc == 0 ? s : 0;
  return rc;
}

int par_wire_flatten_segment(par_wire_peer *p, uint32_t stream, const par_msg *seg, par_buf *out,
                             par_wire_err *e) {
  int rc;
  pthread_mutex_lock(&p->mu);
  rc = flatten(p, PAR_WIRE_K_SEGMENT, stream, seg, out, e);
  pthread_mutex_unlock(&p->mu);
  return rc;
}

int par_wire_flatten_end(par_wire_peer *p, uint32_t stream, par_buf *out, par_wire_err *e) {
  unsigned char *q;
  (void)p;
  if (!par_buf_reserve(out, 1 + WIREFMT_SIZE_MAX)) return par_wire_fail(e, "not enough memory");
  q = out->data + out->len;
  *q = PAR_WIRE_K_END;
  out->len += 1 + wirefmt_put_size(q + 1, stream);
  return 0;
}

int par_wire_kind(const void *bytes, size_t len) {
  return len ? *(const unsigned char *)bytes : -1;
}

/* ------------------------------------------------------------ rebuilding */

typedef struct reader {
  const unsigned char *p, *end;
} reader;

static int r_byte(reader *r, int *out) {
  if (r->p >= r->end) return -1;
  *out = *r->p++;
  return 0;
}

static int r_size(reader *r, uint64_t *out) {
  size_t n = wirefmt_get_size(r->p, (size_t)(r->end - r->p), out);
  if (!n) return -1;
  r->p += n;
  return 0;
}

static int r_u64(reader *r, uint64_t *out) {
  if (r->end - r->p < 8) return -1;
  *out = wirefmt_get_u64(r->p);
  r->p += 8;
  return 0;
}

static stream_slot *stream_find(par_wire_peer *p, uint64_t id) {
  size_t i;
  for (i = 0; i < p->nstreams; i++)
    if (p->streams[i].id == id) return &p->streams[i];
  return NULL;
}

/* One reference: its object goes to p->scratch's refs (one reference). */
static int rebuild_ref(par_wire_peer *p, reader *r, par_wire_err *e) {
  int kind;
  uint64_t id, n;
  par_object *o;
  if (r_byte(r, &kind) != 0) return corrupt(e, "truncated");
  if (kind == WIRE_REF_PROTO || kind == WIRE_REF_DUMP) {
    par_proto *pr;
    if (r_u64(r, &id) != 0) return corrupt(e, "truncated");
    pr = recv_get(p, id);
    if (kind == WIRE_REF_DUMP) {
      const char *dump;
      if (r_size(r, &n) != 0 || n > (uint64_t)(r->end - r->p)) return corrupt(e, "truncated");
      dump = (const char *)r->p;
      r->p += n;
      if (par_wire_content_id(dump, (size_t)n) != id)
        return corrupt(e, "a function whose id does not match its code");
      p->stats.dumps_received++;
      if (!pr) {
        pr = proto_from_dump(dump, (size_t)n);
        if (!pr) return par_wire_fail(e, "not enough memory");
        if (!recv_put(p, id, pr)) {
          par_object_release(&pr->hdr);
          return par_wire_fail(e, "not enough memory");
        }
      }
    } else {
      if (!pr) return corrupt(e, "a function id it never sent");
      p->stats.ids_received++;
    }
    o = par_object_retain(&pr->hdr);
  } else if (kind == WIRE_REF_HANDLE) {
    par_wire_handle h;
    char type[64];
    if (r_size(r, &n) != 0 || n > (uint64_t)(r->end - r->p)) return corrupt(e, "truncated");
    if (n >= sizeof type || memchr(r->p, 0, (size_t)n)) return corrupt(e, "a malformed handle");
    memcpy(type, r->p, (size_t)n);
    type[n] = 0;
    r->p += n;
    if (r_size(r, &h.owner) != 0 || r_size(r, &h.id) != 0) return corrupt(e, "truncated");
    h.type = type;
    if (!p->objs.import_obj)
      return par_wire_fail(e, "cannot receive %s from another process", type);
    o = p->objs.import_obj(p->objs.ud, &h, e);
    if (!o) return -1;
  } else {
    return corrupt(e, "an unknown kind of reference");
  }
  if (!par_buf_add_ref(&p->scratch, o)) {
    par_object_release(o);
    return par_wire_fail(e, "not enough memory");
  }
  return 0;
}

/* The refs and the codec bytes of a message or segment, into *out. */
static int rebuild_msg(par_wire_peer *p, reader *r, par_msg **out, par_wire_err *e) {
  uint64_t nrefs, len, i;
  par_buf *b = &p->scratch;
  par_buf_reset(b);
  if (r_size(r, &nrefs) != 0) return corrupt(e, "truncated");
  if (nrefs > (uint64_t)(r->end - r->p)) return corrupt(e, "truncated");  /* >= 1 byte each */
  for (i = 0; i < nrefs; i++)
    if (rebuild_ref(p, r, e) != 0) goto fail;
  if (r_size(r, &len) != 0 || len != (uint64_t)(r->end - r->p)) {
    corrupt(e, len > (uint64_t)(r->end - r->p) ? "truncated" : "bytes after its end");
    goto fail;
  }
  if (!par_buf_reserve(b, (size_t)len)) { par_wire_fail(e, "not enough memory"); goto fail; }
  if (len) memcpy(b->data, r->p, (size_t)len);
  b->len = (size_t)len;
  r->p += len;
  *out = par_buf_finish(b);
  if (!*out) { par_wire_fail(e, "not enough memory"); goto fail; }
  return 0;
fail:
  par_buf_reset(b);
  return -1;
}

static int rebuild(par_wire_peer *p, reader *r, par_msg **out, par_wire_err *e) {
  int kind;
  uint64_t stream = 0;
  stream_slot *s;
  par_msg *m = NULL;
  if (r_byte(r, &kind) != 0) return corrupt(e, "empty");
  if (kind == PAR_WIRE_K_HELLO) return corrupt(e, "a hello where a message was expected");
  if (kind < PAR_WIRE_K_MESSAGE || kind > PAR_WIRE_K_END) return corrupt(e, "an unknown kind of payload");
  if (kind != PAR_WIRE_K_MESSAGE) {
    if (r_size(r, &stream) != 0) return corrupt(e, "truncated");
    if (stream == 0 || stream > UINT32_MAX) return corrupt(e, "a bad stream number");
  }
  s = kind == PAR_WIRE_K_MESSAGE ? NULL : stream_find(p, stream);
  if (kind == PAR_WIRE_K_END) {
    if (!s) return corrupt(e, "the end of an unknown stream");
    if (r->p != r->end) return corrupt(e, "bytes after its end");
    par_queue_close(s->q);
    par_object_release((par_object *)s->q);
    *s = p->streams[--p->nstreams];
    return PAR_WIRE_CONSUMED;
  }
  if (kind == PAR_WIRE_K_SEGMENT && !s) return corrupt(e, "a segment of an unknown stream");
  if (kind == PAR_WIRE_K_FIRST && s) return corrupt(e, "a stream started twice");
  if (kind == PAR_WIRE_K_FIRST && p->nstreams == p->capstreams) {
    size_t cap = p->capstreams ? p->capstreams * 2 : 4;
    stream_slot *n = realloc(p->streams, cap * sizeof *n);
    if (!n) return par_wire_fail(e, "not enough memory");
    p->streams = n;
    p->capstreams = cap;
  }
  if (rebuild_msg(p, r, &m, e) != 0) return -1;
  if (kind == PAR_WIRE_K_SEGMENT) {
    if (par_queue_push(s->q, m, 0) != PAR_OK) {
      par_msg_free(m);
      return par_wire_fail(e, "not enough memory");
    }
    return PAR_WIRE_CONSUMED;
  }
  if (kind == PAR_WIRE_K_FIRST) {
    par_queue *q = par_queue_new(0);
    if (!q) { par_msg_free(m); return par_wire_fail(e, "not enough memory"); }
    m->rest = par_object_retain((par_object *)q);
    p->streams[p->nstreams].id = (uint32_t)stream;
    p->streams[p->nstreams].q = q;
    p->nstreams++;
  }
  *out = m;
  return PAR_WIRE_MESSAGE;
}

int par_wire_rebuild(par_wire_peer *p, const void *bytes, size_t len, par_msg **out,
                     par_wire_err *e) {
  reader r;
  int rc;
  r.p = bytes;
  r.end = r.p + len;
  *out = NULL;
  pthread_mutex_lock(&p->mu);
  rc = rebuild(p, &r, out, e);
  pthread_mutex_unlock(&p->mu);
  return rc;
}
