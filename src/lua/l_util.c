/* Measuring helpers: cpu_count, now, sleep, cpu_time, isatty. */
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua/l_pool.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/object.h"

int par_cpu_count_default(void) {
  cpu_set_t set;
  long n;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c > 0) return c;
  }
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int l_cpu_count(lua_State *L) {
  lua_pushinteger(L, par_cpu_count_default());
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, par_now());
  return 1;
}

static int l_cpu_time(lua_State *L) {
  lua_pushnumber(L, par_cpu_time());
  return 1;
}

static int try_sleep(void *ud, double deadline) {
  (void)ud;
  par_sleep_until(deadline);
  return PAR_TIMEOUT;
}

/* parallel.sleep(seconds): wakes early when the task is interrupted. */
static int l_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s == s, 1, "duration is NaN");
  if (s <= 0) return 0;
  if (l_wait(L, s, try_sleep, NULL) == PAR_INTERRUPTED) return l_wait_raise(L);
  return 0;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_worker_index(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "parallel.worker_index");
  return 1;
}

static const luaL_Reg util_funcs[] = {
  {"cpu_count", l_cpu_count},
  {"now", l_now},
  {"cpu_time", l_cpu_time},
  {"sleep", l_sleep},
  {"_isatty", l_isatty},
  {"worker_index", l_worker_index},
  {NULL, NULL}
};

void l_util_open(lua_State *L) {
  luaL_setfuncs(L, util_funcs, 0);
}
