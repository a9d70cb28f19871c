/*
 * The process backend, parent side: par_pool_ops whose context is one
 * worker process (l_process.h). This file is the pool's view of a slot:
 * its start and stop (what it needs made, what it frees), run, the park
 * between tasks and a submit's offer, interrupt and kill. What the slot
 * does with its process is in the other l_process_*.c files
 * (l_process_impl.h says which).
 */
#define _GNU_SOURCE
#include "lua/l_process.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "codec/proto.h"
#include "core/clock.h"
#include "core/future.h"
#include "core/park.h"
#include "core/pool.h"
#include "core/wait.h"
#include "process/pchan.h"
#include "wire/objects.h"
#include "wire/remote.h"
#include "wire/shmvia.h"
#include "wire/wire.h"
#include "lua/l_process_impl.h"

int process_can_send(const par_object *o) {
  return o->type == &par_proto_type || par_remote_claims(o);
}

static int prepare(proc_ctx *c);

/* The flight of f, if a submit sent it already (process_offer). */
flight *l_process_offered_flight(proc_ctx *c, par_future *f) {
  int i;
  for (i = 0; i < PROC_SLOTS; i++)
    if (c->fl[i].f == f) return &c->fl[i];
  return NULL;
}

static void process_run(void *ctx, par_future *f) {
  proc_ctx *c = (proc_ctx *)ctx;
  char why[400];
  if (!c) { par_future_finish(f, PAR_FAILED, NULL); return; }
  if (atomic_load(&f->state) != PAR_RUNNING) return;   /* an offer failed it */
  if (l_process_offered_flight(c, f)) {
    l_process_run_flights(c);
    atomic_store(&c->idle_gone, 0);
    return;
  }
  if (c->unprepared) prepare(c);
  if (c->fatal[0]) { l_process_fail(c, f, c->fatal); return; }
  /* A worker that died while idle (the OOM killer, a kill from outside)
   * is found when the task is sent: it never started there, so it goes
   * to the replacement. */
  if (!c->chan && l_process_launch(c, why, sizeof why) != 0) { l_process_fail(c, f, why); return; }
  c->abort_at = 0;
  l_process_dispatch(c, f, 1);
  l_process_run_flights(c);
  atomic_store(&c->idle_gone, 0);
}

/* The pool worker parks here between tasks (pool.h: ops->park): in poll
 * on wake_fd, which the pool's unpark writes and the worker process
 * writes with its next frame (proc_chan_idle), so that the outcome of a
 * task a submit sent (process_offer) wakes this thread once, when it is
 * there; and on the socket, which closes when the worker dies with that
 * task. A socket that closes with nothing sent is a worker that died
 * idle: the next task finds it (process_run); until then offers are
 * refused and the socket is left out, so that the poll does not return
 * at once for ever. */
static void process_park(void *ctx, _Atomic int *word, int seq) {
  proc_ctx *c = (proc_ctx *)ctx;
  struct pollfd p[2];
  int n = 1, r;
  uint64_t v;
  if (c->wake_fd < 0) {        /* no eventfd: a short timed park */
    par_park_wait(word, seq, par_now() + 0.001);
    return;
  }
  p[0].fd = c->wake_fd;
  p[0].events = POLLIN;
  if (c->chan) {
    proc_chan_idle(c->chan);
    if (!atomic_load(&c->idle_gone)) {
      p[1].fd = proc_chan_fd(c->chan);
      p[1].events = POLLIN;
      n = 2;
    }
  }
  p[0].revents = p[1].revents = 0;
  /* after proc_chan_idle: a frame published before it is seen by whoever
   * handed a task over, who bumped the word first */
  if (atomic_load(word) == seq) {
    par_wait_sleep_begin();
    if (c->chan) atomic_store(&c->parked, 1);   /* after idle: its reading is done */
    r = poll(p, (nfds_t)n, -1);
    atomic_store(&c->parked, 0);
    par_wait_sleep_end();
    /* seq_cst, then the word: a submit that saw no idle_gone bumped the
     * word before, and this thread looks at it again before it sleeps */
    if (r > 0 && n == 2 && p[1].revents) atomic_store(&c->idle_gone, 1);
  }
  if (c->chan) proc_chan_wake(c->chan, 1);
  else if (read(c->wake_fd, &v, sizeof v) < 0) { /* drained already */ }
}

static void process_unpark(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  uint64_t one = 1;
  if (c->wake_fd >= 0 && write(c->wake_fd, &one, sizeof one) < 0) { /* readable already */ }
}

/* On the submitting thread (pool.h: ops->offer), this context handed
 * over while its pool worker is parked: sends f, claimed, to the worker
 * process at once when nothing else is in flight and the task goes whole,
 * so that the pool worker is woken once, by the outcome, instead of once
 * to send and once more for the outcome. 1 if sent. */
static int process_offer(void *ctx, par_future *f) {
  proc_ctx *c = (proc_ctx *)ctx;
  /* a task too large for the ring goes over the socket, which the pool
   * worker writes as it drains: it is woken to send it */
  /* task_timeout is timed by the pool worker, awake */
  if (c->unprepared || c->fatal[0] || !c->chan || c->nflight > 0 || f->segmented || f->timeout > 0 ||
      !f->task || f->task->rest || f->task->len > PROC_RING_FRAME / 2 ||
      atomic_load(&c->idle_gone) || proc_chan_backlog(c->chan) > 0)
    return 0;
  c->abort_at = 0;
  /* -1: the channel failed, the flight stays; the socket's close wakes
   * the pool worker, which finds the death */
  l_process_dispatch(c, f, 1);
  /* failed here, or bytes left for the socket: the pool worker finishes up */
  if (!l_process_offered_flight(c, f) || proc_chan_backlog(c->chan) > 0) return 0;
  /* the slot's first task may come this way and its worker thread stay
   * parked (a task that never ends): its spare starts now all the same */
  l_process_keep_spare(c);
  return 1;
}

/* A signal handler on the owning thread: the worker stops the task at its
 * next Lua instruction (the same interrupt as a thread worker's), and the
 * owning thread wakes to time the shutdown's grace. */
void l_process_interrupt(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  union sigval v;
  uint64_t one = 1;
  int saved = errno;
  proc_ledger *l = c->ledger;
  v.sival_int = atomic_load(&c->running_seq);
  /* the ledger first: the worker reads it when the signal comes, or when
   * the task begins if the signal was lost (proc_slot.asked) */
  if (l && v.sival_int > 0) atomic_store(&proc_slot_of(l, (uint32_t)v.sival_int)->asked, (uint32_t)v.sival_int);
  if (c->pid > 0) sigqueue(c->pid, SIGURG, v);
  if (write(c->wake_fd, &one, sizeof one) < 0) { /* already readable */ }
  errno = saved;
}

static void process_clear_interrupt(void *ctx) { (void)ctx; }

static void process_kill(void *ctx, par_future *f) {
  proc_ctx *c = (proc_ctx *)ctx;
  int i;
  pthread_mutex_lock(&c->pid_mu);
  for (i = 0; i < PROC_SLOTS; i++)
    if (c->fl[i].f == f) l_process_kill_flight(c, &c->fl[i], KILL_ASKED);
  pthread_mutex_unlock(&c->pid_mu);
}

static int open_codec(lua_State *L) {
  codec_open(L);
  return 0;
}

/* What this side needs to run worker processes, made here or, for what
 * could not be made (descriptors or memory short: a pool made under a low
 * ulimit -n), again by the next task. 0, or -1 with c->unprepared and
 * c->fatal saying why. */
static int prepare(proc_ctx *c) {
  int err = 0;
  const char *what = NULL;
  if (!c->L) {
    c->L = luaL_newstate();
    if (c->L) {
      lua_pushcfunction(c->L, open_codec);
      if (lua_pcall(c->L, 0, 0, 0) != LUA_OK) { lua_close(c->L); c->L = NULL; }
    }
    if (!c->L) what = "not enough memory";
  }
  if (!c->peer) {
    if (!c->remote && !(c->remote = par_remote_owner_new((uint64_t)getpid()))) err = errno;
    if (c->remote) par_remote_owner_limit(c->remote, c->cfg->w.memory_limit);
    if (!c->shm && !(c->shm = par_shm_via_new(0)) && !err) err = errno;
    if (c->remote && c->shm) {
      par_wire_objects hooks;
      c->vias.n = 0;
      par_remote_owner_attach(&c->vias, c->remote);
      par_shm_via_attach(c->shm, &c->vias);
      par_wire_vias_hooks(&c->vias, &hooks);
      if (!(c->peer = par_wire_peer_new(&hooks))) what = "not enough memory";
    }
  }
  if (!c->ledger && !(c->ledger = proc_ledger_new(&c->ledger_fd)) && !err) err = errno;
  if (c->wake_fd < 0 && (c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 && !err) err = errno;
  if (c->bell_fd < 0 && (c->bell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 && !err) err = errno;
  c->unprepared = what || err || !c->peer || !c->ledger || c->wake_fd < 0 || c->bell_fd < 0;
  if (!c->unprepared) { c->fatal[0] = '\0'; return 0; }
  if (what) snprintf(c->fatal, sizeof c->fatal, "%s", what);
  else snprintf(c->fatal, sizeof c->fatal, "cannot start a worker process (%s)",
                strerror(err ? err : ENOMEM));
  return -1;
}

static void *process_start(void *ud, int index, _Atomic int *interrupted) {
  proc_ctx *c = calloc(1, sizeof *c);
  char why[400];
  if (!c) return NULL;
  c->interrupted = interrupted;
  c->cfg = (proc_config *)ud;
  c->index = index;
  c->avg = -1;
  c->ledger_fd = c->wake_fd = c->bell_fd = -1;
  c->sp.ledger_fd = c->sp.bell_fd = -1;
  pthread_mutex_init(&c->pid_mu, NULL);
  par_buf_init(&c->out);
  par_buf_init(&c->rbuf);
  if (prepare(c) != 0) return c;
  /* A launch that fails is tried again by the next task. */
  if (l_process_launch(c, why, sizeof why) != 0) { /* idem */ }
  return c;
}

static void process_stop(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  double grace = STOP_GRACE;
  /* An init still running does not see the channel close: no task will
   * run after it, so it is interrupted (task 0) at any shutdown; one that
   * ignores it (C code) is killed after the grace. */
  l_process_interrupt_init(c);
  if (par_pool_aborting()) grace = SHUTDOWN_GRACE;
  l_process_finish_process(c, grace, NULL, 0);
  par_remote_owner_free(c->remote);
  par_buf_free(&c->rbuf);
  if (c->peer) par_wire_peer_free(c->peer);
  par_shm_via_free(c->shm);
  if (c->L) lua_close(c->L);
  l_process_drop_spare(c);
  proc_spawner_free(c->spawner);     /* the processes it started are reaped */
  proc_ledger_unmap(c->ledger);
  proc_ledger_unmap(c->sp.ledger);
  if (c->ledger_fd >= 0) close(c->ledger_fd);
  if (c->sp.ledger_fd >= 0) close(c->sp.ledger_fd);
  if (c->sp.bell_fd >= 0) close(c->sp.bell_fd);
  if (c->wake_fd >= 0) close(c->wake_fd);
  if (c->bell_fd >= 0) close(c->bell_fd);
  par_buf_free(&c->out);
  pthread_mutex_destroy(&c->pid_mu);
  free(c);
}

static void process_free_config(void *ud) {
  worker_config_clear(&((proc_config *)ud)->w);
  free(ud);
}

const par_pool_ops process_ops = {
  .start = process_start,
  .run = process_run,
  .interrupt = l_process_interrupt,
  .clear_interrupt = process_clear_interrupt,
  .stop = process_stop,
  .free_ud = process_free_config,
  .kill = process_kill,
  .park = process_park,
  .unpark = process_unpark,
  .offer = process_offer,
  .help = l_process_help,
  .stop_help = l_process_stop_help,
};
