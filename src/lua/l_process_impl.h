/*
 * The process backend's parent side, shared by its files (not part of the
 * library's interface): the context of one pool worker and its process
 * (proc_ctx), its spare, its tasks in flight, and what each file gives
 * the others.
 *
 *   l_process.c         the par_pool_ops: a slot's start and stop, run,
 *                       park, offer, interrupt, kill
 *   l_process_spawn.c   the worker's life: spawning, the spare, take-over
 *                       and the end of a process
 *   l_process_flight.c  tasks in flight: sending them, ahead or not, the
 *                       ledger's sweep, rebalance, timeouts
 *   l_process_io.c      the I/O loop per worker: frames in, waits, deaths
 *
 * Threads: everything in these files runs on the pool worker thread that owns the
 * process (its I/O thread), except l_process_interrupt (a signal handler on
 * that same thread), the recall of a task sent ahead (any thread that
 * cancels it, with the future's mutex held) and process_kill (any thread,
 * with the pool worker's mutex held while the task it means is its
 * current one). `pid_mu` guards `pid` between a kill and the reaping of
 * the process (the pid is cleared under it before waitpid, so a kill never
 * reaches a pid the kernel gave to someone else) and the flights' futures
 * that a kill looks up.
 *
 * The functions shared here carry the l_process_ prefix, as every
 * symbol of libparallel.a has one: a host that links it statically may
 * have a `fail` or a `launch` of its own.
 */
#ifndef PAR_L_PROCESS_IMPL_H
#define PAR_L_PROCESS_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lua.h"
#include "core/future.h"
#include "core/msg.h"
#include "lua/l_process.h"
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
  uint32_t seq;              /* the number of the task sent last (never 0) */
  atomic_int running_seq;    /* the task an interrupt means (lock-free: the signal
                                handler reads it; a submit's offer writes it) */
  _Atomic int *interrupted;  /* the pool worker's flag: an interrupt is asked */
  par_buf out;               /* a frame being built */
  char fatal[600];           /* set: no worker can run here; tasks fail with it */
  int unprepared;            /* fatal only until prepare() succeeds */
  int took_spare;            /* the process was a spare, ready before it took over */
  atomic_int idle_gone;      /* parked, this side saw the socket close: no offer */
  atomic_int parked;         /* the pool worker sleeps in park's poll, done with
                                the channel: a waiter may help (l_process_help) */
  int fault;                 /* a frame a helper took broke the conversation
                                (OUTCOME_*): l_process_run_flights ends the process */
  char broke[300];           /* why this side stopped the conversation, if it did */
};

/* l_process_spawn.c */
int l_process_put(par_buf *b, const void *p, size_t n);
int l_process_send_out(proc_ctx *c, par_wire_err *e);
void l_process_start_frame(proc_ctx *c, unsigned char type);
int l_process_launch(proc_ctx *c, char *why, size_t size);
void l_process_keep_spare(proc_ctx *c);
void l_process_finish_process(proc_ctx *c, double grace, char *why, size_t size);
void l_process_drop_spare(proc_ctx *c);

/* l_process_flight.c */
void l_process_fail(proc_ctx *c, par_future *f, const char *text);
flight *l_process_flight_of(proc_ctx *c, uint32_t seq);
void l_process_set_flight(proc_ctx *c, flight *x, par_future *f);
void l_process_resolve(proc_ctx *c, flight *x, int release);
void l_process_mark_started(proc_ctx *c, flight *x);
int l_process_kill_flight(proc_ctx *c, flight *x, int why);
int l_process_dispatch(proc_ctx *c, par_future *f, int claimed);
double l_process_rebalance(proc_ctx *c);
int l_process_fill(proc_ctx *c);
void l_process_interrupt_init(proc_ctx *c);
void l_process_sweep(proc_ctx *c);
double l_process_expire(proc_ctx *c);

/* l_process_io.c */
void l_process_run_flights(proc_ctx *c);

/* l_process.c */
void l_process_interrupt(void *ctx);
/* The flight of f, if a submit sent it already (l_process_offer). */
flight *l_process_offered_flight(proc_ctx *c, par_future *f);
int l_process_help(void *ctx, par_future *f, double deadline, _Atomic int *stop);
void l_process_stop_help(void *ctx);

#endif
