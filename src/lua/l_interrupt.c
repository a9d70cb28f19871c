#include "lua/l_interrupt.h"

#include <stdatomic.h>

#include "lauxlib.h"

static const char key_interrupt = 0;   /* registry: light userdata l_interrupt */

/*
 * ThreadSanitizer holds an asynchronous signal back until the thread calls
 * into instrumented code, which a Lua loop in the (uninstrumented) liblua
 * never does: under it, the interrupt signal would not arrive. There, and
 * only there, running code polls for interrupts with a count hook.
 */
#if defined(__SANITIZE_THREAD__)
#define PAR_POLL_INTERRUPTS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PAR_POLL_INTERRUPTS 1
#endif
#endif

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "interrupted");
}

static void hook_one(l_saved_hook *s) {
  if (s->hooked || !s->L) return;
  s->hook = lua_gethook(s->L);
  s->mask = lua_gethookmask(s->L);
  s->count = lua_gethookcount(s->L);
  s->hooked = 1;
  lua_sethook(s->L, interrupt_hook, LUA_MASKCOUNT, 1);
}

static void unhook_one(l_saved_hook *s) {
  if (!s->hooked) return;
  s->hooked = 0;
  lua_sethook(s->L, s->hook, s->mask, s->count);
}

void l_interrupt_now(l_interrupt *in) {
  int i, d = in->depth;
  hook_one(&in->main);
  for (i = 0; i < d && i < L_INTERRUPT_CHAIN; i++) hook_one(&in->chain[i]);
}

void l_interrupt_clear(l_interrupt *in) {
  unhook_one(&in->main);
}

#ifdef PAR_POLL_INTERRUPTS
static void poll_hook(lua_State *L, lua_Debug *ar) {
  l_interrupt *in;
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_interrupt);
  in = (l_interrupt *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (in && atomic_load(in->flag)) {
    l_interrupt_now(in);
    luaL_error(L, "interrupted");
  }
}
#endif

void l_interrupt_arm(l_interrupt *in) {
  in->depth = 0;
#ifdef PAR_POLL_INTERRUPTS
  if (!lua_gethook(in->main.L)) lua_sethook(in->main.L, poll_hook, LUA_MASKCOUNT, 10000);
#endif
}

/* Resumes co with the narg values on top of L, co counted in the chain
 * while it runs. Returns the number of results moved to L, or -1 with the
 * error on top. */
static int resume_tracked(lua_State *L, lua_State *co, int narg, l_interrupt *in) {
  int status, nres, d = in->depth;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
#ifdef PAR_POLL_INTERRUPTS
  if (!lua_gethook(co)) lua_sethook(co, poll_hook, LUA_MASKCOUNT, 10000);
#endif
  if (d < L_INTERRUPT_CHAIN) {
    in->chain[d].L = co;
    in->chain[d].hooked = 0;
  }
  in->depth = d + 1;               /* from here on, an interrupt hooks co */
  if (atomic_load(in->flag)) {     /* the interrupt came before: do not start */
    in->depth = d;
    return luaL_error(L, "interrupted");
  }
  lua_xmove(L, co, narg);
  status = lua_resume(co, L, narg, &nres);
  in->depth = d;
  if (d < L_INTERRUPT_CHAIN) unhook_one(&in->chain[d]);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static lua_State *check_co(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return co;
}

/* coroutine.resume(co, ...) as Lua's, interruptible */
static int co_resume(lua_State *L) {
  lua_State *co = check_co(L);
  int r = resume_tracked(L, co, lua_gettop(L) - 1,
                         (l_interrupt *)lua_touserdata(L, lua_upvalueindex(1)));
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

/* The function coroutine.wrap returns: errors propagate, the coroutine's
 * to-be-closed variables are closed, a string error gets the position. */
static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_tracked(L, co, lua_gettop(L),
                         (l_interrupt *)lua_touserdata(L, lua_upvalueindex(2)));
  if (r < 0) {
    int status = lua_status(co);
    if (status != LUA_OK && status != LUA_YIELD) {
#if LUA_VERSION_RELEASE_NUM >= 50406
      status = lua_closethread(co, L);
#else
      status = lua_resetthread(co);
#endif
      lua_xmove(co, L, 1);
    }
    if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

/* coroutine.wrap(f) */
static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

void l_interrupt_init(l_interrupt *in, lua_State *L, _Atomic int *flag) {
  in->flag = flag;
  in->main.L = L;
  in->main.hooked = 0;
  in->depth = 0;
}

void l_interrupt_open(lua_State *L, l_interrupt *in) {
  lua_pushlightuserdata(L, in);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_interrupt);
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushlightuserdata(L, in);
    lua_pushcclosure(L, co_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_pushlightuserdata(L, in);
    lua_pushcclosure(L, co_wrap, 1);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 1);
}
