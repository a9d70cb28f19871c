-- 01_parallel_map.lua: the parallel map of `square_number`, sequential vs a pool of 4.
--
-- Port of the tutorial's first example (multiprocessing.Pool.map). Each call sleeps
-- to simulate work; the tutorial sleeps 0.1 s per item, we sleep 0.05 s so the whole
-- example runs in about a second and a half.
--
--   lua5.4 examples/01_parallel_map.lua
local parallel = require "parallel"

local WORK = 0.05 -- seconds of simulated work per item (tutorial: 0.1)

-- Square a number and simulate some work. It runs in the pool's workers: a function
-- travels there as bytecode with its upvalues (`parallel`, `WORK`) copied.
local function square_number(x)
  parallel.sleep(WORK)
  return x * x
end

local function sequential_square(numbers)
  local start = parallel.now()
  local results = {}
  for i, num in ipairs(numbers) do results[i] = square_number(num) end
  print(string.format("Sequential execution time: %.4f seconds", parallel.now() - start))
  return results
end

local function parallel_square(numbers)
  local start = parallel.now()
  local results
  do
    local pool <close> = parallel.pool(4)   -- `with multiprocessing.Pool(processes=4) as pool`
    results = pool:map(square_number, numbers)
  end
  print(string.format("Parallel execution time: %.4f seconds", parallel.now() - start))
  return results
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local numbers = {}
for i = 1, 20 do numbers[i] = i end

print("Sequential execution:")
local sequential_results = sequential_square(numbers)

print("\nParallel execution:")
local parallel_results = parallel_square(numbers)

print(string.format("\nResults match: %s", same(sequential_results, parallel_results)))
