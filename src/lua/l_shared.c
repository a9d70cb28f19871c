/* Helpers shared by the bindings of queues, locks, arrays and dicts. */
#include "lua/l_shared.h"

#include "lauxlib.h"
#include "codec/codec.h"

/*
 * A message being decoded belongs to a box, so that an error in the
 * decode (a module that fails to load in this state, out of memory) frees
 * it. Lua code runs in the middle of a decode (a finalizer, a module
 * loader, a __newindex of the globals) and may decode too, so each decode
 * holds a box of its own: the state's box when it is empty, else a new one
 * that becomes the state's box. The box sits on the decode's stack while
 * it runs, which keeps it alive; a box left full by an error is never
 * reused, and the collector frees it with its message.
 *
 * The same box also holds an object for a method that runs Lua code
 * while it uses the object (l_hold): a finalizer during a decode, a done
 * callback or a barrier action may close the method's own handle, the
 * last one, and the object must outlive the method all the same.
 */
static const char box_key = 0;
#define MESSAGE_BOX "parallel.messagebox"

typedef struct box {
  par_msg *m;
  par_object *held;
} box;

static int box_gc(lua_State *L) {
  box *b = (box *)lua_touserdata(L, 1);
  par_object *o = b->held;
  par_msg_free(b->m);
  b->m = NULL;
  b->held = NULL;
  if (o) par_object_release(o);
  return 0;
}

/* Pushes a new, empty box and makes it the state's box. */
static box *box_new(lua_State *L) {
  box *b = (box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->m = NULL;
  b->held = NULL;
  if (luaL_newmetatable(L, MESSAGE_BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
  return b;
}

void l_message_open(lua_State *L) {
  int have = lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TUSERDATA;
  lua_pop(L, 1);
  if (!have) {
    box_new(L);
    lua_pop(L, 1);
  }
}

/* Pushes an empty box: the state's, or a new one if that one is in use
 * (by a call this one runs in, or left full by an error). */
static box *box_take(lua_State *L) {
  box *b;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key);
  b = (box *)lua_touserdata(L, -1);
  if (b == NULL || b->m != NULL || b->held != NULL) {
    lua_pop(L, 1);
    b = box_new(L);
  }
  return b;
}

void l_failure_undecodable(lua_State *L) {
  int err = lua_gettop(L);
  const char *why = lua_tostring(L, err);
  if (!why) why = lua_pushfstring(L, "error object is a %s value", luaL_typename(L, err));
  lua_pushfstring(L, "the task's error value could not be received (%s)", why);
  lua_replace(L, err);
  lua_settop(L, err);
  lua_pushliteral(L, "");
  lua_pushnil(L);
}

int l_hold(lua_State *L, par_object *o) {
  box *b = box_take(L);
  b->held = par_object_retain(o);
  return lua_gettop(L);
}

void l_hold_end(lua_State *L, int at) {
  box *b = (box *)lua_touserdata(L, at);
  par_object *o = b->held;
  b->held = NULL;
  lua_remove(L, at);
  par_object_release(o);
}

int l_message_decode(lua_State *L, par_msg *m) {
  box *b = box_take(L);
  int n, at;
  b->m = m;
  at = lua_gettop(L);
  n = codec_decode(L, m);
  b->m = NULL;
  par_msg_free(m);
  if (n == 1) lua_replace(L, at);         /* the box's slot goes */
  else lua_remove(L, at);
  return n;
}
