/* parallel.future and the waitset behind as_completed / wait. */
#include <string.h>

#include "lauxlib.h"
#include "core/pool.h"
#include "codec/codec.h"
#include "lua/l_object.h"
#include "lua/l_pool.h"
#include "lua/l_shared.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/future.h"

static const char *const state_names[] = {
  "pending", "running", "done", "failed", "cancelled"
};

static par_future *check_future(lua_State *L, int idx) {
  return (par_future *)l_object_check(L, idx, &par_future_type);
}

static int try_future(void *ud, double deadline) {
  return par_future_wait((par_future *)ud, deadline);
}

/* Waits for f from Lua; returns PAR_OK or PAR_TIMEOUT, raises on Ctrl-C
 * and in f's own task (which f waits for). */
static int wait_future(lua_State *L, par_future *f, double timeout) {
  int r;
  if (par_future_is_terminal(par_future_state(f))) return PAR_OK;
  if (par_pool_runs_self(f)) luaL_error(L, PAR_SELF_WAIT_MSG);
  r = l_wait(L, timeout, try_future, f);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  return r;
}

/* A failed group's first failed member, in item order. */
static par_future *failed_member(const par_future *g) {
  size_t i, n = par_future_group_size(g);
  long first;
  for (i = 0; i < n; i++) {
    par_future *m = par_future_group_member(g, i, &first);
    if (par_future_state(m) == PAR_FAILED) return m;
  }
  return NULL;
}

/* Protected: the values of the failure message at 1. */
static int decode_failure(lua_State *L) {
  return codec_decode(L, (const par_msg *)lua_touserdata(L, 1));
}

/* Pushes error value, traceback and item index of a failed future (a
 * group: of its first failed member). An error value this state cannot
 * rebuild (a module only the worker has, memory) becomes a string that
 * says why: error() must not raise, and get() raises what happened. */
static void push_failure(lua_State *L, par_future *f) {
  int held;
  if (par_future_kind(f) == PAR_KIND_GROUP) f = failed_member(f);
  if (f == NULL) {
    lua_pushliteral(L, "cancelled");
    lua_pushliteral(L, "");
    lua_pushnil(L);
  } else if (par_future_result(f) == NULL) {
    lua_pushliteral(L, "pool init failed: not enough memory");
    lua_pushliteral(L, "");
    lua_pushnil(L);
  } else {
    held = l_hold(L, &f->hdr);   /* a finalizer may close the last handle */
    lua_pushcfunction(L, decode_failure);
    lua_pushlightuserdata(L, (void *)par_future_result(f));
    if (lua_pcall(L, 1, 3, 0) != LUA_OK) l_failure_undecodable(L);
    l_hold_end(L, held);
  }
}

/* Raises the error of a failed future as get() does; a group's (a map's)
 * names the item, as map does: "item 7: <message>". */
static int raise_pushed_failure(lua_State *L, int group) {
  if (group && lua_type(L, -3) == LUA_TSTRING &&
      lua_isinteger(L, -1)) {
    lua_pushfstring(L, "item %I: %s", lua_tointeger(L, -1), lua_tostring(L, -3));
    lua_replace(L, -4);
  }
  lua_pop(L, 1);                                  /* index */
  if (lua_type(L, -2) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
  return lua_error(L);
}

/* A finished group's results: one table of every member's, and n. */
static int group_results(lua_State *L, const par_future *g) {
  size_t i, n = par_future_group_size(g);
  long nitems = par_future_group_items(g), first;
  lua_createtable(L, nitems > 0 && nitems < (1L << 30) ? (int)nitems : 0, 1);
  for (i = 0; i < n; i++) {
    par_future *m = par_future_group_member(g, i, &first);
    if (par_future_state(m) == PAR_DONE && par_future_result(m))
      codec_decode_into(L, par_future_result(m), lua_gettop(L), first);
  }
  lua_pushinteger(L, nitems);
  lua_setfield(L, -2, "n");
  return 1;
}

/* future:get([timeout]) --> the task's return values */
static int l_future_get(lua_State *L) {
  par_future *f = check_future(L, 1);
  double timeout = l_opttimeout(L, 2);
  int n;
  /* Callbacks and the decode's finalizers run Lua code that may close
   * this handle, the last one: f is held until the end. */
  lua_settop(L, 1);
  l_hold(L, &f->hdr);                             /* slot 2 */
  l_wait_callbacks(L);
  if (wait_future(L, f, timeout) == PAR_TIMEOUT) {
    l_hold_end(L, 2);
    return luaL_error(L, "timeout");
  }
  l_wait_callbacks(L);
  lua_settop(L, 2);
  switch (par_future_state(f)) {
    case PAR_DONE:
      if (par_future_kind(f) == PAR_KIND_GROUP) n = group_results(L, f);
      else n = codec_decode(L, par_future_result(f));
      l_hold_end(L, 2);
      return n;
    case PAR_CANCELLED:
      l_hold_end(L, 2);
      return luaL_error(L, "cancelled");
    default: {
      int group = par_future_kind(f) == PAR_KIND_GROUP;
      push_failure(L, f);
      l_hold_end(L, 2);
      return raise_pushed_failure(L, group);
    }
  }
}

/* future:wait([timeout]) --> boolean */
static int l_future_wait(lua_State *L) {
  par_future *f = check_future(L, 1);
  double timeout = l_opttimeout(L, 2);
  int r;
  lua_settop(L, 1);
  l_hold(L, &f->hdr);           /* a callback may close this handle */
  l_wait_callbacks(L);
  r = wait_future(L, f, timeout);
  l_wait_callbacks(L);
  l_hold_end(L, 2);
  lua_pushboolean(L, r == PAR_OK);
  return 1;
}

static int l_future_done(lua_State *L) {
  lua_pushboolean(L, par_future_is_terminal(par_future_state(check_future(L, 1))));
  return 1;
}

static int l_future_state(lua_State *L) {
  lua_pushstring(L, state_names[par_future_state(check_future(L, 1))]);
  return 1;
}

static int l_future_cancel(lua_State *L) {
  lua_pushboolean(L, par_future_cancel(check_future(L, 1)));
  return 1;
}

/* future:error() --> nil, or the error value and the traceback */
static int l_future_error(lua_State *L) {
  par_future *f = check_future(L, 1);
  int st = par_future_state(f);
  if (st == PAR_CANCELLED) {
    lua_pushliteral(L, "cancelled");
    lua_pushliteral(L, "");
    return 2;
  }
  if (st != PAR_FAILED) return 0;
  push_failure(L, f);
  lua_pop(L, 1);
  return 2;
}

/* future:_failure() --> error value, traceback, item index (map family) */
static int l_future_failure(lua_State *L) {
  par_future *f = check_future(L, 1);
  if (par_future_state(f) != PAR_FAILED) return 0;
  push_failure(L, f);
  return 3;
}

/* future:_into(dest, offset) --> n: a finished map chunk's results stored
 * straight into dest[offset ..] (the map family) */
static int l_future_into(lua_State *L) {
  par_future *f = check_future(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (par_future_state(f) != PAR_DONE || par_future_kind(f) <= 0)
    return luaL_error(L, "not a finished map chunk");
  {
    lua_Integer offset = luaL_checkinteger(L, 3), n;
    lua_settop(L, 3);
    l_hold(L, &f->hdr);         /* a finalizer may close this handle */
    n = codec_decode_into(L, par_future_result(f), 2, offset);
    l_hold_end(L, 4);
    lua_pushinteger(L, n);
  }
  return 1;
}

/* future:interrupt() --> true if the task was running and is being stopped */
static int l_future_interrupt(lua_State *L) {
  par_future *f = check_future(L, 1);
  lua_pushboolean(L, par_future_interrupt(f));
  return 1;
}

/* future:kill() --> true if the task was running and is being ended: a
 * process pool kills the worker process running it (the task fails with
 * "killed", the worker is replaced); a thread pool interrupts it. */
static int l_future_kill(lua_State *L) {
  par_future *f = check_future(L, 1);
  par_object *owner = par_future_owner(f);
  if (owner && owner->type == &par_pool_type) lua_pushboolean(L, par_pool_kill((par_pool *)owner, f));
  else lua_pushboolean(L, par_future_interrupt(f));
  return 1;
}

static int l_future_tostring(lua_State *L) {
  l_proxy *p = (l_proxy *)luaL_checkudata(L, 1, par_future_type.name);
  if (!p->obj) lua_pushliteral(L, "parallel.future (closed)");
  else lua_pushfstring(L, "parallel.future (%s): %p",
                       state_names[par_future_state((par_future *)p->obj)], (void *)p->obj);
  return 1;
}

/* --------------------------------------------------------------- groups */

/* core._group() --> a future that finishes when the members given to
 * group:_add have, once group:_seal(n) was called (pool:map_async) */
static int l_group_new(lua_State *L) {
  par_future *g = par_future_group_new();
  if (!g) return luaL_error(L, "not enough memory");
  l_object_push(L, &g->hdr);
  return 1;
}

/* A group still open to members (only map_async adds and seals). */
static par_future *check_group(lua_State *L) {
  par_future *g = check_future(L, 1);
  if (par_future_kind(g) != PAR_KIND_GROUP) luaL_argerror(L, 1, "not a group future");
  if (par_future_group_sealed(g)) luaL_argerror(L, 1, "group is sealed");
  return g;
}

/* group:_add(member, first) */
static int l_group_add(lua_State *L) {
  par_future *g = check_group(L), *m = check_future(L, 2);
  luaL_argcheck(L, par_future_kind(m) > 0, 2, "not a map chunk");
  if (!par_future_group_add(g, m, (long)luaL_checkinteger(L, 3)))
    return luaL_error(L, "not enough memory");
  return 0;
}

/* group:_seal(nitems) */
static int l_group_seal(lua_State *L) {
  par_future *g = check_group(L);
  par_future_group_seal(g, (long)luaL_checkinteger(L, 2));
  return 0;
}

/* ------------------------------------------------------------- waitsets */

#define WAITSET "parallel.waitset"

typedef struct l_waitset { par_waitset *ws; } l_waitset;

static l_waitset *check_waitset(lua_State *L) {
  l_waitset *w = (l_waitset *)luaL_checkudata(L, 1, WAITSET);
  if (!w->ws) luaL_error(L, "waitset is closed");
  return w;
}

/* A bad list given to core._waitset(futures, fname, level): the error
 * names the public function fname and the code `level` calls above the
 * function that called _waitset, as luaL_argerror would for a call of
 * fname (without fname: luaL_argerror's own). */
static int waitset_error(lua_State *L, const char *fname, int level, const char *msg) {
  if (!fname) return luaL_error(L, "%s", msg);
  luaL_where(L, level);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

static int bad_futures(lua_State *L, const char *fname, int level, lua_Integer i, const char *what) {
  const char *msg = lua_pushfstring(L, "futures[%I] %s", i, what);
  if (!fname) return luaL_argerror(L, 1, msg);
  return waitset_error(L, fname, level, lua_pushfstring(L, "bad argument #1 to '%s' (%s)", fname, msg));
}

/* core._waitset(futures [, fname, level]) --> a waitset whose :next()
 * yields them as they finish */
static int l_waitset_new(lua_State *L) {
  l_waitset *w;
  lua_Integer n, i;
  const char *fname = luaL_optstring(L, 2, NULL);
  int level = (int)luaL_optinteger(L, 3, 1);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  n = (lua_Integer)lua_rawlen(L, 1);
  for (i = 1; i <= n; i++) {
    l_proxy *p;
    lua_rawgeti(L, 1, i);
    if (!luaL_testudata(L, -1, par_future_type.name)) return bad_futures(L, fname, level, i, "is not a future");
    p = (l_proxy *)lua_touserdata(L, -1);
    if (!p->obj) return bad_futures(L, fname, level, i, "is closed");
    if (par_pool_runs_self((par_future *)p->obj)) return waitset_error(L, fname, level, PAR_SELF_WAIT_MSG);
    lua_pop(L, 1);
  }
  w = (l_waitset *)lua_newuserdatauv(L, sizeof *w, 1);
  w->ws = NULL;
  luaL_setmetatable(L, WAITSET);
  /* future pointer -> its proxy, so next() returns the caller's own objects */
  lua_createtable(L, 0, (int)n);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    lua_pushlightuserdata(L, ((l_proxy *)lua_touserdata(L, -1))->obj);
    lua_insert(L, -2);
    lua_rawset(L, -3);
  }
  lua_setiuservalue(L, -2, 1);
  w->ws = par_waitset_new();
  if (!w->ws) return luaL_error(L, "not enough memory");
  for (i = 1; i <= n; i++) {   /* a finalizer may have closed a handle since */
    l_proxy *p;
    lua_rawgeti(L, 1, i);
    p = (l_proxy *)lua_touserdata(L, -1);
    if (!p->obj) return bad_futures(L, fname, level, i, "is closed");
    if (!par_waitset_add(w->ws, (par_future *)p->obj)) return luaL_error(L, "not enough memory");
    lua_pop(L, 1);
  }
  return 1;
}

typedef struct next_call { par_waitset *ws; par_future *f; int status; } next_call;

static int try_next(void *ud, double deadline) {
  next_call *c = (next_call *)ud;
  c->f = par_waitset_next(c->ws, deadline, &c->status);
  return c->status;
}

/* ws:next([timeout]) --> the next finished future | nil, "timeout" | nil (all returned) */
static int l_waitset_next(lua_State *L) {
  l_waitset *w = check_waitset(L);
  next_call c;
  double timeout = l_opttimeout(L, 2);
  int r;
  l_wait_callbacks(L);
  w = check_waitset(L);         /* a callback may have closed it */
  c.ws = w->ws;
  c.f = NULL;
  r = l_wait(L, timeout, try_next, &c);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  if (c.f) {
    lua_getiuservalue(L, 1, 1);
    lua_pushlightuserdata(L, c.f);
    lua_rawget(L, -2);
    /* Returned once: the caller holds it now. Kept here, every future (and
     * its results) would live as long as the waitset: imap_unordered's,
     * over an input larger than memory, would not stream. */
    lua_pushlightuserdata(L, c.f);
    lua_pushnil(L);
    lua_rawset(L, -4);
    par_object_release(&c.f->hdr);
    l_wait_callbacks(L);   /* after: the future on the stack is not lost */
    return 1;
  }
  l_wait_callbacks(L);
  if (r == PAR_TIMEOUT) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return 0;
}

/* ws:add(future): one more future to wait for */
static int l_waitset_add(lua_State *L) {
  l_waitset *w = check_waitset(L);
  par_future *f = check_future(L, 2);
  if (par_pool_runs_self(f)) return luaL_error(L, PAR_SELF_WAIT_MSG);
  lua_getiuservalue(L, 1, 1);
  lua_pushlightuserdata(L, f);
  lua_pushvalue(L, 2);
  lua_rawset(L, -3);
  if (!par_waitset_add(w->ws, f)) return luaL_error(L, "not enough memory");
  return 0;
}

static int l_waitset_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)par_waitset_pending(check_waitset(L)->ws));
  return 1;
}

static int l_waitset_gc(lua_State *L) {
  l_waitset *w = (l_waitset *)luaL_checkudata(L, 1, WAITSET);
  if (w->ws) {
    par_waitset_release(w->ws);
    w->ws = NULL;
  }
  return 0;
}

static const luaL_Reg future_methods[] = {
  {"get", l_future_get},
  {"wait", l_future_wait},
  {"done", l_future_done},
  {"state", l_future_state},
  {"cancel", l_future_cancel},
  {"error", l_future_error},
  {"_failure", l_future_failure},
  {"_into", l_future_into},
  {"interrupt", l_future_interrupt},
  {"kill", l_future_kill},
  {"_add", l_group_add},
  {"_seal", l_group_seal},
  {NULL, NULL}
};

static const luaL_Reg future_meta[] = {
  {"__tostring", l_future_tostring},
  {NULL, NULL}
};

static const luaL_Reg waitset_methods[] = {
  {"next", l_waitset_next},
  {"pending", l_waitset_pending},
  {"add", l_waitset_add},
  {"close", l_waitset_gc},
  {NULL, NULL}
};

void l_future_open(lua_State *L) {
  l_object_newmeta(L, &par_future_type, future_methods, future_meta);
  luaL_newmetatable(L, WAITSET);
  luaL_newlib(L, waitset_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_waitset_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_waitset_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_waitset_new);
  lua_setfield(L, -2, "_waitset");
  lua_pushcfunction(L, l_group_new);
  lua_setfield(L, -2, "_group");
  lua_pushcfunction(L, l_wait_set_callback_hook);
  lua_setfield(L, -2, "_callback_hook");
}
