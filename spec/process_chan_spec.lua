-- Process pools: the channel to a worker (rings in shared memory, the
-- socket for large frames) and the spare worker that replaces one that
-- died. Each case runs in a child process with a hard timeout, so that a
-- hang fails the case instead of the suite.
local support = require "spec.support"

-- Runs code in a child (it prints "ok" at the end); fails with what it said.
local function check(code)
  local out, err = support.run_child{ code = 'local parallel = require "parallel"\n' .. code,
                                      timeout = 60 }
  assert.equal("ok\n", out, err)
end

describe("process pools' channel #child", function()
  it("carries frames of every size in order, with tasks in flight", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1, tasks_ahead = 7}
      local fs, want = {}, {}
      for i = 1, 300 do
        local n = (i % 7 == 0) and 100000 or (i % 5 == 0) and 20000 or (i % 3)   -- a ring holds 16 KiB
        local s = string.rep(string.char(65 + i % 26), n)
        want[i] = #s + i
        fs[i] = p:submit(function(x, k) return #x + k, x .. x end, s, i)
      end
      for i = 1, 300 do
        local v, big = fs[i]:get(30)
        assert(v == want[i], "task " .. i .. " gave " .. tostring(v))
        assert(#big == 2 * (want[i] - i), "task " .. i .. ": the result lost bytes")
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  -- The reader polled with a zero timeout while such a frame came in (the
  -- marker in the ring said "there is something"): a CPU for as long as
  -- the worker took to send it (0.45 s of CPU in 0.5 s here).
  it("does not spin while a frame too large for the ring comes over the socket", function()
    check([[
      local me = io.open("/proc/self/stat"):read("n")
      local TCK = tonumber(io.popen("getconf CLK_TCK"):read("l"))
      local N, WINDOW = 50 << 20, 0.5
      local p = parallel.pool{backend = "process", workers = 1}
      local pid = p:apply(function() return io.open("/proc/self/stat"):read("n") end)
      -- bytes read by the pool's threads: the main thread's reads of /proc
      -- would count in the process's total
      local tids = {}
      for t in io.popen("ls /proc/" .. me .. "/task"):lines() do
        if tonumber(t) ~= me then tids[#tids + 1] = t end
      end
      local function rchar()
        local sum = 0
        for _, t in ipairs(tids) do
          local io_ = io.open("/proc/self/task/" .. t .. "/io")
          if io_ then
            sum = sum + tonumber(io_:read("a"):match("rchar: (%d+)"))
            io_:close()
          end
        end
        return sum
      end
      local function cpu()
        local f = {}
        local stat = io.open("/proc/self/stat"):read("a")
        for w in stat:match("%) (.*)"):gmatch("%S+") do f[#f + 1] = w end
        return (tonumber(f[12]) + tonumber(f[13])) / TCK
      end
      for _ = 1, 20 do
        local r0 = rchar()
        local f = p:submit(function(n) return string.rep("x", n) end, N)
        local caught
        -- the worker stopped once part of the frame came (then the rest
        -- can only come after SIGCONT)
        while not f:done() do
          if rchar() - r0 > 1 << 20 then
            assert(os.execute("kill -STOP " .. pid))
            caught = rchar() - r0 < N and not f:done()
            break
          end
        end
        local used, wall
        if caught then
          local c0, t0 = cpu(), parallel.now()
          parallel.sleep(WINDOW)
          used, wall = cpu() - c0, parallel.now() - t0
        end
        assert(os.execute("kill -CONT " .. pid))
        assert(#f:get(30) == N, "the frame lost bytes")
        if caught then
          assert(used < 0.1 * wall, ("%.2f s of CPU in %.2f s while the frame waited"):format(used, wall))
          p:shutdown()
          print("ok")
          return
        end
      end
      error("the worker was never stopped in the middle of its frame")
    ]])
  end)

  it("runs the tasks held in the ring of a worker killed from outside elsewhere, each once", function()
    check([[
      local dir = os.tmpname()
      local function mark(path) assert(io.open(path, "w")):close() end
      local function await(path)
        local t = require("parallel").now() + 20
        while require("parallel").now() < t do
          local f = io.open(path)
          if f then f:close() return end
          require("parallel").sleep(0.001)
        end
        error("never there: " .. path)
      end
      local p = parallel.pool{backend = "process", workers = 1, tasks_ahead = 5}
      -- while this one holds the worker, the next ones queue in the pool,
      -- then all go to the worker's ring at once
      local hold = p:submit(function(g, wait) wait(g) end, dir .. ".hold", await)
      while hold:state() == "pending" do parallel.sleep(0.001) end
      local victim = p:submit(function(d, m)
        local f = assert(io.open(d .. ".pid", "w"))
        f:write(io.open("/proc/self/stat"):read("n")); f:close()
        m(d .. ".started")
        while true do end
      end, dir, mark)
      local rest = {}
      for i = 1, 5 do
        rest[i] = p:submit(function(x, log)
          local f = assert(io.open(log, "a")); f:write(x, "\n"); f:close()
          return x
        end, i, dir .. ".log")
      end
      mark(dir .. ".hold")
      await(dir .. ".started")
      local pid = assert(io.open(dir .. ".pid")):read("n")
      os.execute("kill -9 " .. pid)
      assert(victim:wait(20) and victim:state() == "failed")
      assert(victim:error() == "worker process died (signal 9, Killed)", victim:error())
      for i = 1, 5 do assert(rest[i]:get(20) == i) end
      local seen = {}
      for l in io.lines(dir .. ".log") do seen[#seen + 1] = l end
      table.sort(seen)
      assert(table.concat(seen, ",") == "1,2,3,4,5", table.concat(seen, ","))
      assert(p:apply(function() return 42 end) == 42)
      p:shutdown()
      for _, s in ipairs({"", ".hold", ".pid", ".started", ".log"}) do os.remove(dir .. s) end
      print("ok")
    ]])
  end)
end)

describe("process pools' spare worker #child", function()
  it("runs init only in a process that takes over, with init_args", function()
    check(support.PROCESS_PRELUDE .. [[
      local v = parallel.value("int64", 0)
      local p = parallel.pool{backend = "process", workers = 1, max_tasks_per_worker = 1,
                              init = function(n) n:add(1) end, init_args = {v}}
      local pids = {}
      for i = 1, 4 do
        local pid = p:apply(my_pid)
        assert(not pids[pid], "a process ran two tasks")
        pids[pid] = true
      end
      -- five processes took over (the fifth after the fourth task, for
      -- a next one); a spare is started too, but its init waits
      local t = parallel.now() + 20
      while v:get() < 5 and parallel.now() < t do parallel.sleep(0.001) end
      -- Once both wait for a frame (asleep in poll or on a futex: nothing
      -- else blocks here), each has taken every frame sent to it: the
      -- spare's configuration, an init if it got one.
      local function polling(pid)
        local f = io.open("/proc/" .. pid .. "/wchan")
        local w = f and f:read("a") or ""
        if f then f:close() end
        return w:find("poll") ~= nil or w:find("futex") ~= nil   -- its eventfd, or its ring's word
      end
      local waiting = 0
      while waiting < 2 and parallel.now() < t do
        waiting = 0
        for _, pid in ipairs(workers()) do if polling(pid) then waiting = waiting + 1 end end
        if waiting < 2 then parallel.sleep(0.001) end
      end
      assert(waiting == 2, "the worker and its spare never waited for a frame")
      assert(v:get() == 5, "init ran " .. v:get() .. " times")
      p:shutdown()
      assert(v:get() == 5, "init ran " .. v:get() .. " times")
      print("ok")
    ]])
  end)

  it("is ready from the slot's first task: the pool's first crash is a take-over", function()
    check(support.PROCESS_PRELUDE .. [[
      local p = parallel.pool{backend = "process", workers = 1}
      local first = p:apply(my_pid)
      local spare
      local t = parallel.now() + 10
      while not spare and parallel.now() < t do
        for _, pid in ipairs(workers()) do if pid ~= first then spare = pid end end
        if not spare then parallel.sleep(0.001) end
      end
      assert(spare, "no spare worker after the slot's first task")
      local f = p:submit(function() os.exit(1) end)
      assert(f:wait(20) and f:state() == "failed")
      assert(f:error() == "worker process died (exit status 1)", f:error())
      local now = p:apply(my_pid)
      assert(now == spare, "the first crash was not replaced by the spare")
      p:shutdown()
      print("ok")
    ]])
  end)

  it("is replaced when it dies while it waits, and the pool goes on", function()
    check(support.PROCESS_PRELUDE .. [[
      local p = parallel.pool{backend = "process", workers = 1}
      local f = p:submit(function() os.exit(1) end)
      assert(f:wait(20) and f:state() == "failed")
      local current = p:apply(my_pid)       -- a replacement: the slot keeps a spare from now on
      local spare
      local t = parallel.now() + 20
      while not spare and parallel.now() < t do
        for _, pid in ipairs(workers()) do if pid ~= current and alive(pid) then spare = pid end end
        parallel.sleep(0.001)
      end
      assert(spare, "no spare worker")
      os.execute("kill -9 " .. spare)
      f = p:submit(function() os.exit(2) end)
      assert(f:wait(20) and f:state() == "failed")
      assert(f:error() == "worker process died (exit status 2)", f:error())
      local now = p:apply(my_pid)
      assert(now ~= current and now ~= spare)
      assert(p:apply(function() return 7 end) == 7)
      p:shutdown()
      print("ok")
    ]])
  end)
end)

describe("process pools' round trips #child", function()
  -- An idle worker sleeps on a word in the shared mapping (no poll): every
  -- frame, a large one over the socket (its marker goes through the ring)
  -- and the closing of the channel must each still wake it.
  it("wakes an idle worker asleep on its word for small and large frames, and to stop", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      local big = string.rep("x", 100000)              -- more than a ring frame: the socket
      for i = 1, 20 do
        parallel.sleep(0.02)                           -- spins give up: the worker sleeps
        assert(p:submit(function(x) return x + 1 end, i):get(20) == i + 1)
        parallel.sleep(0.02)
        assert(p:submit(function(s, k) return #s + k end, big, i):get(20) == #big + i)
      end
      parallel.sleep(0.02)
      -- A worker that missed the close would be killed after 2 s (STOP_GRACE).
      local t0 = parallel.now()
      p:shutdown()
      local took = parallel.now() - t0
      assert(took < 1.5, "an idle worker did not see its channel close: shutdown took " .. took .. " s")
      print("ok")
    ]])
  end)

  -- Round trips with the worker killed at random points of them: each task
  -- gets its result or "worker process died", none hangs, the pool goes on.
  it("loses nothing and hangs nowhere when round trips meet kill -9 at random points", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      local function pid() return io.open("/proc/self/stat"):read("n") end
      local pids = { p:apply(pid) }
      math.randomseed(14)
      local ok, died = 0, 0
      for i = 1, 300 do
        local f = p:submit(function(x)
          return x + 1, io.open("/proc/self/stat"):read("n")
        end, i)
        if math.random(10) == 1 then
          os.execute("kill -9 " .. pids[math.random(#pids)] .. " 2>/dev/null")
        end
        assert(f:wait(20), "round trip " .. i .. " hangs")
        if f:state() == "done" then
          local v, who = f:get()
          assert(v == i + 1)
          pids[#pids + 1] = who
          if #pids > 4 then table.remove(pids, 1) end
          ok = ok + 1
        else
          assert(f:error():match("^worker process died %(signal 9"), f:error())
          died = died + 1
        end
      end
      assert(ok + died == 300 and ok > 0)
      assert(p:apply(function() return 7 end) == 7)
      p:shutdown()
      print("ok")
    ]])
  end)

  it("finishes a round trip whose worker was stopped (SIGSTOP) and resumed", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 1}
      local pid = p:apply(function() return io.open("/proc/self/stat"):read("n") end)
      for i = 1, 20 do
        parallel.sleep(0.005)
        os.execute("kill -STOP " .. pid)
        local f = p:submit(function(x) return x * 2 end, i)
        assert(not f:wait(0.01), "a stopped worker ran a task")
        os.execute("kill -CONT " .. pid)
        assert(f:get(20) == 2 * i)
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  -- A submit to an idle process pool sends the task itself (the pool
  -- worker stays parked until the outcome): kill, interrupt and several
  -- submitting threads must still reach and see each task.
  it("kills and interrupts a task a submit sent straight to an idle worker", function()
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      local spin = function() while true do end end
      for i = 1, 5 do
        parallel.sleep(0.01)                       -- both pool workers parked
        local f = p:submit(spin)
        while f:state() ~= "running" do parallel.sleep(0.001) end
        if i % 2 == 0 then f:kill() else f:interrupt() end
        assert(f:wait(20), "not stopped")
        assert(f:state() == "failed")
        local e = tostring(f:error())
        assert(e:match("killed") or e:match("interrupted"), e)
        assert(p:submit(function(x) return x * 3 end, i):get(20) == 3 * i)
      end
      p:shutdown()
      print("ok")
    ]])
  end)

  it("never loses an interrupt sent right after submit, to a worker just replaced too", function()
    -- The interrupt can reach the pool worker before the task's number is
    -- known, merge into another SIGURG, or reach a worker process that has
    -- no handler yet (a spare still starting): the ledger keeps it.
    check([[
      local p = parallel.pool{backend = "process", workers = 2}
      local spin = function() while true do end end
      for i = 1, 60 do
        local f = p:submit(spin)
        while not f:interrupt() do                -- false while still pending
          assert(not f:done(), f:state())
          parallel.sleep(0)
        end
        assert(f:wait(20), "not stopped (round " .. i .. ")")
        local e = tostring(f:error())
        assert(e:match("interrupted"), e)
        if i % 10 == 0 then                       -- a fresh worker process next
          local k = p:submit(spin)
          while not k:kill() do parallel.sleep(0) end
          assert(k:wait(20), "kill did not stop it")
        end
      end
      assert(p:submit(function(x) return x * 3 end, 7):get(20) == 21)
      p:shutdown()
      print("ok")
    ]])
  end)

  it("serves round trips from several threads and coroutines at once", function()
    check([[
      local procs = parallel.pool{backend = "process", workers = 2}
      local threads = parallel.pool(3)
      local fs = {}
      for t = 1, 3 do
        fs[t] = threads:submit(function(pp, base)
          local sum = 0
          for i = 1, 300 do sum = sum + pp:submit(function(x) return x + 1 end, base + i):get(20) end
          return sum
        end, procs, t * 1000)
      end
      local co = coroutine.wrap(function()
        local s = 0
        for i = 1, 200 do s = s + procs:submit(function(x) return 2 * x end, i):get(20); coroutine.yield() end
        return s
      end)
      local got
      for _ = 1, 201 do got = co() end
      assert(got == 200 * 201, tostring(got))
      for t = 1, 3 do
        local want = 0
        for i = 1, 300 do want = want + t * 1000 + i + 1 end
        assert(fs[t]:get(60) == want, "thread " .. t)
      end
      threads:shutdown()
      procs:shutdown()
      print("ok")
    ]])
  end)
end)
