/*
 * Embedding: the C API of include/parallel.h (preloading the module in a
 * host state, the state hook run in every new worker state).
 *
 * The hook is process-wide. Any thread may set it while worker threads
 * start and read it, so the pair (fn, ud) lives under hook_mu and a worker
 * copies it out before calling it: the hook itself runs without the mutex
 * held (it may raise, and it may create pools whose workers read it too).
 */
#include <pthread.h>

#include "lauxlib.h"
#include "parallel.h"
#include "lua/l_embed.h"

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static parallel_state_hook hook_fn;
static void *hook_ud;

PARALLEL_API void parallel_set_state_hook(parallel_state_hook fn, void *ud) {
  pthread_mutex_lock(&hook_mu);
  hook_fn = fn;
  hook_ud = fn ? ud : NULL;
  pthread_mutex_unlock(&hook_mu);
}

PARALLEL_API void parallel_preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_parallel_core);
  lua_setfield(L, -2, "parallel.core");
  lua_pop(L, 1);
}

/* Both loaded and preload: `require` finds the core of this binary even
 * when a task clears package.loaded["parallel.core"] or the host statically
 * linked it with no core.so anywhere on package.cpath. */
void l_embed_prepare(lua_State *L) {
  parallel_preload(L);
  luaL_requiref(L, "parallel.core", luaopen_parallel_core, 0);
  lua_pop(L, 1);
}

void l_embed_run_hook(lua_State *L) {
  parallel_state_hook fn;
  void *ud;
  int top = lua_gettop(L);
  pthread_mutex_lock(&hook_mu);
  fn = hook_fn;
  ud = hook_ud;
  pthread_mutex_unlock(&hook_mu);
  if (!fn) return;
  fn(L, ud);
  lua_settop(L, top);
}
