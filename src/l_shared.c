/* Helpers shared by the bindings of queues, locks, arrays and dicts. */
#include "l_shared.h"

#include "lauxlib.h"
#include "codec.h"
#include "l_object.h"

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

void l_shared_meta(lua_State *L, const par_type *t) {
  luaL_getmetatable(L, t->name);
  lua_rawsetp(L, LUA_REGISTRYINDEX, t);
}

par_object *l_shared_check(lua_State *L, int idx, const par_type *t) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, idx);
  if (p && p->obj && lua_getmetatable(L, idx)) {
    int same;
    lua_rawgetp(L, LUA_REGISTRYINDEX, t);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return p->obj;
  }
  return l_object_check(L, idx, t);   /* raises the right error */
}
