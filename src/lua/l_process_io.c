/*
 * The process backend, parent side: the I/O loop of one pool worker. run
 * sends the pool's task and loops here until nothing is in flight: the
 * frames that arrive (outcomes, starts, the requests of a task for shared
 * objects), the waits between them, and the death of the worker process,
 * which fails, gives back or sends again what it had.
 */
#define _GNU_SOURCE
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/future.h"
#include "core/pool.h"
#include "core/wait.h"
#include "process/frames.h"
#include "process/ledger.h"
#include "process/pchan.h"
#include "wire/remote.h"
#include "wire/shmvia.h"
#include "wire/wire.h"
#include "lua/l_process_impl.h"

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* ------------------------------------------- shared objects: requests */

/* Sends the reply in c->rbuf (after its frame byte). */
static void send_reply(proc_ctx *c) {
  par_wire_err e;
  unsigned char type = PF_REPLY;
  /* a broken channel: the next wait finds it */
  proc_chan_send(c->chan, &type, 1, c->rbuf.data, c->rbuf.len, &e);
}

/* A request of the running task: served at once, or by a helper thread
 * whose reply send_replies sends later. 0, or -1 on malformed bytes. */
static int serve_request(proc_ctx *c, const unsigned char *p, size_t len) {
  par_wire_err e;
  int r;
  par_buf_reset(&c->rbuf);
  e.msg[0] = '\0';
  r = par_remote_serve(c->remote, c->peer, p, len, &c->rbuf, &e);
  if (r == 1) send_reply(c);
  if (r < 0)     /* the worker is stopped: its task says why, not "exit status 0" */
    snprintf(c->broke, sizeof c->broke, "stopped by this process, which could not serve "
             "a request of its task (%.200s)", e.msg);
  return r < 0 ? -1 : 0;
}

static void send_replies(proc_ctx *c) {
  par_buf_reset(&c->rbuf);
  while (c->chan && par_remote_next_reply(c->remote, c->peer, &c->rbuf) == 1) {
    send_reply(c);
    par_buf_reset(&c->rbuf);
  }
}

/* A task's outcome arrived. */
static void outcome(proc_ctx *c, flight *x, int state, const unsigned char *p, size_t len) {
  par_msg *m = NULL;
  par_wire_err e;
  double took;
  l_process_mark_started(c, x);
  /* before the future finishes: its waiter may submit and shut down at
   * once, and the sweep reads ntasks to tell a ready process */
  c->ntasks++;
  state = state == PAR_DONE ? PAR_DONE : PAR_FAILED;
  if (len == 0) {           /* no outcome to send: as a thread worker's */
    par_future_finish(x->f, state, NULL);
  } else if (par_wire_rebuild(c->peer, p, len, &m, &e) != PAR_WIRE_MESSAGE) {
    par_msg_free(m);
    l_process_fail(c, x->f, e.msg);
  } else {
    par_future_finish(x->f, state, m);
  }
  took = par_now() - x->start;
  c->avg = c->avg < 0 ? took : 0.75 * c->avg + 0.25 * took;
  l_process_resolve(c, x, 1);
}

enum { OUTCOME_GONE = 1, OUTCOME_FATAL };

/* The worker no longer uses these of the objects sent to it: 0, or -1 on
 * a malformed frame. */
static int take_releases(proc_ctx *c, const unsigned char *p, size_t len) {
  uint32_t n, i;
  if (len < 4) return -1;
  n = get32(p);
  p += 4; len -= 4;
  if (len / 16 < n) return -1;
  for (i = 0; i < n; i++, p += 16, len -= 16) {
    uint64_t id, k;
    memcpy(&id, p, 8);
    memcpy(&k, p + 8, 8);
    par_remote_owner_release(c->remote, id, k);
  }
  if (len < 4) return -1;
  n = get32(p);
  return par_shm_via_take_releases(c->shm, p + 4, len - 4, n) < 0 ? -1 : 0;
}

/* Takes one frame: 0, or OUTCOME_GONE / OUTCOME_FATAL on a broken
 * conversation. */
static int take_frame(proc_ctx *c, const unsigned char *fr, size_t len) {
  par_wire_err e;
  flight *x;
  if (len == 0) return OUTCOME_GONE;
  switch (fr[0]) {
    case PF_HELLO:
      if (par_wire_check_hello(fr + 1, len - 1, &e) != 0) {
        snprintf(c->fatal, sizeof c->fatal, "%.590s", e.msg);
        return OUTCOME_FATAL;
      }
      break;
    case PF_STARTED:
      if (len < 5) return OUTCOME_GONE;
      if ((x = l_process_flight_of(c, get32(fr + 1))) != NULL) l_process_mark_started(c, x);
      break;
    case PF_SKIPPED:         /* the sweep resolves it */
      break;
    case PF_DONE:
      if (len < 6 || !(x = l_process_flight_of(c, get32(fr + 2)))) return OUTCOME_GONE;
      outcome(c, x, fr[1], fr + 6, len - 6);
      break;
    case PF_REQUEST:
      if (serve_request(c, fr + 1, len - 1) != 0) return OUTCOME_GONE;
      break;
    case PF_CANCEL:
      par_remote_cancel(c->remote, fr + 1, len - 1);
      break;
    case PF_RELEASE:
      if (take_releases(c, fr + 1, len - 1) != 0) return OUTCOME_GONE;
      break;
    case PF_ERROR: {
      char text[512];
      if (len < 5 || !(x = l_process_flight_of(c, get32(fr + 1)))) return OUTCOME_GONE;
      l_process_mark_started(c, x);
      c->ntasks++;
      snprintf(text, sizeof text, "%.*s", (int)(len - 5), (const char *)fr + 5);
      l_process_fail(c, x->f, text);
      l_process_resolve(c, x, 1);
      break;
    }
    default:
      return OUTCOME_GONE;
  }
  return 0;
}

/* Takes the frames that arrived: 0 when none is left, OUTCOME_GONE /
 * OUTCOME_FATAL on a broken conversation. *closed: the channel closed. */
static int take_frames(proc_ctx *c, int *closed) {
  const unsigned char *fr;
  size_t len;
  par_wire_err e;
  int r;
  while ((r = proc_chan_next(c->chan, &fr, &len, &e)) == 1) {
    int bad = take_frame(c, fr, len);
    if (bad) return bad;
  }
  if (r < 0) *closed = 1;
  return 0;
}

/* Waits for the channel (or the interrupt handler's wake-up) until the
 * deadline (0: none) as a core wait does: a short spin on the ring when
 * the policy says it pays (core/wait.h), then poll, counted as asleep.
 * -1 when the channel failed or closed. */
static int wait_io(proc_ctx *c, double deadline) {
  struct pollfd p[3];
  par_wire_err e;
  int ms = -1, r;
  if (deadline > 0) {
    double left = deadline - par_now();
    ms = left <= 0 ? 0 : (int)ceil(left * 1000);
  }
  /* a frame coming over the socket: only poll sees it come */
  if (ms != 0 && proc_chan_backlog(c->chan) == 0 && !proc_chan_on_socket(c->chan) &&
      par_spin(PAR_WAIT_PROCESS, proc_chan_ready, c->chan, deadline > 0 ? deadline : par_now() + 1))
    ms = 0;
  if (ms != 0 && !proc_chan_sleep(c->chan, 1)) ms = 0;
  p[0].fd = proc_chan_fd(c->chan);
  p[0].events = proc_chan_events(c->chan);
  p[1].fd = c->wake_fd;         /* the worker's bell, the interrupt handler */
  p[1].events = POLLIN;
  p[2].fd = par_remote_owner_fd(c->remote);   /* replies of helper threads */
  p[2].events = POLLIN;
  p[0].revents = p[1].revents = p[2].revents = 0;
  if (ms != 0) par_wait_sleep_begin();
  r = poll(p, 3, ms);
  if (ms != 0) par_wait_sleep_end();
  proc_chan_wake(c->chan, r > 0 && p[1].revents);
  if (r <= 0) return proc_chan_io(c->chan, 0, &e);
  if (p[2].revents) {
    send_replies(c);
    p[0].revents |= POLLOUT & p[0].events;
  }
  return proc_chan_io(c->chan, p[0].revents, &e);
}

static const char *death_text(proc_ctx *c, flight *x, int fatal, const char *why, char *text,
                              size_t size) {
  if (fatal) return c->fatal;
  switch (atomic_load(&x->why_killed)) {
    case KILL_ASKED: return "killed";
    case KILL_TIMEOUT:
      snprintf(text, size, "timeout: the task ran longer than task_timeout (%g s); "
               "its worker process was killed", x->f->timeout);
      break;
    case KILL_NOT_STARTED:
      snprintf(text, size, "timeout: the task did not start within task_timeout (%g s): its "
               "worker process was still starting or running the pool's init, and was killed",
               x->f->timeout);
      break;
    case KILL_SHUTDOWN:
      snprintf(text, size, "interrupted: the pool shut down and the task did not stop within "
               "%g s of its interrupt; its worker process was killed", SHUTDOWN_GRACE);
      break;
    default:
      snprintf(text, size, "worker process died (%s)", why);
  }
  return text;
}

/* The worker process died (or must go: fatal). The task it ran fails;
 * those sent ahead that it never started go back to the pool's queue; the
 * pool's own task, if it never started, goes to the replacement. */
static void on_death(proc_ctx *c, int fatal) {
  char why[400], text[1024];
  par_future *back[PROC_SLOTS], *again = NULL;
  flight *order[PROC_SLOTS];
  size_t nback = 0, n = 0, i, j;
  l_process_finish_process(c, STOP_GRACE, why, sizeof why);
  if (c->broke[0]) {
    snprintf(why, sizeof why, "%s", c->broke);
    c->broke[0] = '\0';
  }
  for (i = 0; i < PROC_SLOTS; i++)
    if (c->fl[i].f) order[n++] = &c->fl[i];
  for (i = 1; i < n; i++)              /* oldest first */
    for (j = i; j > 0 && (int32_t)(order[j]->seq - order[j - 1]->seq) < 0; j--) {
      flight *t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
    }
  for (i = 0; i < n; i++) {
    flight *x = order[i];
    int st = proc_slot_state(c->ledger, x->seq);
    int began = st == SLOT_STARTED || st == SLOT_FINISHED || st == SLOT_KILLED;
    if (!x->claimed && !began) {
      if (par_future_hold(x->f, NULL)) {
        back[nback++] = x->f;
        x->taken = 0;        /* the reference goes with it */
      }
      l_process_resolve(c, x, 1);
      continue;
    }
    if (!x->claimed) l_process_mark_started(c, x);
    /* The pool's task never started on a worker that had run tasks (it
     * died idle), or on a spare that had waited ready (it died waiting,
     * killed as it was taken over): it goes to the replacement, a fresh
     * process. One that dies before its first task fails it, or a worker
     * that cannot start would loop. */
    if (!began && !x->streamed && !fatal && !x->why_killed && (c->ntasks > 0 || c->took_spare))
      continue;
    l_process_fail(c, x->f, death_text(c, x, fatal, why, text, sizeof text));
    l_process_resolve(c, x, 1);
  }
  par_pool_give_back(back, nback);
  /* What is left is the pool's own task, which never started: it goes
   * again, to the replacement. */
  for (i = 0; i < PROC_SLOTS; i++) {
    if (c->fl[i].f) {
      again = c->fl[i].f;
      l_process_set_flight(c, &c->fl[i], NULL);
      c->nflight--;
    }
  }
  if (fatal) return;
  /* no replacement for a pool that is being terminated (its init would
   * only be interrupted in turn); a next task would start one */
  if (!again && par_pool_aborting()) return;
  if (l_process_launch(c, why, sizeof why) != 0) {
    if (again) l_process_fail(c, again, why);
    else { /* the next task says why */ }
    return;
  }
  if (again) l_process_dispatch(c, again, 1);
}

static double earliest(double a, double b) {
  return a == 0 ? b : b == 0 ? a : fmin(a, b);
}

/* While the pool's task waits for its process to start it (a slow start,
 * an init that blocks), a shutdown that cancels must be seen (sweep): it
 * sets a flag and wakes no one, so look every STARTING_POLL seconds once
 * the wait is longer than a normal start. 0: no need. */
#define STARTING_POLL 0.02
static double starting(proc_ctx *c) {
  double now = par_now();
  int i;
  for (i = 0; i < PROC_SLOTS; i++) {
    flight *x = &c->fl[i];
    if (x->f && x->claimed && !x->why_killed &&
        proc_slot_state(c->ledger, x->seq) == SLOT_QUEUED)
      return now - x->start < 5 * STARTING_POLL ? x->start + 5 * STARTING_POLL
                                                : now + STARTING_POLL;
  }
  return 0;
}

/* Runs f (claimed by the pool) and whatever goes ahead of it, until
 * nothing is in flight. */
void l_process_run_flights(proc_ctx *c) {
  if (c->fault) {          /* a helper took a frame that broke the conversation */
    int r = c->fault;
    c->fault = 0;
    on_death(c, r == OUTCOME_FATAL);
  }
  while (c->nflight > 0) {
    int closed = 0, r = take_frames(c, &closed);
    double until;
    if (r != 0 || closed) {
      on_death(c, r == OUTCOME_FATAL);
      continue;
    }
    l_process_sweep(c);
    if (c->nflight == 0) break;
    if (l_process_fill(c) != 0) {
      r = take_frames(c, &closed);
      on_death(c, r == OUTCOME_FATAL);
      continue;
    }
    l_process_keep_spare(c);  /* the slot's first task on: a crash is a take-over */
    until = earliest(earliest(l_process_expire(c), l_process_rebalance(c)), starting(c));
    if (wait_io(c, until) != 0) {
      /* closed: the frames that came first count, then the death */
      r = take_frames(c, &closed);
      on_death(c, r == OUTCOME_FATAL);
    }
  }
  if (c->chan && c->cfg->w.max_tasks && c->ntasks >= c->cfg->w.max_tasks) {
    char why[400];
    l_process_finish_process(c, STOP_GRACE, NULL, 0);
    if (l_process_launch(c, why, sizeof why) != 0) { /* the next task says why */ }
  }
  l_process_keep_spare(c);
}


/* ------------------------------------------------ a waiter's help */

/* What a helper takes: frames about its one task. The rest (a request of
 * the task, a frame too large for the ring) wakes the pool worker. */
static int helpable(unsigned char kind) {
  return kind == PF_DONE || kind == PF_ERROR || kind == PF_STARTED || kind == PF_RELEASE ||
         kind == PF_HELLO;
}

/* On a thread waiting for f (pool.h: ops->help), f sent by a submit's
 * offer and alone in flight, the pool worker parked: takes f's outcome
 * from the ring here, spinning while the policy says it pays, then asleep
 * on this side's futex word, which the worker process wakes without
 * waking the pool worker (proc_chan_quiet). 1 once f ended here; 0 to
 * give f back to the pool worker (its thread woke, a frame it must take,
 * the deadline), with nothing of f's lost: what was taken here counts. */
int l_process_help(void *ctx, par_future *f, double deadline, _Atomic int *stop) {
  proc_ctx *c = (proc_ctx *)ctx;
  const unsigned char *fr;
  size_t len;
  par_wire_err e;
  int slept;
  if (!atomic_load(&c->parked) || !c->chan || c->nflight != 1 || c->fault ||
      c->cfg->w.max_tasks || !l_process_offered_flight(c, f))
    return 0;
  proc_chan_quiet(c->chan);
  for (;;) {
    while (proc_chan_peek(c->chan, &fr, &len)) {
      if (len == 0 || !helpable(fr[0])) return 0;
      if (proc_chan_next(c->chan, &fr, &len, &e) != 1) return 0;
      if ((c->fault = take_frame(c, fr, len)) != 0) return 0;
      if (c->nflight == 0) {
        l_process_keep_spare(c);
        proc_chan_idle(c->chan);   /* the pool worker's park again */
        return 1;
      }
    }
    /* a marker whose frame comes over the socket: the pool worker reads it */
    if (proc_chan_ready(c->chan) || atomic_load(stop) || par_now() >= deadline) return 0;
    if (par_spin(PAR_WAIT_PROCESS, proc_chan_ready, c->chan, deadline)) continue;
    par_wait_sleep_begin();
    slept = proc_chan_doze(c->chan, deadline, stop);
    par_wait_sleep_end();
    if (slept < 0) return 0;
  }
}

/* The pool worker woke while a waiter helps: the helper returns soon. */
void l_process_stop_help(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  if (c->chan) proc_chan_nudge(c->chan);
}
