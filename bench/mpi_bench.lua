-- make bench-mpi: the MPI backend's costs, run on rank 0 of an MPI job
-- (tools/mpi-bench.sh starts it, then the same work with mpi4py.futures).
-- Prints name<TAB>value<TAB>unit lines. One worker thread per other rank,
-- as mpi4py.futures has one worker process per other rank.
local bench = dofile("bench/common.lua")
local parallel, best_of = bench.parallel, bench.best_of
local mpi = require "parallel.mpi"

local pool = parallel.pool { backend = "mpi", workers = 1, depth = tonumber(os.getenv("MPI_BENCH_DEPTH")) }
local function out(name, v, unit) print(string.format("%s\t%.3f\t%s", name, v, unit)) end
local inc = function(x) return x + 1 end
pool:map(inc, { 1, 2, 3, 4 }, { chunksize = 1 })   -- warm: every rank has the function

local N = tonumber(os.getenv("MPI_BENCH_TASKS") or 20000)
local t = best_of(3, function()
  local fs = {}
  for i = 1, N do fs[i] = pool:submit(inc, i) end
  for i = 1, N do fs[i]:get() end
end)
out("submit_all", t / N * 1e6, "us/task")

local R = 2000
t = best_of(3, function()
  for i = 1, R do pool:submit(inc, i):get() end
end)
out("roundtrip", t / R * 1e6, "us")

local M = 200000
local list = {}
for i = 1, M do list[i] = i end
t = best_of(3, function() pool:map(inc, list) end)
out("map", t / M * 1e6, "us/item")

local big = {}
for i = 1, 1000000 do big[i] = i * 0.5 end
local len = function(v) return #v end
t = best_of(3, function() assert(pool:submit(len, big):get() == 1000000) end)
out("big_table", t * 1e3, "ms")

-- Tasks that take d seconds of wall time each (a worker spins on the
-- clock). task_D: throughput per worker as a share of the task's own rate
-- 1/d; busy_D: the share of the time the workers were in a task (each task
-- reports how long it ran, preemptions included). busy near 100% means the
-- workers never waited for the next task: throughput is limited by the task
-- (and by how much CPU the machine gives it), not by the round trip; the
-- gap between the two is the task's own slowdown on busy cores. _d1 and
-- _d32: the same at depth 1 (every task waits for a round trip) and 32;
-- _threads: a thread pool of as many workers on rank 0, for scale.
local spin = function(d)
  local now = require("parallel").now
  local t0 = now()
  while now() < t0 + d do end
  return now() - t0
end
local function task_rate(p, w, d, n)
  local best, busy = math.huge, 0
  for _ = 1, 2 do
    local fs, ran = {}, 0
    local t0 = parallel.now()
    for i = 1, n do fs[i] = p:submit(spin, d) end
    for i = 1, n do ran = ran + fs[i]:get() end
    local el = parallel.now() - t0
    if el < best then best, busy = el, ran / (el * w) * 100 end
  end
  return n / best / w * d * 100, busy
end
local W = pool:stats().workers
local pools = {
  { "", pool },
  { "_d1", parallel.pool { backend = "mpi", workers = 1, depth = 1 } },
  { "_d32", parallel.pool { backend = "mpi", workers = 1, depth = 32 } },
  { "_threads", parallel.pool(W) },
}
for i = 2, #pools do pools[i][2]:map(inc, { 1, 2, 3, 4 }, { chunksize = 1 }) end
for _, c in ipairs { { "100us", 100e-6, 4000 }, { "1ms", 1e-3, 600 } } do
  for _, p in ipairs(pools) do
    local rate, busy = task_rate(p[2], W, c[2], c[3])
    out("task_" .. c[1] .. p[1], rate, "% of 1/d")
    out("busy_" .. c[1] .. p[1], busy, "%")
  end
end
for i = 2, #pools do pools[i][2]:shutdown() end
out("ranks", mpi.size() - 1, "")
pool:shutdown()
