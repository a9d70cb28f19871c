-- make bench: each workload measured here, sequentially in Lua, and with
-- Python's concurrent.futures / multiprocessing on the same work, in the
-- same run; printed as one table with the ratios.
-- BENCH_QUICK=1 shrinks the slow Python runs (primes) for a fast check;
-- BENCH_LOAD=0 skips the load mode (bench/load.lua).
local bench = dofile("bench/common.lua")
local parallel, now, best_of, python = bench.parallel, bench.now, bench.best_of, bench.python
local workloads = dofile("bench/workloads.lua")

local quick = os.getenv("BENCH_QUICK") == "1"
local load_at_start = bench.loadavg_text()
local rows = {}

local function row(name, ours, seq, py, unit, note)
  rows[#rows + 1] = { name = name, ours = ours, seq = seq, py = py, unit = unit, note = note or "" }
  io.stderr:write(string.format("  %-44s %10.3f %s\n", name, ours, unit))
end

local pool = parallel.pool(2)
local function inc(x) return x + 1 end
pool:map(inc, { 1, 2, 3, 4 })

-- 1. submit + get overhead
do
  local N = 20000
  local t = best_of(5, function()
    local fs = {}
    for i = 1, N do fs[i] = pool:submit(inc, i) end
    for i = 1, N do fs[i]:get() end
  end)
  local tseq = best_of(5, function()
    for i = 1, N do inc(i) end
  end)
  local py = python("submit_overhead.py")
  row("20000 submits of x+1, then gets (2 workers)", t / N * 1e6, tseq / N * 1e6,
    py.submit_overhead_threadpool, "us/task", "Python: ThreadPoolExecutor")
end

-- 2. one submit -> get round trip
do
  local M = 2000
  local t = best_of(3, function()
    for i = 1, M do pool:submit(inc, i):get() end
  end)
  local py = python("roundtrip.py")
  row("one submit -> get round trip", t / M * 1e6, nil, py.roundtrip_threadpool, "us",
    "Python: ThreadPoolExecutor")
end

-- 3. map with the default chunksize
do
  local n = 200000
  local list = {}
  for i = 1, n do list[i] = i end
  local t = best_of(3, function()
    pool:map(inc, list)
  end)
  local tseq = best_of(3, function()
    local r = {}
    for i = 1, n do r[i] = inc(list[i]) end
  end)
  local py = python("map_overhead.py")
  row("map over 200000 items (default chunksize)", t / n * 1e6, tseq / n * 1e6,
    py.map_overhead_multiprocessing, "us/item", "Python: multiprocessing.Pool.map")
end

-- 4. the tutorial's cpu_intensive_task over 40 items, 2 workers
local cpu_intensive_task, items = workloads.cpu_intensive_task, workloads.items
do
  -- This machine's speed drifts: the three measurements are interleaved,
  -- three rounds, and each takes its best round.
  local src = [[
    local function cpu_intensive_task(n) local result = 0 for i = 0, n - 1 do result = result + i * i end return result end
    for i = %d, 40, 2 do cpu_intensive_task(math.floor(1e6 + (i - 1) * 4e6 / 39 + 0.5)) end ]]
  local tseq, tpar, tproc = math.huge, math.huge, math.huge
  for _ = 1, 3 do
    local t0 = now()
    local seq = {}
    for i = 1, #items do seq[i] = cpu_intensive_task(items[i]) end
    tseq = math.min(tseq, now() - t0)
    t0 = now()
    local par = pool:map(cpu_intensive_task, items, { chunksize = 1 })
    tpar = math.min(tpar, now() - t0)
    for i = 1, #items do assert(par[i] == seq[i], "cpu_intensive_task results differ") end
    -- The machine's own limit: two independent lua5.4 processes, half the items each.
    t0 = now()
    local a = io.popen("lua5.4 -e '" .. src:format(1) .. "'")
    local b = io.popen("lua5.4 -e '" .. src:format(2) .. "'")
    a:read("a"); b:read("a"); a:close(); b:close()
    tproc = math.min(tproc, now() - t0)
  end
  local py = python("cpu_bound.py")
  local ours, procs = tseq / tpar, tseq / tproc
  row("cpu_intensive_task x40, 2 workers: seconds", tpar, tseq, py.cpu_bound, "s",
    string.format("speedup %.2fx; 2 processes %.2fx; ours/processes %.0f%%", ours, procs, 100 * ours / procs))
end

-- 5. the tutorial's primes: one submit per number, as_completed
local is_prime = workloads.is_prime
do
  local limit = 100000
  local t0 = now()
  local seq = 0
  for n = 1, limit do if is_prime(n) then seq = seq + 1 end end
  local tseq = now() - t0
  local p = parallel.pool(parallel.cpu_count())
  t0 = now()
  local fs, num = {}, {}
  for n = 1, limit do
    local f = p:submit(is_prime, n)
    fs[n] = f
    num[f] = n
  end
  local count = 0
  for f in parallel.as_completed(fs) do
    if f:get() then count = count + 1 end
  end
  local tpar = now() - t0
  p:shutdown()
  assert(count == seq and count == 9592, "prime count " .. count)
  local py = python("primes.py", quick and "--limit 10000" or "")
  local pyt = py.primes_as_completed
  if quick and pyt then pyt = pyt * 10 end
  row("primes 1..100000, submit + as_completed", tpar, tseq, pyt, "s",
    quick and "Python extrapolated from 1..10000" or "Python: ProcessPoolExecutor")
end

-- 6. a 1,000,000-number table sent to a worker
do
  local big = {}
  for i = 1, 1000000 do big[i] = i * 0.5 end
  -- best of 10: each worker's first few sends fault fresh pages in (the
  -- steady state reuses them), and the two workers take turns
  local t = best_of(10, function()
    pool:apply(function(t) return #t end, big)
  end)
  local tcopy = best_of(3, function()
    local c = {}
    for i = 1, #big do c[i] = big[i] end
  end)
  local py = python("big_table.py")
  row("a 1,000,000-number table sent to a worker", t * 1e3, tcopy * 1e3, py.big_table_send, "ms",
    "sequential: a plain Lua copy")
end

-- 7. the tutorial's GPU example: a dot product of two 10,000,000-double arrays
do
  local N = quick and 2000000 or 10000000
  local a, b = parallel.array("double", N), parallel.array("double", N)
  for i = 1, N do a[i], b[i] = i % 7 * 0.5, i % 5 * 0.25 end
  local parts = {}
  for k = 0, 7 do parts[#parts + 1] = { k * N // 8 + 1, (k + 1) * N // 8 } end
  local function part_dot(p) return a:view(p[1], p[2]):dot(b:view(p[1], p[2])) end
  local t = best_of(5, function() pool:map(part_dot, parts) end)
  local tone = best_of(5, function() a:dot(b) end)
  local tloop = best_of(1, function()
    local s = 0.0
    for i = 1, N do s = s + a[i] * b[i] end
  end)
  row(string.format("dot of two %d-double arrays (2 workers)", N), t * 1e3, tloop * 1e3, nil, "ms",
    string.format("sequential: a plain Lua loop; one a:dot(b): %.1f ms", tone * 1e3))
end

pool:shutdown()

-- Shared objects (issue 3) and the soak run, when present.
local function run_script(path, label)
  local f = io.open(path)
  if not f then return end
  f:close()
  print("\n" .. label)
  os.execute("lua5.4 " .. path)
end

print(string.format("\nparallel benchmarks — %d cores, %s, %s; load %s at the start, %s now", parallel.cpu_count(),
  _VERSION, os.date("!%Y-%m-%d %H:%M UTC"), load_at_start, bench.loadavg_text()))
print(string.format("%-44s %12s %12s %12s  %-8s %s", "workload", "parallel", "sequential", "Python", "unit", "notes"))
for _, r in ipairs(rows) do
  local function fmt(v) return v and string.format("%12.3f", v) or string.format("%12s", "-") end
  local ratio = r.py and r.ours > 0 and string.format("Python/ours %.1fx; ", r.py / r.ours) or ""
  print(string.format("%-44s %s %s %s  %-8s %s%s", r.name, fmt(r.ours), fmt(r.seq), fmt(r.py), r.unit, ratio, r.note))
end

if os.getenv("BENCH_LOAD") ~= "0" then
  run_script("bench/load.lua", "waiting on a busy machine (load mode, BENCH_LOAD=0 skips it):")
end
run_script("bench/process_bench.lua", "process pools (backend = \"process\") beside thread pools and Python's process pools:")
run_script("bench/shared_bench.lua", "shared objects (queues, counters, arrays):")
if bench.python_ok then
  print("\nthe same with Python's multiprocessing:")
  os.execute("python3 bench/shared_bench.py")
end
if os.getenv("BENCH_SOAK") ~= "0" then run_script("bench/soak.lua", "soak:") end
if io.open("bench/chart.lua") then os.execute("lua5.4 bench/chart.lua") end
