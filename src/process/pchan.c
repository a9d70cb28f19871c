/* A worker process's channel: rings in shared memory (pchan.h). */
#define _GNU_SOURCE
#include "process/pchan.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/park.h"

/* asleep[] bits: the side waits for a frame, for room in its ring; ON_WORD:
 * it sleeps on the asleep word itself (a futex shared by both processes),
 * not in poll on its eventfd. */
#define WANT_DATA 1u
#define WANT_ROOM 2u
#define ON_WORD 4u

#define RING_MASK ((uint64_t)PROC_RING_SIZE - 1)

/* A record in a ring: this header, the bytes, padding to 8. */
typedef struct rec {
  uint32_t len;
  uint32_t kind;
} rec;

enum { REC_FRAME = 1, REC_MARKER, REC_WRAP };

struct proc_chan {
  proc_ring *out, *in;
  _Atomic uint32_t *mine, *peer;  /* asleep flags */
  _Atomic uint32_t *closed, *peer_closed;
  par_wire_chan *sock;
  int bell_in, bell_out;
  uint64_t taken;      /* bytes of `in` behind the frame next returned last */
  par_buf pending;     /* records waiting for room: rec, then the bytes */
  size_t pend_off;
  char why[160];       /* set: the ring is corrupt */
};

static uint64_t rec_size(size_t len) { return sizeof(rec) + ((len + 7) & ~(size_t)7); }

proc_chan *proc_chan_new(proc_ledger *shared, int side, int sock, int bell_in, int bell_out) {
  proc_chan *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->sock = par_wire_chan_new(sock, 0);
  if (!c->sock) { free(c); return NULL; }
  c->out = &shared->ring[side];
  c->in = &shared->ring[1 - side];
  c->mine = &shared->asleep[side];
  c->peer = &shared->asleep[1 - side];
  c->closed = &shared->closed[side];
  c->peer_closed = &shared->closed[1 - side];
  c->bell_in = bell_in;
  c->bell_out = bell_out;
  par_buf_init(&c->pending);
  return c;
}

static void ring_bell(proc_chan *c, uint32_t why);

void proc_chan_free(proc_chan *c) {
  if (!c) return;
  /* A peer asleep on its word does not watch the socket: it is told here
   * (then it polls, and finds the socket closed). */
  atomic_store(c->closed, 1);
  ring_bell(c, WANT_DATA | WANT_ROOM);
  par_wire_chan_free(c->sock);
  par_buf_free(&c->pending);
  free(c);
}

int proc_chan_fd(proc_chan *c) { return par_wire_chan_fd(c->sock); }

/* Wakes the peer if it sleeps for `why`: on its word, or in poll. */
static void ring_bell(proc_chan *c, uint32_t why) {
  uint64_t one = 1;
  uint32_t was;
  if (!(atomic_load(c->peer) & why)) return;
  was = atomic_exchange(c->peer, 0);
  if (was & ON_WORD) par_futex_wake(c->peer, 1, ~0u);
  else if (was && write(c->bell_out, &one, sizeof one) < 0) {
    /* a full eventfd is readable already */
  }
}

/* Writes one record into the out ring if it has room now: 1, else 0. */
static int ring_put(proc_chan *c, uint32_t kind, const void *a, size_t alen, const void *b,
                    size_t blen) {
  proc_ring *r = c->out;
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
  uint64_t need = rec_size(alen + blen), off = tail & RING_MASK, skip = 0;
  rec h;
  if (PROC_RING_SIZE - off < need) skip = PROC_RING_SIZE - off;
  if (PROC_RING_SIZE - (tail - head) < need + skip) return 0;
  if (skip) {
    h.len = 0;
    h.kind = REC_WRAP;
    memcpy(r->data + off, &h, sizeof h);
    tail += skip;
    off = 0;
  }
  h.len = (uint32_t)(alen + blen);
  h.kind = kind;
  memcpy(r->data + off, &h, sizeof h);
  if (alen) memcpy(r->data + off + sizeof h, a, alen);
  if (blen) memcpy(r->data + off + sizeof h + alen, b, blen);
  atomic_store(&r->tail, tail + need);         /* published, then the peer looked at */
  ring_bell(c, WANT_DATA);
  return 1;
}

/* Moves pending records into the ring while it has room. */
static void flush_pending(proc_chan *c) {
  while (c->pend_off < c->pending.len) {
    rec h;
    memcpy(&h, c->pending.data + c->pend_off, sizeof h);
    if (!ring_put(c, h.kind, c->pending.data + c->pend_off + sizeof h, h.len, NULL, 0)) return;
    c->pend_off += sizeof h + h.len;
  }
  par_buf_reset(&c->pending);
  c->pend_off = 0;
}

static int pend(proc_chan *c, uint32_t kind, const void *a, size_t alen, const void *b,
                size_t blen) {
  rec h;
  if (!par_buf_reserve(&c->pending, sizeof h + alen + blen)) return -1;
  h.len = (uint32_t)(alen + blen);
  h.kind = kind;
  memcpy(c->pending.data + c->pending.len, &h, sizeof h);
  c->pending.len += sizeof h;
  if (alen) memcpy(c->pending.data + c->pending.len, a, alen);
  c->pending.len += alen;
  if (blen) memcpy(c->pending.data + c->pending.len, b, blen);
  c->pending.len += blen;
  return 0;
}

static int put(proc_chan *c, uint32_t kind, const void *a, size_t alen, const void *b,
               size_t blen) {
  if (c->pend_off == c->pending.len && ring_put(c, kind, a, alen, b, blen)) return 0;
  return pend(c, kind, a, alen, b, blen);
}

int proc_chan_send(proc_chan *c, const void *head, size_t hlen, const void *body, size_t blen,
                   par_wire_err *e) {
  size_t total = hlen + blen;
  if (total <= PROC_RING_FRAME) {
    if (put(c, REC_FRAME, head, hlen, body, blen) != 0) return par_wire_fail(e, "not enough memory");
    return 0;
  }
  /* the marker first: the reader then waits on the socket for the frame */
  if (put(c, REC_MARKER, NULL, 0, NULL, 0) != 0) return par_wire_fail(e, "not enough memory");
  return par_wire_chan_send(c->sock, head, hlen, body, blen, e);
}

size_t proc_chan_backlog(proc_chan *c) {
  return c->pending.len - c->pend_off + par_wire_chan_backlog(c->sock);
}

/* Gives back the room of the frame taken last. */
static void release(proc_chan *c) {
  if (!c->taken) return;
  atomic_store(&c->in->head, atomic_load_explicit(&c->in->head, memory_order_relaxed) + c->taken);
  c->taken = 0;
  ring_bell(c, WANT_ROOM);
}

static int corrupt(proc_chan *c, par_wire_err *e) {
  if (!c->why[0])
    snprintf(c->why, sizeof c->why, "corrupt message from the other process (a bad ring record)");
  return par_wire_fail(e, "%s", c->why);
}

static int take(proc_chan *c, const unsigned char **frame, size_t *len, par_wire_err *e,
                int consume) {
  proc_ring *r = c->in;
  release(c);
  if (c->why[0]) return par_wire_fail(e, "%s", c->why);
  for (;;) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t off = head & RING_MASK, avail = tail - head;
    rec h;
    if (avail == 0) {
      /* Nothing published: the socket closed means the peer is gone (what
       * it published before is taken by now). A socket frame whose marker
       * is not there yet waits for it. */
      const unsigned char *f;
      size_t n;
      if (par_wire_chan_peek(c->sock, &f, &n)) return 0;
      return par_wire_chan_next(c->sock, &f, &n, e) < 0 ? -1 : 0;
    }
    if (avail > PROC_RING_SIZE || avail < sizeof h || (off & 7)) return corrupt(c, e);
    memcpy(&h, r->data + off, sizeof h);
    if (h.kind == REC_WRAP) {
      uint64_t skip = PROC_RING_SIZE - off;
      if (skip > avail) return corrupt(c, e);
      atomic_store(&r->head, head + skip);
      continue;
    }
    if (h.len > PROC_RING_FRAME || rec_size(h.len) > avail || off + rec_size(h.len) > PROC_RING_SIZE)
      return corrupt(c, e);
    if (h.kind == REC_FRAME) {
      *frame = r->data + off + sizeof h;
      *len = h.len;
      if (consume) c->taken = rec_size(h.len);
      return 1;
    }
    if (h.kind != REC_MARKER) return corrupt(c, e);
    if (!consume) return par_wire_chan_peek(c->sock, frame, len);
    {
      int got = par_wire_chan_next(c->sock, frame, len, e);
      if (got == 1) c->taken = rec_size(0);
      return got;
    }
  }
}

int proc_chan_next(proc_chan *c, const unsigned char **frame, size_t *len, par_wire_err *e) {
  return take(c, frame, len, e, 1);
}

int proc_chan_peek(proc_chan *c, const unsigned char **frame, size_t *len) {
  return take(c, frame, len, NULL, 0) == 1;
}

int proc_chan_ready(void *ud) {
  proc_chan *c = (proc_chan *)ud;
  return atomic_load_explicit(&c->in->tail, memory_order_acquire) !=
         atomic_load_explicit(&c->in->head, memory_order_relaxed) + c->taken;
}

short proc_chan_events(proc_chan *c) { return par_wire_chan_events(c->sock); }

/* Room now for the first pending record. */
static int room_for_pending(proc_chan *c) {
  proc_ring *r = c->out;
  rec h;
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed), off = tail & RING_MASK;
  uint64_t need, skip = 0;
  memcpy(&h, c->pending.data + c->pend_off, sizeof h);
  need = rec_size(h.len);
  if (PROC_RING_SIZE - off < need) skip = PROC_RING_SIZE - off;
  return PROC_RING_SIZE - (tail - atomic_load(&r->head)) >= need + skip;
}

int proc_chan_on_socket(proc_chan *c) {
  proc_ring *r = c->in;
  uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed) + c->taken;
  uint64_t avail = atomic_load_explicit(&r->tail, memory_order_acquire) - head;
  uint64_t off = head & RING_MASK;
  const unsigned char *f;
  size_t n;
  rec h;
  /* nothing there, or a corrupt ring (take() reports it) */
  if (avail < sizeof h || avail > PROC_RING_SIZE || (off & 7)) return 0;
  memcpy(&h, r->data + off, sizeof h);
  if (h.kind == REC_WRAP) {
    if (avail < PROC_RING_SIZE - off + sizeof h) return 0;
    memcpy(&h, r->data, sizeof h);
  }
  return h.kind == REC_MARKER && !par_wire_chan_peek(c->sock, &f, &n);
}

/* Marks this side asleep for what it waits for (`word`: on its asleep
 * word): 1, or 0 when it is there already (not marked). In poll (word 0),
 * a marker whose frame is still coming over the socket is not there: the
 * poll waits for the socket (a poll that does not wait would spin until
 * the frame's last byte came); on the word, it is (only poll reads the
 * socket). */
static int sleep_as(proc_chan *c, int data, uint32_t word) {
  int pending = c->pend_off < c->pending.len;
  release(c);
  if (!data && !pending) return 1;
  atomic_store(c->mine, (data ? WANT_DATA : 0) | (pending ? WANT_ROOM : 0) | word);
  /* seq_cst loads after the seq_cst store: the peer's publish, then its
   * look at our flag, cannot both miss */
  if ((data && atomic_load(&c->in->tail) != atomic_load(&c->in->head) &&
       (word || !proc_chan_on_socket(c))) ||
      (pending && room_for_pending(c))) {
    atomic_store(c->mine, 0);
    return 0;
  }
  return 1;
}

int proc_chan_sleep(proc_chan *c, int data) { return sleep_as(c, data, 0); }

void proc_chan_idle(proc_chan *c) {
  release(c);
  atomic_store(c->mine, WANT_DATA);
}

void proc_chan_wake(proc_chan *c, int bell) {
  atomic_store(c->mine, 0);
  if (bell) {
    uint64_t v;
    if (read(c->bell_in, &v, sizeof v) < 0) { /* drained already */ }
  }
}

void proc_chan_quiet(proc_chan *c) { atomic_store(c->mine, 0); }

int proc_chan_doze(proc_chan *c, double deadline, _Atomic int *stop) {
  uint32_t want;
  if (atomic_load(c->peer_closed)) return -1;
  if (!sleep_as(c, 1, ON_WORD)) return 0;        /* a frame is there */
  want = atomic_load(c->mine);
  /* after the store: a nudge now changes the word, and the wait returns */
  if (want && !atomic_load(stop) && !atomic_load(c->peer_closed))
    par_futex_wait(c->mine, want, ~0u, deadline);
  atomic_store(c->mine, 0);
  return atomic_load(c->peer_closed) ? -1 : 0;
}

void proc_chan_nudge(proc_chan *c) {
  atomic_store(c->mine, 0);
  par_futex_wake(c->mine, 1, ~0u);
}

int proc_chan_io(proc_chan *c, short revents, par_wire_err *e) {
  int rc = 0;
  if (revents) rc = par_wire_chan_io(c->sock, revents, e);
  if (c->pend_off < c->pending.len) flush_pending(c);
  return rc;
}

/* Sleeps on this side's asleep word when only the ring can end the wait:
 * a frame or room is all it waits for (the ring being empty, no frame is
 * on its way over the socket: the marker goes first), nothing of its own
 * waits to be written to the socket, and the peer has not closed. One
 * system call each side instead of a write, a poll and a read. 1 if it
 * slept, 0 to poll instead. */
static int sleep_on_word(proc_chan *c, int data, int timeout_ms) {
  uint32_t want;
  if (par_wire_chan_backlog(c->sock) > 0 || atomic_load(c->peer_closed)) return 0;
  /* not asleep: a frame is there, or its marker is and the frame comes
   * over the socket (poll reads it) */
  if (!sleep_as(c, data, ON_WORD)) return 0;
  want = atomic_load(c->mine);
  /* after the store: a peer closing now sees the flag and wakes us */
  if (want && !atomic_load(c->peer_closed))
    par_futex_wait(c->mine, want, ~0u, timeout_ms < 0 ? INFINITY : par_now() + timeout_ms * 1e-3);
  atomic_store(c->mine, 0);
  return !atomic_load(c->peer_closed);
}

int proc_chan_wait(proc_chan *c, int data, int timeout_ms, par_wire_err *e) {
  struct pollfd p[2];
  int r, slept;
  if (timeout_ms != 0 && sleep_on_word(c, data, timeout_ms)) return proc_chan_io(c, 0, e);
  slept = timeout_ms != 0 && proc_chan_sleep(c, data);
  p[0].fd = par_wire_chan_fd(c->sock);
  p[0].events = par_wire_chan_events(c->sock);
  p[1].fd = c->bell_in;
  p[1].events = POLLIN;
  p[0].revents = p[1].revents = 0;
  r = poll(p, 2, slept ? timeout_ms : 0);
  proc_chan_wake(c, r > 0 && p[1].revents);
  if (r < 0 && errno != EINTR) return par_wire_fail(e, "poll failed (%s)", strerror(errno));
  return proc_chan_io(c, r > 0 ? p[0].revents : 0, e);
}
