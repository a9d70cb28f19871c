-- Runs every example (and the guided tour) as a child lua5.4 process, from the repository
-- root, and checks its key output: the comparisons the tutorial prints.

local support = require "spec.support"
local function script_dir()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return src:match("^(.*)/[^/]*$") or "."
end

local ROOT = (script_dir() .. "/.."):gsub("^%./", "")
local TIMEOUT = 120 -- seconds per example

-- Runs examples/<name> with args; returns its output (stdout and stderr) and exit code.
local function run(name, ...)
  local out, err, code = support.run_child{ file = "examples/" .. name, args = { ... },
                                            cwd = ROOT, timeout = TIMEOUT }
  return out .. err, code
end

local function count(out, pattern)
  local n = 0
  for _ in out:gmatch(pattern) do n = n + 1 end
  return n
end

-- Asserts that the run succeeded and that each plain string in `wanted` is in the output.
local function check(out, code, wanted)
  assert.is_equal(0, code, out)
  for _, w in ipairs(wanted or {}) do
    assert(out:find(w, 1, true), string.format("expected %q in the output of:\n%s", w, out))
  end
end

describe("examples #child", function()
  it("01 parallel map: same squares sequentially and on a pool of 4", function()
    local out, code = run("01_parallel_map.lua")
    check(out, code, { "Sequential execution time:", "Parallel execution time:", "Results match: true" })
  end)

  it("02 spawns five workers and joins them", function()
    local out, code = run("02_spawn_workers.lua")
    check(out, code, { "All processes finished." })
    assert.is_equal(5, count(out, "is starting"))
    assert.is_equal(5, count(out, "finished after"))
    -- joined only after the last one finished
    assert.is_true(out:find("All processes finished.", 1, true) > select(2, out:find(".*finished after")))
  end)

  it("03 producer/consumer: every item consumed once, the queue closed", function()
    local out, code = run("03_producer_consumer.lua")
    check(out, code, { "All processes completed.", "Items consumed: 10 of 10" })
    assert.is_equal(10, count(out, "Produced: Item %d"))
    assert.is_equal(10, count(out, "Processing Item %d"))
    assert.is_equal(2, count(out, "No more items, exiting"))
    for i = 0, 9 do assert.is_equal(1, count(out, "Processing Item " .. i .. "\n"), "Item " .. i) end
  end)

  it("04 primes below 100000: 9592 found three ways", function()
    local out, code = run("04_primes.lua")
    check(out, code, { "Sequential found 9592 primes", "Parallel found 9592 primes",
                       "Parallel map found 9592 primes", "Results match: true", "Map results match: true" })
  end)

  it("05 downloads from a local delayed HTTP server, sequentially and concurrently", function()
    local out, code = run("05_io_downloads.lua")
    check(out, code, { "Sequential total time:", "Threaded total time:", "Results match: true" })
    assert.is_equal(8, count(out, "Downloaded http://127%.0%.0%.1:%d+/delay/"))
    local seq = tonumber(out:match("Sequential total time: ([%d.]+)"))
    local par = tonumber(out:match("Threaded total time: ([%d.]+)"))
    assert.is_true(par < seq, out) -- 0.6 s vs 1.4 s of delays
  end)

  it("06 asynchronous processing: 10 tasks reported, polling and as_completed", function()
    local out, code = run("06_async_processing.lua")
    check(out, code, { "Polling done():", "as_completed():" })
    assert.is_equal(20, count(out, "Task %d completed with result: %d+"))
    assert.is_equal(2, count(out, "10 tasks in"))
  end)

  it("07 shared memory: the locked counter reaches 40000, the array is doubled", function()
    local out, code = run("07_shared_memory.lua")
    check(out, code, { "Final counter value: 40000", "Expected value: 40000",
                       "First 10 elements of processed array: [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]",
                       "Whole array doubled: true" })
  end)

  it("08 large array: row means on a pool match the sequential ones", function()
    local out, code = run("08_large_array.lua")
    check(out, code, { "Result shape: (2000,)", "Results match: true" })
    local out2, code2 = run("08_large_array.lua", 301, 77, 40) -- uneven blocks
    check(out2, code2, { "Result shape: (301,)", "Results match: true" })
  end)

  it("09 vector dot product: chunked parallel result matches", function()
    local out, code = run("09_vector_dot.lua")
    check(out, code, { "Sequential time:", "Parallel time:", "a:dot(b) time:",
                       "a:dot over views on the pool:", "Results match: true" })
    local out2, code2 = run("09_vector_dot.lua", 100003, 7)
    check(out2, code2, { "Results match: true" })
  end)

  it("10 performance: time, CPU usage, speedup and efficiency", function()
    local out, code = run("10_performance.lua")
    check(out, code, { "Sequential execution:", "Parallel execution:", "CPU usage:", "Speedup:",
                       "Efficiency:", "Results match: true" })
  end)

  it("11 optimization: chunksize and pool-size sweeps", function()
    local out, code = run("11_optimization.lua")
    check(out, code, { "Chunk size sweep", "Pool size sweep", "Results match: true" })
    assert.is_nil(out:find(" false\n", 1, true))
  end)

  it("12 Amdahl and Gustafson: predictions for the given serial fraction", function()
    local out, code = run("12_amdahl_gustafson.lua")
    check(out, code, { "Serial fraction S = 0.100", "Amdahl's law", "Gustafson's law", "10.00x" })
    assert.is_truthy(out:find("\n1 +[%d.]+ +1%.00x"))
    assert.is_truthy(out:find("\n2 +[%d.]+ +1%.82x")) -- Amdahl, S = 0.1, N = 2
    assert.is_truthy(out:find("\n2 +[%d.]+ +1%.90x")) -- Gustafson, S = 0.1, N = 2
    local out2, code2 = run("12_amdahl_gustafson.lua", 0.5, 2000000)
    check(out2, code2, { "Serial fraction S = 0.500", "2.00x" })
    assert.is_truthy(out2:find("\n2 +[%d.]+ +1%.33x")) -- Amdahl, S = 0.5, N = 2
    assert.is_truthy(out2:find("\n2 +[%d.]+ +1%.50x")) -- Gustafson, S = 0.5, N = 2
  end)

  it("13 callbacks: apply_async callbacks and map_async, no polling loop of sleeps", function()
    local out, code = run("13_callbacks.lua")
    check(out, code, { "Task 0 completed with result:", "Task 7 failed:", "9 completed, 1 failed",
                       "callback: 10 results", "done callback: the map is done",
                       "get: 10 results; all numbers: true" })
  end)

  it("the guided tour prints one table of the headline comparisons", function()
    local out, code = run("tour.lua")
    check(out, code, { "CPU-bound map", "9592 primes", "78498 primes", "speedup", "efficiency" })
    assert.is_nil(out:find("MISMATCH", 1, true), out)
  end)
end)
