-- 10_performance.lua: measuring parallel performance.
--
-- cpu_intensive_task sequential vs a pool of cpu_count() workers, with wall time, CPU
-- usage, speedup and efficiency. The tutorial reads CPU usage with psutil's
-- cpu_percent(); here it is the process CPU time (all threads, parallel.cpu_time())
-- spent during the call divided by its wall time: 100% is one core busy the whole time,
-- 200% two cores. The tutorial's sizes (100000 ... 500000) take a few milliseconds in
-- Lua, less than starting a pool, so they are multiplied by 10 (override with arg[1]).
--
--   lua5.4 examples/10_performance.lua [scale]     (default 10)
local parallel = require "parallel"

local SCALE = tonumber(arg and arg[1]) or 10

-- CPU intensive task for performance testing: the sum of i^2 for i < n.
local function cpu_intensive_task(n)
  local result = 0
  for i = 0, n - 1 do result = result + i * i end
  return result
end

-- Measure execution time and CPU usage of func(...).
local function measure_performance(func, ...)
  local cpu0, t0 = parallel.cpu_time(), parallel.now()
  local result = func(...)
  local wall = parallel.now() - t0
  local cpu = parallel.cpu_time() - cpu0
  return { result = result, execution_time = wall, cpu_usage = 100 * cpu / wall }
end

local function sequential_performance(numbers)
  local results = {}
  for i, n in ipairs(numbers) do results[i] = cpu_intensive_task(n) end
  return results
end

local function parallel_performance(numbers, num_processes)
  num_processes = num_processes or parallel.cpu_count()
  local pool <close> = parallel.pool(num_processes)
  return pool:map(cpu_intensive_task, numbers)
end

local numbers = {}
for i, n in ipairs({ 100000, 200000, 300000, 400000, 500000 }) do
  numbers[i] = math.tointeger(n * SCALE) or math.floor(n * SCALE)
end
local cores = parallel.cpu_count()
print(string.format("cpu_intensive_task over {%s} on %d cores",
                    table.concat(numbers, ", "), cores))

print("\nSequential execution:")
local seq = measure_performance(sequential_performance, numbers)
print(string.format("Time: %.4f seconds", seq.execution_time))
print(string.format("CPU usage: %.2f%%", seq.cpu_usage))

print("\nParallel execution:")
local par = measure_performance(parallel_performance, numbers)
print(string.format("Time: %.4f seconds", par.execution_time))
print(string.format("CPU usage: %.2f%%", par.cpu_usage))

local speedup, efficiency = parallel.speedup(seq.execution_time, par.execution_time, cores)
print(string.format("\nSpeedup: %.2fx", speedup))
print(string.format("Efficiency: %.1f%%", efficiency * 100))

local ok = #seq.result == #par.result
for i = 1, #numbers do ok = ok and seq.result[i] == par.result[i] end
print(string.format("Results match: %s", ok))
