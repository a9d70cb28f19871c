-- parallel.queue: push/pop with timeouts, close and drain, items(), #q.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

-- Output (stderr included) of a child sent SIGINT once ready, and the
-- seconds from the signal to its exit.
local function interrupted(code)
  local out, err, _, secs = support.run_interrupted(code)
  return out .. err, secs
end

describe("parallel.queue", function()
  describe("constructor", function()
    it("is unbounded without a capacity", function()
      local q = parallel.queue()
      for i = 1, 10000 do assert.is_true(q:push(i, 0)) end
      assert.equal(10000, #q)
    end)

    it("treats capacity 0 as unbounded", function()
      local q = parallel.queue(0)
      for i = 1, 100 do assert.is_true(q:push(i, 0)) end
    end)

    it("rejects a negative capacity", function()
      assert_raises("bad argument #1 to 'queue' (capacity must be non-negative)",
        function() parallel.queue(-1) end)
    end)

    it("rejects a non-integer capacity", function()
      assert_raises("bad argument #1 to 'queue' (number has no integer representation)",
        function() parallel.queue(1.5) end)
    end)

    it("has a type name", function()
      assert.matches("^parallel.queue: ", tostring(parallel.queue()))
    end)
  end)

  describe("push", function()
    it("returns true and keeps FIFO order", function()
      local q = parallel.queue()
      assert.is_true(q:push("a"))
      assert.is_true(q:push(2))
      assert.is_true(q:push(false))
      assert.equal("a", q:pop())
      assert.equal(2, q:pop())
      assert.is_false(q:pop())
    end)

    it("copies tables and keeps number subtypes", function()
      local q = parallel.queue()
      local t = {1, 2.0, x = {y = "z"}}
      q:push(t)
      local r = q:pop()
      assert.are_not.equal(t, r)
      assert.same(t, r)
      assert.equal(math.type(2.0), math.type(r[2]))
    end)

    it("returns false on timeout when full", function()
      local q = parallel.queue(1)
      assert.is_true(q:push(1))
      assert.is_false(q:push(2, 0))
      assert.is_false(q:push(2, 0.01))
      assert.equal(1, #q)
    end)

    it("raises on nil", function()
      local q = parallel.queue()
      assert_raises("bad argument #1 to 'push' (value expected)", function() q:push(nil) end)
      assert_raises("bad argument #1 to 'push' (value expected)", function() q:push() end)
    end)

    it("raises on a closed queue", function()
      local q = parallel.queue()
      q:close()
      assert_raises("queue is closed", function() q:push(1) end)
    end)

    it("raises on a value that cannot travel, naming it", function()
      local q = parallel.queue()
      assert_raises("cannot send thread at item: a coroutine cannot travel; create it in the thread that uses it", function() q:push(coroutine.create(print)) end)
      assert.equal(0, #q)
    end)

    it("raises on a closed proxy", function()
      local q = parallel.queue()
      getmetatable(q).__close(q)
      assert_raises("parallel.queue is closed", function() q:push(1) end)
    end)

    it("sends shared objects by reference", function()
      local q, inner = parallel.queue(), parallel.queue()
      q:push(inner)
      local got = q:pop()
      got:push("via copy")
      assert.equal("via copy", inner:pop())
    end)
  end)

  describe("pop", function()
    it("returns nil, 'timeout' when empty", function()
      local q = parallel.queue()
      local v, why = q:pop(0)
      assert.is_nil(v)
      assert.equal("timeout", why)
      v, why = q:pop(0.01)
      assert.is_nil(v)
      assert.equal("timeout", why)
    end)

    it("drains a closed queue, then returns nil, 'closed'", function()
      local q = parallel.queue()
      q:push(1); q:push(2); q:close()
      assert.equal(1, q:pop())
      assert.equal(2, q:pop())
      local v, why = q:pop()
      assert.is_nil(v)
      assert.equal("closed", why)
    end)

    it("wakes up when another thread pushes", function()
      local q = parallel.queue()
      local f = parallel.spawn(function(q) q:push("hello") end, q)
      assert.equal("hello", q:pop(10))
      f:get()
    end)

    it("wakes up a blocked pop when closed", function()
      local q, ready = parallel.queue(), parallel.event()
      local f = parallel.spawn(function(q, ready) ready:set(); return q:pop(10) end, q, ready)
      ready:wait()
      q:close()
      local v, why = f:get()
      assert.is_nil(v)
      assert.equal("closed", why)
    end)

    it("is interrupted by Ctrl-C in the main thread #child", function()
      local out, secs = interrupted([[
        local q = require("parallel").queue()
        q:pop()
      ]])
      assert.matches("interrupted", out)
      assert.is_true(secs < 3)
    end)
  end)

  describe("close", function()
    it("is safe to repeat", function()
      local q = parallel.queue()
      q:close(); q:close()
      assert.equal("closed", select(2, q:pop()))
    end)

    it("wakes up a blocked push", function()
      local q, ready = parallel.queue(1), parallel.event()
      q:push(1)
      local f = parallel.spawn(function(q, ready)
        ready:set()
        q:push(2, 10)
      end, q, ready)
      ready:wait()
      q:close()
      local ok, e = pcall(f.get, f)
      assert.is_false(ok)
      assert.matches("queue is closed", tostring(e))
    end)
  end)

  describe("#q", function()
    it("counts waiting items", function()
      local q = parallel.queue()
      assert.equal(0, #q)
      q:push(1); q:push(2)
      assert.equal(2, #q)
      q:pop()
      assert.equal(1, #q)
    end)
  end)

  describe("items", function()
    it("iterates until closed and drained", function()
      local q = parallel.queue()
      for i = 1, 5 do q:push(i) end
      q:close()
      local got = {}
      for v in q:items() do got[#got + 1] = v end
      assert.same({1, 2, 3, 4, 5}, got)
    end)
  end)

  describe("across threads", function()
    it("passes every item from one producer to one consumer, in order", function()
      local q = parallel.queue(64)
      local n = 20000
      local f = parallel.spawn(function(q, n)
        for i = 1, n do q:push(i) end
        q:close()
      end, q, n)
      local expect = 1
      for v in q:items() do
        assert(v == expect, "out of order")
        expect = expect + 1
      end
      f:get()
      assert.equal(n + 1, expect)
    end)

    it("loses and duplicates nothing with several producers and consumers #stress", function()
      local q, done = parallel.queue(16), parallel.queue()
      local producers, consumers, n = 3, 3, 5000
      local pf, cf = {}, {}
      for c = 1, consumers do
        cf[c] = parallel.spawn(function(q)
          local seen = {}
          for v in q:items() do seen[#seen + 1] = v end
          return seen
        end, q)
      end
      for p = 1, producers do
        pf[p] = parallel.spawn(function(q, p, n)
          for i = 1, n do q:push(p * 1000000 + i) end
        end, q, p, n)
      end
      for p = 1, producers do pf[p]:get() end
      q:close()
      local count, seen = 0, {}
      for c = 1, consumers do
        for _, v in ipairs(cf[c]:get()) do
          assert(not seen[v], "duplicate item")
          seen[v] = true
          count = count + 1
        end
      end
      assert.equal(producers * n, count)
      done:close()
    end)
  end)
end)

describe("parallel.queue full and capacity", function()
  it("report the bound", function()
    local q = parallel.queue(2)
    assert.equal(2, q:capacity())
    assert.is_false(q:full())
    q:push(1); q:push(2)
    assert.is_true(q:full())
    q:pop()
    assert.is_false(q:full())
  end)

  it("an unbounded queue is never full", function()
    local q = parallel.queue()
    for i = 1, 100 do q:push(i) end
    assert.is_false(q:full())
    assert.equal(math.huge, q:capacity())
  end)
end)

describe("parallel.queue task_done and join", function()
  it("join returns at once when nothing was pushed", function()
    assert.is_true(parallel.queue():join(0))
  end)

  it("join waits until every pushed item is marked done", function()
    local q = parallel.queue()
    q:push("a"); q:push("b")
    q:pop()
    q:task_done()
    assert.is_false(q:join(0.01))
    q:pop()
    q:task_done()
    assert.is_true(q:join(0))
  end)

  it("join wakes when a worker marks the last item done", function()
    local q = parallel.queue()
    for i = 1, 10 do q:push(i) end
    local f = parallel.spawn(function(q)
      local sum = 0
      for _ = 1, 10 do sum = sum + q:pop(); q:task_done() end
      return sum
    end, q)
    assert.is_true(q:join(30))
    assert.equal(55, f:get())
  end)

  it("task_done called more often than items were pushed raises", function()
    local q = parallel.queue()
    assert_raises("task_done called more times than items were pushed", q.task_done, q)
    q:push(1)
    q:task_done()
    assert_raises("task_done called more times than items were pushed", q.task_done, q)
  end)
end)
