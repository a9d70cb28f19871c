#define _GNU_SOURCE
/*
 * Names, both ways. The sender sends a loaded module (a table in
 * package.loaded) and a C function that is a field of one by name, and
 * reads the globals a function's code reads where its _ENV finds them; the
 * receiver resolves those names in its own package.loaded, requiring a
 * module that is not loaded yet.
 */
#include <stdint.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/internal.h"

/* Registry keys. */
static const char key_names = 0;     /* table: [1]=signature, modules[t]=name, cfuncs[f]="mod\0field" */
static const char key_cfcache = 0;   /* receiver: "mod\0field" -> C function */

/* ---------------------------------------------------------------- sender */

/* Globals of the standard library that every receiver has already. */
int codec_is_std_global(const char *name) {
  static const char *const std[] = {
    "assert", "collectgarbage", "dofile", "error", "getmetatable", "ipairs",
    "load", "loadfile", "next", "pairs", "pcall", "print", "rawequal", "rawget",
    "rawlen", "rawset", "require", "select", "setmetatable", "tonumber",
    "tostring", "type", "warn", "xpcall", "_G", "_VERSION", "coroutine", "debug",
    "io", "math", "os", "package", "string", "table", "utf8", NULL
  };
  int i;
  for (i = 0; std[i]; i++)
    if (strcmp(std[i], name) == 0) return 1;
  return 0;
}

/* Whether module `candidate` names a C function better than the name
 * "mod\0field" found so far. */
static int better_cname(const char *current, const char *candidate) {
  int cur_g = strcmp(current, LUA_GNAME) == 0, cand_g = strcmp(candidate, LUA_GNAME) == 0;
  if (cur_g != cand_g) return cur_g;
  return strlen(current) > strlen(candidate);
}

/*
 * package.loaded, read backwards: which tables are loaded modules and which
 * C functions are fields of them. Rebuilt when package.loaded changes (a
 * module added, removed or replaced), at most once per encode.
 */
static void names_refresh(enc *e) {
  lua_State *L = e->L;
  lua_Unsigned sig = 0;
  int loaded, t, fresh;
  if (e->have_names) return;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  loaded = lua_gettop(L);
  /* The signature of package.loaded: its size and the identity of its
   * values, so that a replaced module (a reload) is noticed too. */
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    sig = sig * 31u + (lua_Unsigned)(uintptr_t)lua_topointer(L, -1) + 1u;
    lua_pop(L, 1);
  }
  fresh = lua_rawgetp(L, LUA_REGISTRYINDEX, &key_names) == LUA_TTABLE &&
          lua_rawgeti(L, -1, 1) == LUA_TNUMBER && (lua_Unsigned)lua_tointeger(L, -1) == sig;
  lua_settop(L, loaded);
  if (fresh) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_names);
  } else {
    lua_createtable(L, 1, 2);
    t = lua_gettop(L);
    lua_pushinteger(L, (lua_Integer)sig);
    lua_rawseti(L, t, 1);
    lua_newtable(L);   /* modules: table -> name */
    lua_newtable(L);   /* cfuncs: function -> "mod\0field" */
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
        int mod = lua_gettop(L);
        /* A module loaded under two names (socket and socket.core) goes by
         * the shorter: requiring it loads the whole thing. */
        lua_pushvalue(L, mod);
        if (lua_rawget(L, t + 1) != LUA_TSTRING || lua_rawlen(L, -1) > lua_rawlen(L, mod - 1)) {
          lua_pushvalue(L, mod);
          lua_pushvalue(L, mod - 1);
          lua_rawset(L, t + 1);
        }
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, mod)) {
          /* In _G, only the standard library's own functions have a name
           * the receiver knows: another global's C function does not. */
          if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1) &&
              (strcmp(lua_tostring(L, mod - 1), LUA_GNAME) != 0 || codec_is_std_global(lua_tostring(L, -2)))) {
            lua_pushvalue(L, -1);
            lua_rawget(L, t + 2);
            /* The shortest module name wins, as for tables, but _G only
             * when no other module has the function: a global alias
             * (sqrt = math.sqrt) is not a field of the receiver's _G. */
            if (lua_isnil(L, -1) || better_cname(lua_tostring(L, -1), lua_tostring(L, mod - 1))) {
              lua_pop(L, 1);
              lua_pushvalue(L, -1);
              lua_pushfstring(L, "%s%c%s", lua_tostring(L, mod - 1), 0, lua_tostring(L, -3));
              lua_rawset(L, t + 2);
            } else {
              lua_pop(L, 1);
            }
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    lua_setfield(L, t, "cfuncs");
    lua_setfield(L, t, "modules");
    lua_pushvalue(L, t);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_names);
  }
  lua_replace(L, e->names);
  lua_pop(L, 1);            /* package.loaded */
  e->have_names = 1;
}

/* Pushes the name under which the value at idx is known in `field`
 * ("modules" or "cfuncs"), or nothing and returns 0. */
int codec_names_lookup(enc *e, int idx, const char *field) {
  lua_State *L = e->L;
  names_refresh(e);
  lua_getfield(L, e->names, field);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 2);
  return 0;
}

static int protected_get(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

/*
 * Pushes env[name] for a function's _ENV table, following __index tables
 * (a sandbox or a test runner's environment over _G); an __index function
 * is called in protected mode: reading globals must not raise.
 */
int codec_push_global(lua_State *L, int env, const char *name) {
  int depth;
  lua_pushvalue(L, env);
  for (depth = 0; depth < 16; depth++) {
    lua_pushstring(L, name);
    if (lua_rawget(L, -2) != LUA_TNIL) {
      lua_remove(L, -2);
      return lua_type(L, -1);
    }
    lua_pop(L, 1);
    if (!lua_getmetatable(L, -1)) break;
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) == LUA_TFUNCTION) {
      /* An __index function (a test runner's environment): ask it, in
       * protected mode, so a strict-mode error means "not defined". */
      lua_pop(L, 2);
      lua_pushcfunction(L, protected_get);
      lua_insert(L, -2);
      lua_pushstring(L, name);
      if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        lua_pushnil(L);
      }
      return lua_type(L, -1);
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 2);
      break;
    }
    lua_remove(L, -2);            /* the metatable */
    lua_remove(L, -2);            /* the table it belonged to */
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  return LUA_TNIL;
}

/* -------------------------------------------------------------- receiver */

/* Pushes package.loaded[name], requiring it when absent. */
void codec_push_module(lua_State *L, const char *name, size_t len) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, len);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushlstring(L, name, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      /* require's "module 'x' not found: <where it looked>" alone does not
       * say why x was wanted here, nor what to do; other errors (the
       * module's own, an interrupt) go on as they are */
      const char *e = lua_tostring(L, -1);
      if (lua_type(L, -1) != LUA_TSTRING || strncmp(e, "module '", 8) != 0) lua_error(L);
      luaL_error(L, "cannot receive module '%s' (a loaded module travels by name, and is required"
                 " by the receiver): %s\nmake it loadable here: on package.path/cpath, or in"
                 " package.preload (set by the pool's init)", lua_pushlstring(L, name, len), e);
    }
  }
  lua_remove(L, -2);
}

int codec_push_cfunc(lua_State *L, const char *s, size_t len) {
  size_t mlen;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cfcache);
  lua_pushlstring(L, s, len);
  if (lua_rawget(L, -2) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 1);
  mlen = strnlen(s, len);
  if (mlen == len) {
    lua_pop(L, 1);
    return 0;
  }
  codec_push_module(L, s, mlen);
  lua_pushlstring(L, s + mlen + 1, len - mlen - 1);
  if (lua_type(L, -2) != LUA_TTABLE || lua_rawget(L, -2) != LUA_TFUNCTION)
    luaL_error(L, "cannot receive C function %s.%s", lua_pushlstring(L, s, mlen),
               lua_pushlstring(L, s + mlen + 1, len - mlen - 1));
  lua_remove(L, -2);
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
  return 1;
}

void codec_names_open(lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cfcache);
}
