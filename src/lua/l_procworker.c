/*
 * The process backend, worker side: parallel_worker_main, the loop of a
 * worker process (the parallel-worker executable, or an embedding host
 * that calls it first thing in main).
 *
 * One thread. It reads frames (process/frames.h) from its channel
 * (process/pchan.h: rings in the ledger's mapping, descriptor 3 the socket,
 * 5 and 6 the eventfds that wake it and its parent), runs
 * each task with the thread backend's worker code (worker_ops: the same
 * state, init, memory limit and failures), and sends the outcome back.
 * Before a task runs, the ledger (process/ledger.h, descriptor 4) says it
 * started, unless the parent recalled it first; a task the parent killed
 * has no outcome. A streamed task's segments are all taken before it runs
 * (the parent's thread forwards them as the submitter encodes). SIGURG interrupts the
 * task it names at its next Lua instruction; the channel closing ends the
 * process. It never outlives its parent: PR_SET_PDEATHSIG, then a check
 * that the parent is still the one named on the command line.
 */
#define _GNU_SOURCE
#include "lua/l_process.h"

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "parallel.h"
#include "core/clock.h"
#include "core/future.h"
#include "core/queue.h"
#include "core/wait.h"
#include "lua/l_worker.h"
#include "process/frames.h"
#include "process/ledger.h"
#include "process/pchan.h"
#include "process/spawn.h"
#include "wire/objects.h"
#include "wire/remote.h"
#include "wire/shmvia.h"
#include "wire/wire.h"

/* What a worker's process may hold beyond its Lua states' memory_limit
 * (the program, libraries, buffers) before the kernel refuses more. */
#define PROCESS_OVERHEAD ((size_t)64 << 20)

/*
 * Interrupts. The parent queues SIGURG with the number of the task it
 * means (sigqueue): it may arrive before that task does here (the parent
 * counts it running once sent), or after it ended. So the handler keeps
 * the number asked for, and interrupts only the task that has it; a task
 * starting checks whether it was asked for already. Numbers never repeat
 * within a worker process. Init runs as task 0.
 */
static void *volatile running;        /* the worker context while Lua code runs */
static volatile sig_atomic_t running_seq = -1;
static volatile sig_atomic_t asked_seq = -1;
static volatile sig_atomic_t stopping;  /* number 0: the pool shuts down, init too */
static _Atomic int interrupted;       /* the worker state's flag (l_interrupt) */
static proc_ledger *volatile ledger;  /* its stop word: a shutdown whose SIGURG merged
                                         into a task's (signals do not queue) */

/* The parent asked task seq to stop (ledger.h: proc_slot.asked); a
 * SIGURG merged into another one carries the other's number only. */
static int asked_in_ledger(proc_ledger *l, int seq) {
  return l && seq > 0 && atomic_load(&proc_slot_of(l, (uint32_t)seq)->asked) == (uint32_t)seq;
}

static void on_interrupt(int sig, siginfo_t *info, void *uctx) {
  int seq = info->si_code == SI_QUEUE ? info->si_value.sival_int : running_seq;
  proc_ledger *l = ledger;
  (void)sig; (void)uctx;
  /* 0 (the parent's shutdown) must not replace the number of a task asked
   * for before it started; it interrupts init and any task from now on */
  if (seq != 0) asked_seq = seq;
  if (seq == 0 || (l && atomic_load(&l->stop))) stopping = 1;
  if (running && (seq == running_seq || stopping || asked_in_ledger(l, running_seq))) {
    atomic_store(&interrupted, 1);
    worker_ops.interrupt(running);
  }
}

/* Runs Lua code of task seq (the handler may interrupt it), then undoes an
 * interrupt that reached it. The ledger's stop word too: the parent sets
 * it before its SIGURG, which a process still starting (no handler yet,
 * the ledger not mapped) loses. */
static void begin_run(void *ctx, int seq) {
  proc_ledger *l = ledger;
  running_seq = seq;
  running = ctx;
  if (!stopping && l && atomic_load(&l->stop)) stopping = 1;
  if (stopping || asked_seq == seq || asked_in_ledger(l, seq)) {
    atomic_store(&interrupted, 1);
    worker_ops.interrupt(ctx);
  }
}

static void end_run(void *ctx) {
  running = NULL;
  running_seq = -1;
  if (atomic_exchange(&interrupted, 0)) worker_ops.clear_interrupt(ctx);
}

/* Descriptors inherited by accident (a parent's files without
 * close-on-exec) would keep pipes open behind their owners' backs. */
static void close_inherited(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, PROC_PARENT_BELL_FD + 1, ~0U, 0) == 0) return;
#endif
  {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    if (!d) return;
    while ((de = readdir(d)) != NULL) {
      int fd = atoi(de->d_name);
      if (fd > PROC_PARENT_BELL_FD && fd != dirfd(d)) close(fd);
    }
    closedir(d);
  }
}

typedef struct stashed stashed;
struct stashed {
  stashed *next;
  size_t len;
  unsigned char bytes[];
};

typedef struct conn {
  par_wire_vias vias;     /* how shared objects cross (wire/objects.h) */
  par_shm_via *shm;       /* arrays, locks... of the pool's process */
  proc_chan *chan;
  par_wire_peer *peer;
  proc_ledger *ledger;
  uint32_t prestarted;      /* started before the outcome of the one before went */
  par_buf out;
  par_remote_client *remote;  /* the parent's objects, used by requests */
  stashed *stash, *stash_tail;  /* frames that arrived while a task waited for a reply */
  stashed *taken;               /* the stashed frame next_frame returned last */
} conn;

/* The next frame, waiting for it: 1, or 0 once the channel closed. A
 * short spin first when the waiting policy says it pays (core/wait.h): the
 * next task of a busy pool follows a result within microseconds. */
static int next_frame(conn *k, const unsigned char **fr, size_t *len) {
  par_wire_err e;
  free(k->taken);
  k->taken = NULL;
  if (k->stash) {
    k->taken = k->stash;
    k->stash = k->stash->next;
    if (!k->stash) k->stash_tail = NULL;
    *fr = k->taken->bytes;
    *len = k->taken->len;
    return 1;
  }
  for (;;) {
    int r = proc_chan_next(k->chan, fr, len, &e), ms = -1;
    if (r == 1 && *len > 0) return 1;
    if (r < 0) return 0;
    /* a frame coming over the socket: only poll sees it come */
    if (!proc_chan_on_socket(k->chan) &&
        par_spin(PAR_WAIT_POOL, proc_chan_ready, k->chan, par_now() + 1))
      ms = 0;
    if (proc_chan_wait(k->chan, 1, ms, &e) != 0) {
      r = proc_chan_next(k->chan, fr, len, &e);
      return r == 1 && *len > 0;
    }
  }
}

/* Sends what k->out holds and waits until it is written: 0 or -1. */
static int send_all(conn *k) {
  par_wire_err e;
  if (proc_chan_send(k->chan, NULL, 0, k->out.data, k->out.len, &e) != 0) return -1;
  while (proc_chan_backlog(k->chan) > 0)
    if (proc_chan_wait(k->chan, 0, -1, &e) != 0) return -1;
  return 0;
}

static void frame_start(conn *k, unsigned char type) {
  par_buf_reset(&k->out);
  if (par_buf_reserve(&k->out, 16)) k->out.data[k->out.len++] = type;
}

static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* The pool's settings: the worker's state starts here (*ctx NULL when it
 * could not be made: tasks then fail as on a thread worker). -1 on bad
 * input. */
static int configure(conn *k, const unsigned char *p, size_t len, worker_config *cfg, void **ctx) {
  uint64_t limit;
  uint32_t index, np, nc;
  if (len < 20) return -1;
  memcpy(&limit, p, 8);
  index = get32(p + 8);
  np = get32(p + 12);
  nc = get32(p + 16);
  p += 20; len -= 20;
  if (len < (size_t)np + nc + 1) return -1;
  cfg->path = np ? strndup((const char *)p, np) : NULL;
  cfg->cpath = nc ? strndup((const char *)p + np, nc) : NULL;
  p += np + nc; len -= np + nc;
  cfg->memory_limit = (size_t)limit;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  limit = 0;    /* a sanitizer's own mappings count too: the kernel limit would fail them */
#endif
  if (limit) {
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(limit + PROCESS_OVERHEAD);
    setrlimit(RLIMIT_DATA, &rl);
  }
  *ctx = worker_ops.start(cfg, (int)index, &interrupted);
  if (!p[0] && k->ledger) atomic_store(&k->ledger->ready, 1);   /* no init to run */
  return 0;
}

/* The pool's init call (PF_INIT), once this process has a Lua state: a
 * function's prototype is read from its dump with the codec's help. -1 on
 * bad input. */
static int run_init(conn *k, const unsigned char *p, size_t len, worker_config *cfg, void *ctx) {
  par_wire_err e;
  if (cfg->init || par_wire_rebuild(k->peer, p, len, &cfg->init, &e) != PAR_WIRE_MESSAGE) return -1;
  if (ctx && worker_ops.init) {     /* init(init_args): interruptible like a task */
    begin_run(ctx, 0);
    worker_ops.init(ctx);
    end_run(ctx);
  }
  atomic_store(&k->ledger->ready, 1);   /* failed or not, tasks now start at once */
  return 0;
}

/* ------------------------------------------- shared objects: requests */

/* The last via: a queue, pipe end, dict, pool or future this process made
 * would need this process to serve requests for it, which a worker (one
 * thread, running tasks) does not: refused with what to do instead. A
 * queue, pipe or dict made with {owner = "parent"} is the parent's and
 * never comes here. */
static int refuse_own(void *ud, par_object *o, par_wire_handle *h, par_wire_err *e) {
  (void)ud; (void)h;
  if (!par_remote_claims(o)) return 1;
  if (o->type == &par_future_type)
    snprintf(e->msg, sizeof e->msg, "parallel.future created in a worker process cannot leave "
             "it (send its result instead, or submit to a pool the task was given)");
  else if (o->type == &par_pool_type)
    snprintf(e->msg, sizeof e->msg, "parallel.pool created in a worker process cannot leave it "
             "(its workers belong to that process: create the pool in the parent and pass "
             "it to the task)");
  else
    snprintf(e->msg, sizeof e->msg, "%s created in a worker process cannot leave it (make it "
             "with {owner = \"parent\"}, e.g. parallel.queue(n, {owner = \"parent\"}), or "
             "create it in the parent and pass it to the task)", o->type->name);
  return -1;
}

static int import_none(void *ud, const par_wire_handle *h, par_object **out, par_wire_err *e) {
  (void)ud; (void)h; (void)out; (void)e;
  return 1;
}


/* The client and the thread whose channel it uses (l_process_home). */
static par_remote_client *home;
static pthread_t home_thread;

struct par_remote_client *l_process_home(int *worker) {
  *worker = home != NULL;
  return home && pthread_equal(pthread_self(), home_thread) ? home : NULL;
}

/* The channel is the task thread's: a thread of a pool the task made
 * reading or writing it too would corrupt it. */
static int off_thread(par_wire_err *e) {
  if (pthread_equal(pthread_self(), home_thread)) return 0;
  return par_wire_fail(e, "objects of the parent process can be used only by the task's own "
                       "thread in a worker process, not by a thread pool the task made (use "
                       "them in the task, or pass the threads what they need)");
}

/* A request (or a cancel) of the running task to the parent; written out
 * before the task waits for the reply. */
static int link_send(void *ud, const void *body, size_t blen, int cancel, par_wire_err *e) {
  conn *k = (conn *)ud;
  unsigned char type = cancel ? PF_CANCEL : PF_REQUEST;
  if (off_thread(e)) return -1;
  if (proc_chan_send(k->chan, &type, 1, body, blen, e) != 0) return -1;
  while (proc_chan_backlog(k->chan) > 0)
    if (proc_chan_wait(k->chan, 0, -1, e) != 0) return -1;
  return 0;
}

/* Takes the frames that arrived: replies to their calls, the others kept
 * for next_frame. How many were taken, or -1 when the channel failed. */
static int take_arrived(conn *k, par_wire_err *e) {
  const unsigned char *fr;
  size_t len;
  int r, n = 0;
  while ((r = proc_chan_next(k->chan, &fr, &len, e)) == 1) {
    n++;
    if (len > 0 && fr[0] == PF_REPLY) {
      par_remote_client_deliver(k->remote, fr + 1, len - 1);
    } else {
      stashed *s = malloc(sizeof *s + len);
      if (!s) return -1;
      s->next = NULL;
      s->len = len;
      memcpy(s->bytes, fr, len);
      if (k->stash_tail) k->stash_tail->next = s;
      else k->stash = s;
      k->stash_tail = s;
    }
  }
  return r < 0 ? -1 : n;
}

/* Waits for the parent's replies until the deadline (a signal, the
 * interrupt, ends it early). 0, or -1 once the channel is gone. */
static int link_pump(void *ud, double deadline, par_wire_err *e) {
  conn *k = (conn *)ud;
  int n, ms;
  if (off_thread(e)) return -1;
  n = take_arrived(k, e);
  if (n != 0) return n < 0 ? -1 : 0;
  ms = (int)((deadline - par_now()) * 1000);
  if (proc_chan_wait(k->chan, 1, ms > 0 ? ms : 0, e) != 0) {
    take_arrived(k, e);
    return -1;
  }
  return take_arrived(k, e) < 0 ? -1 : 0;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The ledger says task seq started (its start time first): 0 if the
 * parent recalled it (a cancel) or killed the worker for it. */
static int start(conn *k, uint32_t seq) {
  atomic_store(&proc_slot_of(k->ledger, seq)->start_ns, now_ns());
  return proc_slot_move(k->ledger, seq, SLOT_QUEUED, SLOT_STARTED);
}

/* The parent killed this process for the task it means: no outcome, no
 * next task; SIGKILL is on its way. */
static void await_kill(void) {
  for (;;) pause();
}

/* A short frame: type and a task number. */
static int send_seq(conn *k, unsigned char type, uint32_t seq) {
  frame_start(k, type);
  memcpy(k->out.data + k->out.len, &seq, 4);
  k->out.len += 4;
  return send_all(k);
}

/* If the next task, sent ahead, has arrived already, it starts now and
 * the ledger says so before the outcome of this one goes out: the parent
 * learns both at once, with no frame of its own. */
static void prestart(conn *k) {
  const unsigned char *fr;
  size_t n;
  uint32_t seq;
  if (k->stash) {             /* frames that came while the task waited for a reply */
    fr = k->stash->bytes;
    n = k->stash->len;
  } else if (!proc_chan_peek(k->chan, &fr, &n)) {
    return;
  }
  if (n < 7 || fr[0] != PF_TASK || !fr[6]) return;
  memcpy(&seq, fr + 2, 4);
  if (start(k, seq)) k->prestarted = seq;
}

/* Lets the parent drop what it kept for this process and is no longer
 * used here (the task's arguments, once collected). 0, or -1 when the
 * channel failed. */
static int send_releases(conn *k) {
  size_t at;
  uint32_t n;
  int r;
  frame_start(k, PF_RELEASE);
  at = k->out.len;
  if (!par_buf_reserve(&k->out, 4)) return 0;
  k->out.len += 4;
  r = par_remote_client_releases(k->remote, &k->out);
  n = r > 0 ? (uint32_t)r : 0;
  memcpy(k->out.data + at, &n, 4);
  at = k->out.len;
  if (!par_buf_reserve(&k->out, 4)) return 0;
  k->out.len += 4;
  r = par_shm_via_releases(k->shm, &k->out);
  if (r < 0) r = 0;
  memcpy(k->out.data + at, &r, 4);
  if (n == 0 && r == 0) return 0;
  return send_all(k);
}

static int out_of_memory(const par_wire_err *e) {
  return strncmp(e->msg, "not enough memory", 17) == 0;
}

/* A task this process had no memory to receive: it fails (unless it was
 * recalled meanwhile), and the worker goes on. 0, or -1 when the channel
 * failed. */
static int drop_task(conn *k, uint32_t useq) {
  static const char text[] = "not enough memory (receiving the task's arguments)";
  if (k->prestarted == useq) {
    k->prestarted = 0;
  } else if (!start(k, useq)) {
    if (proc_slot_state(k->ledger, useq) == SLOT_KILLED) await_kill();
    return send_seq(k, PF_SKIPPED, useq);
  }
  if (send_releases(k) != 0) return -1;     /* what a half-rebuilt argument held */
  frame_start(k, PF_ERROR);
  if (!par_buf_reserve(&k->out, 4 + sizeof text)) return -1;
  memcpy(k->out.data + k->out.len, &useq, 4);
  k->out.len += 4;
  memcpy(k->out.data + k->out.len, text, sizeof text - 1);
  k->out.len += sizeof text - 1;
  if (!proc_slot_move(k->ledger, useq, SLOT_STARTED, SLOT_FINISHED)) await_kill();
  prestart(k);
  return send_all(k);
}

/* The parent no longer uses these of the objects this process made and
 * sent it (frames.h): 0, or -1 when malformed. */
static int take_releases(conn *k, const unsigned char *p, size_t len) {
  uint32_t n;
  if (len < 8 || get32(p) != 0) return -1;
  n = get32(p + 4);
  return par_shm_via_take_releases(k->shm, p + 8, len - 8, n) < 0 ? -1 : 0;
}

/* Rebuilds a task (with all of its segments) and runs it; sends the
 * outcome. -1 when the channel failed. */
static int serve_task(conn *k, void *ctx, const unsigned char *p, size_t len) {
  par_msg *m = NULL;
  par_future *f;
  par_wire_err e;
  int kind, state, seq, announce, dropped = 0;
  uint32_t useq;
  if (len < 6) return -1;
  kind = p[0];
  memcpy(&useq, p + 1, 4);
  announce = p[5];
  seq = (int)(useq & 0x7fffffff);
  if (par_wire_rebuild(k->peer, p + 6, len - 6, &m, &e) != PAR_WIRE_MESSAGE) {
    if (!out_of_memory(&e)) return -1;
    /* This process cannot hold it (RLIMIT_DATA): the task fails and the
     * worker goes on. A long argument's stream was not opened: its
     * segments are skipped up to its end. */
    if (par_wire_kind(p + 6, len - 6) == PAR_WIRE_K_FIRST) {
      const unsigned char *fr;
      size_t n;
      do {
        if (!next_frame(k, &fr, &n) || n < 2 || fr[0] != PF_MORE) return -1;
      } while (par_wire_kind(fr + 1, n - 1) != PAR_WIRE_K_END);
    }
    return drop_task(k, useq);
  }
  while (m->rest && !par_queue_closed((par_queue *)m->rest)) {
    const unsigned char *fr;
    size_t n;
    par_msg *none = NULL;
    if (!next_frame(k, &fr, &n) || n < 1 || fr[0] != PF_MORE) { par_msg_free(m); return -1; }
    if (par_wire_rebuild(k->peer, fr + 1, n - 1, &none, &e) == PAR_WIRE_ERROR) {
      if (!out_of_memory(&e)) { par_msg_free(m); return -1; }
      dropped = 1;
    }
    par_msg_free(none);
    if (dropped) {     /* the segments in so far go: the rest follow them */
      par_msg *seg;
      while (par_queue_pop((par_queue *)m->rest, &seg, 0) == PAR_OK) par_msg_free(seg);
    }
  }
  if (dropped) {
    par_msg_free(m);
    return drop_task(k, useq);
  }
  if (k->prestarted == useq) {
    k->prestarted = 0;
  } else if (!start(k, useq)) {
    par_msg_free(m);
    if (proc_slot_state(k->ledger, useq) == SLOT_KILLED) await_kill();
    return send_seq(k, PF_SKIPPED, useq);
  } else if (announce && send_seq(k, PF_STARTED, useq) != 0) {
    par_msg_free(m);
    return -1;
  }
  f = par_future_new(kind, m);
  if (!f) { par_msg_free(m); return -1; }
  par_future_claim(f);
  if (ctx) begin_run(ctx, seq);
  worker_ops.run(ctx, f);
  if (ctx) end_run(ctx);
  state = atomic_load(&f->state);
  if (send_releases(k) != 0) { par_object_release(&f->hdr); return -1; }
  frame_start(k, PF_DONE);
  k->out.data[k->out.len++] = (unsigned char)state;
  memcpy(k->out.data + k->out.len, &useq, 4);
  k->out.len += 4;
  if (f->result && par_wire_flatten(k->peer, f->result, &k->out, NULL, &e) != 0) {
    size_t n = strlen(e.msg);
    frame_start(k, PF_ERROR);
    memcpy(k->out.data + k->out.len, &useq, 4);
    k->out.len += 4;
    if (par_buf_reserve(&k->out, n)) { memcpy(k->out.data + k->out.len, e.msg, n); k->out.len += n; }
  }
  par_object_release(&f->hdr);
  if (!proc_slot_move(k->ledger, useq, SLOT_STARTED, SLOT_FINISHED)) await_kill();
  prestart(k);
  return send_all(k);
}

static int serve(conn *k) {
  worker_config cfg;
  void *ctx = NULL;
  const unsigned char *fr;
  size_t len;
  int status = 0, configured = 0;
  memset(&cfg, 0, sizeof cfg);
  cfg.own_process = 1;
  frame_start(k, PF_HELLO);
  if (par_wire_hello(&k->out) != 0 || send_all(k) != 0) return 1;
  while (next_frame(k, &fr, &len)) {
    par_wire_err e;
    if (fr[0] == PF_HELLO) {
      if (par_wire_check_hello(fr + 1, len - 1, &e) != 0) { status = 3; break; }
    } else if (fr[0] == PF_CONFIG && !configured) {
      if (configure(k, fr + 1, len - 1, &cfg, &ctx) != 0) { status = 4; break; }
      configured = 1;
    } else if (fr[0] == PF_INIT && configured) {
      if (run_init(k, fr + 1, len - 1, &cfg, ctx) != 0) { status = 4; break; }
    } else if (fr[0] == PF_TASK && configured) {
      if (serve_task(k, ctx, fr + 1, len - 1) != 0) break;
    } else if (fr[0] == PF_RELEASE) {
      if (take_releases(k, fr + 1, len - 1) != 0) { status = 4; break; }
    } else {
      status = 4;
      break;
    }
  }
  if (ctx) worker_ops.stop(ctx);
  worker_config_clear(&cfg);
  return status;
}

PARALLEL_API int parallel_worker_main(int argc, char **argv) {
  struct sigaction sa;
  conn k;
  int status;
  if (argc < 3 || strcmp(argv[1], PROC_WORKER_ARG) != 0) {
    proc_set_self_worker();
    return -1;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if ((long)getppid() != atol(argv[2])) return 1;   /* the parent is gone already */
  close_inherited();
  /* The channel, ledger and eventfds came through dup2, which clears
   * close-on-exec: a program a task starts (os.execute, io.popen) would
   * hold the socket open, and the parent would not see this process's end
   * until that program's. */
  {
    int fd;
    for (fd = PROC_CHANNEL_FD; fd <= PROC_PARENT_BELL_FD; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  /* Ctrl-C is for the parent, which decides what its pool does. */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_interrupt;
  sa.sa_flags = SA_RESTART | SA_SIGINFO;
  sigfillset(&sa.sa_mask);
  sigaction(SIGURG, &sa, NULL);
  memset(&k, 0, sizeof k);
  {
    par_wire_objects hooks;
    k.shm = par_shm_via_new(1);
    if (k.shm) {
      par_shm_via_peer(k.shm, (uint32_t)getppid());
      par_shm_via_attach(k.shm, &k.vias);
    }
    par_remote_link link;
    link.send = link_send;
    link.pump = link_pump;
    link.ud = &k;
    k.remote = par_remote_client_new(&link, (uint64_t)getppid());
    if (k.remote) par_remote_client_attach(&k.vias, k.remote);
    {
      par_wire_via own;
      own.export_obj = refuse_own;
      own.import_obj = import_none;
      own.ud = NULL;
      par_wire_vias_add(&k.vias, &own);
    }
    par_wire_vias_hooks(&k.vias, &hooks);
    k.peer = par_wire_peer_new(&hooks);
    if (k.remote) par_remote_client_set_peer(k.remote, k.peer);
  }
  k.ledger = proc_ledger_map(PROC_LEDGER_FD);
  ledger = k.ledger;
  if (k.ledger)
    k.chan = proc_chan_new(k.ledger, PROC_WORKER, PROC_CHANNEL_FD, PROC_BELL_FD, PROC_PARENT_BELL_FD);
  par_buf_init(&k.out);
  if (!k.chan || !k.peer || !k.remote || !k.ledger || !k.shm) return 1;
  par_remote_client_releases(k.remote, &k.out);   /* from now on, collected proxies count */
  home_thread = pthread_self();
  home = k.remote;
  status = serve(&k);
  proc_chan_free(k.chan);
  par_wire_peer_free(k.peer);
  par_remote_client_free(k.remote);
  /* the ledger stays mapped until the exit: a SIGURG's handler may read it */
  par_shm_via_free(k.shm);
  par_buf_free(&k.out);
  free(k.taken);
  while (k.stash) {
    stashed *next = k.stash->next;
    free(k.stash);
    k.stash = next;
  }
  return status;
}
