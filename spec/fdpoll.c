/*
 * fdpoll: poll(2) for spec/fd_spec.lua (Debian's lua-posix has no Lua 5.4
 * build). Built by `make fdpoll` into build/test/fdpoll.so.
 *
 *   fdpoll.poll(fd, timeout_ms) --> true when fd is readable, false on timeout
 *                                   (timeout_ms < 0: wait forever)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

static int l_poll(lua_State *L) {
  struct pollfd p;
  int r;
  p.fd = (int)luaL_checkinteger(L, 1);
  p.events = POLLIN;
  p.revents = 0;
  do r = poll(&p, 1, (int)luaL_optinteger(L, 2, -1));
  while (r < 0 && errno == EINTR);
  if (r < 0) return luaL_error(L, "poll: %s", strerror(errno));
  if (p.revents & POLLNVAL) return luaL_error(L, "poll: descriptor %d is not open", p.fd);
  lua_pushboolean(L, r > 0 && (p.revents & POLLIN));
  return 1;
}

int luaopen_fdpoll(lua_State *L);

__attribute__((visibility("default"))) int luaopen_fdpoll(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_poll);
  lua_setfield(L, -2, "poll");
  return 1;
}
