/*
 * The process backend, parent side: par_pool_ops whose context is one
 * worker process (l_process.h).
 *
 * Threads: everything here runs on the pool worker thread that owns the
 * process (its I/O thread), except process_interrupt (a signal handler on
 * that same thread), the recall of a task sent ahead (any thread that
 * cancels it, with the future's mutex held) and process_kill (any thread,
 * with the pool worker's mutex held while the task it means is its
 * current one). `pid_mu` guards `pid` between a kill and the reaping of
 * the process (the pid is cleared under it before waitpid, so a kill never
 * reaches a pid the kernel gave to someone else) and the flights' futures
 * that a kill looks up.
 *
 * Tasks in flight. run gets one task claimed by the pool and sends it;
 * while tasks run it takes more from the pool's queue (par_pool_take_ahead)
 * and sends them ahead, up to PROC_SLOTS and as many as fit in AHEAD_BUDGET
 * seconds of recent task time, so that the worker finds its next task
 * waiting. A task sent ahead stays pending (cancellable) until the
 * worker's ledger (process/ledger.h) says it started; the recall of a
 * cancel races the worker's start on one word of shared memory. When the
 * worker dies, the ledger says which task it was running (that one fails)
 * and which never started (those go back to the head of the pool's queue).
 * run returns once nothing is in flight.
 *
 * Spare. Starting a process (posix_spawn, the loader, a Lua state, the
 * facade) takes milliseconds; a slot that has been given a task keeps the
 * next process started ahead, configured but without init, which runs
 * when it takes over (objects in init_args then go to the process that
 * uses them). So the first crash of a pool is a take-over too; a slot that
 * never runs a task starts no spare.
 */
#define _GNU_SOURCE
#include "lua/l_process.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "codec/proto.h"
#include "core/clock.h"
#include "core/future.h"
#include "core/park.h"
#include "core/pool.h"
#include "core/queue.h"
#include "core/wait.h"
#include "process/frames.h"
#include "process/ledger.h"
#include "process/pchan.h"
#include "process/spawn.h"
#include "wire/objects.h"
#include "wire/remote.h"
#include "wire/shmvia.h"
#include "wire/wire.h"

/* How long a worker that was told to stop, or whose channel closed, may
 * take to exit before it is killed. */
#define STOP_GRACE 2.0

/* How long a task may ignore the interrupt of a shutdown that interrupts
 * (pool:terminate(), a collected pool, the end of the script) before its
 * worker process is killed: C code that blocks signals or never returns
 * to Lua must not hang the parent. */
#define SHUTDOWN_GRACE 1.0

/* Seconds of recent task time a worker may have waiting ahead of it: short
 * tasks go several at a time, long ones one at a time (a task sent ahead
 * cannot move to a worker that turns idle). */
#define AHEAD_BUDGET 0.002

/* How long a task may run with others waiting behind it on its worker
 * while another worker idles: then they go back to the pool's queue. */
#define STEAL_AFTER (2 * AHEAD_BUDGET)

typedef struct proc_ctx proc_ctx;

/* A worker process started ahead, configured and idle, that takes over
 * when the current one dies or is recycled; also what the current process
 * uses of the same kind. */
typedef struct spare {
  pid_t pid;                 /* 0: none */
  proc_spawning *spawning;   /* its posix_spawn, still on its thread: pid not known yet */
  proc_chan *chan;
  proc_ledger *ledger;       /* its ledger and rings (kept for the next one) */
  int ledger_fd;
  int bell_fd;               /* its eventfd */
} spare;

/* A task sent to the worker process and not yet resolved. */
typedef struct flight {
  par_recall r;              /* first: the future's recall while held ahead */
  proc_ctx *c;
  par_future *f;             /* NULL: this slot has no task (pid_mu to write) */
  uint32_t seq;
  int claimed;               /* running as far as the pool knows */
  int taken;                 /* taken ahead: this side holds a reference */
  int streamed;              /* its arguments went in segments: cannot go again */
  atomic_int why_killed;     /* KILL_*: this side killed the worker for it (written
                                under pid_mu by any thread, read by the I/O thread) */
  double start;              /* when it started (par_now's clock) */
} flight;

enum { KILL_NONE, KILL_ASKED, KILL_TIMEOUT, KILL_NOT_STARTED, KILL_SHUTDOWN };

struct proc_ctx {
  proc_config *cfg;
  int index;
  lua_State *L;              /* encodes the failures made on this side */
  par_wire_vias vias;        /* how shared objects cross (wire/objects.h) */
  par_remote_owner *remote;  /* objects sent to the worker, served here */
  par_buf rbuf;              /* a reply being built */
  par_shm_via *shm;          /* what was sent to the process through shared memory */
  par_wire_peer *peer;
  proc_chan *chan;           /* NULL while no process runs */
  pthread_mutex_t pid_mu;
  pid_t pid;                 /* 0: none (pid_mu; read bare by this thread) */
  proc_ledger *ledger;
  int ledger_fd;
  int wake_fd;               /* an eventfd the interrupt handler and the worker write */
  int bell_fd;               /* the worker's eventfd: this side writes it */
  spare sp;                  /* a process ready to take over, once a task came */
  proc_spawner *spawner;     /* starts the spares (outlives every process it started) */
  long launches;             /* processes this slot has started */
  flight fl[PROC_SLOTS];     /* by task number % PROC_SLOTS */
  int nflight;
  long ntasks;               /* tasks run by the current process */
  long sent;                 /* tasks sent to it (less those recalled) */
  double avg;                /* seconds a task took lately; < 0: unknown */
  double abort_at;           /* when a shutdown's interrupt was seen; 0: none */
  double init_again;      /* when to send the init's interrupt once more */
  uint32_t seq;              /* the number of the task sent last (never 0) */
  atomic_int running_seq;    /* the task an interrupt means (lock-free: the signal
                                handler reads it; a submit's offer writes it) */
  _Atomic int *interrupted;  /* the pool worker's flag: an interrupt is asked */
  par_buf out;               /* a frame being built */
  char fatal[600];           /* set: no worker can run here; tasks fail with it */
  int unprepared;            /* fatal only until prepare() succeeds */
  int took_spare;            /* the process was a spare, ready before it took over */
  atomic_int idle_gone;      /* parked, this side saw the socket close: no offer */
  char broke[300];           /* why this side stopped the conversation, if it did */
};

/* ------------------------------------------------------------ failures */

typedef struct failure { const char *text; par_msg *m; } failure;

static int encode_failure(lua_State *L) {
  failure *fl = (failure *)lua_touserdata(L, 1);
  lua_pushstring(L, fl->text);
  lua_pushliteral(L, "");
  lua_pushnil(L);
  fl->m = codec_encode(L, 2, 3, "error", 1);
  return 0;
}

/* Fails f with the error message text (no traceback: none exists here). */
static void fail(proc_ctx *c, par_future *f, const char *text) {
  failure fl = { text, NULL };
  if (c->L) {
    int top = lua_gettop(c->L);
    lua_pushcfunction(c->L, encode_failure);
    lua_pushlightuserdata(c->L, &fl);
    if (lua_pcall(c->L, 1, 0, 0) != LUA_OK) fl.m = NULL;
    lua_settop(c->L, top);
  }
  par_future_finish(f, PAR_FAILED, fl.m);
}

/* -------------------------------------------------------------- frames */

static int put(par_buf *b, const void *p, size_t n) {
  if (!par_buf_reserve(b, n)) return 0;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

static int send_out(proc_ctx *c, par_wire_err *e) {
  return proc_chan_send(c->chan, NULL, 0, c->out.data, c->out.len, e);
}

static void start_frame(proc_ctx *c, unsigned char type) {
  par_buf_reset(&c->out);
  put(&c->out, &type, 1);
}

static int send_config(proc_ctx *c, proc_chan *ch, par_wire_err *e) {
  proc_config *cfg = c->cfg;
  uint64_t limit = cfg->w.memory_limit;
  uint32_t index = (uint32_t)c->index;
  uint32_t np = cfg->w.path ? (uint32_t)strlen(cfg->w.path) : 0;
  uint32_t nc = cfg->w.cpath ? (uint32_t)strlen(cfg->w.cpath) : 0;
  unsigned char has_init = cfg->w.init != NULL;
  start_frame(c, PF_HELLO);
  if (par_wire_hello(&c->out) != 0 ||
      proc_chan_send(ch, NULL, 0, c->out.data, c->out.len, e) != 0)
    return -1;
  start_frame(c, PF_CONFIG);
  if (!put(&c->out, &limit, 8) || !put(&c->out, &index, 4) || !put(&c->out, &np, 4) ||
      !put(&c->out, &nc, 4) || !put(&c->out, cfg->w.path, np) || !put(&c->out, cfg->w.cpath, nc) ||
      !put(&c->out, &has_init, 1)) {
    snprintf(e->msg, sizeof e->msg, "not enough memory");
    return -1;
  }
  return proc_chan_send(ch, NULL, 0, c->out.data, c->out.len, e);
}

/* The init call, to the process that takes over (c->peer was reset). */
static int send_init(proc_ctx *c, par_wire_err *e) {
  if (!c->cfg->w.init) return 0;
  start_frame(c, PF_INIT);
  if (par_wire_flatten(c->peer, c->cfg->w.init, &c->out, NULL, e) != 0) return -1;
  return send_out(c, e);
}

int process_can_send(const par_object *o) {
  return o->type == &par_proto_type || par_remote_claims(o);
}

/* ----------------------------------------------------- the worker's life */

/* Starts a worker process into c->sp and sends it its configuration
 * (its state gets ready; init waits for the take-over): 0, or -1 with why.
 * async: posix_spawn runs on a thread of its own (spare_pid joins it). */
static int spawn_spare(proc_ctx *c, int async, char *why, size_t size) {
  spare *s = &c->sp;
  int fd, give[PROC_GIVE_FDS];
  par_wire_err e;
  pid_t pid = 0;
  if (!s->ledger && !(s->ledger = proc_ledger_new(&s->ledger_fd))) goto failed;
  if (s->bell_fd < 0 && (s->bell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) goto failed;
  give[0] = s->ledger_fd;
  give[1] = s->bell_fd;
  give[2] = c->wake_fd;
  memset(s->ledger, 0, sizeof *s->ledger);      /* the process before is reaped */
  if (async) {
    if (!c->spawner && !(c->spawner = proc_spawner_new())) pid = -1;
    else if (!(s->spawning = proc_spawn_begin(c->spawner, c->cfg->exe, &fd, give))) pid = -1;
  } else {
    pid = proc_spawn(c->cfg->exe, &fd, give);
  }
  if (pid < 0) {
    snprintf(why, size, "cannot start a worker process (%.200s: %s)", c->cfg->exe, strerror(errno));
    return -1;
  }
  s->chan = proc_chan_new(s->ledger, PROC_PARENT, fd, c->wake_fd, s->bell_fd);
  if (!s->chan) {
    close(fd);
    if (s->spawning) pid = proc_spawn_end(s->spawning);
    s->spawning = NULL;
    if (pid > 0) proc_reap(pid, 0, NULL, 0);
    snprintf(why, size, "cannot start a worker process (not enough memory)");
    return -1;
  }
  s->pid = pid;
  c->launches++;
  /* A channel broken at once: the next task finds the process gone. (The
   * frames wait in the ring and the socket until the process reads them.) */
  if (send_config(c, s->chan, &e) != 0) { /* idem */ }
  return 0;
failed:
  snprintf(why, size, "cannot start a worker process (%s)", strerror(errno));
  return -1;
}

/* The spare's pid once its spawn is done (0: none, or its spawn failed). */
static pid_t spare_pid(proc_ctx *c) {
  if (c->sp.spawning) {
    pid_t pid = proc_spawn_end(c->sp.spawning);
    c->sp.spawning = NULL;
    if (pid < 0) {
      proc_chan_free(c->sp.chan);     /* closes the socket: the child never came */
      c->sp.chan = NULL;
      pid = 0;
    }
    c->sp.pid = pid;
  }
  return c->sp.pid;
}

/* Ends the spare (it never ran anything of the pool's). */
static void drop_spare(proc_ctx *c) {
  pid_t pid = spare_pid(c);
  if (c->sp.chan) proc_chan_free(c->sp.chan);
  c->sp.chan = NULL;
  if (pid > 0) proc_reap(pid, 0, NULL, 0);
  c->sp.pid = 0;
}

/* Starts a worker process, the spare if one is ready: 0, or -1 with why. */
static int launch(proc_ctx *c, char *why, size_t size) {
  par_wire_err e;
  proc_ledger *l;
  int fd;
  int ready;
  if (spare_pid(c) > 0 && waitpid(c->sp.pid, NULL, WNOHANG) != 0) {
    c->sp.pid = 0;                 /* it died waiting (or is not ours) */
    drop_spare(c);
  }
  /* A spare killed just now may not look dead yet: see on_death. */
  ready = c->sp.pid > 0;
  if (c->sp.pid <= 0 && spawn_spare(c, 0, why, size) != 0) return -1;
  /* The spare takes over; the resources of the process before (reaped)
   * are kept for the next spare. */
  pthread_mutex_lock(&c->pid_mu);
  c->pid = c->sp.pid;
  l = c->ledger; c->ledger = c->sp.ledger; c->sp.ledger = l;
  pthread_mutex_unlock(&c->pid_mu);
  if (c->shm) par_shm_via_peer(c->shm, (uint32_t)c->pid);
  c->sp.pid = 0;
  c->chan = c->sp.chan;
  c->sp.chan = NULL;
  fd = c->ledger_fd; c->ledger_fd = c->sp.ledger_fd; c->sp.ledger_fd = fd;
  fd = c->bell_fd; c->bell_fd = c->sp.bell_fd; c->sp.bell_fd = fd;
  par_wire_peer_reset(c->peer);
  c->ntasks = 0;
  c->took_spare = ready;
  c->sent = 0;
  if (send_init(c, &e) != 0) {
    /* The channel broke at once: the next task finds the process gone. */
    snprintf(why, size, "%.300s", e.msg);
  }
  return 0;
}

/* A slot that runs tasks keeps a spare ready, so that a replacement (a
 * crash, a kill, max_tasks_per_worker), the first one included, does not
 * wait for a process to start. Started once the slot has a task, not with
 * the pool (a pool that never runs a task starts no more than its
 * workers); posix_spawn runs on a thread of its own, as it holds its
 * caller until the exec (about a millisecond), which a result would wait
 * for. */
static void keep_spare(proc_ctx *c) {
  char why[400];
  if (c->sp.pid <= 0 && !c->sp.spawning && c->chan && !par_pool_aborting())
    if (spawn_spare(c, 1, why, sizeof why) != 0) { /* a launch starts one then */ }
}

/* Ends the worker process (closing the channel tells it to stop; after
 * `grace` seconds it is killed) and describes how it ended. */
static void finish_process(proc_ctx *c, double grace, char *why, size_t size) {
  pid_t pid;
  pthread_mutex_lock(&c->pid_mu);
  pid = c->pid;
  c->pid = 0;
  pthread_mutex_unlock(&c->pid_mu);
  if (c->chan) proc_chan_free(c->chan);
  c->chan = NULL;
  proc_reap(pid, grace, why, size);
  /* what it held is released, what it was waiting for given back */
  par_remote_owner_reset(c->remote);
  /* Its locks free, what it was sent released: the process is gone. */
  if (c->shm) par_shm_via_gone(c->shm, (uint32_t)pid);
}

/* ------------------------------------------------------------- flights */

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static flight *flight_of(proc_ctx *c, uint32_t seq) {
  flight *x = &c->fl[seq % PROC_SLOTS];
  return x->f && x->seq == seq ? x : NULL;
}

static void set_flight(proc_ctx *c, flight *x, par_future *f) {
  pthread_mutex_lock(&c->pid_mu);
  x->f = f;
  pthread_mutex_unlock(&c->pid_mu);
}

/* Done with x: its future finished, was cancelled or went back. */
static void resolve(proc_ctx *c, flight *x, int release) {
  par_future *f = x->f;
  set_flight(c, x, NULL);
  c->nflight--;
  if (x->claimed) par_msg_free(par_future_take_task(f));
  else if (atomic_load(&f->state) != PAR_PENDING) par_future_drop_task(f);   /* cancelled */
  if (release && x->taken) par_object_release(&f->hdr);
}

/* A cancel of a task sent ahead (any thread, the future's mutex held). */
static int recall_flight(par_recall *r) {
  flight *x = (flight *)r;
  return proc_slot_move(x->c->ledger, x->seq, SLOT_QUEUED, SLOT_CANCELLED);
}

/* When x started, on par_now's clock (the ledger's, once the worker set it). */
static double start_of(proc_ctx *c, flight *x) {
  int64_t ns = atomic_load(&proc_slot_of(c->ledger, x->seq)->start_ns);
  return ns > 0 && proc_slot_state(c->ledger, x->seq) != SLOT_QUEUED ? (double)ns * 1e-9 : x->start;
}

/* The worker started x: the pool learns it runs (kill and interrupt now
 * reach it). A cancel can no longer win: the ledger refuses its recall. */
static void process_interrupt(void *ctx);

static void mark_started(proc_ctx *c, flight *x) {
  x->start = start_of(c, x);
  if (x->claimed) return;
  par_future_claim(x->f);
  par_future_hold(x->f, NULL);
  x->claimed = 1;
  /* The pool's current task first (an interrupt for the one before is
   * spent from here on), then the number the interrupt handler sends: an
   * interrupt of the new task that came in between reached the worker
   * with the old number, which it ignores, so it goes again. */
  par_pool_now_running(x->f);
  atomic_store(&c->running_seq, (int)x->seq);
  if (atomic_load(c->interrupted)) process_interrupt(c);
}

/* Kills the worker for x if x still runs there (pid_mu held): 1 if so.
 * The ledger decides against the worker finishing x at the same moment,
 * so the kill never reaches the task after it. */
static int kill_flight(proc_ctx *c, flight *x, int why) {
  if (c->pid <= 0) return 0;
  if (!proc_slot_move(c->ledger, x->seq, SLOT_STARTED, SLOT_KILLED) &&
      !proc_slot_move(c->ledger, x->seq, SLOT_QUEUED, SLOT_KILLED))
    return 0;
  x->why_killed = why;
  kill(c->pid, SIGKILL);
  return 1;
}

/* Lets the worker free what it made and sent here that nobody here uses
 * any more (with a task: the worker reads it before the task). 0, or -1
 * when the channel failed. */
static int send_releases(proc_ctx *c, par_wire_err *e) {
  uint32_t none = 0, n;
  size_t at;
  int r;
  if (!c->shm) return 0;
  start_frame(c, PF_RELEASE);
  put(&c->out, &none, 4);
  at = c->out.len;
  put(&c->out, &none, 4);
  if (c->out.len != at + 4) return 0;
  r = par_shm_via_releases(c->shm, &c->out);
  if (r <= 0) return 0;
  n = (uint32_t)r;
  memcpy(c->out.data + at, &n, 4);
  return send_out(c, e);
}

/* Sends x's task, with the rest of its segments if it went in segments:
 * 0; 1 when the task cannot leave this process (e says why; the worker
 * is fine); -1 when the channel failed (the worker is gone). */
static int send_task(proc_ctx *c, flight *x, par_wire_err *e) {
  par_future *f = x->f;
  unsigned char kind = (unsigned char)f->kind;
  unsigned char announce = !x->claimed || f->timeout > 0;   /* say when it starts */
  uint32_t stream = 0;
  par_msg *task = f->task;
  int rc = 0;
  if (send_releases(c, e) != 0) return -1;
  start_frame(c, PF_TASK);
  put(&c->out, &kind, 1);
  put(&c->out, &x->seq, 4);
  put(&c->out, &announce, 1);
  if (c->cfg->w.memory_limit && !task->rest && task->len > c->cfg->w.memory_limit) {
    /* Decoded, it could not fit the worker's state; and past memory_limit
     * + PROCESS_OVERHEAD the process could not even buffer the frame.
     * (Before flattening, which marks what it sends as sent.) */
    snprintf(e->msg, sizeof e->msg, "not enough memory: the task's arguments take %zu bytes, "
             "more than memory_limit (%zu)", task->len, c->cfg->w.memory_limit);
    return 1;
  }
  if (par_wire_flatten(c->peer, task, &c->out, &stream, e) != 0) return 1;
  if (send_out(c, e) != 0) return -1;
  if (task->rest) {
    par_queue *q = (par_queue *)task->rest;
    x->streamed = 1;           /* its segments are spent: it cannot go again */
    for (;;) {
      par_msg *seg = NULL;
      int st = par_queue_pop(q, &seg, par_now() + 3600);
      if (st == PAR_TIMEOUT) continue;
      start_frame(c, PF_MORE);
      if (st != PAR_OK) {
        if (par_wire_flatten_end(c->peer, stream, &c->out, e) != 0 || send_out(c, e) != 0) rc = -1;
        break;
      }
      rc = par_wire_flatten_segment(c->peer, stream, seg, &c->out, e);
      par_msg_free(seg);
      if (rc != 0 || send_out(c, e) != 0) { rc = -1; break; }
      if (proc_chan_wait(c->chan, 1, 0, e) != 0) { rc = -1; break; }
    }
  }
  return rc;
}

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

/* Sends f as the next task; claimed: the pool's task (run's), else one
 * taken ahead. -1 when the channel failed (f stays in flight: the death
 * of the worker decides), else 0. */
static int dispatch(proc_ctx *c, par_future *f, int claimed) {
  uint32_t seq = c->seq % 0x7fffffffu + 1;
  flight *x = &c->fl[seq % PROC_SLOTS];
  proc_slot *sl = proc_slot_of(c->ledger, seq);
  par_wire_err e;
  int rc;
  atomic_store(&sl->start_ns, 0);
  atomic_store(&sl->word, proc_slot_word(seq, SLOT_QUEUED));
  x->r.recall = recall_flight;
  x->c = c;
  x->seq = seq;
  x->claimed = claimed;
  x->taken = !claimed;
  x->streamed = 0;
  x->why_killed = KILL_NONE;
  x->start = par_now();
  if (!claimed && !par_future_hold(f, &x->r)) {   /* cancelled on the way */
    par_object_release(&f->hdr);
    return 0;
  }
  c->seq = seq;
  if (claimed) atomic_store(&c->running_seq, (int)seq);
  set_flight(c, x, f);
  c->nflight++;
  c->sent++;
  rc = send_task(c, x, &e);
  if (rc == 1) {
    /* It cannot leave this process: it fails, as it would anywhere. */
    atomic_store(&sl->word, 0);
    c->sent--;
    if (!claimed) {
      int mine = par_future_hold(f, NULL) && par_future_claim(f);
      if (mine) par_pool_count_started();
      x->claimed = mine;
      if (!mine) { resolve(c, x, 1); return 0; }
    }
    fail(c, f, e.msg);
    resolve(c, x, 1);
    return 0;
  }
  return rc < 0 ? -1 : 0;
}

/* The task the worker runs now, as far as the ledger says, or NULL. */
static flight *running_flight(proc_ctx *c) {
  int i;
  for (i = 0; i < PROC_SLOTS; i++) {
    flight *x = &c->fl[i];
    if (x->f && x->claimed && proc_slot_state(c->ledger, x->seq) == SLOT_STARTED) return x;
  }
  return NULL;
}

/* Tasks sent ahead wait behind one that runs long while another worker
 * idles: they go back to the head of the pool's queue (the ledger keeps
 * this worker from starting them). Returns when to look again (0: no
 * need). */
static double rebalance(proc_ctx *c) {
  par_future *back[PROC_SLOTS];
  flight *run = running_flight(c);
  size_t n = 0;
  double now = par_now(), since;
  uint32_t s = c->seq;
  int i, waiting = 0;
  for (i = 0; i < PROC_SLOTS; i++) waiting |= c->fl[i].f && !c->fl[i].claimed;
  if (!waiting) return 0;
  /* the pool's task may not have started yet (the worker does not say
   * when it starts one that nothing waits behind): look again soon */
  if (!run) return now + STEAL_AFTER;
  since = now - start_of(c, run);
  if (since < STEAL_AFTER) return now + STEAL_AFTER - since;
  if (!par_pool_others_idle()) return now + fmin(0.02, fmax(STEAL_AFTER, since));
  for (i = PROC_SLOTS - 1; i >= 0; i--) {       /* oldest first */
    uint32_t seq = (uint32_t)(((int64_t)s - i + 0x7fffffff - 1) % 0x7fffffff + 1);
    flight *x = flight_of(c, seq);
    if (!x || x->claimed || !par_future_take_back(x->f)) continue;
    back[n++] = x->f;
    x->taken = 0;                               /* the reference goes with it */
    c->sent--;
    resolve(c, x, 1);
  }
  par_pool_give_back(back, n);
  return 0;
}

/* Not f->task: a cancel may free it meanwhile (it is not held yet). */
static int ahead_ok(par_future *f) {
  return atomic_load(&f->state) == PAR_PENDING && !f->segmented;
}

/* Sends tasks ahead while the worker may take more. -1 when the channel
 * failed. */
static int fill(proc_ctx *c) {
  long max = c->cfg->w.max_tasks;
  int ahead = c->cfg->ahead;
  flight *run = running_flight(c);
  if (ahead < 0)
    ahead = c->avg < 0 ? 0 : (int)fmin(PROC_SLOTS - 1, AHEAD_BUDGET / fmax(c->avg, 1e-9));
  /* nothing queues behind a task that already runs long */
  if (run && par_now() - start_of(c, run) >= STEAL_AFTER) return 0;
  while (c->chan && !par_pool_aborting() && !par_pool_cancelling()) {
    int depth = 1 + ahead;
    uint32_t seq = c->seq % 0x7fffffffu + 1;
    par_future *f;
    if (c->nflight >= depth || (max && c->sent >= max) || c->fl[seq % PROC_SLOTS].f) break;
    if (!(f = par_pool_take_ahead(ahead_ok))) break;
    if (dispatch(c, f, 0) != 0) return -1;
  }
  return 0;
}

/* A shutdown that interrupts: the worker's init too (task 0 there), which
 * the interrupt of the task sent to it does not reach; a worker past its
 * init ignores it. */
static void interrupt_init(proc_ctx *c) {
  union sigval v;
  v.sival_int = 0;
  pthread_mutex_lock(&c->pid_mu);
  if (c->pid > 0) {
    atomic_store(&c->ledger->stop, 1);   /* read by the handler of a merged SIGURG */
    sigqueue(c->pid, SIGURG, v);
  }
  pthread_mutex_unlock(&c->pid_mu);
}

/* Looks at the ledger: tasks that started (the worker said so before the
 * outcome of the one before), tasks sent ahead that a cancel recalled. */
static void sweep(proc_ctx *c) {
  uint32_t s = c->seq;
  int i, cancelling = par_pool_cancelling();
  if (c->abort_at == 0 && par_pool_aborting()) {
    c->abort_at = par_now();
    interrupt_init(c);
    /* a SIGURG still pending at the worker (the task's) swallows this
     * one: non-realtime signals do not queue */
    c->init_again = c->abort_at + 0.02;
  }
  /* oldest first: the worker starts them in that order */
  for (i = PROC_SLOTS - 1; i >= 0; i--) {
    uint32_t seq = (uint32_t)(((int64_t)s - i + 0x7fffffff - 1) % 0x7fffffff + 1);
    flight *x = flight_of(c, seq);
    int st;
    if (x && x->claimed && cancelling && !c->abort_at && !x->why_killed &&
        proc_slot_move(c->ledger, seq, SLOT_QUEUED, SLOT_CANCELLED)) {
      /* The pool's task, which its process (starting, or in an init that
       * may never end) has not started: a shutdown that cancels what has
       * not started must not wait for it. Claimed, so it fails (the
       * worker skips it). Not at a terminate(), which interrupts the init
       * (the task then fails with it) and kills a process that ignores it. */
      fail(c, x->f, "cancelled: the pool shut down (cancel = true) before the task started; "
           "its worker process was still starting or running the pool's init");
      c->sent--;
      resolve(c, x, 1);
      continue;
    }
    if (!x || x->claimed) continue;
    if (cancelling) par_future_cancel(x->f);
    st = proc_slot_state(c->ledger, seq);
    if (st == SLOT_STARTED || st == SLOT_FINISHED || st == SLOT_KILLED) {
      mark_started(c, x);
    } else if (st == SLOT_CANCELLED) {
      par_future_hold(x->f, NULL);   /* waits for the cancel to finish */
      c->sent--;
      resolve(c, x, 1);
    }
  }
}

/* Kills the worker for a task past its deadline (task_timeout from its
 * start; a shutdown's interrupt ignored for SHUTDOWN_GRACE); returns the
 * next deadline, 0 for none. */
static double expire(proc_ctx *c) {
  double next = 0, now = par_now();
  int i;
  if (c->init_again > 0) {
    if (c->init_again <= now) { interrupt_init(c); c->init_again = 0; }
    else next = c->init_again;
  }
  for (i = 0; i < PROC_SLOTS; i++) {
    flight *x = &c->fl[i];
    double d = 0;
    int why = KILL_NONE;
    if (!x->f || !x->claimed || x->why_killed) continue;
    if (x->f->timeout > 0) {
      int st = proc_slot_state(c->ledger, x->seq);
      if (st == SLOT_STARTED) {
        d = start_of(c, x) + x->f->timeout;
        why = KILL_TIMEOUT;
      } else if (st == SLOT_QUEUED) {
        /* The pool's task, not started: the process is still starting or
         * in its init (nothing else runs before it there). A stopped
         * process, an init that blocks, must not hold it for ever: the
         * same timeout, from when the task was sent. */
        d = x->start + x->f->timeout;
        why = KILL_NOT_STARTED;
      }
    }
    if (c->abort_at > 0 && (d == 0 || c->abort_at + SHUTDOWN_GRACE < d)) {
      d = c->abort_at + SHUTDOWN_GRACE;
      why = KILL_SHUTDOWN;
    }
    if (d == 0) continue;
    if (d <= now) {
      pthread_mutex_lock(&c->pid_mu);
      kill_flight(c, x, why);
      pthread_mutex_unlock(&c->pid_mu);
    } else if (next == 0 || d < next) {
      next = d;
    }
  }
  return next;
}

/* A task's outcome arrived. */
static void outcome(proc_ctx *c, flight *x, int state, const unsigned char *p, size_t len) {
  par_msg *m = NULL;
  par_wire_err e;
  double took;
  mark_started(c, x);
  state = state == PAR_DONE ? PAR_DONE : PAR_FAILED;
  if (len == 0) {           /* no outcome to send: as a thread worker's */
    par_future_finish(x->f, state, NULL);
  } else if (par_wire_rebuild(c->peer, p, len, &m, &e) != PAR_WIRE_MESSAGE) {
    par_msg_free(m);
    fail(c, x->f, e.msg);
  } else {
    par_future_finish(x->f, state, m);
  }
  took = par_now() - x->start;
  c->avg = c->avg < 0 ? took : 0.75 * c->avg + 0.25 * took;
  c->ntasks++;
  resolve(c, x, 1);
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

/* Takes the frames that arrived: 0 when none is left, OUTCOME_GONE /
 * OUTCOME_FATAL on a broken conversation. *closed: the channel closed. */
static int take_frames(proc_ctx *c, int *closed) {
  const unsigned char *fr;
  size_t len;
  par_wire_err e;
  flight *x;
  int r;
  while ((r = proc_chan_next(c->chan, &fr, &len, &e)) == 1) {
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
        if ((x = flight_of(c, get32(fr + 1))) != NULL) mark_started(c, x);
        break;
      case PF_SKIPPED:         /* the sweep resolves it */
        break;
      case PF_DONE:
        if (len < 6 || !(x = flight_of(c, get32(fr + 2)))) return OUTCOME_GONE;
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
        if (len < 5 || !(x = flight_of(c, get32(fr + 1)))) return OUTCOME_GONE;
        mark_started(c, x);
        snprintf(text, sizeof text, "%.*s", (int)(len - 5), (const char *)fr + 5);
        fail(c, x->f, text);
        c->ntasks++;
        resolve(c, x, 1);
        break;
      }
      default:
        return OUTCOME_GONE;
    }
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
  if (ms != 0 && proc_chan_backlog(c->chan) == 0 &&
      par_spin(PAR_WAIT_FUTURE, proc_chan_ready, c->chan, deadline > 0 ? deadline : par_now() + 1))
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
  finish_process(c, STOP_GRACE, why, sizeof why);
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
      resolve(c, x, 1);
      continue;
    }
    if (!x->claimed) mark_started(c, x);
    /* The pool's task never started on a worker that had run tasks (it
     * died idle), or on a spare that had waited ready (it died waiting,
     * killed as it was taken over): it goes to the replacement, a fresh
     * process. One that dies before its first task fails it, or a worker
     * that cannot start would loop. */
    if (!began && !x->streamed && !fatal && !x->why_killed && (c->ntasks > 0 || c->took_spare))
      continue;
    fail(c, x->f, death_text(c, x, fatal, why, text, sizeof text));
    resolve(c, x, 1);
  }
  par_pool_give_back(back, nback);
  /* What is left is the pool's own task, which never started: it goes
   * again, to the replacement. */
  for (i = 0; i < PROC_SLOTS; i++) {
    if (c->fl[i].f) {
      again = c->fl[i].f;
      set_flight(c, &c->fl[i], NULL);
      c->nflight--;
    }
  }
  if (fatal) return;
  /* no replacement for a pool that is being terminated (its init would
   * only be interrupted in turn); a next task would start one */
  if (!again && par_pool_aborting()) return;
  if (launch(c, why, sizeof why) != 0) {
    if (again) fail(c, again, why);
    else { /* the next task says why */ }
    return;
  }
  if (again) dispatch(c, again, 1);
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
static void run_flights(proc_ctx *c) {
  while (c->nflight > 0) {
    int closed = 0, r = take_frames(c, &closed);
    if (r != 0 || closed) {
      on_death(c, r == OUTCOME_FATAL);
      continue;
    }
    sweep(c);
    if (c->nflight == 0) break;
    if (fill(c) != 0) {
      r = take_frames(c, &closed);
      on_death(c, r == OUTCOME_FATAL);
      continue;
    }
    keep_spare(c);          /* the slot's first task on: a crash is a take-over */
    if (wait_io(c, earliest(earliest(expire(c), rebalance(c)), starting(c))) != 0) {
      /* closed: the frames that came first count, then the death */
      r = take_frames(c, &closed);
      on_death(c, r == OUTCOME_FATAL);
    }
  }
  if (c->chan && c->cfg->w.max_tasks && c->ntasks >= c->cfg->w.max_tasks) {
    char why[400];
    finish_process(c, STOP_GRACE, NULL, 0);
    if (launch(c, why, sizeof why) != 0) { /* the next task says why */ }
  }
  keep_spare(c);
}

static int prepare(proc_ctx *c);

/* The flight of f, if a submit sent it already (process_offer). */
static flight *offered_flight(proc_ctx *c, par_future *f) {
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
  if (offered_flight(c, f)) {
    run_flights(c);
    atomic_store(&c->idle_gone, 0);
    return;
  }
  if (c->unprepared) prepare(c);
  if (c->fatal[0]) { fail(c, f, c->fatal); return; }
  /* A worker that died while idle (the OOM killer, a kill from outside)
   * is found when the task is sent: it never started there, so it goes
   * to the replacement. */
  if (!c->chan && launch(c, why, sizeof why) != 0) { fail(c, f, why); return; }
  c->abort_at = c->init_again = 0;
  dispatch(c, f, 1);
  run_flights(c);
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
    r = poll(p, (nfds_t)n, -1);
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
  c->abort_at = c->init_again = 0;
  /* -1: the channel failed, the flight stays; the socket's close wakes
   * the pool worker, which finds the death */
  dispatch(c, f, 1);
  /* failed here, or bytes left for the socket: the pool worker finishes up */
  if (!offered_flight(c, f) || proc_chan_backlog(c->chan) > 0) return 0;
  /* an interrupt that reached the parked thread before running_seq named f */
  if (atomic_load(c->interrupted)) process_interrupt(c);
  return 1;
}

/* A signal handler on the owning thread: the worker stops the task at its
 * next Lua instruction (the same interrupt as a thread worker's), and the
 * owning thread wakes to time the shutdown's grace. */
static void process_interrupt(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  union sigval v;
  uint64_t one = 1;
  int saved = errno;
  v.sival_int = atomic_load(&c->running_seq);
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
    if (c->fl[i].f == f) kill_flight(c, &c->fl[i], KILL_ASKED);
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
  if (launch(c, why, sizeof why) != 0) { /* idem */ }
  return c;
}

static void process_stop(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  double grace = STOP_GRACE;
  /* An init still running does not see the channel close: no task will
   * run after it, so it is interrupted (task 0) at any shutdown; one that
   * ignores it (C code) is killed after the grace. */
  interrupt_init(c);
  if (par_pool_aborting()) grace = SHUTDOWN_GRACE;
  finish_process(c, grace, NULL, 0);
  par_remote_owner_free(c->remote);
  par_buf_free(&c->rbuf);
  if (c->peer) par_wire_peer_free(c->peer);
  par_shm_via_free(c->shm);
  if (c->L) lua_close(c->L);
  drop_spare(c);
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
  .interrupt = process_interrupt,
  .clear_interrupt = process_clear_interrupt,
  .stop = process_stop,
  .free_ud = process_free_config,
  .kill = process_kill,
  .park = process_park,
  .unpark = process_unpark,
  .offer = process_offer,
};
