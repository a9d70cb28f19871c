/*
 * Interrupting a worker's Lua code wherever it runs. A debug hook belongs
 * to one Lua thread, so the hook that stops a task must be set on the
 * thread that is running: the worker's main thread or a coroutine it
 * resumed, nested to any depth. Worker states get their own
 * coroutine.resume and coroutine.wrap, which keep the chain of threads
 * being resumed; the interrupt (a signal handler on the worker's OS
 * thread, see core/pool.c) hooks every thread of that chain, saving the
 * hook each had. A user's own hook comes back once the task ends (main
 * thread) or once the resume that was interrupted returns (coroutine).
 *
 * Everything here runs on the worker's thread; the chain is written by
 * the resume code and read by the signal handler, which interrupts it at
 * any point: an entry is filled before the depth counts it.
 *
 * Not reached: code resumed by a C library calling lua_resume itself, and
 * a pure-Lua endless loop inside a __gc finalizer (Lua turns hooks off
 * during finalizers). Blocking calls of this module are interrupted in
 * both, since they watch the interrupt flag.
 */
#ifndef PAR_L_INTERRUPT_H
#define PAR_L_INTERRUPT_H

#include <signal.h>
#include "lua.h"

#define L_INTERRUPT_CHAIN 200   /* Lua's own limit of nested C calls */

typedef struct l_saved_hook {
  lua_State *L;
  lua_Hook hook;
  int mask, count;
  volatile sig_atomic_t hooked;   /* the interrupt replaced its hook */
} l_saved_hook;

typedef struct l_interrupt {
  _Atomic int *flag;              /* the pool's flag for this worker */
  l_saved_hook main;
  l_saved_hook chain[L_INTERRUPT_CHAIN];
  volatile sig_atomic_t depth;    /* resumes in progress (may exceed the chain) */
} l_interrupt;

void l_interrupt_init(l_interrupt *in, lua_State *L, _Atomic int *flag);
/* In protected mode: replaces coroutine.resume and coroutine.wrap of L. */
void l_interrupt_open(lua_State *L, l_interrupt *in);
/* Async-signal-safe: hooks every running thread so that it raises. */
void l_interrupt_now(l_interrupt *in);
/* After the interrupted code ended: the main thread's hook as it was. */
void l_interrupt_clear(l_interrupt *in);
/* Before each task: under ThreadSanitizer, which holds signals back while a
 * Lua loop runs, a count hook polls the flag instead. */
void l_interrupt_arm(l_interrupt *in);

#endif
