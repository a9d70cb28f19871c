/*
 * The process backend, parent side: par_pool_ops whose context is one
 * worker process (l_process.h).
 *
 * Threads: everything here runs on the pool worker thread that owns the
 * process, except process_interrupt (a signal handler on that same thread)
 * and process_kill (any thread, with the pool worker's mutex held while
 * the task it means is running). `pid_mu` guards `pid` between a kill and
 * the reaping of the process: the pid is cleared under it before waitpid,
 * so a kill never reaches a pid the kernel gave to someone else.
 */
#define _GNU_SOURCE
#include "lua/l_process.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "codec/proto.h"
#include "core/clock.h"
#include "core/future.h"
#include "core/queue.h"
#include "core/wait.h"
#include "process/frames.h"
#include "process/spawn.h"
#include "wire/objects.h"
#include "wire/remote.h"
#include "wire/wire.h"

/* How long a worker that was told to stop, or whose channel closed, may
 * take to exit before it is killed. */
#define STOP_GRACE 2.0

typedef struct proc_ctx {
  proc_config *cfg;
  int index;
  lua_State *L;              /* encodes the failures made on this side */
  par_wire_vias vias;        /* how shared objects cross (wire/objects.h) */
  par_remote_owner *remote;  /* objects sent to the worker, served here */
  par_buf rbuf;              /* a reply being built */
  par_wire_peer *peer;
  par_wire_chan *chan;       /* NULL while no process runs */
  pthread_mutex_t pid_mu;
  pid_t pid;                 /* 0: none (pid_mu; read bare by this thread) */
  _Atomic int killed;        /* process_kill ended the running task */
  long ntasks;               /* tasks run by the current process */
  int seq;                   /* the number of the task sent last (never 0) */
  par_buf out;               /* a frame being built */
  char fatal[600];           /* set: no worker can run here; tasks fail with it */
} proc_ctx;

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
  return par_wire_chan_send(c->chan, NULL, 0, c->out.data, c->out.len, e);
}

static void start_frame(proc_ctx *c, unsigned char type) {
  par_buf_reset(&c->out);
  put(&c->out, &type, 1);
}

static int send_config(proc_ctx *c, par_wire_err *e) {
  proc_config *cfg = c->cfg;
  uint64_t limit = cfg->memory_limit;
  uint32_t index = (uint32_t)c->index;
  uint32_t np = cfg->path ? (uint32_t)strlen(cfg->path) : 0;
  uint32_t nc = cfg->cpath ? (uint32_t)strlen(cfg->cpath) : 0;
  unsigned char has_init = cfg->init != NULL;
  start_frame(c, PF_HELLO);
  if (par_wire_hello(&c->out) != 0 || send_out(c, e) != 0) return -1;
  start_frame(c, PF_CONFIG);
  if (!put(&c->out, &limit, 8) || !put(&c->out, &index, 4) || !put(&c->out, &np, 4) ||
      !put(&c->out, &nc, 4) || !put(&c->out, cfg->path, np) || !put(&c->out, cfg->cpath, nc) ||
      !put(&c->out, &has_init, 1)) {
    snprintf(e->msg, sizeof e->msg, "not enough memory");
    return -1;
  }
  if (cfg->init && par_wire_flatten(c->peer, cfg->init, &c->out, NULL, e) != 0) return -1;
  return send_out(c, e);
}

int process_can_send(const par_object *o) {
  return o->type == &par_proto_type || par_remote_claims(o);
}

/* ----------------------------------------------------- the worker's life */

/* Starts a worker process: 0, or -1 with why. */
static int launch(proc_ctx *c, char *why, size_t size) {
  int fd;
  par_wire_err e;
  pid_t pid = proc_spawn(c->cfg->exe, &fd);
  if (pid < 0) {
    snprintf(why, size, "cannot start a worker process (%.200s: %s)", c->cfg->exe, strerror(errno));
    return -1;
  }
  c->chan = par_wire_chan_new(fd, 0);
  if (!c->chan) {
    close(fd);
    proc_reap(pid, 0, NULL, 0);
    snprintf(why, size, "cannot start a worker process (not enough memory)");
    return -1;
  }
  pthread_mutex_lock(&c->pid_mu);
  c->pid = pid;
  pthread_mutex_unlock(&c->pid_mu);
  par_wire_peer_reset(c->peer);
  c->ntasks = 0;
  atomic_store(&c->killed, 0);
  if (send_config(c, &e) != 0) {
    /* The channel broke at once: the next task finds the process gone. */
    snprintf(why, size, "%.300s", e.msg);
  }
  return 0;
}

/* Ends the worker process (closing the channel tells it to stop; after
 * `grace` seconds it is killed) and describes how it ended. */
static void finish_process(proc_ctx *c, double grace, char *why, size_t size) {
  pid_t pid;
  pthread_mutex_lock(&c->pid_mu);
  pid = c->pid;
  c->pid = 0;
  pthread_mutex_unlock(&c->pid_mu);
  if (c->chan) par_wire_chan_free(c->chan);
  c->chan = NULL;
  proc_reap(pid, grace, why, size);
  /* what it held is released, what it was waiting for given back */
  par_remote_owner_reset(c->remote);
}

/* ------------------------------------------------------------- running */

/* Sends f's task, with the rest of its segments if it went in segments:
 * 0; 1 when the task cannot leave this process (e says why; the worker
 * is fine); -1 when the channel failed (the worker is gone). */
static int send_task(proc_ctx *c, par_future *f, par_wire_err *e) {
  unsigned char kind = (unsigned char)f->kind;
  uint32_t stream = 0, useq;
  int seq = c->seq % 0x7fffffff + 1;
  par_msg *task = f->task;
  int rc = 0;
  c->seq = seq;              /* before it is sent: an interrupt names it */
  useq = (uint32_t)seq;
  start_frame(c, PF_TASK);
  put(&c->out, &kind, 1);
  put(&c->out, &useq, 4);
  if (par_wire_flatten(c->peer, task, &c->out, &stream, e) != 0) return 1;
  if (send_out(c, e) != 0) rc = -1;
  else if (task->rest) {
    par_queue *q = (par_queue *)task->rest;
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
      if (par_wire_chan_wait(c->chan, 0, e) != 0) { rc = -1; break; }
    }
  }
  par_msg_free(f->task);    /* sent: the future no longer needs it */
  f->task = NULL;
  return rc;
}

/* ------------------------------------------- shared objects: requests */

/* Sends the reply in c->rbuf (after its frame byte). */
static void send_reply(proc_ctx *c) {
  par_wire_err e;
  unsigned char type = PF_REPLY;
  /* a broken channel: the next wait finds it */
  par_wire_chan_send(c->chan, &type, 1, c->rbuf.data, c->rbuf.len, &e);
}

/* A request of the running task: served at once, or by a helper thread
 * whose reply send_replies sends later. 0, or -1 on malformed bytes. */
static int serve_request(proc_ctx *c, const unsigned char *p, size_t len) {
  par_wire_err e;
  int r;
  par_buf_reset(&c->rbuf);
  r = par_remote_serve(c->remote, c->peer, p, len, &c->rbuf, &e);
  if (r == 1) send_reply(c);
  return r < 0 ? -1 : 0;
}

static void send_replies(proc_ctx *c) {
  par_buf_reset(&c->rbuf);
  while (c->chan && par_remote_next_reply(c->remote, c->peer, &c->rbuf) == 1) {
    send_reply(c);
    par_buf_reset(&c->rbuf);
  }
}

/* poll(2) on the channel and on the replies of helper threads. */
static int poll_chan(proc_ctx *c, int ms, par_wire_err *e) {
  struct pollfd p[2];
  int r;
  p[0].fd = par_wire_chan_fd(c->chan);
  p[0].events = par_wire_chan_events(c->chan);
  p[1].fd = par_remote_owner_fd(c->remote);
  p[1].events = POLLIN;
  p[0].revents = p[1].revents = 0;
  r = poll(p, 2, ms);
  if (r > 0 && p[1].revents) {
    send_replies(c);
    p[0].revents |= POLLOUT & p[0].events;
  }
  if (r > 0 && p[0].revents) return par_wire_chan_io(c->chan, p[0].revents, e);
  return 0;
}

enum { OUTCOME_DONE, OUTCOME_GONE, OUTCOME_FATAL };

/* Takes the frames that arrived: OUTCOME_DONE once f is finished, -1 when
 * none is left, OUTCOME_GONE / OUTCOME_FATAL on a broken conversation. */
static int take_frames(proc_ctx *c, par_future *f, int *closed) {
  const unsigned char *fr;
  size_t len;
  par_wire_err e;
  int r;
  while ((r = par_wire_chan_next(c->chan, &fr, &len, &e)) == 1) {
    if (len == 0) return OUTCOME_GONE;
    switch (fr[0]) {
      case PF_HELLO:
        if (par_wire_check_hello(fr + 1, len - 1, &e) != 0) {
          snprintf(c->fatal, sizeof c->fatal, "%.590s", e.msg);
          return OUTCOME_FATAL;
        }
        break;
      case PF_DONE: {
        par_msg *m = NULL;
        if (len < 2) return OUTCOME_GONE;
        if (len == 2) {         /* no outcome to send: as a thread worker's */
          par_future_finish(f, fr[1] == PAR_DONE ? PAR_DONE : PAR_FAILED, NULL);
        } else if (par_wire_rebuild(c->peer, fr + 2, len - 2, &m, &e) != PAR_WIRE_MESSAGE) {
          par_msg_free(m);
          fail(c, f, e.msg);
        } else {
          par_future_finish(f, fr[1] == PAR_DONE ? PAR_DONE : PAR_FAILED, m);
        }
        return OUTCOME_DONE;
      }
      case PF_REQUEST:
        if (serve_request(c, fr + 1, len - 1) != 0) return OUTCOME_GONE;
        break;
      case PF_CANCEL:
        par_remote_cancel(c->remote, fr + 1, len - 1);
        break;
      case PF_ERROR: {
        char text[512];
        snprintf(text, sizeof text, "%.*s", (int)(len - 1), (const char *)fr + 1);
        fail(c, f, text);
        return OUTCOME_DONE;
      }
      default:
        return OUTCOME_GONE;
    }
  }
  if (r < 0) *closed = 1;
  return -1;
}

/* Whether the channel's descriptor has something to read (a spin's test). */
static int readable(void *ud) {
  struct pollfd p;
  p.fd = *(int *)ud;
  p.events = POLLIN;
  p.revents = 0;
  return poll(&p, 1, 0) > 0;
}

/* Waits for the channel as a core wait does: a short spin when the policy
 * says it pays (core/wait.h), then poll, counted as asleep. */
static int wait_chan(proc_ctx *c, int ms, double deadline, par_wire_err *e) {
  int fd = par_wire_chan_fd(c->chan), r;
  if (par_wire_chan_backlog(c->chan) == 0 &&
      par_spin(PAR_WAIT_FUTURE, readable, &fd, deadline > 0 ? deadline : par_now() + 1))
    return par_wire_chan_wait(c->chan, 0, e);
  par_wait_sleep_begin();
  r = poll_chan(c, ms, e);
  par_wait_sleep_end();
  return r;
}

/* Waits for f's outcome, killing the worker at the deadline (0: none). */
static int await_outcome(proc_ctx *c, par_future *f, double deadline, int *timed_out) {
  int closed = 0;
  for (;;) {
    par_wire_err e;
    int ms = -1, r = take_frames(c, f, &closed);
    if (r >= 0) return r;
    if (closed) return OUTCOME_GONE;
    if (deadline > 0) {
      double left = deadline - par_now();
      if (left <= 0) {
        *timed_out = 1;
        deadline = 0;
        pthread_mutex_lock(&c->pid_mu);
        if (c->pid > 0) kill(c->pid, SIGKILL);
        pthread_mutex_unlock(&c->pid_mu);
        continue;
      }
      ms = (int)ceil(left * 1000);
    }
    if (wait_chan(c, ms, deadline, &e) != 0) {
      /* Closed: what arrived before still counts. */
      r = take_frames(c, f, &closed);
      return r >= 0 ? r : OUTCOME_GONE;
    }
  }
}

static void process_run(void *ctx, par_future *f) {
  proc_ctx *c = (proc_ctx *)ctx;
  char why[400], text[1024];
  par_wire_err e;
  int timed_out = 0, outcome;
  double deadline;
  if (!c) { par_future_finish(f, PAR_FAILED, NULL); return; }
  if (c->fatal[0]) { fail(c, f, c->fatal); return; }
  /* A worker that died while idle (the OOM killer, a kill from outside)
   * is replaced before it is given a task: that task never ran there. */
  if (c->chan && par_wire_chan_wait(c->chan, 0, &e) != 0) finish_process(c, STOP_GRACE, NULL, 0);
  if (!c->chan && launch(c, why, sizeof why) != 0) { fail(c, f, why); return; }
  deadline = f->timeout > 0 ? par_now() + f->timeout : 0;
  if (send_task(c, f, &e) == 1) { fail(c, f, e.msg); return; }
  outcome = await_outcome(c, f, deadline, &timed_out);
  if (outcome == OUTCOME_DONE) {
    c->ntasks++;
    if (atomic_load(&c->killed) || (c->cfg->max_tasks && c->ntasks >= c->cfg->max_tasks)) {
      finish_process(c, STOP_GRACE, NULL, 0);
      if (launch(c, why, sizeof why) != 0) { /* the next task says why */ }
    }
    return;
  }
  finish_process(c, STOP_GRACE, why, sizeof why);
  if (outcome == OUTCOME_FATAL) snprintf(text, sizeof text, "%s", c->fatal);
  else if (atomic_load(&c->killed)) snprintf(text, sizeof text, "killed");
  else if (timed_out)
    snprintf(text, sizeof text, "timeout: the task ran longer than task_timeout (%g s); "
             "its worker process was killed", f->timeout);
  else snprintf(text, sizeof text, "worker process died (%s)", why);
  fail(c, f, text);
  if (outcome != OUTCOME_FATAL) launch(c, why, sizeof why);   /* its replacement */
}

/* A signal handler on the owning thread: the worker stops the task at its
 * next Lua instruction (the same interrupt as a thread worker's). */
static void process_interrupt(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  union sigval v;
  v.sival_int = c->seq;
  if (c->pid > 0) sigqueue(c->pid, SIGURG, v);
}

static void process_clear_interrupt(void *ctx) { (void)ctx; }

static void process_kill(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  pthread_mutex_lock(&c->pid_mu);
  if (c->pid > 0) {
    atomic_store(&c->killed, 1);
    kill(c->pid, SIGKILL);
  }
  pthread_mutex_unlock(&c->pid_mu);
}

static int open_codec(lua_State *L) {
  codec_open(L);
  return 0;
}

static void *process_start(void *ud, int index, _Atomic int *interrupted) {
  proc_ctx *c = calloc(1, sizeof *c);
  char why[400];
  (void)interrupted;
  if (!c) return NULL;
  c->cfg = (proc_config *)ud;
  c->index = index;
  pthread_mutex_init(&c->pid_mu, NULL);
  par_buf_init(&c->out);
  c->L = luaL_newstate();
  if (c->L) {
    lua_pushcfunction(c->L, open_codec);
    if (lua_pcall(c->L, 0, 0, 0) != LUA_OK) { lua_close(c->L); c->L = NULL; }
  }
  par_buf_init(&c->rbuf);
  c->remote = par_remote_owner_new((uint64_t)getpid());
  if (c->remote) par_remote_owner_attach(&c->vias, c->remote);
  {
    par_wire_objects hooks;
    par_wire_vias_hooks(&c->vias, &hooks);
    c->peer = par_wire_peer_new(&hooks);
  }
  if (!c->L || !c->remote || !c->peer) {
    snprintf(c->fatal, sizeof c->fatal, "not enough memory");
    return c;
  }
  /* A launch that fails is tried again by the next task. */
  if (launch(c, why, sizeof why) != 0) { /* idem */ }
  return c;
}

static void process_stop(void *ctx) {
  proc_ctx *c = (proc_ctx *)ctx;
  finish_process(c, STOP_GRACE, NULL, 0);
  par_remote_owner_free(c->remote);
  par_buf_free(&c->rbuf);
  if (c->peer) par_wire_peer_free(c->peer);
  if (c->L) lua_close(c->L);
  par_buf_free(&c->out);
  pthread_mutex_destroy(&c->pid_mu);
  free(c);
}

static void process_free_config(void *ud) {
  proc_config *cfg = (proc_config *)ud;
  par_msg_free(cfg->init);
  free(cfg->path);
  free(cfg->cpath);
  free(cfg);
}

const par_pool_ops process_ops = {
  .start = process_start,
  .run = process_run,
  .interrupt = process_interrupt,
  .clear_interrupt = process_clear_interrupt,
  .stop = process_stop,
  .free_ud = process_free_config,
  .kill = process_kill,
};
