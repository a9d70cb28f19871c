/* Measuring helpers: cpu_count, now, sleep, cpu_time, waiting; isatty and
 * the terminal's width for the progress bar. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua/l_options.h"
#include "lua/l_pool.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/object.h"
#include "core/wait.h"

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
  l_wait_callbacks(L);
  if (s <= 0) return 0;
  if (l_wait(L, s, try_sleep, NULL) == PAR_INTERRUPTED) return l_wait_raise(L);
  l_wait_callbacks(L);
  return 0;
}

/* parallel.waiting([{spin = bool}]): what the waiting policy
 * (core/wait.h) sees now; spin = false turns spinning off for the process,
 * spin = true back on (unless PARALLEL_SPIN=0 or one CPU). */
static int l_waiting(lua_State *L) {
  static const char *const names[PAR_WAIT_KINDS] = {"pool", "future", "queue", "lock", "process"};
  par_wait_info info;
  int i;
  static const l_option options[] = { {"spin", "boolean"}, {NULL, NULL} };
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    l_check_options(L, 1, 1, options);
    if (lua_getfield(L, 1, "spin") != LUA_TNIL) par_wait_set_spin(lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  par_wait_get_info(&info);
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, info.enabled);
  lua_setfield(L, -2, "spin");
  lua_pushnumber(L, info.cap_us);
  lua_setfield(L, -2, "cap_us");
  lua_pushinteger(L, info.cpus);
  lua_setfield(L, -2, "cpus");
  lua_pushinteger(L, info.online);
  lua_setfield(L, -2, "online");
  lua_pushinteger(L, info.runnable);
  lua_setfield(L, -2, "runnable");
  if (info.machine_runnable >= 0) {
    lua_pushnumber(L, info.machine_runnable);
    lua_setfield(L, -2, "machine_runnable");
  }
  lua_createtable(L, 0, PAR_WAIT_KINDS);
  for (i = 0; i < PAR_WAIT_KINDS; i++) {
    lua_pushnumber(L, info.limit_us[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_setfield(L, -2, "limit_us");
  lua_createtable(L, 0, PAR_WAIT_KINDS);
  for (i = 0; i < PAR_WAIT_KINDS; i++) {
    lua_pushinteger(L, (lua_Integer)info.spins[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_setfield(L, -2, "spins");
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* core._term_columns(fd) --> the width of the terminal on fd, or nil */
static int l_term_columns(lua_State *L) {
  struct winsize ws;
  if (ioctl((int)luaL_checkinteger(L, 1), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    lua_pushinteger(L, ws.ws_col);
  else
    lua_pushnil(L);
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
  {"waiting", l_waiting},
  {"_isatty", l_isatty},
  {"_term_columns", l_term_columns},
  {"worker_index", l_worker_index},
  {NULL, NULL}
};

void l_util_open(lua_State *L) {
  luaL_setfuncs(L, util_funcs, 0);
}
