/*
 * parallel.h -- the C API of `parallel` for host applications that embed Lua 5.4.
 *
 * `parallel` is normally loaded by `require "parallel"`: the Lua facade
 * (lua/parallel/init.lua) requires the compiled core `parallel.core`. A host
 * that embeds Lua and links the core statically (build/libparallel.a, built by
 * `make`) uses this header to make both requires work in its own states and to
 * prepare the worker states the module creates.
 *
 * Opening the module in a host state
 *
 *     lua_State *L = luaL_newstate();
 *     luaL_openlibs(L);
 *     parallel_preload(L);                  // require "parallel.core" now works
 *     // put the directory holding parallel/init.lua on package.path, then:
 *     luaL_dostring(L, "parallel = require 'parallel'");
 *
 * or call luaopen_parallel_core directly (luaL_requiref(L, "parallel.core",
 * luaopen_parallel_core, 0)), as for any Lua C module.
 *
 * Worker states
 *
 * Every pool worker (and every parallel.spawn thread) runs in a lua_State of its
 * own, created by the module, never by the host. Each one is prepared in this
 * order:
 *   1. the standard libraries (luaL_openlibs);
 *   2. parallel.core, from this very binary (package.loaded and package.preload:
 *      no shared library is looked up, so static linking works);
 *   3. package.path and package.cpath copied from the state that created the
 *      pool;
 *   4. the state hook, if the host set one (parallel_set_state_hook);
 *   5. require "parallel" (the facade; its absence is not an error: tasks then
 *      see only the core);
 *   6. the pool's `init` function.
 * Only then does the worker run tasks. Because worker states are separate, the
 * C libraries a host registers in its main state (luaL_requiref, globals) are
 * not in them: register them again from the hook.
 *
 * Link with: libparallel.a -llua5.4 -pthread -lm (Lua 5.4, the same Lua that
 * the host uses: the module and the host must share one Lua runtime).
 */
#ifndef PARALLEL_H
#define PARALLEL_H

#include "lua.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PARALLEL_API __attribute__((visibility("default")))
#else
#define PARALLEL_API
#endif

/* The version of this API, also parallel.core._VERSION. */
#define PARALLEL_VERSION "0.1.0"

/*
 * The module's opener: pushes the `parallel.core` table and returns 1.
 * Usable with luaL_requiref or as a package.preload loader.
 */
PARALLEL_API int luaopen_parallel_core(lua_State *L);

/*
 * Puts luaopen_parallel_core into package.preload["parallel.core"] of L, so that
 * `require "parallel.core"` -- and `require "parallel"`, whose facade requires
 * it, when the facade's Lua source is on package.path -- work without a
 * parallel/core.so on package.cpath. L must have the package library open.
 * Leaves the stack as it found it. Worker states get the same preload on
 * their own; call this for the host's states.
 */
PARALLEL_API void parallel_preload(lua_State *L);

/*
 * A function the host wants run in every new worker state. It is called with
 * the worker's state and the `ud` given to parallel_set_state_hook, on the
 * worker's own thread, after the standard libraries and parallel.core are
 * open and package.path/cpath are set, and before the facade is required,
 * the pool's init runs and any task starts (see "Worker states" above).
 * Typical use: luaL_requiref the host's own C libraries, set globals, add
 * package.preload loaders (a facade compiled into the host, for instance).
 *
 * The hook runs in protected mode: a Lua error it raises makes that worker's
 * setup fail, and every task the worker then picks up fails with that error
 * message (as with a failing `init`). It may leave values on the stack; they
 * are discarded. It runs concurrently on several threads (one per worker
 * starting), so whatever `ud` points to must be safe to read from all of them.
 */
typedef void (*parallel_state_hook)(lua_State *L, void *ud);

/*
 * Sets the state hook (NULL removes it). It applies to worker states created
 * after the call, so set it before creating the pools it is meant for; the
 * states of workers already started are not revisited. Thread-safe; one hook
 * per process (the last one set wins).
 */
PARALLEL_API void parallel_set_state_hook(parallel_state_hook fn, void *ud);

/*
 * Process pools (parallel.pool{backend = "process"}) run their workers in
 * processes started from a worker executable: by default `parallel-worker`
 * installed beside parallel/core.so, or the program named by the
 * PARALLEL_WORKER environment variable. A host that links the core
 * statically can serve as its own worker executable instead (its workers
 * then get its state hook, hence its C libraries): call this first thing
 * in main, and return what it returns unless that is -1:
 *
 *     int main(int argc, char **argv) {
 *       int status = parallel_worker_main(argc, argv);
 *       if (status >= 0) return status;     // this process was a worker
 *       ...                                  // the host's own work
 *
 * It returns -1 at once when argv does not start a worker (and records that
 * this program can); in a worker it serves tasks until the pool ends and
 * returns the exit status.
 */
PARALLEL_API int parallel_worker_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
