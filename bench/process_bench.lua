-- make bench, the process backend: parallel.pool{backend = "process"} beside
-- the thread backend and Python's process pools, in the same run.
--   round trip       one submit -> get at a time
--   submit all       N submits of x + 1, then N gets, per task
--   map              map over 200,000 items, default chunks, per item
--   replacement      a worker that exits: from the crash to the next result
--                    (best of five in one pool; and a fresh pool's first crash)
-- Python: ProcessPoolExecutor and multiprocessing.Pool (apply_async().get(),
-- apply_async all then get, map), from bench/python/*.py.
local bench = dofile("bench/common.lua")
local parallel, now, best_of, python = bench.parallel, bench.now, bench.best_of, bench.python

local function inc(x) return x + 1 end

local function measure(pool, light)
  local r = {}
  pool:map(inc, { 1, 2, 3, 4 })
  local M = 2000
  r.roundtrip = best_of(3, function() for i = 1, M do pool:submit(inc, i):get() end end) / M * 1e6
  local N = 20000
  r.submit = best_of(3, function()
    local fs = {}
    for i = 1, N do fs[i] = pool:submit(inc, i) end
    for i = 1, N do fs[i]:get() end
  end) / N * 1e6
  if light then return r end
  local n, list = 200000, {}
  for i = 1, n do list[i] = i end
  r.map = best_of(3, function() pool:map(inc, list) end) / n * 1e6
  return r
end

local threads = parallel.pool(2)
local t = measure(threads)
threads:shutdown()

local procs = parallel.pool{ backend = "process", workers = 2 }
local p = measure(procs)
-- A worker that dies: the time from its crash to the next task's result on
-- a one-worker pool (the replacement starts, then runs it).
do
  local one = parallel.pool{ backend = "process", workers = 1 }
  one:apply(inc, 1)
  local best = math.huge
  for _ = 1, 5 do
    local f = one:submit(function() os.exit(1) end)
    f:wait()
    local t0 = now()
    one:apply(inc, 1)
    best = math.min(best, now() - t0)
  end
  p.replace = best * 1e3
  one:shutdown()
end
-- The first crash of a fresh pool (its slot's spare started with the first
-- task): the median of five pools.
do
  local ts = {}
  for i = 1, 5 do
    local one = parallel.pool{ backend = "process", workers = 1 }
    one:apply(inc, 1)
    parallel.sleep(0.05)         -- as a pool that has run a while: its spare is up
    one:submit(function() os.exit(1) end):wait()
    local t0 = now()
    one:apply(inc, 1)
    ts[i] = now() - t0
    one:shutdown()
  end
  table.sort(ts)
  p.first = ts[3] * 1e3
end
procs:shutdown()

local rt = python("roundtrip.py")
local so = python("submit_overhead.py")
local mo = python("map_overhead.py")

-- The same round trip and submit-all on a busy machine: one busy-loop
-- process per CPU beside this one (started and stopped here), in the same
-- run, against Python's process pools under the same load.
local busy = {}
do
  local np = io.popen("nproc")
  local ncpu = tonumber(np:read("l")) or 2
  np:close()
  local stop = bench.start_load(ncpu)
  local ok, err = pcall(function()
    busy.load = bench.loadavg_text()
    local tp = parallel.pool(2)
    busy.t = measure(tp, true)
    tp:shutdown()
    local pp = parallel.pool{ backend = "process", workers = 2 }
    busy.p = measure(pp, true)
    pp:shutdown()
    busy.rt = python("roundtrip.py")
    busy.so = python("submit_overhead.py")
    busy.ncpu = ncpu
  end)
  stop()
  if not ok then error(err, 0) end
end

local function fmt(v) return v and string.format("%10.2f", v) or string.format("%10s", "-") end
local function ratio(mine, theirs)
  return mine and theirs and mine > 0 and string.format("%5.1fx", theirs / mine) or "    -"
end
print(string.format("%-38s %10s %10s %10s %10s  %-8s %s", "2 workers", "process", "thread",
  "PPE", "mp.Pool", "unit", "process backend faster than PPE, mp.Pool"))
local rows = {
  { "one submit -> get round trip", p.roundtrip, t.roundtrip, rt.roundtrip_processpool,
    rt.roundtrip_multiprocessing, "us" },
  { "20000 submits, then gets, per task", p.submit, t.submit, so.submit_overhead_processpool,
    so.submit_overhead_multiprocessing, "us/task" },
  { "map over 200000 items, per item", p.map, t.map, mo.map_overhead_processpool,
    mo.map_overhead_multiprocessing, "us/item" },
  { "crashed worker: crash to next result", p.replace, nil, nil, nil, "ms" },
  { "a pool's first crash: to next result", p.first, nil, nil, nil, "ms" },
}
for _, r in ipairs(rows) do
  print(string.format("%-38s %s %s %s %s  %-8s %s %s", r[1], fmt(r[2]), fmt(r[3]), fmt(r[4]), fmt(r[5]),
    r[6], ratio(r[2], r[4]), ratio(r[2], r[5])))
end
print(string.format("under load: one busy loop per CPU (%d CPUs) beside the bench, 1-min load %s",
  busy.ncpu, busy.load))
for _, r in ipairs{
  { "one submit -> get round trip, busy", busy.p.roundtrip, busy.t.roundtrip,
    busy.rt.roundtrip_processpool, busy.rt.roundtrip_multiprocessing, "us" },
  { "20000 submits, then gets, busy", busy.p.submit, busy.t.submit,
    busy.so.submit_overhead_processpool, busy.so.submit_overhead_multiprocessing, "us/task" },
} do
  print(string.format("%-38s %s %s %s %s  %-8s %s %s", r[1], fmt(r[2]), fmt(r[3]), fmt(r[4]), fmt(r[5]),
    r[6], ratio(r[2], r[4]), ratio(r[2], r[5])))
end
print("PPE: concurrent.futures.ProcessPoolExecutor (its map: 20000 items, chunksize 1); "
  .. "mp.Pool: multiprocessing.Pool (apply_async().get(); map with its default chunks)")
