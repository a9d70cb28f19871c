/*
 * Blocking from Lua. Core waits take an absolute deadline; l_wait calls
 * them in slices of at most 50 ms and, between slices, checks whether the
 * wait must stop: in the standalone interpreter's main state, Ctrl-C (its
 * SIGINT handler installs a hook); in a worker, an interrupt of the running
 * task or the shutdown of its pool.
 *
 * Usage:
 *   r = l_wait(L, timeout, try_fn, ud);
 *   if (r == PAR_INTERRUPTED) { release what you hold; l_wait_raise(L); }
 *
 * try_fn(ud, deadline) blocks until done or the deadline and returns PAR_OK
 * (or any status other than PAR_TIMEOUT) when finished, PAR_TIMEOUT when
 * the deadline passed.
 */
#ifndef PAR_L_WAIT_H
#define PAR_L_WAIT_H

#include "lua.h"

typedef int (*l_wait_fn)(void *ud, double deadline);

/* The optional timeout argument at idx: seconds, or -1 for forever (nil). */
double l_opttimeout(lua_State *L, int idx);

/* Returns try_fn's final status, PAR_TIMEOUT, or PAR_INTERRUPTED. */
int l_wait(lua_State *L, double timeout, l_wait_fn try_fn, void *ud);

/* Raises the pending interruption (lets the Ctrl-C hook fire). Never returns. */
int l_wait_raise(lua_State *L);

/* Nonzero when a wait in this state should stop now. */
int l_wait_should_stop(lua_State *L);

/* Per state (luaopen_parallel_core): learns how debug.sethook's hooks look. */
void l_wait_open(lua_State *L);

/* Done callbacks: the facade registers a hook (core._callback_hook) while
 * callbacks are pending in this state; every call that waits or polls for
 * futures (get, wait, waitset next, sleep, pool:completed) calls
 * l_wait_callbacks before and after it waits, which runs the hook. */
void l_wait_callbacks(lua_State *L);
int l_wait_set_callback_hook(lua_State *L);   /* core._callback_hook(fn | nil) */

/* Worker states register the flag that interrupts their current task. */
void l_wait_set_interrupt_flag(lua_State *L, _Atomic int *flag);

#endif
