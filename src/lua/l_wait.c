#include "lua/l_wait.h"

#include <stdatomic.h>

#include "lauxlib.h"
#include "core/clock.h"
#include "core/object.h"

#define SLICE 0.05

static const char interrupt_key = 0;
static const char hook_key = 0;

int l_wait_set_callback_hook(lua_State *L) {
  lua_settop(L, 1);
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hook_key);
  return 0;
}

void l_wait_callbacks(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hook_key) == LUA_TFUNCTION) lua_call(L, 0, 0);
  else lua_pop(L, 1);
}

double l_opttimeout(lua_State *L, int idx) {
  lua_Number t;
  if (lua_isnoneornil(L, idx)) return -1;
  t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t == t, idx, "timeout is NaN");
  return t < 0 ? 0 : t;
}

void l_wait_set_interrupt_flag(lua_State *L, _Atomic int *flag) {
  lua_pushlightuserdata(L, (void *)flag);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &interrupt_key);
}

static _Atomic int *interrupt_flag(lua_State *L) {
  _Atomic int *flag;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &interrupt_key);
  flag = (_Atomic int *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return flag;
}

/*
 * lua.c answers SIGINT by setting a hook (lstop: call, return, line, count 1)
 * on the main Lua thread, while this wait may run in a coroutine: both
 * threads are looked at. Hooks set from Lua by debug.sethook all go through
 * one C function of the debug library, learnt once (l_wait_open): those
 * are the user's, never Ctrl-C. A worker state has no lua.c: only its
 * interrupt flag stops it.
 */
static _Atomic(lua_Hook) debug_library_hook;

#define CTRL_C_MASK (LUA_MASKCALL | LUA_MASKCOUNT)

static int ctrl_c_pending(lua_State *T) {
  lua_Hook h = lua_gethook(T);
  return h != NULL && h != atomic_load(&debug_library_hook) &&
         (lua_gethookmask(T) & CTRL_C_MASK) == CTRL_C_MASK && lua_gethookcount(T) == 1;
}

static lua_State *main_thread(lua_State *L) {
  lua_State *T;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  T = lua_tothread(L, -1);
  lua_pop(L, 1);
  return T;
}

int l_wait_should_stop(lua_State *L) {
  _Atomic int *flag = interrupt_flag(L);
  lua_State *T;
  if (flag) return atomic_load(flag) != 0;
  if (ctrl_c_pending(L)) return 1;
  T = main_thread(L);
  return T != NULL && T != L && ctrl_c_pending(T);
}

static int learn_hook(lua_State *L) {
  lua_State *T = lua_newthread(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "debug") != LUA_TTABLE) return 0;
  if (lua_getfield(L, -1, "sethook") != LUA_TFUNCTION) return 0;
  lua_pushvalue(L, -1);        /* debug.sethook(T, any function, "", 1000) */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_pushliteral(L, "");
  lua_pushinteger(L, 1000);
  lua_call(L, 4, 0);
  if (lua_gethook(T)) atomic_store(&debug_library_hook, lua_gethook(T));
  return 0;
}

void l_wait_open(lua_State *L) {
  if (atomic_load(&debug_library_hook)) return;
  lua_pushcfunction(L, learn_hook);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
}

int l_wait(lua_State *L, double timeout, l_wait_fn try_fn, void *ud) {
  double deadline = par_deadline(timeout);
  for (;;) {
    double now = par_now(), slice = now + SLICE;
    int r;
    if (l_wait_should_stop(L)) return PAR_INTERRUPTED;
    r = try_fn(ud, slice < deadline ? slice : deadline);
    if (r != PAR_TIMEOUT) return r;
    if (par_now() >= deadline) return PAR_TIMEOUT;
  }
}

static int noop(lua_State *L) { (void)L; return 0; }

int l_wait_raise(lua_State *L) {
  /* A call is enough for lua.c's hook (LUA_MASKCALL) to raise "interrupted!"
   * when it is on this thread. In a coroutine the error is ours; the hook
   * stays on the main thread and fires again there, as Ctrl-C should. */
  if (ctrl_c_pending(L)) {
    lua_pushcfunction(L, noop);
    lua_call(L, 0, 0);
  }
  return luaL_error(L, "interrupted");
}
