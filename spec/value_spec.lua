-- parallel.value: one shared number with atomic add and cas.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

describe("parallel.value", function()
  describe("constructor", function()
    it("starts at init, 0 by default", function()
      assert.equal(5, parallel.value("int64", 5):get())
      assert.equal(0, parallel.value("int64"):get())
      assert.equal(0.0, parallel.value("double"):get())
    end)

    it("checks the type and the range", function()
      assert_raises("bad argument #1 to 'value' (invalid option 'long')",
        function() parallel.value("long", 1) end)
      assert_raises("value 300 out of range for uint8", function() parallel.value("uint8", 300) end)
    end)
  end)

  describe("get and set", function()
    it("store a number of the element type", function()
      local v = parallel.value("int32", 0)
      v:set(42)
      assert.equal(42, v:get())
      assert.equal("integer", math.type(v:get()))
      assert_raises("bad argument #1 to 'set' (number has no integer representation)",
        function() v:set(0.5) end)
    end)
  end)

  describe("add", function()
    it("returns the new value", function()
      local v = parallel.value("int64", 1)
      assert.equal(3, v:add(2))
      assert.equal(3, v:get())
    end)

    it("raises on an int64 result out of range and leaves the value alone", function()
      local v = parallel.value("int64", math.maxinteger - 1)
      assert.equal(math.maxinteger, v:add(1))
      assert_raises("result out of range for int64", function() v:add(1) end)
      assert.equal(math.maxinteger, v:get())
      v:set(math.mininteger)
      assert_raises("result out of range for int64", function() v:add(-1) end)
      assert.equal(math.mininteger, v:get())
    end)

    it("takes an integral float delta for int64 and refuses a fractional one", function()
      local v = parallel.value("int64", 10)
      assert.equal(12, v:add(2.0))
      assert.equal("integer", math.type(v:add(0)))
      assert_raises("bad argument #1 to 'add' (number has no integer representation)", function() v:add(0.5) end)
      assert_raises("bad argument #1 to 'add' (number expected, got string)", function() v:add("x") end)
      assert.equal(12, v:get())
    end)

    it("works for the other types too (uint8, double)", function()
      local u, d = parallel.value("uint8", 250), parallel.value("double", 0.5)
      assert.equal(255, u:add(5))
      assert_raises("result out of range for uint8", function() u:add(1) end)
      assert.equal(0.75, d:add(0.25))
    end)

    it("is atomic across threads", function()
      local v, n, fs = parallel.value("int64", 0), 20000, {}
      for t = 1, 2 do
        fs[t] = parallel.spawn(function(v, n) for _ = 1, n do v:add(1) end end, v, n)
      end
      for t = 1, 2 do fs[t]:get() end
      assert.equal(2 * n, v:get())
    end)
  end)

  describe("cas", function()
    it("swaps only when the value matches", function()
      local v = parallel.value("int64", 1)
      assert.is_false(v:cas(2, 3))
      assert.is_true(v:cas(1, 3))
      assert.equal(3, v:get())
    end)

    it("builds an exact counter across threads #stress", function()
      local v, fs = parallel.value("uint32", 0), {}
      for t = 1, 3 do
        fs[t] = parallel.spawn(function(v)
          for _ = 1, 10000 do
            local old
            repeat old = v:get() until v:cas(old, old + 1)
          end
        end, v)
      end
      for t = 1, 3 do fs[t]:get() end
      assert.equal(30000, v:get())
    end)
  end)
end)
