-- Process pools keep several tasks in flight per worker (tasks_ahead): the
-- guarantees of one task at a time still hold. Tasks and this process
-- synchronise through events (gates that a task waits for, signals that a
-- task reached a point) and queues (logs that tasks push to): both cross
-- to worker processes as the parent's own objects.
local parallel = require "parallel"
local support = require "spec.support"

local CRASH = os.getenv("PARALLEL_CRASHLIB") or "./build/test/crash.so"
local function crashlib(path) return package.loadlib(path, "luaopen_crash")() end

local function my_pid() return io.open("/proc/self/stat"):read("n") end

-- In a task: waits (at most 20 s) until the gate (an event) is set.
local function await(gate)
  if not gate:wait(20) then error("gate never opened") end
  return true
end

-- In a task: logs a line (pushes it to the log, a queue).
local function note(log, line) log:push(line) end

-- What the tasks logged, in order.
local function lines(log)
  local t = {}
  while #log > 0 do t[#t + 1] = log:pop() end
  return t
end

local function open_gate(gate) gate:set() end

local function running(f)
  local t = parallel.now() + 10
  while f:state() == "pending" and parallel.now() < t do parallel.sleep(0.001) end
  assert.equal("running", f:state())
end

local function failure(f)
  assert.is_true(f:wait(15), "the task did not end")
  assert.equal("failed", f:state())
  return (f:error())
end

-- A pool (one idle worker) whose next tasks are all in its queue when the task
-- `first` starts: the worker thread takes them ahead at once. Returns the
-- futures of first and of the rest.
local function queued_behind(pool, first, ...)
  local started, hold = parallel.event(), parallel.event()
  local w = pool:submit(function(s, g, wait)
    s:set()
    wait(g)
    return io.open("/proc/self/stat"):read("n")
  end, started, hold, await)
  assert.is_true(started:wait(20), "the holding task did not start")
  local a = pool:submit(table.unpack(first))
  local rest = {}
  for i, t in ipairs({...}) do rest[i] = pool:submit(table.unpack(t)) end
  open_gate(hold)
  return a, rest, w:get(15)
end

describe("process pools with tasks in flight", function()
  it("check tasks_ahead", function()
    support.assert_raises([[bad argument #1 to 'pool' (tasks_ahead needs backend = "process")]],
      function() return parallel.pool{tasks_ahead = 2} end)
    support.assert_raises([[bad argument #1 to 'pool' (tasks_ahead is at most 7)]],
      function() return parallel.pool{backend = "process", tasks_ahead = 8} end)
    support.assert_raises([[bad argument #1 to 'pool' (tasks_ahead must be a non-negative integer)]],
      function() return parallel.pool{backend = "process", tasks_ahead = -1} end)
  end)

  it("run the tasks sent ahead of a worker that dies elsewhere, each once", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 4}
    local log, go = parallel.queue(), parallel.event()
    local job = function(l, i, n) n(l, tostring(i)) return i end
    local a, rest = queued_behind(p,
      {function(g, wait) wait(g) os.exit(7) end, go, await},
      {job, log, 1, note}, {job, log, 2, note}, {job, log, 3, note}, {job, log, 4, note},
      {job, log, 5, note}, {job, log, 6, note})
    running(a)
    open_gate(go)
    assert.equal("worker process died (exit status 7)", failure(a))
    for i = 1, 6 do assert.equal(i, rest[i]:get(15)) end
    local seen = lines(log)
    table.sort(seen)
    assert.same({"1", "2", "3", "4", "5", "6"}, seen)
    local st = p:stats()
    assert.equal(8, st.submitted)
    assert.equal(7, st.completed)
    assert.equal(1, st.failed)
  end)

  it("cancel a task sent ahead that has not started; it never runs", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 4}
    local log, go = parallel.queue(), parallel.event()
    local job = function(l, i, n) n(l, tostring(i)) return i end
    local a, rest = queued_behind(p,
      {function(g, wait) wait(g) return "a" end, go, await},
      {job, log, 1, note}, {job, log, 2, note}, {job, log, 3, note})
    running(a)
    assert.is_true(rest[2]:cancel())
    assert.equal("cancelled", rest[2]:state())
    assert.is_false(rest[2]:cancel())
    open_gate(go)
    assert.equal("a", a:get(15))
    assert.equal(1, rest[1]:get(15))
    assert.equal(3, rest[3]:get(15))
    assert.same({"1", "3"}, lines(log))
    assert.equal(1, p:stats().cancelled)
    assert.is_false(a:cancel())            -- over
  end)

  it("cancel tasks while they are being sent ahead; the sender keeps their arguments #child", function()
    -- A cancel used to free the task's message while the worker thread was
    -- still flattening it (a use after free under ASan, a race under TSan).
    local out, err, status = support.run_child{ timeout = 120, code = [[
      local parallel = require "parallel"
      local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 4}
      local big = string.rep("x", 4 << 20)
      local job = function(s) return #s end
      local cancelled, done = 0, 0
      for round = 1, 10 do
        local fs = {}
        for i = 1, 8 do
          fs[i] = p:submit(job, big)
          if i > 1 and fs[i - 1]:cancel() then cancelled = cancelled + 1 end
        end
        for i = 1, 8 do
          if fs[i]:state() ~= "cancelled" then
            assert(fs[i]:get(60) == #big)
            done = done + 1
          end
        end
      end
      assert(cancelled + done == 80)
      assert(p:stats().cancelled == cancelled)
      print("ok")
    ]] }
    assert.equal("", err)
    assert.equal(0, status)
    assert.equal("ok\n", out)
  end)

  it("cancel none of them once they started", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 2}
    local go = parallel.event()
    local a, rest = queued_behind(p,
      {function() return "a" end},
      {function(g, wait) wait(g) return "b" end, go, await})
    running(rest[1])
    assert.is_false(rest[1]:cancel())
    open_gate(go)
    assert.equal("a", a:get(15))
    assert.equal("b", rest[1]:get(15))
  end)

  it("interrupt and kill the task they mean, not the one before or after", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 4}
    local go = parallel.event()
    local a, rest = queued_behind(p,
      {function(g, wait) wait(g) return require("parallel").now() end, go, await},
      {function() while true do end end},
      {function(path, load) return load(path).stuck() end, CRASH, crashlib},
      {my_pid})
    local loop, stuck, after = rest[1], rest[2], rest[3]
    running(a)
    assert.is_false(loop:interrupt())      -- sent ahead, not started: nothing to interrupt
    assert.is_false(stuck:kill())
    open_gate(go)
    assert.is_number(a:get(15))
    running(loop)
    assert.is_true(loop:interrupt())
    assert.matches("interrupted", failure(loop))
    running(stuck)
    assert.is_true(stuck:kill())
    assert.equal("killed", failure(stuck))
    assert.is_number(after:get(15))
  end)

  it("count task_timeout from a task's start, not from its send", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 4}
    -- Three items of 0.6 s (task_timeout 1 s each, as map makes them) are
    -- in the queue when the holding task ends: the worker thread sends them
    -- together, and the third starts 1.2 s after its send.
    local started, hold = parallel.event(), parallel.event()
    local w = p:submit(function(s, g, wait) s:set() wait(g) return true end, started, hold, await)
    assert.is_true(started:wait(20), "the holding task did not start")
    local item = function(x) require("parallel").sleep(0.6) return x end
    local fs = {}
    for i = 1, 3 do fs[i] = p:_chunk(item, {i}, 1, 1, false, i, 1.0) end
    open_gate(hold)
    assert.is_true(w:get(15))
    for i = 1, 3 do
      assert.is_true(fs[i]:wait(15), "item " .. i .. " did not end")
      assert.equal("done", fs[i]:state(), tostring((fs[i]:error())))
    end
    local e = support.error_of(p.map, p, function(x)
      if x == 3 then while true do end end
      return x
    end, {1, 2, 3, 4}, {task_timeout = 0.5})
    assert.matches("item 3: timeout: the task ran longer than task_timeout %(0.5 s%)", e)
  end)

  it("hold max_tasks_per_worker exactly", function()
    local p <close> = parallel.pool{backend = "process", workers = 1, tasks_ahead = 7,
                                    max_tasks_per_worker = 3}
    local first = {my_pid}
    local jobs = {}
    for i = 1, 8 do jobs[i] = {my_pid} end
    local a, rest, w = queued_behind(p, first, table.unpack(jobs))
    local count = {[w] = 1}
    local order = {w}
    local function add(pid)
      if not count[pid] then order[#order + 1] = pid end
      count[pid] = (count[pid] or 0) + 1
    end
    add(a:get(15))
    for i = 1, 8 do add(rest[i]:get(15)) end
    local per = {}
    for i, pid in ipairs(order) do per[i] = count[pid] end
    assert.same({3, 3, 3, 1}, per)      -- the pool's first task, then the 9 queued
  end)

  it("give tasks waiting behind a long one to an idle worker", function()
    local p <close> = parallel.pool{backend = "process", workers = 2, tasks_ahead = 7}
    -- one worker is busy while the other takes the long task and, ahead, the
    -- short ones queued behind it; then the busy one turns idle
    local started, busy, go = parallel.event(), parallel.event(), parallel.event()
    local other = p:submit(function(s, g, wait) s:set() return wait(g) end, started, busy, await)
    assert.is_true(started:wait(20), "the first task did not start")
    local jobs = {}
    for i = 1, 6 do jobs[i] = {function(x) return x end, i} end
    local long, short = queued_behind(p, {function(g, wait) return wait(g) end, go, await},
                                      table.unpack(jobs))
    open_gate(busy)
    assert.is_true(other:get(10))
    -- none stays stuck behind the long task: the other worker runs them all
    for i = 1, 6 do assert.equal(i, short[i]:get(10)) end
    assert.equal("running", long:state())
    open_gate(go)
    assert.is_true(long:get(10))
  end)
end)

describe("process pools shutting down", function()
  it("kill a task stuck in C that ignores the interrupt, after a grace #child", function()
    for _, how in ipairs({"terminate", "collect", "exit"}) do
      local out, err, status = support.run_child{ timeout = 20, code = ([[
        local parallel = require "parallel"
        local p = parallel.pool{backend = "process", workers = 1}
        local in_c = parallel.event()
        local f = p:submit(function(path, ev)
          return package.loadlib(path, "luaopen_crash")().stuck(function() ev:set() end)
        end, %q, in_c)
        assert(in_c:wait(10), "the task never reached C")
        local t0 = parallel.now()
        if %q == "terminate" then p:terminate()
        elseif %q == "collect" then p = nil collectgarbage() collectgarbage()
        else print("exiting") return end
        print(string.format("%%.1f", parallel.now() - t0), f:state(), (f:error()))
      ]]):format(CRASH, how, how) }
      assert.equal(0, status, how .. ": " .. tostring(err))
      if how == "exit" then
        assert.equal("exiting\n", out)
      else
        local secs, state, e = out:match("^(%S+)%s+(%S+)%s+(.-)\n$")
        assert.equal("failed", state, how .. ": " .. out .. err)
        assert.is_true(tonumber(secs) >= 0.9 and tonumber(secs) < 5, how .. ": " .. out)
        assert.equal("interrupted: the pool shut down and the task did not stop within 1 s of its "
          .. "interrupt; its worker process was killed", e)
      end
    end
  end)
end)

describe("process pools and streamed arguments", function()
  it("fail a streamed task cleanly when its sender fails in the middle, and go on", function()
    local p <close> = parallel.pool{backend = "process", workers = 1}
    local big = {}
    for i = 1, 300000 do big[i] = i end
    big[250000] = coroutine.create(print)      -- past the first segments
    support.assert_raises("cannot send thread at args[1][250000]: a coroutine cannot travel; "
      .. "create it inside the task", p.submit, p, function(t) return #t end, big)
    assert.equal("after", p:apply(function() return "after" end))
    local st = p:stats()
    assert.equal(1, st.failed)                 -- the orphaned task, in the worker
    big[250000] = 0
    assert.equal(300000, p:submit(function(t) return #t end, big):get(30))
  end)
end)
