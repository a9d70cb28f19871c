/*
 * Rank 0's side of the communication thread: pools spread over the other
 * ranks, each task sent to the rank with the most free places (workers x
 * depth), results matched to their futures by slot number. Threads and
 * ownership: comm.h.
 */
#include "mpi/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mpi_pool *find_pool(comm_impl *im, uint32_t id) {
  size_t i;
  for (i = 0; i < im->npools; i++)
    if (im->pools[i]->id == id) return im->pools[i];
  return NULL;
}

static void wake_main(mpi_state *st) {
  pthread_cond_broadcast(&st->cv);
}

static void pool_fail(mpi_state *st, mpi_pool *p, const char *why) {
  pthread_mutex_lock(&st->mu);
  if (!p->failed) {
    p->failed = 1;
    snprintf(p->error, sizeof p->error, "%.255s", why);
  }
  wake_main(st);
  pthread_mutex_unlock(&st->mu);
}

static int put_string(comm_impl *im, const par_capi *api, const char *s) {
  uint32_t n = s ? (uint32_t)strlen(s) : 0;
  if (!api->buf_reserve(&im->out, 4 + n)) return -1;
  memcpy(im->out.data + im->out.len, &n, 4);
  if (n) memcpy(im->out.data + im->out.len + 4, s, n);
  im->out.len += 4 + n;
  return 0;
}

static void new_pool(mpi_state *st, comm_impl *im, mpi_cmd *c) {
  const par_capi *api = st->api;
  mpi_pool *p = c->pool;   /* the command's reference becomes the thread's */
  par_wire_err e;
  int r;
  if (!comm_grow((void **)&im->pools, &im->cappools, im->npools + 1, sizeof *im->pools) ||
      !(p->workers = calloc((size_t)st->size, sizeof(int))) ||
      !(p->inflight = calloc((size_t)st->size, sizeof(int)))) {
    pool_fail(st, p, "not enough memory");
    mpi_pool_release(p);
    return;
  }
  im->pools[im->npools++] = p;
  for (r = 1; r < st->size; r++) {
    mpi_head h = { K_POOL_NEW, p->id, 0, 0, p->workers_req };
    uint32_t stream = 0;
    if (comm_begin(im, api) != 0 || put_string(im, api, c->path) != 0 ||
        put_string(im, api, c->cpath) != 0) {
      pool_fail(st, p, "not enough memory");
      break;
    }
    if (c->init && api->wire_flatten(im->peers[r], c->init, &im->out, &stream, &e) != 0) {
      char why[300];
      snprintf(why, sizeof why, "init: %.250s", e.msg);
      pool_fail(st, p, why);
      break;
    }
    if (comm_send(im, r, &h, &e) != 0) { pool_fail(st, p, e.msg); break; }
  }
  /* Ranks that got it answer; a pool that failed here still ends on them. */
}

static void cancel_pending(mpi_state *st, mpi_pool *p) {
  (void)st;
  while (p->pcount > 0) {
    par_future *f = p->pending[p->phead];
    p->phead = (p->phead + 1) % p->pcap;
    p->pcount--;
    st->api->future_cancel(f);
    st->api->release(&f->hdr);
  }
}

static int push_pending(mpi_pool *p, par_future *f) {
  if (p->pcount == p->pcap) {
    size_t cap = p->pcap ? p->pcap * 2 : 64, i;
    par_future **q = malloc(cap * sizeof *q);
    if (!q) return 0;
    for (i = 0; i < p->pcount; i++) q[i] = p->pending[(p->phead + i) % p->pcap];
    free(p->pending);
    p->pending = q;
    p->pcap = cap;
    p->phead = 0;
  }
  p->pending[(p->phead + p->pcount) % p->pcap] = f;
  p->pcount++;
  return 1;
}

static void fail_future(mpi_state *st, par_future *f, const char *why) {
  st->api->future_finish(f, PAR_FAILED, mpi_error_msg(st->api, why));
}

void root_command(mpi_state *st, comm_impl *im, mpi_cmd *c) {
  const par_capi *api = st->api;
  switch (c->kind) {
    case K_POOL_NEW:
      new_pool(st, im, c);
      c->pool = NULL;
      break;
    case K_TASK:
      if (c->pool->closing || !push_pending(c->pool, c->f)) {
        if (api->future_claim(c->f)) fail_future(st, c->f, "pool is shut down");
        api->release(&c->f->hdr);
      }
      c->f = NULL;
      break;
    case K_POOL_END:
      c->pool->closing = 1;
      if (c->cancel) cancel_pending(st, c->pool);
      break;
    case K_INTERRUPT: {
      int i;
      for (i = 0; i < im->nslots; i++)
        if (im->slots[i].f == c->f) {
          mpi_head h = { K_INTERRUPT, im->slots[i].pool->id, (uint64_t)i, 0, 0 };
          par_wire_err e;
          if (comm_begin(im, api) == 0) comm_send(im, im->slots[i].rank, &h, &e);
          break;
        }
      break;
    }
    case K_STOP:
      root_begin_stop(st, im);
      break;
  }
  if (c->pool) mpi_pool_release(c->pool);
  if (c->f) api->release(&c->f->hdr);
  api->msg_free(c->init);
  free(c->path);
  free(c->cpath);
  free(c);
}

static int new_slot(comm_impl *im) {
  int i;
  if (im->free_slot >= 0) {
    i = im->free_slot;
    im->free_slot = im->slots[i].next_free;
    return i;
  }
  if (im->nslots % 256 == 0) {
    task_slot *s = realloc(im->slots, (size_t)(im->nslots + 256) * sizeof *s);
    if (!s) return -1;
    im->slots = s;
  }
  return im->nslots++;
}

static void free_slot(comm_impl *im, int i) {
  im->slots[i].f = NULL;
  im->slots[i].next_free = im->free_slot;
  im->free_slot = i;
}

/* The rank with the most free places for p, or -1. */
static int pick_rank(mpi_state *st, mpi_pool *p) {
  int r, best = -1, most = 0;
  for (r = 1; r < st->size; r++) {
    int free_places = p->workers[r] * p->depth - p->inflight[r];
    if (free_places > most) { most = free_places; best = r; }
  }
  return best;
}

static int send_tasks(mpi_state *st, comm_impl *im, mpi_pool *p) {
  const par_capi *api = st->api;
  int any = 0, r;
  while (p->pcount > 0 && (r = pick_rank(st, p)) > 0) {
    par_future *f = p->pending[p->phead];
    par_msg *task;
    par_wire_err e;
    uint32_t stream = 0;
    int slot;
    mpi_head h;
    p->phead = (p->phead + 1) % p->pcap;
    p->pcount--;
    any = 1;
    if (!api->future_claim(f)) {         /* cancelled while it waited */
      api->release(&f->hdr);
      continue;
    }
    slot = new_slot(im);
    if (slot < 0 || comm_begin(im, api) != 0) {
      fail_future(st, f, "not enough memory");
      if (slot >= 0) free_slot(im, slot);
      api->release(&f->hdr);
      continue;
    }
    task = api->future_take_task(f);   /* claimed: the message is ours */
    if (api->wire_flatten(im->peers[r], task, &im->out, &stream, &e) != 0) {
      api->msg_free(task);
      fail_future(st, f, e.msg);
      free_slot(im, slot);
      api->release(&f->hdr);
      continue;
    }
    h.kind = K_TASK; h.pool = p->id; h.id = (uint64_t)slot; h.state = api->future_kind(f); h.arg = 0;
    api->msg_free(task);
    if (comm_send(im, r, &h, &e) != 0) {
      fail_future(st, f, e.msg);
      free_slot(im, slot);
      api->release(&f->hdr);
      continue;
    }
    atomic_fetch_add(&p->started, 1);
    im->slots[slot].f = f;            /* the command's reference */
    im->slots[slot].pool = p;
    im->slots[slot].rank = r;
    p->inflight[r]++;
  }
  return any;
}

/* A pool closing with nothing left here or in flight ends on every rank. */
static int end_if_done(mpi_state *st, comm_impl *im, size_t i) {
  mpi_pool *p = im->pools[i];
  int r, busy = 0;
  if (!p->closing || p->pcount > 0) return 0;
  for (r = 1; r < st->size; r++) busy += p->inflight[r];
  if (busy) return 0;
  for (r = 1; r < st->size; r++) {
    mpi_head h = { K_POOL_END, p->id, 0, 0, 0 };
    par_wire_err e;
    if (comm_begin(im, st->api) == 0) comm_send(im, r, &h, &e);
  }
  pthread_mutex_lock(&st->mu);
  p->ended = 1;
  wake_main(st);
  pthread_mutex_unlock(&st->mu);
  im->pools[i] = im->pools[--im->npools];
  mpi_pool_release(p);
  return 1;
}

int root_dispatch(mpi_state *st, comm_impl *im) {
  size_t i = 0;
  int any = 0;
  while (i < im->npools) {
    mpi_pool *p = im->pools[i];
    if (p->ready == st->size - 1 && !p->failed) any |= send_tasks(st, im, p);
    else if (p->failed) cancel_pending(st, p);
    if (end_if_done(st, im, i)) { any = 1; continue; }
    i++;
  }
  return any;
}

void root_begin_stop(mpi_state *st, comm_impl *im) {
  size_t i;
  int r;
  for (i = 0; i < im->npools; i++) cancel_pending(st, im->pools[i]);
  im->stopped = calloc((size_t)st->size, 1);
  for (r = 1; r < st->size; r++) {
    mpi_head h = { K_STOP, 0, 0, 0, 0 };
    par_wire_err e;
    if (comm_begin(im, st->api) == 0) comm_send(im, r, &h, &e);
  }
  im->stopping = 1;
  im->stop_deadline = st->api->now() + st->stop_timeout;
}

static void pool_ready(mpi_state *st, mpi_pool *p, int src, const mpi_head *h,
                       const unsigned char *payload, size_t len) {
  pthread_mutex_lock(&st->mu);
  if (h->arg < 0) {
    if (!p->failed) {
      p->failed = 1;
      snprintf(p->error, sizeof p->error, "rank %d: %.*s", src, (int)(len < 200 ? len : 200),
               (const char *)payload);
    }
  } else {
    p->workers[src] = h->arg;
    p->total_workers += h->arg;
  }
  if (++p->ready == st->size - 1 || p->failed) wake_main(st);
  pthread_mutex_unlock(&st->mu);
}

void root_message(mpi_state *st, comm_impl *im, int src, const mpi_head *h,
                  const unsigned char *payload, size_t len) {
  const par_capi *api = st->api;
  switch (h->kind) {
    case K_POOL_READY: {
      mpi_pool *p = find_pool(im, h->pool);
      if (p) pool_ready(st, p, src, h, payload, len);
      break;
    }
    case K_RESULT: {
      task_slot *s;
      par_msg *m = NULL;
      par_wire_err e;
      int state = h->state == PAR_DONE ? PAR_DONE : PAR_FAILED;
      if (h->id >= (uint64_t)im->nslots || !im->slots[h->id].f) break;
      s = &im->slots[h->id];
      if (len > 0 && api->wire_rebuild(im->peers[src], payload, len, &m, &e) != PAR_WIRE_MESSAGE) {
        if (m) api->msg_free(m);
        m = mpi_error_msg(api, e.msg);
        state = PAR_FAILED;
      }
      api->future_finish(s->f, state, m);
      s->pool->inflight[s->rank]--;
      api->release(&s->f->hdr);
      free_slot(im, (int)h->id);
      break;
    }
    case K_STOPPED:
      if (im->stopped && !im->stopped[src]) {
        im->stopped[src] = 1;
        im->nstopped++;
      }
      break;
  }
}
