#define _GNU_SOURCE
/*
 * The codec: Lua values to bytes and back (the transfer rules of API.md).
 *
 * Wire format: one tag byte per value, then its payload. Tables and Lua
 * functions are numbered in the order they are first met, on both sides,
 * so that a later occurrence is a back-reference (T_REF): this keeps shared
 * sub-tables, cycles and recursive closures. Shared objects and function
 * prototypes ride in the message's refs[] and are named by their slot.
 *
 * A message starts with MSG_SCALARS or MSG_STRUCTURED: only the latter
 * needs the back-reference table and the globals on either side.
 *
 * Functions travel as a par_proto (proto.c: dumped once, loaded once per
 * receiving state) plus their upvalues, whose sharing between closures is
 * kept with T_JOIN, plus the globals their code reads, looked up where the
 * function's own _ENV finds them and set in the receiver's globals.
 *
 * Every Lua error raised here leaves the state's scratch buffer holding
 * what was encoded so far; the next encode (or the state's close) resets
 * it, releasing the references it took.
 */
#include "codec/codec.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/proto.h"
#include "lua/l_object.h"
#include "lua/l_wait.h"
#include "core/queue.h"

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_REF, T_MODULE,
  T_CFUNC, T_FUNC, T_OBJ, T_ENV, T_JOIN, T_META, T_END, T_RUN_END
};

/* A table header whose run of bare values has no count (the table is a
 * streamed argument: its header goes before the run is over). The low bits
 * are a size hint; T_RUN_END closes the run. */
#define NARR_OPEN ((uint64_t)1 << 63)

/* The first byte of a message. */
enum { MSG_SCALARS = 0x51, MSG_STRUCTURED = 0x52 };

#define MAX_DEPTH 1000
/* Stack slots one level of a table or function may use (its own, the
 * module index's rebuild, a global's lookup): checked at every level, as
 * the Lua API itself never checks and an overflow would write past the
 * stack. */
#define SLOTS_PER_LEVEL 24
#define PATH_MAX_PARTS (MAX_DEPTH + 8)
/* A starmap call gets at most this many arguments (Lua's own stack limit
 * is a million slots). */
#define CHUNK_MAX_ARGS 200000

/* ---------------------------------------------------------------- protos */

/* Registry keys. */
static const char key_scratch = 0;   /* userdata: par_buf scratch */
static const char key_names = 0;     /* table: [1]=signature, modules[t]=name, cfuncs[f]="mod\0field" */
static const char key_cfcache = 0;   /* receiver: "mod\0field" -> C function */

/* ------------------------------------------------------------- encoding */

typedef struct part {
  enum { P_INDEX, P_KEY, P_NAME, P_META, P_KEYOF } kind;
  lua_Integer i;      /* P_INDEX */
  int idx;            /* P_KEY, P_KEYOF: absolute stack index of the key */
  const char *name;   /* P_NAME */
} part;

/* A call being sent in segments (codec_encode_call_streamed). */
typedef struct enc_stream {
  codec_submit_fn submit;
  void *ud;
  par_queue *queue;   /* set when the first segment has gone: our reference */
} enc_stream;

typedef struct enc {
  lua_State *L;
  par_buf *b;
  enc_stream *stream; /* NULL: one message */
  int flushed;        /* segments sent so far */
  int seen;           /* stack index of the seen table (nil until needed) */
  int nseen;
  int names;          /* stack index of the names table slot */
  int have_names;     /* the slot holds the table */
  int globals;        /* stack index of the sender's globals */
  int depth;
  const char *root;
  lua_Integer root_index;   /* 0: root is the whole name */
  int call;                 /* value 1 is "fn", then args[1]... */
  part path[PATH_MAX_PARTS];
} enc;

static void encode_value(enc *e, int idx);

static void enc_fail(enc *e, const char *what) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int i;
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "cannot send ");
  luaL_addstring(&B, what);
  luaL_addstring(&B, " at ");
  if (e->call && e->root_index == 1) {
    luaL_addstring(&B, "fn");
  } else if (e->call) {
    luaL_addstring(&B, "args");
    lua_pushfstring(L, "[%I]", e->root_index - 1);
    luaL_addvalue(&B);
  } else {
    luaL_addstring(&B, e->root);
  }
  if (e->root_index && !e->call) {
    lua_pushfstring(L, "[%I]", e->root_index);
    luaL_addvalue(&B);
  }
  for (i = 0; i < e->depth; i++) {
    part *p = &e->path[i];
    switch (p->kind) {
      case P_INDEX: lua_pushfstring(L, "[%I]", p->i); break;
      case P_NAME: lua_pushfstring(L, ".%s", p->name); break;
      case P_META: lua_pushliteral(L, "(metatable)"); break;
      case P_KEYOF: lua_pushliteral(L, "(key)"); break;
      case P_KEY: {
        int k = p->idx;
        if (lua_type(L, k) == LUA_TSTRING) {
          size_t n, j;
          const char *s = lua_tolstring(L, k, &n);
          int ident = n > 0 && !(s[0] >= '0' && s[0] <= '9');
          for (j = 0; j < n && ident; j++)
            ident = (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') ||
                     (s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= '0' && s[j] <= '9'));
          if (ident) lua_pushfstring(L, ".%s", s);
          else lua_pushfstring(L, "[\"%s\"]", s);
        } else if (lua_type(L, k) == LUA_TNUMBER) {
          lua_pushvalue(L, k);
          lua_pushfstring(L, "[%s]", lua_tostring(L, -1));
          lua_remove(L, -2);
        } else {
          lua_pushfstring(L, "[%s]", luaL_typename(L, k));
        }
        break;
      }
    }
    luaL_addvalue(&B);
  }
  luaL_pushresult(&B);
  par_buf_reset(e->b);
  lua_error(L);
}

static void enc_nomem(enc *e) {
  par_buf_reset(e->b);
  luaL_error(e->L, "not enough memory");
}

static inline void reserve(enc *e, size_t n) {
  if (e->b->len + n > e->b->cap && !par_buf_reserve(e->b, n)) enc_nomem(e);
}

static void put(enc *e, const void *p, size_t n) {
  reserve(e, n);
  memcpy(e->b->data + e->b->len, p, n);
  e->b->len += n;
}

static void put_byte(enc *e, int c) {
  unsigned char u = (unsigned char)c;
  if (e->b->len < e->b->cap) e->b->data[e->b->len++] = u;
  else put(e, &u, 1);
}

static void put_size(enc *e, size_t x) {
  unsigned char tmp[10];
  int n = 0;
  do { tmp[n++] = (unsigned char)(x & 0x7f); x >>= 7; } while (x);
  tmp[0] |= 0x80;                   /* the last byte written is tmp[0] */
  while (n > 0) put_byte(e, tmp[--n]);
}

static void put_str(enc *e, const char *s, size_t n) {
  put_size(e, n);
  put(e, s, n);
}

static size_t add_ref(enc *e, par_object *o) {
  if (!par_buf_add_ref(e->b, par_object_retain(o))) {
    par_object_release(o);
    enc_nomem(e);
  }
  return e->b->nrefs - 1;
}

static void push_part(enc *e, part p) {
  if (e->depth >= MAX_DEPTH) enc_fail(e, "value nested too deep");
  e->path[e->depth++] = p;
}

static void pop_part(enc *e) { e->depth--; }

/* A tag and 8 bytes of number. */
static inline void put_tagged(enc *e, int tag, const void *eight) {
  unsigned char *w;
  reserve(e, 9);
  w = e->b->data + e->b->len;
  w[0] = (unsigned char)tag;
  memcpy(w + 1, eight, 8);
  e->b->len += 9;
}

static inline void put_int(enc *e, int idx) {
  lua_Integer i = lua_tointegerx(e->L, idx, NULL);
  put_tagged(e, T_INT, &i);
}

static inline void put_float(enc *e, int idx) {
  lua_Number d = lua_tonumberx(e->L, idx, NULL);
  put_tagged(e, T_FLOAT, &d);
}

/* lua_isinteger first: lua_tointegerx on a float tries a conversion */
static inline void put_number(enc *e, int idx) {
  if (lua_isinteger(e->L, idx)) put_int(e, idx);
  else put_float(e, idx);
}

/* Returns the back-reference number of the value at idx, or 0 (and
 * registers it under a new number). */
static int seen_check(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->seen)) {
    lua_newtable(L);
    lua_replace(L, e->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, ++e->nseen);
  lua_rawset(L, e->seen);
  return 0;
}

/*
 * package.loaded, read backwards: which tables are loaded modules and which
 * C functions are fields of them. Rebuilt when the number of loaded modules
 * changes, at most once per encode.
 */
/* Globals of the standard library that every receiver has already. */
static int is_std_global(const char *name) {
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
              (strcmp(lua_tostring(L, mod - 1), LUA_GNAME) != 0 || is_std_global(lua_tostring(L, -2)))) {
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
static int names_lookup(enc *e, int idx, const char *field) {
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

/* A segment of a streamed call ends only between two items of a top-level
 * argument's open run: no enclosing table's counts are left to patch
 * there, and the decoder checks for the end of a segment only there. */
#define SEGMENT_BYTES ((size_t)512 << 10)
#define SEGMENT_CHECK 4096    /* items between checks of the buffer's size */

/* Sends what the buffer holds as one segment of a streamed call. */
static void flush_segment(enc *e) {
  enc_stream *s = e->stream;
  par_msg *m = par_buf_finish(e->b);
  if (!m) { enc_nomem(e); return; }
  e->flushed++;
  if (!s->queue) {
    par_queue *q = par_queue_new(0);
    if (!q) { par_msg_free(m); enc_nomem(e); return; }
    s->queue = q;
    m->rest = par_object_retain((par_object *)q);
    s->submit(e->L, s->ud, m);
  } else if (par_queue_push(s->queue, m, 0) != PAR_OK) {
    par_msg_free(m);
    enc_nomem(e);
  }
}

/*
 * One lua_next pass: the run of keys 1, 2, 3... that the traversal yields
 * first (a sequence's array part) is written as bare values, numbers
 * inline; every other pair is written as key and value. Both counts are
 * patched in at the end; a top-level argument of a streamed call has an
 * open run instead (its header may go in an earlier segment), and may
 * end a segment between two of its items.
 *
 * Only the traversal is trusted: reading t[1..#t] by index and resuming
 * the traversal after them would need to know which keys sit in the
 * array part, and an emptied hash node (t[n+1] set, then cleared) makes
 * every test of that through the API lie.
 */
static void encode_table(enc *e, int idx) {
  lua_State *L = e->L;
  size_t counts_at;
  uint64_t narr = 0;
  uint32_t nhash = 0;
  int in_run = 1, k, open_run, flushed;
  part *pp;
  int ref;
  /* Modules go by name and take no back-reference number (the receiver
   * numbers only the tables and functions it builds). */
  if (names_lookup(e, idx, "modules")) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    put_byte(e, T_MODULE);
    put_str(e, s, len);
    lua_pop(L, 1);
    return;
  }
  ref = seen_check(e, idx);
  if (ref) { put_byte(e, T_REF); put_size(e, (size_t)ref); return; }
  open_run = e->stream != NULL && e->depth == 0;
  put_byte(e, T_TABLE);
  flushed = e->flushed;
  counts_at = e->b->len;
  if (open_run) narr = NARR_OPEN;   /* no size hint: #t says nothing of how sparse t is */
  put(e, &narr, sizeof narr);
  put(e, &nhash, sizeof nhash);
  narr = 0;
  {
    part p0 = { P_INDEX, 0, 0, NULL };
    push_part(e, p0);
  }
  pp = &e->path[e->depth - 1];
  lua_pushnil(L);
  k = lua_gettop(L);
  while (lua_next(L, idx)) {
    if (in_run) {
      /* a float key is never integral (Lua normalises them): only an
       * integer key converts, and a string key is no number at all */
      if (lua_type(L, k) == LUA_TNUMBER && lua_tointegerx(L, k, NULL) == (lua_Integer)(narr + 1)) {
        narr++;
        if (lua_isinteger(L, k + 1)) {
          put_int(e, k + 1);
        } else if (lua_type(L, k + 1) == LUA_TNUMBER) {
          put_float(e, k + 1);
        } else {
          pp->kind = P_INDEX;
          pp->i = (lua_Integer)narr;
          encode_value(e, k + 1);
        }
        lua_settop(L, k);
        if (open_run && narr % SEGMENT_CHECK == 0 && e->b->len >= SEGMENT_BYTES) flush_segment(e);
        continue;
      }
      in_run = 0;
      if (open_run) put_byte(e, T_RUN_END);
    }
    pp->kind = P_KEYOF;
    pp->idx = k;
    encode_value(e, k);
    pp->kind = P_KEY;
    encode_value(e, k + 1);
    nhash++;
    lua_settop(L, k);
  }
  if (in_run && open_run) put_byte(e, T_RUN_END);
  pop_part(e);
  if (!open_run) {
    memcpy(e->b->data + counts_at, &narr, sizeof narr);
    memcpy(e->b->data + counts_at + sizeof narr, &nhash, sizeof nhash);
  } else if (e->flushed == flushed) {   /* else the header went as it was */
    memcpy(e->b->data + counts_at + sizeof narr, &nhash, sizeof nhash);
  }
  if (lua_getmetatable(L, idx)) {
    part p = { P_META, 0, 0, NULL };
    put_byte(e, T_META);
    push_part(e, p);
    encode_value(e, lua_gettop(L));
    pop_part(e);
    lua_pop(L, 1);
  } else {
    put_byte(e, T_END);
  }
}


/*
 * Pushes env[name] for a function's _ENV table, following __index tables
 * (a sandbox or a test runner's environment over _G) but never calling a
 * metamethod: reading globals must not run user code nor raise.
 */
static int protected_get(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

static int push_global(lua_State *L, int env, const char *name) {
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

static void encode_function(enc *e, int idx) {
  lua_State *L = e->L;
  int ref, self, nup = 0, i, simple = 1, env = 0;
  par_proto *p;
  const char *name;
  p = proto_get(L, idx);
  /* An upvalue named _ENV becomes the receiver's globals; its value here
   * is where the globals the code reads are looked up. */
  while ((name = lua_getupvalue(L, idx, nup + 1)) != NULL) {
    nup++;
    if (strcmp(name, "_ENV") == 0 && lua_type(L, -1) == LUA_TTABLE && !env) {
      env = lua_gettop(L);
      continue;                  /* kept on the stack */
    }
    simple = 0;
    lua_pop(L, 1);
  }
  /* A function with no upvalue of its own and no globals cannot be part
   * of a cycle, and decodes to the receiver's cached closure anyway: it
   * takes no back-reference number (and the encode no seen table). */
  if (!simple || p->globals.n > 0) {
    ref = seen_check(e, idx);
    if (ref) {
      if (env) lua_remove(L, env);
      put_byte(e, T_REF);
      put_size(e, (size_t)ref);
      return;
    }
  }
  self = e->nseen;
  put_byte(e, T_FUNC);
  put_size(e, add_ref(e, &p->hdr));
  put_size(e, (size_t)nup);
  put_byte(e, simple);
  for (i = 1; !simple && i <= nup; i++) {
    void *id;
    name = lua_getupvalue(L, idx, i);
    if (strcmp(name, "_ENV") == 0 && env && lua_rawequal(L, -1, env)) {
      put_byte(e, T_ENV);
      lua_pop(L, 1);
      continue;
    }
    id = lua_upvalueid(L, idx, i);
    lua_pushlightuserdata(L, id);
    if (lua_rawget(L, e->seen) == LUA_TNUMBER) {
      lua_Integer j = lua_tointeger(L, -1);
      put_byte(e, T_JOIN);
      put_size(e, (size_t)(j >> 8));
      put_size(e, (size_t)(j & 0xff));
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, id);
    lua_pushinteger(L, ((lua_Integer)self << 8) | i);
    lua_rawset(L, e->seen);
    {
      part pn = { P_NAME, 0, 0, *name ? name : "?" };
      push_part(e, pn);
      encode_value(e, lua_gettop(L));
      pop_part(e);
    }
    lua_pop(L, 1);
  }
  /* The globals its code reads, as the sender has them now. */
  for (i = 0; env && i < p->globals.n; i++) {
    const char *g = p->globals.names[i];
    int t = push_global(L, env, g);
    if (t == LUA_TNIL ||
        (is_std_global(g) && (lua_iscfunction(L, -1) || t == LUA_TTABLE || t == LUA_TSTRING))) {
      lua_pop(L, 1);
      continue;
    }
    put_size(e, (size_t)i + 1);
    {
      part pn = { P_NAME, 0, 0, g };
      push_part(e, pn);
      encode_value(e, lua_gettop(L));
      pop_part(e);
    }
    lua_pop(L, 1);
  }
  put_size(e, 0);
  if (env) lua_remove(L, env);
}

static void encode_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: put_byte(e, T_NIL); break;
    case LUA_TBOOLEAN: put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
    case LUA_TNUMBER: put_number(e, idx); break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      put_byte(e, T_STR);
      put_str(e, s, n);
      break;
    }
    case LUA_TTABLE:
      luaL_checkstack(L, SLOTS_PER_LEVEL, "value nested too deep");
      encode_table(e, idx);
      break;
    case LUA_TFUNCTION:
      luaL_checkstack(L, SLOTS_PER_LEVEL, "value nested too deep");
      if (!lua_iscfunction(L, idx)) {
        encode_function(e, idx);
      } else if (names_lookup(e, idx, "cfuncs")) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        put_byte(e, T_CFUNC);
        put_str(e, s, n);
        lua_pop(L, 1);
      } else {
        enc_fail(e, "C function");
      }
      break;
    case LUA_TUSERDATA: {
      par_object *o = l_object_test(L, idx);
      if (o) {
        put_byte(e, T_OBJ);
        put_size(e, add_ref(e, o));
      } else if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
        enc_fail(e, lua_pushfstring(L, "userdata (%s)", lua_tostring(L, -1)));
      } else {
        enc_fail(e, "userdata");
      }
      break;
    }
    case LUA_TLIGHTUSERDATA: enc_fail(e, "light userdata"); break;
    case LUA_TTHREAD: enc_fail(e, "thread"); break;
    default: enc_fail(e, luaL_typename(L, idx)); break;
  }
}

static par_buf *scratch(lua_State *L) {
  par_buf *b;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_scratch);
  b = (par_buf *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Starts an encode into this state's scratch buffer: the first byte says
 * whether the message holds structured values, which need the seen table,
 * the module index and the globals (three stack slots); scalars do not. */
static void enc_begin(enc *e, lua_State *L, const char *root, int structured) {
  luaL_checkstack(L, 8, NULL);
  e->L = L;
  e->b = scratch(L);
  par_buf_reset(e->b);   /* drops what an earlier memory error left */
  e->stream = NULL;
  e->flushed = 0;
  e->nseen = 0;
  e->have_names = 0;
  e->depth = 0;
  e->root = root;
  e->root_index = 0;
  e->call = 0;
  put_byte(e, structured ? MSG_STRUCTURED : MSG_SCALARS);
  if (structured) {
    lua_pushnil(L);
    e->seen = lua_gettop(L);
    lua_pushnil(L);
    e->names = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    e->globals = lua_gettop(L);
  }
}

static par_msg *enc_finish(enc *e, int top) {
  par_msg *m = par_buf_finish(e->b);
  if (!m) enc_nomem(e);
  lua_settop(e->L, top);
  return m;
}

static par_msg *encode(lua_State *L, int first, int n, const char *root, int indexed, int call,
                       enc_stream *stream) {
  enc e;
  int i, top = lua_gettop(L);
  first = lua_absindex(L, first);
  for (i = 0; i < n; i++) {
    int t = lua_type(L, first + i);
    if (t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA) break;
  }
  enc_begin(&e, L, root, i < n);
  e.stream = stream;
  e.call = call;
  put_size(&e, (size_t)n);
  for (i = 0; i < n; i++) {
    e.root_index = indexed || call ? i + 1 : 0;
    encode_value(&e, first + i);
  }
  return enc_finish(&e, top);
}

par_msg *codec_encode(lua_State *L, int first, int n, const char *root, int indexed) {
  return encode(L, first, n, root, indexed, 0, NULL);
}

par_msg *codec_encode_call(lua_State *L, int first, int n) {
  return encode(L, first, n, "args", 1, 1, NULL);
}

/* Arguments shorter than this go in one message: no protected call. */
#define STREAM_MIN_ITEMS 100000

typedef struct stream_call {
  enc_stream s;
  par_msg *m;
} stream_call;

/* Protected: 1 is the stream_call, the call's values follow. */
static int encode_streamed_body(lua_State *L) {
  stream_call *c = (stream_call *)lua_touserdata(L, 1);
  c->m = encode(L, 2, lua_gettop(L) - 1, "args", 1, 1, &c->s);
  return 0;
}

par_msg *codec_encode_call_streamed(lua_State *L, int first, int n, codec_submit_fn submit,
                                    void *ud) {
  stream_call c;
  int i, status;
  first = lua_absindex(L, first);
  for (i = 1; i < n; i++)
    if (lua_type(L, first + i) == LUA_TTABLE && lua_rawlen(L, first + i) >= STREAM_MIN_ITEMS) break;
  if (i >= n) return codec_encode_call(L, first, n);
  c.s.submit = submit;
  c.s.ud = ud;
  c.s.queue = NULL;
  c.m = NULL;
  luaL_checkstack(L, n + 2, "too many arguments");
  lua_pushcfunction(L, encode_streamed_body);
  lua_pushlightuserdata(L, &c);
  for (i = 0; i < n; i++) lua_pushvalue(L, first + i);
  status = lua_pcall(L, n + 1, 0, 0);
  if (!c.s.queue) {                     /* it went in one piece (or failed before) */
    if (status != LUA_OK) lua_error(L);
    return c.m;
  }
  /* The last segment, then the end; on an error, the end alone. */
  if (status == LUA_OK && par_queue_push(c.s.queue, c.m, 0) != PAR_OK) {
    par_msg_free(c.m);
    lua_pushliteral(L, "not enough memory");
    status = LUA_ERRMEM;
  }
  par_queue_close(c.s.queue);
  par_object_release((par_object *)c.s.queue);
  if (status != LUA_OK) {
    submit(L, ud, NULL);                /* must not raise: the error is on top */
    lua_error(L);
  }
  return NULL;
}

/* A starmap argument list t: t[1..n] as table.unpack(t, 1, n) reads it,
 * n being t.n when that is an integer (table.pack's), else #t; it goes as
 * a plain table whose n says how many values the call gets, nils included
 * (the receiver's # cannot tell where trailing nils end). Read raw: no
 * user code runs in the middle of an encode. */
static void encode_arglist(enc *e, int t) {
  lua_State *L = e->L;
  lua_Integer n, j;
  uint64_t narr;
  uint32_t nhash = 1;
  part pj = { P_INDEX, 0, 0, NULL };
  lua_pushliteral(L, "n");
  if (lua_rawget(L, t) == LUA_TNUMBER && lua_isinteger(L, -1)) n = lua_tointeger(L, -1);
  else n = (lua_Integer)lua_rawlen(L, t);
  lua_pop(L, 1);
  if (n < 0) n = 0;
  if (n > CHUNK_MAX_ARGS) enc_fail(e, lua_pushfstring(L, "an argument list of %I values", n));
  e->nseen++;                       /* the receiver numbers every table */
  narr = (uint64_t)n;
  put_byte(e, T_TABLE);
  put(e, &narr, sizeof narr);
  put(e, &nhash, sizeof nhash);
  push_part(e, pj);
  for (j = 1; j <= n; j++) {
    e->path[e->depth - 1].i = j;
    lua_rawgeti(L, t, j);
    encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
  }
  pop_part(e);
  lua_pushliteral(L, "n");
  lua_pushinteger(L, n);
  encode_value(e, lua_gettop(L) - 1);
  encode_value(e, lua_gettop(L));
  lua_pop(L, 2);
  put_byte(e, T_END);
}

par_msg *codec_encode_chunk(lua_State *L, int fn, int list, lua_Integer first, lua_Integer last,
                            lua_Integer label, int star) {
  enc e;
  int top = lua_gettop(L);
  lua_Integer i, count = last - first + 1;
  uint64_t narr = (uint64_t)count;
  uint32_t nhash = 0;
  part p0 = { P_INDEX, 0, 0, NULL };
  fn = lua_absindex(L, fn);
  list = lua_absindex(L, list);
  enc_begin(&e, L, "fn", 1);
  put_size(&e, 4);
  encode_value(&e, fn);
  /* list[first..last] as one table, numbered like any table */
  e.root = "list";
  e.nseen++;
  put_byte(&e, T_TABLE);
  put(&e, &narr, sizeof narr);
  put(&e, &nhash, sizeof nhash);
  push_part(&e, p0);
  for (i = first; i <= last; i++) {
    e.path[0].i = label + (i - first);
    lua_rawgeti(L, list, i);
    if (star && lua_type(L, -1) == LUA_TTABLE) encode_arglist(&e, lua_gettop(L));
    else encode_value(&e, lua_gettop(L));
    lua_pop(L, 1);
  }
  pop_part(&e);
  put_byte(&e, T_END);
  put_tagged(&e, T_INT, &label);
  put_tagged(&e, T_INT, &count);   /* items, nils included: # cannot tell */
  return enc_finish(&e, top);
}

/* ------------------------------------------------------------- decoding */

typedef struct dec {
  lua_State *L;
  const par_msg *m;
  const unsigned char *p, *end;
  int refs;       /* stack index of the back-reference table (nil until needed) */
  int nrefs;
  int globals;
  par_queue *rest;  /* a message in segments: where the next ones come from */
  int box;          /* stack index of the box holding the segment being read */
} dec;

/* The segment being read, owned by a userdata so that an error frees it. */
static const char *const SEGMENT_BOX = "parallel.segment";

static void segment_box_gc_at(lua_State *L, int idx);

static int segment_box_gc(lua_State *L) {
  segment_box_gc_at(L, 1);
  return 0;
}

static void segment_box_gc_at(lua_State *L, int idx) {
  par_msg **box = (par_msg **)lua_touserdata(L, idx);
  par_msg_free(*box);
  *box = NULL;
}

static int pop_segment(void *ud, double deadline) {
  void **w = (void **)ud;     /* queue, then the message popped */
  return par_queue_pop((par_queue *)w[0], (par_msg **)&w[1], deadline);
}

/* Moves on to the next segment: waits for it (interruptibly), as the
 * sender may still be encoding it. */
static void next_segment(dec *d) {
  lua_State *L = d->L;
  void *w[2];
  par_msg **box = (par_msg **)lua_touserdata(L, d->box);
  int r;
  w[0] = d->rest;
  w[1] = NULL;
  r = l_wait(L, -1, pop_segment, w);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  if (r != PAR_OK) luaL_error(L, "the sender failed while sending this task's arguments");
  par_msg_free(*box);
  *box = (par_msg *)w[1];
  d->m = *box;
  d->p = d->m->data;
  d->end = d->p + d->m->len;
}

static void decode_value(dec *d);

static void dec_corrupt(dec *d) {
  luaL_error(d->L, "corrupt message");
}

static int get_byte(dec *d) {
  if (d->p >= d->end) dec_corrupt(d);
  return *d->p++;
}

static size_t get_size(dec *d) {
  size_t x = 0;
  int b;
  do {
    b = get_byte(d);
    x = (x << 7) | (size_t)(b & 0x7f);
  } while ((b & 0x80) == 0);
  return x;
}

static void get_raw(dec *d, void *out, size_t n) {
  if ((size_t)(d->end - d->p) < n) dec_corrupt(d);
  memcpy(out, d->p, n);
  d->p += n;
}

static const char *get_str(dec *d, size_t *len) {
  const char *s;
  *len = get_size(d);
  if ((size_t)(d->end - d->p) < *len) dec_corrupt(d);
  s = (const char *)d->p;
  d->p += *len;
  return s;
}

static void register_ref(dec *d, int idx) {
  lua_State *L = d->L;
  if (lua_isnil(L, d->refs)) {
    lua_newtable(L);
    lua_replace(L, d->refs);
  }
  lua_pushvalue(L, idx);
  lua_rawseti(L, d->refs, ++d->nrefs);
}

/* Pushes package.loaded[name], requiring it when absent. */
static void push_module(dec *d, const char *name, size_t len) {
  lua_State *L = d->L;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, len);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushlstring(L, name, len);
    lua_call(L, 1, 1);
  }
  lua_remove(L, -2);
}

static void decode_cfunc(dec *d) {
  lua_State *L = d->L;
  size_t len, mlen;
  const char *s = get_str(d, &len);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cfcache);
  lua_pushlstring(L, s, len);
  if (lua_rawget(L, -2) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  mlen = strnlen(s, len);
  if (mlen == len) dec_corrupt(d);
  push_module(d, s, mlen);
  lua_pushlstring(L, s + mlen + 1, len - mlen - 1);
  if (lua_type(L, -2) != LUA_TTABLE || lua_rawget(L, -2) != LUA_TFUNCTION)
    luaL_error(L, "cannot receive C function %s.%s", lua_pushlstring(L, s, mlen),
               lua_pushlstring(L, s + mlen + 1, len - mlen - 1));
  lua_remove(L, -2);
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

/* Pushes a closure of p: the cached one when it needs no upvalues of its
 * own (simple), else a fresh one. */
static void decode_function(dec *d) {
  lua_State *L = d->L;
  size_t slot = get_size(d), nup, i, g;
  par_proto *p;
  int simple, f;
  if (slot >= d->m->nrefs || d->m->refs[slot]->type != &par_proto_type) dec_corrupt(d);
  p = (par_proto *)d->m->refs[slot];
  nup = get_size(d);
  simple = get_byte(d);
  proto_push_closure(L, p, simple);
  f = lua_gettop(L);
  if (!simple || p->globals.n > 0) register_ref(d, f);
  for (i = 1; !simple && i <= nup; i++) {
    int tag = *d->p;
    if (tag == T_ENV) {
      d->p++;
      lua_pushvalue(L, d->globals);
      lua_setupvalue(L, f, (int)i);
    } else if (tag == T_JOIN) {
      size_t other, n;
      d->p++;
      other = get_size(d);
      n = get_size(d);
      lua_rawgeti(L, d->refs, (lua_Integer)other);
      lua_upvaluejoin(L, f, (int)i, -1, (int)n);
      lua_pop(L, 1);
    } else {
      decode_value(d);
      lua_setupvalue(L, f, (int)i);
    }
  }
  while ((g = get_size(d)) != 0) {
    if (g > (size_t)p->globals.n) dec_corrupt(d);
    decode_value(d);
    lua_setfield(L, d->globals, p->globals.names[g - 1]);
  }
}

/* One item of a table's run: numbers inline, most long runs hold nothing
 * else. A streamed message's next segment may start before any item. */
static void decode_run_item(dec *d, int t, lua_Integer i) {
  lua_State *L = d->L;
  if (d->end - d->p > 8 && *d->p == T_FLOAT) {
    lua_Number x;
    memcpy(&x, d->p + 1, sizeof x);
    d->p += 9;
    lua_pushnumber(L, x);
  } else if (d->end - d->p > 8 && *d->p == T_INT) {
    lua_Integer x;
    memcpy(&x, d->p + 1, sizeof x);
    d->p += 9;
    lua_pushinteger(L, x);
  } else {
    decode_value(d);
  }
  lua_rawseti(L, t, i);
}

static void decode_table(dec *d) {
  lua_State *L = d->L;
  uint64_t narr, i;
  uint32_t nhash;
  int t, open;
  get_raw(d, &narr, sizeof narr);
  get_raw(d, &nhash, sizeof nhash);
  open = (narr & NARR_OPEN) != 0;
  if (open) narr &= NARR_OPEN - 1;      /* a size hint */
  lua_createtable(L, narr > INT32_MAX ? 0 : (int)narr, nhash > INT32_MAX ? 0 : (int)nhash);
  t = lua_gettop(L);
  register_ref(d, t);
  if (open) {
    for (i = 1;; i++) {
      if (d->p == d->end && d->rest) next_segment(d);
      if (d->p < d->end && *d->p == T_RUN_END) { d->p++; break; }
      decode_run_item(d, t, (lua_Integer)i);
    }
  } else {
    for (i = 1; i <= narr; i++) decode_run_item(d, t, (lua_Integer)i);
  }
  for (;;) {
    int tag;
    if (d->p >= d->end) dec_corrupt(d);
    tag = *d->p;
    if (tag == T_END) { d->p++; break; }
    if (tag == T_META) {
      d->p++;
      decode_value(d);
      lua_setmetatable(L, t);
      break;
    }
    decode_value(d);
    decode_value(d);
    lua_rawset(L, t);
  }
}

static void decode_value(dec *d) {
  lua_State *L = d->L;
  int tag = get_byte(d);
  if (tag >= T_TABLE) luaL_checkstack(L, SLOTS_PER_LEVEL, "message nested too deep");
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      lua_Integer i;
      get_raw(d, &i, sizeof i);
      lua_pushinteger(L, i);
      break;
    }
    case T_FLOAT: {
      lua_Number n;
      get_raw(d, &n, sizeof n);
      lua_pushnumber(L, n);
      break;
    }
    case T_STR: {
      size_t n;
      const char *s = get_str(d, &n);
      lua_pushlstring(L, s, n);
      break;
    }
    case T_TABLE: decode_table(d); break;
    case T_REF: {
      size_t r = get_size(d);
      if (lua_isnil(L, d->refs) || r == 0 || r > (size_t)d->nrefs) dec_corrupt(d);
      lua_rawgeti(L, d->refs, (lua_Integer)r);
      break;
    }
    case T_MODULE: {
      size_t n;
      const char *s = get_str(d, &n);
      push_module(d, s, n);
      break;
    }
    case T_CFUNC: decode_cfunc(d); break;
    case T_FUNC: decode_function(d); break;
    case T_OBJ: {
      size_t slot = get_size(d);
      if (slot >= d->m->nrefs) dec_corrupt(d);
      l_object_push_ref(L, d->m->refs[slot]);
      break;
    }
    default: dec_corrupt(d);
  }
}

/* Starts a decode of m; for a structured message, pushes the two helper
 * slots (back-references, globals) and returns 1. */
static int dec_begin(dec *d, lua_State *L, const par_msg *m) {
  d->L = L;
  d->m = m;
  d->p = m->data;
  d->end = m->data + m->len;
  d->nrefs = 0;
  d->refs = d->globals = d->box = 0;      /* never used by scalars */
  d->rest = NULL;
  luaL_checkstack(L, 8, NULL);
  if (get_byte(d) == MSG_SCALARS) return 0;
  lua_pushnil(L);
  d->refs = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  d->globals = lua_gettop(L);
  if (m->rest) {
    if (m->rest->type != &par_queue_type) dec_corrupt(d);
    d->rest = (par_queue *)m->rest;
    *(par_msg **)lua_newuserdatauv(L, sizeof(par_msg *), 0) = NULL;
    luaL_setmetatable(L, SEGMENT_BOX);
    d->box = lua_gettop(L);
  }
  return 1;
}

/* The number of helper slots dec_begin pushed below the values. */
static int dec_helpers(const dec *d) {
  if (!d->refs) return 0;
  return d->box ? 3 : 2;
}

int codec_decode(lua_State *L, const par_msg *m) {
  dec d;
  size_t n, i;
  int structured = dec_begin(&d, L, m);
  n = get_size(&d);
  if (n > (size_t)1000000) dec_corrupt(&d);
  luaL_checkstack(L, (int)n + 4, "too many values");
  for (i = 0; i < n; i++) decode_value(&d);
  if (structured) {
    /* Drop the helper slots below the values (the last segment with them). */
    int helpers = dec_helpers(&d);
    if (d.box) segment_box_gc_at(L, d.box);
    lua_rotate(L, d.refs, (int)n);
    lua_pop(L, helpers);
  }
  return (int)n;
}

lua_Integer codec_decode_into(lua_State *L, const par_msg *m, int dest, lua_Integer offset) {
  dec d;
  uint64_t narr, i;
  uint32_t nhash;
  lua_Integer n = 0;
  int top;
  dest = lua_absindex(L, dest);
  top = lua_gettop(L);
  if (!dec_begin(&d, L, m) || get_size(&d) != 2 || get_byte(&d) != T_TABLE) dec_corrupt(&d);
  get_raw(&d, &narr, sizeof narr);
  get_raw(&d, &nhash, sizeof nhash);
  register_ref(&d, dest);     /* keeps the numbering of the sender */
  for (i = 1; i <= narr; i++) {
    decode_value(&d);
    lua_rawseti(L, dest, offset + (lua_Integer)i - 1);
  }
  for (;;) {
    int tag = get_byte(&d);
    if (tag == T_END) break;
    if (tag != T_INT) dec_corrupt(&d);      /* results are keyed by index */
    {
      lua_Integer k;
      get_raw(&d, &k, sizeof k);
      decode_value(&d);
      lua_rawseti(L, dest, offset + k - 1);
    }
  }
  if (get_byte(&d) != T_INT) dec_corrupt(&d);
  get_raw(&d, &n, sizeof n);
  lua_settop(L, top);
  return n;
}

/* ------------------------------------------------------------------ open */

static int scratch_gc(lua_State *L) {
  par_buf_free((par_buf *)lua_touserdata(L, 1));
  par_msg_release_spares();
  return 0;
}

void codec_open(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_scratch);
  if (!lua_isnil(L, -1)) { lua_pop(L, 1); return; }
  lua_pop(L, 1);
  par_buf_init((par_buf *)lua_newuserdatauv(L, sizeof(par_buf), 0));
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_scratch);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cfcache);
  luaL_newmetatable(L, SEGMENT_BOX);
  lua_pushcfunction(L, segment_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  proto_open(L);
}
