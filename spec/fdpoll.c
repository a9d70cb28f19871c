/*
 * fdpoll: poll(2) for spec/fd_spec.lua (Debian's lua-posix has no Lua 5.4
 * build). Built by `make fdpoll` into build/test/fdpoll.so.
 *
 *   fdpoll.poll(fd, timeout_ms) --> true when fd is readable, false on timeout
 *                                   (timeout_ms < 0: wait forever)
 *   fdpoll.list(dir)     --> the names in a directory (no "." or ".."), unsorted
 *   fdpoll.readlink(path) --> what a symbolic link points to, or nil
 *
 * list and readlink let a spec read /proc/self/fd and /proc/self/task
 * without io.popen, whose own pipe ends would show up in the listing.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

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

static int l_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  struct dirent *e;
  lua_Integer n = 0;
  if (!d) return luaL_error(L, "opendir %s: %s", path, strerror(errno));
  lua_newtable(L);
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

static int l_readlink(lua_State *L) {
  char buf[4096];
  ssize_t n = readlink(luaL_checkstring(L, 1), buf, sizeof buf);
  if (n < 0) return 0;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

int luaopen_fdpoll(lua_State *L);

__attribute__((visibility("default"))) int luaopen_fdpoll(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_poll);
  lua_setfield(L, -2, "poll");
  lua_pushcfunction(L, l_list);
  lua_setfield(L, -2, "list");
  lua_pushcfunction(L, l_readlink);
  lua_setfield(L, -2, "readlink");
  return 1;
}
