-- tour.lua: the guided tour (`make run`).
--
-- The tutorial's headline comparisons, measured on this machine, as one table:
--   * CPU-bound map: cpu_intensive_task (sum of i^2 for i < n) over 20 items,
--     n = 1,000,000 ... 5,000,000, with pool:map;
--   * primes below 100,000 (the tutorial's is_prime), with pool:map over ranges;
--   * a queue pipeline: a producer pushes 200 blocks of numbers into a bounded queue,
--     workers pop them, count the primes in each block (below 1,000,000) and push the
--     counts to a result queue that the main thread drains.
-- Each row is the best of 3 runs, sequential (main thread) and parallel
-- (cpu_count() workers; the pool is started once, before the clocks).
--
--   lua5.4 examples/tour.lua [--workers N]
local parallel = require "parallel"

local workers = parallel.cpu_count()
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--workers" and tonumber(arg[i + 1]) then
      workers = math.tointeger(tonumber(arg[i + 1])); i = i + 2
    else
      io.stderr:write("usage: lua5.4 examples/tour.lua [--workers N]\n"); os.exit(2)
    end
  end
end

local function cpu_intensive_task(n)
  local result = 0
  for i = 0, n - 1 do result = result + i * i end
  return result
end

function is_prime(n)
  if n <= 1 then return false end
  if n == 2 then return true end
  if n % 2 == 0 then return false end
  for i = 3, math.floor(math.sqrt(n)), 2 do
    if n % i == 0 then return false end
  end
  return true
end

local function count_primes(first, last)
  local c = 0
  for n = first, last do if is_prime(n) then c = c + 1 end end
  return c
end

local function best_of(runs, fn)
  local best, result = math.huge, nil
  for _ = 1, runs do
    local t0 = parallel.now()
    result = fn()
    best = math.min(best, parallel.now() - t0)
  end
  return best, result
end

local pool <close> = parallel.pool(workers)
pool:map(cpu_intensive_task, { 1, 2, 3, 4 }) -- start the workers before timing

local rows = {}

-- 1. CPU-bound map -----------------------------------------------------------
do
  local items = {}
  for i = 1, 20 do items[i] = 1000000 + math.floor((i - 1) * 4000000 / 19 + 0.5) end
  local ts, seq = best_of(3, function()
    local r = {}
    for i, n in ipairs(items) do r[i] = cpu_intensive_task(n) end
    return r
  end)
  local tp, par = best_of(3, function() return pool:map(cpu_intensive_task, items, { chunksize = 1 }) end)
  local ok = #par == #seq
  for i = 1, #seq do ok = ok and seq[i] == par[i] end
  rows[#rows + 1] = { "CPU-bound map (20 x cpu_intensive_task)", ts, tp, ok and "match" or "MISMATCH" }
end

-- 2. Primes below 100000 --------------------------------------------------------
-- The numbers are not shipped one by one (examples/04_primes.lua shows what that
-- costs): each task counts the primes of one range of numbers.
do
  local LIMIT, NR = 100000, 8 * workers
  local ranges = {}
  for r = 1, NR do ranges[r] = { (r - 1) * LIMIT // NR + 1, r * LIMIT // NR } end
  local ts, cs = best_of(3, function() return count_primes(1, LIMIT) end)
  local tp, cp = best_of(3, function()
    local counts = pool:map(function(r) return count_primes(r[1], r[2]) end, ranges, { chunksize = 1 })
    local c = 0
    for i = 1, #counts do c = c + counts[i] end
    return c
  end)
  rows[#rows + 1] = { string.format("primes below 100000 (map over %d ranges)", NR), ts, tp,
                      (cs == 9592 and cp == 9592) and "9592 primes" or ("MISMATCH " .. cs .. "/" .. cp) }
end

-- 3. Queue pipeline -------------------------------------------------------------
do
  local LIMIT, BLOCKS = 1000000, 200
  local size = LIMIT // BLOCKS
  local ts, cs = best_of(3, function()
    local c = 0
    for b = 0, BLOCKS - 1 do c = c + count_primes(b * size + 1, (b + 1) * size) end
    return c
  end)
  -- Stage 2 of the pipeline: pop blocks until the queue is closed, push prime counts.
  local function stage(inq, outq)
    for block in inq:items() do
      outq:push(count_primes(block[1], block[2]))
    end
  end
  local tp, cp = best_of(3, function()
    local inq, outq = parallel.queue(4 * workers), parallel.queue()
    local stages = {}
    for w = 1, workers do stages[w] = pool:submit(stage, inq, outq) end
    -- Stage 1, the producer, runs here: its pushes block when the queue is full.
    for b = 0, BLOCKS - 1 do inq:push({ b * size + 1, (b + 1) * size }) end
    inq:close()
    -- Stage 3, the consumer: add up one count per block.
    local c = 0
    for _ = 1, BLOCKS do c = c + outq:pop() end
    for _, f in ipairs(stages) do f:get() end
    return c
  end)
  rows[#rows + 1] = { "queue pipeline (primes below 1e6, 200 blocks)", ts, tp,
                      (cs == 78498 and cp == 78498) and "78498 primes" or ("MISMATCH " .. cs .. "/" .. cp) }
end

-- The table --------------------------------------------------------------------
local cores = parallel.cpu_count()
print(string.format("parallel: the tutorial's headline comparisons on %d core%s, %d worker%s",
                    cores, cores == 1 and "" or "s", workers, workers == 1 and "" or "s"))
print()
local fmt = "%-46s %10s %10s %8s %10s  %s"
print(string.format(fmt, "workload", "seq (s)", "par (s)", "speedup", "efficiency", "check"))
print(string.rep("-", 100))
for _, r in ipairs(rows) do
  local speedup, efficiency = parallel.speedup(r[2], r[3], workers)
  print(string.format(fmt, r[1], string.format("%.4f", r[2]), string.format("%.4f", r[3]),
                      string.format("%.2fx", speedup), string.format("%.1f%%", efficiency * 100), r[4]))
end
print()
print(string.format("Amdahl: with %d workers, a serial fraction of 5%% caps the speedup at %.2fx.",
                    workers, parallel.amdahl(0.05, workers)))
print("More: lua5.4 examples/01_parallel_map.lua ... 12_amdahl_gustafson.lua")
