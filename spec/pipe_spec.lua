-- parallel.pipe: two connected ends, send/recv both ways, close.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

describe("parallel.pipe", function()
  describe("constructor", function()
    it("returns two ends", function()
      local a, b = parallel.pipe()
      assert.matches("^parallel.pipe: ", tostring(a))
      assert.matches("^parallel.pipe: ", tostring(b))
      assert.are_not.equal(a, b)
    end)
  end)

  describe("send and recv", function()
    it("work both ways", function()
      local a, b = parallel.pipe()
      a:send("ping")
      assert.equal("ping", b:recv())
      b:send({n = 1})
      assert.same({n = 1}, a:recv())
    end)

    it("do not echo to the sender", function()
      local a = parallel.pipe()
      a:send(1)
      local v, why = a:recv(0)
      assert.is_nil(v)
      assert.equal("timeout", why)
    end)

    it("recv returns nil, 'timeout'", function()
      local _, b = parallel.pipe()
      local v, why = b:recv(0.01)
      assert.is_nil(v)
      assert.equal("timeout", why)
    end)

    it("send raises on nil", function()
      local a = parallel.pipe()
      assert_raises("bad argument #1 to 'send' (value expected)", function() a:send(nil) end)
    end)

    it("talks to another thread", function()
      local a, b = parallel.pipe()
      local f = parallel.spawn(function(b)
        for _ = 1, 100 do b:send(b:recv() * 2) end
      end, b)
      for i = 1, 100 do
        a:send(i)
        assert.equal(2 * i, a:recv(10))
      end
      f:get()
    end)
  end)

  describe("close", function()
    it("lets the peer drain, then recv gives nil, 'closed'", function()
      local a, b = parallel.pipe()
      a:send(1)
      a:close()
      assert.equal(1, b:recv())
      local v, why = b:recv()
      assert.is_nil(v)
      assert.equal("closed", why)
    end)

    it("makes send raise on both ends", function()
      local a, b = parallel.pipe()
      a:close()
      assert_raises("pipe is closed", function() a:send(1) end)
      assert_raises("pipe is closed", function() b:send(1) end)
    end)

    it("happens when the other end is collected", function()
      local a, b = parallel.pipe()
      a = nil
      collectgarbage(); collectgarbage()
      local v, why = b:recv(5)
      assert.is_nil(v)
      assert.equal("closed", why)
    end)
  end)
end)
