/*
 * libFuzzer target for the codec (src/codec/).
 *
 * Each input is read as a little program that builds Lua values in a
 * sender state A: nested tables with cycles, shared parts, tables and
 * functions as keys and metatables; strings (short, long, any bytes);
 * integers; floats incl. NaN, -0.0 and infinities; Lua functions with
 * upvalues (loaded from generated source), upvalues shared between
 * closures, closures of one prototype, functions reading globals; C
 * functions and modules that travel by name; shared objects made through
 * parallel.core (queue, lock, ..., a pool and a future); and, rarely,
 * values that cannot travel or nesting past the codec's limit.
 *
 * The values are encoded in A and decoded in a fresh receiver state B,
 * twice from one message and once more from a second encoding (the caches
 * of both sides), and compared in structure: a bijection between A's and
 * B's tables, closures and upvalues (so sharing, cycles and joined upvalues
 * must survive), numbers with their subtype and exact bits, modules and C
 * functions by identity in B, shared objects by their core object.
 * A mismatch aborts; crashes, sanitizer reports and leaks (LeakSanitizer,
 * both states are closed after each input) fail the run as usual.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "codec/codec.h"
#include "codec/dumpscan.h"
#include "lua/l_object.h"
#include "core/msg.h"

int luaopen_parallel_core(lua_State *L);

#define MAX_NODES 1500
#define MAX_DEPTH 24
#define NGLOBALS 4

/* ------------------------------------------------------------ the input */

typedef struct gen {
  lua_State *L;
  const uint8_t *p;
  size_t n;
  int nodes;
  int objs, keyables, shared, core;   /* stack indices in A */
  int nobjs, nkeyables, nshared;
  int next_id;
  int factory;                        /* stack index: made on first use */
  int made_pool;
  int bad, deep;                      /* an unsendable value / a deep chain was made */
} gen;

static unsigned byte_(gen *g) {
  if (g->n == 0) return 0;
  g->n--;
  return *g->p++;
}

static void bytes_(gen *g, void *out, size_t k) {
  size_t take = k < g->n ? k : g->n;
  memset(out, 0, k);
  memcpy(out, g->p, take);
  g->p += take;
  g->n -= take;
}

static void gen_value(gen *g, int depth);
static void gen_key(gen *g, int depth);

static const char *const dict_strings[] = {
  "", "a", "n", "1", "__index", "__name", "__tostring", "__len", "__eq",
  "_ENV", "_G", "string", "math", "fn", "args", "item", "\0x\0", "\xff\xfe",
  "a.b", "[1]", "parallel.core", "parallel.queue",
};

static void push_str(gen *g, size_t len) {
  char buf[64];
  bytes_(g, buf, len);
  /* Weak tables and finalizers would let the collector change a value
   * between encoding and comparing: keep those names out. */
  if ((len == 6 && memcmp(buf, "__mode", 6) == 0) || (len == 4 && memcmp(buf, "__gc", 4) == 0) ||
      (len == 7 && memcmp(buf, "__close", 7) == 0))
    buf[0] = 'x';
  lua_pushlstring(g->L, buf, len);
}

static void push_dict_string(gen *g) {
  unsigned i = byte_(g) % (sizeof dict_strings / sizeof *dict_strings);
  if (i == 16) lua_pushlstring(g->L, "\0x\0", 3);
  else lua_pushstring(g->L, dict_strings[i]);
}

static void push_special_float(gen *g) {
  static const double sp[] = {
    0.0, -0.0, 1.0, -1.0, 3.0, 0.5, 1e308, -1e308, 4.9e-324, 2.2250738585072014e-308,
    9007199254740992.0, 9223372036854775808.0, -9223372036854775808.0, 1e-300,
  };
  unsigned i = byte_(g) % 18;
  if (i < sizeof sp / sizeof *sp) lua_pushnumber(g->L, sp[i]);
  else if (i == 14) lua_pushnumber(g->L, (lua_Number)NAN);
  else if (i == 15) lua_pushnumber(g->L, -(lua_Number)NAN);
  else if (i == 16) lua_pushnumber(g->L, (lua_Number)INFINITY);
  else lua_pushnumber(g->L, -(lua_Number)INFINITY);
}

static void remember(gen *g, int list, int *count, int idx) {
  lua_pushvalue(g->L, idx);
  lua_rawseti(g->L, list, ++*count);
}

/* A new table; keyable ones carry their id under the key `true` (no other
 * key is ever `true`), so that the comparison can find them as keys. */
static void gen_table(gen *g, int depth, int keyable) {
  lua_State *L = g->L;
  unsigned narr, nhash, i;
  int t;
  lua_newtable(L);
  t = lua_gettop(L);
  remember(g, g->objs, &g->nobjs, t);
  if (keyable) {
    lua_pushboolean(L, 1);
    lua_pushinteger(L, ++g->next_id);
    lua_rawset(L, t);
    remember(g, g->keyables, &g->nkeyables, t);
  }
  narr = byte_(g) % 9;
  for (i = 1; i <= narr; i++) {
    gen_value(g, depth + 1);
    lua_rawseti(L, t, i);
  }
  if (narr == 8 && byte_(g) % 4 == 0) {
    /* A long sequence (the codec reads 64 items or more by index), mostly
     * numbers, with holes and values of every kind; filled forwards or
     * backwards (keys in the hash part until a rehash). */
    unsigned n = 64 + 2u * (unsigned)byte_(g), shape = byte_(g);
    for (i = 0; i < n; i++) {
      unsigned k = shape & 1 ? n - i : i + 1;
      if (k <= narr) continue;
      if (k % 41 == 0) continue;                     /* a hole */
      if (k % 23 == 0) gen_value(g, depth + 1);
      else if (k % 2) lua_pushinteger(L, (lua_Integer)k * 3);
      else lua_pushnumber(L, k * 0.25);
      lua_rawseti(L, t, k);
    }
  }
  nhash = byte_(g) % 8;
  for (i = 0; i < nhash; i++) {
    gen_key(g, depth + 1);
    gen_value(g, depth + 1);
    if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
      lua_pop(L, 2);
    else
      lua_rawset(L, t);
  }
  if (byte_(g) % 5 == 0) {
    unsigned how = byte_(g) % 3;
    if (how == 0 && g->nobjs > 0) {
      lua_rawgeti(L, g->objs, 1 + (lua_Integer)(byte_(g) % (unsigned)g->nobjs));
      if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_newtable(L); }
    } else if (how == 1) {
      lua_getglobal(L, "string");
    } else {
      gen_table(g, depth + 1, 0);
    }
    lua_setmetatable(L, t);
  }
}

/* Functions: generated source whose main chunk takes the upvalues' values
 * as `...` and returns the closure(s). `unique` puts a fresh constant in
 * the code so that no other closure has the same dump (keys). */
static void gen_function(gen *g, int depth, int unique) {
  lua_State *L = g->L;
  char src[512];
  unsigned nup = byte_(g) % 4, shape = byte_(g) % 4, i, reads = byte_(g);
  int len = 0;
  len += snprintf(src + len, sizeof src - (size_t)len, "local u0, u1, u2, u3 = ... ");
  len += snprintf(src + len, sizeof src - (size_t)len, "local function f(x) local id = %d; return x",
                  unique ? ++g->next_id : 0);
  for (i = 0; i < nup; i++) len += snprintf(src + len, sizeof src - (size_t)len, ", u%u", i);
  for (i = 0; i < NGLOBALS; i++)
    if (reads & (1u << i)) len += snprintf(src + len, sizeof src - (size_t)len, ", fzg%u", i);
  len += snprintf(src + len, sizeof src - (size_t)len, " end ");
  switch (shape) {
    case 0: snprintf(src + len, sizeof src - (size_t)len, "return f"); break;
    /* a nested function that reads a global and an upvalue */
    case 1: snprintf(src + len, sizeof src - (size_t)len,
                     "return function() local h = function() return fzg%u, u0 end return f, h end",
                     (reads >> 4) % NGLOBALS); break;
    /* two closures sharing u0 and u1 */
    default: snprintf(src + len, sizeof src - (size_t)len,
                      "return f, function(v) u0 = v; u1 = u0 end"); break;
  }
  if (luaL_loadstring(L, src) != LUA_OK) {
    fprintf(stderr, "fuzz_codec: bad generated source: %s\n%s\n", lua_tostring(L, -1), src);
    abort();
  }
  for (i = 0; i < 4; i++) {
    if (i < nup) gen_value(g, depth + 1);
    else lua_pushnil(L);
  }
  lua_call(L, 4, 2);
  /* Globals the code reads: give some of them values now. */
  for (i = 0; i < NGLOBALS; i++) {
    if ((reads & (1u << i)) && byte_(g) % 2) {
      char name[8];
      snprintf(name, sizeof name, "fzg%u", i);
      gen_value(g, depth + 1);
      lua_setglobal(L, name);
    }
  }
  if (lua_isfunction(L, -1)) remember(g, g->objs, &g->nobjs, lua_gettop(L));
  lua_pop(L, 1);
  if (unique) remember(g, g->keyables, &g->nkeyables, lua_gettop(L));
  remember(g, g->objs, &g->nobjs, lua_gettop(L));
}

/* Closures of one prototype with different upvalues (not cached by the
 * receiver) and closures with no upvalue but _ENV (cached by it). */
static void gen_same_proto(gen *g, int depth) {
  lua_State *L = g->L;
  if (byte_(g) % 2) {
    if (lua_isnil(L, g->factory)) {
      if (luaL_loadstring(L, "return function(u) return function(x) return u, x end end") != LUA_OK) abort();
      lua_call(L, 0, 1);
      lua_replace(L, g->factory);
    }
    lua_pushvalue(L, g->factory);
    gen_value(g, depth + 1);
    lua_call(L, 1, 1);
    remember(g, g->objs, &g->nobjs, lua_gettop(L));
  } else {
    static const char *const srcs[] = {
      "return function(x) return x end",
      "return function(x) return print, x end",
      "return function() return function(x) return x + 1 end end",
    };
    unsigned k = byte_(g) % 3;
    if (luaL_loadstring(L, srcs[k]) != LUA_OK) abort();
    lua_call(L, 0, 1);
    if (k == 2) lua_call(L, 0, 1);
  }
}

static void push_shared(gen *g) {
  lua_State *L = g->L;
  static const char *const ctors[] = {
    "queue", "lock", "rlock", "semaphore", "condition", "event", "barrier",
    "array", "value", "dict", "pipe", "pool",
  };
  unsigned k;
  int top = lua_gettop(L);
  if (g->nshared > 0 && byte_(g) % 2) {
    lua_rawgeti(L, g->shared, 1 + (lua_Integer)(byte_(g) % (unsigned)g->nshared));
    return;
  }
  k = byte_(g) % 12;
  if (k == 11 && g->made_pool) k = 0;
  lua_getfield(L, g->core, ctors[k]);
  switch (k) {
    case 3: lua_pushinteger(L, 1); lua_call(L, 1, 1); break;
    case 6: lua_pushinteger(L, 2); lua_call(L, 1, 1); break;
    case 7: lua_pushstring(L, "int32"); lua_pushinteger(L, 3); lua_call(L, 2, 1); break;
    case 8: lua_pushstring(L, "double"); lua_pushnumber(L, 0.5); lua_call(L, 2, 1); break;
    case 10: lua_call(L, 0, 2); remember(g, g->shared, &g->nshared, top + 1); lua_pop(L, 1); break;
    case 11:
      /* a one-worker pool and a future of it */
      g->made_pool = 1;
      lua_pushinteger(L, 1);
      lua_call(L, 1, 1);
      remember(g, g->shared, &g->nshared, top + 1);
      lua_getfield(L, -1, "submit");
      lua_pushvalue(L, -2);
      if (luaL_loadstring(L, "return 42") != LUA_OK) abort();
      lua_call(L, 2, 1);
      lua_remove(L, -2);
      break;
    default: lua_call(L, 0, 1); break;
  }
  remember(g, g->shared, &g->nshared, lua_gettop(L));
}

static void push_cfunction(gen *g) {
  static const char *const names[][2] = {
    {"math", "sqrt"}, {"string", "format"}, {"table", "insert"}, {"_G", "print"},
    {"io", "write"}, {"coroutine", "wrap"}, {"os", "time"}, {"parallel.core", "now"},
    {"parallel.core", "queue"}, {"string", "byte"},
  };
  lua_State *L = g->L;
  unsigned k = byte_(g) % 10;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, names[k][0]);
  lua_getfield(L, -1, names[k][1]);
  lua_replace(L, -3);
  lua_pop(L, 1);
}

static void push_module(gen *g) {
  static const char *const mods[] = { "string", "math", "_G", "parallel.core", "table", "package" };
  lua_State *L = g->L;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, mods[byte_(g) % 6]);
  lua_remove(L, -2);
}

static int unnamed_cfunction(lua_State *L) { (void)L; return 0; }

static void push_unsendable(gen *g) {
  lua_State *L = g->L;
  g->bad = 1;
  switch (byte_(g) % 4) {
    case 0: lua_newthread(L); break;
    case 1: lua_getglobal(L, "io"); lua_getfield(L, -1, "stdout"); lua_remove(L, -2); break;
    case 2: lua_pushlightuserdata(L, g); break;
    default: lua_pushcfunction(L, unnamed_cfunction); break;
  }
}

static void gen_value(gen *g, int depth) {
  lua_State *L = g->L;
  unsigned op;
  luaL_checkstack(L, 20, "fuzz: stack");
  if (g->n == 0 || ++g->nodes > MAX_NODES || depth > MAX_DEPTH) op = byte_(g) % 9;
  else op = byte_(g) % 24;
  switch (op) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, byte_(g) & 1); break;
    case 2: { lua_Integer i; bytes_(g, &i, sizeof i); lua_pushinteger(L, i); break; }
    case 3: lua_pushinteger(L, (int8_t)byte_(g)); break;
    case 4: { double d; bytes_(g, &d, sizeof d); lua_pushnumber(L, d); break; }
    case 5: push_special_float(g); break;
    case 6: push_str(g, byte_(g) % 40); break;
    case 7: push_dict_string(g); break;
    case 8: if (g->nobjs > 0) { lua_rawgeti(L, g->objs, 1 + (lua_Integer)(byte_(g) % (unsigned)g->nobjs)); }
            else lua_pushinteger(L, 0);
            break;
    case 9: case 10: case 20: case 21: gen_table(g, depth, byte_(g) % 4 == 0); break;
    case 11: case 12: case 22: gen_function(g, depth, 0); break;
    case 13: gen_same_proto(g, depth); break;
    case 14: push_shared(g); break;
    case 15: push_cfunction(g); break;
    case 16: push_module(g); break;
    case 17: {      /* a long string: growth of the encoder's buffer */
      size_t len = ((size_t)byte_(g) << 8) | byte_(g);
      char *s = malloc(len + 1);
      if (!s) abort();
      memset(s, (int)byte_(g), len);
      lua_pushlstring(L, s, len);
      free(s);
      break;
    }
    case 18:        /* a chain nested up to past the codec's depth limit */
      if (byte_(g) % 32 == 0) {
        int k, len = 900 + (int)byte_(g);
        g->deep = 1;
        luaL_checkstack(L, 4, "fuzz: stack");
        lua_newtable(L);
        for (k = 0; k < len; k++) {
          lua_newtable(L);
          lua_insert(L, -2);
          lua_rawseti(L, -2, 1);
        }
      } else {
        lua_pushinteger(L, 18);
      }
      break;
    case 19:
      if (byte_(g) % 16 == 0) push_unsendable(g);
      else lua_pushnumber(L, 19.0);
      break;
    default: gen_value(g, depth + 1); break;   /* 23: one level down */
  }
}

static void gen_key(gen *g, int depth) {
  lua_State *L = g->L;
  switch (byte_(g) % 10) {
    case 0: lua_pushinteger(L, 1 + byte_(g) % 16); break;
    case 1: { lua_Integer i; bytes_(g, &i, sizeof i); lua_pushinteger(L, i); break; }
    case 2: { double d; bytes_(g, &d, sizeof d); lua_pushnumber(L, d != d ? 0.25 : d); break; }
    case 3: push_str(g, byte_(g) % 12); break;
    case 4: push_dict_string(g); break;
    case 5: lua_pushboolean(L, 0); break;
    case 6:
      if (g->nkeyables > 0 && byte_(g) % 2) {
        lua_rawgeti(L, g->keyables, 1 + (lua_Integer)(byte_(g) % (unsigned)g->nkeyables));
      } else if (depth < MAX_DEPTH && g->nodes < MAX_NODES) {
        g->nodes++;
        gen_table(g, depth, 1);
      } else {
        lua_pushinteger(L, 6);
      }
      break;
    case 7:
      if (depth < MAX_DEPTH && g->nodes < MAX_NODES) { g->nodes++; gen_function(g, depth, 1); }
      else lua_pushinteger(L, 7);
      break;
    case 8: push_shared(g); break;
    default: push_module(g); break;
  }
}

/* ------------------------------------------------------------ comparing */

typedef struct cmp {
  lua_State *A, *B;
  int mapA, mapB;       /* A object -> light(B ptr); B object -> light(A ptr) */
  int modsA;            /* A module table -> name */
  int loadedB, globalsB;
  const char *path[64];
  char pathbuf[64][48];
  int depth;
} cmp;

static void fail(cmp *c, const char *what) {
  int i;
  fprintf(stderr, "fuzz_codec: MISMATCH: %s at ", what);
  for (i = 0; i < c->depth && i < 64; i++) fputs(c->pathbuf[i], stderr);
  fputc('\n', stderr);
  abort();
}

static void enter(cmp *c, const char *fmt, const char *s, long long n) {
  if (c->depth < 64) snprintf(c->pathbuf[c->depth], sizeof c->pathbuf[0], fmt, s ? s : "", n);
  c->depth++;
}

static void leave(cmp *c) { c->depth--; }

/* 1: a new pair (compare the insides), 0: already paired, consistently.
 * Keys are pushed by the caller (top of A and B); they are popped. */
static int pair(cmp *c, const void *pa, const void *pb) {
  lua_State *A = c->A, *B = c->B;
  int ta, tb;
  lua_pushvalue(A, -1);
  ta = lua_rawget(A, c->mapA);
  lua_pushvalue(B, -1);
  tb = lua_rawget(B, c->mapB);
  if (ta == LUA_TNIL && tb == LUA_TNIL) {
    lua_pop(A, 1);
    lua_pop(B, 1);
    lua_pushlightuserdata(A, (void *)pb);
    lua_rawset(A, c->mapA);
    lua_pushlightuserdata(B, (void *)pa);
    lua_rawset(B, c->mapB);
    return 1;
  }
  if (ta != LUA_TLIGHTUSERDATA || tb != LUA_TLIGHTUSERDATA ||
      lua_touserdata(A, -1) != pb || lua_touserdata(B, -1) != pa)
    fail(c, "sharing differs (an object is paired with two others)");
  lua_pop(A, 2);
  lua_pop(B, 2);
  return 0;
}

typedef struct dumpbuf { char *p; size_t n, cap; } dumpbuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  dumpbuf *d = (dumpbuf *)ud;
  (void)L;
  if (d->n + sz > d->cap) {
    size_t cap = (d->n + sz) * 2;
    char *q = realloc(d->p, cap);
    if (!q) return 1;
    d->p = q;
    d->cap = cap;
  }
  memcpy(d->p + d->n, p, sz);
  d->n += sz;
  return 0;
}

/* The dump of the Lua function at idx, as a malloc'd buffer. */
static dumpbuf dump_of(lua_State *L, int idx) {
  dumpbuf d = { NULL, 0, 0 };
  lua_pushvalue(L, idx);
  if (lua_dump(L, dump_writer, &d, 0) != 0) abort();
  lua_pop(L, 1);
  return d;
}

/* Same code: equal dumps, except that the main function's upvalue
 * descriptors (instack, idx, kind) may differ, since a receiver makes
 * closures from a factory that captures the upvalues as its locals. */
static int same_dump(lua_State *A, int ia, lua_State *B, int ib) {
  dumpbuf da = dump_of(A, ia), db = dump_of(B, ib);
  dumpscan_layout la, lb;
  int same = da.n == db.n && dumpscan_layout_of(da.p, da.n, &la) == 0 &&
             dumpscan_layout_of(db.p, db.n, &lb) == 0 && la.upvals_at == lb.upvals_at &&
             la.nupvals == lb.nupvals && memcmp(da.p, db.p, la.upvals_at) == 0 &&
             memcmp(da.p + la.upvals_at + 3 * la.nupvals, db.p + la.upvals_at + 3 * la.nupvals,
                    da.n - la.upvals_at - 3 * la.nupvals) == 0;
  free(da.p);
  free(db.p);
  return same;
}

static void compare(cmp *c, int ia, int ib);

static int module_name(cmp *c, int ia) {
  lua_pushvalue(c->A, ia);
  if (lua_rawget(c->A, c->modsA) == LUA_TSTRING) return 1;
  lua_pop(c->A, 1);
  return 0;
}

/* Pushes onto B the key of table ib that corresponds to A's key at ka,
 * or returns 0. */
static int find_key(cmp *c, int ka, int ib) {
  lua_State *A = c->A, *B = c->B;
  switch (lua_type(A, ka)) {
    case LUA_TNUMBER:
      if (lua_isinteger(A, ka)) lua_pushinteger(B, lua_tointeger(A, ka));
      else lua_pushnumber(B, lua_tonumber(A, ka));
      return 1;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(A, ka, &n);
      lua_pushlstring(B, s, n);
      return 1;
    }
    case LUA_TBOOLEAN: lua_pushboolean(B, lua_toboolean(A, ka)); return 1;
    default: break;
  }
  if (lua_type(A, ka) == LUA_TTABLE && module_name(c, ka)) {
    lua_getfield(B, c->loadedB, lua_tostring(A, -1));
    lua_pop(A, 1);
    return 1;
  }
  {
    lua_Integer id = 0;
    par_object *oa = NULL;
    lua_CFunction cfa = NULL;
    if (lua_type(A, ka) == LUA_TTABLE) {
      lua_pushboolean(A, 1);
      lua_rawget(A, ka);
      id = lua_tointeger(A, -1);
      lua_pop(A, 1);
      if (id == 0) fail(c, "a table key without id (fuzzer bug)");
    } else if (lua_type(A, ka) == LUA_TUSERDATA) {
      oa = l_object_test(A, ka);
    } else if (lua_iscfunction(A, ka)) {
      cfa = lua_tocfunction(A, ka);
    }
    lua_pushnil(B);
    while (lua_next(B, ib)) {
      int kb = lua_gettop(B) - 1, match = 0;
      if (lua_type(A, ka) == lua_type(B, kb)) {
        if (id) {
          lua_pushboolean(B, 1);
          lua_rawget(B, kb);
          match = lua_tointeger(B, -1) == id;
          lua_pop(B, 1);
        } else if (oa) {
          match = l_object_test(B, kb) == oa;
        } else if (lua_type(A, ka) == LUA_TFUNCTION) {
          if (cfa) match = lua_tocfunction(B, kb) == cfa;
          else match = !lua_iscfunction(B, kb) && same_dump(A, ka, B, kb);
        }
      }
      lua_pop(B, 1);
      if (match) return 1;
    }
    return 0;
  }
}

static void compare_table(cmp *c, int ia, int ib) {
  lua_State *A = c->A, *B = c->B;
  long long na = 0, nb = 0;
  if (module_name(c, ia)) {
    lua_getfield(B, c->loadedB, lua_tostring(A, -1));
    if (!lua_rawequal(B, -1, ib)) fail(c, "a module is not the receiver's module");
    lua_pop(A, 1);
    lua_pop(B, 1);
    return;
  }
  lua_pushvalue(A, ia);
  lua_pushvalue(B, ib);
  if (!pair(c, lua_topointer(A, ia), lua_topointer(B, ib))) return;
  lua_pushnil(A);
  while (lua_next(A, ia)) { na++; lua_pop(A, 1); }
  lua_pushnil(B);
  while (lua_next(B, ib)) { nb++; lua_pop(B, 1); }
  if (na != nb) fail(c, "tables have different numbers of entries");
  lua_pushnil(A);
  while (lua_next(A, ia)) {
    int ka = lua_gettop(A) - 1, va = ka + 1, kb;
    luaL_checkstack(A, 10, "fuzz: stack");
    luaL_checkstack(B, 10, "fuzz: stack");
    if (!find_key(c, ka, ib)) fail(c, "a key is missing");
    kb = lua_gettop(B);
    if (lua_type(A, ka) == LUA_TSTRING) enter(c, ".%s", lua_tostring(A, ka), 0);
    else if (lua_isinteger(A, ka)) enter(c, "[%s%lld]", NULL, (long long)lua_tointeger(A, ka));
    else enter(c, "[%s]", luaL_typename(A, ka), 0);
    enter(c, "%s(key)", NULL, 0);
    compare(c, ka, kb);
    leave(c);
    lua_pushvalue(B, kb);
    lua_rawget(B, ib);
    compare(c, va, lua_gettop(B));
    leave(c);
    lua_settop(B, kb - 1);
    lua_pop(A, 1);
  }
  {
    int ma = lua_getmetatable(A, ia), mb = lua_getmetatable(B, ib);
    if (ma != mb) fail(c, "metatable present on one side only");
    if (ma) {
      enter(c, "%s(metatable)", NULL, 0);
      compare(c, lua_gettop(A), lua_gettop(B));
      leave(c);
      lua_pop(A, 1);
      lua_pop(B, 1);
    }
  }
}

/* A Lua function whose upvalues are all _ENV tables (or none) travels as a
 * prototype the receiver may share between closures. */
static int is_simple(lua_State *L, int f) {
  int i;
  const char *name;
  for (i = 1; (name = lua_getupvalue(L, f, i)) != NULL; i++) {
    int env = strcmp(name, "_ENV") == 0 && lua_istable(L, -1);
    lua_pop(L, 1);
    if (!env) return 0;
  }
  return 1;
}

static void compare_function(cmp *c, int ia, int ib) {
  lua_State *A = c->A, *B = c->B;
  int i;
  if (lua_iscfunction(A, ia) || lua_iscfunction(B, ib)) {
    if (!lua_iscfunction(A, ia) || !lua_iscfunction(B, ib) ||
        lua_tocfunction(A, ia) != lua_tocfunction(B, ib))
      fail(c, "C functions differ");
    return;
  }
  if (!same_dump(A, ia, B, ib)) fail(c, "function dumps differ");
  if (!is_simple(A, ia)) {
    lua_pushvalue(A, ia);
    lua_pushvalue(B, ib);
    if (!pair(c, lua_topointer(A, ia), lua_topointer(B, ib))) return;
  }
  for (i = 1;; i++) {
    const char *na = lua_getupvalue(A, ia, i), *nb = lua_getupvalue(B, ib, i);
    if (!na || !nb) {
      if (na || nb) fail(c, "numbers of upvalues differ");
      if (na) lua_pop(A, 1);
      if (nb) lua_pop(B, 1);
      break;
    }
    if (strcmp(na, nb) != 0) fail(c, "upvalue names differ");
    enter(c, ".%s", na, 0);
    if (strcmp(na, "_ENV") == 0 && lua_istable(A, -1)) {
      if (!lua_rawequal(B, -1, c->globalsB)) fail(c, "_ENV is not the receiver's globals");
    } else {
      void *ua = lua_upvalueid(A, ia, i), *ub = lua_upvalueid(B, ib, i);
      lua_pushlightuserdata(A, ua);
      lua_pushlightuserdata(B, ub);
      if (pair(c, ua, ub)) compare(c, lua_gettop(A), lua_gettop(B));
    }
    leave(c);
    lua_pop(A, 1);
    lua_pop(B, 1);
  }
}

static void compare(cmp *c, int ia, int ib) {
  lua_State *A = c->A, *B = c->B;
  int t = lua_type(A, ia);
  ia = lua_absindex(A, ia);
  ib = lua_absindex(B, ib);
  luaL_checkstack(A, 16, "fuzz: stack");
  luaL_checkstack(B, 16, "fuzz: stack");
  if (t != lua_type(B, ib)) fail(c, "types differ");
  switch (t) {
    case LUA_TNIL: break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(A, ia) != lua_toboolean(B, ib)) fail(c, "booleans differ");
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(A, ia) != lua_isinteger(B, ib)) fail(c, "number subtypes differ");
      if (lua_isinteger(A, ia)) {
        if (lua_tointeger(A, ia) != lua_tointeger(B, ib)) fail(c, "integers differ");
      } else {
        lua_Number x = lua_tonumber(A, ia), y = lua_tonumber(B, ib);
        if (memcmp(&x, &y, sizeof x) != 0) fail(c, "floats differ (bits)");
      }
      break;
    case LUA_TSTRING: {
      size_t na, nb;
      const char *sa = lua_tolstring(A, ia, &na), *sb = lua_tolstring(B, ib, &nb);
      if (na != nb || memcmp(sa, sb, na) != 0) fail(c, "strings differ");
      break;
    }
    case LUA_TTABLE: compare_table(c, ia, ib); break;
    case LUA_TFUNCTION: compare_function(c, ia, ib); break;
    case LUA_TUSERDATA: {
      par_object *oa = l_object_test(A, ia), *ob = l_object_test(B, ib);
      if (!oa || oa != ob) fail(c, "shared objects differ");
      break;
    }
    default: fail(c, "a value that cannot travel was received");
  }
}

/* Compares the n values at A[fa..] and B[fb..], and the fuzz globals. */
static void compare_all(lua_State *A, int fa, lua_State *B, int fb, int n) {
  cmp c;
  int i, topA = lua_gettop(A), topB = lua_gettop(B);
  memset(&c, 0, sizeof c);
  c.A = A;
  c.B = B;
  lua_newtable(A); c.mapA = lua_gettop(A);
  lua_newtable(B); c.mapB = lua_gettop(B);
  lua_newtable(A); c.modsA = lua_gettop(A);
  lua_getfield(A, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(A);
  while (lua_next(A, -2)) {
    if (lua_type(A, -2) == LUA_TSTRING && lua_istable(A, -1)) {
      lua_pushvalue(A, -1);
      lua_pushvalue(A, -3);
      lua_rawset(A, c.modsA);
    }
    lua_pop(A, 1);
  }
  lua_pop(A, 1);
  lua_getfield(B, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); c.loadedB = lua_gettop(B);
  lua_rawgeti(B, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); c.globalsB = lua_gettop(B);
  for (i = 0; i < n; i++) {
    enter(&c, "value[%s%lld]", NULL, i + 1);
    compare(&c, fa + i, fb + i);
    leave(&c);
  }
  for (i = 0; i < NGLOBALS; i++) {
    char name[8];
    snprintf(name, sizeof name, "fzg%d", i);
    lua_getglobal(A, name);
    if (lua_getglobal(B, name) != LUA_TNIL) {
      enter(&c, "global %s", name, 0);
      compare(&c, lua_gettop(A), lua_gettop(B));
      leave(&c);
    }
    lua_pop(A, 1);
    lua_pop(B, 1);
  }
  lua_settop(A, topA);
  lua_settop(B, topB);
}

/* ----------------------------------------------------------- the driver */

static int p_generate(lua_State *L) {
  gen *g = (gen *)lua_touserdata(L, 1);
  int nvals, i;
  lua_settop(L, 0);
  lua_newtable(L); g->objs = 1;
  lua_newtable(L); g->keyables = 2;
  lua_newtable(L); g->shared = 3;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "parallel.core");
  lua_remove(L, -2);
  g->core = 4;
  lua_pushnil(L); g->factory = 5;
  nvals = 1 + (int)(byte_(g) % 3);
  for (i = 0; i < nvals; i++) gen_value(g, 0);
  /* Keep only the values: the lists stay reachable through the registry
   * until the state is closed. */
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.objs");
  lua_pushvalue(L, 3);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.shared");
  lua_rotate(L, 1, nvals);
  lua_settop(L, nvals);
  return nvals;
}

static par_msg *encoded;

static int p_encode(lua_State *L) {
  encoded = codec_encode(L, 1, lua_gettop(L), "value", 1);
  return 0;
}

static int p_decode(lua_State *L) {
  const par_msg *m = (const par_msg *)lua_touserdata(L, 1);
  lua_remove(L, 1);
  return codec_decode(L, m);
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "parallel.core", luaopen_parallel_core, 0);
  lua_pop(L, 1);
  return L;
}

/* Encodes A's n values (at 1..n); returns the message or NULL after an
 * allowed failure. */
static par_msg *encode_all(lua_State *A, int n, const gen *g) {
  int top = lua_gettop(A), i;
  lua_pushcfunction(A, p_encode);
  for (i = 1; i <= n; i++) lua_pushvalue(A, i);
  encoded = NULL;
  if (lua_pcall(A, n, 0, 0) != LUA_OK) {
    const char *e = lua_tostring(A, -1);
    int allowed = e && ((g->bad && strstr(e, "cannot send")) || (g->deep && strstr(e, "nested too deep")));
    if (!allowed) {
      fprintf(stderr, "fuzz_codec: unexpected encode error: %s\n", e ? e : "(not a string)");
      abort();
    }
    lua_settop(A, top);
    return NULL;
  }
  lua_settop(A, top);
  return encoded;
}

static void decode_compare(lua_State *A, lua_State *B, const par_msg *m, int n) {
  int top = lua_gettop(B);
  lua_pushcfunction(B, p_decode);
  lua_pushlightuserdata(B, (void *)m);
  if (lua_pcall(B, 1, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_codec: decode error: %s\n", lua_tostring(B, -1));
    abort();
  }
  if (lua_gettop(B) - top != n) {
    fprintf(stderr, "fuzz_codec: decoded %d values, not %d\n", lua_gettop(B) - top, n);
    abort();
  }
  compare_all(A, 1, B, top + 1, n);
  lua_settop(B, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *A = new_state(), *B = new_state();
  gen g;
  int n;
  par_msg *m;
  memset(&g, 0, sizeof g);
  g.L = A;
  g.p = data;
  g.n = size;
  lua_pushcfunction(A, p_generate);
  lua_pushlightuserdata(A, &g);
  if (lua_pcall(A, 1, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_codec: generator failed: %s\n", lua_tostring(A, -1));
    abort();
  }
  n = lua_gettop(A);
  m = encode_all(A, n, &g);
  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "values %d nodes %d objects %d shared %d bad %d deep %d -> %s %zu bytes, %zu refs\n",
            n, g.nodes, g.nobjs, g.nshared, g.bad, g.deep, m ? "message" : "error",
            m ? m->len : 0, m ? m->nrefs : 0);
  if (m) {
    decode_compare(A, B, m, n);
    decode_compare(A, B, m, n);         /* one message, decoded twice */
    par_msg_free(m);
    lua_gc(A, LUA_GCCOLLECT);
    lua_gc(B, LUA_GCCOLLECT);
    m = encode_all(A, n, &g);           /* the sender's caches */
    if (!m) { fprintf(stderr, "fuzz_codec: second encoding failed\n"); abort(); }
    decode_compare(A, B, m, n);
    par_msg_free(m);
  }
  lua_close(B);
  lua_close(A);
  return 0;
}
