-- Process pools whose worker processes misbehave while they start: a
-- stopped spare, an init that never returns (in Lua or in C). Every case
-- runs in a child process with a hard timeout, so that a hang fails the
-- case instead of the suite.
local support = require "spec.support"

local CRASH = os.getenv("PARALLEL_CRASHLIB") or "./build/test/crash.so"

-- Runs code in a child (it prints "ok" at the end); fails with what it said.
local function check(code, timeout)
  local out, err = support.run_child{ code = 'local parallel = require "parallel"\n' .. code,
                                      timeout = timeout or 30 }
  assert.equal("ok\n", out, err)
end

-- Code shared by the cases: the worker processes of this process.
local PRELUDE = support.PROCESS_PRELUDE

describe("process pools' workers that do not start #child", function()
  it("fail a task given to a stopped spare after task_timeout, and go on", function()
    check(PRELUDE .. [[
      local p = parallel.pool{backend = "process", workers = 1}
      local first = p:apply(my_pid)
      local spare
      local t = parallel.now() + 10
      while not spare and parallel.now() < t do
        for _, pid in ipairs(workers()) do if pid ~= first then spare = pid end end
        if not spare then parallel.sleep(0.001) end
      end
      assert(spare, "no spare worker")
      os.execute("kill -STOP " .. spare)
      local f = p:submit(function() os.exit(1) end)
      assert(f:wait(20) and f:state() == "failed")
      -- the stopped spare takes over: the next task waits for it
      local ok, e = pcall(p.map, p, function(x) return x end, {1}, {task_timeout = 0.5})
      assert(not ok)
      assert(tostring(e):find("item 1: timeout: the task did not start within task_timeout "
        .. "(0.5 s): its worker process was still starting or running the pool's init, and was "
        .. "killed", 1, true), tostring(e))
      assert(p:apply(function() return 7 end) == 7)
      p:shutdown()
      print("ok")
    ]])
  end)

  it("with an init that never returns: task_timeout, kill and shutdown{cancel} end the wait", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1, init = function() while true do end end}
      local ok, e = pcall(p.map, p, function(x) return x end, {1}, {task_timeout = 0.5})
      assert(not ok)
      assert(tostring(e):find("item 1: timeout: the task did not start within task_timeout", 1, true),
             tostring(e))
      -- kill: the task counts as running once its process has it
      local f = p:submit(function() return 1 end)
      local t = parallel.now() + 10
      while f:state() == "pending" and parallel.now() < t do parallel.sleep(0.001) end
      assert(f:state() == "running", f:state())
      assert(f:kill() == true)
      assert(f:wait(10) and f:state() == "failed" and f:error() == "killed", tostring(f:error()))
      -- a shutdown that cancels what has not started does not wait for it
      local g = p:submit(function() return 2 end)
      t = parallel.now() + 10
      while g:state() == "pending" and parallel.now() < t do parallel.sleep(0.001) end
      local t0 = parallel.now()
      p:shutdown{cancel = true}
      assert(g:state() == "failed", g:state())
      assert(g:error():find("^cancelled: the pool shut down %(cancel = true%) before the task started"),
             g:error())
      -- its init is interrupted then: nothing waits for the 2 s grace
      assert(parallel.now() - t0 < 1.5, "shutdown took " .. (parallel.now() - t0) .. " s")
      print("ok")
    ]])
  end)

  it("with an init blocked in C: shutdown and terminate end within their grace", function()
    check(([[
      -- spins in C with every signal blocked (spec/crash.c), once it said so
      local init = function(lib, ev)
        package.loadlib(lib, "luaopen_crash")().stuck(function() ev:set() end)
      end
      local ev = parallel.event()
      local p = parallel.pool{backend = "process", workers = 1, init = init, init_args = {%q, ev}}
      assert(ev:wait(20), "init never got stuck")
      local t0 = parallel.now()
      p:shutdown()
      assert(parallel.now() - t0 < 10, "shutdown took " .. (parallel.now() - t0) .. " s")
      ev:clear()
      local q = parallel.pool{backend = "process", workers = 1, init = init, init_args = {%q, ev}}
      local f = q:submit(function() return 1 end)       -- never blocks the submitter
      assert(ev:wait(20), "init never got stuck")
      t0 = parallel.now()
      q:terminate()
      assert(parallel.now() - t0 < 10, "terminate took " .. (parallel.now() - t0) .. " s")
      assert(f:state() == "failed" or f:state() == "cancelled", f:state())
      print("ok")
    ]]):format(CRASH, CRASH), 40)
  end)
end)

describe("process pools' workers under memory_limit #child", function()
  it("fail a call whose reply the worker could not hold, give the item back and go on", function()
    check([[
      local my_pid = function() return io.open("/proc/self/stat"):read("n") end
      local big = 70 << 20      -- past memory_limit + the process's 64 MiB overhead
      local q, d = parallel.queue(), parallel.dict()
      q:push(string.rep("x", big))
      d.big = string.rep("z", big)
      local p = parallel.pool{backend = "process", workers = 1, memory_limit = 1 << 20}
      local pid = p:apply(my_pid)
      local f = p:submit(function(q) return #q:pop() end, q)
      assert(f:wait(30) and f:state() == "failed", f:state())
      assert(f:error():find("not enough memory: the reply takes " .. (big + 7) ..
        " bytes, more than the worker's memory_limit (1048576)", 1, true), f:error())
      assert(#q == 1 and #q:pop() == big, "the item did not go back to the queue")
      local g = p:submit(function(d) return #d.big end, d)
      assert(g:wait(30) and g:state() == "failed", g:state())
      assert(g:error():find("not enough memory: the reply takes", 1, true), g:error())
      assert(p:apply(my_pid) == pid, "the worker process was replaced")
      p:shutdown()
      print("ok")
    ]], 60)
  end)
end)

describe("process pools' pop_many under memory_limit #child", function()
  it("gives the whole batch back to the owner's queue, in order, when the reply is too large", function()
    check([[
      local q = parallel.queue()
      local items = {}
      for i = 1, 5 do items[i] = string.rep(string.char(96 + i), 300 << 10) end
      q:push_all(items)
      local p = parallel.pool{backend = "process", workers = 1, memory_limit = 1 << 20}
      local f = p:submit(function(q) return #q:pop_many(10) end, q)
      assert(f:wait(30) and f:state() == "failed", f:state())
      assert(f:error():find("not enough memory: the reply takes", 1, true), f:error())
      assert(#q == 5, #q .. " items in the queue, not 5")
      for i = 1, 5 do assert(q:pop(0) == items[i], "item " .. i .. " is not back in its place") end
      p:shutdown()
      print("ok")
    ]], 60)
  end)
end)

describe("process pools' spares #child", function()
  it("start a slot's spare with its first task, even one handed straight to a parked worker that never ends", function()
    check(PRELUDE .. [[
      local p = parallel.pool{backend = "process", workers = 2}
      local t = parallel.now() + 10
      while #workers() < 2 and parallel.now() < t do parallel.sleep(0.001) end
      assert(#workers() == 2, "workers: " .. #workers())
      parallel.sleep(0.05)                 -- both pool threads parked: a submit hands over
      local ev = parallel.event()
      local f = p:submit(function(e) e:set() while true do end end, ev)
      assert(ev:wait(10))
      t = parallel.now() + 10
      while #workers() < 3 and parallel.now() < t do parallel.sleep(0.001) end
      assert(#workers() >= 3, "no spare for the slot running the task: " .. #workers())
      p:terminate()
      print("ok")
    ]])
  end)

  it("die with their parent, even when it is killed with SIGKILL", function()
    local out, err = support.run_child{ timeout = 30, code = 'local parallel = require "parallel"\n'
      .. PRELUDE .. [[
      local p = parallel.pool{backend = "process", workers = 2}
      p:map(function(x) return x end, {1, 2, 3, 4})
      assert(p:submit(function() os.exit(1) end):wait(10))   -- a spare took over, another starts
      p:apply(function() end)
      local t = parallel.now() + 10
      while #workers() < 4 and parallel.now() < t do parallel.sleep(0.001) end
      -- both workers stuck in C, signals blocked (one was a spare, started
      -- by the spawner thread): only their PR_SET_PDEATHSIG ends them
      local ev1, ev2 = parallel.event(), parallel.event()
      local stuck = function(lib, ev)
        package.loadlib(lib, "luaopen_crash")().stuck(function() ev:set() end)
      end
      p:submit(stuck, "]] .. CRASH .. [[", ev1)
      p:submit(stuck, "]] .. CRASH .. [[", ev2)
      assert(ev1:wait(10) and ev2:wait(10))
      -- each slot has run a task now (which slot took the tasks before is
      -- the pool's choice), so each keeps a spare
      t = parallel.now() + 10
      while #workers() < 4 and parallel.now() < t do parallel.sleep(0.001) end
      print(table.concat(workers(), " "))
      io.stdout:flush()
      os.execute("kill -9 " .. my_pid())
    ]] }
    local pids = {}
    for pid in out:gmatch("%d+") do pids[#pids + 1] = pid end
    assert.is_true(#pids >= 4, "not two workers and their spares: " .. out .. err)
    local alive = support.alive
    local parallel = require "parallel"
    local deadline = parallel.now() + 5
    local left
    repeat
      left = {}
      for _, pid in ipairs(pids) do if alive(pid) then left[#left + 1] = pid end end
      if #left > 0 then parallel.sleep(0.01) end
    until #left == 0 or parallel.now() > deadline
    assert.same({}, left)
  end)
end)

describe("process pools under a tiny memory_limit #child", function()
  it("fail each task with a clear error or run it, never hang or lose the worker", function()
    check([[
      for _, lim in ipairs({1, 64, 1000, 50000, 120000, 200000, 400000, 1000000}) do
        local p = parallel.pool{backend = "process", workers = 1, memory_limit = lim}
        for _, n in ipairs({1, 1000, 100000}) do
          local f = p:submit(function(k) local t = {} for i = 1, k do t[i] = i end return #t end, n)
          assert(f:wait(20), "limit " .. lim .. ": the task never ended")
          if f:state() == "done" then
            assert(f:get() == n)
          else
            local e = tostring(f:error())
            assert(e:find("not enough memory", 1, true), "limit " .. lim .. ": " .. e)
          end
        end
        p:shutdown()
      end
      print("ok")
    ]], 60)
  end)
end)

describe("process pools shut down while a worker is replaced #child", function()
  it("end, the crashed task failed, nothing left running", function()
    check(PRELUDE .. [[
      for i = 1, 20 do
        local p = parallel.pool{backend = "process", workers = 2}
        p:apply(function() end)            -- the slot has a spare starting
        local f = p:submit(function() os.exit(3) end)
        if i % 2 == 0 then
          p:shutdown()
          assert(f:state() == "failed" and f:error() == "worker process died (exit status 3)",
                 f:state() .. " " .. tostring(f:error()))
        else
          p:terminate()                      -- it may not have started: then it is cancelled
          assert(f:state() == "cancelled" or f:state() == "failed", f:state())
        end
      end
      local t = parallel.now() + 10
      while #workers() > 0 and parallel.now() < t do parallel.sleep(0.001) end
      assert(#workers() == 0, "worker processes left: " .. table.concat(workers(), " "))
      print("ok")
    ]], 60)
  end)
end)
