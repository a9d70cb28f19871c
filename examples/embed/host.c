/*
 * A host application that embeds Lua 5.4 and links `parallel` statically
 * (build/libparallel.a): it opens the module in its own state with
 * parallel_preload, registers its C library `hostlib` there and -- through
 * the state hook -- in every worker state, then runs a Lua script. It is
 * also the worker executable of its process pools (parallel_worker_main).
 *
 *   usage: host SCRIPT [LUA_DIR]   (LUA_DIR holds parallel/init.lua; default "lua")
 *
 * package.cpath is emptied: no parallel/core.so can be found, so everything
 * the script uses of parallel.core comes from this binary.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "parallel.h"

/* hostlib.checksum(s [, rounds]) --> FNV-1a (32 bits) of s repeated rounds times */
static int hostlib_checksum(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  lua_Integer rounds = luaL_optinteger(L, 2, 1), r;
  uint32_t h = 2166136261u;
  luaL_argcheck(L, rounds >= 1, 2, "rounds must be positive");
  for (r = 0; r < rounds; r++)
    for (i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

/* hostlib.poll(fd, timeout_ms) --> true when fd is readable, false on timeout */
static int hostlib_poll(lua_State *L) {
  struct pollfd p;
  int r;
  p.fd = (int)luaL_checkinteger(L, 1);
  p.events = POLLIN;
  p.revents = 0;
  do r = poll(&p, 1, (int)luaL_optinteger(L, 2, -1));
  while (r < 0 && errno == EINTR);
  if (r < 0) return luaL_error(L, "poll: %s", strerror(errno));
  lua_pushboolean(L, r > 0 && (p.revents & POLLIN));
  return 1;
}

static const luaL_Reg hostlib[] = {
  {"checksum", hostlib_checksum},
  {"poll", hostlib_poll},
  {NULL, NULL}
};

static int luaopen_hostlib(lua_State *L) {
  luaL_newlib(L, hostlib);
  return 1;
}

/* Runs on each worker's thread, before init and before any task. The
 * library goes into package.loaded as well as _G, so that hostlib.checksum
 * itself can be sent to workers (C functions travel by module name). */
static void open_host_libs(lua_State *L, void *ud) {
  atomic_fetch_add((_Atomic int *)ud, 1);
  luaL_requiref(L, "hostlib", luaopen_hostlib, 1);
}

static void set_package_paths(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
  lua_setfield(L, -2, "path");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

int main(int argc, char **argv) {
  static _Atomic int states_prepared;
  lua_State *L;
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [LUA_DIR]\n", argv[0]);
    return 2;
  }
  parallel_set_state_hook(open_host_libs, (void *)&states_prepared);
  /* This program also serves as the worker of its process pools: started
   * as one, it serves and ends here (with the hook set above, so worker
   * processes have hostlib as well). */
  status = parallel_worker_main(argc, argv);
  if (status >= 0) return status;
  L = luaL_newstate();
  if (!L) { fprintf(stderr, "host: cannot create a Lua state\n"); return 1; }
  luaL_openlibs(L);
  parallel_preload(L);
  luaL_requiref(L, "hostlib", luaopen_hostlib, 1);
  lua_pop(L, 1);
  set_package_paths(L, argc > 2 ? argv[2] : "lua");
  status = luaL_dofile(L, argv[1]);
  if (status != LUA_OK)
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
  lua_close(L);     /* collects the pools: their workers are joined here */
  printf("host: the state hook ran in %d worker states\n", atomic_load(&states_prepared));
  return status == LUA_OK ? 0 : 1;
}
