/*
 * Test hooks of the wire layer (not API): core._wire_test() makes a
 * connection to a second Lua state in this process that never sees the
 * first, and runs tasks on it through the wire: encode in this state,
 * flatten, rebuild, decode in the second; the results or the error come
 * back the same way. Every byte crossing between the two states is a
 * flattened payload; nothing else is shared (each state has its own peer,
 * as two processes would).
 *
 *   w = core._wire_test()
 *   w:call(fn, ...)    --> true, results...  |  false, err, traceback
 *   w:map(fn, list)    --> results (list, as one map chunk)
 *   w:reset()          -- the second state restarts: both peers forget
 *   w:payloads(fn, ...) --> the payloads of that call, not sent
 *   w:rebuild(payload) --> "message" | "consumed" | nil, error (the other side)
 *   w:stats()          --> {bytes_out, bytes_back, frames_out, frames_back,
 *                           dumps_sent, ids_sent, dumps_received, ...}
 *   core._wire_fingerprint() --> this process's fingerprint
 *   core._wire_check_hello(s) --> true | nil, message
 *   core._wire_hello()      --> this process's hello payload
 */
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"
#include "codec/codec.h"
#include "core/queue.h"
#include "lua/l_wire.h"
#include "wire/wire.h"

static const char *const WIRETEST = "parallel.wiretest";
static const char key_traceback = 0;

typedef struct wiretest {
  lua_State *B;
  par_wire_peer *a;       /* this state's end */
  par_wire_peer *b;       /* the second state's end */
  par_buf frames;         /* [u32 length][payload] ... */
  size_t bytes_out, bytes_back, frames_out, frames_back;
} wiretest;

static int msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_traceback);
  return 1;
}

static int open_b(lua_State *L) {
  const char *path = (const char *)lua_touserdata(L, 1), *cpath = (const char *)lua_touserdata(L, 2);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, cpath);
  lua_setfield(L, -2, "cpath");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "parallel");
  lua_call(L, 1, 0);
  return 0;
}

static void start_b(lua_State *L, wiretest *w) {
  const char *path, *cpath;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  path = lua_tostring(L, -2);
  cpath = lua_tostring(L, -1);
  w->B = luaL_newstate();
  if (!w->B) luaL_error(L, "not enough memory");
  lua_pushcfunction(w->B, open_b);
  lua_pushlightuserdata(w->B, (void *)(path ? path : ""));
  lua_pushlightuserdata(w->B, (void *)(cpath ? cpath : ""));
  if (lua_pcall(w->B, 2, 0, 0) != LUA_OK) {
    lua_pushstring(L, lua_tostring(w->B, -1));
    lua_close(w->B);
    w->B = NULL;
    lua_error(L);
  }
  lua_pop(L, 3);
}

static wiretest *check_wt(lua_State *L) {
  wiretest *w = (wiretest *)luaL_checkudata(L, 1, WIRETEST);
  if (!w->a) luaL_argerror(L, 1, "closed");
  return w;
}

/* Appends m flattened as one frame; frees m. 0, or -1 with e set. */
static int put_frame(wiretest *w, par_wire_peer *p, par_msg *m, int kind, uint32_t *stream,
                     par_wire_err *e) {
  size_t at = w->frames.len;
  uint32_t len;
  int rc;
  if (!par_buf_reserve(&w->frames, 4)) { par_msg_free(m); strcpy(e->msg, "not enough memory"); return -1; }
  w->frames.len += 4;
  if (kind == PAR_WIRE_K_END) rc = par_wire_flatten_end(p, *stream, &w->frames, e);
  else if (kind == PAR_WIRE_K_SEGMENT) rc = par_wire_flatten_segment(p, *stream, m, &w->frames, e);
  else rc = par_wire_flatten(p, m, &w->frames, stream, e);
  par_msg_free(m);
  if (rc != 0) { w->frames.len = at; return -1; }
  len = (uint32_t)(w->frames.len - at - 4);
  memcpy(w->frames.data + at, &len, 4);
  return 0;
}

/* Flattens m (and, for a first segment, the rest of its stream) into
 * w->frames, emptied first; takes m over. Returns the frame count or -1. */
static int flatten_all(wiretest *w, par_wire_peer *p, par_msg *m, par_wire_err *e) {
  par_queue *rest = m->rest ? (par_queue *)par_object_retain(m->rest) : NULL;
  uint32_t stream = 0;
  int frames = 1;
  w->frames.len = 0;
  if (put_frame(w, p, m, 0, &stream, e) != 0) frames = -1;
  while (rest && frames > 0) {
    par_msg *seg;
    if (par_queue_pop(rest, &seg, 0) != PAR_OK) {     /* closed and drained */
      frames = put_frame(w, p, NULL, PAR_WIRE_K_END, &stream, e) == 0 ? frames + 1 : -1;
      break;
    }
    frames = put_frame(w, p, seg, PAR_WIRE_K_SEGMENT, &stream, e) == 0 ? frames + 1 : -1;
  }
  if (rest) par_object_release((par_object *)rest);
  return frames;
}

/* Rebuilds every frame of w->frames on p's side: the one message. */
static par_msg *rebuild_all(wiretest *w, par_wire_peer *p, size_t *bytes, par_wire_err *e) {
  size_t at = 0;
  par_msg *msg = NULL;
  *bytes = 0;
  while (at < w->frames.len) {
    uint32_t len;
    par_msg *m = NULL;
    int r;
    memcpy(&len, w->frames.data + at, 4);
    r = par_wire_rebuild(p, w->frames.data + at + 4, len, &m, e);
    *bytes += len;
    at += 4 + len;
    if (r == PAR_WIRE_ERROR) { par_msg_free(msg); return NULL; }
    if (r == PAR_WIRE_MESSAGE) {
      if (msg) { par_msg_free(m); par_msg_free(msg); strcpy(e->msg, "two messages in one task"); return NULL; }
      msg = m;
    }
  }
  if (!msg) strcpy(e->msg, "no message");
  return msg;
}

typedef struct b_task {
  const par_msg *in;
  par_msg *out;
  int ok, chunk;
} b_task;

/* In B: decode the call, run it, encode the results (or the failure). */
static int b_run(lua_State *B) {
  b_task *t = (b_task *)lua_touserdata(B, 1);
  int n, status;
  lua_pushcfunction(B, msgh);                 /* 2 */
  n = codec_decode(B, t->in);
  if (t->chunk) {                   /* fn, items, label, count: fn over the items */
    lua_Integer i, len;
    len = n >= 4 ? lua_tointeger(B, 6) : (lua_Integer)lua_rawlen(B, 4);
    lua_settop(B, 4);
    lua_createtable(B, (int)len, 0);          /* 5: results */
    for (i = 1; i <= len; i++) {
      lua_pushvalue(B, 3);
      lua_rawgeti(B, 4, i);
      status = lua_pcall(B, 1, 1, 2);
      if (status != LUA_OK) goto failed;
      lua_rawseti(B, 5, i);
    }
    lua_pushinteger(B, len);
    t->out = codec_encode(B, 5, 2, "results", 1);
    t->ok = 1;
    return 0;
  }
  status = lua_pcall(B, n - 1, LUA_MULTRET, 2);
  if (status == LUA_OK) {
    t->out = codec_encode(B, 3, lua_gettop(B) - 2, "results", 1);
    t->ok = 1;
    return 0;
  }
failed:
  if (lua_rawgetp(B, LUA_REGISTRYINDEX, &key_traceback) != LUA_TSTRING) {
    lua_pop(B, 1);
    lua_pushliteral(B, "");
  }
  lua_pushnil(B);
  t->out = codec_encode(B, -3, 3, "error", 1);
  t->ok = 0;
  return 0;
}

/* A failure of B outside the task (decoding, encoding the results). */
static int b_failed(lua_State *B) {
  b_task *t = (b_task *)lua_touserdata(B, 1);
  luaL_tolstring(B, 2, NULL);
  lua_pushliteral(B, "");
  lua_pushnil(B);
  t->out = codec_encode(B, 3, 3, "error", 1);
  t->ok = 0;
  return 0;
}

static void raise_wire(lua_State *L, par_wire_err *e) {
  lua_pushstring(L, e->msg);
  lua_error(L);
}

/* Runs a call or chunk message on B; pushes what came back on L. */
static int run(lua_State *L, wiretest *w, par_msg *m, int chunk, int dest) {
  par_wire_err e;
  par_msg *in, *back;
  b_task t;
  size_t bytes;
  int frames, top = lua_gettop(w->B);
  frames = flatten_all(w, w->a, m, &e);
  if (frames < 0) raise_wire(L, &e);
  in = rebuild_all(w, w->b, &bytes, &e);
  if (!in) raise_wire(L, &e);
  w->bytes_out = bytes;
  w->frames_out = (size_t)frames;
  t.in = in; t.out = NULL; t.ok = 0; t.chunk = chunk;
  lua_pushcfunction(w->B, b_run);
  lua_pushlightuserdata(w->B, &t);
  if (lua_pcall(w->B, 1, 0, 0) != LUA_OK) {
    lua_pushcfunction(w->B, b_failed);
    lua_insert(w->B, -2);
    lua_pushlightuserdata(w->B, &t);
    lua_insert(w->B, -2);
    if (lua_pcall(w->B, 2, 0, 0) != LUA_OK) t.out = NULL;
  }
  lua_settop(w->B, top);
  lua_pushnil(w->B);
  lua_rawsetp(w->B, LUA_REGISTRYINDEX, &key_traceback);
  par_msg_free(in);
  if (!t.out) return luaL_error(L, "the second state failed to answer");
  frames = flatten_all(w, w->b, t.out, &e);
  if (frames < 0) {
    /* B's answer cannot cross (a shared object in it): B answers with
     * that failure instead, as a worker process would */
    lua_pushcfunction(w->B, b_failed);
    lua_pushlightuserdata(w->B, &t);
    lua_pushstring(w->B, e.msg);
    if (lua_pcall(w->B, 2, 0, 0) != LUA_OK) t.out = NULL;
    lua_settop(w->B, top);
    if (!t.out) return luaL_error(L, "the second state failed to answer");
    frames = flatten_all(w, w->b, t.out, &e);
    if (frames < 0) raise_wire(L, &e);
  }
  back = rebuild_all(w, w->a, &bytes, &e);
  if (!back) raise_wire(L, &e);
  w->bytes_back = bytes;
  w->frames_back = (size_t)frames;
  /* decode on L: box the message so that an error frees it */
  *(par_msg **)lua_newuserdatauv(L, sizeof(par_msg *), 0) = back;
  luaL_setmetatable(L, "parallel.wiremsg");
  if (t.ok && chunk) {
    codec_decode_into(L, back, dest, 1);
    lua_pushvalue(L, dest);
    return 1;
  }
  {
    int n, base = lua_gettop(L);
    lua_pushboolean(L, t.ok);
    n = codec_decode(L, back);
    if (!t.ok) lua_settop(L, base + 3);     /* false, err, traceback */
    return t.ok ? n + 1 : 3;
  }
}

static void submit_first(lua_State *L, void *ud, par_msg *first) {
  par_msg **slot = (par_msg **)ud;
  (void)L;
  if (first) {
    *slot = first;
  } else if (*slot) {                         /* the encode failed: abandoned */
    par_msg_free(*slot);
    *slot = NULL;
  }
}

static int wt_call(lua_State *L) {
  wiretest *w = check_wt(L);
  par_msg *first = NULL, *m;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  m = codec_encode_call_streamed(L, 2, lua_gettop(L) - 1, submit_first, &first);
  return run(L, w, m ? m : first, 0, 0);
}

static int wt_map(lua_State *L) {
  wiretest *w = check_wt(L);
  par_msg *m;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  m = codec_encode_chunk(L, 2, 3, 1, (lua_Integer)lua_rawlen(L, 3), 1, 0);
  lua_settop(L, 3);
  lua_newtable(L);                            /* 4: the results */
  {
    int n = run(L, w, m, 1, 4);
    if (n == 1) return 1;
    /* false, err, traceback: raise as a task's error */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
    return lua_error(L);
  }
}

/* w:payloads(fn, ...) --> the payloads of that call as this side would
 * send them (its peer marks the functions sent), nothing sent */
static int wt_payloads(lua_State *L) {
  wiretest *w = check_wt(L);
  par_msg *first = NULL, *m;
  par_wire_err e;
  size_t at = 0;
  int i = 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  m = codec_encode_call_streamed(L, 2, lua_gettop(L) - 1, submit_first, &first);
  if (flatten_all(w, w->a, m ? m : first, &e) < 0) raise_wire(L, &e);
  lua_newtable(L);
  while (at < w->frames.len) {
    uint32_t len;
    memcpy(&len, w->frames.data + at, 4);
    lua_pushlstring(L, (const char *)w->frames.data + at + 4, len);
    lua_rawseti(L, -2, ++i);
    at += 4 + len;
  }
  return 1;
}

/* w:rebuild(payload) --> "message" | "consumed" | nil, error: the other
 * side's peer rebuilds bytes (from w:payloads, or forged) */
static int wt_rebuild(lua_State *L) {
  wiretest *w = check_wt(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  par_msg *m = NULL;
  par_wire_err e;
  int r = par_wire_rebuild(w->b, s, n, &m, &e);
  if (r == PAR_WIRE_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, e.msg);
    return 2;
  }
  par_msg_free(m);
  lua_pushstring(L, r == PAR_WIRE_MESSAGE ? "message" : "consumed");
  return 1;
}

static int wt_reset(lua_State *L) {
  wiretest *w = check_wt(L);
  lua_close(w->B);
  w->B = NULL;
  par_wire_peer_reset(w->a);
  par_wire_peer_reset(w->b);
  start_b(L, w);
  return 0;
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int wt_stats(lua_State *L) {
  wiretest *w = check_wt(L);
  par_wire_stats a, b;
  par_wire_peer_stats(w->a, &a);
  par_wire_peer_stats(w->b, &b);
  lua_newtable(L);
  set_num(L, "bytes_out", (double)w->bytes_out);
  set_num(L, "bytes_back", (double)w->bytes_back);
  set_num(L, "frames_out", (double)w->frames_out);
  set_num(L, "frames_back", (double)w->frames_back);
  set_num(L, "dumps_sent", (double)a.dumps_sent);
  set_num(L, "ids_sent", (double)a.ids_sent);
  set_num(L, "dumps_received", (double)b.dumps_received);
  set_num(L, "ids_received", (double)b.ids_received);
  set_num(L, "protos_cached", (double)b.protos_cached);
  set_num(L, "streams_open", (double)b.streams_open);
  return 1;
}

static int wt_gc(lua_State *L) {
  wiretest *w = (wiretest *)luaL_checkudata(L, 1, WIRETEST);
  if (w->B) lua_close(w->B);
  par_wire_peer_free(w->a);
  par_wire_peer_free(w->b);
  par_buf_free(&w->frames);
  w->B = NULL;
  w->a = w->b = NULL;
  return 0;
}

static int l_wire_test(lua_State *L) {
  wiretest *w = (wiretest *)lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  luaL_setmetatable(L, WIRETEST);
  w->a = par_wire_peer_new(NULL);
  w->b = par_wire_peer_new(NULL);
  if (!w->a || !w->b) return luaL_error(L, "not enough memory");
  start_b(L, w);
  return 1;
}

static int wiremsg_gc(lua_State *L) {
  par_msg **box = (par_msg **)lua_touserdata(L, 1);
  par_msg_free(*box);
  *box = NULL;
  return 0;
}

static int l_wire_fingerprint(lua_State *L) {
  lua_pushstring(L, par_wire_fingerprint());
  return 1;
}

static int l_wire_hello(lua_State *L) {
  par_buf b;
  par_buf_init(&b);
  if (par_wire_hello(&b) != 0) return luaL_error(L, "not enough memory");
  lua_pushlstring(L, (const char *)b.data, b.len);
  par_buf_free(&b);
  return 1;
}

static int l_wire_check_hello(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  par_wire_err e;
  if (par_wire_check_hello(s, n, &e) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, e.msg);
  return 2;
}

void l_wire_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    { "call", wt_call }, { "map", wt_map }, { "reset", wt_reset }, { "stats", wt_stats },
    { "payloads", wt_payloads }, { "rebuild", wt_rebuild },
    { "close", wt_gc }, { NULL, NULL }
  };
  if (luaL_newmetatable(L, WIRETEST)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, wt_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, wt_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, "parallel.wiremsg")) {
    lua_pushcfunction(L, wiremsg_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_wire_test);
  lua_setfield(L, -2, "_wire_test");
  lua_pushcfunction(L, l_wire_fingerprint);
  lua_setfield(L, -2, "_wire_fingerprint");
  lua_pushcfunction(L, l_wire_hello);
  lua_setfield(L, -2, "_wire_hello");
  lua_pushcfunction(L, l_wire_check_hello);
  lua_setfield(L, -2, "_wire_check_hello");
}
