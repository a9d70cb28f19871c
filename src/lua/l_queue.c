/*
 * parallel.queue and parallel.pipe: values are encoded by the codec in the
 * sender's state, travel as messages through core queues, and are decoded
 * in the receiver's state.
 */
#include "lua/l_shared.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "lua/l_object.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/pipe.h"
#include "wire/remote.h"

/*
 * Integers of up to 62 bits (on a 64-bit machine) and booleans travel as
 * immediates (msg.h): the value in the pointer, tagged in its low two bits,
 * 01 an integer (shifted left by two), 11 a boolean. No allocation and no
 * codec on either side: two C calls and a lock per item, or one lock per
 * batch.
 */
#define IMM_INT 1u
#define IMM_BOOL 3u

static par_msg *to_immediate(lua_State *L, int idx, int type) {
  lua_Integer i;
  switch (type) {
    case LUA_TNUMBER:
      if (!lua_isinteger(L, idx)) return NULL;   /* 1.0 stays a float */
      i = lua_tointeger(L, idx);
      if (i >= (INTPTR_MIN >> 2) && i <= (INTPTR_MAX >> 2))
        return (par_msg *)(((uintptr_t)(intptr_t)i << 2) | IMM_INT);
      return NULL;
    case LUA_TBOOLEAN:
      return (par_msg *)(((uintptr_t)lua_toboolean(L, idx) << 2) | IMM_BOOL);
    default:
      return NULL;
  }
}

/* Pushes the value of m, an immediate or a message (freed). */
void l_queue_push_item(lua_State *L, par_msg *m) {
  if (((uintptr_t)m & 3u) != 0) l_queue_peek_item(L, m);   /* an immediate: nothing to free */
  else l_message_decode(L, m);
}

/* Pushes the one value m holds, m left as it is (its owner frees it, or
 * gives it back when a decode raises): a batch's items, decoded in turn. */
void l_queue_peek_item(lua_State *L, const par_msg *m) {
  uintptr_t x = (uintptr_t)m;
  int n;
  if ((x & 3u) == IMM_INT) { lua_pushinteger(L, (lua_Integer)((intptr_t)x >> 2)); return; }
  if ((x & 3u) == IMM_BOOL) { lua_pushboolean(L, (int)(x >> 2)); return; }
  n = codec_decode(L, m);   /* an item is one value */
  if (n == 0) lua_pushnil(L);
  else if (n > 1) lua_pop(L, n - 1);
}

/* An immediate, or the encoded message, of the value at idx, whose type
 * the caller knows. */
static par_msg *encode_typed(lua_State *L, int idx, int type) {
  par_msg *m = to_immediate(L, idx, type);
  return m ? m : codec_encode(L, idx, 1, "item", 0);
}

par_msg *l_queue_encode_item(lua_State *L, int idx) {
  return encode_typed(L, idx, lua_type(L, idx));
}

typedef struct push_op {
  par_queue *q;
  par_msg *m;
} push_op;

static int push_try(void *ud, double deadline) {
  push_op *op = (push_op *)ud;
  return par_queue_push(op->q, op->m, deadline);
}

typedef struct pop_op {
  par_queue *q;
  par_msg *m;
} pop_op;

static int pop_try(void *ud, double deadline) {
  pop_op *op = (pop_op *)ud;
  return par_queue_pop(op->q, &op->m, deadline);
}

/* Pushes the value at idx into q; returns the status (the message is freed
 * unless it was queued). Raises only when interrupted. */
static int push_value(lua_State *L, par_queue *q, int idx, double timeout) {
  push_op op;
  int r;
  op.q = q;
  op.m = l_queue_encode_item(L, idx);
  if (!l_object_open(L, 1)) { par_msg_free(op.m); l_object_closed_error(L, 1); }
  r = par_queue_push(q, op.m, 0);
  if (r == PAR_TIMEOUT && timeout != 0) r = l_wait(L, timeout, push_try, &op);
  if (r != PAR_OK) par_msg_free(op.m);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  if (r == PAR_NOMEM) luaL_error(L, "not enough memory");
  return r;
}

/* Pops into the stack: the value, or nil and "timeout" / "closed". */
static int pop_value(lua_State *L, par_queue *q, double timeout) {
  pop_op op;
  int r;
  op.q = q;
  op.m = NULL;
  r = par_queue_pop(q, &op.m, 0);
  if (r == PAR_TIMEOUT && timeout != 0) r = l_wait(L, timeout, pop_try, &op);
  if (r == PAR_OK) { l_queue_push_item(L, op.m); return 1; }
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  lua_pushnil(L);
  lua_pushstring(L, r == PAR_CLOSED ? "closed" : "timeout");
  return 2;
}

/* ---- batches: one lock and one wake-up per run of items ---- */

/* The messages of a batch in flight, owned by a to-be-closed userdata: an
 * error (an unsendable item, a decode that fails, an interrupt) frees the
 * ones not yet handed over, ms[done..n). */
typedef struct batch {
  par_msg **ms;
  size_t n;          /* entries in ms */
  size_t done;       /* ms[0..done) were handed over */
  par_queue *q;      /* a pop's batch being decoded: give_back on an error */
} batch;

static const char batch_key = 0;

static void give_back(batch *b);

static int batch_close(lua_State *L) {
  batch *b = (batch *)lua_touserdata(L, 1);
  size_t i;
  if (b->q && b->ms && b->done < b->n) give_back(b);
  b->q = NULL;
  if (b->ms) {
    for (i = b->done; i < b->n; i++) par_msg_free(b->ms[i]);
    free(b->ms);
  }
  b->ms = NULL;
  b->n = b->done = 0;
  return 0;
}

static batch *batch_new(lua_State *L) {
  batch *b = (batch *)lua_newuserdatauv(L, sizeof *b, 0);
  b->ms = NULL;
  b->n = b->done = 0;
  b->q = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &batch_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, batch_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, batch_close);
    lua_setfield(L, -2, "__close");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &batch_key);
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

typedef struct push_many_op {
  par_queue *q;
  batch *b;
} push_many_op;

static int push_many_try(void *ud, double deadline) {
  push_many_op *op = (push_many_op *)ud;
  batch *b = op->b;
  int r;
  b->done += par_queue_push_many(op->q, b->ms + b->done, b->n - b->done, deadline, &r);
  return r;
}

/* Items are read from the list this many at a time onto the stack, then
 * encoded, then dropped with one lua_settop. */
#define READ_AHEAD 64

/* Encodes list[1..#list], then queues it in runs under one lock each.
 * Returns the status with the count pushed (the first ones). */
static int push_list(lua_State *L, par_queue *q, int list, double timeout, size_t *pushed) {
  push_many_op op;
  lua_Integer len, i, j, k;
  int r, raw, base, types[READ_AHEAD];
  luaL_checktype(L, list, LUA_TTABLE);
  len = luaL_len(L, list);
  op.q = q;
  op.b = batch_new(L);
  *pushed = 0;
  if (len <= 0) { lua_closeslot(L, -1); lua_pop(L, 1); return PAR_OK; }
  if ((size_t)len > SIZE_MAX / sizeof *op.b->ms) return luaL_error(L, "not enough memory");
  op.b->ms = (par_msg **)malloc((size_t)len * sizeof *op.b->ms);
  if (!op.b->ms) return luaL_error(L, "not enough memory");
  /* a plain list is read raw: no __index to honour, and the cheaper call */
  raw = !lua_getmetatable(L, list);
  if (!raw) lua_pop(L, 1);
  luaL_checkstack(L, READ_AHEAD, NULL);
  base = lua_gettop(L);
  for (i = 1; i <= len; i += k) {
    k = len - i + 1 < READ_AHEAD ? len - i + 1 : READ_AHEAD;
    for (j = 0; j < k; j++)
      if ((types[j] = raw ? lua_rawgeti(L, list, i + j) : lua_geti(L, list, i + j)) == LUA_TNIL)
        return luaL_argerror(L, list, lua_pushfstring(L, "item %I is nil", i + j));
    for (j = 0; j < k; j++) {
      op.b->ms[i - 1 + j] = encode_typed(L, base + 1 + (int)j, types[j]);
      op.b->n = (size_t)(i + j);
    }
    lua_settop(L, base);
  }
  if (!l_object_open(L, 1)) { lua_closeslot(L, -1); l_object_closed_error(L, 1); }
  r = push_many_try(&op, 0);
  if (r == PAR_TIMEOUT && timeout != 0) r = l_wait(L, timeout, push_many_try, &op);
  *pushed = op.b->done;
  lua_closeslot(L, -1);   /* frees what did not go in */
  lua_pop(L, 1);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  if (r == PAR_NOMEM) luaL_error(L, "not enough memory");
  return r;
}

typedef struct pop_many_op {
  par_queue *q;
  size_t max;
  batch *b;
} pop_many_op;

static int pop_many_try(void *ud, double deadline) {
  pop_many_op *op = (pop_many_op *)ud;
  int r;
  op->b->ms = par_queue_pop_many(op->q, op->max, deadline, &op->b->n, &r);
  return r;
}

/* An item that cannot be decoded here (a module this state cannot require,
 * no memory) fails the pop_many that takes it as it would fail pop(), and
 * must not take the others of its batch with it: they go back to the front
 * of the queue, in order, those decoded before it included. Called by the
 * batch's __close while the error unwinds; bad = b->done, the failed one. */
static void give_back(batch *b) {
  size_t i;
  par_msg_free(b->ms[b->done]);
  b->ms[b->done] = NULL;
  if (par_queue_unpop_all(b->q, b->ms, b->n) != PAR_OK)   /* no memory */
    for (i = 0; i < b->n; i++) par_msg_free(b->ms[i]);
  b->n = b->done = 0;
}

/* Pops up to max items into a new list: the list, or nil and "timeout" /
 * "closed" (closed and drained). */
static int pop_list(lua_State *L, par_queue *q, lua_Integer max, double timeout) {
  pop_many_op op;
  batch *b;
  size_t i;
  int r, top = lua_gettop(L);
  op.q = q;
  op.max = (size_t)max;
  op.b = b = batch_new(L);
  r = pop_many_try(&op, 0);
  if (r == PAR_TIMEOUT && timeout != 0) r = l_wait(L, timeout, pop_many_try, &op);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  if (r == PAR_NOMEM) return luaL_error(L, "not enough memory");
  if (r != PAR_OK) {
    lua_pushnil(L);
    lua_pushstring(L, r == PAR_CLOSED ? "closed" : "timeout");
    return 2;
  }
  b->q = q;   /* until every item is decoded: an error gives the batch back */
  luaL_checkstack(L, 4, NULL);
  lua_createtable(L, b->n < INT_MAX ? (int)b->n : INT_MAX, 0);
  for (i = 0; i < b->n; i++) {
    b->done = i;
    l_queue_peek_item(L, b->ms[i]);   /* may raise: give_back then */
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  b->q = NULL;
  b->done = 0;                 /* all decoded: the batch frees every message */
  lua_closeslot(L, top + 1);
  lua_replace(L, top + 1);
  return 1;
}

static lua_Integer checkmax(lua_State *L, int idx) {
  lua_Integer max = luaL_checkinteger(L, idx);
  luaL_argcheck(L, max >= 1, idx, "max must be positive");
  return max;
}

/* ---- queue ---- */

static par_queue *checkqueue(lua_State *L) {
  return (par_queue *)l_object_check(L, 1, &par_queue_type);
}

/* parallel.queue([capacity] [, {owner = "parent"}]), or queue(options) */
static int l_queue_new(lua_State *L) {
  int opts = lua_istable(L, 1) ? 1 : 2;
  lua_Integer cap = opts == 1 ? 0 : luaL_optinteger(L, 1, 0);
  par_queue *q;
  luaL_argcheck(L, cap >= 0, 1, "capacity must be non-negative");
  if (l_remote_make(L, opts, PR_KIND_QUEUE, cap)) return 1;
  q = par_queue_new((size_t)cap);
  if (!q) return luaL_error(L, "not enough memory");
  l_object_push(L, (par_object *)q);
  return 1;
}

static int l_queue_push(lua_State *L) {
  par_queue *q = checkqueue(L);
  double timeout = l_opttimeout(L, 3);
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "value expected");
  if (par_queue_closed(q)) return luaL_error(L, "queue is closed");
  switch (push_value(L, q, 2, timeout)) {
    case PAR_OK: lua_pushboolean(L, 1); return 1;
    case PAR_TIMEOUT: lua_pushboolean(L, 0); return 1;
    default: return luaL_error(L, "queue is closed");
  }
}

static int l_queue_pop(lua_State *L) {
  par_queue *q = checkqueue(L);
  return pop_value(L, q, l_opttimeout(L, 2));
}

/* q:push_all(list [, timeout]) --> true | false, pushed (timeout) */
static int l_queue_push_all(lua_State *L) {
  par_queue *q = checkqueue(L);
  double timeout = l_opttimeout(L, 3);
  size_t pushed;
  lua_Integer len;
  int r;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (par_queue_closed(q)) return luaL_error(L, "queue is closed");
  r = push_list(L, q, 2, timeout, &pushed);
  if (r == PAR_OK) { lua_pushboolean(L, 1); return 1; }
  if (r == PAR_TIMEOUT) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, (lua_Integer)pushed);
    return 2;
  }
  len = luaL_len(L, 2);
  return luaL_error(L, "queue is closed (%I of %I items pushed)", (lua_Integer)pushed, len);
}

/* q:pop_many(max [, timeout]) --> list | nil, "timeout" | nil, "closed" */
static int l_queue_pop_many(lua_State *L) {
  par_queue *q = checkqueue(L);
  lua_Integer max = checkmax(L, 2);
  return pop_list(L, q, max, l_opttimeout(L, 3));
}

static int l_queue_close(lua_State *L) {
  par_queue_close(checkqueue(L));
  return 0;
}

static int l_queue_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)par_queue_count(checkqueue(L)));
  return 1;
}

/* q:full() --> true when bounded and at capacity */
static int l_queue_full(lua_State *L) {
  par_queue *q = checkqueue(L);
  size_t cap = par_queue_capacity(q);
  lua_pushboolean(L, cap > 0 && par_queue_count(q) >= cap);
  return 1;
}

/* q:capacity() --> the bound, or math.huge when unbounded */
static int l_queue_capacity(lua_State *L) {
  size_t cap = par_queue_capacity(checkqueue(L));
  if (cap == 0) lua_pushnumber(L, HUGE_VAL);
  else lua_pushinteger(L, (lua_Integer)cap);
  return 1;
}

static int l_queue_task_done(lua_State *L) {
  if (par_queue_task_done(checkqueue(L)) != PAR_OK)
    return luaL_error(L, "task_done called more times than items were pushed");
  return 0;
}

static int join_try(void *ud, double deadline) {
  return par_queue_join((par_queue *)ud, deadline);
}

/* q:join([timeout]) --> true once every pushed item is marked done, false on timeout */
static int l_queue_join(lua_State *L) {
  par_queue *q = checkqueue(L);
  int r = l_wait(L, l_opttimeout(L, 2), join_try, q);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  lua_pushboolean(L, r == PAR_OK);
  return 1;
}

static int items_next(lua_State *L) {
  par_queue *q = checkqueue(L);
  int n = pop_value(L, q, -1);
  return n == 2 ? 0 : n;   /* closed and drained: end of the loop */
}

static int l_queue_items(lua_State *L) {
  checkqueue(L);
  /* with the queue type's upvalues: each step's check is the quick one */
  l_object_pushupvalues(L, &par_queue_type);
  lua_pushcclosure(L, items_next, L_OBJECT_NUPVALUES);
  lua_pushvalue(L, 1);
  return 2;
}

/* ---- pipe ---- */

static par_pipe *checkpipe(lua_State *L) {
  return (par_pipe *)l_object_check(L, 1, &par_pipe_type);
}

/* parallel.pipe([{owner = "parent"}]) --> two connected ends */
static int l_pipe_new(lua_State *L) {
  par_pipe *a, *b;
  if (l_remote_make(L, 1, PR_KIND_PIPE, 0)) return 2;
  if (!par_pipe_new(&a, &b)) return luaL_error(L, "not enough memory");
  l_object_push(L, &a->hdr);
  l_object_push(L, &b->hdr);
  return 2;
}

static int l_pipe_send(lua_State *L) {
  par_pipe *p = checkpipe(L);
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "value expected");
  if (par_queue_closed(p->out) || push_value(L, p->out, 2, -1) != PAR_OK)
    return luaL_error(L, "pipe is closed");
  return 0;
}

static int l_pipe_recv(lua_State *L) {
  par_pipe *p = checkpipe(L);
  return pop_value(L, p->in, l_opttimeout(L, 2));
}

static int poll_try(void *ud, double deadline) {
  return par_queue_poll((par_queue *)ud, deadline);
}

/* pipe_end:poll([timeout]) --> true when recv would not block (a value
 * waits, or the other end is closed), false on timeout; no timeout: 0 */
static int l_pipe_poll(lua_State *L) {
  par_pipe *p = checkpipe(L);
  double timeout = lua_isnoneornil(L, 2) ? 0 : l_opttimeout(L, 2);
  int r = par_queue_poll(p->in, 0);
  if (r == PAR_TIMEOUT && timeout != 0) r = l_wait(L, timeout, poll_try, p->in);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  lua_pushboolean(L, r != PAR_TIMEOUT);
  return 1;
}

/* a:send_all(list): every item, in order, as one batch */
static int l_pipe_send_all(lua_State *L) {
  par_pipe *p = checkpipe(L);
  size_t pushed;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (par_queue_closed(p->out) || push_list(L, p->out, 2, -1, &pushed) != PAR_OK)
    return luaL_error(L, "pipe is closed");
  return 0;
}

/* b:recv_many(max [, timeout]) --> list | nil, "timeout" | nil, "closed" */
static int l_pipe_recv_many(lua_State *L) {
  par_pipe *p = checkpipe(L);
  lua_Integer max = checkmax(L, 2);
  return pop_list(L, p->in, max, l_opttimeout(L, 3));
}

static int l_pipe_close(lua_State *L) {
  par_pipe_close(checkpipe(L));
  return 0;
}

static const luaL_Reg queue_methods[] = {
  {"push", l_queue_push},
  {"pop", l_queue_pop},
  {"push_all", l_queue_push_all},
  {"pop_many", l_queue_pop_many},
  {"close", l_queue_close},
  {"items", l_queue_items},
  {"full", l_queue_full},
  {"capacity", l_queue_capacity},
  {"task_done", l_queue_task_done},
  {"join", l_queue_join},
  {NULL, NULL}
};

static const luaL_Reg queue_meta[] = {
  {"__len", l_queue_len},
  {NULL, NULL}
};

static const luaL_Reg pipe_methods[] = {
  {"send", l_pipe_send},
  {"recv", l_pipe_recv},
  {"poll", l_pipe_poll},
  {"send_all", l_pipe_send_all},
  {"recv_many", l_pipe_recv_many},
  {"close", l_pipe_close},
  {NULL, NULL}
};

static const luaL_Reg constructors[] = {
  {"queue", l_queue_new},
  {"pipe", l_pipe_new},
  {NULL, NULL}
};

void l_queue_open(lua_State *L) {
  l_message_open(L);
  l_object_newmeta(L, &par_queue_type, queue_methods, queue_meta);
  l_object_newmeta(L, &par_pipe_type, pipe_methods, NULL);
  luaL_setfuncs(L, constructors, 0);
}
