/*
 * parallel.queue and parallel.pipe: values are encoded by the codec in the
 * sender's state, travel as messages through core queues, and are decoded
 * in the receiver's state.
 */
#include "lua/l_shared.h"

#include <math.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "lua/l_object.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/pipe.h"

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
  op.m = codec_encode(L, idx, 1, "item", 0);
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
  if (r == PAR_OK) return l_message_decode(L, op.m);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  lua_pushnil(L);
  lua_pushstring(L, r == PAR_CLOSED ? "closed" : "timeout");
  return 2;
}

/* ---- queue ---- */

static par_queue *checkqueue(lua_State *L) {
  return (par_queue *)l_object_check(L, 1, &par_queue_type);
}

static int l_queue_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  par_queue *q;
  luaL_argcheck(L, cap >= 0, 1, "capacity must be non-negative");
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

static int l_pipe_new(lua_State *L) {
  par_pipe *a, *b;
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

static int l_pipe_close(lua_State *L) {
  par_pipe_close(checkpipe(L));
  return 0;
}

static const luaL_Reg queue_methods[] = {
  {"push", l_queue_push},
  {"pop", l_queue_pop},
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
