/*
 * parallel.dict: a shared table. Keys are strings, numbers or booleans,
 * encoded here canonically (a float with an integer value is that integer,
 * as in Lua tables) so that equal keys have equal bytes; values travel by
 * the codec. Method names (keys, update) take precedence over stored keys
 * when indexing; pairs(d) and d:keys() still show such keys.
 */
#include "lua/l_shared.h"

#include <string.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "lua/l_object.h"
#include "lua/l_wait.h"
#include "core/dict.h"
#include "wire/remote.h"

static par_dict *checkdict(lua_State *L) {
  return (par_dict *)l_object_check(L, 1, &par_dict_type);
}

/* Encodes the key at idx (argument arg) into k. Long strings get a
 * temporary userdata, left on the stack. */
void l_dict_tokey(lua_State *L, int idx, key *k, int arg) {
  unsigned char *p = k->buf;
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      p[0] = 'b';
      p[1] = (unsigned char)lua_toboolean(L, idx);
      k->len = 2;
      break;
    case LUA_TNUMBER: {
      lua_Integer i;
      int isint;
      i = lua_tointegerx(L, idx, &isint);
      if (isint) {
        p[0] = 'i';
        memcpy(p + 1, &i, sizeof i);
      } else {
        lua_Number f = lua_tonumber(L, idx);
        if (f != f) luaL_argerror(L, arg, "dict key is NaN");
        p[0] = 'f';
        memcpy(p + 1, &f, sizeof f);
      }
      k->len = 1 + sizeof(lua_Integer);
      break;
    }
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      if (n + 1 > KEYBUF) p = (unsigned char *)lua_newuserdatauv(L, n + 1, 0);
      p[0] = 's';
      memcpy(p + 1, s, n);
      k->len = n + 1;
      break;
    }
    default:
      luaL_argerror(L, arg, "dict key must be a string, number or boolean");
  }
  k->p = p;
}

void l_dict_pushkey(lua_State *L, const unsigned char *p, size_t len) {
  switch (p[0]) {
    case 'b': lua_pushboolean(L, p[1]); break;
    case 'i': {
      lua_Integer i;
      memcpy(&i, p + 1, sizeof i);
      lua_pushinteger(L, i);
      break;
    }
    case 'f': {
      lua_Number f;
      memcpy(&f, p + 1, sizeof f);
      lua_pushnumber(L, f);
      break;
    }
    default: lua_pushlstring(L, (const char *)p + 1, len - 1); break;
  }
}

/* parallel.dict([{owner = "parent"}]) */
static int l_dict_new(lua_State *L) {
  par_dict *d;
  if (l_remote_make(L, 1, PR_KIND_DICT, 0)) return 1;
  d = par_dict_new();
  if (!d) return luaL_error(L, "not enough memory");
  l_object_push(L, (par_object *)d);
  return 1;
}

static int l_dict_index(lua_State *L) {
  par_dict *d = checkdict(L);
  par_msg *m;
  key k;
  int r;
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(L_OBJECT_NUPVALUES + 1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  l_dict_tokey(L, 2, &k, 2);
  r = par_dict_get(d, k.p, k.len, &m);
  if (r < 0) return luaL_error(L, "not enough memory");
  if (r == 0) return 0;
  return l_message_decode(L, m);
}

typedef struct set_op {
  par_dict *d;
  key *k;
  par_msg *v, *old;
} set_op;

static int set_try(void *ud, double deadline) {
  set_op *op = (set_op *)ud;
  return par_dict_set(op->d, op->k->p, op->k->len, op->v, &op->old, deadline);
}

static int l_dict_newindex(lua_State *L) {
  set_op op;
  key k;
  int r;
  op.d = checkdict(L);
  op.k = &k;
  op.old = NULL;
  lua_settop(L, 3);
  l_dict_tokey(L, 2, &k, 2);
  op.v = lua_isnil(L, 3) ? NULL : codec_encode(L, 3, 1, "value", 0);
  if (!l_object_open(L, 1)) { par_msg_free(op.v); return l_object_closed_error(L, 1); }
  r = l_wait(L, -1, set_try, &op);
  par_msg_free(op.old);
  if (r != PAR_OK) par_msg_free(op.v);
  switch (r) {
    case PAR_OK: return 0;
    case PAR_INTERRUPTED: return l_wait_raise(L);
    case PAR_ERROR: return luaL_error(L, "dict key is being updated by this thread");
    default: return luaL_error(L, "not enough memory");
  }
}

static int l_dict_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)par_dict_count(checkdict(L)));
  return 1;
}

#define SNAPSHOT "parallel.dict.snapshot"

/* Holds a snapshot's copies while they are decoded: if decoding raises,
 * __gc frees what is left. */
typedef struct snap {
  par_dict_item *items;
  size_t n;
} snap;

static void snap_free(snap *s) {
  par_dict_items_free(s->items, s->n);
  s->items = NULL;
  s->n = 0;
}

static int snap_gc(lua_State *L) {
  snap_free((snap *)lua_touserdata(L, 1));
  return 0;
}

/* Pushes the list of keys and, if with_values, the list of values. */
static void snapshot(lua_State *L, par_dict *d, int with_values) {
  snap *s = (snap *)lua_newuserdatauv(L, sizeof *s, 0);
  int box = lua_gettop(L);
  size_t i;
  s->items = NULL;
  s->n = 0;
  luaL_setmetatable(L, SNAPSHOT);
  if (par_dict_items(d, with_values, &s->items, &s->n) < 0)
    luaL_error(L, "not enough memory");
  lua_createtable(L, (int)s->n, 0);
  if (with_values) lua_createtable(L, (int)s->n, 0);
  for (i = 0; i < s->n; i++) {
    l_dict_pushkey(L, s->items[i].key, s->items[i].klen);
    lua_rawseti(L, box + 1, (lua_Integer)i + 1);
    if (with_values) {
      par_msg *m = s->items[i].value;
      s->items[i].value = NULL;
      l_message_decode(L, m);
      lua_rawseti(L, box + 2, (lua_Integer)i + 1);
    }
  }
  snap_free(s);
  lua_remove(L, box);
}

static int l_dict_keys(lua_State *L) {
  snapshot(L, checkdict(L), 0);
  return 1;
}

static int pairs_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(3)) + 1;
  if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL) return 0;
  lua_rawgeti(L, lua_upvalueindex(2), i);
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(3));
  return 2;
}

static int l_dict_pairs(lua_State *L) {
  snapshot(L, checkdict(L), 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairs_next, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

typedef struct begin_op {
  par_dict *d;
  key *k;
  par_dict_entry *e;
  par_msg *current;
} begin_op;

static int begin_try(void *ud, double deadline) {
  begin_op *op = (begin_op *)ud;
  return par_dict_begin_update(op->d, op->k->p, op->k->len, &op->e, &op->current,
                               deadline);
}

/* Runs protected: fn(old) and the encoding of its result. Stack: the
 * current message (light userdata, may be NULL), fn. */
static int update_call(lua_State *L) {
  par_msg *cur = (par_msg *)lua_touserdata(L, 1);
  par_msg *m;
  lua_settop(L, 2);
  if (cur) l_message_decode(L, cur);
  else lua_pushnil(L);
  lua_call(L, 1, 1);
  m = lua_isnil(L, -1) ? NULL : codec_encode(L, -1, 1, "value", 0);
  lua_pushlightuserdata(L, m);
  return 2;
}

static int l_dict_update(lua_State *L) {
  begin_op op;
  key k;
  par_msg *m, *old;
  int r;
  op.d = checkdict(L);
  op.k = &k;
  l_dict_tokey(L, 2, &k, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  r = l_wait(L, -1, begin_try, &op);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  if (r == PAR_ERROR) return luaL_error(L, "dict key is being updated by this thread");
  if (r != PAR_OK) return luaL_error(L, "not enough memory");
  /* The key is ours until end_update: no error may escape before it. fn
   * may close this handle (the dict's last): our own reference keeps the
   * dict until then. */
  par_object_retain((par_object *)op.d);
  lua_pushcfunction(L, update_call);
  lua_pushlightuserdata(L, op.current);
  lua_pushvalue(L, 3);
  if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
    par_dict_end_update(op.d, op.e, 0, NULL, &old);
    par_object_release((par_object *)op.d);
    return lua_error(L);
  }
  m = (par_msg *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  par_dict_end_update(op.d, op.e, 1, m, &old);
  par_object_release((par_object *)op.d);
  par_msg_free(old);
  return 1;
}

static const luaL_Reg dict_methods[] = {
  {"keys", l_dict_keys},
  {"update", l_dict_update},
  {NULL, NULL}
};

static const luaL_Reg dict_meta[] = {
  {"__newindex", l_dict_newindex},
  {"__len", l_dict_len},
  {"__pairs", l_dict_pairs},
  {NULL, NULL}
};

static const luaL_Reg constructors[] = {
  {"dict", l_dict_new},
  {NULL, NULL}
};

void l_dict_open(lua_State *L) {
  l_message_open(L);
  l_object_newmeta(L, &par_dict_type, dict_methods, dict_meta);
  luaL_getmetatable(L, par_dict_type.name);
  l_object_pushupvalues(L, &par_dict_type);
  lua_getfield(L, -3, "__index");
  lua_pushcclosure(L, l_dict_index, L_OBJECT_NUPVALUES + 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SNAPSHOT);
  lua_pushcfunction(L, snap_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_setfuncs(L, constructors, 0);
}
