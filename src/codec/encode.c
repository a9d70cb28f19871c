/*
 * Encoding: Lua values to bytes (the transfer rules of API.md, the format
 * of wire.h), in one traversal of each table.
 *
 * Tables and Lua functions are numbered in the order they are first met,
 * so that a later occurrence is a back-reference (T_REF): this keeps
 * shared sub-tables, cycles and recursive closures. Shared objects and
 * function prototypes ride in the message's refs[] and are named by their
 * slot. Functions travel as a par_proto (proto.c: dumped once, loaded once
 * per receiving state) plus their upvalues, whose sharing between closures
 * is kept with T_JOIN, plus the globals their code reads, looked up where
 * the function's own _ENV finds them (names.c).
 *
 * Re-entrancy: Lua code runs in the middle of an encode (a finalizer at
 * any allocation, an _ENV's __index function), and it may encode too. So
 * each encode holds a buffer of its own: the state's scratch buffer when
 * no other encode holds it, else a new one, which becomes the state's
 * scratch. The buffer's userdata sits in the encode's first stack slot:
 * the encode that holds an older one keeps it alive, and once no encode
 * does, the collector frees it. An error that escapes an encode leaves its
 * buffer marked busy, never to be reused: the next encode takes a new one,
 * and the collector releases the references the old one holds.
 */
#include "codec/codec.h"

#include <stdint.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/internal.h"
#include "codec/proto.h"
#include "lua/l_object.h"

/* A starmap call gets at most this many arguments (Lua's own stack limit
 * is a million slots). */
#define CHUNK_MAX_ARGS 200000

/* Registry keys. */
static const char key_scratch = 0;   /* userdata: enc_buf, the state's scratch */
static const char key_spares = 0;    /* userdata whose __gc (the state's close)
                                        frees the spare blocks of large messages */
#define ENC_BUF "parallel.encbuf"

static void encode_value(enc *e, int idx);

static inline void reserve(enc *e, size_t n) {
  if (e->b->len + n > e->b->cap && !par_buf_reserve(e->b, n)) codec_enc_nomem(e);
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
    codec_enc_nomem(e);
  }
  return e->b->nrefs - 1;
}

static void push_part(enc *e, part p) {
  if (e->depth >= MAX_DEPTH) codec_enc_fail_deep(e);
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
  if (codec_names_lookup(e, idx, "modules")) {
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
        if (open_run && narr % SEGMENT_CHECK == 0 && e->b->len >= SEGMENT_BYTES) codec_flush_segment(e);
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

/* Whether upvalue i, named name, is the function's _ENV: so named, or the
 * first upvalue of a function without debug information (loaded from a
 * stripped dump, where load() put the globals). */
static int is_env_upvalue(const char *name, int i) {
  return strcmp(name, "_ENV") == 0 || (i == 1 && strcmp(name, "(no name)") == 0);
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
    if (is_env_upvalue(name, nup) && lua_type(L, -1) == LUA_TTABLE && !env) {
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
    if (is_env_upvalue(name, i) && env && lua_rawequal(L, -1, env)) {
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
  /* The globals its code reads, as the sender has them now; nil too, so
   * that a value an earlier task received does not linger (decode.c). */
  for (i = 0; env && i < p->globals.n; i++) {
    const char *g = p->globals.names[i];
    int t = codec_push_global(L, env, g);
    if (codec_is_std_global(g) &&
        (t == LUA_TNIL || lua_iscfunction(L, -1) || t == LUA_TTABLE || t == LUA_TSTRING)) {
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
      } else if (codec_names_lookup(e, idx, "cfuncs")) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        put_byte(e, T_CFUNC);
        put_str(e, s, n);
        lua_pop(L, 1);
      } else {
        codec_enc_fail_local(e, idx);
      }
      break;
    case LUA_TUSERDATA: {
      par_object *o = l_object_test(L, idx);
      if (o) {
        put_byte(e, T_OBJ);
        put_size(e, add_ref(e, o));
      } else {
        codec_enc_fail_local(e, idx);
      }
      break;
    }
    case LUA_TLIGHTUSERDATA: codec_enc_fail_local(e, idx); break;
    case LUA_TTHREAD: codec_enc_fail_local(e, idx); break;
    default: codec_enc_fail(e, luaL_typename(L, idx)); break;
  }
}

static int enc_buf_gc(lua_State *L) {
  par_buf_free(&((enc_buf *)lua_touserdata(L, 1))->b);
  return 0;
}

/* Pushes a new, free buffer. */
static enc_buf *enc_buf_new(lua_State *L) {
  enc_buf *s = (enc_buf *)lua_newuserdatauv(L, sizeof *s, 0);
  par_buf_init(&s->b);
  s->busy = 0;
  if (luaL_newmetatable(L, ENC_BUF)) {
    lua_pushcfunction(L, enc_buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return s;
}

/* Pushes the buffer this encode will hold: the state's scratch when it is
 * free, else (an encode inside another, or after one that raised) a new
 * one, which becomes the state's scratch. */
static enc_buf *enc_buf_take(lua_State *L) {
  enc_buf *s;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_scratch);
  s = (enc_buf *)lua_touserdata(L, -1);
  if (s == NULL || s->busy) {
    lua_pop(L, 1);
    s = enc_buf_new(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_scratch);
  }
  s->busy = 1;
  return s;
}

/* Starts an encode into a buffer of its own (its first stack slot): the
 * first byte says whether the message holds structured values, which need
 * the seen table, the module index and the globals (three stack slots);
 * scalars do not. */
static void enc_begin(enc *e, lua_State *L, const char *root, int structured) {
  luaL_checkstack(L, 8, NULL);
  e->L = L;
  e->buf = enc_buf_take(L);
  e->b = &e->buf->b;
  e->stream = NULL;
  e->flushed = 0;
  e->nseen = 0;
  e->have_names = 0;
  e->depth = 0;
  e->root = root;
  e->root_index = 0;
  e->call = 0;
  e->task = 0;
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
  if (!m) codec_enc_nomem(e);
  e->buf->busy = 0;
  lua_settop(e->L, top);
  return m;
}

par_msg *codec_encode_values(lua_State *L, int first, int n, const char *root, int indexed,
                             int call, enc_stream *stream) {
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
  e.task = call;
  put_size(&e, (size_t)n);
  for (i = 0; i < n; i++) {
    e.root_index = indexed || call ? i + 1 : 0;
    encode_value(&e, first + i);
  }
  return enc_finish(&e, top);
}

par_msg *codec_encode(lua_State *L, int first, int n, const char *root, int indexed) {
  return codec_encode_values(L, first, n, root, indexed, 0, NULL);
}

par_msg *codec_encode_call(lua_State *L, int first, int n) {
  return codec_encode_values(L, first, n, "args", 1, 1, NULL);
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
  if (n > CHUNK_MAX_ARGS) codec_enc_fail(e, lua_pushfstring(L, "an argument list of %I values", n));
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
  e.task = 1;
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

/* ------------------------------------------------------------------ open */

static int spares_gc(lua_State *L) {
  par_msg_release_spares();
  return 0;
}

void codec_open(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_scratch);
  if (!lua_isnil(L, -1)) { lua_pop(L, 1); return; }
  lua_pop(L, 1);
  lua_newuserdatauv(L, 1, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, spares_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_spares);
  enc_buf_new(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_scratch);
  codec_names_open(L);
  codec_stream_open(L);
  proto_open(L);
}
