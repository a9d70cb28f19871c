-- A hostile user's cases against the process pool's hand-over and help
-- path, interrupts and locks: each found a defect once. Each case runs in
-- a child with a hard timeout.
local support = require "spec.support"

local function check(code)
  local out, err = support.run_child{
    code = 'local parallel = require "parallel"\n' .. code, timeout = 90 }
  assert.equal("ok\n", out, err)
end

describe("process pools under hostile use #child", function()
  it("shutdown{cancel = true} lets a task handed to a parked, ready worker run", function()
    -- The submit hands the task to the worker at once (its future says
    -- running); the shutdown's sweep took it for a task of a worker still
    -- starting and failed it with 'cancelled: ... still starting or
    -- running the pool's init' (35 pools in 40 before the fix).
    check([[
      local handed = 0
      for i = 1, 40 do
        local p = parallel.pool{backend = "process", workers = 1}
        assert(p:submit(function() return 1 end):get(20) == 1)
        local f = p:submit(function(x) return x * 2 end, i)
        local running = f:state() == "running"   -- else the worker was not parked yet
        p:shutdown{cancel = true}
        local ok, v = pcall(f.get, f, 20)
        if running then
          handed = handed + 1
          assert(ok and v == 2 * i, "round " .. i .. ": " .. tostring(v))
        end
      end
      assert(handed >= 10, "only " .. handed .. " tasks of 40 were handed over")
      print("ok")
    ]])
  end)
end)
