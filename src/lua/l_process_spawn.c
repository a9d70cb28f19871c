/*
 * The process backend, parent side: the worker's life. A slot's worker
 * process is spawned, configured, taken over by the slot, and ended here;
 * and the frames this side builds (l_process_put, l_process_start_frame,
 * l_process_send_out), which the configuration is the first user of.
 *
 * Spare. Starting a process (posix_spawn, the loader, a Lua state, the
 * facade) takes milliseconds; a slot that has been given a task keeps the
 * next process started ahead, configured but without init, which runs
 * when it takes over (objects in init_args then go to the process that
 * uses them). So the first crash of a pool is a take-over too; a slot that
 * never runs a task starts no spare.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/pool.h"
#include "process/frames.h"
#include "process/ledger.h"
#include "process/pchan.h"
#include "process/spawn.h"
#include "wire/remote.h"
#include "wire/shmvia.h"
#include "wire/wire.h"
#include "lua/l_process_impl.h"

/* -------------------------------------------------------------- frames */

int l_process_put(par_buf *b, const void *p, size_t n) {
  if (!par_buf_reserve(b, n)) return 0;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

int l_process_send_out(proc_ctx *c, par_wire_err *e) {
  return proc_chan_send(c->chan, NULL, 0, c->out.data, c->out.len, e);
}

void l_process_start_frame(proc_ctx *c, unsigned char type) {
  par_buf_reset(&c->out);
  l_process_put(&c->out, &type, 1);
}

static int send_config(proc_ctx *c, proc_chan *ch, par_wire_err *e) {
  proc_config *cfg = c->cfg;
  uint64_t limit = cfg->w.memory_limit;
  uint32_t index = (uint32_t)c->index;
  uint32_t np = cfg->w.path ? (uint32_t)strlen(cfg->w.path) : 0;
  uint32_t nc = cfg->w.cpath ? (uint32_t)strlen(cfg->w.cpath) : 0;
  unsigned char has_init = cfg->w.init != NULL;
  l_process_start_frame(c, PF_HELLO);
  if (par_wire_hello(&c->out) != 0 ||
      proc_chan_send(ch, NULL, 0, c->out.data, c->out.len, e) != 0)
    return -1;
  l_process_start_frame(c, PF_CONFIG);
  if (!l_process_put(&c->out, &limit, 8) || !l_process_put(&c->out, &index, 4) ||
      !l_process_put(&c->out, &np, 4) || !l_process_put(&c->out, &nc, 4) ||
      !l_process_put(&c->out, cfg->w.path, np) || !l_process_put(&c->out, cfg->w.cpath, nc) ||
      !l_process_put(&c->out, &has_init, 1)) {
    snprintf(e->msg, sizeof e->msg, "not enough memory");
    return -1;
  }
  return proc_chan_send(ch, NULL, 0, c->out.data, c->out.len, e);
}

/* The init call, to the process that takes over (c->peer was reset). */
static int send_init(proc_ctx *c, par_wire_err *e) {
  if (!c->cfg->w.init) return 0;
  l_process_start_frame(c, PF_INIT);
  if (par_wire_flatten(c->peer, c->cfg->w.init, &c->out, NULL, e) != 0) return -1;
  return l_process_send_out(c, e);
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
void l_process_drop_spare(proc_ctx *c) {
  pid_t pid = spare_pid(c);
  if (c->sp.chan) proc_chan_free(c->sp.chan);
  c->sp.chan = NULL;
  if (pid > 0) proc_reap(pid, 0, NULL, 0);
  c->sp.pid = 0;
}

/* Starts a worker process, the spare if one is ready: 0, or -1 with why. */
int l_process_launch(proc_ctx *c, char *why, size_t size) {
  par_wire_err e;
  proc_ledger *l;
  int fd;
  int ready;
  if (spare_pid(c) > 0 && waitpid(c->sp.pid, NULL, WNOHANG) != 0) {
    c->sp.pid = 0;                 /* it died waiting (or is not ours) */
    l_process_drop_spare(c);
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
  /* a replacement during a shutdown that interrupts: told like the
   * process before, so its init and the task it is given again stop */
  if (c->abort_at > 0 && par_pool_aborting()) l_process_interrupt_init(c);
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
void l_process_keep_spare(proc_ctx *c) {
  char why[400];
  if (c->sp.pid <= 0 && !c->sp.spawning && c->chan && !par_pool_aborting())
    if (spawn_spare(c, 1, why, sizeof why) != 0) { /* a launch starts one then */ }
}

/* Ends the worker process (closing the channel tells it to stop; after
 * `grace` seconds it is killed) and describes how it ended. */
void l_process_finish_process(proc_ctx *c, double grace, char *why, size_t size) {
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

