#include "lua/l_object.h"

#include <string.h>

/* Marker stored in every parallel metatable: the codec's way to tell our
 * proxies from foreign userdata without trusting their memory layout. */
static const char marker_key = 0;

/* Weak-valued registry table: object address -> this state's live proxy,
 * so that an object coming back (a decoded argument, pool:completed())
 * is the very handle the script already holds: == and table keys work. */
static const char proxies_key = 0;

int l_weak_values(lua_State *L, const void *key) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  return lua_gettop(L);
}

static int proxies(lua_State *L) {
  return l_weak_values(L, &proxies_key);
}

void l_object_remember(lua_State *L, int idx) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  proxies(L);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, p->obj);
  lua_pop(L, 1);
}

/* Pushes the live proxy of o in this state and returns it, or NULL. */
static l_proxy *known(lua_State *L, par_object *o) {
  l_proxy *p;
  proxies(L);
  if (lua_rawgetp(L, -1, o) == LUA_TUSERDATA) {
    p = (l_proxy *)lua_touserdata(L, -1);
    if (p->obj == o) {
      lua_remove(L, -2);
      return p;
    }
  }
  lua_pop(L, 2);
  return NULL;
}

/* Each type's metatable is also kept in the registry under the address of
 * its par_type: one pointer lookup instead of a lookup by name, on every
 * method call. */
void l_object_setmeta(lua_State *L, const par_type *t) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, t);
  lua_setmetatable(L, -2);
}

l_proxy *l_object_push_ref(lua_State *L, par_object *o) {
  l_proxy *p = known(L, o);
  if (p) return p;
  /* Allocate before retaining: a memory error must not leak the ref. */
  p = (l_proxy *)lua_newuserdatauv(L, sizeof *p, 0);
  p->obj = NULL;
  p->owner = 0;
  l_object_setmeta(L, o->type);
  p->obj = par_object_retain(o);
  l_object_remember(L, -1);
  return p;
}

l_proxy *l_object_push(lua_State *L, par_object *o) {
  /* The reference handed over: kept by a new proxy, dropped if a live
   * proxy already holds one. */
  l_proxy *p = known(L, o);
  if (p) {
    par_object_release(o);
    return p;
  }
  p = (l_proxy *)lua_newuserdatauv(L, sizeof *p, 0);
  p->obj = o;
  p->owner = 0;
  l_object_setmeta(L, o->type);
  l_object_remember(L, -1);
  return p;
}

l_proxy *l_object_checkproxy_slow(lua_State *L, int idx, const par_type *t) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    int same;
    lua_rawgetp(L, LUA_REGISTRYINDEX, t);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!same) p = NULL;
  } else {
    p = NULL;
  }
  if (!p) p = (l_proxy *)luaL_checkudata(L, idx, t->name);   /* raises the error */
  if (p->obj == NULL) luaL_error(L, "%s is closed", t->name);
  return p;
}

int l_object_closed_error(lua_State *L, int idx) {
  const char *name = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING ? lua_tostring(L, -1)
                                                                        : "parallel object";
  return luaL_error(L, "%s was closed during the call", name);
}

par_object *l_object_test(lua_State *L, int idx) {
  par_object *o = NULL;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  if (lua_rawgetp(L, -1, &marker_key) == LUA_TBOOLEAN)
    o = ((l_proxy *)lua_touserdata(L, idx))->obj;
  lua_pop(L, 2);
  return o;
}

int l_object_test_closed(lua_State *L, int idx) {
  int closed = 0;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return 0;
  if (lua_rawgetp(L, -1, &marker_key) == LUA_TBOOLEAN)
    closed = ((l_proxy *)lua_touserdata(L, idx))->obj == NULL;
  lua_pop(L, 2);
  return closed;
}

int l_object_gc(lua_State *L) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, 1);
  if (p && lua_rawlen(L, 1) == sizeof *p && p->obj) {
    par_object *o = p->obj;
    /* a closed handle is no longer the object's handle in this state */
    proxies(L);
    if (lua_rawgetp(L, -1, o) == LUA_TUSERDATA && lua_touserdata(L, -1) == (void *)p) {
      lua_pushnil(L);
      lua_rawsetp(L, -3, o);
    }
    lua_pop(L, 2);
    p->obj = NULL;
    par_object_release(o);
  }
  return 0;
}

static int l_object_tostring(lua_State *L) {
  l_proxy *p = (l_proxy *)lua_touserdata(L, 1);
  const char *name = "parallel object";
  if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING) name = lua_tostring(L, -1);
  if (p->obj) lua_pushfstring(L, "%s: %p", name, (void *)p->obj);
  else lua_pushfstring(L, "%s (closed)", name);
  return 1;
}

void l_object_newmeta(lua_State *L, const par_type *t, const luaL_Reg *methods,
                      const luaL_Reg *metamethods) {
  /* opened again in this state (a second require after package.loaded was
   * cleared, a host's second luaopen): the metatable and its method table
   * stay the same ones, with the methods the facade added in Lua */
  int again = !luaL_newmetatable(L, t->name);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, t);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, &marker_key);
  if (!again || lua_getfield(L, -1, "__index") != LUA_TTABLE) {
    if (again) lua_pop(L, 1);
    lua_newtable(L);
  }
  if (methods) {
    l_object_pushupvalues(L, t);
    luaL_setfuncs(L, methods, L_OBJECT_NUPVALUES);
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_object_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_object_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_object_tostring);
  lua_setfield(L, -2, "__tostring");
  if (metamethods) {
    l_object_pushupvalues(L, t);
    luaL_setfuncs(L, metamethods, L_OBJECT_NUPVALUES);
  }
  lua_pop(L, 1);
}

void l_object_pushupvalues(lua_State *L, const par_type *t) {
  lua_pushlightuserdata(L, (void *)t);
  lua_rawgetp(L, LUA_REGISTRYINDEX, t);
}
