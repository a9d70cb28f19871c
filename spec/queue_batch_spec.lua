-- Batches through queues and pipes: q:push_all(list [, timeout]),
-- q:pop_many(max [, timeout]), a:send_all(list), b:recv_many(max [, timeout]);
-- and the integers and booleans that travel as immediates.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

-- Returns once fn() is true (another thread's progress), or fails after 10 s.
local function until_true(fn)
  local stop = parallel.now() + 10
  while not fn() do assert.is_true(parallel.now() < stop, "timed out") end
end

describe("parallel.queue batches", function()
  describe("push_all", function()
    it("queues every item of the list in order, of any sendable type", function()
      local q = parallel.queue()
      local inner = parallel.queue()
      assert.is_true(q:push_all({ 1, 2.5, "three", { four = 4 }, true, false, inner }))
      assert.equal(7, #q)
      assert.equal(1, q:pop())
      assert.equal(2.5, q:pop())
      assert.equal("three", q:pop())
      assert.same({ four = 4 }, q:pop())
      assert.is_true(q:pop())
      assert.is_false(q:pop())
      assert.equal(inner, q:pop())
    end)

    it("of an empty list pushes nothing and succeeds", function()
      local q = parallel.queue(1)
      assert.is_true(q:push_all({}))
      assert.equal(0, #q)
    end)

    it("waits for room in a bounded queue, and fills it as room comes", function()
      local q = parallel.queue(2)
      local list = {}
      for i = 1, 50 do list[i] = i end
      local producer = parallel.spawn(function(q, list) return q:push_all(list) end, q, list)
      local got = {}
      while #got < 50 do
        for _, v in ipairs(q:pop_many(50)) do got[#got + 1] = v end
      end
      assert.is_true(producer:get())
      assert.same(list, got)
    end)

    it("returns false and the count pushed (the first items) when the timeout passes", function()
      local q = parallel.queue(3)
      local ok, n = q:push_all({ 1, 2, 3, 4, 5 }, 0.01)
      assert.is_false(ok)
      assert.equal(3, n)
      assert.same({ 1, 2, 3 }, q:pop_many(10))
      ok, n = q:push_all({ 6, 7, 8, 9 }, 0)
      assert.is_false(ok)
      assert.equal(3, n)
    end)

    it("counts each item as unfinished work for join", function()
      local q = parallel.queue()
      q:push_all({ "a", "b", "c" })
      assert.equal(3, #q:pop_many(3))
      q:task_done(); q:task_done()
      assert.is_false(q:join(0))
      q:task_done()
      assert.is_true(q:join(0))
    end)

    it("raises on a closed queue", function()
      local q = parallel.queue()
      q:close()
      assert_raises("queue is closed", function() q:push_all({ 1 }) end)
    end)

    it("says how many went in when the queue closes while it waits", function()
      local q = parallel.queue(2)
      local producer = parallel.spawn(function(q)
        local ok, e = pcall(q.push_all, q, { 1, 2, 3 })
        return ok, e
      end, q)
      until_true(function() return #q == 2 end)
      q:close()
      local ok, e = producer:get()
      assert.is_false(ok)
      assert.matches("queue is closed %(2 of 3 items pushed%)$", e)
      assert.same({ 1, 2 }, q:pop_many(5))
    end)

    it("pushes nothing when an item cannot be sent", function()
      local q = parallel.queue()
      assert.has_error(function() q:push_all({ 1, coroutine.create(print) }) end)
      assert.equal(0, #q)
    end)

    it("reads a list with a metatable through __index and __len", function()
      local q = parallel.queue()
      local proxy = setmetatable({}, {
        __index = function(_, i) return i * 10 end,
        __len = function() return 3 end,
      })
      assert.is_true(q:push_all(proxy))
      assert.same({ 10, 20, 30 }, q:pop_many(10))
    end)

    it("keeps order and kinds over long lists of mixed values", function()
      local q = parallel.queue()
      local list = {}
      for i = 1, 1000 do
        list[i] = i % 5 == 0 and tostring(i) or i % 7 == 0 and i + 0.5 or i % 11 == 0 and (i % 2 == 0) or i
      end
      assert.is_true(q:push_all(list))
      local got = q:pop_many(2000)
      assert.equal(1000, #got)
      for i = 1, 1000 do
        assert.equal(list[i], got[i])
        assert.equal(math.type(list[i]), math.type(got[i]))
      end
    end)

    it("pushes nothing when an item far down a long list is nil or cannot be sent", function()
      local q = parallel.queue()
      local list = {}
      for i = 1, 300 do list[i] = { i } end
      list[200] = coroutine.create(print)
      assert.has_error(function() q:push_all(list) end)
      -- a constructor sizes the array exactly: # is 302 with the hole at 301
      list = load("return { " .. ("0, "):rep(300) .. "nil, 302 }")()
      assert.equal(302, #list)
      assert_raises("bad argument #1 to 'push_all' (item 301 is nil)", function() q:push_all(list) end)
      assert.equal(0, #q)
    end)

    it("checks its arguments", function()
      local q = parallel.queue()
      assert_raises("bad argument #1 to 'push_all' (table expected, got number)", function() q:push_all(1) end)
      assert_raises("bad argument #1 to 'push_all' (item 2 is nil)", function() q:push_all({ 1, nil, 3 }) end)
      assert.equal(0, #q)
    end)
  end)

  describe("pop_many", function()
    it("takes every waiting item up to max, in order", function()
      local q = parallel.queue()
      for i = 1, 10 do q:push(i) end
      assert.same({ 1, 2, 3, 4 }, q:pop_many(4))
      assert.same({ 5, 6, 7, 8, 9, 10 }, q:pop_many(100))
      assert.equal(0, #q)
    end)

    it("returns nil, 'timeout' when nothing comes in time", function()
      local q = parallel.queue()
      assert.same({ nil, "timeout" }, { q:pop_many(5, 0) })
      assert.same({ nil, "timeout" }, { q:pop_many(5, 0.01) })
    end)

    it("drains a closed queue, then returns nil, 'closed'", function()
      local q = parallel.queue()
      q:push_all({ "a", "b" })
      q:close()
      assert.same({ "a", "b" }, q:pop_many(5))
      assert.same({ nil, "closed" }, { q:pop_many(5) })
    end)

    it("wakes on a batch and takes the whole of it", function()
      local q, started = parallel.queue(), parallel.event()
      local consumer = parallel.spawn(function(q, started)
        started:set()
        return q:pop_many(100)
      end, q, started)
      started:wait()
      q:push_all({ 1, 2, 3, 4, 5 })
      assert.same({ 1, 2, 3, 4, 5 }, consumer:get())
    end)

    it("frees room for waiting pushers", function()
      local q = parallel.queue(2)
      q:push_all({ 1, 2 })
      local producer = parallel.spawn(function(q) return q:push(3) end, q)
      until_true(function() return #q == 2 end)
      assert.same({ 1, 2 }, q:pop_many(2))
      assert.is_true(producer:get())
      assert.equal(3, q:pop())
    end)

    it("checks its arguments", function()
      local q = parallel.queue()
      assert_raises("bad argument #1 to 'pop_many' (max must be positive)", function() q:pop_many(0) end)
      assert_raises("bad argument #1 to 'pop_many' (number expected, got no value)", function() q:pop_many() end)
      assert_raises("bad argument #2 to 'pop_many' (timeout is NaN)", function() q:pop_many(1, 0 / 0) end)
    end)
  end)

  describe("immediates", function()
    it("carry integers at every size, booleans, and keep floats floats", function()
      local q = parallel.queue()
      local values = { 0, -1, 1, (1 << 61) - 1, -(1 << 61), 1 << 61, -(1 << 61) - 1,
                       math.maxinteger, math.mininteger, 1.0, -0.0, 2 ^ 62, true, false }
      for _, v in ipairs(values) do q:push(v) end
      q:push_all(values)
      for _, list in ipairs({ (function()
        local t = {}
        for i = 1, #values do t[i] = q:pop() end
        return t
      end)(), q:pop_many(#values) }) do
        for i, v in ipairs(values) do
          assert.equal(v, list[i])
          assert.equal(math.type(v), math.type(list[i]))
        end
      end
      assert.equal("-0.0", tostring(values[11]))
    end)

    it("are dropped without harm when a queue goes with them inside", function()
      local q = parallel.queue()
      q:push_all({ 1, true, "x", 2 })
      q = nil
      collectgarbage()
      collectgarbage()
    end)
  end)
end)

describe("parallel.pipe batches", function()
  it("send_all sends every item in order; recv_many takes them up to max", function()
    local a, b = parallel.pipe()
    a:send_all({ 1, "two", { 3 } })
    assert.same({ 1, "two", { 3 } }, b:recv_many(10))
    b:send_all({ true, false })
    assert.same({ true }, a:recv_many(1))
    assert.same({ false }, a:recv_many(1))
  end)

  it("recv_many times out, and ends once the other side closes", function()
    local a, b = parallel.pipe()
    assert.same({ nil, "timeout" }, { b:recv_many(3, 0) })
    a:send_all({ 1 })
    a:close()
    assert.same({ 1 }, b:recv_many(3))
    assert.same({ nil, "closed" }, { b:recv_many(3) })
  end)

  it("send_all raises on a closed pipe, and checks its arguments", function()
    local a, b = parallel.pipe()
    assert_raises("bad argument #1 to 'send_all' (table expected, got no value)", function() a:send_all() end)
    assert_raises("bad argument #1 to 'recv_many' (max must be positive)", function() b:recv_many(-1) end)
    a:close()
    assert_raises("pipe is closed", function() a:send_all({ 1 }) end)
  end)
end)
