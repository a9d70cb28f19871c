/*
 * parallel.mpi: the same pools across the ranks of an MPI job.
 *
 * Threads. On every rank one communication thread (comm.c) is the only
 * caller of MPI: it calls MPI_Init_thread (FUNNELED, so it is MPI's "main
 * thread"), and MPI_Finalize at the end. Rank 0 runs the script on its
 * main thread, which hands commands (new pool, task, pool end, stop) to the
 * communication thread through `outbox`; the other ranks' main threads only
 * wait for the end (luaopen_parallel_mpi serves, then exits the process),
 * and their communication thread runs tasks on local thread pools.
 *
 * Locking. `mu` guards the outbox, `phase`, `error`, each rank-0 pool's
 * ready/ended fields, and `comm_sleeping`; `cv` wakes both sides (the
 * communication thread when it sleeps idle and a command arrives, the main
 * thread waiting for start-up, a pool's readiness or its end). Everything
 * else (peers, task slots, local pools, pending sends) belongs to the
 * communication thread alone. No Lua error is raised while `mu` is held.
 *
 * Ownership. A command's future and messages belong to the outbox, then to
 * the communication thread, which finishes the future (rank 0) and drops
 * its reference. A rank-0 pool (mpi_pool) is reference-counted: the Lua
 * handle and the communication thread (until the pool has ended on every
 * rank) each hold one.
 *
 * Protocol. Every message is one MPI message (tag 0 on a duplicate of
 * MPI_COMM_WORLD): an mpi_head, then a payload flattened by the wire layer.
 * MPI keeps messages between two ranks in order, which the stop handshake
 * relies on: a rank's STOPPED arrives after all its results.
 */
#ifndef PAR_MPI_COMM_H
#define PAR_MPI_COMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "lua/capi.h"

#define MPI_MODULE_VERSION "0.1.0"
#define MPI_HOST_MAX 64
#define MPI_FP_MAX 256

enum {
  K_POOL_NEW = 1,   /* 0 -> r: arg workers (0: the host's cores); paths, init */
  K_POOL_READY,     /* r -> 0: arg workers started, or -1 and the reason */
  K_POOL_END,       /* 0 -> r */
  K_TASK,           /* 0 -> r: id, state = task kind; the task */
  K_RESULT,         /* r -> 0: id, state = DONE/FAILED; the result (may be empty) */
  K_INTERRUPT,      /* 0 -> r: id */
  K_STOP,           /* 0 -> r */
  K_STOPPED,        /* r -> 0 */
  K_REQUEST,        /* r -> 0: a task's call on a shared object rank 0 owns (remote_mpi.c) */
  K_REPLY,          /* 0 -> r: its reply */
  K_CANCEL          /* r -> 0: the task waiting for it was interrupted */
};

typedef struct mpi_head {
  uint32_t kind, pool;
  uint64_t id;
  int32_t state, arg;
} mpi_head;

enum { PH_STARTING, PH_RUNNING, PH_FAILED, PH_STOPPING, PH_FINALIZING, PH_STOPPED };

typedef struct mpi_pool mpi_pool;

/* Rank 0's view of a pool spread over the other ranks. */
struct mpi_pool {
  par_object hdr;                /* owner of its futures (their sink) */
  uint32_t id;
  int depth;                     /* tasks in flight per remote worker */
  int workers_req;               /* 0: each host's cores */
  /* guarded by mpi_state.mu */
  int ready, failed, ended, closing;
  int total_workers;
  char error[256];
  /* communication thread only */
  int *workers, *inflight;       /* per rank */
  par_future **pending;          /* FIFO of futures not yet sent */
  size_t phead, pcount, pcap;
  int end_sent;
  /* counters (stats) */
  atomic_llong submitted, started, completed, failed_n, cancelled;
  /* pool:fd()/completed(): futures finished since the last completed(),
   * listed by the sink (any thread) under done_mu once fd was asked for */
  pthread_mutex_t done_mu;
  int notify_fd;                 /* -1 until asked for; done_mu */
  par_future *done_head, *done_tail;
};

typedef struct mpi_cmd {
  struct mpi_cmd *next;
  int kind;                      /* K_POOL_NEW, K_TASK, K_POOL_END, K_INTERRUPT, K_STOP */
  mpi_pool *pool;                /* a reference, dropped by the thread */
  par_future *f;                 /* a reference (K_TASK, K_INTERRUPT) */
  par_msg *init;                 /* K_POOL_NEW */
  char *path, *cpath;            /* K_POOL_NEW */
  int cancel;                    /* K_POOL_END */
} mpi_cmd;

typedef struct mpi_state {
  const par_capi *api;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int phase;
  char error[1024];
  mpi_cmd *out_head, *out_tail;
  int comm_sleeping;
  int rank, size;
  char (*hosts)[MPI_HOST_MAX];
  int *cores;
  double spin, idle_cap, stop_timeout;   /* seconds */
  double finalize_start;                 /* when PH_FINALIZING began (api->now) */
  int abandoned;                         /* MPI_Finalize given up on: end with _exit */
  void *impl;                            /* the thread's own data (comm.c) */
} mpi_state;

/* Starts the communication thread and waits for MPI to be up: 0, or -1
 * with st->error set (the other ranks then fail the same way). */
int mpi_start(mpi_state *st, const par_capi *api);
/* Rank 0: stops every rank and finalizes MPI; safe to repeat. Returns once
 * done (or after MPI_Abort when a rank does not answer in time). If
 * MPI_Finalize has not returned stop_timeout after every rank stopped, it
 * returns anyway with st->abandoned set: the process must then end with
 * _exit (exit would run MPI's destructors under the thread still in it). */
void mpi_stop(mpi_state *st);
/* Other ranks: waits until rank 0 said stop and MPI is finalized; 0, or -1
 * when MPI_Finalize was given up on as above. */
int mpi_wait_end(mpi_state *st);
/* Queues a command for the communication thread (takes it). */
void mpi_post(mpi_state *st, mpi_cmd *c);
void mpi_pool_release(mpi_pool *p);

/* An error message for a failed future, made without a Lua state of the
 * caller: (text, "", nil) encoded as a worker's failure. NULL on failure. */
par_msg *mpi_error_msg(const par_capi *api, const char *text);

#endif
