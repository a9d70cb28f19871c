-- parallel.dict: a shared table with atomic per-key update.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

describe("parallel.dict", function()
  describe("indexing", function()
    it("stores and reads copies of values", function()
      local d = parallel.dict()
      local t = {1, {2}}
      d.t = t
      d[1] = "one"
      d[true] = 2.5
      assert.same(t, d.t)
      assert.are_not.equal(t, d.t)
      assert.equal("one", d[1])
      assert.equal(2.5, d[true])
      assert.is_nil(d.missing)
    end)

    it("treats 2 and 2.0 as the same key, like a table", function()
      local d = parallel.dict()
      d[2.0] = "x"
      assert.equal("x", d[2])
      assert.equal("integer", math.type(d:keys()[1]))
    end)

    it("deletes on nil", function()
      local d = parallel.dict()
      d.a = 1
      d.a = nil
      assert.is_nil(d.a)
      assert.equal(0, #d)
      d.never = nil
    end)

    it("rejects other keys", function()
      local d = parallel.dict()
      assert_raises("bad argument #2 to 'index' (dict key must be a string, number or boolean)",
        function() return d[{}] end)
      assert_raises("bad argument #2 to 'newindex' (dict key must be a string, number or boolean)",
        function() d[print] = 1 end)
      assert_raises("bad argument #2 to 'newindex' (dict key is NaN)",
        function() d[0/0] = 1 end)
    end)

    it("rejects values that cannot travel", function()
      local d = parallel.dict()
      assert_raises("cannot send thread at value: a coroutine cannot travel; create it in the thread that uses it", function() d.x = coroutine.create(print) end)
      assert.equal(0, #d)
    end)

    it("holds shared objects by reference", function()
      local d, q = parallel.dict(), parallel.queue()
      d.q = q
      d.q:push(1)
      assert.equal(1, q:pop())
    end)

    it("gives methods precedence over stored keys of the same name", function()
      local d = parallel.dict()
      d.keys = 1
      assert.equal("function", type(d.keys))
      assert.same({"keys"}, d:keys())
    end)
  end)

  -- The entry that made the table grow was linked to its bucket twice
  -- (by the rehash, then again: a chain pointing to itself), so a later
  -- lookup of an absent key in that bucket looped forever (about the
  -- 3,000th of 8,000 integer keys).
  it("holds many keys, each found again #child", function()
    local out, err, status = support.run_lua([[
      local d = require("parallel").dict()
      for i = 1, 50000 do d[i] = i end
      for i = 1, 50000 do assert(d[i] == i) end
      for i = 50001, 60000 do assert(d[i] == nil) end
      for i = 1, 50000, 2 do d[i] = nil end
      print(#d, d[2], d[3])
    ]])
    assert.equal(0, status, err)
    assert.equal("25000\t2\tnil\n", out)
  end)

  describe("#d", function()
    it("counts keys", function()
      local d = parallel.dict()
      d.a, d.b = 1, 2
      assert.equal(2, #d)
    end)
  end)

  describe("keys", function()
    it("lists keys in insertion order", function()
      local d = parallel.dict()
      d.z = 1
      d[1] = 2
      d[false] = 3
      assert.same({"z", 1, false}, d:keys())
    end)
  end)

  describe("pairs", function()
    it("iterates over a snapshot", function()
      local d = parallel.dict()
      d.a, d.b = 1, 2
      local seen = {}
      for k, v in pairs(d) do
        seen[k] = v
        d.c = 3   -- not in the snapshot
      end
      assert.same({a = 1, b = 2}, seen)
    end)
  end)

  describe("update", function()
    it("stores fn(old) and returns it", function()
      local d = parallel.dict()
      assert.equal(1, d:update("n", function(old) return (old or 0) + 1 end))
      assert.equal(2, d:update("n", function(old) return old + 1 end))
      assert.equal(2, d.n)
    end)

    it("deletes when fn returns nil", function()
      local d = parallel.dict()
      d.n = 1
      d:update("n", function() return nil end)
      assert.is_nil(d.n)
      assert.equal(0, #d)
    end)

    it("leaves the key unchanged and usable when fn raises", function()
      local d = parallel.dict()
      d.n = 1
      assert_raises("boom", function() d:update("n", function() error("boom", 0) end) end)
      assert.equal(1, d.n)
      assert.equal(2, d:update("n", function(old) return old + 1 end))
      assert.is_false(pcall(d.update, d, "absent", function() error("x") end))
      assert.equal(1, #d)
    end)

    it("raises on a nested update or assignment of the same key", function()
      local d = parallel.dict()
      assert_raises("dict key is being updated by this thread", function()
        d:update("k", function() d:update("k", function() return 1 end) end)
      end)
      assert_raises("dict key is being updated by this thread", function()
        d:update("k", function() d.k = 1 end)
      end)
      assert.is_nil(d.k)
      assert.equal(0, #d)
    end)

    it("checks its arguments", function()
      local d = parallel.dict()
      assert_raises("bad argument #1 to 'update' (dict key must be a string, number or boolean)",
        function() d:update({}, print) end)
      assert_raises("bad argument #2 to 'update' (function expected, got nil)",
        function() d:update("k", nil) end)
    end)

    it("is atomic per key across threads #stress", function()
      local d, n, fs = parallel.dict(), 2000, {}
      for t = 1, 3 do
        fs[t] = parallel.spawn(function(d, n)
          for i = 1, n do
            d:update("count", function(old) return (old or 0) + 1 end)
            d:update(i % 7, function(old) return (old or 0) + 1 end)
          end
        end, d, n)
      end
      for t = 1, 3 do fs[t]:get() end
      assert.equal(3 * n, d.count)
      local total = 0
      for k = 0, 6 do total = total + d[k] end
      assert.equal(3 * n, total)
    end)
  end)
end)
