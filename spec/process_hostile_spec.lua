-- A hostile user's cases against the process pool's hand-over and help
-- path, interrupts and locks: each found a defect once. Each case runs in
-- a child with a hard timeout.
local support = require "spec.support"

-- Submits x * 2 to p, shuts p down with cancel = true at once, and checks
-- that a task whose future said running (handed to a parked worker) ran;
-- true if it was handed over so.
local PRELUDE = [[
local function handed_then_cancelled(p, i)
  local f = p:submit(function(x) return x * 2 end, i)
  local running = f:state() == "running"   -- else the worker was not parked yet
  p:shutdown{cancel = true}
  local ok, v = pcall(f.get, f, 20)
  if running then assert(ok and v == 2 * i, "round " .. i .. ": " .. tostring(v)) end
  return running
end
]]

local function check(code)
  local out, err = support.run_child{
    code = 'local parallel = require "parallel"\n' .. PRELUDE .. code, timeout = 90 }
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
        if handed_then_cancelled(p, i) then handed = handed + 1 end
      end
      assert(handed >= 10, "only " .. handed .. " tasks of 40 were handed over")
      print("ok")
    ]])
  end)

  it("shutdown{cancel = true} lets a task run on a spare that took over and finished its init", function()
    -- A spare runs the pool's init after its take-over and has run no task
    -- yet: the sweep could not tell it from a process still starting until
    -- the worker said so in its ledger (ready).
    check([[
      local dir = os.tmpname()
      local handed = 0
      for i = 1, 20 do
        local mark = dir .. "." .. i
        local p = parallel.pool{backend = "process", workers = 1,
          init = function(path, n)
            local f = io.open(path .. "." .. tostring(n), "a"); f:write("x"); f:close()
          end, init_args = {mark, 0}}
        assert(p:submit(function() return 1 end):get(20) == 1)
        assert(p:submit(function() os.exit(3) end):wait(20))   -- the spare takes over, runs init
        local deadline = parallel.now() + 20
        local function inits()
          local f = io.open(mark .. ".0"); if not f then return 0 end
          local n = #f:read("a"); f:close(); return n
        end
        while inits() < 2 and parallel.now() < deadline do parallel.sleep(0.001) end
        assert(inits() == 2, "the spare's init did not run")
        if handed_then_cancelled(p, i) then handed = handed + 1 end
        os.remove(mark .. ".0")
      end
      os.remove(dir)
      assert(handed >= 3, "only " .. handed .. " tasks of 20 were handed over")
      print("ok")
    ]])
  end)
end)
