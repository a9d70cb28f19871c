-- Shared objects, measured: queue throughput, shared counters, a[i] access.
-- Prints lines "name<TAB>value<TAB>unit". Standalone: lua5.4 bench/shared_bench.lua

local bench = dofile("bench/common.lua")
local parallel, now, report = bench.parallel, bench.now, bench.report

-- Each figure is the best of ROUNDS runs, as in bench/run.lua (and the
-- Python side): one run is at the mercy of this shared machine's minute.
local ROUNDS = 3
local function best(better, fn)
  local b
  for _ = 1, ROUNDS do
    local x = fn()
    if not b or better(x, b) then b = x end
  end
  return b
end
local function higher(a, b) return a > b end
local function lower(a, b) return a < b end

-- One producer thread -> this thread (bench.queue_rate): single items
-- through a queue of capacity 1024, then 1000-item batches.
report("queue_int_items_per_s", best(higher, function()
  return bench.queue_rate(parallel.spawn, 200000, 0, 1024)
end), "items/s")
report("queue_int_batch_items_per_s", best(higher, function()
  return bench.queue_rate(parallel.spawn, 1000000, 1000, 1 << 16)
end), "items/s")
report("queue_table10_items_per_s", best(higher, function()
  return bench.queue_rate(parallel.spawn, 20000, 0, 1024, function(i)
    return {i, i + 1, i + 2, i + 3, i + 4, "a", "b", "c", true, 1.5}
  end)
end), "items/s")

-- 2 threads x n increments of one counter (bench.counter_time), in ms.
local function counter_ms(n, body)
  return bench.counter_time(parallel.spawn, n, body) * 1000
end

report("counter_atomic_add_2x200000", best(lower, function()
  return counter_ms(200000, function(v, _, n)
    for _ = 1, n do v:add(1) end
  end)
end), "ms")
report("counter_lock_get_set_2x200000", best(lower, function()
  return counter_ms(200000, function(v, l, n)
    for _ = 1, n do l:acquire(); v:set(v:get() + 1); l:release() end
  end)
end), "ms")

-- a[i] against a plain table, ns per access.
local N, R = 1000, 2000
local a, t = parallel.array("double", N), {}
for i = 1, N do t[i] = 0.0 end
local function per_access(fn)
  local t0 = now()
  fn()
  return (now() - t0) * 1e9 / (N * R)
end
report("array_read_ns", per_access(function()
  local x
  for _ = 1, R do for i = 1, N do x = a[i] end end
  return x
end), "ns")
report("array_write_ns", per_access(function()
  for _ = 1, R do for i = 1, N do a[i] = 1.5 end end
end), "ns")
report("table_read_ns", per_access(function()
  local x
  for _ = 1, R do for i = 1, N do x = t[i] end end
  return x
end), "ns")
report("table_write_ns", per_access(function()
  for _ = 1, R do for i = 1, N do t[i] = 1.5 end end
end), "ns")
