-- 04_primes.lua: primes below 100000 with a pool (concurrent.futures.ProcessPoolExecutor).
--
-- Three ways: sequential; one `submit` per number collected with `as_completed` (the
-- tutorial's way); and `map` with a `chunksize`, which sends the numbers in batches and
-- is how such fine-grained work should be parallelised.
-- `as_completed` yields futures in completion order, so the parallel list is sorted
-- before it is compared with the sequential one.
--
--   lua5.4 examples/04_primes.lua [limit]     (default 100000)
local parallel = require "parallel"

local LIMIT = tonumber(arg and arg[1]) or 100000

-- Check if a number is prime (computationally intensive).
function is_prime(n)
  if n <= 1 then return false end
  if n == 2 then return true end
  if n % 2 == 0 then return false end
  for i = 3, math.floor(math.sqrt(n)), 2 do
    if n % i == 0 then return false end
  end
  return true
end

local function find_primes_sequential(numbers)
  local start = parallel.now()
  local primes = {}
  for _, num in ipairs(numbers) do
    if is_prime(num) then primes[#primes + 1] = num end
  end
  print(string.format("Sequential execution time: %.4f seconds", parallel.now() - start))
  return primes
end

local function find_primes_parallel(numbers)
  local start = parallel.now()
  local primes = {}
  do
    local executor <close> = parallel.pool(parallel.cpu_count())
    -- Submit all tasks.
    local future_to_num, futures = {}, {}
    for i, num in ipairs(numbers) do
      local f = executor:submit(is_prime, num)
      futures[i] = f
      future_to_num[f] = num
    end
    -- Collect results as they complete.
    for future in parallel.as_completed(futures) do
      if future:get() then primes[#primes + 1] = future_to_num[future] end
    end
  end
  print(string.format("Parallel execution time: %.4f seconds", parallel.now() - start))
  table.sort(primes)
  return primes
end

local function find_primes_map(numbers, chunksize)
  local start = parallel.now()
  local primes = {}
  do
    local pool <close> = parallel.pool(parallel.cpu_count())
    local flags = pool:map(is_prime, numbers, { chunksize = chunksize })
    for i, num in ipairs(numbers) do
      if flags[i] then primes[#primes + 1] = num end
    end
  end
  print(string.format("Parallel map (chunksize %d) execution time: %.4f seconds",
                      chunksize, parallel.now() - start))
  return primes
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local numbers = {}
for i = 1, LIMIT do numbers[i] = i end -- check primes up to LIMIT

print(string.format("Checking 1..%d on %d cores", LIMIT, parallel.cpu_count()))
print("\nSequential execution:")
local sequential_primes = find_primes_sequential(numbers)

print("\nParallel execution (submit + as_completed):")
local parallel_primes = find_primes_parallel(numbers)

print("\nParallel execution (map + chunksize):")
local map_primes = find_primes_map(numbers, 1000)

print(string.format("\nSequential found %d primes", #sequential_primes))
print(string.format("Parallel found %d primes", #parallel_primes))
print(string.format("Parallel map found %d primes", #map_primes))
print(string.format("Results match: %s", same(sequential_primes, parallel_primes)))
print(string.format("Map results match: %s", same(sequential_primes, map_primes)))
