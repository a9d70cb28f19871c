-- parallel.pool{backend = "process"}: workers in processes of their own.
-- The ways a worker dies come from spec/crash.c (build/test/crash.so).
local parallel = require "parallel"
local support = require "spec.support"
local run_lua, assert_raises = support.run_lua, support.assert_raises

local CRASH = os.getenv("PARALLEL_CRASHLIB") or "./build/test/crash.so"

-- Loaded in a worker: the crash library (tasks call it by this path).
local function crashlib(path) return package.loadlib(path, "luaopen_crash")() end
local function my_pid() return io.open("/proc/self/stat"):read("n") end

local function failure(f)
  assert.is_true(f:wait(10), "the task did not end")
  assert.equal("failed", f:state())
  return (f:error())
end

-- Whether a process exists and is not a zombie.
local alive = support.alive

describe("process pools", function()
  local pool
  lazy_setup(function() pool = parallel.pool{backend = "process", workers = 2} end)
  lazy_teardown(function() pool:shutdown() end)

  it("run tasks in other processes, with upvalues, globals and results of any kind", function()
    local here = my_pid()
    local k = 10
    local f = pool:submit(function(x) return x + k, io.open("/proc/self/stat"):read("n") end, 5)
    local v, pid = f:get()
    assert.equal(15, v)
    assert.are_not.equal(here, pid)
    local add = pool:apply(function(n) return function(x) return x + n end end, 3)
    assert.equal(7, add(4))
    assert.equal("process", pool:stats().backend)
  end)

  it("have the facade: map, starmap, imap, imap_unordered, gather, wait, as_completed", function()
    local sq = pool:map(function(x) return x * x end, {1, 2, 3, 4, 5})
    assert.same({1, 4, 9, 16, 25, n = 5}, sq)
    assert.same({3, 7, n = 2}, pool:starmap(function(a, b) return a + b end, {{1, 2}, {3, 4}}))
    local got = {}
    for i, v in pool:imap(function(x) return -x end, {1, 2, 3}) do got[i] = v end
    assert.same({-1, -2, -3}, got)
    local n = 0
    for _ in pool:imap_unordered(function(x) return x end, {1, 2, 3, 4}) do n = n + 1 end
    assert.equal(4, n)
    local fs = {}
    for i = 1, 6 do fs[i] = pool:submit(function(x) return x * 2 end, i) end
    assert.same({2, 4, 6, 8, 10, 12, n = 6}, parallel.gather(fs))
    local done = parallel.wait(fs)
    assert.equal(6, #done)
    local seen = 0
    for _ in parallel.as_completed(fs) do seen = seen + 1 end
    assert.equal(6, seen)
  end)

  it("carry a long argument sent in segments, and a large result", function()
    local big = {}
    for i = 1, 300000 do big[i] = i end
    local n, sum = pool:submit(function(t)
      local s = 0
      for i = 1, #t do s = s + t[i] end
      return #t, s
    end, big):get()
    assert.equal(300000, n)
    assert.equal(300000 * 300001 // 2, sum)
    local r = pool:apply(function(k) local t = {} for i = 1, k do t[i] = -i end return t end, 300000)
    assert.equal(300000, #r)
    assert.equal(-300000, r[300000])
  end)

  it("give workers init, init_args and the creator's package paths", function()
    local p <close> = parallel.pool{backend = "process", workers = 1,
      init = function(a, b) INIT_SUM = a + b; INIT_RUNS = (INIT_RUNS or 0) + 1 end, init_args = {2, 3}}
    assert.equal(5, p:apply(function() return INIT_SUM end))
    assert.equal(1, p:apply(function() return INIT_RUNS end))
    assert.equal(package.path, p:apply(function() return package.path end))
    assert.equal(package.cpath, p:apply(function() return package.cpath end))
    assert.equal("function", p:apply(function() return type(require("parallel").gather) end))
  end)

  it("refuse at the submit the shared objects that cannot cross", function()
    local msg = "cannot send parallel.barrier with an action to another process (its action is a "
      .. "function of this process; make the barrier without one)"
    assert_raises(msg, function() return pool:submit(function() end, parallel.barrier(2, print)) end)
    assert_raises("bad argument #1 to 'pool' (init_args: " .. msg .. ")",
      function() return parallel.pool{backend = "process", init = function() end,
                                       init_args = {parallel.barrier(2, print)}} end)
  end)

  it("check their options", function()
    assert_raises([[bad argument #1 to 'pool' (invalid option 'mpi?' for backend (one of threads|process))]],
      function() return parallel.pool{backend = "mpi?"} end)
    local t <close> = parallel.pool{backend = "threads", workers = 1}
    assert_raises([[bad argument #3 to 'map' (task_timeout needs a process pool (backend = "process"))]],
      function() return t:map(print, {1}, {task_timeout = 1}) end)
  end)

  it("fail a task whose worker exits, and go on", function()
    local f = pool:submit(function() os.exit(3) end)
    assert.equal("worker process died (exit status 3)", failure(f))
    assert.equal("after", pool:submit(function() return "after" end):get())
  end)

  it("fail a task that segfaults in C, name the signal, and replace the worker", function()
    local f = pool:submit(function(path, load) return load(path).segv() end, CRASH, crashlib)
    -- a sanitizer (make asan, tsan) catches the signal and exits with a status of its own
    if (os.getenv("LD_PRELOAD") or ""):find("san", 1, true) then
      assert.matches("^worker process died %(exit status %d+%)$", failure(f))
    else
      assert.equal("worker process died (signal 11, Segmentation fault)", failure(f))
    end
    local r = pool:map(function(x) return x + 1 end, {1, 2, 3, 4})
    assert.same({2, 3, 4, 5, n = 4}, r)
  end)

  it("run the rest of a map when one item crashes its worker", function()
    local fs = {}
    for i = 1, 8 do
      fs[i] = pool:submit(function(x) if x == 3 then os.exit(1) end return x end, i)
    end
    for i = 1, 8 do
      if i == 3 then assert.matches("^worker process died", failure(fs[i]))
      else assert.equal(i, fs[i]:get()) end
    end
  end)

  it("replace a worker killed while idle before giving it a task #child", function()
    local p <close> = parallel.pool{backend = "process", workers = 1}
    local pid = p:apply(my_pid)
    os.execute("kill -9 " .. pid)
    local deadline = parallel.now() + 5
    while alive(pid) and parallel.now() < deadline do parallel.sleep(0.001) end
    local again = p:apply(my_pid)
    assert.are_not.equal(pid, again)
  end)

  it("kill a task stuck in C with every signal blocked", function()
    local in_c = parallel.event()
    local f = pool:submit(function(path, load, ev)
      return load(path).stuck(function() ev:set() end)
    end, CRASH, crashlib, in_c)
    assert.is_true(in_c:wait(10), "the task never reached C")
    assert.is_true(f:kill())
    assert.equal("killed", failure(f))
    assert.equal(42, pool:apply(function() return 42 end))
    assert.is_false(f:kill())      -- over: nothing to kill
  end)

  it("leave kill on a thread pool an interrupt", function()
    local t <close> = parallel.pool{backend = "threads", workers = 1}
    local f = t:submit(function() while true do end end)
    while f:state() == "pending" do parallel.sleep(0.001) end
    assert.is_true(f:kill())
    assert.matches("interrupted", failure(f))
  end)

  it("interrupt a Lua loop and keep the worker", function()
    local p <close> = parallel.pool{backend = "process", workers = 1}
    local pid = p:apply(my_pid)
    local f = p:submit(function() while true do end end)
    while f:state() == "pending" do parallel.sleep(0.001) end
    assert.is_true(f:interrupt())
    assert.matches("interrupted", failure(f))
    assert.equal(pid, p:apply(my_pid))
  end)

  -- The task sent to a worker still in its init counted as running: the
  -- interrupt named it, the worker (in init, task 0 there) ignored it, and
  -- terminate waited out a grace per worker and started a replacement.
  it("terminate() stops an init stuck in a Lua loop at once, as in a thread pool #child", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local ev = parallel.event()
      local p = parallel.pool{backend = "process", workers = 1, init = function(ev) ev:set() while true do end end, init_args = {ev}}
      local f = p:submit(function() return 1 end)
      assert(ev:wait(10))
      -- sent to the worker (else terminate only cancels it from the queue)
      local t = parallel.now() + 10
      while f:state() == "pending" and parallel.now() < t do parallel.sleep(0.001) end
      local t0 = parallel.now()
      p:terminate()
      print(parallel.now() - t0 < 0.9, f:state(), (tostring(f:error()):match("^pool init failed: interrupted")))
    ]])
    assert.equal(0, status, err)
    assert.equal("true\tfailed\tpool init failed: interrupted\n", out)
  end)

  -- The worker's channel (descriptor 3) had no close-on-exec: a program
  -- the task started (os.execute, io.popen) held the socket, so the parent
  -- never saw the killed worker's channel close and the kill, a
  -- task_timeout or terminate() waited for that program to exit.
  it("end a task that started a program as soon as it is killed, timed out or terminated #child", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      -- the program runs (it holds what the worker did not close) once started is set
      local function task(started)
        local program = io.popen("exec sleep 6 2>/dev/null </dev/null")
        if started ~= 1 then started:set() end
        program:read("a")
        program:close()
        return "slept"
      end
      local p = parallel.pool{backend = "process", workers = 1}
      local started = parallel.event()
      local f = p:submit(task, started)
      assert(started:wait(10), "the program did not start")
      f:kill()
      print(f:wait(3), f:state(), (f:error()))
      print(pcall(p.map, p, task, {1}, {task_timeout = 0.2, timeout = 3}))
      started:clear()
      f = p:submit(task, started)
      assert(started:wait(10), "the program did not start")
      local t0 = parallel.now()
      p:terminate()
      print(parallel.now() - t0 < 3, f:state())
    ]])
    assert.equal(0, status, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("true\tfailed\tkilled", lines[1])
    assert.matches("^false\t.*timeout: the task ran longer than task_timeout", lines[2])
    assert.equal("true\tfailed", lines[3])
  end)

  it("end items that run past task_timeout", function()
    local t0 = parallel.now()
    local e = support.error_of(pool.map, pool, function(x)
      if x == 2 then while true do end end
      return x
    end, {1, 2, 3}, {task_timeout = 0.3})
    assert.matches("item 2: timeout: the task ran longer than task_timeout %(0.3 s%)", e)
    assert.is_true(parallel.now() - t0 < 5)
    assert.same({1, 3, n = 2}, (function()
      local r = pool:map(function(x) return x end, {1, 3}, {task_timeout = 5})
      return r
    end)())
  end)

  it("hold workers to memory_limit", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, memory_limit = 16 * 1024 * 1024}
    local f = p:submit(function()
      local t = {}
      for i = 1, 1e8 do t[i] = ("x"):rep(64) .. i end
      return #t
    end)
    assert.matches("not enough memory", failure(f))
    assert.equal(1, p:apply(function() return 1 end))
  end)

  -- A message larger than the worker's kernel cap (memory_limit + 64 MiB)
  -- could not be buffered: the worker retried the read forever and the task
  -- never ended. A long argument whose segments did not fit made the worker
  -- exit ("worker process died (exit status 0)"), as did a large one that fit
  -- its buffer but not the copy made from it.
  it("fail, and keep the worker, a task whose arguments exceed memory_limit #child", function()
    local out, err, status = support.run_child{timeout = 60, code = [[
      local parallel = require "parallel"
      local p = parallel.pool{backend = "process", workers = 1, memory_limit = 4 * 1024 * 1024}
      local function pid() return p:apply(function() return io.open("/proc/self/stat"):read("n") end) end
      local before = pid()
      local function try(...) print(pcall(function(...) return p:submit(function(a) return #a end, ...):get(30) end, ...)) end
      try(string.rep("x", 100 * 1024 * 1024))
      try(string.rep("x", 16 * 1024 * 1024))
      local t = {}
      for i = 1, 300000 do t[i] = i end
      try(t)
      for i = 1, 300000 do t[i] = string.rep("y", 300) .. i end
      try(t)
      print(before == pid())
    ]]}
    assert.equal(0, status, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    for i = 1, 4 do assert.matches("^false\t[^\n]*not enough memory", lines[i]) end
    assert.equal("true", lines[5])
  end)

  -- A pool made with no descriptor to spare: the owner's wake pipe failed
  -- and every task failed for good with "not enough memory", even once
  -- descriptors were free again.
  it("say a worker cannot start for want of descriptors, and start it once they are back #child", function()
    local out, err, status = support.run_child{prelude = "ulimit -n 64;", code = [[
      local parallel = require "parallel"
      local files = {}
      while true do local f = io.open("/dev/null") if not f then break end files[#files + 1] = f end
      for _ = 1, 3 do table.remove(files):close() end
      local p = parallel.pool{backend = "process", workers = 2}
      local f = p:submit(function() return 1 end)
      print(f:wait(10), f:state(), (f:error()))
      for _, x in ipairs(files) do x:close() end
      local fs = {}
      for i = 1, 4 do fs[i] = p:submit(function() return "back" end) end
      for i = 1, 4 do print(fs[i]:get(10)) end
      p:shutdown()
    ]]}
    assert.equal(0, status, err)
    assert.equal("true\tfailed\tcannot start a worker process (Too many open files)\n"
      .. ("back\n"):rep(4), out)
  end)

  -- A spare that took over and died before the task it was given started
  -- (killed while it waited, as the OOM killer would: not yet seen dead at
  -- the take-over; here its init exits) failed that task, although the
  -- task never ran: it goes to a fresh process, once.
  it("run a task elsewhere when the spare given it died before it started #child", function()
    local out, err, status = support.run_child{timeout = 30, code = [[
      local parallel = require "parallel"
      local v = parallel.value("int64")
      local p = parallel.pool{backend = "process", workers = 1,
        init = function(v) if v:add(1) == 3 then os.exit(7) end end, init_args = {v}}
      assert(p:submit(function() return "a" end):get(10) == "a")
      for _ = 1, 2 do p:submit(function() os.exit(1) end):wait(10) end
      local g = p:submit(function() return "c" end)
      print(g:wait(10), g:state(), g:error() or g:get())
      -- a process whose init always fails still fails the task (no loop)
      local q = parallel.pool{backend = "process", workers = 1, init = function() os.exit(9) end}
      local h = q:submit(function() return 1 end)
      print(h:wait(10), h:state(), (h:error()))
    ]]}
    assert.equal(0, status, err)
    assert.equal("true\tdone\tc\ntrue\tfailed\tworker process died (exit status 9)\n", out)
  end)

  it("replace workers after max_tasks_per_worker tasks", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, max_tasks_per_worker = 2}
    local a, b, c = p:apply(my_pid), p:apply(my_pid), p:apply(my_pid)
    assert.equal(a, b)
    assert.are_not.equal(b, c)
  end)

  it("report to event loops with fd() and completed()", function()
    local p <close> = parallel.pool{backend = "process", workers = 1}
    local fd = p:fd()
    assert.is_number(fd)
    local f = p:submit(function() return 1 end)
    f:wait(10)
    local done = p:completed()
    assert.equal(1, #done)
    assert.equal(1, done[1]:get())
  end)

  it("die with their parent, even when it is killed with SIGKILL #child", function()
    local out, err = run_lua([[
      local parallel = require "parallel"
      local p = parallel.pool{backend = "process", workers = 2}
      local fs = {}
      for i = 1, 2 do
        fs[i] = p:submit(function() local pid = io.open("/proc/self/stat"):read("n"); return pid end)
      end
      print(fs[1]:get(), fs[2]:get())
      io.stdout:flush()
      os.execute("kill -9 " .. io.open("/proc/self/stat"):read("n"))
    ]])
    local a, b = out:match("^(%d+)%s+(%d+)")
    assert.is_truthy(a, "no worker pids: " .. out .. err)
    local deadline = parallel.now() + 5
    while (alive(a) or alive(b)) and parallel.now() < deadline do parallel.sleep(0.01) end
    assert.is_false(alive(a))
    assert.is_false(alive(b))
  end)
end)
