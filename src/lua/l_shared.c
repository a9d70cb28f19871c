/* Helpers shared by the bindings of queues, locks, arrays and dicts. */
#include "lua/l_shared.h"

#include "lauxlib.h"
#include "codec/codec.h"

/*
 * The message being decoded waits in a per-state box: if codec_decode
 * raises, the next decode or the box's __gc frees it, so a failed receive
 * leaks nothing and the hot path costs no allocation.
 */
static const char box_key = 0;

typedef struct box {
  par_msg *m;
} box;

static int box_gc(lua_State *L) {
  box *b = (box *)lua_touserdata(L, 1);
  par_msg_free(b->m);
  b->m = NULL;
  return 0;
}

void l_message_open(lua_State *L) {
  box *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TUSERDATA) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  b = (box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->m = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
}

int l_message_decode(lua_State *L, par_msg *m) {
  box *b;
  int n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key);
  b = (box *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b) {
    par_msg_free(b->m);
    b->m = m;
  }
  n = codec_decode(L, m);
  if (b) b->m = NULL;
  par_msg_free(m);
  return n;
}
