#include "codec/proto.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "core/msg.h"

static void proto_destroy(par_object *o) {
  par_proto *p = (par_proto *)o;
  dumpscan_free(&p->globals);
  free(p->dump);
  free(p->factory);
  free(p);
}

const par_type par_proto_type = { "parallel.proto", proto_destroy };

static _Atomic uint64_t next_proto_id = 1;
static _Atomic int scanner_works = 0;   /* 0 untested, 1 works, -1 not */
static _Atomic int factory_works = 0;   /* idem, for make_factory */

/* Registry keys. */
static const char key_protos = 0;    /* weak-keyed: closure -> proto box */
static const char key_bydump = 0;    /* weak-valued: dump string -> proto box */
static const char key_loaded = 0;    /* the receiver's cache of loaded prototypes */

/*
 * The receiver's cache: id -> loaded closure (simple) or factory, in two
 * generations. Hits in the old one move to the young one; when the young
 * one holds PROTO_CACHE_GENERATION entries it becomes the old one and the
 * old one is dropped. A worker thus keeps at most twice that many loaded
 * prototypes, the ones in use among them, however many one-off functions
 * it is sent. Layout: {young, old, count}.
 */
#define PROTO_CACHE_GENERATION 256

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  par_buf *b = (par_buf *)ud;
  (void)L;
  if (!par_buf_reserve(b, sz)) return 1;
  memcpy(b->data + b->len, p, sz);
  b->len += sz;
  return 0;
}

/* Pushes the dump of the function at the top of the stack as a string. */
static int push_dump(lua_State *L) {
  par_buf b;
  int rc;
  par_buf_init(&b);
  rc = lua_dump(L, dump_writer, &b, 0);
  if (rc == 0) lua_pushlstring(L, (const char *)b.data, b.len);
  par_buf_free(&b);
  return rc == 0;
}

/*
 * A factory for closures of a prototype with upvalues: the chunk
 *   local a1, ..., an  return function() <the prototype> end
 * built by compiling that source with a stand-in function and splicing the
 * prototype in its place, its upvalue descriptors made to capture a1..an.
 * Each call of the loaded chunk returns a new closure with n fresh upvalues,
 * so a receiving state loads the prototype once instead of once per task.
 * Its chunk name is "=?", what Lua shows for a function without debug
 * information: a stripped prototype inherits it.
 */
static int make_factory(lua_State *L, par_proto *p) {
  dumpscan_layout target, tmpl;
  luaL_Buffer B;
  size_t n, i, tlen, total;
  const char *t;
  char *out;
  if (dumpscan_layout_of(p->dump, p->len, &target) != 0) return 0;
  n = target.nupvals;
  if (n == 0 || n > 200) return 0;
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "local a1");
  for (i = 2; i <= n; i++) {
    lua_pushfstring(L, ", a%d", (int)i);
    luaL_addvalue(&B);
  }
  luaL_addstring(&B, " return function() return a1");
  for (i = 2; i <= n; i++) {
    lua_pushfstring(L, ", a%d", (int)i);
    luaL_addvalue(&B);
  }
  luaL_addstring(&B, " end");
  luaL_pushresult(&B);
  if (luaL_loadbufferx(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=?", "t") != LUA_OK) {
    lua_pop(L, 2);
    return 0;
  }
  lua_remove(L, -2);
  if (!push_dump(L)) { lua_pop(L, 1); return 0; }
  lua_remove(L, -2);
  t = lua_tolstring(L, -1, &tlen);
  if (dumpscan_layout_of(t, tlen, &tmpl) != 0 || tmpl.nprotos != 1) { lua_pop(L, 1); return 0; }
  total = tmpl.protos_at + (p->len - target.func_start) + (tlen - tmpl.protos_end);
  out = malloc(total);
  if (!out) { lua_pop(L, 1); return 0; }
  memcpy(out, t, tmpl.protos_at);
  memcpy(out + tmpl.protos_at, p->dump + target.func_start, p->len - target.func_start);
  for (i = 0; i < n; i++) {          /* instack, index of a(i+1), kind: a plain local */
    unsigned char *u = (unsigned char *)out + tmpl.protos_at + (target.upvals_at - target.func_start) + 3 * i;
    u[0] = 1;
    u[1] = (unsigned char)i;
    u[2] = 0;
  }
  memcpy(out + tmpl.protos_at + (p->len - target.func_start), t + tmpl.protos_end, tlen - tmpl.protos_end);
  lua_pop(L, 1);
  p->factory = out;
  p->factory_len = total;
  return 1;
}

static int proto_box_gc(lua_State *L) {
  par_proto **box = (par_proto **)lua_touserdata(L, 1);
  if (*box) { par_object_release(&(*box)->hdr); *box = NULL; }
  return 0;
}

/* The prototype of the Lua function at idx, from the cache or dumped now. */
par_proto *proto_get(lua_State *L, int idx) {
  par_proto *p, **box;
  size_t len;
  const char *s;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_protos);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    p = *(par_proto **)lua_touserdata(L, -1);
    lua_pop(L, 2);
    return p;
  }
  lua_pop(L, 1);
  /* Dump, then share by content with other closures of the same prototype. */
  lua_pushvalue(L, idx);
  if (!push_dump(L)) luaL_error(L, "not enough memory");
  lua_remove(L, -2);
  s = lua_tolstring(L, -1, &len);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_bydump);
  lua_pushvalue(L, -2);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    p = *(par_proto **)lua_touserdata(L, -1);
  } else {
    lua_pop(L, 1);
    box = (par_proto **)lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, "parallel.protobox")) {
      lua_pushcfunction(L, proto_box_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    p = calloc(1, sizeof *p);
    if (p) p->dump = malloc(len ? len : 1);
    if (!p || !p->dump) { free(p); luaL_error(L, "not enough memory"); }
    par_object_init(&p->hdr, &par_proto_type);
    p->id = atomic_fetch_add(&next_proto_id, 1);
    p->len = len;
    memcpy(p->dump, s, len);
    if (scanner_works != 1 || dumpscan_globals(s, len, &p->globals) != 0)
      memset(&p->globals, 0, sizeof p->globals);
    *box = p;
    if (factory_works == 1) make_factory(L, p);
    lua_pushvalue(L, -3);           /* dump string */
    lua_pushvalue(L, -2);           /* box */
    lua_rawset(L, -4);
  }
  /* stack: protos, dump, bydump, box */
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -6);
  lua_pop(L, 4);
  return p;
}

par_proto *proto_from_dump(const char *dump, size_t len) {
  par_proto *p = calloc(1, sizeof *p);
  if (p) p->dump = malloc(len ? len : 1);
  if (!p || !p->dump) { free(p); return NULL; }
  par_object_init(&p->hdr, &par_proto_type);
  p->id = atomic_fetch_add(&next_proto_id, 1);
  p->len = len;
  memcpy(p->dump, dump, len);
  if (atomic_load(&scanner_works) != 1 || dumpscan_globals(dump, len, &p->globals) != 0)
    memset(&p->globals, 0, sizeof p->globals);
  return p;
}

/* Stack: cache, young, function. Puts the function in the young
 * generation under key, starting a new generation when it is full. */
static void cache_add(lua_State *L, int cache, lua_Integer key) {
  lua_Integer n;
  lua_rawgeti(L, cache, 3);
  n = lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  if (n > PROTO_CACHE_GENERATION) {
    lua_rawgeti(L, cache, 1);
    lua_rawseti(L, cache, 2);                  /* young becomes old */
    lua_createtable(L, 0, PROTO_CACHE_GENERATION);
    lua_replace(L, -3);
    lua_pushvalue(L, -2);
    lua_rawseti(L, cache, 1);
    n = 1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, key);
  lua_pushinteger(L, n);
  lua_rawseti(L, cache, 3);
}

/* Pushes a closure of p: for a simple one, the cached closure itself;
 * otherwise a new closure from the cached factory (or, without one, from
 * the dump), whose upvalues the caller sets. */
/* A prototype without a factory of its own (one received from another
 * process: making a factory needs a Lua state) gets one per receiving
 * state, on first use, kept with the others (false: none can be made).
 * p is only read: other threads may use it. Pushes the loaded factory and
 * returns 1, or returns 0 with nothing pushed. */
static int state_factory(lua_State *L, par_proto *p) {
  lua_Integer key = -(lua_Integer)p->id;
  par_proto tmp;
  int t, ok;
  if (atomic_load(&factory_works) != 1) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_loaded);
  t = lua_rawgeti(L, -1, key);
  if (t == LUA_TFUNCTION) { lua_remove(L, -2); return 1; }
  lua_pop(L, 1);
  if (t == LUA_TBOOLEAN) { lua_pop(L, 1); return 0; }
  memset(&tmp, 0, sizeof tmp);
  tmp.dump = p->dump;
  tmp.len = p->len;
  ok = make_factory(L, &tmp);
  if (ok && luaL_loadbufferx(L, tmp.factory, tmp.factory_len, "=parallel", "b") != LUA_OK) {
    lua_pop(L, 1);
    ok = 0;
  }
  free(tmp.factory);
  if (!ok) lua_pushboolean(L, 0);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, key);
  lua_remove(L, -2);
  if (ok) return 1;
  lua_pop(L, 1);
  return 0;
}

void proto_push_closure(lua_State *L, par_proto *p, int simple) {
  lua_Integer key = simple ? (lua_Integer)p->id : -(lua_Integer)p->id;
  int cached, cache;
  if (!simple && !p->factory) {
    if (state_factory(L, p)) {
      lua_call(L, 0, 1);
      return;
    }
    if (luaL_loadbufferx(L, p->dump, p->len, "=parallel", "b") != LUA_OK) lua_error(L);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_loaded);
  cache = lua_gettop(L);
  lua_rawgeti(L, cache, 1);                    /* young */
  cached = lua_rawgeti(L, -1, key) == LUA_TFUNCTION;
  if (!cached) {
    lua_pop(L, 1);
    lua_rawgeti(L, cache, 2);                  /* old */
    cached = lua_rawgeti(L, -1, key) == LUA_TFUNCTION;
    lua_remove(L, -2);
    if (!cached) {
      lua_pop(L, 1);
      if (simple) {
        if (luaL_loadbufferx(L, p->dump, p->len, "=parallel", "b") != LUA_OK) lua_error(L);
      } else if (luaL_loadbufferx(L, p->factory, p->factory_len, "=parallel", "b") != LUA_OK) {
        lua_error(L);
      }
    }
    cache_add(L, cache, key);
  }
  lua_replace(L, cache);
  lua_settop(L, cache);
  if (!simple) lua_call(L, 0, 1);
}

/* Checks that the dump scanner reads this Lua's format; if not, functions
 * travel without their globals rather than with guessed ones. */
static void self_test(lua_State *L) {
  size_t len;
  const char *s;
  dumpscan_names names;
  if (atomic_load(&scanner_works) != 0) return;
  if (luaL_loadstring(L, "local t = {} return function() return parallel_probe_global end") != LUA_OK) {
    lua_pop(L, 1);
    return;
  }
  lua_call(L, 0, 1);
  if (!push_dump(L)) { lua_pop(L, 1); return; }
  s = lua_tolstring(L, -1, &len);
  if (dumpscan_globals(s, len, &names) == 0) {
    int ok = names.n == 1 && strcmp(names.names[0], "parallel_probe_global") == 0;
    atomic_store(&scanner_works, ok ? 1 : -1);
    dumpscan_free(&names);
  } else {
    atomic_store(&scanner_works, -1);
  }
  lua_pop(L, 2);
}

/* Checks make_factory on this Lua: a closure made by a factory must have
 * its own upvalues, settable, as a loaded one does. */
static void factory_self_test(lua_State *L) {
  par_proto p;
  int ok = 0, top = lua_gettop(L);
  if (atomic_load(&factory_works) != 0) return;
  memset(&p, 0, sizeof p);
  if (luaL_loadstring(L, "local k, j = 1, 2 return function(x) return x + k * j end") == LUA_OK) {
    lua_call(L, 0, 1);
    if (push_dump(L)) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      p.dump = (char *)s;
      p.len = len;
      if (make_factory(L, &p) &&
          luaL_loadbufferx(L, p.factory, p.factory_len, "=test", "b") == LUA_OK) {
        lua_pushvalue(L, -1);
        lua_call(L, 0, 1);                 /* a closure */
        lua_pushvalue(L, -2);
        lua_call(L, 0, 1);                 /* another one */
        lua_pushinteger(L, 10); lua_setupvalue(L, -3, 1);
        lua_pushinteger(L, 3); lua_setupvalue(L, -3, 2);
        lua_pushinteger(L, 20); lua_setupvalue(L, -2, 1);
        lua_pushinteger(L, 5); lua_setupvalue(L, -2, 2);
        lua_pushvalue(L, -2); lua_pushinteger(L, 1); lua_call(L, 1, 1);
        lua_pushvalue(L, -2); lua_pushinteger(L, 1); lua_call(L, 1, 1);
        ok = lua_tointeger(L, -2) == 31 && lua_tointeger(L, -1) == 101;
      }
      free(p.factory);
    }
  }
  lua_settop(L, top);
  atomic_store(&factory_works, ok ? 1 : -1);
}

static void weak_table(lua_State *L, const char *mode, const void *key) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void proto_open(lua_State *L) {
  weak_table(L, "k", &key_protos);
  weak_table(L, "v", &key_bydump);
  lua_createtable(L, 3, 0);
  lua_newtable(L);
  lua_rawseti(L, -2, 1);
  lua_newtable(L);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 3);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_loaded);
  self_test(L);
  factory_self_test(L);
}
