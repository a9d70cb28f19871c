-- The figures that depend on how threads wait: round trip, submit all then
-- get, a queue (single items and batches), a lock counter; each with the
-- waiting policy as built ("spin") and with spinning turned off
-- (parallel.waiting{spin = false}, "block"), in ROUNDS interleaved rounds in this one process (the order of
-- the two alternates), each figure the median of its rounds. Run by
-- bench/load.lua quiet and under load. Prints "name<TAB>value<TAB>unit"
-- lines. Standalone: lua5.4 bench/waits.lua
local bench = dofile("bench/common.lua")
local parallel, now, median = bench.parallel, bench.now, bench.median

local ROUNDS = tonumber(os.getenv("BENCH_WAITS_ROUNDS")) or 9
local pool = parallel.pool(2)
local function inc(x) return x + 1 end
pool:map(inc, { 1, 2, 3, 4 })

local measures = {}

-- One submit -> get at a time: the median call, as bench/python/roundtrip.py.
measures.roundtrip = function()
  local M = 300
  local samples = {}
  for i = 1, M do
    local t0 = now()
    pool:submit(inc, i):get()
    samples[i] = now() - t0
  end
  return median(samples) * 1e6, "us"
end

-- Submit all, then get each.
measures.submit_all = function()
  local N = 3000
  local t0 = now()
  local fs = {}
  for i = 1, N do fs[i] = pool:submit(inc, i) end
  for i = 1, N do fs[i]:get() end
  return (now() - t0) / N * 1e6, "us/task"
end

-- Integers from one pool worker to this thread (bench.queue_rate): one
-- push and one pop each through a queue of capacity 1024; and 1000-item
-- push_all / pop_many(1000) batches through one of capacity 65536.
local function in_pool(fn, ...) return pool:submit(fn, ...) end
measures.queue = function()
  return bench.queue_rate(in_pool, 30000, 0, 1024) / 1e6, "M items/s"
end
measures.queue_batch = function()
  return bench.queue_rate(in_pool, 300000, 1000, 1 << 16) / 1e6, "M items/s"
end

-- Two pool workers x n locked get/set of one counter (bench.counter_time).
measures.lock_counter = function()
  local n = 10000
  local t = bench.counter_time(in_pool, n, function(v, l, n)
    for _ = 1, n do l:acquire(); v:set(v:get() + 1); l:release() end
  end)
  return t / (2 * n) * 1e9, "ns/op"
end

local names = { "roundtrip", "submit_all", "queue", "queue_batch", "lock_counter" }
local got, units = {}, {}
for _, k in ipairs(names) do got[k] = { spin = {}, block = {} } end
for r = 1, ROUNDS do
  local order = r % 2 == 1 and { "spin", "block" } or { "block", "spin" }
  for _, mode in ipairs(order) do
    parallel.waiting({ spin = mode == "spin" })
    for _, k in ipairs(names) do
      local v, unit = measures[k]()
      local t = got[k][mode]
      t[#t + 1] = v
      units[k] = unit
    end
  end
end
parallel.waiting({ spin = true })
for _, k in ipairs(names) do
  for _, mode in ipairs({ "spin", "block" }) do
    io.write(("%s_%s\t%.6g\t%s\n"):format(k, mode, median(got[k][mode]), units[k]))
  end
end
local w = parallel.waiting()
io.write(("spins\t%d\tspins begun (pool %d, future %d, queue %d, lock %d)\n"):format(
  w.spins.pool + w.spins.future + w.spins.queue + w.spins.lock,
  w.spins.pool, w.spins.future, w.spins.queue, w.spins.lock))
pool:shutdown()
