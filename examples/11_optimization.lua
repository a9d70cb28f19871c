-- 11_optimization.lua: optimization techniques, measured.
--
-- 1. Chunk size: many small tasks through pool:map with chunksize 1 ... large. Each chunk
--    is one message to a worker and one back; tiny chunks pay that cost per item, huge
--    chunks leave workers idle at the end (poor load balancing).
-- 2. Pool size: the same CPU-bound map on 1 .. 2 x cpu_count() workers. Past the number
--    of cores, more workers only add overhead (the tutorial's "overparallelization").
-- The pools are created before the clock starts (the tutorial's "process pool reuse").
--
--   lua5.4 examples/11_optimization.lua [items [n]]   (default 20000 items of n = 500)
local parallel = require "parallel"

local ITEMS = math.tointeger(tonumber(arg and arg[1]) or 20000)
local N = math.tointeger(tonumber(arg and arg[2]) or 500)

local function cpu_intensive_task(n)
  local result = 0
  for i = 0, n - 1 do result = result + i * i end
  return result
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Best of `runs` wall times of fn(); returns the time and fn's last result.
local function best_of(runs, fn)
  local best, result = math.huge, nil
  for _ = 1, runs do
    local t0 = parallel.now()
    result = fn()
    best = math.min(best, parallel.now() - t0)
  end
  return best, result
end

local cores = parallel.cpu_count()
local all_ok = true

---------------------------------------------------------------------------
-- 1. Chunk size sweep
---------------------------------------------------------------------------
local small = {}
for i = 1, ITEMS do small[i] = N + i % 7 end -- slightly uneven items

local t_seq, expected = best_of(3, function()
  local r = {}
  for i, n in ipairs(small) do r[i] = cpu_intensive_task(n) end
  return r
end)

print(string.format("Chunk size sweep: %d items of cpu_intensive_task(~%d), %d workers",
                    ITEMS, N, cores))
print(string.format("sequential: %.4f s", t_seq))
print(string.format("%-10s %10s %9s %7s", "chunksize", "time (s)", "speedup", "match"))
do
  local pool <close> = parallel.pool(cores)
  pool:map(cpu_intensive_task, { 1, 2, 3, 4 }) -- warm the workers up
  local sizes = { 1, 4, 16, 64, 256, 1024, ITEMS // cores, "default" }
  for _, cs in ipairs(sizes) do
    local opts = (cs ~= "default") and { chunksize = cs } or nil
    local t, r = best_of(3, function() return pool:map(cpu_intensive_task, small, opts) end)
    local ok = same(expected, r)
    all_ok = all_ok and ok
    print(string.format("%-10s %10.4f %8.2fx %7s", tostring(cs), t, t_seq / t, ok))
  end
end

---------------------------------------------------------------------------
-- 2. Pool size sweep
---------------------------------------------------------------------------
local big = {}
for i = 1, 8 * cores do big[i] = 1000000 end

local t1, expected_big = best_of(1, function()
  local r = {}
  for i, n in ipairs(big) do r[i] = cpu_intensive_task(n) end
  return r
end)

print(string.format("\nPool size sweep: %d items of cpu_intensive_task(1000000), %d cores",
                    #big, cores))
print(string.format("sequential: %.4f s", t1))
print(string.format("%-8s %10s %9s %11s %7s", "workers", "time (s)", "speedup", "efficiency", "match"))
local counts, seen = {}, {}
for _, w in ipairs({ 1, 2, cores - 1, cores, cores + 1, 2 * cores }) do
  if w >= 1 and not seen[w] then seen[w] = true; counts[#counts + 1] = w end
end
table.sort(counts)
for _, w in ipairs(counts) do
  local pool <close> = parallel.pool(w)
  pool:map(cpu_intensive_task, { 1, 2, 3, 4 }) -- warm the workers up
  local t, r = best_of(1, function() return pool:map(cpu_intensive_task, big, { chunksize = 1 }) end)
  local ok = same(expected_big, r)
  all_ok = all_ok and ok
  local speedup, efficiency = parallel.speedup(t1, t, w)
  print(string.format("%-8d %10.4f %8.2fx %10.1f%% %7s", w, t, speedup, efficiency * 100, ok))
end

print(string.format("\nResults match: %s", all_ok))
