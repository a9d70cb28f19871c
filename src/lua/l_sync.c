/*
 * parallel.lock, rlock, semaphore, condition, event and barrier. Every
 * wait goes through l_wait so that Ctrl-C and task interrupts stop it.
 * Locks, rlocks, semaphores and conditions share acquire/release/hold/with:
 * those methods carry their type as an upvalue.
 */
#include "lua/l_shared.h"

#include <limits.h>

#include "lauxlib.h"
#include "codec/codec.h"
#include "lua/l_object.h"
#include "lua/l_wait.h"
#include "core/clock.h"
#include "core/sync.h"

#define GUARD "parallel.guard"

/* ---- acquiring and releasing any lock-like object ---- */

static int acquire_try(void *ud, double deadline) {
  par_object *o = (par_object *)ud;
  if (o->type == &par_lock_type) return par_lock_acquire((par_lock *)o, deadline);
  if (o->type == &par_rlock_type) return par_rlock_acquire((par_rlock *)o, deadline);
  if (o->type == &par_semaphore_type)
    return par_semaphore_acquire((par_semaphore *)o, deadline);
  return acquire_try(((par_condition *)o)->lock, deadline);
}

/* The object whose acquire/release a lock-like object stands for. */
static par_object *lock_of(par_object *o) {
  return o->type == &par_condition_type ? ((par_condition *)o)->lock : o;
}

/* PAR_OK, PAR_TIMEOUT, or PAR_OWNER_DIED (acquired a lock whose holder's
 * process died holding it). */
static int acquire(lua_State *L, par_object *o, double timeout) {
  par_object *l = lock_of(o);
  int r;
  if (l->type == &par_lock_type && par_lock_try((par_lock *)l)) return PAR_OK;
  r = l_wait(L, timeout, acquire_try, l);
  if (r == PAR_INTERRUPTED) l_wait_raise(L);
  return r;
}

/* Releases o; returns an error message instead of raising, or NULL. A
 * condition's errors name the condition's lock: its user may have made no
 * lock at all (the default one is an rlock). */
static const char *release(par_object *o) {
  par_object *l = lock_of(o);
  int cond = l != o;
  if (l->type == &par_lock_type)
    return par_lock_release((par_lock *)l) == PAR_OK ? NULL
           : cond ? "condition's lock is not held" : "lock is not held";
  if (l->type == &par_rlock_type)
    return par_rlock_release((par_rlock *)l) == PAR_OK ? NULL
           : cond ? "condition's lock is not held by this thread"
                  : "rlock is not held by this thread";
  if (par_semaphore_release((par_semaphore *)l, 1) == PAR_OK) return NULL;
  return par_semaphore_bound((par_semaphore *)l) == LONG_MAX ? "semaphore value overflow"
                                                              : "semaphore released too many times";
}

static par_object *checklockish(lua_State *L) {
  const par_type *t = (const par_type *)lua_touserdata(L, lua_upvalueindex(1));
  return l_object_check(L, 1, t);
}

/* --> true | false on timeout | true, "owner died" (the process that held
 * it died holding it: what it guarded may be half-updated) */
static int l_lockish_acquire(lua_State *L) {
  par_object *o = checklockish(L);
  int r = acquire(L, o, l_opttimeout(L, 2));
  lua_pushboolean(L, r != PAR_TIMEOUT);
  if (r != PAR_OWNER_DIED) return 1;
  lua_pushliteral(L, "owner died");
  return 2;
}

static int l_lockish_release(lua_State *L) {
  const char *err = release(checklockish(L));
  if (err) return luaL_error(L, "%s", err);
  return 0;
}

static int l_lockish_locked(lua_State *L) {
  par_object *l = lock_of(checklockish(L));
  if (l->type == &par_lock_type) lua_pushboolean(L, par_lock_locked((par_lock *)l));
  else lua_pushboolean(L, par_rlock_locked((par_rlock *)l));
  return 1;
}

typedef struct guard {
  par_object *obj;   /* one reference; NULL once released */
} guard;

static int guard_close(lua_State *L) {
  guard *g = (guard *)luaL_checkudata(L, 1, GUARD);
  par_object *o = g->obj;
  const char *err;
  if (!o) return 0;
  g->obj = NULL;
  err = release(o);
  par_object_release(o);
  if (err) return luaL_error(L, "%s", err);
  return 0;
}

static int guard_gc(lua_State *L) {
  guard *g = (guard *)luaL_checkudata(L, 1, GUARD);
  if (g->obj) par_object_release(g->obj);
  g->obj = NULL;
  return 0;
}

static int l_lockish_hold(lua_State *L) {
  par_object *o = checklockish(L);
  guard *g = (guard *)lua_newuserdatauv(L, sizeof *g, 0);
  g->obj = NULL;
  luaL_setmetatable(L, GUARD);
  acquire(L, o, -1);
  g->obj = par_object_retain(o);
  return 1;
}

static int l_lockish_with(lua_State *L) {
  par_object *o = checklockish(L);
  const char *err;
  int status;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  acquire(L, o, -1);
  par_object_retain(o);   /* fn may close the proxy */
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  err = release(o);
  par_object_release(o);
  if (status != LUA_OK) return lua_error(L);
  if (err) return luaL_error(L, "%s", err);
  return lua_gettop(L) - 1;
}

/* ---- lock, rlock ---- */

static int l_lock_new(lua_State *L) {
  par_lock *l = par_lock_new();
  if (!l) return luaL_error(L, "not enough memory");
  l_object_push(L, &l->hdr);
  return 1;
}

static int l_rlock_new(lua_State *L) {
  par_rlock *r = par_rlock_new();
  if (!r) return luaL_error(L, "not enough memory");
  l_object_push(L, &r->hdr);
  return 1;
}

/* ---- semaphore ---- */

static par_semaphore *checksemaphore(lua_State *L) {
  return (par_semaphore *)l_object_check(L, 1, &par_semaphore_type);
}

static int semaphore_new(lua_State *L, int bounded) {
  lua_Integer n = luaL_optinteger(L, 1, 1);
  par_semaphore *s;
  luaL_argcheck(L, n >= 0, 1, "value must be non-negative");
  s = par_semaphore_new((long)n, bounded ? (long)n : LONG_MAX);
  if (!s) return luaL_error(L, "not enough memory");
  l_object_push(L, &s->hdr);
  return 1;
}

static int l_semaphore_new(lua_State *L) { return semaphore_new(L, 0); }

/* parallel.bounded_semaphore(n): release past n raises */
static int l_bounded_semaphore_new(lua_State *L) { return semaphore_new(L, 1); }

static int l_semaphore_release(lua_State *L) {
  par_semaphore *s = checksemaphore(L);
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 1, 2, "count must be positive");
  if (par_semaphore_release(s, (long)k) != PAR_OK) {
    if (par_semaphore_bound(s) == LONG_MAX) return luaL_error(L, "semaphore value overflow");
    return luaL_error(L, "semaphore released too many times (bounded at %I)",
                      (lua_Integer)par_semaphore_bound(s));
  }
  return 0;
}

static int l_semaphore_bounded(lua_State *L) {
  lua_pushboolean(L, par_semaphore_bound(checksemaphore(L)) != LONG_MAX);
  return 1;
}

static int l_semaphore_value(lua_State *L) {
  lua_pushinteger(L, par_semaphore_value(checksemaphore(L)));
  return 1;
}

/* ---- condition ---- */

static par_condition *checkcondition(lua_State *L) {
  return (par_condition *)l_object_check(L, 1, &par_condition_type);
}

static int l_condition_new(lua_State *L) {
  par_object *lock = NULL;
  par_condition *c;
  if (!lua_isnoneornil(L, 1)) {
    lock = l_object_test(L, 1);
    if (!lock || (lock->type != &par_lock_type && lock->type != &par_rlock_type))
      return luaL_typeerror(L, 1, "parallel.lock or parallel.rlock");
    par_object_retain(lock);
  } else {
    par_rlock *r = par_rlock_new();
    if (!r) return luaL_error(L, "not enough memory");
    lock = &r->hdr;
  }
  c = par_condition_new(lock);
  par_object_release(lock);   /* the condition holds its own reference */
  if (!c) return luaL_error(L, "not enough memory");
  l_object_push(L, &c->hdr);
  return 1;
}

typedef struct cond_op {
  par_condition *c;
  par_cond_waiter w;
} cond_op;

static int cond_try(void *ud, double deadline) {
  cond_op *op = (cond_op *)ud;
  return par_condition_wait(op->c, &op->w, deadline);
}

typedef struct restore_op {
  par_rlock *r;
  long depth;
} restore_op;

static int restore_try(void *ud, double deadline) {
  restore_op *op = (restore_op *)ud;
  return par_rlock_restore(op->r, op->depth, deadline);
}

static int l_condition_wait(lua_State *L) {
  cond_op op;
  double timeout = l_opttimeout(L, 2);
  par_object *lock;
  restore_op ro;
  long depth = 0;
  int r, notified;
  op.c = checkcondition(L);
  lock = op.c->lock;
  if (lock->type == &par_lock_type) {
    if (!par_lock_locked((par_lock *)lock))
      return luaL_error(L, "condition's lock is not held (acquire the condition before waiting)");
  } else if (!par_rlock_owned((par_rlock *)lock)) {
    return luaL_error(L, "condition's lock is not held by this thread "
                         "(acquire the condition before waiting)");
  }
  /* Listed before the lock is released, so no notify can slip between. */
  par_condition_enlist(op.c, &op.w);
  if (lock->type == &par_lock_type) par_lock_release((par_lock *)lock);
  else depth = par_rlock_release_all((par_rlock *)lock);
  r = l_wait(L, timeout, cond_try, &op);
  notified = par_condition_delist(op.c, &op.w);
  ro.r = (par_rlock *)lock;
  ro.depth = depth;
  if (r == PAR_INTERRUPTED) {
    /* Take the lock back before raising, as the caller's guard or `with`
     * will release it; whoever holds it now is not waiting for us. */
    if (lock->type == &par_lock_type) par_lock_acquire((par_lock *)lock, PAR_FOREVER);
    else par_rlock_restore(ro.r, depth, PAR_FOREVER);
    return l_wait_raise(L);
  }
  r = l_wait(L, -1, lock->type == &par_lock_type ? acquire_try : restore_try,
             lock->type == &par_lock_type ? (void *)lock : (void *)&ro);
  if (r != PAR_OK && r != PAR_OWNER_DIED) return l_wait_raise(L);
  lua_pushboolean(L, notified);
  return 1;
}

static int l_condition_notify(lua_State *L) {
  par_condition *c = checkcondition(L);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, n >= 0, 2, "count must be non-negative");
  if (n > 0) par_condition_notify(c, (long)n);
  return 0;
}

static int l_condition_notify_all(lua_State *L) {
  par_condition_notify(checkcondition(L), -1);
  return 0;
}

/* ---- event ---- */

static par_event *checkevent(lua_State *L) {
  return (par_event *)l_object_check(L, 1, &par_event_type);
}

static int l_event_new(lua_State *L) {
  par_event *e = par_event_new();
  if (!e) return luaL_error(L, "not enough memory");
  l_object_push(L, &e->hdr);
  return 1;
}

static int l_event_set(lua_State *L) {
  par_event_set(checkevent(L));
  return 0;
}

static int l_event_clear(lua_State *L) {
  par_event_clear(checkevent(L));
  return 0;
}

static int l_event_is_set(lua_State *L) {
  lua_pushboolean(L, par_event_is_set(checkevent(L)));
  return 1;
}

static int event_try(void *ud, double deadline) {
  return par_event_wait((par_event *)ud, deadline);
}

static int l_event_wait(lua_State *L) {
  par_event *e = checkevent(L);
  double timeout = l_opttimeout(L, 2);
  int r = par_event_is_set(e) ? PAR_OK : l_wait(L, timeout, event_try, e);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  lua_pushboolean(L, r == PAR_OK);
  return 1;
}

/* ---- barrier ---- */

static par_barrier *checkbarrier(lua_State *L) {
  return (par_barrier *)l_object_check(L, 1, &par_barrier_type);
}

/* parallel.barrier(n [, action]) */
static int l_barrier_new(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  par_msg *action = NULL;
  par_barrier *b;
  luaL_argcheck(L, n >= 1, 1, "parties must be positive");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    action = codec_encode(L, 2, 1, "action", 0);
  }
  b = par_barrier_new((long)n, action);
  if (!b) return luaL_error(L, "not enough memory");
  l_object_push(L, &b->hdr);
  return 1;
}

typedef struct barrier_op {
  par_barrier *b;
  par_barrier_waiter w;
  long index;
} barrier_op;

static int arrive_try(void *ud, double deadline) {
  barrier_op *op = (barrier_op *)ud;
  return par_barrier_arrive(op->b, &op->w, &op->index, deadline);
}

static int barrier_try(void *ud, double deadline) {
  barrier_op *op = (barrier_op *)ud;
  return par_barrier_wait(op->b, &op->w, deadline);
}

static int run_action(lua_State *L) {
  par_barrier *b = (par_barrier *)lua_touserdata(L, 1);
  codec_decode(L, b->action);
  lua_call(L, lua_gettop(L) - 2, 0);
  return 0;
}

static int barrier_result(lua_State *L, int r, long index) {
  if (r == PAR_OK) {
    lua_pushinteger(L, index);
    return 1;
  }
  lua_pushnil(L);
  if (r == PAR_ERROR) lua_pushliteral(L, "broken");
  else lua_pushliteral(L, "timeout");
  return 2;
}

/* barrier:wait([timeout]) --> arrival index | nil, "timeout" | nil, "broken" */
static int l_barrier_wait(lua_State *L) {
  barrier_op op;
  double timeout = l_opttimeout(L, 2), deadline = par_deadline(timeout);
  int r;
  op.b = checkbarrier(L);
  op.index = 0;
  lua_settop(L, 2);
  l_hold(L, &op.b->hdr);        /* the action may close this handle */
  r = l_wait(L, timeout, arrive_try, &op);
  if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  if (r != PAR_OK) return barrier_result(L, r, 0);
  if (op.index == op.b->parties) {
    if (op.b->action) {
      /* This party runs the action; the others wait for its end. */
      int status;
      lua_pushcfunction(L, run_action);
      lua_pushlightuserdata(L, op.b);
      status = lua_pcall(L, 1, 0, 0);
      par_barrier_end_round(op.b, status == LUA_OK);
      if (status != LUA_OK) {
        l_hold_end(L, 3);       /* the error value stays on top */
        return lua_error(L);
      }
    }
    l_hold_end(L, 3);
    return barrier_result(L, PAR_OK, op.index);
  }
  if (timeout >= 0) {
    timeout = deadline - par_now();
    if (timeout < 0) timeout = 0;
  }
  r = l_wait(L, timeout, barrier_try, &op);
  if (r == PAR_TIMEOUT || r == PAR_INTERRUPTED) {
    int w = par_barrier_withdraw(op.b, &op.w);
    if (w != PAR_TIMEOUT) r = w;   /* the round ended meanwhile */
    else if (r == PAR_INTERRUPTED) return l_wait_raise(L);
  }
  l_hold_end(L, 3);
  return barrier_result(L, r, op.index);
}

static int l_barrier_abort(lua_State *L) {
  par_barrier_abort(checkbarrier(L));
  return 0;
}

static int l_barrier_reset(lua_State *L) {
  par_barrier_reset(checkbarrier(L));
  return 0;
}

static int l_barrier_waiting(lua_State *L) {
  lua_pushinteger(L, par_barrier_waiting(checkbarrier(L)));
  return 1;
}

static int l_barrier_broken(lua_State *L) {
  lua_pushboolean(L, par_barrier_broken(checkbarrier(L)));
  return 1;
}

static int l_barrier_parties(lua_State *L) {
  lua_pushinteger(L, checkbarrier(L)->parties);
  return 1;
}

/* ---- registration ---- */

static const luaL_Reg lockish_methods[] = {
  {"acquire", l_lockish_acquire},
  {"release", l_lockish_release},
  {"hold", l_lockish_hold},
  {"with", l_lockish_with},
  {NULL, NULL}
};

static const luaL_Reg lock_methods[] = {
  {"locked", l_lockish_locked},
  {NULL, NULL}
};

static const luaL_Reg semaphore_methods[] = {
  {"release", l_semaphore_release},
  {"value", l_semaphore_value},
  {"bounded", l_semaphore_bounded},
  {NULL, NULL}
};

static const luaL_Reg condition_methods[] = {
  {"locked", l_lockish_locked},
  {"wait", l_condition_wait},
  {"notify", l_condition_notify},
  {"notify_all", l_condition_notify_all},
  {NULL, NULL}
};

static const luaL_Reg event_methods[] = {
  {"set", l_event_set},
  {"clear", l_event_clear},
  {"is_set", l_event_is_set},
  {"wait", l_event_wait},
  {NULL, NULL}
};

static const luaL_Reg barrier_methods[] = {
  {"wait", l_barrier_wait},
  {"parties", l_barrier_parties},
  {"abort", l_barrier_abort},
  {"reset", l_barrier_reset},
  {"broken", l_barrier_broken},
  {"waiting", l_barrier_waiting},
  {NULL, NULL}
};

static const luaL_Reg guard_meta[] = {
  {"__close", guard_close},
  {"__gc", guard_gc},
  {NULL, NULL}
};

static const luaL_Reg constructors[] = {
  {"lock", l_lock_new},
  {"rlock", l_rlock_new},
  {"semaphore", l_semaphore_new},
  {"bounded_semaphore", l_bounded_semaphore_new},
  {"condition", l_condition_new},
  {"event", l_event_new},
  {"barrier", l_barrier_new},
  {NULL, NULL}
};

/* A lock-like type: the shared methods with the type as upvalue, then its
 * own (which may override them, like semaphore's release). */
static void lockish_meta(lua_State *L, const par_type *t, const luaL_Reg *own) {
  l_object_newmeta(L, t, NULL, NULL);
  luaL_getmetatable(L, t->name);
  lua_getfield(L, -1, "__index");
  l_object_pushupvalues(L, t);
  luaL_setfuncs(L, lockish_methods, L_OBJECT_NUPVALUES);
  l_object_pushupvalues(L, t);
  luaL_setfuncs(L, own, L_OBJECT_NUPVALUES);
  lua_pop(L, 2);
}

void l_sync_open(lua_State *L) {
  lockish_meta(L, &par_lock_type, lock_methods);
  lockish_meta(L, &par_rlock_type, lock_methods);
  lockish_meta(L, &par_semaphore_type, semaphore_methods);
  lockish_meta(L, &par_condition_type, condition_methods);
  l_object_newmeta(L, &par_event_type, event_methods, NULL);
  l_object_newmeta(L, &par_barrier_type, barrier_methods, NULL);
  luaL_newmetatable(L, GUARD);
  luaL_setfuncs(L, guard_meta, 0);
  lua_pop(L, 1);
  luaL_setfuncs(L, constructors, 0);
}
