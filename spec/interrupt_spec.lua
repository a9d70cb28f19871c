-- future:interrupt() and pool{memory_limit =}: a stopped or starved task fails
-- with an error, the worker and the process live on.

local support = require "spec.support"
local parallel = require "parallel"

-- The error a finished future carries, as a string.
-- The 60 s is a guard against a hang, not a deadline: under valgrind on a
-- busy machine the memory_limit task below alone took 12 s.
local function failure(f)
  local ok, e = pcall(f.get, f, 60)
  assert.is_false(ok, "expected the task to fail")
  return tostring(e)
end

-- Submits a task that sets `started` once it runs, then blocks in `body`;
-- returns its future once it is running.
local function running(pool, body, ...)
  local started = parallel.event()
  local f = pool:submit(function(ev, fn, ...)
    ev:set()
    return fn(...)
  end, started, body, ...)
  assert.is_true(started:wait(10), "the task did not start")
  return f
end

-- Interrupts f and checks it fails with "interrupted" within a second.
local function assert_interrupted(f)
  local t0 = parallel.now()
  assert.is_true(f:interrupt() ~= false)
  assert.is_true(f:wait(5), "the task was not interrupted")
  assert.is_true(parallel.now() - t0 < 1, "interrupting took too long")
  assert.equal("failed", f:state())
  assert.matches("interrupted", failure(f))
end

describe("future:interrupt", function()
  local pool
  lazy_setup(function() pool = parallel.pool(2) end)
  lazy_teardown(function() if pool then pool:shutdown{cancel = true} end end)

  it("stops a task spinning in `while true do end` #threads", function()
    local f = running(pool, function() while true do end end)
    assert_interrupted(f)
  end)

  it("stops a task that catches errors in a loop (pcall cannot swallow it) #threads", function()
    local f = running(pool, function()
      while true do pcall(function() while true do end end) end
    end)
    assert_interrupted(f)
  end)

  it("wakes a task sleeping in parallel.sleep #threads", function()
    local f = running(pool, function() parallel.sleep(60) return "slept" end)
    assert_interrupted(f)
  end)

  it("wakes a task blocked in queue:pop #threads", function()
    local q = parallel.queue()
    local f = running(pool, function(q) return q:pop() end, q)
    assert_interrupted(f)
    assert.equal(0, #q)
  end)

  it("wakes a task blocked in queue:push on a full queue #threads", function()
    local q = parallel.queue(1)
    q:push(1)
    local f = running(pool, function(q) return q:push(2) end, q)
    assert_interrupted(f)
    assert.equal(1, #q)
  end)

  it("wakes a task blocked in lock:acquire, and the lock stays usable #threads", function()
    local l = parallel.lock()
    assert.is_true(l:acquire())
    local f = running(pool, function(l) l:acquire() return "acquired" end, l)
    assert_interrupted(f)
    l:release()
    assert.is_true(l:acquire(1))
    l:release()
  end)

  it("wakes a task waiting on an event, a semaphore and a future #threads", function()
    local ev, sem = parallel.event(), parallel.semaphore(0)
    assert_interrupted(running(pool, function(e) return e:wait() end, ev))
    assert_interrupted(running(pool, function(s) return s:acquire() end, sem))
    local gate = parallel.event()
    local other = parallel.pool(1)
    local g = other:submit(function(e) return e:wait() end, gate)
    assert_interrupted(running(pool, function(g) return g:get() end, g))
    gate:set()
    assert.is_true(g:get(10))
    other:shutdown()
  end)

  it("leaves the worker usable: later tasks run normally #threads", function()
    for _ = 1, 3 do
      assert_interrupted(running(pool, function() while true do end end))
    end
    local futures = {}
    for i = 1, 20 do futures[i] = pool:submit(function(x) return x * 2 end, i) end
    for i = 1, 20 do assert.equal(2 * i, futures[i]:get(10)) end
    -- the interruption does not leak into the next task: a loop runs to its end
    assert.equal(1e6, pool:submit(function() local n = 0 for _ = 1, 1e6 do n = n + 1 end return n end):get(10))
  end)

  it("never loses an interrupt sent the moment a task starts #child", function()
    -- Between a worker claiming a task and making it its current one, an
    -- interrupt finds no worker running it; it must be kept, not dropped.
    local out, err = support.run_child{ timeout = 60, code = [[
      local parallel = require "parallel"
      local p = parallel.pool(2)
      local spin = function() while true do end end
      for i = 1, 300 do
        local f = p:submit(spin)
        while not f:interrupt() do assert(not f:done(), f:state()) end
        assert(f:wait(20), "not stopped (round " .. i .. ")")
        assert(tostring(f:error()):match("interrupted"), tostring(f:error()))
      end
      p:shutdown()
      print("ok")
    ]] }
    assert.equal("ok\n", out, err)
  end)

  it("does nothing to a finished or a queued future #threads", function()
    local f = pool:submit(function() return 7 end)
    assert.equal(7, f:get(10))
    f:interrupt()
    assert.equal("done", f:state())
    assert.equal(7, f:get())

    local one = parallel.pool(1)
    local gate = parallel.event()
    local blocker = one:submit(function(e) return e:wait(10) end, gate)
    local queued = one:submit(function() return "ran" end)
    queued:interrupt()
    gate:set()
    assert.is_true(blocker:get(10))
    assert.equal("ran", queued:get(10))
    one:shutdown()
  end)
end)

describe("pool{memory_limit}", function()
  it("fails a task allocating past the limit with not enough memory; the next task succeeds", function()
    local p <close> = parallel.pool{workers = 1, memory_limit = 16 * 1024 * 1024}
    local f = p:submit(function()
      local t = {}
      for i = 1, 1e8 do t[i] = string.rep("x", 100) .. i end
      return #t
    end)
    assert.matches("not enough memory", failure(f))
    assert.equal("ok", p:submit(function() return "ok" end):get(10))
    -- and again, with one big string
    f = p:submit(function() return #string.rep("y", 64 * 1024 * 1024) end)
    assert.matches("not enough memory", failure(f))
    assert.equal(42, p:submit(function() local t = {} for i = 1, 1000 do t[i] = i end return #t - 958 end):get(10))
  end)

  it("gives the memory back: many failing tasks in a row, then a normal one", function()
    local p <close> = parallel.pool{workers = 2, memory_limit = 8 * 1024 * 1024}
    local futures = {}
    for i = 1, 10 do
      futures[i] = p:submit(function() return #string.rep("z", 32 * 1024 * 1024) end)
    end
    for i = 1, 10 do assert.matches("not enough memory", failure(futures[i])) end
    assert.same({ n = 3, 2, 4, 6 }, p:map(function(x) return 2 * x end, { 1, 2, 3 }))
  end)

  it("too small for a worker's state: every task fails with pool init failed, the process lives on", function()
    local p <close> = parallel.pool{workers = 1, memory_limit = 1000}
    for _ = 1, 3 do
      local e = failure(p:submit(function() return 1 end))
      assert.matches("^pool init failed: ", e)
      assert.matches("not enough memory", e)
    end
    assert.equal(1, parallel.pool(1):apply(function() return 1 end))
  end)
end)
