/*
 * The other ranks' side of the communication thread: a local pool of
 * worker threads per rank-0 pool, tasks rebuilt from rank 0's bytes and
 * submitted to it, results flattened back as they finish. Threads and
 * ownership: comm.h.
 */
#include "mpi/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static local_pool *find_lpool(comm_impl *im, uint32_t id) {
  size_t i;
  for (i = 0; i < im->nlpools; i++)
    if (im->lpools[i].id == id) return &im->lpools[i];
  return NULL;
}

static void reply(mpi_state *st, comm_impl *im, mpi_head *h, const char *text) {
  par_wire_err e;
  if (comm_begin(im, st->api) != 0) return;
  if (text) {
    size_t n = strlen(text);
    if (!st->api->buf_reserve(&im->out, n)) return;
    memcpy(im->out.data + im->out.len, text, n);
    im->out.len += n;
  }
  comm_send(im, 0, h, &e);
}

/* Sends the outcome of task `id`: state and the result message (or, when
 * m is NULL and why is set, the error why). */
static void send_result(mpi_state *st, comm_impl *im, uint64_t id, int state, const par_msg *m,
                        const char *why) {
  const par_capi *api = st->api;
  mpi_head h = { K_RESULT, 0, id, state, 0 };
  par_msg *err = NULL;
  par_wire_err e;
  uint32_t stream = 0;
  if (!m && why) m = err = mpi_error_msg(api, why);
  if (comm_begin(im, api) != 0) { api->msg_free(err); return; }
  if (m && api->wire_flatten(im->peers[0], m, &im->out, &stream, &e) != 0) {
    /* A result that cannot leave this rank fails its task instead. */
    api->msg_free(err);
    err = mpi_error_msg(api, e.msg);
    h.state = PAR_FAILED;
    if (comm_begin(im, api) != 0 ||
        (err && api->wire_flatten(im->peers[0], err, &im->out, &stream, &e) != 0)) {
      api->msg_free(err);
      return;
    }
  }
  api->msg_free(err);
  if (comm_send(im, 0, &h, &e) == 0) return;
  /* Too large for one MPI message: the task fails with the reason, else
   * its future on rank 0 would wait for ever. */
  h.state = PAR_FAILED;
  err = mpi_error_msg(api, e.msg);
  if (err && comm_begin(im, api) == 0 && api->wire_flatten(im->peers[0], err, &im->out, &stream, &e) == 0 &&
      comm_send(im, 0, &h, &e) == 0) {
    api->msg_free(err);
    return;
  }
  api->msg_free(err);
  MPI_Abort(MPI_COMM_WORLD, 1);   /* cannot even say why: fail-stop rather than hang */
}

static const unsigned char *get_string(const unsigned char *p, const unsigned char *end, char **out) {
  uint32_t n;
  *out = NULL;
  if (end - p < 4) return NULL;
  memcpy(&n, p, 4);
  p += 4;
  if ((size_t)(end - p) < n) return NULL;
  if (n) {
    *out = malloc(n + 1);
    if (!*out) return NULL;
    memcpy(*out, p, n);
    (*out)[n] = '\0';
  }
  return p + n;
}

static void new_local_pool(mpi_state *st, comm_impl *im, const mpi_head *h,
                           const unsigned char *payload, size_t len) {
  const par_capi *api = st->api;
  const unsigned char *p = payload, *end = payload + len;
  char *path = NULL, *cpath = NULL;
  par_msg *init = NULL;
  par_wire_err e;
  mpi_head r = { K_POOL_READY, h->pool, 0, 0, -1 };
  int n = h->arg > 0 ? h->arg : api->cpu_count();
  par_pool *pool;
  p = get_string(p, end, &path);
  if (p) p = get_string(p, end, &cpath);
  if (!p) {
    reply(st, im, &r, "malformed pool request");
  } else if (p < end && api->wire_rebuild(im->peers[0], p, (size_t)(end - p), &init, &e) != PAR_WIRE_MESSAGE) {
    reply(st, im, &r, e.msg);
  } else if (!comm_grow((void **)&im->lpools, &im->caplpools, im->nlpools + 1, sizeof *im->lpools)) {
    api->msg_free(init);
    reply(st, im, &r, "not enough memory");
  } else if (!(pool = api->worker_pool_new(n, init, path, cpath))) {
    char why[64];
    snprintf(why, sizeof why, "cannot start %d worker threads", n);
    reply(st, im, &r, why);
  } else {
    im->lpools[im->nlpools].id = h->pool;
    im->lpools[im->nlpools].p = pool;
    im->lpools[im->nlpools].workers = n;
    im->nlpools++;
    r.arg = n;
    reply(st, im, &r, NULL);
  }
  free(path);
  free(cpath);
}

static void end_local_pool(mpi_state *st, comm_impl *im, uint32_t id) {
  local_pool *lp = find_lpool(im, id);
  if (!lp) return;
  st->api->pool_shutdown(lp->p, 1, 1, 1);
  st->api->release(&lp->p->hdr);
  *lp = im->lpools[--im->nlpools];
}

static void run_task(mpi_state *st, comm_impl *im, const mpi_head *h,
                     const unsigned char *payload, size_t len) {
  const par_capi *api = st->api;
  local_pool *lp = find_lpool(im, h->pool);
  par_msg *m = NULL;
  par_future *f;
  par_wire_err e;
  if (!lp) { send_result(st, im, h->id, PAR_FAILED, NULL, "the pool is not running on this rank"); return; }
  if (api->wire_rebuild(im->peers[0], payload, len, &m, &e) != PAR_WIRE_MESSAGE) {
    if (m) api->msg_free(m);
    send_result(st, im, h->id, PAR_FAILED, NULL, e.msg);
    return;
  }
  if (!comm_grow((void **)&im->ltasks, &im->capltasks, im->nltasks + 1, sizeof *im->ltasks) ||
      !(f = api->future_new(h->state, m))) {
    api->msg_free(m);
    send_result(st, im, h->id, PAR_FAILED, NULL, "not enough memory");
    return;
  }
  if (api->pool_submit(lp->p, f) != PAR_OK) {
    api->release(&f->hdr);
    send_result(st, im, h->id, PAR_FAILED, NULL, "pool is shut down");
    return;
  }
  im->ltasks[im->nltasks].f = f;
  im->ltasks[im->nltasks].id = h->id;
  im->ltasks[im->nltasks].interrupt = 0;
  im->nltasks++;
}

void serve_message(mpi_state *st, comm_impl *im, const mpi_head *h,
                   const unsigned char *payload, size_t len) {
  size_t i;
  switch (h->kind) {
    case K_POOL_NEW: new_local_pool(st, im, h, payload, len); break;
    case K_POOL_END: end_local_pool(st, im, h->pool); break;
    case K_TASK: run_task(st, im, h, payload, len); break;
    case K_INTERRUPT:
      for (i = 0; i < im->nltasks; i++)
        if (im->ltasks[i].id == h->id) {
          im->ltasks[i].interrupt = 1;   /* delivered by serve_collect */
          break;
        }
      break;
    case K_STOP: serve_stop(st, im); break;
  }
}

int serve_collect(mpi_state *st, comm_impl *im) {
  size_t i = 0;
  int any = 0;
  while (i < im->nltasks) {
    par_future *f = im->ltasks[i].f;
    int state;
    /* An interrupt that arrives before a worker took the task stops it
     * from starting; one that arrives as the task starts is tried again. */
    if (im->ltasks[i].interrupt &&
        (st->api->future_cancel(f) || st->api->future_interrupt(f)))
      im->ltasks[i].interrupt = 0;
    state = st->api->future_state(f);
    if (state < PAR_DONE) { i++; continue; }
    send_result(st, im, im->ltasks[i].id, state == PAR_DONE ? PAR_DONE : PAR_FAILED,
                st->api->future_result(f),
                state == PAR_CANCELLED ? "interrupted" : "worker failed");
    st->api->release(&f->hdr);
    im->ltasks[i] = im->ltasks[--im->nltasks];
    any = 1;
  }
  return any;
}

int serve_all_busy(comm_impl *im) {
  size_t i;
  int workers = 0;
  for (i = 0; i < im->nlpools; i++) workers += im->lpools[i].workers;
  return workers > 0 && im->nltasks >= (size_t)workers;
}

void serve_idle(mpi_state *st, comm_impl *im, double seconds) {
  const par_capi *api = st->api;
  par_waitset *ws;
  size_t i;
  int status;
  if (im->nltasks > 0 && (ws = api->waitset_new()) != NULL) {
    /* Wake as soon as a local task finishes, or poll MPI again. */
    for (i = 0; i < im->nltasks; i++) api->waitset_add(ws, im->ltasks[i].f);
    par_future *f = api->waitset_next(ws, api->now() + seconds, &status);
    if (f) api->release(&f->hdr);
    api->waitset_release(ws);
  } else {
    struct timespec ts = { 0, (long)(seconds * 1e9) };
    nanosleep(&ts, NULL);
  }
}

void serve_stop(mpi_state *st, comm_impl *im) {
  mpi_head h = { K_STOPPED, 0, 0, 0, 0 };
  size_t i;
  for (i = 0; i < im->nlpools; i++) {
    st->api->pool_shutdown(im->lpools[i].p, 1, 1, 1);
    st->api->release(&im->lpools[i].p->hdr);
  }
  im->nlpools = 0;
  for (i = 0; i < im->nltasks; i++) st->api->release(&im->ltasks[i].f->hdr);
  im->nltasks = 0;
  reply(st, im, &h, NULL);
  im->stop_seen = 1;
}
