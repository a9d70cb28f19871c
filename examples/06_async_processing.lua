-- 06_async_processing.lua: asynchronous futures — 10 tasks of random duration, each
-- printed as it completes.
--
-- First the tutorial's way (Pool.apply_async, then polling `ready()` every 0.1 s):
-- pool:submit and polling future:done(). Then the way concurrent.futures offers:
-- parallel.as_completed, which blocks until the next future finishes instead of
-- polling. The random durations (0.5–2.0 s in the tutorial) are scaled down ten times.
--
--   lua5.4 examples/06_async_processing.lua
local parallel = require "parallel"

local SCALE = 0.1

-- Simulate a complex computation with variable duration. math.random runs in the
-- worker: each worker state has its own generator.
local function complex_computation(x)
  parallel.sleep((0.5 + 1.5 * math.random()) * SCALE)
  return x * x + math.random(1, 100)
end

local function submit_all(pool)
  local results = {}
  for i = 0, 9 do results[#results + 1] = pool:submit(complex_computation, i) end
  return results
end

-- The tutorial's way: poll every future's done() until all were processed.
local function asynchronous_processing()
  local pool <close> = parallel.pool(4)
  local results = submit_all(pool)
  local processed, completed = {}, 0
  while completed < #results do
    for i, result in ipairs(results) do
      if not processed[i] and result:done() then
        print(string.format("Task %d completed with result: %d", i - 1, result:get()))
        processed[i] = true
        completed = completed + 1
      end
    end
    parallel.sleep(0.01) -- avoid busy waiting (tutorial: 0.1 s)
  end
  return completed
end

-- The as_completed way: no polling, each future as soon as it finishes.
local function as_completed_processing()
  local pool <close> = parallel.pool(4)
  local results = submit_all(pool)
  local index = {}
  for i, f in ipairs(results) do index[f] = i - 1 end
  local completed = 0
  for f in parallel.as_completed(results) do
    print(string.format("Task %d completed with result: %d", index[f], f:get()))
    completed = completed + 1
  end
  return completed
end

print("Polling done():")
local t0 = parallel.now()
local n1 = asynchronous_processing()
print(string.format("%d tasks in %.2f seconds", n1, parallel.now() - t0))

print("\nas_completed():")
t0 = parallel.now()
local n2 = as_completed_processing()
print(string.format("%d tasks in %.2f seconds", n2, parallel.now() - t0))
