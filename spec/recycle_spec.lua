-- Recycling workers (max_tasks_per_worker) and tasks that shut down their
-- own pool.

local support = require "spec.support"
local parallel = require "parallel"
local assert_raises = support.assert_raises
local run_lua = support.run_lua

local function count_task()
  N = (N or 0) + 1
  return N
end

describe("max_tasks_per_worker", function()
  it("gives a worker a fresh state after n tasks", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 3}
    local seen = {}
    for i = 1, 7 do seen[i] = p:apply(count_task) end
    assert.same({1, 2, 3, 1, 2, 3, 1}, seen)
  end)

  it("counts a map chunk as one task, as a process pool does", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 2}
    local r = p:map(function() N = (N or 0) + 1; return N end, {1, 2, 3, 4, 5, 6}, {chunksize = 2})
    assert.same({n = 6, 1, 2, 3, 4, 1, 2}, r)
  end)

  it("counts failed tasks too", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 2}
    assert.equal(1, p:apply(count_task))
    assert.is_false(pcall(p.apply, p, function() N = N + 1; error("no") end))
    assert.equal(1, p:apply(count_task))
  end)

  it("runs init, with its init_args, again in each fresh state #threads", function()
    local inits = parallel.value("int64", 0)
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 2,
      init = function(v, tag) v:add(1); TAG = tag end, init_args = {inits, "tagged"}}
    local tags = {}
    for i = 1, 5 do tags[i] = p:apply(function() return TAG .. parallel.worker_index() end) end
    assert.same({"tagged1", "tagged1", "tagged1", "tagged1", "tagged1"}, tags)
    -- the first state, then one after task 2 and one after task 4
    assert.equal(3, inits:get())
  end)

  it("runs the closed state's finalizers, which may use shared objects #threads", function()
    local q = parallel.queue()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 1,
      init = function(q) KEEP = setmetatable({}, {__gc = function() q:push("closed") end}) end,
      init_args = {q}}
    p:apply(function() end)
    assert.equal("closed", q:pop(10))
  end)

  it("keeps a leaky task's memory bounded", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 4}
    local most = 0
    for i = 1, 40 do
      local kb = p:apply(function(i)
        LEAK = LEAK or {}
        LEAK[#LEAK + 1] = ("x"):rep(200000) .. i
        return collectgarbage("count")
      end, i)
      most = math.max(most, kb)
    end
    -- 40 tasks without recycling: 8 MB; with it, at most 4 leaks at once
    assert.is_true(most < 2500, ("%.0f KB"):format(most))
  end)

  it("works with memory_limit: a leak that would pass the limit never does", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 2, memory_limit = 4 * 2^20}
    local function leak(i)
      LEAK = LEAK or {}
      LEAK[#LEAK + 1] = ("x"):rep(2^20) .. i
      return #LEAK
    end
    for i = 1, 10 do assert.equal((i - 1) % 2 + 1, p:apply(leak, i)) end
    local f = p:submit(function() return ("x"):rep(8 * 2^20) end)
    assert.is_false(f:wait(10) and f:state() == "done")
    assert.matches("not enough memory", (f:error()))
    assert.equal(1, p:apply(leak, 0))
  end)

  it("gives an interrupted task's worker a fresh state too #threads", function()
    local p <close> = parallel.pool{workers = 1, max_tasks_per_worker = 1}
    local started = parallel.event()
    local f = p:submit(function(s) N = 1; s:set(); while true do end end, started)
    assert.is_true(started:wait(10))
    assert.is_true(f:interrupt())
    assert.is_false(f:wait(10) and f:state() == "done")
    assert.equal(1, p:apply(count_task))
  end)

  it("refuses counts that are not positive integers", function()
    for _, bad in ipairs{0, -1, 1.5, "2", true} do
      assert_raises("bad argument #1 to 'pool' (max_tasks_per_worker must be a positive integer)",
        function() return parallel.pool{max_tasks_per_worker = bad} end)
    end
    assert_raises("bad argument #1 to 'pool' (max_tasks_per_worker must be a positive integer)",
      function() return parallel.pool{backend = "process", max_tasks_per_worker = 0} end)
  end)
end)

describe("max_tasks_per_worker, hostile #child", function()
  it("fails every task with the init's error when init fails in a fresh state, and ends", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local runs = parallel.value("int64", 0)
      local p = parallel.pool{workers = 1, max_tasks_per_worker = 1,
        init = function(v) if v:add(1) > 1 then error("no database", 0) end end, init_args = {runs}}
      print(p:apply(function() return "first" end))
      for i = 1, 3 do
        local ok, e = pcall(p.apply, p, function() return "never" end)
        print(ok, e)
      end
      p:shutdown()
      print("end")
    ]])
    assert.equal(0, status, err)
    assert.equal("first\n" .. ("false\tpool init failed: no database\n"):rep(3) .. "end\n", out)
  end)

  it("survives interrupts, cancels, terminate, close and collection around recycling", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local function task(i, stop)
        LEAK = (LEAK or "") .. ("x"):rep(1000)
        if i % 5 == 0 then error("task " .. i) end
        if i % 3 == 0 then while not stop:is_set() do end end
        if i % 7 == 0 then parallel.sleep(0.001) end
        return i
      end
      for round = 1, 24 do
        local inits = parallel.value("int64", 0)
        local stop = parallel.event()
        local p = parallel.pool{workers = 2, max_tasks_per_worker = round % 3 + 1,
          init = function(v, r)
            -- later inits are slow, so terminate meets some of them running
            if v:add(1) > 4 and r % 2 == 0 then parallel.sleep(100) end
            KEEP = setmetatable({}, {__gc = function() v:add(1000) end})
          end, init_args = {inits, round}}
        local fs = {}
        for i = 1, 30 do fs[i] = p:submit(task, i, stop) end
        for i = 1, 30, 4 do fs[i]:cancel() end
        for i = 3, 30, 6 do fs[i]:interrupt() end
        -- a head start, bounded: both workers may already be in slow inits
        -- (100 s), so waiting for fs[2] itself could outlast the child's timeout
        fs[2]:wait(0.2)
        local how = round % 4
        if how == 0 then p:terminate()
        elseif how == 1 then stop:set(); p:shutdown{cancel = true}
        elseif how == 2 then p = nil; collectgarbage(); collectgarbage()
        else
          p:submit(function(pool) pool:terminate(); return "terminated" end, p)
          p:terminate()
        end
        stop:set()
        for i = 1, 30 do assert(fs[i]:wait(10), "future " .. i .. " never finished") end
        if p then p:shutdown() end
      end
      print("ok")
    ]])
    assert.equal(0, status, err)
    assert.equal("ok\n", out)
  end)
end)

describe("a task that shuts down its own pool #child", function()
  it("does not wait for itself; the owner's shutdown then waits for it", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local p = parallel.pool(2)
      local shut, go = parallel.event(), parallel.event()
      local f = p:submit(function(pool, shut, go)
        pool:shutdown()
        shut:set()
        go:wait(10)
        return "after"
      end, p, shut, go)
      assert(shut:wait(10))
      print(pcall(p.submit, p, print))
      local t = parallel.timer(0.2, function(go) go:set() end, go)
      p:shutdown()
      print(f:state(), f:get())
    ]])
    assert.equal(0, status, err)
    assert.equal("false\tpool is shut down\ndone\tafter\n", out:gsub("\t[^\t]-:%d+: ", "\t"))
  end)

  it("closes it with <close> and goes on", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local p = parallel.pool(2)
      local f = p:submit(function(pool)
        do local _ <close> = pool end
        return "after close"
      end, p)
      print(f:get())
      p:shutdown()
      print(p:stats().shutdown)
    ]])
    assert.equal(0, status, err)
    assert.equal("after close\ntrue\n", out)
  end)

  it("terminates it: the others are interrupted, the caller runs on", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local p = parallel.pool(2)
      local started, go = parallel.event(), parallel.event()
      local spin = p:submit(function(s) s:set(); while true do end end, started)
      assert(started:wait(10))
      local f = p:submit(function(pool, go) go:wait(10); pool:terminate(); return "after terminate" end, p, go)
      local queued = p:submit(function() return "never" end)
      go:set()
      print(f:get())
      print(spin:wait(10), spin:state(), (spin:error()))
      print(queued:state())
      p:terminate()
    ]])
    assert.equal(0, status, err)
    assert.equal("after terminate\ntrue\tfailed\tinterrupted\ncancelled\n", out)
  end)
end)
