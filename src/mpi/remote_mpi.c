/*
 * Shared objects across ranks (wire/remote.h over MPI): rank 0 owns every
 * queue, pipe end, dict, pool and future its tasks carry; a task on another
 * rank gets proxies whose calls are requests to rank 0.
 *
 * Messages: K_REQUEST and K_CANCEL (r -> 0), K_REPLY (0 -> r), each an
 * mpi_head then the bytes of remote.h. Their payloads are flattened with a
 * peer of their own per pair of ranks (`rpeers`), apart from the tasks' and
 * results' peers: on the other ranks requests are flattened by the tasks'
 * threads, results by the communication thread, and a function's dump must
 * precede its id on each peer's stream. Both kinds of peers of a rank share
 * its vias (the owner's export table on rank 0, the client on the others).
 *
 * Threads: on rank 0 everything here runs on the communication thread,
 * except the owners' helper threads (remote.h), whose replies the loop
 * sends (rmpi_pump). On the other ranks a task's thread queues its request
 * in `out` (under `mu`) and waits in par_remote_call; the communication
 * thread sends what is queued and delivers the replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm_impl.h"
#include "mpi/remote_mpi.h"

typedef struct rmsg {
  struct rmsg *next;
  int cancel;
  size_t len;
  unsigned char bytes[];
} rmsg;

struct rmpi {
  /* rank 0: per rank (0 unused) */
  par_remote_owner **owners;
  /* every rank: per rank; rank r != 0 uses slot 0 only */
  par_wire_vias *vias;
  par_wire_peer **rpeers;
  /* other ranks */
  par_remote_client *client;
  pthread_mutex_t mu;
  rmsg *out_head, *out_tail;       /* mu */
  const par_capi *api;
};

/* A task's thread: the request goes out with the next loop of the
 * communication thread. */
static int link_send(void *ud, const void *body, size_t blen, int cancel, par_wire_err *e) {
  rmpi *r = (rmpi *)ud;
  rmsg *m = malloc(sizeof *m + blen);
  if (!m) { snprintf(e->msg, sizeof e->msg, "not enough memory"); return -1; }
  m->next = NULL;
  m->cancel = cancel;
  m->len = blen;
  memcpy(m->bytes, body, blen);
  pthread_mutex_lock(&r->mu);
  if (r->out_tail) r->out_tail->next = m;
  else r->out_head = m;
  r->out_tail = m;
  pthread_mutex_unlock(&r->mu);
  return 0;
}

rmpi *rmpi_new(mpi_state *st) {
  const par_capi *api = st->api;
  rmpi *r = calloc(1, sizeof *r);
  int i;
  if (!r) return NULL;
  r->api = api;
  pthread_mutex_init(&r->mu, NULL);
  r->vias = calloc((size_t)st->size, sizeof *r->vias);
  r->rpeers = calloc((size_t)st->size, sizeof *r->rpeers);
  if (!r->vias || !r->rpeers) goto fail;
  if (st->rank == 0) {
    r->owners = calloc((size_t)st->size, sizeof *r->owners);
    if (!r->owners) goto fail;
    for (i = 1; i < st->size; i++) {
      if (!(r->owners[i] = api->remote_owner_new(0))) goto fail;
      api->remote_owner_attach(&r->vias[i], r->owners[i]);
    }
  } else {
    par_remote_link link;
    link.send = link_send;
    link.pump = NULL;
    link.ud = r;
    if (!(r->client = api->remote_client_new(&link, 0))) goto fail;
    api->remote_client_attach(&r->vias[0], r->client);
  }
  for (i = 0; i < st->size; i++) {
    par_wire_objects hooks;
    if (i == st->rank || (st->rank != 0 && i != 0)) continue;
    api->vias_hooks(&r->vias[i], &hooks);
    if (!(r->rpeers[i] = api->wire_peer_new(&hooks))) goto fail;
  }
  if (r->client) api->remote_client_set_peer(r->client, r->rpeers[0]);
  return r;
fail:
  rmpi_free(st, r);
  return NULL;
}

void rmpi_hooks(rmpi *r, int rank, par_wire_objects *out) {
  r->api->vias_hooks(&r->vias[rank], out);
}

void rmpi_free(mpi_state *st, rmpi *r) {
  const par_capi *api = st->api;
  int i;
  if (!r) return;
  for (i = 0; i < st->size; i++) {
    if (r->owners && r->owners[i]) api->remote_owner_free(r->owners[i]);
    if (r->rpeers && r->rpeers[i]) api->wire_peer_free(r->rpeers[i]);
  }
  if (r->client) api->remote_client_free(r->client);
  while (r->out_head) {
    rmsg *n = r->out_head->next;
    free(r->out_head);
    r->out_head = n;
  }
  free(r->owners);
  free(r->rpeers);
  free(r->vias);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static void send_reply(mpi_state *st, comm_impl *im, int dest) {
  mpi_head h;
  par_wire_err e;
  memset(&h, 0, sizeof h);
  h.kind = K_REPLY;
  if (comm_send(im, dest, &h, &e) != 0) {
    (void)st;   /* out of memory or over 2 GiB: that caller waits, MPI goes on */
  }
}

int rmpi_message(mpi_state *st, comm_impl *im, int src, const mpi_head *h,
                 const unsigned char *payload, size_t len) {
  const par_capi *api = st->api;
  rmpi *r = im->remote;
  par_wire_err e;
  if (!r) return 0;
  switch (h->kind) {
    case K_REQUEST:
      if (st->rank != 0 || src <= 0 || src >= st->size) return 1;
      if (comm_begin(im, api) != 0) return 1;
      if (api->remote_serve(r->owners[src], r->rpeers[src], payload, len, &im->out, &e) == 1)
        send_reply(st, im, src);
      return 1;
    case K_CANCEL:
      if (st->rank == 0 && src > 0 && src < st->size) api->remote_cancel(r->owners[src], payload, len);
      return 1;
    case K_REPLY:
      if (r->client) api->remote_client_deliver(r->client, payload, len);
      return 1;
    default:
      return 0;
  }
}

int rmpi_pump(mpi_state *st, comm_impl *im) {
  const par_capi *api = st->api;
  rmpi *r = im->remote;
  int any = 0, i;
  if (!r) return 0;
  if (st->rank == 0) {
    for (i = 1; i < st->size; i++) {
      for (;;) {
        if (comm_begin(im, api) != 0) break;
        if (api->remote_next_reply(r->owners[i], r->rpeers[i], &im->out) != 1) break;
        send_reply(st, im, i);
        any = 1;
      }
    }
    return any;
  }
  for (;;) {
    rmsg *m;
    mpi_head h;
    par_wire_err e;
    pthread_mutex_lock(&r->mu);
    m = r->out_head;
    if (m) {
      r->out_head = m->next;
      if (!r->out_head) r->out_tail = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    if (!m) return any;
    any = 1;
    memset(&h, 0, sizeof h);
    h.kind = m->cancel ? K_CANCEL : K_REQUEST;
    if (comm_begin(im, api) == 0 && api->buf_reserve(&im->out, m->len)) {
      memcpy(im->out.data + im->out.len, m->bytes, m->len);
      im->out.len += m->len;
      comm_send(im, 0, &h, &e);
    }
    free(m);
  }
}
