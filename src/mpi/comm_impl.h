/*
 * The communication thread's own data (comm.c, root.c, serve.c): touched
 * by that thread alone, so nothing here is locked.
 */
#ifndef PAR_MPI_COMM_IMPL_H
#define PAR_MPI_COMM_IMPL_H

#include <mpi.h>
#include "mpi/comm.h"

typedef struct send_req {
  MPI_Request req;
  unsigned char *buf;            /* kept until the send completes */
} send_req;

typedef struct task_slot {       /* rank 0: a task sent to a rank */
  par_future *f;                 /* NULL: free */
  mpi_pool *pool;
  int rank;
  int next_free;
} task_slot;

typedef struct local_pool {      /* other ranks: a pool of worker threads */
  uint32_t id;
  par_pool *p;
  int workers;
} local_pool;

typedef struct local_task {      /* other ranks: a task running here */
  par_future *f;
  uint64_t id;
  int interrupt;                 /* rank 0 asked; not yet delivered */
} local_task;

typedef struct comm_impl {
  MPI_Comm comm;
  par_wire_peer **peers;         /* one per rank (rank 0: all others; else rank 0's) */
  send_req *sends;
  size_t nsends, capsends;
  unsigned char *rbuf;
  size_t rcap;
  par_buf out;
  /* rank 0 */
  mpi_pool **pools;
  size_t npools, cappools;
  task_slot *slots;
  int nslots, free_slot;
  int stopping, nstopped;
  char *stopped;
  double stop_deadline;
  /* other ranks */
  local_pool *lpools;
  size_t nlpools, caplpools;
  local_task *ltasks;
  size_t nltasks, capltasks;
  int stop_seen;
  struct rmpi *remote;           /* shared objects across ranks (remote_mpi.c) */
} comm_impl;

/* comm.c */
int comm_grow(void **p, size_t *cap, size_t need, size_t elem);
/* Sends head + the payload in im->out (after the header space reserved by
 * comm_begin) to dest without blocking; the buffer is kept until done. 0,
 * or -1 (out of memory, or a message over 2 GiB) with the reason in e. */
int comm_begin(comm_impl *im, const par_capi *api);
int comm_send(comm_impl *im, int dest, const mpi_head *h, par_wire_err *e);

/* root.c (rank 0): handle a command, a message; send what can go now. */
void root_command(mpi_state *st, comm_impl *im, mpi_cmd *c);
void root_message(mpi_state *st, comm_impl *im, int src, const mpi_head *h,
                  const unsigned char *payload, size_t len);
int root_dispatch(mpi_state *st, comm_impl *im);
void root_begin_stop(mpi_state *st, comm_impl *im);

/* serve.c (other ranks) */
void serve_message(mpi_state *st, comm_impl *im, const mpi_head *h,
                   const unsigned char *payload, size_t len);
int serve_collect(mpi_state *st, comm_impl *im);
/* Waits up to `seconds` for a local task to finish. */
void serve_idle(mpi_state *st, comm_impl *im, double seconds);
/* 1 when every local worker has a task (more wait behind them): then
 * nothing this rank receives can start sooner, and spinning would only
 * take a core from a worker. */
int serve_all_busy(comm_impl *im);
void serve_stop(mpi_state *st, comm_impl *im);

#endif
