/*
 * cycle: a host that opens a Lua state, uses parallel in it (a pool, a
 * queue: the waiting policy samples /proc/loadavg) and closes it, five
 * times; lua_close unloads core.so each time. Prints the number of open
 * descriptors before and after each cycle, for spec/lifecycle_fd_spec.lua.
 * Built by the Makefile into build/test/cycle.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

static int nfds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

int main(void) {
  int i;
  printf("%d", nfds());
  for (i = 0; i < 5; i++) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, "local parallel = require 'parallel' local p = parallel.pool{workers = 2} "
                         "local q = parallel.queue() p:submit(function(q) for i = 1, 1000 do q:push(i) end end, q) "
                         "for i = 1, 1000 do q:pop() end p:shutdown()")) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      return 1;
    }
    lua_close(L);
    printf(" %d", nfds());
  }
  printf("\n");
  return 0;
}
