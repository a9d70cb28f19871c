/*
 * The process backend: parallel.pool{backend = "process"}. The core pool
 * (core/pool.c) is unchanged: each of its worker threads owns one worker
 * process (process/spawn.h) and runs the futures it takes by sending them
 * there over a wire channel (wire/wire.h, process/frames.h) and waiting
 * for the outcome. So the facade, futures, waits, pool:fd() and stats are
 * the thread pool's own.
 *
 * The worker process runs the task with the thread backend's worker code
 * (l_worker.c): same state setup, init, memory limit and failures.
 * A worker process that dies fails the one task it was running (one task
 * is in flight per worker) and is replaced before the next.
 */
#ifndef PAR_L_PROCESS_H
#define PAR_L_PROCESS_H

#include <limits.h>
#include <stddef.h>
#include "lua.h"
#include "core/msg.h"
#include "core/pool.h"
#include "lua/l_worker.h"

typedef struct proc_config {
  /* what a worker process's state gets (init, paths, memory limit: the
   * kernel's too); max_tasks replaces the process */
  worker_config w;
  int ahead;              /* tasks sent beyond the one running; -1: by their recent time */
  char exe[PATH_MAX];     /* the worker executable */
} proc_config;

extern const par_pool_ops process_ops;

/* Whether o can go to a worker process (a function's prototype, or a
 * shared object one of the vias of wire/objects.h carries): the submit
 * refuses the others at once, naming them. */
int process_can_send(const par_object *o);

/* The parent's objects as a worker process's task sees them (wire/remote.h):
 * the client that reaches the pool's process, on the thread that runs
 * the tasks; NULL in any other process or thread (its channel is that
 * thread's alone). *worker says whether this is a worker process. */
struct par_remote_client *l_process_home(int *worker);

/* Serves as a worker when argv says so (the worker executable's main, or
 * an embedding host's); see include/parallel.h. */
int parallel_worker_main(int argc, char **argv);

#endif
