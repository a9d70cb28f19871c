/*
 * crash: ways for a worker process to end badly, for spec/process_spec.lua.
 * Built by `make crashlib` into build/test/crash.so.
 *
 *   crash.segv()          dereferences a null pointer (SIGSEGV)
 *   crash.stuck([fn])     blocks every signal it can, calls fn() if given (a
 *                         spec's "it is in C now"), and spins in C forever
 *   crash.pid()           the calling process's id
 *   crash.sigkill()       sends itself SIGKILL (no fork: works under sanitizers)
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

static int l_segv(lua_State *L) {
  volatile int *volatile p = NULL;
  lua_pushinteger(L, *p);
  return 1;
}

static int l_stuck(lua_State *L) {
  sigset_t all;
  volatile unsigned long n = 0;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  if (lua_isfunction(L, 1)) lua_call(L, 0, 0);
  for (;;) n++;
  return 0;
}

static int l_sigkill(lua_State *L) {
  (void)L;
  kill(getpid(), SIGKILL);
  return 0;
}

static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

int luaopen_crash(lua_State *L);

__attribute__((visibility("default"))) int luaopen_crash(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"segv", l_segv}, {"stuck", l_stuck}, {"pid", l_pid}, {"sigkill", l_sigkill}, {NULL, NULL}
  };
  luaL_newlib(L, fns);
  return 1;
}
