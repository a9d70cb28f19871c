/*
 * Why an encode fails: "cannot send <what> at <path>: <what to do>". The
 * path is the encode's stack of parts (args[2].list[3]); the hint depends
 * on where the value was going (a task, or another thread's queue, dict or
 * future). Every failure first drops what the encode's buffer holds.
 */
#include <string.h>

#include "lauxlib.h"
#include "codec/internal.h"
#include "lua/l_object.h"

/* Ends the encode's hold on its buffer, dropping what it holds (the
 * encode raises next). */
void codec_enc_drop(enc *e) {
  par_buf_reset(e->b);
  e->buf->busy = 0;
}


#define PATH_SHOWN 6

/* Raises "cannot send <what> at <path>", then ": <hint>" (what to do)
 * when hint is not NULL. */
static void fail_hint(enc *e, const char *what, const char *hint) {
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
    /* a path a thousand levels deep (a linked list) would fill the
     * screen: its first and last parts tell where it is */
    if (e->depth > 2 * PATH_SHOWN && i == PATH_SHOWN) {
      lua_pushfstring(L, "...(%d levels)...", e->depth - 2 * PATH_SHOWN);
      luaL_addvalue(&B);
      i = e->depth - PATH_SHOWN - 1;
      continue;
    }
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
  if (hint) {
    luaL_addstring(&B, ": ");
    luaL_addstring(&B, hint);
  }
  luaL_pushresult(&B);
  codec_enc_drop(e);
  lua_error(L);
}

void codec_enc_fail(enc *e, const char *what) {
  fail_hint(e, what, NULL);
}

void codec_enc_fail_deep(enc *e) {
  lua_pushfstring(e->L, "more than %d levels of tables (a cycle is fine, a chain that long is not);"
                  " send it flatter (a list of nodes that name each other by index) or in parts",
                  MAX_DEPTH);
  fail_hint(e, "value nested too deep", lua_tostring(e->L, -1));
}

/*
 * A value that stays in its own Lua state: the error says what it is,
 * where, and what to do instead, which depends on where the value was
 * going (a task, or another thread's queue, dict or future).
 */
void codec_enc_fail_local(enc *e, int idx) {
  lua_State *L = e->L;
  const char *what, *hint;
  int task = e->task;
  switch (lua_type(L, idx)) {
    case LUA_TTHREAD:
      what = "thread";
      hint = task ? "a coroutine cannot travel; create it inside the task"
                  : "a coroutine cannot travel; create it in the thread that uses it";
      break;
    case LUA_TFUNCTION:
      /* coroutine.wrap's function: a C closure whose one upvalue is the
       * coroutine */
      if (lua_getupvalue(L, idx, 1) != NULL) {
        int co = lua_type(L, -1) == LUA_TTHREAD && lua_getupvalue(L, idx, 2) == NULL;
        lua_pop(L, 1);
        if (co) {
          what = "coroutine.wrap function";
          hint = task ? "a coroutine cannot travel; create it inside the task"
                      : "a coroutine cannot travel; create it in the thread that uses it";
          break;
        }
      }
      what = "C function";
      hint = task ? "only C functions of loaded modules travel (by name); "
                    "get it inside the task (require its module there)"
                  : "only C functions of loaded modules travel (by name); "
                    "get it in the thread that uses it";
      break;
    case LUA_TLIGHTUSERDATA:
      what = "light userdata";
      hint = "a C pointer is valid only in its own Lua state; send the data it points to";
      break;
    case LUA_TUSERDATA:
      if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
        what = lua_pushfstring(L, "userdata (%s)", lua_tostring(L, -1));
      else
        what = "userdata";
      hint = task ? "open or create it inside the task or in the pool's init"
                  : "open or create it in the thread that uses it";
      if (l_object_test_closed(L, idx))
        hint = "it was closed (close, __close or __gc) before it was sent; send it while it is open";
      else if (strcmp(what, "userdata (FILE*)") == 0)
        hint = task ? "open it inside the task or in the pool's init"
                    : "open it in the thread that uses it";
      break;
    default:
      what = luaL_typename(L, idx);
      hint = NULL;
      break;
  }
  /* a task's error value: the worker says what it was instead */
  if (!task && strcmp(e->root, "error") == 0) hint = NULL;
  fail_hint(e, what, hint);
}

void codec_enc_nomem(enc *e) {
  codec_enc_drop(e);
  luaL_error(e->L, "not enough memory");
}
