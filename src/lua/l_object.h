/*
 * Lua proxies for shared core objects. A proxy is a small userdata holding
 * one reference to a par_object; its metatable is named after the type
 * ("parallel.queue") and carries a marker so the codec can recognise every
 * parallel object and send it by reference. The shared __gc/__close drops
 * the reference once; calling it again is harmless, and any method on a
 * closed proxy raises "parallel.queue is closed".
 */
#ifndef PAR_L_OBJECT_H
#define PAR_L_OBJECT_H

#include "lua.h"
#include "lauxlib.h"
#include "core/object.h"

typedef struct l_proxy {
  par_object *obj;     /* NULL once closed */
  int owner;           /* created by this state's constructor (pools use it) */
} l_proxy;

/* Pushes the proxy of o, taking over one reference to o (no extra retain).
 * When this state already has a live proxy of o, that one is pushed. */
l_proxy *l_object_push(lua_State *L, par_object *o);
/* Registers the proxy at idx as its object's handle in this state (the
 * push functions do it; constructors that build proxies by hand call it). */
void l_object_remember(lua_State *L, int idx);
/* Sets the metatable of type t on the value on top of the stack. */
void l_object_setmeta(lua_State *L, const par_type *t);
/* Like l_object_push but retains o first. */
l_proxy *l_object_push_ref(lua_State *L, par_object *o);

/* The object of the proxy at idx, checked against t (luaL_checkudata wording);
 * raises "<type name> is closed" for a closed proxy. */
l_proxy *l_object_checkproxy_slow(lua_State *L, int idx, const par_type *t);

static inline l_proxy *l_object_checkproxy(lua_State *L, int idx, const par_type *t) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, idx);
  /* In a function of a metatable made by l_object_newmeta, upvalue 2 is
   * that metatable: a userdata that has it is one of our proxies, and its
   * object tells its type. No registry lookup, no call: it is what makes
   * v:add(1) cost little more than any call from Lua to C. */
  if (p && lua_getmetatable(L, idx)) {
    int same = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (same && p->obj && p->obj->type == t) return p;
  }
  return l_object_checkproxy_slow(L, idx, t);
}

static inline par_object *l_object_check(lua_State *L, int idx, const par_type *t) {
  return l_object_checkproxy(L, idx, t)->obj;
}
/* Whether the proxy at idx (checked earlier) still holds its object. Lua
 * code run in the middle of a method (an encode's finalizers and __index
 * functions, an update's fn) may have closed that handle, and its object
 * gone with it: a method re-checks before using the object again, and
 * raises with l_object_closed_error once it has freed what it holds. */
static inline int l_object_open(lua_State *L, int idx) {
  return ((l_proxy *)lua_touserdata(L, idx))->obj != NULL;
}
int l_object_closed_error(lua_State *L, int idx);

/* Any parallel object at idx, or NULL (no error). */
par_object *l_object_test(lua_State *L, int idx);
/* Whether idx is the handle of a parallel object that was closed. */
int l_object_test_closed(lua_State *L, int idx);

/*
 * Creates the metatable for t: __name, the marker, __index = a table of
 * `methods`, then `metamethods` (which may override __index, __gc, ...).
 * Missing __gc/__close/__tostring get the generic ones. Leaves nothing on
 * the stack. The methods and metamethods get the L_OBJECT_NUPVALUES
 * upvalues of l_object_pushupvalues, with which l_object_check of their
 * own type is one comparison; a closure with more upvalues (an __index
 * holding the methods table) puts its own after them.
 */
void l_object_newmeta(lua_State *L, const par_type *t, const luaL_Reg *methods,
                      const luaL_Reg *metamethods);

#define L_OBJECT_NUPVALUES 2
/* Pushes t (light userdata) and its metatable, made by l_object_newmeta. */
void l_object_pushupvalues(lua_State *L, const par_type *t);

/* The generic __gc/__close: drops the proxy's reference once. */
int l_object_gc(lua_State *L);

/* Pushes the weak-valued table kept in the registry at key (made on
 * first use); returns its stack index. */
int l_weak_values(lua_State *L, const void *key);

#endif
