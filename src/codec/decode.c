/*
 * Decoding: bytes to Lua values (the format of wire.h), in the receiver's
 * state: fresh copies, tables and functions numbered as the sender
 * numbered them, the globals a function reads set in this state's globals.
 */
#include "codec/codec.h"

#include <stdint.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/internal.h"
#include "codec/proto.h"
#include "lua/l_object.h"

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

static void decode_cfunc(dec *d) {
  size_t len;
  const char *s = get_str(d, &len);
  if (!codec_push_cfunc(d->L, s, len)) dec_corrupt(d);
}


static const char key_sent = 0;   /* registry: weak-valued, global name -> value a message set */

/* Sets the global `name` to the value on top (popped), as a message sent
 * it. A nil (the sender has no such global) removes only a value that an
 * earlier message set and that is still there: a global that init or a
 * task of this worker set stays. */
static void set_sent_global(dec *d, const char *name) {
  lua_State *L = d->L;
  int v = lua_gettop(L), sent;
  sent = l_weak_values(L, &key_sent);
  if (lua_isnil(L, v)) {
    lua_getfield(L, sent, name);
    lua_pushstring(L, name);
    lua_rawget(L, d->globals);
    if (!lua_isnil(L, -1) && lua_rawequal(L, -1, -2)) {
      lua_pushnil(L);
      lua_setfield(L, d->globals, name);
    }
  } else {
    lua_pushvalue(L, v);
    lua_setfield(L, d->globals, name);
  }
  lua_pushvalue(L, v);
  lua_setfield(L, sent, name);
  lua_settop(L, v - 1);
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
  if (nup > MAX_UPVALUES || simple > 1) dec_corrupt(d);
  proto_push_closure(L, p, simple);
  f = lua_gettop(L);
  if (!simple || p->globals.n > 0) register_ref(d, f);
  /* the closure must have nup upvalues (hostile bytes may say more) */
  if (!simple && nup > 0) {
    if (lua_getupvalue(L, f, (int)nup) == NULL) dec_corrupt(d);
    lua_pop(L, 1);
  }
  for (i = 1; !simple && i <= nup; i++) {
    int tag = d->p < d->end ? *d->p : -1;
    if (tag == T_ENV) {
      d->p++;
      lua_pushvalue(L, d->globals);
      lua_setupvalue(L, f, (int)i);
    } else if (tag == T_JOIN) {
      size_t other, n;
      d->p++;
      other = get_size(d);
      n = get_size(d);
      /* a Lua function decoded before, with an upvalue n */
      if (other == 0 || other > (size_t)d->nrefs || n == 0 || n > MAX_UPVALUES) dec_corrupt(d);
      if (lua_rawgeti(L, d->refs, (lua_Integer)other) != LUA_TFUNCTION || lua_iscfunction(L, -1) ||
          lua_getupvalue(L, -1, (int)n) == NULL)
        dec_corrupt(d);
      lua_pop(L, 1);
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
    set_sent_global(d, p->globals.names[g - 1]);
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
  /* every value takes a byte at least: a count past the bytes left is a
   * lie (hostile bytes), a size hint past them is cut down */
  if (open) narr = (narr & (NARR_OPEN - 1)) > (uint64_t)(d->end - d->p) ? 0 : narr & (NARR_OPEN - 1);
  else if (narr > (uint64_t)(d->end - d->p)) dec_corrupt(d);
  if (nhash > (uint64_t)(d->end - d->p) / 2) nhash = 0;
  lua_createtable(L, narr > INT32_MAX ? 0 : (int)narr, nhash > INT32_MAX ? 0 : (int)nhash);
  t = lua_gettop(L);
  register_ref(d, t);
  if (open) {
    for (i = 1;; i++) {
      if (d->p == d->end && d->rest) codec_next_segment(d);
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
      if (!lua_istable(L, -1)) dec_corrupt(d);
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
      codec_push_module(L, s, n);
      break;
    }
    case T_CFUNC: decode_cfunc(d); break;
    case T_FUNC: decode_function(d); break;
    case T_OBJ: {
      size_t slot = get_size(d);
      if (slot >= d->m->nrefs || d->m->refs[slot]->type == &par_proto_type) dec_corrupt(d);
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
    codec_segment_box_new(L);
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
    if (d.box) codec_segment_box_empty(L, d.box);
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
  if (narr > (uint64_t)(d.end - d.p)) dec_corrupt(&d);
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
