#include "lua/l_wait.h"

#include "lauxlib.h"
#include "core/clock.h"
#include "core/object.h"

#define SLICE 0.05

static const char interrupt_key = 0;

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
 * lua.c answers SIGINT by installing a count hook (lstop) on the main
 * state. A hook that appears while we block means Ctrl-C: stop waiting and
 * run Lua code so that the hook fires.
 */
int l_wait_should_stop(lua_State *L) {
  _Atomic int *flag = interrupt_flag(L);
  if (flag && atomic_load(flag)) return 1;
  return lua_gethook(L) != NULL && (lua_gethookmask(L) & LUA_MASKCOUNT) != 0 &&
         lua_gethookcount(L) == 1;
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
  /* A call is enough for lua.c's hook (LUA_MASKCALL) to raise "interrupted!". */
  lua_pushcfunction(L, noop);
  lua_call(L, 0, 0);
  return luaL_error(L, "interrupted");
}
