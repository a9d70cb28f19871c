/*
 * parallel.mpi: the Lua face of the MPI backend.
 *
 * Loading the module starts MPI (comm.c) once per process. On rank 0 it
 * returns the module, and the script makes pools with
 * parallel.pool{backend = "mpi"} (the facade calls _pool here); on the
 * other ranks loading it serves tasks until rank 0 says stop, then ends
 * the process: that is the launch line's contract,
 *   mpirun -n 5 lua5.4 -l parallel.mpi script.lua
 * A worker thread of any rank may load it too, to ask rank() and friends.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "lauxlib.h"
#include "mpi/comm.h"
#include "lua/l_worker.h"

#define POOL_META "parallel.mpi.pool"

static mpi_state st;
static int loaded;            /* set once, by the first state to load us */
static const par_capi *api;

typedef struct pool_ud {
  mpi_pool *p;
  int closed;
} pool_ud;

/* Takes the futures listed for completed() (a list via next_done) and
 * clears the descriptor, under done_mu. close_fd: the handle is going, so
 * nothing is listed from now on and the descriptor is closed. */
static par_future *take_done(mpi_pool *p, int close_fd) {
  par_future *list;
  uint64_t n;
  pthread_mutex_lock(&p->done_mu);
  list = p->done_head;
  p->done_head = p->done_tail = NULL;
  if (p->notify_fd >= 0) {
    if (read(p->notify_fd, &n, sizeof n) < 0) { /* nothing to clear */ }
    if (close_fd) {
      close(p->notify_fd);
      p->notify_fd = -1;
    }
  }
  pthread_mutex_unlock(&p->done_mu);
  return list;
}

static void release_list(par_future *f) {
  while (f) {
    par_future *next = f->next_done;
    api->release(&f->hdr);
    f = next;
  }
}

static void mpi_pool_destroy(par_object *o) {
  mpi_pool *p = (mpi_pool *)o;
  release_list(take_done(p, 1));
  pthread_mutex_destroy(&p->done_mu);
  free(p->workers);
  free(p->inflight);
  free(p->pending);
  free(p);
}

static const par_type mpi_pool_type = { "parallel.mpi.pool", mpi_pool_destroy };

void mpi_pool_release(mpi_pool *p) {
  api->release(&p->hdr);
}

/* The pool learns its futures' outcomes (stats) and passes interrupts on
 * to the rank running the task. */
static void sink_count(par_object *o, int state) {
  mpi_pool *p = (mpi_pool *)o;
  if (state == PAR_DONE) atomic_fetch_add(&p->completed, 1);
  else if (state == PAR_FAILED) atomic_fetch_add(&p->failed_n, 1);
  else if (state == PAR_CANCELLED) atomic_fetch_add(&p->cancelled, 1);
}

/* With f's mutex held (any thread: the communication thread finishing a
 * result, the script cancelling): stores the outcome, and lists f for
 * completed() in the same critical section, as the thread pool does. */
static void sink_notice(par_object *o, par_future *f, int state) {
  mpi_pool *p = (mpi_pool *)o;
  uint64_t one = 1;
  pthread_mutex_lock(&p->done_mu);
  if (p->notify_fd >= 0) {
    api->retain(&f->hdr);
    f->next_done = NULL;
    if (p->done_tail) p->done_tail->next_done = f; else p->done_head = f;
    p->done_tail = f;
    /* under the mutex: a drained descriptor never turns readable again
     * with nothing listed */
    if (write(p->notify_fd, &one, sizeof one) < 0) { /* counter full: already readable */ }
  }
  atomic_store(&f->state, state);
  pthread_mutex_unlock(&p->done_mu);
}

static int sink_interrupt(par_object *o, par_future *f) {
  mpi_cmd *c;
  if (api->future_state(f) != PAR_RUNNING || !(c = calloc(1, sizeof *c))) return 0;
  c->kind = K_INTERRUPT;
  c->f = (par_future *)api->retain(&f->hdr);
  c->pool = (mpi_pool *)api->retain(o);
  mpi_post(&st, c);
  return 1;
}

static const par_future_sink mpi_sink = { sink_count, sink_notice, sink_interrupt };

static pool_ud *check_pool(lua_State *L, int open) {
  pool_ud *u = (pool_ud *)luaL_checkudata(L, 1, POOL_META);
  if (open && u->closed) luaL_error(L, "pool is shut down");
  return u;
}

/* Shared objects do not cross ranks: refuse them here, where the caller
 * can see it, rather than fail the task later. */
static void check_local_only(lua_State *L, par_msg *m) {
  size_t i;
  for (i = 0; i < m->nrefs; i++)
    if (m->refs[i]->type != api->proto_type && !api->remote_claims(m->refs[i])) {
      const char *name = m->refs[i]->type->name;
      api->msg_free(m);
      luaL_error(L, "cannot send %s to another rank", name);
    }
}

static int post_task(lua_State *L, pool_ud *u, int kind, par_msg *m) {
  par_future *f;
  mpi_cmd *c;
  check_local_only(L, m);
  f = api->future_new(kind, m);
  c = calloc(1, sizeof *c);
  if (!f || !c) {
    if (f) api->release(&f->hdr); else api->msg_free(m);
    free(c);
    return luaL_error(L, "not enough memory");
  }
  api->future_adopt(f, &u->p->hdr, &mpi_sink);
  c->kind = K_TASK;
  c->f = (par_future *)api->retain(&f->hdr);
  c->pool = (mpi_pool *)api->retain(&u->p->hdr);
  atomic_fetch_add(&u->p->submitted, 1);
  api->push_object(L, &f->hdr);   /* the proxy takes the first reference */
  mpi_post(&st, c);
  return 1;
}

/* pool:submit(fn, ...) --> future */
static int l_submit(lua_State *L) {
  pool_ud *u = check_pool(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  return post_task(L, u, TASK_CALL, api->encode_call(L, 2, lua_gettop(L) - 1));
}

/* pool:_chunk(fn, list, first, last, star [, label]): as the thread pool's */
static int l_chunk(lua_State *L) {
  pool_ud *u = check_pool(L, 1);
  lua_Integer first = luaL_checkinteger(L, 4), last = luaL_checkinteger(L, 5);
  int star = lua_toboolean(L, 6);
  lua_Integer label = luaL_optinteger(L, 7, first);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, first >= 1 && last >= first, 4, "empty chunk");
  return post_task(L, u, star ? TASK_STARMAP : TASK_MAP,
                   api->encode_chunk(L, 2, 3, first, last, label, star));
}

static void set_int(lua_State *L, const char *k, long long v) {
  lua_pushinteger(L, (lua_Integer)(v > 0 ? v : 0));
  lua_setfield(L, -2, k);
}

/* pool:stats(): the thread pool's fields; workers counts every rank's */
static int l_stats(lua_State *L) {
  pool_ud *u = check_pool(L, 0);
  mpi_pool *p = u->p;
  /* read in the order they grow: no count runs ahead of the one before */
  long long done = atomic_load(&p->completed), failed = atomic_load(&p->failed_n),
            cancelled = atomic_load(&p->cancelled), started = atomic_load(&p->started),
            submitted = atomic_load(&p->submitted);
  lua_createtable(L, 0, 10);
  set_int(L, "workers", p->total_workers);
  set_int(L, "ranks", st.size - 1);
  set_int(L, "submitted", submitted);
  set_int(L, "completed", done);
  set_int(L, "failed", failed);
  set_int(L, "cancelled", cancelled);
  set_int(L, "pending", submitted - started - cancelled);
  set_int(L, "running", started - done - failed);
  lua_pushliteral(L, "mpi");
  lua_setfield(L, -2, "backend");
  lua_newtable(L);
  lua_setfield(L, -2, "busy");
  lua_pushboolean(L, u->closed);
  lua_setfield(L, -2, "shutdown");
  return 1;
}

/* pool:fd() --> a descriptor readable when futures of the pool finish */
static int l_fd(lua_State *L) {
  mpi_pool *p = check_pool(L, 0)->p;
  if (!p) return luaL_error(L, "pool is shut down");
  int fd;
  pthread_mutex_lock(&p->done_mu);
  if (p->notify_fd < 0) p->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  fd = p->notify_fd;
  pthread_mutex_unlock(&p->done_mu);
  if (fd < 0) return luaL_error(L, "cannot create the completion descriptor");
  lua_pushinteger(L, fd);
  return 1;
}

/* pool:completed() --> the futures finished since the last call */
static int l_completed(lua_State *L) {
  mpi_pool *p = check_pool(L, 0)->p;
  if (!p) return luaL_error(L, "pool is shut down");
  par_future *f;
  lua_Integer i = 0;
  api->wait_callbacks(L);
  lua_newtable(L);
  f = take_done(p, 0);
  while (f) {
    par_future *next = f->next_done;
    api->push_object(L, &f->hdr);   /* the list's reference moves to the proxy */
    lua_rawseti(L, -2, ++i);
    f = next;
  }
  return 1;
}

static int l_closed(lua_State *L) {
  lua_pushboolean(L, check_pool(L, 0)->closed);
  return 1;
}

static void end_pool(pool_ud *u, int cancel, int wait) {
  mpi_cmd *c;
  if (u->closed) return;
  u->closed = 1;
  c = calloc(1, sizeof *c);
  if (!c) return;     /* the pool then lives until the job ends */
  c->kind = K_POOL_END;
  c->cancel = cancel;
  c->pool = (mpi_pool *)api->retain(&u->p->hdr);
  mpi_post(&st, c);
  if (!wait) return;
  pthread_mutex_lock(&st.mu);
  while (!u->p->ended && st.phase == PH_RUNNING) pthread_cond_wait(&st.cv, &st.mu);
  pthread_mutex_unlock(&st.mu);
}

static int opt_flag(lua_State *L, int idx, const char *field, int def) {
  int v = def;
  if (lua_getfield(L, idx, field) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* pool:shutdown{wait = true, cancel = false} */
static int l_shutdown(lua_State *L) {
  pool_ud *u = check_pool(L, 0);
  int wait = 1, cancel = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    wait = opt_flag(L, 2, "wait", 1);
    cancel = opt_flag(L, 2, "cancel", 0);
  }
  end_pool(u, cancel, wait);
  return 0;
}

static int l_pool_gc(lua_State *L) {
  pool_ud *u = (pool_ud *)luaL_checkudata(L, 1, POOL_META);
  if (u->p) {
    end_pool(u, 1, 0);
    /* No one can call completed() any more: drop the list, whose futures
     * hold the pool, and list nothing from now on. */
    release_list(take_done(u->p, 1));
    mpi_pool_release(u->p);
    u->p = NULL;
  }
  return 0;
}

static int l_pool_close(lua_State *L) {
  pool_ud *u = (pool_ud *)luaL_checkudata(L, 1, POOL_META);
  if (u->p) end_pool(u, 0, 1);
  return 0;
}

static int l_pool_tostring(lua_State *L) {
  pool_ud *u = (pool_ud *)luaL_checkudata(L, 1, POOL_META);
  lua_pushfstring(L, "parallel.pool (mpi, %d ranks): %p", st.size - 1, (void *)u);
  return 1;
}

static char *package_field(lua_State *L, const char *field) {
  char *copy = NULL;
  int base = lua_gettop(L);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1) && lua_getfield(L, -1, field) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    copy = malloc(n + 1);
    if (copy) memcpy(copy, s, n + 1);
  }
  lua_settop(L, base);
  return copy;
}

static int opt_count(lua_State *L, const char *field, int def, int max) {
  int v = def;
  if (lua_getfield(L, 1, field) != LUA_TNIL) {
    int isint;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    if (!isint || n < 1 || n > max) {
      char msg[64];
      snprintf(msg, sizeof msg, "%s must be a positive integer", field);
      luaL_argerror(L, 1, msg);
    }
    v = (int)n;
  }
  lua_pop(L, 1);
  return v;
}

/* mpi._pool{workers =, depth =, init =, init_args =} (parallel.pool with
 * backend = "mpi"): a pool over every other rank, workers threads each
 * (default: each host's cores), depth tasks in flight per worker (default 8). */
static int l_pool(lua_State *L) {
  static uint32_t next_id = 1;
  int workers = 0, depth, top, failed;
  par_msg *init = NULL;
  mpi_pool *p;
  pool_ud *u;
  mpi_cmd *c;
  char err[300];
  luaL_checktype(L, 1, LUA_TTABLE);
  if (st.rank != 0) return luaL_error(L, "parallel.mpi: pools are made on rank 0 (this is rank %d)", st.rank);
  if (st.size < 2)
    return luaL_error(L, "parallel.mpi: no other ranks to run tasks (start with mpirun -n 2 or more)");
  if (lua_getfield(L, 1, "workers") != LUA_TNIL) workers = opt_count(L, "workers", 0, 4096);
  lua_pop(L, 1);
  depth = opt_count(L, "depth", 8, 1024);
  top = lua_gettop(L);
  if (lua_getfield(L, 1, "init") != LUA_TNIL) {
    int nargs = 0;
    if (lua_type(L, -1) != LUA_TFUNCTION) luaL_argerror(L, 1, "init must be a function");
    if (lua_getfield(L, 1, "init_args") == LUA_TTABLE) {
      int t = lua_gettop(L), j, k = (int)lua_rawlen(L, t);
      luaL_checkstack(L, k, "too many init_args");
      for (j = 1; j <= k; j++) lua_rawgeti(L, t, j);
      lua_remove(L, t);
      nargs = k;
    } else if (!lua_isnil(L, -1)) {
      luaL_argerror(L, 1, "init_args must be a table");
    } else {
      lua_pop(L, 1);
    }
    init = api->encode_call(L, top + 1, nargs + 1);
    check_local_only(L, init);
  }
  lua_settop(L, top);
  u = (pool_ud *)lua_newuserdatauv(L, sizeof *u, 0);
  u->p = NULL;
  u->closed = 1;
  luaL_setmetatable(L, POOL_META);
  p = calloc(1, sizeof *p);
  c = calloc(1, sizeof *c);
  if (!p || !c) {
    free(p); free(c); api->msg_free(init);
    return luaL_error(L, "not enough memory");
  }
  p->hdr.type = &mpi_pool_type;
  atomic_init(&p->hdr.refs, 2);   /* the handle and the command */
  pthread_mutex_init(&p->done_mu, NULL);
  p->notify_fd = -1;
  p->id = next_id++;
  p->depth = depth;
  p->workers_req = workers;
  u->p = p;
  c->kind = K_POOL_NEW;
  c->pool = p;
  c->init = init;
  c->path = package_field(L, "path");
  c->cpath = package_field(L, "cpath");
  mpi_post(&st, c);
  pthread_mutex_lock(&st.mu);
  while (p->ready < st.size - 1 && !p->failed && st.phase == PH_RUNNING)
    pthread_cond_wait(&st.cv, &st.mu);
  failed = p->failed || st.phase != PH_RUNNING;
  snprintf(err, sizeof err, "%s", p->failed ? p->error : "MPI has stopped");
  pthread_mutex_unlock(&st.mu);
  u->closed = 0;
  if (failed) {
    end_pool(u, 1, 0);
    return luaL_error(L, "cannot start the mpi pool: %s", err);
  }
  return 1;
}

static int l_rank(lua_State *L) { lua_pushinteger(L, st.rank); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, st.size); return 1; }

/* hosts() --> {host of rank 0, host of rank 1, ...} */
static int l_hosts(lua_State *L) {
  int i;
  lua_createtable(L, st.size, 0);
  for (i = 0; i < st.size; i++) {
    lua_pushstring(L, st.hosts[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_sentinel_gc(lua_State *L) {
  (void)L;
  mpi_stop(&st);
  return 0;
}

/* The process ends: stop the job first. If MPI_Finalize was given up on,
 * its thread is still inside MPI, so end here with the script's status
 * rather than run the MPI libraries' destructors under it. */
static void at_exit(int status, void *arg) {
  (void)arg;
  mpi_stop(&st);
  if (st.abandoned) {
    fflush(NULL);
    _exit(status);
  }
}

static const luaL_Reg pool_methods[] = {
  {"submit", l_submit},
  {"_chunk", l_chunk},
  {"stats", l_stats},
  {"_closed", l_closed},
  {"shutdown", l_shutdown},
  {"fd", l_fd},
  {"completed", l_completed},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"rank", l_rank},
  {"size", l_size},
  {"hosts", l_hosts},
  {"_pool", l_pool},
  {NULL, NULL}
};

static const par_capi *get_capi(lua_State *L) {
  const par_capi *a;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "parallel.core");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "_capi");
  a = (const par_capi *)lua_touserdata(L, -1);
  if (!a || a->abi != PAR_CAPI_ABI || a->size != sizeof(par_capi) || strcmp(a->version, MPI_MODULE_VERSION) != 0)
    luaL_error(L, "parallel.mpi %s does not match the parallel.core it found (%s): install both from one build",
               MPI_MODULE_VERSION, a ? a->version : "without a C interface");
  lua_pop(L, 2);
  return a;
}

static void make_pool_meta(lua_State *L) {
  if (!luaL_newmetatable(L, POOL_META)) { lua_pop(L, 1); return; }
  luaL_newlib(L, pool_methods);
  /* The map family and apply are the facade's, written over submit and
   * _chunk: the thread pool's methods serve as the fallback. */
  lua_createtable(L, 0, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "parallel.core");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "_methods");
  lua_pushliteral(L, "parallel.pool");
  lua_call(L, 1, 1);
  lua_remove(L, -2);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_pool_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_pool_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_pool_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

__attribute__((visibility("default"))) int luaopen_parallel_mpi(lua_State *L);
__attribute__((visibility("default"))) int luaopen_parallel_mpi(lua_State *L) {
  luaL_checkversion(L);
  if (!loaded) {
    api = get_capi(L);
    loaded = 1;
    if (mpi_start(&st, api) != 0) return luaL_error(L, "parallel.mpi: %s", st.error);
    if (st.rank != 0) {
      /* Serve until rank 0 says stop; MPI is finalized by then. */
      if (mpi_wait_end(&st) != 0) {
        fflush(NULL);
        _exit(0);
      }
      exit(0);
    }
    on_exit(at_exit, NULL);
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_sentinel_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "parallel.mpi.sentinel");
  }
  make_pool_meta(L);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, MPI_MODULE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
