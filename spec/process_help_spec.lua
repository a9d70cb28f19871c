-- A thread waiting for a process task's outcome takes it from the worker's
-- ring itself while the pool's own thread for that worker stays asleep
-- (pool.h: ops->help). Whatever happens meanwhile (the worker dies, the
-- task is killed, interrupted, timed out, asks for the parent's objects,
-- returns more than the ring holds, the pool shuts down), the waiter gets
-- the outcome and nothing hangs. Each case runs in a child with a hard
-- timeout.
local support = require "spec.support"

local function check(code)
  local out, err = support.run_child{
    code = 'local parallel = require "parallel"\n' .. support.PROCESS_PRELUDE .. [[
      -- a task that says it runs (a file appears), then spins
      local function marked_spin(path)
        local f = assert(io.open(path, "w")); f:close()
        while true do end
      end
      local function await_file(path)
        local deadline = parallel.now() + 20
        while parallel.now() < deadline do
          local f = io.open(path)
          if f then f:close() return end
          parallel.sleep(0.001)
        end
        error("never there: " .. path)
      end
    ]] .. code,
    timeout = 90 }
  assert.equal("ok\n", out, err)
end

describe("process pools: a waiter takes the outcome itself #child", function()
  it("gets values, errors and values larger than the ring, in a loop", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      for i = 1, 500 do
        assert(p:submit(function(x) return x + 1 end, i):get(20) == i + 1)
        if i % 50 == 0 then
          local ok, e = pcall(function() return p:submit(function() error("boom " .. 7) end):get(20) end)
          assert(not ok and tostring(e):match("boom 7"), tostring(e))
          local big = p:submit(function(n) return string.rep("x", n) end, 100000 + i):get(20)
          assert(#big == 100000 + i, #big)
        end
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  it("sees the worker die while it waits, and the pool goes on", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      for i = 1, 5 do
        local f = p:submit(function()
          local t = os.clock() + 0.02
          while os.clock() < t do end
          os.exit(3)
        end)
        local ok, e = pcall(f.get, f, 20)
        assert(not ok and tostring(e):match("worker process died"), tostring(e))
        assert(p:submit(function(x) return x * 2 end, i):get(20) == 2 * i)
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  it("is ended by a kill, an interrupt or a terminate from another thread", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      local others = parallel.pool(1)
      local dir = os.tmpname()
      for i, how in ipairs{"kill", "interrupt", "kill", "interrupt", "terminate"} do
        local mark = dir .. "." .. i
        local f = p:submit(marked_spin, mark)
        local by = others:submit(function(fut, pool, path, await, what)
          await(path)
          if what == "kill" then return fut:kill()
          elseif what == "interrupt" then return fut:interrupt()
          else pool:terminate() return true end
        end, f, p, mark, await_file, how)
        local ok, e = pcall(f.get, f, 20)          -- waiting here when it ends
        assert(not ok, how .. ": no error")
        assert(tostring(e):match(how == "kill" and "killed" or "interrupted"), how .. ": " .. tostring(e))
        assert(by:get(20) == true, how)
        os.remove(mark)
        if how ~= "terminate" then assert(p:submit(function() return "next" end):get(20) == "next") end
      end
      others:shutdown()
      os.remove(dir)
      print("ok")
    ]])
  end)

  it("gives the task back on a timeout, and gets it later", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      local f = p:submit(function(n)
        local s = 0
        for i = 1, n do s = s + i end
        return s
      end, 3e7)
      assert(f:wait(0) == false)
      assert(f:wait(0.001) == false or f:done())
      assert(f:get(60) == 3e7 * (3e7 + 1) / 2)
      assert(p:submit(function() return 1 end):get(20) == 1)
      p:shutdown()
      print("ok")
    ]])
  end)

  it("serves a task that uses the parent's queue and lock while it waits", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      local q, l = parallel.queue(), parallel.lock()
      for i = 1, 100 do
        local v = p:submit(function(queue, lock, x)
          lock:acquire(); queue:push(x); lock:release()
          return x * 3
        end, q, l, i):get(20)
        assert(v == 3 * i, tostring(v))
        assert(q:pop(5) == i)
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  it("leaves no worker busy: many waiters in a row, then a shutdown that waits", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      local fs = {}
      for r = 1, 200 do
        local f = p:submit(function(x) return x end, r)
        assert(f:get(20) == r)
        fs[#fs + 1] = f
      end
      -- the workers are idle again: both take tasks at once
      local a = p:submit(function(path, await) await(path) return "a" end, os.tmpname() .. ".x", await_file)
      local b = p:submit(function() return "b" end)
      assert(b:get(20) == "b")
      while not a:interrupt() do parallel.sleep(0) end
      assert(a:wait(20))
      p:shutdown()
      for _, f in ipairs(fs) do assert(f:state() == "done") end
      print("ok")
    ]])
  end)

  it("stops at Ctrl-C in the main thread, promptly", function()
    local out, err, status, elapsed = support.run_interrupted([[
      f:get()
      io.stdout:write("not interrupted\n")]], [[
      local parallel = require "parallel"
      local p = parallel.pool{backend = "process", workers = 1}
      assert(p:submit(function(x) return x end, 1):get(20) == 1)
      local f = p:submit(function() while true do end end)]])
    assert.is_truthy(err:find("interrupted", 1, true), err)
    assert.is_falsy(out:find("not interrupted", 1, true), out)
    assert.is_true(elapsed < 1, "took " .. elapsed .. " s")
    assert.equal(1, status, err)
  end)

  it("in a worker process that waits for its own process pool, still gets its parent's interrupt", function()
    -- the worker's main thread, helping its own pool, is no worker of that
    -- pool: the parent's SIGURG must reach the task, not the pool
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      local dir = os.tmpname()
      local f = p:submit(function(path)
        local parallel = require "parallel"
        local inner = parallel.pool{backend = "process", workers = 1}
        assert(inner:submit(function() return 1 end):get(20) == 1)
        local g = inner:submit(function(mark)
          local h = assert(io.open(mark, "w")); h:close()
          local t = os.time() + 5
          while os.time() < t do end
          return "ran out"
        end, path)
        return g:get()
      end, dir .. ".in")
      await_file(dir .. ".in")
      local t0 = parallel.now()
      assert(f:interrupt())
      local ok, e = pcall(f.get, f, 20)
      assert(not ok and tostring(e):match("interrupted"), tostring(e))
      assert(parallel.now() - t0 < 2, "took " .. (parallel.now() - t0) .. " s")
      p:shutdown()
      os.remove(dir .. ".in"); os.remove(dir)
      print("ok")
    ]])
  end)

  it("counts the busy time of the tasks it finishes in pool:stats()", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      -- 30 ms tasks, taken by the waiter; 80 ms ones, longer than a wait's
      -- 50 ms slice, given back to the pool's thread half way
      for i, cpu in ipairs{0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.08, 0.08, 0.08} do
        assert(p:submit(function(x, c)
          local t = os.clock() + c
          while os.clock() < t do end
          return x
        end, i, cpu):get(20) == i)
      end
      p:shutdown()          -- joined: the pool's thread counted what it finished
      local s = p:stats()
      assert(s.completed == 9, s.completed)
      assert(s.busy[1] >= 0.36, "busy " .. s.busy[1])
      print("ok")
    ]])
  end)
end)
