/*
 * Worker states: the Lua side of a pool's worker threads. Each worker owns
 * one lua_State with the standard libraries, the creator's package paths,
 * parallel.core, and what the pool's init function set up; it runs the
 * futures the pool hands it. Task kinds say what a future's message holds.
 */
#ifndef PAR_L_WORKER_H
#define PAR_L_WORKER_H

#include <stddef.h>
#include "lua.h"
#include "core/msg.h"
#include "core/pool.h"

enum { TASK_CALL = 0, TASK_MAP = 1, TASK_STARMAP = 2 };

typedef struct worker_config {
  par_msg *init;          /* init function and its arguments, or NULL */
  char *path, *cpath;     /* the creator's package.path / cpath */
  size_t memory_limit;    /* bytes per worker state; 0: none */
  long max_tasks;         /* a fresh state after this many tasks; 0: never */
  int own_process;        /* the state has a process of its own (a process
                             worker): os.exit ends only that process */
} worker_config;

/* Frees what cfg holds (init, the paths), not cfg itself: a pool's config,
 * a process pool's (l_process.h) and a worker process's. */
void worker_config_clear(worker_config *cfg);

extern const par_pool_ops worker_ops;

int luaopen_parallel_core(lua_State *L);

#endif
