-- Shared objects between processes: arrays, values, locks, rlocks,
-- semaphores, conditions, events and barriers handed to the tasks of a
-- process pool are the parent's objects, in shared memory.
-- Every wait here has a timeout, so a regression fails instead of hanging.
local parallel = require "parallel"
local support = require "spec.support"

local CRASH = os.getenv("PARALLEL_CRASHLIB") or "./build/test/crash.so"
local function crashlib(path) return package.loadlib(path, "luaopen_crash")() end

local function failure(f)
  assert.is_true(f:wait(10), "the task did not end")
  assert.equal("failed", f:state())
  return tostring((f:error()))
end

describe("shared objects in process pools", function()
  local pool
  lazy_setup(function() pool = parallel.pool{backend = "process", workers = 2} end)
  lazy_teardown(function() pool:shutdown() end)

  -- Both workers start before either counts: each waits on a barrier with the parent.
  local function both(fn, ...)
    local b = parallel.barrier(3)
    local fs = {}
    for w = 1, 2 do
      fs[w] = pool:submit(function(b, fn, w, ...)
        assert(b:wait(10), "barrier")
        return fn(w, ...)
      end, b, fn, w, ...)
    end
    assert.equal(3, b:wait(10) and 3)
    for w = 1, 2 do assert.is_true(fs[w]:wait(30), "worker " .. w .. " did not end") end
    return fs[1]:get(), fs[2]:get()
  end

  describe("values and arrays", function()
    it("are the same memory: add is exact across two processes", function()
      local v = parallel.value("int64", 0)
      local a = parallel.array("double", 4)
      both(function(w, v, a, n)
        for _ = 1, n do v:add(1); a:add(w, 0.5) end
        return true
      end, v, a, 200000)
      assert.equal(400000, v:get())
      assert.same({100000.0, 100000.0, 0.0, 0.0}, a:totable())
    end)

    it("cas is exact across processes", function()
      local v = parallel.value("int32", 0)
      both(function(_, v, n)
        for _ = 1, n do
          repeat local old = v:get() until v:cas(old, old + 1)
        end
      end, v, 20000)
      assert.equal(40000, v:get())
    end)

    it("views travel as views, and come back as the same object", function()
      local a = parallel.array("int64", 10)
      local v = a:view(4, 6)
      local n, back = pool:submit(function(v)
        for i = 1, #v do v[i] = 100 + i end
        return #v, v
      end, v):get()
      assert.equal(3, n)
      assert.equal(v, back)
      assert.same({0, 0, 0, 101, 102, 103, 0, 0, 0, 0}, a:totable())
      assert.equal(a, pool:submit(function(a) return a end, a):get())
      -- a view made in the worker of the parent's array works there
      assert.equal(306, pool:submit(function(a) return a:view(4, 6):sum() end, a):get())
    end)

    it("stay alive while a worker uses them, after the parent dropped them", function()
      local go = parallel.event()
      local started = parallel.event()
      local f = pool:submit(function(a, go, started)
        started:set()
        assert(go:wait(10))
        a:fill(7)
        return a:sum()
      end, parallel.array("int64", 1000, 1), go, started)
      assert.is_true(started:wait(10))
      collectgarbage(); collectgarbage()
      go:set()
      assert.equal(7000, f:get())
    end)

    it("work in a worker held to a tiny memory_limit (the mapping is not its heap)", function()
      local p <close> = parallel.pool{backend = "process", workers = 1, memory_limit = 4 << 20}
      local a = parallel.array("double", 2000000, 1)   -- 16 MB
      assert.equal(2000000, p:submit(function(a) return a:sum() end, a):get())
    end)
  end)

  describe("locks", function()
    it("keep a counter exact across processes", function()
      local l, c = parallel.lock(), parallel.value("int64", 0)
      both(function(_, l, c, n)
        for _ = 1, n do
          l:acquire()
          c:set(c:get() + 1)    -- not atomic: only the lock makes it exact
          l:release()
        end
      end, l, c, 20000)
      assert.equal(40000, c:get())
    end)

    it("keep a counter exact with three threads and a worker process contending, while waiters are interrupted", function()
      local l, c = parallel.lock(), parallel.value("int64", 0)
      local n, go, half = 20000, parallel.barrier(5), parallel.event()
      -- Victims take the lock over and over (the guard releases it when the
      -- interrupt lands inside) until interrupted, often while asleep in acquire.
      local function victim(l, started)
        started:set()
        while true do l:with(function() end) end
      end
      local vt_started, vp_started = parallel.event(), parallel.event()
      local vt = parallel.spawn(victim, l, vt_started)
      local vp = pool:submit(victim, l, vp_started)
      assert.is_true(vt_started:wait(10) and vp_started:wait(10))
      local function count(l, c, go, half, n)
        assert(go:wait(10), "barrier")
        for i = 1, n do
          l:acquire()
          c:set(c:get() + 1)    -- not atomic: only the lock makes it exact
          l:release()
          if i == n // 2 and half then half:set() end
        end
        return true
      end
      local fs = {}
      for t = 1, 3 do fs[t] = parallel.spawn(count, l, c, go, t == 1 and half or nil, n) end
      fs[4] = pool:submit(count, l, c, go, nil, n)
      assert.is_true(go:wait(10) ~= nil)
      assert.is_true(half:wait(30), "the counters did not get halfway")
      assert.is_true(vt:interrupt() ~= false)
      assert.is_true(vp:interrupt() ~= false)
      assert.matches("interrupted", failure(vt))
      assert.matches("interrupted", failure(vp))
      for t = 1, 4 do assert.is_true(fs[t]:wait(60), "counter " .. t .. " did not end") end
      for t = 1, 4 do assert.is_true(fs[t]:get()) end
      assert.equal(4 * n, c:get())
      assert.is_false(l:locked())
    end)

    it("time out in a worker while the parent holds them", function()
      local l = parallel.lock()
      l:acquire()
      assert.same({false}, {pool:submit(function(l) return l:acquire(0.05) end, l):get()})
      l:release()
      assert.is_true(pool:submit(function(l) local ok = l:acquire(5); l:release(); return ok end, l):get())
    end)

    it("rlocks belong to the worker's thread that holds them", function()
      local r = parallel.rlock()
      local held, go = parallel.event(), parallel.event()
      local f = pool:submit(function(r, held, go)
        r:acquire(); r:acquire()
        held:set()
        assert(go:wait(10))
        r:release(); r:release()
        return true
      end, r, held, go)
      assert.is_true(held:wait(10))
      assert.is_false(r:acquire(0.05))
      assert.has_error(function() r:release() end, "rlock is not held by this thread")
      go:set()
      assert.is_true(f:get())
      assert.is_true(r:acquire(5))
      r:release()
    end)

    local deaths = {
      {"SIGKILL", function(path, load) load(path).sigkill() end},
      {"os.exit", function() os.exit(3) end},
      {"a segfault", function(path, load) load(path).segv() end},
    }
    for _, d in ipairs(deaths) do
      it("held by a worker that dies (" .. d[1] .. ") go to the next acquirer, once told", function()
        local l, held = parallel.lock(), parallel.event()
        local f = pool:submit(function(l, held, die, path, load)
          l:acquire()
          held:set()
          die(path, load)
        end, l, held, d[2], CRASH, crashlib)
        assert.is_true(held:wait(10))
        assert.matches("worker process died", failure(f))
        -- in the parent: the lock was free, its holder dead
        assert.same({true, "owner died"}, {l:acquire(10)})
        l:release()
        assert.same({true}, {l:acquire(1)})
        l:release()
      end)
    end

    it("wake a worker waiting for a lock whose holder died", function()
      local l, held = parallel.lock(), parallel.event()
      local killer = pool:submit(function(l, held)
        l:acquire()
        held:set()
        os.exit(1)
      end, l, held)
      local waiter = pool:submit(function(l, held)
        assert(held:wait(10))
        return l:acquire(10)
      end, l, held)
      failure(killer)
      assert.same({true, "owner died"}, {waiter:get()})
    end)
  end)

  describe("conditions, events, semaphores and barriers", function()
    it("a condition's notify wakes a waiting worker; notify(1) wakes one", function()
      local c, waiting = parallel.condition(), parallel.semaphore(0)
      local fs = {}
      for i = 1, 2 do
        fs[i] = pool:submit(function(c, waiting)
          return c:with(function()
            waiting:release()
            return c:wait(10)
          end)
        end, c, waiting)
      end
      -- both are waiting once they are counted and the lock is free again
      for _ = 1, 2 do assert.is_true(waiting:acquire(10), "a task never reached the wait") end
      c:acquire(); c:release()
      c:with(function() c:notify(1) end)
      assert.is_true(parallel.wait(fs, {timeout = 10, return_when = "first"})[1] ~= nil)
      local done = 0
      for _, f in ipairs(fs) do if f:done() then done = done + 1 end end
      assert.equal(1, done)
      c:with(function() c:notify_all() end)
      assert.is_true(fs[1]:get())
      assert.is_true(fs[2]:get())
    end)

    it("a condition's wait times out in a worker", function()
      local c = parallel.condition(parallel.lock())
      assert.is_false(pool:submit(function(c) return c:with(function() return c:wait(0.05) end) end, c):get())
    end)

    it("an event set in the parent wakes a worker; one set in a worker wakes the parent", function()
      local e, back = parallel.event(), parallel.event()
      local f = pool:submit(function(e, back)
        local ok = e:wait(10)
        back:set()
        return ok
      end, e, back)
      e:set()
      assert.is_true(back:wait(10))
      assert.is_true(f:get())
      assert.is_false(pool:submit(function(ev) return ev:wait(0.05) end, parallel.event()):get())
    end)

    it("a semaphore counts across processes", function()
      local s = parallel.bounded_semaphore(1)
      assert.is_true(s:acquire(0))
      local f = pool:submit(function(s) return s:acquire(10) end, s)
      s:release()
      assert.is_true(f:get())
      assert.equal(0, s:value())
      assert.is_false(pool:submit(function(s) return s:acquire(0.05) end, s):get())
      assert.is_true(pool:submit(function(s) s:release() return true end, s):get())
      assert.has_error(function() s:release() end, "semaphore released too many times (bounded at 1)")
    end)

    it("a barrier opens for two workers and the parent", function()
      local b = parallel.barrier(3)
      local fs = {}
      for i = 1, 2 do fs[i] = pool:submit(function(b) return b:wait(10) end, b) end
      local mine = b:wait(10)
      local got = { mine, fs[1]:get(), fs[2]:get() }
      table.sort(got)
      assert.same({1, 2, 3}, got)
      assert.same({nil, "timeout"}, {pool:submit(function(b) return b:wait(0.05) end, b):get()})
      assert.equal(0, b:waiting())
    end)

    it("a barrier with an action is refused with a reason", function()
      local b = parallel.barrier(2, function() end)
      assert.has_error(function() pool:submit(function() end, b) end,
        "cannot send parallel.barrier with an action to another process (its action is a "
        .. "function of this process; make the barrier without one)")
    end)
  end)

  describe("a worker blocked on one", function()
    it("is interrupted: the task fails, the worker stays", function()
      local l, started = parallel.lock(), parallel.event()
      l:acquire()
      local f = pool:submit(function(l, started) started:set() return l:acquire() end, l, started)
      assert.is_true(started:wait(10))
      f:interrupt()
      assert.matches("interrupted", failure(f))
      l:release()
      assert.equal(1, pool:submit(function() return 1 end):get())
    end)

    it("is killed while waiting on a condition: the others go on", function()
      local c, started = parallel.condition(), parallel.event()
      local f = pool:submit(function(c, started)
        return c:with(function() started:set() return c:wait() end)
      end, c, started)
      assert.is_true(started:wait(10))
      f:kill()
      assert.equal("killed", failure(f))
      assert.is_true(c:acquire(10))
      c:release()
    end)
  end)

  it("reach init through init_args, in every worker", function()
    local started = parallel.value("int64", 0)
    local p <close> = parallel.pool{backend = "process", workers = 2,
      init = function(v) v:add(1) end, init_args = {started}}
    assert.same({1, 1, n = 2}, p:map(function() return 1 end, {1, 2}))
    local t0 = parallel.now()
    while started:get() < 2 and parallel.now() - t0 < 10 do parallel.sleep(0.005) end
    assert.equal(2, started:get())
  end)

  describe("made in a worker", function()
    it("come back to the parent as objects in shared memory", function()
      local a, v, l, e = pool:submit(function()
        local a = parallel.array("int32", 3)
        a[1], a[2], a[3] = 7, 8, 9
        local v = parallel.value("double", 2.5)
        return a, v, parallel.lock(), parallel.event()
      end):get()
      assert.same({7, 8, 9}, a:totable())
      assert.equal(2.5, v:get())
      assert.is_true(l:acquire(1))
      l:release()
      e:set()
      assert.is_true(e:is_set())
    end)

    it("are the same memory for the parent and a task of any worker", function()
      local a = pool:submit(function() return parallel.array("int64", 2) end):get()
      a[1] = 5
      -- every worker adds to it, the one that made it included
      assert.same({true, true}, {both(function(w, a, n)
        for _ = 1, n do a:add(2, 1) end
        return a[1] == 5
      end, a, 20000)})
      assert.equal(40000, a[2])
      assert.equal(a, pool:submit(function(a) return a end, a):get())
    end)

    it("go from one worker to another through a queue of the parent", function()
      local q = parallel.queue()
      local b = parallel.barrier(2)
      local maker = pool:submit(function(q, b)
        local a = parallel.array("int32", 1)
        local ev = parallel.event()
        q:push({a = a, ev = ev})
        assert(ev:wait(10), "the other worker did not set the event")
        b:wait(10)
        return a[1]
      end, q, b)
      local user = pool:submit(function(q, b)
        local t = q:pop(10)
        t.a[1] = 42
        t.ev:set()
        b:wait(10)
        return true
      end, q, b)
      assert.is_true(user:get(30))
      assert.equal(42, maker:get(30))
    end)

    it("outlive the worker that made them: the parent keeps using them and relays them to new workers", function()
      local p <close> = parallel.pool{backend = "process", workers = 1, max_tasks_per_worker = 1}
      local a, l = p:submit(function()
        local a = parallel.array("int32", 2)
        a[1] = 11
        return a, parallel.lock()
      end):get()
      -- each task has a fresh process: the maker is gone (or going)
      assert.same({true, 12}, {p:submit(function(a, l)
        assert(l:acquire(10))
        a[2] = a[1] + 1
        l:release()
        return true, a[2]
      end, a, l):get(30)})
      assert.same({11, 12}, a:totable())
      assert.equal(a, p:submit(function(a) return a end, a):get(30))
    end)

    it("a lock a worker made and dies holding goes to the next acquirer, once told", function()
      local q, go = parallel.queue(), parallel.event()
      local f = pool:submit(function(q, go)
        local l = parallel.lock()
        l:acquire()
        q:push(l)
        assert(go:wait(10))
        os.exit(3)
      end, q, go)
      local l = q:pop(10)
      assert.same({false}, {l:acquire(0.05)})
      go:set()
      assert.matches("worker process died", failure(f))
      assert.same({true, "owner died"}, {l:acquire(10)})
      l:release()
      assert.same({true}, {l:acquire(1)})
      l:release()
    end)

    it("are freed in the worker once the parent no longer uses them: many tasks, no growth #child", function()
      -- an 800 KB array has a memfd of its own in the worker that made it
      local out, err, status = support.run_child{ timeout = 60, code = [[
        local parallel = require "parallel"
        local pool <close> = parallel.pool{backend = "process", workers = 1}
        local function make()
          collectgarbage()
          local n = 0
          for _ in io.popen("ls /proc/$PPID/fd"):lines() do n = n + 1 end
          return parallel.array("double", 100000), n
        end
        local first, last
        for i = 1, 40 do
          local a, n = pool:submit(make):get(10)
          a[1] = i
          first = first or n
          last = n
          a = nil
          collectgarbage() collectgarbage()
        end
        io.write("grew ", last - first, "\n")
        -- one kept here stays the same memory, as the worker goes on making others
        local kept = pool:submit(make):get(10)
        kept[1] = 7
        for _ = 1, 5 do pool:submit(make):get(10) collectgarbage() end
        io.write("kept ", kept[1], " ", pool:submit(function(a) return a[1] end, kept):get(10), "\n")
      ]] }
      assert.equal(0, status, err)
      local grew = tonumber(out:match("grew (%-?%d+)"))
      assert.is_true(grew ~= nil and grew <= 2, out)  -- 40 if the worker kept them all
      assert.matches("kept 7 7\n", out)
    end)

    it("are not freed by their maker while another worker still has them", function()
      local function pid() return io.open("/proc/self/stat"):read("n") end
      for _ = 1, 3 do
        -- the holder takes one worker first, so the array is made by the other
        local q, go, has = parallel.queue(), parallel.event(), parallel.event()
        local holder = pool:submit(function(q, go, has, pid)
          local a = q:pop(10)
          has:set()
          assert(go:wait(10))
          return a[1], pid()
        end, q, go, has, pid)
        local a, maker = pool:submit(function(pid) return parallel.array("int64", 1), pid() end, pid):get(10)
        a[1] = 42
        q:push(a)
        assert.is_true(has:wait(10))
        a = nil
        collectgarbage() collectgarbage()
        -- its maker makes more (and takes freed blocks again) while the holder has it
        for i = 1, 10 do
          local b = pool:submit(function(i)
            collectgarbage()
            local t = {}    -- more than were freed here since: a freed block is taken again
            for j = 1, 20 * i do
              t[j] = parallel.array("int64", 1)
              t[j][1] = -i
            end
            return t[1]
          end, i):get(10)
          assert.equal(-i, b[1])
          b = nil
          collectgarbage()
        end
        go:set()
        local v, held_by = holder:get(10)
        assert.equal(42, v)
        assert.are_not.equal(maker, held_by)
      end
    end)

    it("queues, dicts, pools and futures are refused at the send, saying what to do", function()
      for _, make in ipairs{"queue", "dict"} do
        local f = pool:submit(function(make) return parallel[make]() end, make)
        assert.equal("parallel." .. make .. " created in a worker process cannot leave it (make "
          .. "it with {owner = \"parent\"}, e.g. parallel.queue(n, {owner = \"parent\"}), or "
          .. "create it in the parent and pass it to the task)", failure(f))
      end
      local f = pool:submit(function()
        local p = parallel.pool{workers = 1}
        local fut = p:submit(function() return 1 end)
        fut:wait()
        return fut
      end)
      assert.equal("parallel.future created in a worker process cannot leave it (send its result "
        .. "instead, or submit to a pool the task was given)", failure(f))
    end)
  end)

  it("leave no worker hanging when the parent dies holding a lock they wait for #child", function()
    local out, err, status = support.run_child{ timeout = 20, code = [[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local l = parallel.lock()
      l:acquire()
      local started = parallel.event()
      local f = pool:submit(function(l, s) s:set() l:acquire() end, l, started)
      assert(started:wait(10))
      io.write("waiting ", tostring(#pool:stats().busy), "\n")
      os.exit(0, false)
    ]] }
    assert.equal(0, status, err)
    assert.matches("waiting 1", out)
  end)
end)
