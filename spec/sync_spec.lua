-- parallel.semaphore, condition, event and barrier.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

describe("parallel.semaphore", function()
  describe("constructor", function()
    it("starts at n, 1 by default", function()
      assert.equal(3, parallel.semaphore(3):value())
      assert.equal(1, parallel.semaphore():value())
    end)

    it("raises instead of overflowing its value, and keeps it", function()
      local s = parallel.semaphore(math.maxinteger - 1)
      s:release()
      assert_raises("semaphore value overflow", s.release, s)
      assert_raises("semaphore value overflow", s.release, s, 5)
      assert.equal(math.maxinteger, s:value())
    end)

    it("rejects a negative value", function()
      assert_raises("bad argument #1 to 'semaphore' (value must be non-negative)",
        function() parallel.semaphore(-1) end)
    end)
  end)

  describe("acquire", function()
    it("decrements, then times out at zero", function()
      local s = parallel.semaphore(1)
      assert.is_true(s:acquire())
      assert.equal(0, s:value())
      assert.is_false(s:acquire(0))
      assert.is_false(s:acquire(0.01))
    end)

    it("wakes up when another thread releases", function()
      local s = parallel.semaphore(0)
      local f = parallel.spawn(function(s) s:release() end, s)
      assert.is_true(s:acquire(10))
      f:get()
    end)
  end)

  describe("release", function()
    it("adds k", function()
      local s = parallel.semaphore(0)
      s:release(3)
      assert.equal(3, s:value())
    end)

    it("rejects a count below 1", function()
      local s = parallel.semaphore(0)
      assert_raises("bad argument #1 to 'release' (count must be positive)",
        function() s:release(0) end)
    end)
  end)

  describe("with", function()
    it("acquires and releases around fn", function()
      local s = parallel.semaphore(2)
      assert.equal(1, s:with(function() return s:value() end))
      assert.equal(2, s:value())
    end)
  end)

  describe("across threads", function()
    it("never lets more than n threads in #stress", function()
      local s, inside, most = parallel.semaphore(2), parallel.value("int32", 0),
        parallel.value("int32", 0)
      local fs = {}
      for t = 1, 4 do
        fs[t] = parallel.spawn(function(s, inside, most)
          for _ = 1, 2000 do
            s:acquire()
            local now = inside:add(1)
            local m = most:get()
            while now > m and not most:cas(m, now) do m = most:get() end
            inside:add(-1)
            s:release()
          end
        end, s, inside, most)
      end
      for t = 1, 4 do fs[t]:get() end
      assert.is_true(most:get() <= 2)
      assert.equal(2, s:value())
    end)
  end)
end)

describe("parallel.condition", function()
  describe("constructor", function()
    it("accepts a lock or an rlock", function()
      assert.matches("^parallel.condition", tostring(parallel.condition(parallel.lock())))
      assert.matches("^parallel.condition", tostring(parallel.condition(parallel.rlock())))
      assert.matches("^parallel.condition", tostring(parallel.condition()))
    end)

    it("rejects anything else", function()
      assert_raises("bad argument #1 to 'condition' (parallel.lock or parallel.rlock expected, got table)",
        function() parallel.condition({}) end)
    end)
  end)

  describe("acquire and release", function()
    it("use the underlying lock", function()
      local l = parallel.lock()
      local c = parallel.condition(l)
      c:acquire()
      assert.is_true(l:locked())
      c:release()
      assert.is_false(l:locked())
    end)
  end)

  describe("wait", function()
    it("raises unless the lock is held", function()
      assert_raises("condition's lock is not held (acquire the condition before waiting)",
        function() parallel.condition(parallel.lock()):wait(0) end)
      assert_raises("condition's lock is not held by this thread (acquire the condition before waiting)",
        function() parallel.condition():wait(0) end)
    end)

    it("returns false on timeout and holds the lock again", function()
      local r = parallel.rlock()
      local c = parallel.condition(r)
      c:acquire(); c:acquire()
      assert.is_false(c:wait(0.01))
      c:release()
      assert.is_true(r:locked())
      c:release()
      assert.is_false(r:locked())
    end)

    it("returns true when notified by another thread", function()
      local c, box = parallel.condition(), parallel.dict()
      local f = parallel.spawn(function(c, box)
        c:acquire()
        box.ready = true
        c:notify()
        c:release()
      end, c, box)
      c:acquire()
      while not box.ready do assert.is_true(c:wait(10)) end
      c:release()
      f:get()
    end)
  end)

  describe("notify", function()
    it("wakes n waiters, notify_all the rest", function()
      local c, q, arrived = parallel.condition(parallel.lock()), parallel.queue(), parallel.semaphore(0)
      local fs = {}
      for t = 1, 3 do
        fs[t] = parallel.spawn(function(c, q, arrived)
          c:acquire()
          arrived:release()
          local ok = c:wait(30)
          c:release()
          q:push(ok)
        end, c, q, arrived)
      end
      for _ = 1, 3 do arrived:acquire() end
      -- every waiter is inside wait once it released the lock
      c:acquire(); c:notify(2); c:release()
      assert.is_true(q:pop(10))
      assert.is_true(q:pop(10))
      assert.equal("timeout", select(2, q:pop(0.05)))
      c:acquire(); c:notify_all(); c:release()
      assert.is_true(q:pop(10))
      for t = 1, 3 do fs[t]:get() end
    end)

    it("does nothing without waiters", function()
      local c = parallel.condition()
      c:notify(); c:notify_all()
    end)
  end)

  describe("across threads", function()
    it("keeps a bounded buffer exact for 3 producers and 2 consumers on a plain lock", function()
      -- Every wait re-takes a lock the others contend for; `level` and the
      -- totals are read and written non-atomically under it.
      local c = parallel.condition(parallel.lock())
      local level, made, taken = parallel.value("int64", 0), parallel.value("int64", 0),
        parallel.value("int64", 0)
      local n, cap = 3000, 4
      local fs = {}
      for t = 1, 5 do
        fs[t] = parallel.spawn(function(c, level, made, taken, n, cap, produce)
          for _ = 1, n do
            c:acquire()
            while (produce and level:get() == cap) or (not produce and level:get() == 0) do
              assert(c:wait(30), "no notify within 30 s")
            end
            level:set(level:get() + (produce and 1 or -1))
            local total = produce and made or taken
            total:set(total:get() + 1)
            c:notify_all()
            c:release()
          end
          return true
        end, c, level, made, taken, t <= 3 and n or 3 * n // 2, cap, t <= 3)
      end
      for t = 1, 5 do assert.is_true(fs[t]:get(60)) end
      assert.equal(3 * n, made:get())
      assert.equal(3 * n, taken:get())
      assert.equal(0, level:get())
      assert.is_false(c:locked())
    end)
  end)
end)

describe("parallel.event", function()
  describe("set, clear and is_set", function()
    it("toggle the flag", function()
      local e = parallel.event()
      assert.is_false(e:is_set())
      e:set()
      assert.is_true(e:is_set())
      e:clear()
      assert.is_false(e:is_set())
    end)
  end)

  describe("wait", function()
    it("returns false on timeout", function()
      assert.is_false(parallel.event():wait(0.01))
      assert.is_false(parallel.event():wait(0))
    end)

    it("returns true at once when set", function()
      local e = parallel.event()
      e:set()
      assert.is_true(e:wait())
    end)

    it("wakes every waiting thread", function()
      local e, fs = parallel.event(), {}
      for t = 1, 3 do fs[t] = parallel.spawn(function(e) return e:wait(30) end, e) end
      e:set()
      for t = 1, 3 do assert.is_true(fs[t]:get()) end
    end)
  end)
end)

describe("parallel.barrier", function()
  describe("constructor", function()
    it("rejects fewer than one party", function()
      assert_raises("bad argument #1 to 'barrier' (parties must be positive)",
        function() parallel.barrier(0) end)
    end)

    it("reports its parties", function()
      assert.equal(3, parallel.barrier(3):parties())
    end)
  end)

  describe("wait", function()
    it("returns at once for one party", function()
      assert.equal(1, parallel.barrier(1):wait())
    end)

    it("returns nil, 'timeout' and withdraws", function()
      local b = parallel.barrier(2)
      local v, why = b:wait(0.01)
      assert.is_nil(v)
      assert.equal("timeout", why)
      -- the withdrawn arrival does not count
      local f = parallel.spawn(function(b) return b:wait(30) end, b)
      local mine = b:wait(30)
      local theirs = f:get()
      assert.same({1, 2}, mine < theirs and {mine, theirs} or {theirs, mine})
    end)

    it("gives each thread a distinct arrival index, round after round", function()
      local n, rounds = 3, 50
      local b, fs = parallel.barrier(n), {}
      for t = 1, n do
        fs[t] = parallel.spawn(function(b, rounds)
          local got = {}
          for r = 1, rounds do got[r] = b:wait(30) end
          return got
        end, b, rounds)
      end
      local per = {}
      for t = 1, n do per[t] = fs[t]:get() end
      for r = 1, rounds do
        local seen = {}
        for t = 1, n do seen[per[t][r]] = true end
        for i = 1, n do assert.is_true(seen[i]) end
      end
    end)
  end)
end)

describe("parallel.bounded_semaphore", function()
  it("raises when released past its start value, and keeps the value", function()
    local s = parallel.bounded_semaphore(2)
    assert.is_true(s:bounded())
    assert.is_false(parallel.semaphore(2):bounded())
    assert_raises("semaphore released too many times (bounded at 2)", s.release, s)
    assert.is_true(s:acquire(0))
    s:release()
    assert.equal(2, s:value())
    assert.is_true(s:acquire(0))
    assert_raises("semaphore released too many times (bounded at 2)", s.release, s, 2)
    assert.equal(1, s:value())
  end)

  it("works as a semaphore across threads", function()
    local s = parallel.bounded_semaphore(1)
    assert.is_true(s:acquire())
    local f = parallel.spawn(function(s) return s:acquire(30) end, s)
    s:release()
    assert.is_true(f:get())
  end)

  it("rejects a negative value", function()
    assert_raises("bad argument #1 to 'bounded_semaphore' (value must be non-negative)",
      function() parallel.bounded_semaphore(-1) end)
  end)
end)

describe("condition:wait_for", function()
  it("returns the predicate's value at once when it holds", function()
    local c = parallel.condition()
    assert.equal(7, c:with(function() return c:wait_for(function() return 7 end) end))
  end)

  it("returns the predicate's last value on timeout, the lock held again", function()
    local c = parallel.condition(parallel.lock())
    local calls = 0
    local r = c:with(function()
      local r = c:wait_for(function() calls = calls + 1; return false end, 0.02)
      assert.is_true(c:locked())
      return r
    end)
    assert.is_false(r)
    assert.is_true(calls >= 2)
  end)

  it("wakes when another thread makes the predicate true", function()
    local c, d = parallel.condition(), parallel.dict()
    local f = parallel.spawn(function(c, d)
      c:with(function() d.ready = "yes"; c:notify_all() end)
    end, c, d)
    local got = c:with(function() return c:wait_for(function() return d.ready end, 30) end)
    assert.equal("yes", got)
    f:get()
  end)

  it("checks its arguments", function()
    local c = parallel.condition()
    assert_raises("bad argument #1 to 'wait_for' (function expected, got nil)",
      function() c:wait_for() end)
  end)
end)

describe("parallel.barrier extras", function()
  -- Returns once n parties wait on b (they are blocked: polling is the only way to see it).
  local function until_waiting(b, n)
    local deadline = parallel.now() + 30
    while b:waiting() < n do
      assert.is_true(parallel.now() < deadline, "the other party never waited")
      parallel.sleep(0.001)
    end
  end

  it("runs the action in exactly one party, before any party goes on", function()
    local n = 3
    local runs = parallel.value("int32", 0)
    local b = parallel.barrier(n, function() runs:add(1) end)
    local fs = {}
    for t = 1, n - 1 do
      fs[t] = parallel.spawn(function(b, runs)
        local out = {}
        for r = 1, 5 do assert(b:wait(30)); out[r] = runs:get() end
        return out
      end, b, runs)
    end
    local mine = {}
    for r = 1, 5 do assert.is_truthy(b:wait(30)); mine[r] = runs:get() end
    assert.same({ 1, 2, 3, 4, 5 }, mine)
    for t = 1, n - 1 do
      local out = fs[t]:get()
      for r = 1, 5 do assert.is_true(out[r] >= r) end
    end
    assert.equal(5, runs:get())
  end)

  it("an action that raises breaks the barrier: its party raises, the others get 'broken'", function()
    local b = parallel.barrier(2, function() error("no way", 0) end)
    local f = parallel.spawn(function(b) return b:wait(30) end, b)
    until_waiting(b, 1)
    assert_raises("no way", b.wait, b, 30)
    local v, why = f:get()
    assert.is_true(b:broken())
    assert.is_nil(v)
    assert.equal("broken", why)
  end)

  it("abort wakes the waiters with nil, 'broken' and breaks later waits", function()
    local b = parallel.barrier(3)
    local f = parallel.spawn(function(b) return b:wait(30) end, b)
    until_waiting(b, 1)
    b:abort()
    local v, why = f:get()
    assert.is_nil(v); assert.equal("broken", why)
    assert.is_true(b:broken())
    assert.equal(0, b:waiting())
    v, why = b:wait(1)
    assert.is_nil(v); assert.equal("broken", why)
  end)

  it("reset makes it usable again; its waiters get 'broken'", function()
    local b = parallel.barrier(2)
    b:abort()
    b:reset()
    assert.is_false(b:broken())
    local f = parallel.spawn(function(b) return b:wait(30) end, b)
    assert.is_truthy(b:wait(30))
    assert.is_truthy(f:get())
    local g = parallel.spawn(function(b) return b:wait(30) end, b)
    until_waiting(b, 1)
    b:reset()
    local v, why = g:get()
    assert.is_nil(v); assert.equal("broken", why)
    assert.is_false(b:broken())
  end)

  it("rejects an action that is not a function", function()
    assert_raises("bad argument #2 to 'barrier' (function expected, got number)",
      function() parallel.barrier(2, 5) end)
  end)
end)

describe("parallel.timer", function()
  it("runs fn with its arguments after the delay, on another thread", function()
    local t0 = parallel.now()
    local t = parallel.timer(0.05, function(a, b) return a + b, parallel.now() end, 2, 3)
    local sum, at = t:get(30)
    assert.equal(5, sum)
    assert.is_true(at - t0 >= 0.05)
    assert.is_true(t:fired())
    assert.is_false(t:cancel())
  end)

  it("cancel before the delay stops fn from running", function()
    local ran = parallel.value("int32", 0)
    local t = parallel.timer(30, function(ran) ran:set(1) end, ran)
    assert.is_true(t:cancel())
    assert.is_true(t:cancel())
    assert.is_true(t:wait(30))
    assert.is_false(t:fired())
    assert.equal(0, ran:get())
  end)

  it("checks its arguments", function()
    assert_raises("bad argument #1 to 'timer' (seconds must be a non-negative number)",
      function() parallel.timer(-1, print) end)
    assert_raises("bad argument #2 to 'timer' (function expected, got nil)",
      function() parallel.timer(1) end)
  end)
end)
