rockspec_format = "3.0"
package = "parallel"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/lua-parallel/parallel.git",
   tag = "v0.1.0",
}
description = {
   summary = "Thread pools, futures, queues and shared memory for Lua 5.4",
   detailed = [[
Python-style concurrent.futures and multiprocessing for Lua 5.4 on POSIX threads:
pools with submit/map/imap, futures, queues and pipes, locks and events, shared
arrays and dicts. Each worker runs its own lua_State; values are copied between
them. The C core can also be linked statically into a host that embeds Lua
(include/parallel.h).
]],
   homepage = "https://github.com/lua-parallel/parallel",
   license = "MIT",
   labels = { "concurrency", "threads", "parallel" },
}
-- Linux only: the code uses eventfd, sched_getaffinity and clock_nanosleep.
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.4, < 5.5",
}
-- The Makefile builds parallel.core from src/core, src/codec, src/wire, src/process and src/lua with
-- -std=c11 -pthread -fvisibility=hidden and the include dirs (src/, include/,
-- Lua's); `make install` puts parallel/core.so in LIBDIR (and beside it
-- parallel/parallel-worker, the program process pools start) and the facade
-- (lua/parallel/init.lua as `parallel`, lua/parallel/progress.lua as
-- `parallel.progress`) in LUADIR. The builtin backend cannot pass -std or
-- -pthread per module, hence make. BUILD keeps the rock's objects apart from
-- a developer's build/.
-- `luarocks test` runs the busted suite (spec/).
test = {
   type = "busted",
}
build = {
   type = "make",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      BUILD = "build/rock",
   },
   install_variables = {
      BUILD = "build/rock",
      PREFIX = "$(PREFIX)",
      LUA_LIBDIR = "$(LIBDIR)",
      LUA_SHAREDIR = "$(LUADIR)",
   },
}
