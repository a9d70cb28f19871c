/*
 * Shared objects owned by another process, as the receiving state sees
 * them (wire/remote.h): a queue, pipe end, dict, future or pool that a
 * process pool's task was handed arrives as a proxy of type
 * "parallel.queue (remote)" (and so on) with the same methods; each call is
 * one request to the owner and one reply. Values are encoded here as for
 * the local objects (immediates for small integers and booleans, the codec
 * for the rest; dict keys in the dict's canonical bytes).
 *
 * Blocking calls wait for the reply in slices; an interrupt of the task
 * cancels the request at the owner, then waits for its final reply (an
 * outcome already decided there is kept: a pop that succeeded returns its
 * value), then raises.
 */
#include "lua/l_shared.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "core/future.h"
#include "lua/l_object.h"
#include "lua/l_options.h"
#include "lua/l_process.h"
#include "lua/l_wait.h"
#include "lua/l_worker.h"
#include "wire/remote.h"

_Static_assert(TASK_STARMAP + 1 == PR_TASK_KINDS, "remote.h's PR_TASK_KINDS counts l_worker.h's kinds");

static const char *const state_names[] = {"pending", "running", "done", "failed", "cancelled"};

/* A call in flight, owned by a to-be-closed userdata: an error (a value
 * that cannot be sent, a decode that fails, an interrupt) frees what the
 * request and the reply still hold. */
typedef struct rcall {
  par_remote_part *parts;
  size_t n, cap;
  par_remote_reply reply;
  int have_reply;
  par_object *held;     /* kept alive while the call needs it (an update) */
} rcall;

static const char rcall_key = 0;

static int rcall_close(lua_State *L) {
  rcall *c = (rcall *)lua_touserdata(L, 1);
  par_remote_parts_free(c->parts, c->n);
  c->parts = NULL;
  c->n = c->cap = 0;
  if (c->have_reply) par_remote_parts_free(c->reply.parts, c->reply.nparts);
  c->have_reply = 0;
  if (c->held) par_object_release(c->held);
  c->held = NULL;
  return 0;
}

static rcall *rcall_new(lua_State *L) {
  rcall *c = (rcall *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &rcall_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, rcall_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, rcall_close);
    lua_setfield(L, -2, "__close");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &rcall_key);
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return c;
}

static par_remote_part *add_part(lua_State *L, rcall *c, unsigned char tag) {
  par_remote_part *p;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4;
    par_remote_part *n = (par_remote_part *)realloc(c->parts, cap * sizeof *n);
    if (!n) luaL_error(L, "not enough memory");
    c->parts = n;
    c->cap = cap;
  }
  p = &c->parts[c->n++];
  memset(p, 0, sizeof *p);
  p->tag = tag;
  return p;
}

static void reserve_parts(lua_State *L, rcall *c, lua_Integer n) {
  par_remote_part *parts;
  if ((lua_Unsigned)n > SIZE_MAX / sizeof *parts) luaL_error(L, "not enough memory");
  if ((size_t)n <= c->cap) return;
  parts = (par_remote_part *)realloc(c->parts, (size_t)n * sizeof *parts);
  if (!parts) luaL_error(L, "not enough memory");
  c->parts = parts;
  c->cap = (size_t)n;
}

/* A queue item (an immediate when it can be) or, for a dict, a message. */
static void add_value(lua_State *L, rcall *c, int idx) {
  par_remote_part *p = add_part(L, c, 'M');
  p->tag = 'N';                       /* until the encode is done */
  p->m = l_queue_encode_item(L, idx);
  p->tag = 'M';
}

static void add_dict_value(lua_State *L, rcall *c, int idx) {
  par_remote_part *p = add_part(L, c, 'M');
  p->tag = 'N';
  p->m = codec_encode(L, idx, 1, "value", 0);
  p->tag = 'M';
}

static void add_key(lua_State *L, rcall *c, int idx) {
  key k;
  par_remote_part *p;
  int top = lua_gettop(L);
  l_dict_tokey(L, idx, &k, idx);
  p = add_part(L, c, 'B');
  p->bytes = (unsigned char *)malloc(k.len);
  if (!p->bytes) luaL_error(L, "not enough memory");
  memcpy(p->bytes, k.p, k.len);
  p->len = k.len;
  lua_settop(L, top);
}

static int should_stop(void *ud) { return l_wait_should_stop((lua_State *)ud); }

/* Who updates a dict key, as the owner sees it: this Lua state (its main
 * thread), so that a nested update of the key raises instead of waiting
 * for itself, and two tasks of one process do not pass for one. */
static int64_t requester(lua_State *L) {
  lua_State *main;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return (int64_t)(uintptr_t)main;
}

/* Sends the call; returns the reply's status. Raises on a failure, a
 * broken link and an interrupt. */
static int call(lua_State *L, rcall *c, par_remote_obj *o, int method, double timeout,
                int64_t arg) {
  par_remote_part *parts = c->parts;
  size_t n = c->n;
  int rc;
  /* Lua code the encodes ran (finalizers, __index) may have closed the
   * handle, and its proxy object gone with it */
  if (!l_object_open(L, 1)) return l_object_closed_error(L, 1);
  c->parts = NULL;
  c->n = c->cap = 0;
  rc = par_remote_call(o, method, timeout, arg, parts, n, &c->reply, should_stop, L);
  c->have_reply = rc == 0;
  if (rc != 0) return luaL_error(L, "%s", c->reply.error);
  if (c->reply.status == PR_FAILED) return luaL_error(L, "%s", c->reply.error);
  if (c->reply.status == PAR_INTERRUPTED) return l_wait_raise(L);
  if (c->reply.status == PAR_NOMEM) return luaL_error(L, "not enough memory");
  return c->reply.status;
}

/* Pushes the values of reply part i (a message: all its values). */
static int push_part(lua_State *L, rcall *c, size_t i) {
  par_remote_part *p = &c->reply.parts[i];
  switch (p->tag) {
    case 'M': {
      par_msg *m = p->m;
      p->m = NULL;
      if (((uintptr_t)m & 3u) != 0) { l_queue_push_item(L, m); return 1; }
      return l_message_decode(L, m);
    }
    case 'B': l_dict_pushkey(L, p->bytes, p->len); return 1;
    case 'H': {
      par_object *obj = p->obj;
      p->obj = NULL;
      l_object_push(L, obj);
      return 1;
    }
    default: lua_pushnil(L); return 1;
  }
}

static par_remote_obj *check(lua_State *L, int kind) {
  par_remote_obj *o = (par_remote_obj *)l_object_check(L, 1, &par_remote_types[kind]);
  if (!o->client) luaL_error(L, "%s is closed", par_remote_types[kind].name);
  return o;
}

/* ---------------------------------------------------- queues and pipes */

static int closed_error(lua_State *L, int kind) {
  return luaL_error(L, kind == PR_KIND_PIPE ? "pipe is closed" : "queue is closed");
}

static int q_push(lua_State *L, int kind) {
  par_remote_obj *o = check(L, kind);
  double timeout = l_opttimeout(L, 3);
  rcall *c;
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "value expected");
  c = rcall_new(L);
  add_value(L, c, 2);
  switch (call(L, c, o, PR_PUSH, timeout, 0)) {
    case PAR_OK: lua_pushboolean(L, 1); return 1;
    case PAR_TIMEOUT: lua_pushboolean(L, 0); return 1;
    default: return closed_error(L, kind);
  }
}

static int q_pop(lua_State *L, int kind) {
  par_remote_obj *o = check(L, kind);
  double timeout = l_opttimeout(L, 2);
  rcall *c = rcall_new(L);
  int st = call(L, c, o, PR_POP, timeout, 0);
  if (st == PAR_OK && c->reply.nparts == 1) return push_part(L, c, 0);
  lua_pushnil(L);
  lua_pushstring(L, st == PAR_CLOSED ? "closed" : "timeout");
  return 2;
}

static int q_push_all(lua_State *L, int kind) {
  par_remote_obj *o = check(L, kind);
  double timeout = l_opttimeout(L, 3);
  lua_Integer len, i;
  rcall *c;
  int st;
  luaL_checktype(L, 2, LUA_TTABLE);
  len = luaL_len(L, 2);
  c = rcall_new(L);
  /* room for every item at once, as a local push_all: a __len that no
   * memory can hold fails here, not after filling this process's memory
   * one part at a time */
  if (len > 0) reserve_parts(L, c, len);
  for (i = 1; i <= len; i++) {
    if (lua_geti(L, 2, i) == LUA_TNIL)
      return luaL_argerror(L, 2, lua_pushfstring(L, "item %I is nil", i));
    add_value(L, c, lua_gettop(L));
    lua_pop(L, 1);
  }
  st = call(L, c, o, PR_PUSH_MANY, timeout, 0);
  if (st == PAR_OK) { lua_pushboolean(L, 1); return 1; }
  if (st == PAR_TIMEOUT) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, (lua_Integer)c->reply.value);
    return 2;
  }
  if (kind == PR_KIND_PIPE) return closed_error(L, kind);
  return luaL_error(L, "queue is closed (%I of %I items pushed)", (lua_Integer)c->reply.value, len);
}

/* The reply's items into the list at 1 (light userdata: a pop_decode at
 * 2), under lua_pcall: pd->i stops at an item that cannot be decoded here.
 * The messages stay the reply's until the end, so that they can go back. */
typedef struct pop_decode { rcall *c; size_t i; } pop_decode;

static int decode_reply(lua_State *L) {
  pop_decode *pd = (pop_decode *)lua_touserdata(L, 2);
  par_remote_reply *rp = &pd->c->reply;
  luaL_checkstack(L, 4, NULL);
  for (; pd->i < rp->nparts; pd->i++) {
    if (rp->parts[pd->i].tag != 'M') lua_pushnil(L);
    else l_queue_peek_item(L, rp->parts[pd->i].m);
    lua_rawseti(L, 1, (lua_Integer)pd->i + 1);
  }
  return 0;
}

/* An item that cannot be decoded here fails the pop_many that takes it, as
 * it fails pop(); the others of its batch go back to the front of the
 * owner's queue, in order (one request), as a local pop_many's do. */
static int give_back_reply(lua_State *L, par_remote_obj *o, rcall *c, size_t bad) {
  int err = lua_gettop(L);
  rcall *back = rcall_new(L);
  size_t i;
  for (i = 0; i < c->reply.nparts; i++) {
    par_remote_part *from = &c->reply.parts[i];
    if (i == bad || from->tag != 'M') continue;
    add_part(L, back, 'M')->m = from->m;
    from->m = NULL;
  }
  if (back->n > 0) call(L, back, o, PR_PUSH_MANY, 0, PR_TO_FRONT);
  lua_pushvalue(L, err);
  return lua_error(L);
}

static int q_pop_many(lua_State *L, int kind) {
  par_remote_obj *o = check(L, kind);
  lua_Integer max = luaL_checkinteger(L, 2);
  double timeout = l_opttimeout(L, 3);
  rcall *c;
  pop_decode pd;
  int st;
  luaL_argcheck(L, max >= 1, 2, "max must be at least 1");
  c = rcall_new(L);
  st = call(L, c, o, PR_POP_MANY, timeout, max);
  if (st != PAR_OK) {
    lua_pushnil(L);
    lua_pushstring(L, st == PAR_CLOSED ? "closed" : "timeout");
    return 2;
  }
  lua_createtable(L, (int)c->reply.nparts, 0);
  pd.c = c;
  pd.i = 0;
  lua_pushcfunction(L, decode_reply);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, &pd);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) return give_back_reply(L, o, c, pd.i);
  return 1;
}

static int q_simple(lua_State *L, int kind, int method) {
  par_remote_obj *o = check(L, kind);
  rcall *c = rcall_new(L);
  int st = call(L, c, o, method, 0, 0);
  lua_pushinteger(L, (lua_Integer)c->reply.value);
  return st;
}

static int q_poll(lua_State *L, int kind) {
  par_remote_obj *o = check(L, kind);
  double timeout = lua_isnoneornil(L, 2) ? 0 : l_opttimeout(L, 2);
  rcall *c = rcall_new(L);
  lua_pushboolean(L, call(L, c, o, PR_POLL, timeout, 0) != PAR_TIMEOUT);
  return 1;
}

static int rq_push(lua_State *L) { return q_push(L, PR_KIND_QUEUE); }
static int rq_pop(lua_State *L) { return q_pop(L, PR_KIND_QUEUE); }
static int rq_push_all(lua_State *L) { return q_push_all(L, PR_KIND_QUEUE); }
static int rq_pop_many(lua_State *L) { return q_pop_many(L, PR_KIND_QUEUE); }
static int rq_close(lua_State *L) { q_simple(L, PR_KIND_QUEUE, PR_CLOSE); return 0; }
static int rq_len(lua_State *L) { q_simple(L, PR_KIND_QUEUE, PR_COUNT); return 1; }

static int rq_capacity(lua_State *L) {
  q_simple(L, PR_KIND_QUEUE, PR_CAPACITY);
  if (lua_tointeger(L, -1) == 0) lua_pushnumber(L, HUGE_VAL);
  return 1;
}

static int rq_full(lua_State *L) {
  lua_Integer cap, n;
  q_simple(L, PR_KIND_QUEUE, PR_CAPACITY);
  cap = lua_tointeger(L, -1);
  q_simple(L, PR_KIND_QUEUE, PR_COUNT);
  n = lua_tointeger(L, -1);
  lua_pushboolean(L, cap > 0 && n >= cap);
  return 1;
}

static int rq_task_done(lua_State *L) {
  if (q_simple(L, PR_KIND_QUEUE, PR_TASK_DONE) == PAR_ERROR)
    return luaL_error(L, "task_done called more times than items were pushed");
  return 0;
}

static int rq_join(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_QUEUE);
  double timeout = l_opttimeout(L, 2);
  rcall *c = rcall_new(L);
  lua_pushboolean(L, call(L, c, o, PR_JOIN, timeout, 0) == PAR_OK);
  return 1;
}

static int items_next(lua_State *L) {
  lua_settop(L, 1);
  return q_pop(L, PR_KIND_QUEUE) == 1 ? 1 : 0;
}

static int rq_items(lua_State *L) {
  check(L, PR_KIND_QUEUE);
  lua_pushcfunction(L, items_next);
  lua_pushvalue(L, 1);
  return 2;
}

static int rp_send(lua_State *L) {
  q_push(L, PR_KIND_PIPE);
  if (!lua_toboolean(L, -1)) return closed_error(L, PR_KIND_PIPE);
  return 0;
}
static int rp_recv(lua_State *L) { return q_pop(L, PR_KIND_PIPE); }
static int rp_send_all(lua_State *L) { return q_push_all(L, PR_KIND_PIPE); }
static int rp_recv_many(lua_State *L) { return q_pop_many(L, PR_KIND_PIPE); }
static int rp_poll(lua_State *L) { return q_poll(L, PR_KIND_PIPE); }
static int rp_close(lua_State *L) { q_simple(L, PR_KIND_PIPE, PR_CLOSE); return 0; }

/* --------------------------------------------------------------- dicts */

static int rd_get(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_DICT);
  rcall *c = rcall_new(L);
  add_key(L, c, 2);
  call(L, c, o, PR_GET, 0, 0);
  if (c->reply.value && c->reply.nparts == 1) return push_part(L, c, 0);
  lua_pushnil(L);
  return 1;
}

static int rd_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(L_OBJECT_NUPVALUES + 1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  return rd_get(L);
}

static int rd_set(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_DICT);
  rcall *c = rcall_new(L);
  add_key(L, c, 2);
  if (lua_isnil(L, 3)) add_part(L, c, 'N');
  else add_dict_value(L, c, 3);
  if (call(L, c, o, PR_SET, -1, requester(L)) == PAR_ERROR)
    return luaL_error(L, "dict key is being updated by this thread");
  return 0;
}

static int rd_len(lua_State *L) { q_simple(L, PR_KIND_DICT, PR_COUNT); return 1; }

static int snapshot(lua_State *L, int with_values) {
  par_remote_obj *o = check(L, PR_KIND_DICT);
  rcall *c = rcall_new(L);
  size_t i, step = with_values ? 2 : 1, k = 0;
  call(L, c, o, PR_ITEMS, 0, with_values);
  lua_createtable(L, (int)(c->reply.nparts / step), 0);
  if (with_values) lua_createtable(L, (int)(c->reply.nparts / step), 0);
  for (i = 0; i + step <= c->reply.nparts; i += step) {
    k++;
    push_part(L, c, i);
    lua_rawseti(L, with_values ? -3 : -2, (lua_Integer)k);
    if (with_values) {
      push_part(L, c, i + 1);
      lua_rawseti(L, -2, (lua_Integer)k);
    }
  }
  return with_values ? 2 : 1;
}

static int rd_keys(lua_State *L) { return snapshot(L, 0); }

static int pairs_next(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(3)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(3));
  if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL) return 0;
  lua_rawgeti(L, lua_upvalueindex(2), i);
  return 2;
}

static int rd_pairs(lua_State *L) {
  snapshot(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairs_next, 3);
  return 1;
}

/* Between the two requests of an update, protected: the current value's
 * decode (which may run out of memory), fn, and the new value's encode. */
static int update_body(lua_State *L) {
  rcall *c = (rcall *)lua_touserdata(L, 1);
  rcall *e = (rcall *)lua_touserdata(L, 2);
  lua_settop(L, 3);
  push_part(L, c, 0);
  lua_call(L, 1, 1);                  /* fn's result replaces fn, at 3 */
  if (lua_isnil(L, 3)) add_part(L, e, 'N');
  else add_dict_value(L, e, 3);
  lua_settop(L, 3);
  return 1;
}

/* d:update(k, fn) --> the new value. The owner holds the key from the
 * first request (which brings the current value) to the second (which
 * stores fn's result, or only releases the key). Whatever happens in
 * between (a decode out of memory, fn raising, a result that cannot
 * travel, fn closing this very handle) the second request is sent: a key
 * left held would block every other updater of it until this worker
 * process ends. */
static int rd_update(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_DICT);
  rcall *c, *e;
  int64_t token;
  int ok, res, rc;
  luaL_checkany(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  c = rcall_new(L);
  e = rcall_new(L);
  e->held = par_object_retain(&o->hdr);
  add_key(L, c, 2);
  if (call(L, c, o, PR_BEGIN_UPDATE, -1, requester(L)) == PAR_ERROR)
    return luaL_error(L, "dict key is being updated by this thread");
  token = c->reply.value;
  lua_pushcfunction(L, update_body);
  lua_pushlightuserdata(L, c);
  lua_pushlightuserdata(L, e);
  lua_pushvalue(L, 3);
  ok = lua_pcall(L, 3, 1, 0) == LUA_OK;
  res = lua_gettop(L);
  if (!ok) {
    par_remote_parts_free(e->parts, e->n);
    e->parts = NULL;
    e->n = e->cap = 0;
  }
  /* not call(): the handle may be closed by now (e->held keeps o) */
  rc = par_remote_call(o, PR_END_UPDATE, 0, token, e->parts, e->n, &e->reply, NULL, NULL);
  e->parts = NULL;
  e->n = e->cap = 0;
  e->have_reply = rc == 0;
  if (!ok) return lua_error(L);
  if (rc != 0 || e->reply.status == PR_FAILED) return luaL_error(L, "%s", e->reply.error);
  if (e->reply.status == PAR_NOMEM) return luaL_error(L, "not enough memory");
  lua_pushvalue(L, res);
  return 1;
}

/* ------------------------------------------------------------- futures */

static int rf_wait_call(lua_State *L, rcall *c, par_remote_obj *o, double timeout, int results) {
  return call(L, c, o, PR_WAIT, timeout, results);
}

/* Protected: the values of a failure reply's message (at 1: its rcall). */
static int rf_decode_failure(lua_State *L) {
  return push_part(L, (rcall *)lua_touserdata(L, 1), 0);
}

/* Pushes error value, traceback and item index of failure reply c; what
 * cannot be decoded here is said in a string (l_failure_undecodable). */
static void rf_push_failure(lua_State *L, rcall *c) {
  lua_pushcfunction(L, rf_decode_failure);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 3, 0) != LUA_OK) l_failure_undecodable(L);
}

static int rf_get(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  double timeout = l_opttimeout(L, 2);
  rcall *c;
  int base, n;
  l_wait_callbacks(L);
  c = rcall_new(L);
  if (rf_wait_call(L, c, o, timeout, 1) == PAR_TIMEOUT) return luaL_error(L, "timeout");
  l_wait_callbacks(L);
  switch ((int)c->reply.value) {
    case PAR_DONE:
      base = lua_gettop(L);
      n = c->reply.nparts == 1 ? push_part(L, c, 0) : 0;
      (void)base;
      return n;
    case PAR_CANCELLED: return luaL_error(L, "cancelled");
    default:
      if (c->reply.nparts != 1) return luaL_error(L, "pool init failed: not enough memory");
      base = lua_gettop(L);
      rf_push_failure(L, c);            /* error, traceback, index */
      if (lua_type(L, base + 1) == LUA_TSTRING && lua_type(L, base + 2) == LUA_TSTRING &&
          lua_rawlen(L, base + 2) > 0) {
        lua_pushvalue(L, base + 1);
        lua_pushliteral(L, "\n");
        lua_pushvalue(L, base + 2);
        lua_concat(L, 3);
        return lua_error(L);
      }
      lua_pushvalue(L, base + 1);
      return lua_error(L);
  }
}

static int rf_wait(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  double timeout = l_opttimeout(L, 2);
  rcall *c;
  l_wait_callbacks(L);
  c = rcall_new(L);
  lua_pushboolean(L, rf_wait_call(L, c, o, timeout, 0) == PAR_OK);
  l_wait_callbacks(L);
  return 1;
}

static int rf_state_value(lua_State *L) {
  q_simple(L, PR_KIND_FUTURE, PR_STATE);
  return (int)lua_tointeger(L, -1);
}

static int rf_state(lua_State *L) {
  int st = rf_state_value(L);
  lua_pushstring(L, st >= 0 && st <= 4 ? state_names[st] : "?");
  return 1;
}

static int rf_done(lua_State *L) {
  lua_pushboolean(L, par_future_is_terminal(rf_state_value(L)));
  return 1;
}

static int rf_error(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  rcall *c = rcall_new(L);
  int base;
  rf_wait_call(L, c, o, 0, 1);
  if (c->reply.value == PAR_CANCELLED) {
    lua_pushliteral(L, "cancelled");
    lua_pushliteral(L, "");
    return 2;
  }
  if (c->reply.value != PAR_FAILED || c->reply.nparts != 1) return 0;
  base = lua_gettop(L);
  rf_push_failure(L, c);
  lua_settop(L, base + 2);
  return 2;
}

/* future:_into(dest, offset) --> n: a finished map chunk's results stored
 * into dest[offset ..] (the map family, as a local future's _into) */
static int rf_into(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  lua_Integer offset, n;
  rcall *c;
  par_msg *m;
  luaL_checktype(L, 2, LUA_TTABLE);
  offset = luaL_checkinteger(L, 3);
  c = rcall_new(L);
  rf_wait_call(L, c, o, 0, 1);
  if (c->reply.value != PAR_DONE || c->reply.nparts != 1 || c->reply.parts[0].tag != 'M' ||
      ((uintptr_t)c->reply.parts[0].m & 3u) != 0)
    return luaL_error(L, "not a finished map chunk");
  m = c->reply.parts[0].m;
  n = codec_decode_into(L, m, 2, offset);
  lua_pushinteger(L, n);
  return 1;
}

/* future:_failure() --> error value, traceback, item index (map family) */
static int rf_failure(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  rcall *c = rcall_new(L);
  int base = lua_gettop(L);
  rf_wait_call(L, c, o, 0, 1);
  if (c->reply.value == PAR_FAILED && c->reply.nparts == 1) {
    rf_push_failure(L, c);
  } else {
    lua_pushstring(L, c->reply.value == PAR_FAILED ? "pool init failed: not enough memory"
                                                   : "cancelled");
    lua_pushliteral(L, "");
  }
  lua_settop(L, base + 3);
  return 3;
}

/* future:_wait_any(futures [, timeout]) --> the index of one of them that is
 * done, or nil at the timeout: one request to the owner, whose futures
 * they must all be (the map family's and done callbacks' waits) */
static int rf_wait_any(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_FUTURE);
  double timeout = l_opttimeout(L, 3);
  lua_Integer n, i;
  rcall *c;
  par_remote_part *p;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 1, 2, "no futures");
  /* a __len past what can be counted in bytes would wrap the size below */
  luaL_argcheck(L, (lua_Unsigned)n <= SIZE_MAX / 8, 2, "too many futures");
  c = rcall_new(L);
  p = add_part(L, c, 'B');
  p->bytes = (unsigned char *)malloc((size_t)n * 8);
  if (!p->bytes) return luaL_error(L, "not enough memory");
  p->len = (size_t)n * 8;
  for (i = 1; i <= n; i++) {
    par_remote_obj *f;
    lua_geti(L, 2, i);
    f = (par_remote_obj *)l_object_check(L, -1, &par_remote_types[PR_KIND_FUTURE]);
    if (f->client != o->client)
      return luaL_argerror(L, 2, "futures of another process's pools");
    memcpy(p->bytes + 8 * (i - 1), &f->id, 8);
    lua_pop(L, 1);
  }
  if (call(L, c, o, PR_WAIT_ANY, timeout, 0) != PAR_OK) return 0;
  lua_pushinteger(L, (lua_Integer)c->reply.value + 1);
  return 1;
}

/* future:_link() --> a light userdata naming the link to its owner: the
 * futures that one _wait_any may name */
static int rf_link(lua_State *L) {
  lua_pushlightuserdata(L, check(L, PR_KIND_FUTURE)->client);
  return 1;
}

static int rf_bool(lua_State *L, int method) {
  q_simple(L, PR_KIND_FUTURE, method);
  lua_pushboolean(L, lua_tointeger(L, -1) != 0);
  return 1;
}
static int rf_cancel(lua_State *L) { return rf_bool(L, PR_CANCEL); }
static int rf_interrupt(lua_State *L) { return rf_bool(L, PR_INTERRUPT); }
static int rf_kill(lua_State *L) { return rf_bool(L, PR_KILL); }

/* --------------------------------------------------------------- pools */

static int rpool_submit(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_POOL);
  int n = lua_gettop(L) - 1;
  rcall *c;
  par_remote_part *p;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  c = rcall_new(L);
  p = add_part(L, c, 'N');
  p->m = codec_encode_call(L, 2, n);
  p->tag = 'M';
  if (call(L, c, o, PR_SUBMIT, 0, TASK_CALL) == PAR_CLOSED) return luaL_error(L, "pool is shut down");
  if (c->reply.nparts != 1 || c->reply.parts[0].tag != 'H') return luaL_error(L, "a malformed reply");
  return push_part(L, c, 0);
}

/* pool:_chunk(fn, list, first, last, star [, label [, timeout]]) --> future
 * (as a local pool's: the map family's chunks) */
static int rpool_chunk(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_POOL);
  lua_Integer first = luaL_checkinteger(L, 4), last = luaL_checkinteger(L, 5);
  int star = lua_toboolean(L, 6);
  lua_Integer label;
  double timeout;
  rcall *c;
  par_remote_part *p;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, first >= 1 && last >= first, 4, "empty chunk");
  label = luaL_optinteger(L, 7, first);
  timeout = luaL_optnumber(L, 8, 0);
  c = rcall_new(L);
  p = add_part(L, c, 'N');
  p->m = codec_encode_chunk(L, 2, 3, first, last, label, star);
  p->tag = 'M';
  if (timeout > 0) {
    p = add_part(L, c, 'B');
    p->bytes = (unsigned char *)malloc(sizeof timeout);
    if (!p->bytes) return luaL_error(L, "not enough memory");
    memcpy(p->bytes, &timeout, sizeof timeout);
    p->len = sizeof timeout;
  }
  if (call(L, c, o, PR_SUBMIT, 0, star ? TASK_STARMAP : TASK_MAP) == PAR_CLOSED)
    return luaL_error(L, "pool is shut down");
  if (c->reply.nparts != 1 || c->reply.parts[0].tag != 'H') return luaL_error(L, "a malformed reply");
  return push_part(L, c, 0);
}

/* pool:_info() --> workers, backend, shut down (what the map family checks) */
static int rpool_info(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_POOL);
  rcall *c = rcall_new(L);
  call(L, c, o, PR_INFO, 0, 0);
  if (c->reply.nparts != 1 || c->reply.parts[0].tag != 'B') return luaL_error(L, "a malformed reply");
  lua_pushinteger(L, (lua_Integer)(c->reply.value / 2));
  lua_pushlstring(L, (const char *)c->reply.parts[0].bytes, c->reply.parts[0].len);
  lua_pushboolean(L, (int)(c->reply.value & 1));
  return 3;
}

static int rpool_apply(lua_State *L) {
  int top;
  rpool_submit(L);
  lua_getfield(L, -1, "get");
  lua_insert(L, -2);
  top = lua_gettop(L) - 2;
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L) - top;
}

static const l_option shutdown_options[] = {
  {"wait", "boolean"}, {"cancel", "boolean"}, {NULL, NULL}
};

/* p:shutdown{wait =, cancel =}: the options of the owner's pool:shutdown,
 * checked the same way (they were ignored, `cancel` too). The owner does
 * not wait for its workers: this worker may be one of them. */
static int rpool_shutdown(lua_State *L) {
  par_remote_obj *o = check(L, PR_KIND_POOL);
  int cancel = 0;
  rcall *c;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    l_check_options(L, 2, 2, shutdown_options);
    lua_getfield(L, 2, "cancel");
    cancel = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  c = rcall_new(L);
  call(L, c, o, PR_SHUT_DOWN, 0, cancel);
  return 0;
}

/* ------------------------------------------------- made at the parent */

static const l_option make_options[] = {{"owner", "here|parent"}, {NULL, NULL}};

int l_remote_make(lua_State *L, int idx, int kind, lua_Integer capacity) {
  par_remote_client *client;
  par_remote_obj at;
  par_remote_part *parts;
  rcall *c;
  size_t n, i, want = kind == PR_KIND_PIPE ? 2 : 1;
  int worker, parent, rc;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  l_check_options(L, idx, idx, make_options);
  lua_getfield(L, idx, "owner");
  parent = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "parent") == 0;
  lua_pop(L, 1);
  if (!parent) return 0;
  client = l_process_home(&worker);
  if (!client) {
    if (!worker) return 0;    /* this process is the parent */
    return luaL_error(L, "owner = \"parent\" works in a task's own thread of a worker process, "
                      "not in a thread pool the task made (make the object in the task and "
                      "pass it to the threads)");
  }
  memset(&at, 0, sizeof at);
  par_object_init(&at.hdr, &par_remote_types[kind]);
  at.client = client;
  at.kind = kind;
  c = rcall_new(L);
  if (kind == PR_KIND_QUEUE) {
    uint64_t cap = (uint64_t)capacity;
    par_remote_part *p = add_part(L, c, 'B');
    p->bytes = (unsigned char *)malloc(sizeof cap);
    if (!p->bytes) return luaL_error(L, "not enough memory");
    memcpy(p->bytes, &cap, sizeof cap);
    p->len = sizeof cap;
  }
  parts = c->parts;
  n = c->n;
  c->parts = NULL;
  c->n = c->cap = 0;
  rc = par_remote_call(&at, PR_CREATE, 0, kind, parts, n, &c->reply, should_stop, L);
  c->have_reply = rc == 0;
  if (rc != 0 || c->reply.status == PR_FAILED) return luaL_error(L, "%s", c->reply.error);
  if (c->reply.status == PAR_NOMEM) return luaL_error(L, "not enough memory");
  if (c->reply.status == PAR_INTERRUPTED) return l_wait_raise(L);
  if (c->reply.status != PAR_OK || c->reply.nparts != want) return luaL_error(L, "a malformed reply");
  for (i = 0; i < want; i++)
    if (c->reply.parts[i].tag != 'H') return luaL_error(L, "a malformed reply");
  for (i = 0; i < want; i++) push_part(L, c, i);
  return (int)want;
}

/* core._remote_exports() --> how many objects this process exports to
 * others now (a check that none leaks) */
static int l_remote_exports(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)par_remote_exports_live());
  return 1;
}

/* ------------------------------------------------------------- opening */

static const luaL_Reg queue_methods[] = {
  {"push", rq_push}, {"pop", rq_pop}, {"push_all", rq_push_all}, {"pop_many", rq_pop_many},
  {"close", rq_close}, {"full", rq_full}, {"capacity", rq_capacity},
  {"task_done", rq_task_done}, {"join", rq_join}, {"items", rq_items}, {NULL, NULL}
};
static const luaL_Reg queue_meta[] = {{"__len", rq_len}, {NULL, NULL}};

static const luaL_Reg pipe_methods[] = {
  {"send", rp_send}, {"recv", rp_recv}, {"send_all", rp_send_all}, {"recv_many", rp_recv_many},
  {"poll", rp_poll}, {"close", rp_close}, {NULL, NULL}
};

static const luaL_Reg dict_methods[] = {
  {"keys", rd_keys}, {"update", rd_update}, {NULL, NULL}
};
static const luaL_Reg dict_meta[] = {
  {"__newindex", rd_set}, {"__len", rd_len}, {"__pairs", rd_pairs}, {NULL, NULL}
};

static const luaL_Reg future_methods[] = {
  {"get", rf_get}, {"wait", rf_wait}, {"done", rf_done}, {"state", rf_state},
  {"cancel", rf_cancel}, {"error", rf_error}, {"interrupt", rf_interrupt}, {"kill", rf_kill},
  {"_into", rf_into}, {"_failure", rf_failure}, {"_wait_any", rf_wait_any}, {"_link", rf_link},
  {NULL, NULL}
};

static const luaL_Reg pool_methods[] = {
  {"submit", rpool_submit}, {"apply", rpool_apply}, {"shutdown", rpool_shutdown},
  {"_chunk", rpool_chunk}, {"_info", rpool_info}, {NULL, NULL}
};

void l_remote_open(lua_State *L) {
  const par_type *dt = &par_remote_types[PR_KIND_DICT];
  l_object_newmeta(L, &par_remote_types[PR_KIND_QUEUE], queue_methods, queue_meta);
  l_object_newmeta(L, &par_remote_types[PR_KIND_PIPE], pipe_methods, NULL);
  l_object_newmeta(L, dt, dict_methods, dict_meta);
  l_object_newmeta(L, &par_remote_types[PR_KIND_FUTURE], future_methods, NULL);
  l_object_newmeta(L, &par_remote_types[PR_KIND_POOL], pool_methods, NULL);
  /* a dict's __index: its methods first, then its keys */
  lua_rawgetp(L, LUA_REGISTRYINDEX, dt);
  l_object_pushupvalues(L, dt);
  lua_getfield(L, -3, "__index");
  lua_pushcclosure(L, rd_index, L_OBJECT_NUPVALUES + 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_remote_exports);
  lua_setfield(L, -2, "_remote_exports");
}
