/* parallel.pool: the Lua face of a core pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "codec/proto.h"
#include "process/ledger.h"
#include "process/spawn.h"
#include "lua/l_object.h"
#include "lua/l_options.h"
#include "lua/l_pool.h"
#include "lua/l_process.h"
#include "lua/l_wait.h"
#include "lua/l_worker.h"
#include "core/pool.h"
#include "wire/shmvia.h"

static char *dup_field(lua_State *L, const char *field) {
  const char *s;
  char *copy = NULL;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1) && lua_getfield(L, -1, field) == LUA_TSTRING) {
    size_t n;
    s = lua_tolstring(L, -1, &n);
    copy = malloc(n + 1);
    if (copy) memcpy(copy, s, n + 1);
    lua_pop(L, 1);
  } else if (lua_istable(L, -1)) {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return copy;
}

static int check_workers(lua_State *L, int idx, int arg) {
  lua_Integer n;
  int isint;
  n = lua_tointegerx(L, idx, &isint);
  if (!isint || n < 1 || n > 4096)
    luaL_argerror(L, arg, "workers must be a positive integer");
  return (int)n;
}

static const l_option pool_options[] = {
  {"workers", "count"}, {"init", "function"}, {"init_args", "table"}, {"memory_limit", "size"},
  {"backend", "threads|process"},   /* "mpi" is the facade's (parallel.mpi) */
  {"max_tasks_per_worker", "count"}, {"tasks_ahead", "size"},
  {NULL, NULL}
};

/* Raises unless every shared object in m can go to a worker process
 * (m is freed first): "cannot send parallel.x to another process". */
static void check_crossing(lua_State *L, par_msg *m, const char *what) {
  size_t i;
  for (i = 0; i < m->nrefs; i++) {
    par_object *o = m->refs[i];
    par_wire_err e;
    int r;
    if (process_can_send(o)) continue;
    r = par_shm_via_carries(o, &e);
    if (r > 0) continue;
    if (r == 0) snprintf(e.msg, sizeof e.msg, "cannot send %s to another process", o->type->name);
    par_msg_free(m);
    if (what) luaL_error(L, "bad argument #1 to 'pool' (%s: %s)", what, e.msg);
    luaL_error(L, "%s", e.msg);
  }
}

/* What every worker state of a pool gets (cfg takes init). */
static void set_worker_config(lua_State *L, worker_config *cfg, par_msg *init, lua_Integer limit,
                              lua_Integer max_tasks) {
  cfg->init = init;
  cfg->memory_limit = (size_t)limit;
  cfg->max_tasks = (long)max_tasks;
  cfg->path = dup_field(L, "path");
  cfg->cpath = dup_field(L, "cpath");
}

/* The process backend's settings; raises (freeing init) when it cannot
 * run here. */
static proc_config *process_config(lua_State *L, par_msg *init, lua_Integer limit,
                                   lua_Integer max_tasks, int ahead) {
  proc_config *cfg;
  char why[PATH_MAX + 200];
  if (!proc_worker_path(why, sizeof why)) {
    par_msg_free(init);
    luaL_error(L, "cannot make a process pool: %s", why);
  }
  if (init) check_crossing(L, init, "init_args");
  cfg = calloc(1, sizeof *cfg);
  if (!cfg) { par_msg_free(init); luaL_error(L, "not enough memory"); return NULL; }
  snprintf(cfg->exe, sizeof cfg->exe, "%.*s", (int)sizeof cfg->exe - 1, why);
  set_worker_config(L, &cfg->w, init, limit, max_tasks);
  cfg->ahead = ahead;
  return cfg;
}

/* The thread backend's settings; raises (freeing init) without memory. */
static worker_config *thread_config(lua_State *L, par_msg *init, lua_Integer limit,
                                    lua_Integer max_tasks) {
  worker_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) { par_msg_free(init); luaL_error(L, "not enough memory"); return NULL; }
  set_worker_config(L, cfg, init, limit, max_tasks);
  return cfg;
}

/* Starts n workers running ops over ud (the pool's from then on, or freed
 * when it cannot start) behind the owner handle at the top of the stack. */
static int start_pool(lua_State *L, l_proxy *proxy, int n, const par_pool_ops *ops, void *ud) {
  par_pool *p = par_pool_new(n, ops, ud);
  if (!p) {
    ops->free_ud(ud);
    return luaL_error(L, "cannot start worker thread (%d asked): out of memory or at the thread limit", n);
  }
  proxy->obj = &p->hdr;
  l_object_remember(L, -1);
  return 1;
}

/* parallel.pool(n) or parallel.pool{workers=, init=, init_args=, memory_limit=,
 * backend = "threads" | "process", max_tasks_per_worker=, tasks_ahead=} */
static int l_pool_new(lua_State *L) {
  int n = par_cpu_count_default();
  par_msg *init = NULL;
  lua_Integer limit = 0, max_tasks = 0;
  int process = 0, ahead = -1;
  l_proxy *proxy;
  /* The handle first: what is allocated for the pool from here on is not
   * lost to a memory error in making it. */
  lua_settop(L, 1);
  proxy = (l_proxy *)lua_newuserdatauv(L, sizeof *proxy, 0);
  proxy->obj = NULL;
  proxy->owner = 1;
  l_object_setmeta(L, &par_pool_type);
  if (lua_type(L, 1) == LUA_TTABLE) {
    int top;
    l_check_options(L, 1, 1, pool_options);
    if (lua_getfield(L, 1, "workers") != LUA_TNIL) n = check_workers(L, -1, 1);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "backend") != LUA_TNIL) process = strcmp(lua_tostring(L, -1), "process") == 0;
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "max_tasks_per_worker") != LUA_TNIL) max_tasks = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "tasks_ahead") != LUA_TNIL) {
      lua_Integer a = lua_tointeger(L, -1);
      if (!process) luaL_argerror(L, 1, "tasks_ahead needs backend = \"process\"");
      if (a >= PROC_SLOTS) luaL_argerror(L, 1, lua_pushfstring(L, "tasks_ahead is at most %d", PROC_SLOTS - 1));
      ahead = (int)a;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "memory_limit") != LUA_TNIL) limit = lua_tointeger(L, -1);
    lua_pop(L, 1);
    top = lua_gettop(L);
    if (lua_getfield(L, 1, "init") != LUA_TNIL) {
      int nargs = 0;
      if (lua_getfield(L, 1, "init_args") == LUA_TTABLE) {
        int t = lua_gettop(L), j, k;
        lua_Integer len;
        /* as starmap unpacks an argument list: t.n (table.pack's), else #t */
        if (lua_getfield(L, t, "n") == LUA_TNUMBER && lua_isinteger(L, -1)) len = lua_tointeger(L, -1);
        else len = (lua_Integer)lua_rawlen(L, t);
        lua_pop(L, 1);
        if (len < 0) len = 0;     /* as table.unpack(t, 1, n) and starmap: no argument */
        if (len > 200000) luaL_argerror(L, 1, "too many init_args");
        k = (int)len;
        luaL_checkstack(L, k, "too many init_args");
        for (j = 1; j <= k; j++) lua_rawgeti(L, t, j);
        lua_remove(L, t);
        nargs = k;
      } else {
        lua_pop(L, 1);
      }
      init = codec_encode_call(L, top + 1, nargs + 1);
    }
    lua_settop(L, top);
  } else if (!lua_isnoneornil(L, 1)) {
    if (lua_type(L, 1) != LUA_TNUMBER)
      luaL_typeerror(L, 1, "number or table");
    n = check_workers(L, 1, 1);
  }
  if (process) return start_pool(L, proxy, n, &process_ops, process_config(L, init, limit, max_tasks, ahead));
  return start_pool(L, proxy, n, &worker_ops, thread_config(L, init, limit, max_tasks));
}

static par_pool *check_open_pool(lua_State *L) {
  par_pool *p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  if (par_pool_is_shut_down(p)) luaL_error(L, "pool is shut down");
  return p;
}

/* Pushes a proxy for the future to come: allocated before the message is
 * encoded, so that no error can leave a message or a future behind. */
static l_proxy *push_proxy(lua_State *L) {
  l_proxy *proxy = (l_proxy *)lua_newuserdatauv(L, sizeof *proxy, 0);
  proxy->obj = NULL;
  proxy->owner = 0;
  l_object_setmeta(L, &par_future_type);
  return proxy;
}

/* Makes the proxy's future for the task message m and queues it on p;
 * raises if it cannot (the message then belongs to the future, or is
 * freed). */
static void submit_future(lua_State *L, l_proxy *proxy, par_pool *p, int kind, par_msg *m,
                          double timeout) {
  par_future *f;
  if (p->ops == &process_ops) check_crossing(L, m, NULL);
  f = par_future_new(kind, m);
  if (!f) { par_msg_free(m); luaL_error(L, "not enough memory"); return; }
  proxy->obj = &f->hdr;
  f->timeout = timeout;
  switch (par_pool_submit(p, f)) {
    case PAR_OK: return;
    case PAR_CLOSED: luaL_error(L, "pool is shut down"); return;
    default: luaL_error(L, "not enough memory"); return;
  }
}

/* submit_future, then the proxy on top becomes the future's handle here. */
static int queue_task(lua_State *L, l_proxy *proxy, par_pool *p, int kind, par_msg *m,
                      double timeout) {
  submit_future(L, proxy, p, kind, m, timeout);
  l_object_remember(L, -1);
  return 1;
}

typedef struct streamed_task {
  par_pool *pool;
  l_proxy *proxy;
} streamed_task;

/* The first segment of a call sent in segments: its task goes now, the
 * proxy (remembered by l_pool_submit once the rest is sent) gets its future.
 * NULL: the rest could not be sent and submit raises; nobody will hold that
 * future, so pool:completed() leaves it out. */
static void submit_first_segment(lua_State *L, void *ud, par_msg *m) {
  streamed_task *st = (streamed_task *)ud;
  if (!m) {
    if (st->proxy->obj) par_future_mark_orphan((par_future *)st->proxy->obj);
    return;
  }
  if (!l_object_open(L, 1)) { par_msg_free(m); l_object_closed_error(L, 1); }
  submit_future(L, st->proxy, st->pool, TASK_CALL, m, 0);
}

/* pool:submit(fn, ...) --> future */
static int l_pool_submit(lua_State *L) {
  par_pool *p = check_open_pool(L);
  int n = lua_gettop(L) - 1;
  streamed_task st;
  par_msg *m;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  st.pool = p;
  st.proxy = push_proxy(L);
  m = codec_encode_call_streamed(L, 2, n, submit_first_segment, &st);
  if (m && !l_object_open(L, 1)) { par_msg_free(m); l_object_closed_error(L, 1); }
  if (m) submit_future(L, st.proxy, p, TASK_CALL, m, 0);
  /* else it went in segments: the task is already queued */
  l_object_remember(L, -1);
  return 1;
}

/* pool:_chunk(fn, list, first, last, star [, label [, timeout]]) --> future
 * running fn over list[first..last] (starmap: unpacking each item); errors
 * name items from `label` on (default first); a process pool kills it
 * after `timeout` seconds */
static int l_pool_chunk(lua_State *L) {
  par_pool *p = check_open_pool(L);
  lua_Integer first = luaL_checkinteger(L, 4), last = luaL_checkinteger(L, 5);
  int star = lua_toboolean(L, 6);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, first >= 1 && last >= first, 4, "empty chunk");
  lua_Integer label = luaL_optinteger(L, 7, first);
  double timeout = luaL_optnumber(L, 8, 0);
  l_proxy *proxy = push_proxy(L);
  par_msg *m = codec_encode_chunk(L, 2, 3, first, last, label, star);
  if (!l_object_open(L, 1)) { par_msg_free(m); l_object_closed_error(L, 1); }
  return queue_task(L, proxy, p, star ? TASK_STARMAP : TASK_MAP, m, timeout);
}

static int opt_flag(lua_State *L, int idx, const char *field, int def) {
  int v = def;
  if (lua_getfield(L, idx, field) != LUA_TNIL) v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static const l_option shutdown_options[] = {
  {"wait", "boolean"}, {"cancel", "boolean"}, {NULL, NULL}
};

/* pool:shutdown{wait = true, cancel = false} */
static int l_pool_shutdown(lua_State *L) {
  par_pool *p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  int wait = 1, cancel = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    l_check_options(L, 2, 2, shutdown_options);
    wait = opt_flag(L, 2, "wait", 1);
    cancel = opt_flag(L, 2, "cancel", 0);
  }
  par_pool_shutdown(p, wait, cancel, 0);   /* from p's own task: no wait */
  return 0;
}

/* pool:terminate(): cancels what is queued, interrupts what runs (init
 * too) and joins the workers, in one call; from a task of p's own, all
 * but that task and its worker (core/pool.h). */
static int l_pool_terminate(lua_State *L) {
  par_pool *p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  par_pool_shutdown(p, 1, 1, 1);
  return 0;
}

static void set_int(lua_State *L, const char *k, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* pool:stats() */
static int l_pool_stats(lua_State *L) {
  par_pool *p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  par_pool_stats st;
  long long pending, running;
  int i;
  par_pool_get_stats(p, &st);
  lua_createtable(L, 0, 9);
  set_int(L, "workers", st.workers);
  set_int(L, "submitted", st.submitted);
  set_int(L, "completed", st.completed);
  set_int(L, "failed", st.failed);
  set_int(L, "cancelled", st.cancelled);
  /* Read apart, the counters may disagree for a moment: never below 0. */
  pending = st.submitted - st.started - st.cancelled;
  running = st.started - st.completed - st.failed;
  set_int(L, "pending", pending > 0 ? pending : 0);
  set_int(L, "running", running > 0 ? running : 0);
  lua_createtable(L, st.workers, 0);
  for (i = 0; i < st.workers; i++) {
    lua_pushnumber(L, par_pool_busy_seconds(p, i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "busy");
  lua_pushboolean(L, st.shutdown);
  lua_setfield(L, -2, "shutdown");
  lua_pushstring(L, p->ops == &process_ops ? "process" : "threads");
  lua_setfield(L, -2, "backend");
  return 1;
}

/* pool:fd() --> a descriptor readable when futures of the pool finish */
static int l_pool_fd(lua_State *L) {
  par_pool *p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  int fd = par_pool_fd(p);
  if (fd < 0) return luaL_error(L, "cannot create the completion descriptor");
  lua_pushinteger(L, fd);
  return 1;
}

/* pool:completed() --> the futures finished since the last call */
static int l_pool_completed(lua_State *L) {
  par_pool *p;
  par_future *f;
  lua_Integer i = 0;
  l_wait_callbacks(L);          /* first: a callback may close the pool */
  p = (par_pool *)l_object_check(L, 1, &par_pool_type);
  lua_newtable(L);
  f = par_pool_take_completed(p);
  while (f) {
    par_future *next = par_future_next_done(f);
    if (par_future_is_orphan(f)) {
      par_object_release(&f->hdr);  /* a submit that raised: nobody's future */
    } else {
      l_object_push(L, &f->hdr);    /* the list's reference moves to the proxy */
      lua_rawseti(L, -2, ++i);
    }
    f = next;
  }
  return 1;
}

static int l_pool_close(lua_State *L) {
  l_proxy *proxy = (l_proxy *)luaL_checkudata(L, 1, par_pool_type.name);
  if (proxy->obj) {
    par_pool *p = (par_pool *)proxy->obj;
    par_pool_shutdown(p, 1, 0, 0);
  }
  return 0;
}

/* The creating handle owns the threads: collecting it cancels what is
 * queued, interrupts what runs and joins the workers. */
static int l_pool_gc(lua_State *L) {
  l_proxy *proxy = (l_proxy *)luaL_checkudata(L, 1, par_pool_type.name);
  if (proxy->obj && proxy->owner) {
    par_pool *p = (par_pool *)proxy->obj;
    par_future *f;
    par_pool_shutdown(p, 1, 1, 1);
    /* No one can call completed() any more: drop the list, whose futures
     * hold the pool (a cycle that would keep it and its descriptor). */
    f = par_pool_take_completed(p);
    while (f) {
      par_future *next = par_future_next_done(f);
      par_object_release(&f->hdr);
      f = next;
    }
  }
  return l_object_gc(L);
}

/* pool:_closed() --> true once shut down (the facade checks before mapping) */
static int l_pool_closed(lua_State *L) {
  lua_pushboolean(L, atomic_load(&((par_pool *)l_object_check(L, 1, &par_pool_type))->closed));
  return 1;
}

static const luaL_Reg pool_methods[] = {
  {"_closed", l_pool_closed},
  {"submit", l_pool_submit},
  {"_chunk", l_pool_chunk},
  {"shutdown", l_pool_shutdown},
  {"terminate", l_pool_terminate},
  {"stats", l_pool_stats},
  {"fd", l_pool_fd},
  {"completed", l_pool_completed},
  {NULL, NULL}
};

static const luaL_Reg pool_meta[] = {
  {"__gc", l_pool_gc},
  {"__close", l_pool_close},
  {NULL, NULL}
};

void l_pool_open(lua_State *L) {
  l_object_newmeta(L, &par_pool_type, pool_methods, pool_meta);
  lua_pushcfunction(L, l_pool_new);
  lua_setfield(L, -2, "pool");
}
