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
out("ranks", mpi.size() - 1, "")
pool:shutdown()
