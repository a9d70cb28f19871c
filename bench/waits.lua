-- The figures that depend on how threads wait, measured once each in a
-- fresh process (so PARALLEL_SPIN in its environment applies): run by
-- bench/load.lua, quiet and under load, with spinning and without.
-- Prints "name<TAB>value<TAB>unit" lines. Standalone: lua5.4 bench/waits.lua
if not package.searchpath("parallel.core", package.cpath) then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local parallel = require "parallel"
local now = parallel.now

local function report(name, value, unit)
  io.write(("%s\t%.6g\t%s\n"):format(name, value, unit))
  io.flush()
end

local pool = parallel.pool(2)
local function inc(x) return x + 1 end
pool:map(inc, { 1, 2, 3, 4 })

do -- one submit -> get at a time: the median call, as bench/python/roundtrip.py
  local M = 1000
  for i = 1, 100 do pool:submit(inc, i):get() end
  local samples = {}
  for i = 1, M do
    local t0 = now()
    pool:submit(inc, i):get()
    samples[i] = now() - t0
  end
  table.sort(samples)
  report("roundtrip", samples[M // 2] * 1e6, "us")
end

do -- submit all, then get each
  local N = 10000
  local t0 = now()
  local fs = {}
  for i = 1, N do fs[i] = pool:submit(inc, i) end
  for i = 1, N do fs[i]:get() end
  report("submit_all", (now() - t0) / N * 1e6, "us/task")
end

do -- integers from one producer thread to this one, queue of capacity 1024
  local n = 100000
  local q, go = parallel.queue(1024), parallel.event()
  local f = parallel.spawn(function(q, go, n)
    go:wait()
    for i = 1, n do q:push(i) end
    q:close()
  end, q, go, n)
  local t0 = now()
  go:set()
  local count = 0
  for _ in q:items() do count = count + 1 end
  local t = now() - t0
  f:get()
  assert(count == n)
  report("queue", n / t / 1e6, "M items/s")
end

do -- 2 threads x n locked get/set of one counter
  local n = 50000
  local v, l, start = parallel.value("int64", 0), parallel.lock(), parallel.barrier(3)
  local fs = {}
  for t = 1, 2 do
    fs[t] = pool:submit(function(v, l, start, n)
      start:wait()
      for _ = 1, n do l:acquire(); v:set(v:get() + 1); l:release() end
    end, v, l, start, n)
  end
  start:wait()
  local t0 = now()
  for t = 1, 2 do fs[t]:get() end
  local t = now() - t0
  assert(v:get() == 2 * n)
  report("lock_counter", t / (2 * n) * 1e9, "ns/op")
end

pool:shutdown()
if os.getenv("BENCH_WAITS_DEBUG") then
  local w = parallel.waiting()
  io.stderr:write(("spin %s runnable %d machine %s spins pool %d future %d queue %d lock %d\n"):format(
    tostring(w.spin), w.runnable, tostring(w.machine_runnable), w.spins.pool, w.spins.future, w.spins.queue, w.spins.lock))
end
