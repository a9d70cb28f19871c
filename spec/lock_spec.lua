-- parallel.lock and parallel.rlock: acquire/release, hold, with, threads.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

for _, kind in ipairs{"lock", "rlock"} do
  describe("parallel." .. kind, function()
    describe("acquire", function()
      it("returns true and locks", function()
        local l = parallel[kind]()
        assert.is_false(l:locked())
        assert.is_true(l:acquire())
        assert.is_true(l:locked())
        l:release()
        assert.is_false(l:locked())
      end)

      it("returns false on timeout while another thread holds it", function()
        local l, held, done = parallel[kind](), parallel.event(), parallel.event()
        local f = parallel.spawn(function(l, held, done)
          l:acquire(); held:set(); done:wait(); l:release()
        end, l, held, done)
        held:wait()
        assert.is_false(l:acquire(0))
        assert.is_false(l:acquire(0.01))
        done:set()
        f:get()
        assert.is_true(l:acquire(10))
        l:release()
      end)
    end)

    describe("hold", function()
      it("releases at scope exit", function()
        local l = parallel[kind]()
        do
          local _ <close> = l:hold()
          assert.is_true(l:locked())
        end
        assert.is_false(l:locked())
      end)

      it("releases when the scope raises", function()
        local l = parallel[kind]()
        local ok = pcall(function()
          local _ <close> = l:hold()
          error("boom")
        end)
        assert.is_false(ok)
        assert.is_false(l:locked())
      end)
    end)

    describe("with", function()
      it("returns fn's results and releases", function()
        local l = parallel[kind]()
        local a, b = l:with(function(x, y)
          assert.is_true(l:locked())
          return x + 1, y
        end, 1, "y")
        assert.equal(2, a)
        assert.equal("y", b)
        assert.is_false(l:locked())
      end)

      it("releases and re-raises when fn raises", function()
        local l = parallel[kind]()
        local err = {}
        local ok, e = pcall(l.with, l, function() error(err) end)
        assert.is_false(ok)
        assert.equal(err, e)
        assert.is_false(l:locked())
      end)

      it("requires a function", function()
        local l = parallel[kind]()
        assert_raises("bad argument #1 to 'with' (function expected, got no value)",
          function() l:with() end)
      end)
    end)

    describe("across threads", function()
      it("makes read-modify-write exact #stress", function()
        local l, v = parallel[kind](), parallel.value("int64", 0)
        local n, fs = 20000, {}
        for t = 1, 3 do
          fs[t] = parallel.spawn(function(l, v, n)
            for _ = 1, n do
              l:acquire()
              v:set(v:get() + 1)
              l:release()
            end
          end, l, v, n)
        end
        for t = 1, 3 do fs[t]:get() end
        assert.equal(3 * n, v:get())
      end)
    end)
  end)
end

describe("parallel.lock", function()
  describe("acquire", function()
    it("is not re-entrant", function()
      local l = parallel.lock()
      l:acquire()
      assert.is_false(l:acquire(0))
      l:release()
    end)
  end)

  describe("release", function()
    it("raises when not held", function()
      local l = parallel.lock()
      assert_raises("lock is not held", function() l:release() end)
    end)

    it("may be called by another thread", function()
      local l = parallel.lock()
      l:acquire()
      parallel.spawn(function(l) l:release() end, l):get()
      assert.is_false(l:locked())
    end)
  end)
end)

describe("parallel.rlock", function()
  describe("acquire", function()
    it("is re-entrant for the owner", function()
      local r = parallel.rlock()
      assert.is_true(r:acquire())
      assert.is_true(r:acquire(0))
      r:release()
      assert.is_true(r:locked())
      r:release()
      assert.is_false(r:locked())
    end)
  end)

  describe("release", function()
    it("raises when not held", function()
      local r = parallel.rlock()
      assert_raises("rlock is not held by this thread", function() r:release() end)
    end)

    it("raises in a thread that does not own it", function()
      local r = parallel.rlock()
      r:acquire()
      local f = parallel.spawn(function(r) r:release() end, r)
      local ok, e = pcall(f.get, f)
      assert.is_false(ok)
      assert.matches("rlock is not held by this thread", tostring(e))
      assert.is_true(r:locked())
      r:release()
    end)
  end)
end)
