#include "lua/l_worker.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"
#include "codec/codec.h"
#include "lua/l_embed.h"
#include "lua/l_interrupt.h"
#include "lua/l_wait.h"
#include "core/future.h"
#include "core/spare.h"

static const char key_traceback = 0;   /* registry: traceback of the last error */

typedef struct worker_ctx {
  lua_State *L;
  worker_config *cfg;
  int index;
  size_t used;                /* bytes allocated by L (memory limit) */
  par_spare spare;            /* large blocks L freed, for its next ones */
  int codec_ready;            /* set-up got as far as the codec */
  int failed;                 /* set-up or init failed: every task fails... */
  par_msg *failure;           /* ...with this (NULL: not enough memory) */
  par_msg *nomem;             /* a failure saying "not enough memory", made
                                 early, for a task whose error cannot be sent */
  long ntasks;                /* tasks run in this state (max_tasks) */
  int in_init;                /* running the pool's init, not a task */
  l_interrupt in;
} worker_ctx;

/* The allocator of worker states: refuses past the pool's memory limit, so
 * a runaway task fails with "not enough memory" and the process lives on. */
static void *worker_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  worker_ctx *w = (worker_ctx *)ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    par_spare_give(&w->spare, ptr, old);
    w->used -= old;
    return NULL;
  }
  if (w->cfg->memory_limit && nsize > old &&
      w->used + (nsize - old) > w->cfg->memory_limit)
    return NULL;
  if (!ptr && nsize >= PAR_SPARE_MIN) {
    void *kept = par_spare_take(&w->spare, nsize);
    if (kept) {
      w->used += nsize;
      return kept;
    }
  }
  ptr = realloc(ptr, nsize);
  if (ptr) w->used = w->used - old + nsize;
  return ptr;
}

/* Message handler: remembers the traceback, keeps the error value as is. */
static int msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_traceback);
  return 1;
}

static void encode_nomem(lua_State *L, worker_ctx *w) {
  lua_pushliteral(L, "not enough memory");
  lua_pushliteral(L, "");
  lua_pushnil(L);
  w->nomem = codec_encode(L, lua_gettop(L) - 2, 3, "error", 1);
  lua_pop(L, 3);
}

/* os.exit in a thread pool's worker: the real one would end the whole
 * program, the caller's script included, from inside a task. */
static int refuse_exit(lua_State *L) {
  worker_ctx *w = (worker_ctx *)lua_touserdata(L, lua_upvalueindex(1));
  return luaL_error(L, "os.exit cannot be called in a thread pool's %s: it would end the whole "
                    "program; return a value or raise an error, or use backend = \"process\"",
                    w->in_init ? "init" : "task");
}

/* The worker's state as tasks find it; every Lua call of the start-up
 * runs here, in protected mode (an allocation may fail anywhere). */
static int setup(lua_State *L) {
  worker_ctx *w = (worker_ctx *)lua_touserdata(L, 1);
  l_wait_set_interrupt_flag(L, w->in.flag);
  lua_pushinteger(L, w->index + 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "parallel.worker_index");
  luaL_openlibs(L);
  if (!w->cfg->own_process) {
    lua_getglobal(L, "os");
    lua_pushlightuserdata(L, w);
    lua_pushcclosure(L, refuse_exit, 1);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
  }
  l_interrupt_open(L, &w->in);
  l_embed_prepare(L);
  w->codec_ready = 1;
  encode_nomem(L, w);
  lua_getglobal(L, "package");
  if (w->cfg->path) { lua_pushstring(L, w->cfg->path); lua_setfield(L, -2, "path"); }
  if (w->cfg->cpath) { lua_pushstring(L, w->cfg->cpath); lua_setfield(L, -2, "cpath"); }
  lua_pop(L, 1);
  l_embed_run_hook(L);        /* the host's libraries, before init and tasks */
  /* The facade adds the Lua-written methods (map, imap...) to the pool
   * handles tasks receive; a host without it still gets the core. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "parallel");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  return 0;
}

static int run_init(lua_State *L) {
  worker_ctx *w = (worker_ctx *)lua_touserdata(L, 1);
  int n;
  lua_settop(L, 0);
  n = codec_decode(L, w->cfg->init);
  lua_pushcfunction(L, msgh);
  lua_insert(L, 1);
  lua_call(L, n - 1, 0);
  return 0;
}

/* What an error value says in a message: a string or number as is, else
 * its __tostring, else its type (lua.c's wording). */
static int call_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static const char *describe(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
    return lua_tostring(L, idx);
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushcfunction(L, call_tostring);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

static int encode_init_failure(lua_State *L) {
  worker_ctx *w = (worker_ctx *)lua_touserdata(L, 1);
  lua_pushfstring(L, "pool init failed: %s", describe(L, 2));
  lua_pushliteral(L, "");
  lua_pushnil(L);
  w->failure = codec_encode(L, lua_gettop(L) - 2, 3, "error", 1);
  return 0;
}

/* Set-up or init raised the value on top: every task will fail with it. */
static void start_failed(worker_ctx *w) {
  lua_State *L = w->L;
  w->failed = 1;
  if (!w->codec_ready) return;      /* tasks say "not enough memory" */
  lua_gc(L, LUA_GCCOLLECT);         /* room to say what happened */
  lua_pushcfunction(L, encode_init_failure);
  lua_pushlightuserdata(L, w);
  lua_rotate(L, -3, 2);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) w->failure = NULL;
}

static void *worker_start(void *ud, int index, _Atomic int *interrupted) {
  worker_ctx *w = calloc(1, sizeof *w);
  lua_State *L;
  if (!w) return NULL;
  w->cfg = (worker_config *)ud;
  w->index = index;
  L = lua_newstate(worker_alloc, w);
  if (!L) { free(w); return NULL; }
  w->L = L;
  l_interrupt_init(&w->in, L, interrupted);
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) start_failed(w);
  lua_settop(L, 0);
  return w;
}

/* Interruptible (core/pool.c marks the worker busy meanwhile). */
static void worker_init(void *ctx) {
  worker_ctx *w = (worker_ctx *)ctx;
  lua_State *L = w->L;
  if (w->failed || !w->cfg->init) return;
  l_interrupt_arm(&w->in);
  w->in_init = 1;
  lua_pushcfunction(L, run_init);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) start_failed(w);
  w->in_init = 0;
  lua_settop(L, 0);
}

static int encode_failure(lua_State *L) {
  par_msg **out = (par_msg **)lua_touserdata(L, 1);
  *out = codec_encode(L, 2, 3, "error", 1);
  return 0;
}

/* Protected: *out = the failure message of (error at 2, item index or nil
 * at 3) with the last traceback; an error value that cannot travel is
 * replaced by a string saying so, why, and what it was. */
static int make_failure(lua_State *L) {
  par_msg **out = (par_msg **)lua_touserdata(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_traceback) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_traceback);
  lua_pushcfunction(L, encode_failure);
  lua_pushlightuserdata(L, out);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 3);
  if (lua_pcall(L, 4, 0, 0) == LUA_OK) return 0;
  {
    const char *why = lua_tostring(L, 5);   /* the codec's: what could not travel, where */
    why = luaL_gsub(L, why ? why : "?", "at error[1]", "at error");
    lua_pushcfunction(L, call_tostring);
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushfstring(L, "a %s value", luaL_typename(L, 2));
    }
    lua_pushfstring(L, "the task's error value could not be sent (%s); it was %s", why,
                    lua_tostring(L, -1));
  }
  lua_replace(L, 2);
  lua_settop(L, 4);
  lua_rotate(L, 3, 1);                      /* error, traceback, index */
  return encode_failure(L);
}

/* Finishes f as failed with the error at err; never raises. */
static void finish_failed(worker_ctx *w, par_future *f, int err, lua_Integer index) {
  lua_State *L = w->L;
  par_msg *m = NULL;
  int base = lua_gettop(L);
  err = lua_absindex(L, err);
  lua_pushcfunction(L, make_failure);
  lua_pushlightuserdata(L, &m);
  lua_pushvalue(L, err);
  if (index) lua_pushinteger(L, index); else lua_pushnil(L);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) m = w->nomem ? par_msg_copy(w->nomem) : NULL;
  lua_settop(L, base);
  par_future_finish(f, PAR_FAILED, m);
}

/* The loop of a map chunk, run under one protected call (not one per
 * item): fn(items[i]) (or fn(table.unpack(items[i], 1, items[i].n)) for
 * starmap) into results[i]; *at tells which item was running when an
 * error escaped. Every index up to n is an item, nil included. */
typedef struct chunk_state { lua_Integer at, n; int star; } chunk_state;

static int chunk_loop(lua_State *L) {
  chunk_state *cs = (chunk_state *)lua_touserdata(L, 1);
  lua_Integer i, n = cs->n;
  /* 1: state, 2: fn, 3: items, 4: results */
  for (i = 1; i <= n; i++) {
    int nargs = 1;
    cs->at = i;
    lua_pushvalue(L, 2);
    lua_rawgeti(L, 3, i);
    if (cs->star) {
      lua_Integer j, k;
      int args = lua_gettop(L);
      if (lua_type(L, args) != LUA_TTABLE)
        luaL_error(L, "starmap: argument list %I is a %s, not a table", i, luaL_typename(L, args));
      lua_pushliteral(L, "n");
      k = lua_rawget(L, args) == LUA_TNUMBER ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, args);
      lua_pop(L, 1);
      luaL_checkstack(L, (int)k + 2, "too many arguments");
      for (j = 1; j <= k; j++) lua_rawgeti(L, args, j);
      lua_remove(L, args);
      nargs = (int)k;
    }
    lua_call(L, nargs, 1);
    lua_rawseti(L, 4, i);
  }
  return 0;
}

/* Protected: encodes the (results, n) of a chunk into *out. */
static int encode_results(lua_State *L) {
  par_msg **out = (par_msg **)lua_touserdata(L, 1);
  *out = codec_encode(L, 2, lua_gettop(L) - 1, "results", 1);
  return 0;
}

/* Results that could not travel together: finds the first item whose own
 * result cannot, so that the error names it and its path from that
 * result ("item 8: cannot send thread at results[1]"). Fails the future
 * with the item's error, or with err (at the top) when each one can. */
static void fail_results(worker_ctx *w, par_future *f, int results, lua_Integer n,
                         lua_Integer first) {
  lua_State *L = w->L;
  lua_Integer i;
  int err = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    par_msg *m = NULL;
    lua_pushcfunction(L, encode_results);
    lua_pushlightuserdata(L, &m);
    lua_rawgeti(L, results, i);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      finish_failed(w, f, lua_gettop(L), first + i - 1);
      return;
    }
    par_msg_free(m);
  }
  finish_failed(w, f, err, 0);
}

static int run_chunk(worker_ctx *w, par_future *f, int fn, int star) {
  lua_State *L = w->L;
  int items = fn + 1, results;
  lua_Integer first = lua_tointeger(L, fn + 2), n = lua_tointeger(L, fn + 3);
  chunk_state cs;
  par_msg *m = NULL;
  cs.at = 0;
  cs.n = n;
  cs.star = star;
  lua_createtable(L, n > INT_MAX ? 0 : (int)n, 0);
  results = lua_gettop(L);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, chunk_loop);
  lua_pushlightuserdata(L, &cs);
  lua_pushvalue(L, fn);
  lua_pushvalue(L, items);
  lua_pushvalue(L, results);
  if (lua_pcall(L, 4, 0, results + 1) != LUA_OK) {
    finish_failed(w, f, lua_gettop(L), first + cs.at - 1);
    return 1;
  }
  lua_settop(L, results);
  lua_pushcfunction(L, encode_results);
  lua_pushlightuserdata(L, &m);
  lua_pushvalue(L, results);
  lua_pushinteger(L, n);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    fail_results(w, f, results, n, first);
    return 1;
  }
  par_future_finish(f, PAR_DONE, m);
  return 1;
}

/* Runs one future in protected mode; returns 1 once the future is finished. */
static int run_protected(lua_State *L) {
  par_future *f = (par_future *)lua_touserdata(L, 1);
  worker_ctx *w = (worker_ctx *)lua_touserdata(L, 2);
  int n, fn;
  par_msg *m;
  lua_settop(L, 0);
  n = codec_decode(L, par_future_task(f));   /* if it raises, f keeps the message */
  par_msg_free(par_future_take_task(f));      /* claimed: the message is ours */
  if (par_future_kind(f) != TASK_CALL) return run_chunk(w, f, 1, par_future_kind(f) == TASK_STARMAP);
  lua_pushcfunction(L, msgh);
  lua_insert(L, 1);
  fn = 2;
  if (lua_pcall(L, n - 1, LUA_MULTRET, 1) != LUA_OK) {
    finish_failed(w, f, lua_gettop(L), 0);
    return 1;
  }
  n = lua_gettop(L) - 1;
  m = codec_encode(L, fn, n, "results", 1);
  par_future_finish(f, PAR_DONE, m);
  return 1;
}

static void worker_run(void *ctx, par_future *f) {
  worker_ctx *w = (worker_ctx *)ctx;
  lua_State *L;
  if (!w) {                   /* the worker's state could not be created */
    par_future_finish(f, PAR_FAILED, NULL);
    return;
  }
  w->ntasks++;                /* failed ones too, as a process worker counts them */
  if (w->failed) {            /* NULL: "pool init failed: not enough memory" */
    par_future_finish(f, PAR_FAILED, w->failure ? par_msg_copy(w->failure) : NULL);
    return;
  }
  L = w->L;
  l_interrupt_arm(&w->in);
  lua_pushcfunction(L, run_protected);
  lua_pushlightuserdata(L, f);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK && !par_future_is_terminal(par_future_state(f)))
    finish_failed(w, f, -1, 0);   /* decoding or encoding failed */
  lua_settop(L, 0);
}

/* Runs in a signal handler on the worker's thread (core/pool.c): it only
 * sets hooks, as lua.c's Ctrl-C handler does. */
static void worker_interrupt(void *ctx) {
  l_interrupt_now(&((worker_ctx *)ctx)->in);
}

static void worker_clear_interrupt(void *ctx) {
  l_interrupt_clear(&((worker_ctx *)ctx)->in);
}

static void worker_stop(void *ctx) {
  worker_ctx *w = (worker_ctx *)ctx;
  lua_close(w->L);
  par_spare_clear(&w->spare);
  par_msg_free(w->failure);
  par_msg_free(w->nomem);
  free(w);
}

/* max_tasks_per_worker: the pool closes this state and opens a fresh one
 * (init included) after that many tasks; a map chunk is one task. */
static int worker_spent(void *ctx) {
  worker_ctx *w = (worker_ctx *)ctx;
  return w->cfg->max_tasks > 0 && w->ntasks >= w->cfg->max_tasks;
}

void worker_config_clear(worker_config *cfg) {
  par_msg_free(cfg->init);
  free(cfg->path);
  free(cfg->cpath);
  cfg->init = NULL;
  cfg->path = cfg->cpath = NULL;
}

static void worker_free_config(void *ud) {
  worker_config_clear((worker_config *)ud);
  free(ud);
}

const par_pool_ops worker_ops = {
  .start = worker_start,
  .init = worker_init,
  .run = worker_run,
  .interrupt = worker_interrupt,
  .clear_interrupt = worker_clear_interrupt,
  .stop = worker_stop,
  .free_ud = worker_free_config,
  .spent = worker_spent,
};
