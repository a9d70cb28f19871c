/* Option tables: unknown keys and values of the wrong kind raise, Lua
 * style, naming the option (a misspelt key silently ignored is a pool of
 * the wrong size, or a timeout that never fires). */
#include "lua/l_options.h"

#include <string.h>

#include "lauxlib.h"

/* The kind of option `key`, or NULL when there is none. */
typedef const char *(*kind_fn)(lua_State *L, void *ud, const char *key);

/* Pushes what is wrong with the value at v for option name of the given
 * kind, or returns 0. */
static int kind_error(lua_State *L, int v, const char *name, const char *kind) {
  int t = lua_type(L, v);
  if (strcmp(kind, "count") == 0 || strcmp(kind, "size") == 0) {
    int isint;
    lua_Integer n = lua_tointegerx(L, v, &isint);
    if (t == LUA_TNUMBER && isint && (kind[0] == 's' ? n >= 0 : n >= 1)) return 0;
    lua_pushfstring(L, "%s must be a %s integer", name, kind[0] == 's' ? "non-negative" : "positive");
  } else if (strcmp(kind, "seconds") == 0) {
    lua_Number x = lua_tonumber(L, v);
    if (t == LUA_TNUMBER && x >= 0) return 0;   /* NaN fails too */
    lua_pushfstring(L, "%s must be a non-negative number", name);
  } else if (strcmp(kind, "progress") == 0) {
    if (t == LUA_TBOOLEAN || t == LUA_TFUNCTION) return 0;
    lua_pushfstring(L, "%s must be a boolean or a function", name);
  } else if (strchr(kind, '|')) {
    const char *s = t == LUA_TSTRING ? lua_tostring(L, v) : NULL;
    size_t n = s ? strlen(s) : 0;
    const char *k = kind;
    while (s) {
      const char *bar = strchr(k, '|');
      size_t len = bar ? (size_t)(bar - k) : strlen(k);
      if (len == n && memcmp(k, s, n) == 0) return 0;
      if (!bar) break;
      k = bar + 1;
    }
    lua_pushfstring(L, "invalid option '%s' for %s (one of %s)", s ? s : luaL_typename(L, v), name, kind);
  } else {                              /* a type name */
    if (strcmp(luaL_typename(L, v), kind) == 0) return 0;
    lua_pushfstring(L, "%s must be a %s", name, kind);
  }
  return 1;
}

/* Returns 0, or pushes the first problem of the options table at idx. */
static int options_error(lua_State *L, int idx, kind_fn kind_of, void *ud) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *kind = NULL, *key = NULL;
    if (lua_type(L, -2) == LUA_TSTRING) {
      key = lua_tostring(L, -2);
      kind = kind_of(L, ud, key);
    }
    if (!kind) {
      if (key) lua_pushfstring(L, "unknown option '%s'", key);
      else if (lua_type(L, -2) == LUA_TNUMBER) {
        lua_pushvalue(L, -2);           /* tostring of a copy: lua_next needs the key */
        lua_pushfstring(L, "unknown option [%s]", lua_tostring(L, -1));
      } else {
        lua_pushfstring(L, "unknown option of type %s", luaL_typename(L, -2));
      }
      return 1;
    }
    if (kind_error(L, lua_gettop(L), key, kind)) return 1;
    lua_pop(L, 1);
  }
  return 0;
}

static const char *kind_in_array(lua_State *L, void *ud, const char *key) {
  const l_option *o;
  (void)L;
  for (o = (const l_option *)ud; o->name; o++)
    if (strcmp(o->name, key) == 0) return o->kind;
  return NULL;
}

void l_check_options(lua_State *L, int idx, int arg, const l_option *opts) {
  luaL_checkstack(L, 6, NULL);
  if (options_error(L, idx, kind_in_array, (void *)opts)) luaL_argerror(L, arg, lua_tostring(L, -1));
}

/* The kinds are the spec table's string values: alive while it is on the
 * stack (argument 4 of core._options). */
static const char *kind_in_table(lua_State *L, void *ud, const char *key) {
  const char *kind;
  (void)ud;
  lua_getfield(L, 4, key);
  kind = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  return kind;
}

/* core._options(opts, arg, fname, spec, level) --> opts: the facade's
 * check of an option table (spec: {name = kind}); the error names the
 * code `level` calls above the facade function that called this one. */
static int l_options(lua_State *L) {
  int arg = (int)luaL_checkinteger(L, 2);
  const char *fname = luaL_checkstring(L, 3);
  int level = (int)luaL_optinteger(L, 5, 1);
  luaL_checktype(L, 4, LUA_TTABLE);
  if (lua_isnoneornil(L, 1)) return 0;
  if (!lua_istable(L, 1)) {
    luaL_where(L, level);
    lua_pushfstring(L, "bad argument #%d to '%s' (table expected, got %s)", arg, fname,
                    luaL_typename(L, 1));
  } else if (options_error(L, 1, kind_in_table, NULL)) {
    const char *msg = lua_tostring(L, -1);
    luaL_where(L, level);
    lua_pushfstring(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
  } else {
    lua_settop(L, 1);
    return 1;
  }
  lua_concat(L, 2);
  return lua_error(L);
}

void l_options_open(lua_State *L) {
  lua_pushcfunction(L, l_options);
  lua_setfield(L, -2, "_options");
}
