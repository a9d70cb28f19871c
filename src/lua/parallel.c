/* luaopen_parallel_core: opens every part of the binding. */
#include "lauxlib.h"
#include "codec/codec.h"
#include "lua/capi.h"
#include "lua/l_options.h"
#include "lua/l_pool.h"
#include "lua/l_shared.h"
#include "lua/l_wait.h"
#include "lua/l_wire.h"
#include "lua/l_worker.h"

/* core._methods(name) --> the method table of a parallel type, so that the
 * facade can add the methods it writes in Lua (map, imap, ...). */
static int l_methods(lua_State *L) {
  luaL_getmetatable(L, luaL_checkstring(L, 1));
  if (!lua_istable(L, -1)) return 0;
  lua_getfield(L, -1, "__index");
  return 1;
}

#define PAR_EXPORT __attribute__((visibility("default")))

PAR_EXPORT int luaopen_parallel_core(lua_State *L) {
  luaL_checkversion(L);
  codec_open(L);
  l_wait_open(L);
  lua_newtable(L);
  l_pool_open(L);
  l_future_open(L);
  l_util_open(L);
  l_queue_open(L);
  l_sync_open(L);
  l_array_open(L);
  l_dict_open(L);
  l_remote_open(L);
  l_wire_open(L);
  l_capi_open(L);
  l_options_open(L);
  lua_pushcfunction(L, l_methods);
  lua_setfield(L, -2, "_methods");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
