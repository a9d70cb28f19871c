-- parallel.array: typed shared memory, bounds and range checks, atomics.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

local ranges = {
  int8 = {-128, 127}, uint8 = {0, 255}, int16 = {-32768, 32767}, uint16 = {0, 65535},
  int32 = {-2147483648, 2147483647}, uint32 = {0, 4294967295},
}

describe("parallel.array", function()
  describe("constructor", function()
    it("makes n zeros", function()
      local a = parallel.array("double", 3)
      assert.equal(3, #a)
      assert.same({0.0, 0.0, 0.0}, a:totable())
    end)

    it("fills with a value", function()
      assert.same({7, 7}, parallel.array("int32", 2, 7):totable())
    end)

    it("copies a table", function()
      assert.same({1, 2, 3}, parallel.array("int64", {1, 2, 3}):totable())
    end)

    it("rejects an unknown type", function()
      assert_raises("bad argument #1 to 'array' (invalid option 'int128')",
        function() parallel.array("int128", 1) end)
    end)

    it("rejects a negative size", function()
      assert_raises("bad argument #2 to 'array' (size must be non-negative)",
        function() parallel.array("int8", -1) end)
    end)

    it("rejects a size past 1 TiB", function()
      assert_raises("bad argument #2 to 'array' (size too large)",
        function() parallel.array("double", 2^37 + 1) end)
      assert_raises("bad argument #2 to 'array' (size too large)",
        function() parallel.array("int8", math.maxinteger) end)
    end)

    it("rejects a size that is neither a number nor a table", function()
      assert_raises("bad argument #2 to 'array' (number or table expected, got string)",
        function() parallel.array("int8", "x") end)
    end)
  end)

  describe("indexing", function()
    it("is 1-based, bounds-checked for writes, and reads nil outside [1, #a] as a table does", function()
      local a = parallel.array("int32", 10)
      a[1] = 5; a[10] = 6
      assert.equal(5, a[1])
      assert.equal(6, a[10])
      assert.is_nil(a[11])
      assert.is_nil(a[0])
      assert.is_nil(a[1.5])
      assert_raises("index 0 out of range [1, 10]", function() a[0] = 1 end)
      assert_raises("index 11 out of range [1, 10]", function() a[11] = 1 end)
    end)

    it("gives integers for integer types and floats for float types", function()
      local i, f = parallel.array("int16", 1), parallel.array("float", 1)
      i[1] = 3.0
      f[1] = 3
      assert.equal("integer", math.type(i[1]))
      assert.equal("float", math.type(f[1]))
    end)

    for name, r in pairs(ranges) do
      it("checks the range of " .. name, function()
        local a = parallel.array(name, 1)
        a[1] = r[1]; assert.equal(r[1], a[1])
        a[1] = r[2]; assert.equal(r[2], a[1])
        assert_raises(("value %d out of range for %s"):format(r[2] + 1, name),
          function() a[1] = r[2] + 1 end)
        assert_raises(("value %d out of range for %s"):format(r[1] - 1, name),
          function() a[1] = r[1] - 1 end)
      end)
    end

    it("checks the range of uint64 and float", function()
      assert_raises("value -1 out of range for uint64",
        function() parallel.array("uint64", 1)[1] = -1 end)
      assert_raises("value 1e+39 out of range for float",
        function() parallel.array("float", 1)[1] = 1e39 end)
    end)

    it("keeps uint64 values above math.maxinteger as floats", function()
      local a = parallel.array("uint64", 1)
      a[1] = 2.0^63
      assert.equal(2.0^63, a[1])
    end)

    it("rejects a fraction in an integer array", function()
      local a = parallel.array("int64", 1)
      assert_raises("bad argument #3 to 'newindex' (number has no integer representation)",
        function() a[1] = 2.5 end)
    end)

    it("rejects a non-number", function()
      local a = parallel.array("double", 1)
      assert_raises("bad argument #3 to 'newindex' (number expected, got string)",
        function() a[1] = "1" end)
    end)

    it("gives the element type as a.type", function()
      assert.equal("uint16", parallel.array("uint16", 1).type)
    end)
  end)

  describe("add", function()
    it("returns the new value", function()
      local a = parallel.array("int32", 2)
      assert.equal(5, a:add(2, 5))
      assert.equal(2, a:add(2, -3))
      assert.equal(2, a[2])
    end)

    it("works on floats", function()
      local a = parallel.array("double", 1, 0.5)
      assert.equal(0.75, a:add(1, 0.25))
    end)

    it("raises instead of wrapping around", function()
      local a = parallel.array("uint8", 1, 250)
      assert_raises("result out of range for uint8", function() a:add(1, 10) end)
      assert.equal(250, a[1])
      local b = parallel.array("int64", 1, math.maxinteger)
      assert_raises("result out of range for int64", function() b:add(1, 1) end)
    end)

    it("is atomic across threads #stress", function()
      local a, n, fs = parallel.array("int64", 4), 20000, {}
      for t = 1, 4 do
        fs[t] = parallel.spawn(function(a, n)
          for i = 1, n do a:add(i % 4 + 1, 1) end
        end, a, n)
      end
      for t = 1, 4 do fs[t]:get() end
      assert.equal(4 * n, a:sum())
      assert.same({n, n, n, n}, a:totable())
    end)

    it("is atomic on doubles across threads", function()
      local a, fs = parallel.array("double", 1), {}
      for t = 1, 2 do
        fs[t] = parallel.spawn(function(a) for _ = 1, 5000 do a:add(1, 0.5) end end, a)
      end
      for t = 1, 2 do fs[t]:get() end
      assert.equal(5000.0, a[1])
    end)
  end)

  describe("cas", function()
    it("swaps only when the value matches", function()
      local a = parallel.array("float", 1, 1.5)
      assert.is_false(a:cas(1, 2, 3))
      assert.is_true(a:cas(1, 1.5, 3))
      assert.equal(3.0, a[1])
    end)
  end)

  describe("fill, sum, min and max", function()
    it("work on the whole array or a range", function()
      local a = parallel.array("int8", 5)
      a:fill(2)
      a:fill(-1, 2, 3)
      assert.same({2, -1, -1, 2, 2}, a:totable())
      assert.equal(4, a:sum())
      assert.equal(-2, a:sum(2, 3))
      assert.equal(-1, a:min())
      assert.equal(2, a:max(3, 5))
    end)

    it("give nil for min and max of an empty range", function()
      local a = parallel.array("double", 0)
      assert.is_nil(a:min())
      assert.equal(0.0, a:sum())
    end)

    it("check their range", function()
      local a = parallel.array("int8", 5)
      assert_raises("index 6 out of range [1, 5]", function() a:sum(2, 6) end)
    end)
  end)

  describe("totable and set", function()
    it("copy out and in at an offset", function()
      local a = parallel.array("uint32", 4)
      a:set({7, 8}, 1)
      assert.same({0, 7, 8, 0}, a:totable())
      assert.same({7, 8}, a:totable(2, 3))
    end)

    it("set checks bounds and writes nothing on a bad value", function()
      local a = parallel.array("uint8", 2)
      assert_raises("index 3 out of range [1, 2]", function() a:set({1, 2, 3}) end)
      assert_raises("value 256 out of range for uint8", function() a:set({1, 256}) end)
      assert.same({0, 0}, a:totable())
    end)
  end)

  describe("view", function()
    it("shares the memory", function()
      local a = parallel.array("double", 10)
      local v = a:view(3, 5)
      assert.equal(3, #v)
      v[1] = 1.5
      assert.equal(1.5, a[3])
      assert.equal("double", v.type)
      assert.is_nil(v[4])
      assert_raises("index 4 out of range [1, 3]", function() v[4] = 1 end)
    end)

    it("keeps the memory alive without the array", function()
      local v = parallel.array("int32", {1, 2, 3}):view(2)
      collectgarbage(); collectgarbage()
      assert.same({2, 3}, v:totable())
    end)

    it("lets threads fill disjoint chunks", function()
      local a, fs = parallel.array("int32", 100), {}
      for t = 0, 3 do
        fs[#fs + 1] = parallel.spawn(function(v, base)
          for i = 1, #v do v[i] = base + i end
        end, a:view(t * 25 + 1, t * 25 + 25), t * 25)
      end
      for _, f in ipairs(fs) do f:get() end
      for i = 1, 100 do assert.equal(i, a[i]) end
    end)
  end)
end)

describe("parallel.array vector operations", function()
  describe("dot", function()
    it("sums the products, over a range too", function()
      local a = parallel.array("double", { 1, 2, 3, 4, 5 })
      local b = parallel.array("double", { 2, 2, 2, 2, 2 })
      assert.equal(30.0, a:dot(b))
      assert.equal(10.0, a:dot(b, 2, 3))
      assert.equal(0.0, a:dot(b, 3, 2))
      assert.equal(math.type(a:dot(b)), "float")
    end)

    it("is exact on integer arrays and mixes types", function()
      local a = parallel.array("int64", { math.maxinteger // 2, 1 })
      local b = parallel.array("int8", { 2, 1 })
      assert.equal(math.maxinteger, a:dot(b))
      assert.equal("integer", math.type(a:dot(b)))
      local c = parallel.array("int64", { math.maxinteger, math.maxinteger })
      assert.equal("float", math.type(c:dot(c)))
      local f = parallel.array("float", { 0.5, 0.5 })
      assert.equal(1.5, parallel.array("uint8", { 1, 2 }):dot(f))
    end)

    it("agrees with a Lua loop on a long random array", function()
      local n = 10007
      local a, b = parallel.array("double", n), parallel.array("double", n)
      local s = 0
      for i = 1, n do
        a[i], b[i] = math.random(), math.random()
        s = s + a[i] * b[i]
      end
      assert.is_true(math.abs(a:dot(b) - s) < 1e-9 * s)
    end)

    it("works on views, so parts add up to the whole", function()
      local a = parallel.array("double", 100, 1.5)
      local b = parallel.array("double", 100, 2)
      assert.equal(a:dot(b), a:view(1, 40):dot(b:view(1, 40)) + a:view(41, 100):dot(b:view(41, 100)))
    end)

    it("checks its arguments", function()
      local a = parallel.array("double", 3)
      assert_raises("bad argument #1 to 'dot' (lengths differ (3 and 2))",
        function() a:dot(parallel.array("double", 2)) end)
      assert_raises("bad argument #1 to 'dot' (parallel.array expected, got table)",
        function() a:dot({ 1, 2, 3 }) end)
      assert_raises("index 5 out of range [1, 3]", function() a:dot(a, 1, 5) end)
      assert_raises("range [3, 1] ends before it starts: give i <= j + 1 (i = j + 1 is empty)", function() a:dot(a, 3, 1) end)
      assert.are.equal(0, a:dot(a, 3, 2))     -- i = j + 1: the empty range
    end)
  end)

  describe("scale", function()
    it("multiplies in place and returns the array", function()
      local a = parallel.array("double", { 1, 2, 3 })
      assert.equal(a, a:scale(0.5))
      assert.same({ 0.5, 1.0, 1.5 }, a:totable())
      local i = parallel.array("int16", { 1, -2, 3 })
      i:scale(3)
      assert.same({ 3, -6, 9 }, i:totable())
    end)

    it("writes nothing when an integer result would not fit", function()
      local a = parallel.array("int8", { 1, 100, 2 })
      assert_raises("result out of range for int8 at index 2 (nothing written)",
        function() a:scale(2) end)
      assert.same({ 1, 100, 2 }, a:totable())
      assert_raises("bad argument #1 to 'scale' (integer expected for a int8 array)",
        function() a:scale(0.5) end)
    end)

    it("scales only a view's part", function()
      local a = parallel.array("float", { 1, 2, 3, 4 })
      a:view(3, 4):scale(10)
      assert.same({ 1.0, 2.0, 30.0, 40.0 }, a:totable())
    end)
  end)

  describe("axpy", function()
    it("adds k times b", function()
      local a = parallel.array("double", { 1, 1, 1 })
      local b = parallel.array("double", { 1, 2, 3 })
      assert.equal(a, a:axpy(2, b))
      assert.same({ 3.0, 5.0, 7.0 }, a:totable())
      local i = parallel.array("int32", { 10, 20 })
      i:axpy(-1, parallel.array("uint8", { 1, 2 }))
      assert.same({ 9, 18 }, i:totable())
    end)

    it("refuses to add floats into integers, and overflowing results", function()
      local i = parallel.array("int32", 2)
      assert_raises("bad argument #2 to 'axpy' (a double array cannot be added to a int32 array)",
        function() i:axpy(1, parallel.array("double", 2)) end)
      local u = parallel.array("uint8", { 0, 250 })
      assert_raises("result out of range for uint8 at index 2 (nothing written)",
        function() u:axpy(10, parallel.array("uint8", { 1, 1 })) end)
      assert.same({ 0, 250 }, u:totable())
    end)
  end)

  describe("copy", function()
    it("copies and converts", function()
      local a = parallel.array("double", 3)
      assert.equal(a, a:copy(parallel.array("int8", { -1, 0, 1 })))
      assert.same({ -1.0, 0.0, 1.0 }, a:totable())
      local i = parallel.array("uint8", 2)
      i:copy(parallel.array("int64", { 7, 255 }))
      assert.same({ 7, 255 }, i:totable())
    end)

    it("refuses what does not fit, writing nothing", function()
      local i = parallel.array("uint8", { 1, 1 })
      assert_raises("result out of range for uint8 at index 2 (nothing written)",
        function() i:copy(parallel.array("int64", { 2, 256 })) end)
      assert.same({ 1, 1 }, i:totable())
      assert_raises("bad argument #1 to 'copy' (a float array cannot be copied into a int8 array)",
        function() parallel.array("int8", 1):copy(parallel.array("float", 1)) end)
    end)
  end)

  it("a pool computes a dot product over views of a shared array", function()
    local n = 100000
    local a, b = parallel.array("double", n, 0.5), parallel.array("double", n, 4)
    local pool <close> = parallel.pool(2)
    local parts = {}
    for k = 0, 3 do parts[#parts + 1] = { k * n // 4 + 1, (k + 1) * n // 4 } end
    local r = pool:map(function(p) return a:view(p[1], p[2]):dot(b:view(p[1], p[2])) end, parts)
    local s = 0
    for k = 1, 4 do s = s + r[k] end
    assert.equal(a:dot(b), s)
  end)
end)
