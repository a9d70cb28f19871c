-- 13_callbacks.lua: the tutorial's asynchronous processing (Pool.apply_async), with
-- callbacks instead of polling, and the whole batch as one map_async.
--
-- The tutorial submits 10 tasks with apply_async, then polls `ready()` every 0.1 s and
-- prints each result once. Here each task gets a `callback` (and an `error_callback`):
-- it runs in this script's Lua state, never in a worker, during the next call that waits
-- or polls — parallel.poll in the loop below plays the part of the tutorial's sleep, but
-- wakes as soon as a task finishes. Then map_async returns one future for a whole map,
-- with a callback for the results table. Durations are the tutorial's, scaled down ten
-- times.
--
--   lua5.4 examples/13_callbacks.lua
local parallel = require "parallel"

local SCALE = 0.1

local function complex_computation(x)
  parallel.sleep((0.5 + 1.5 * math.random()) * SCALE)
  if x == 7 then error("task 7 refuses to compute") end
  return x * x + math.random(1, 100)
end

local pool <close> = parallel.pool(4)

print("apply_async with callbacks:")
local completed, failed = 0, 0
for i = 0, 9 do
  pool:apply_async(complex_computation, { i }, {
    callback = function(result)
      completed = completed + 1
      print(string.format("Task %d completed with result: %d", i, result))
    end,
    error_callback = function(err)
      failed = failed + 1
      print(string.format("Task %d failed: %s", i, (tostring(err):gsub("\n.*", ""))))
    end,
  })
end
-- An event loop's turn: run the callbacks of whatever finished (waiting up to 1 s).
while completed + failed < 10 do parallel.poll(1) end
print(string.format("%d completed, %d failed", completed, failed))

print("\nmap_async over the same inputs (task 7 made to succeed):")
local inputs = {}
for i = 0, 9 do inputs[#inputs + 1] = i == 7 and 70 or i end
local whole = pool:map_async(complex_computation, inputs, {
  callback = function(results) print(string.format("callback: %d results, first %d", results.n, results[1])) end,
})
whole:add_done_callback(function(f) print("done callback: the map is " .. f:state()) end)
local results = whole:get()   -- waits; the callbacks run in here
print(string.format("get: %d results; all numbers: %s", results.n,
  tostring(#results == 10 and math.type(results[10]) == "integer")))
