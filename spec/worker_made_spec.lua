-- Queues, pipes and dicts a task in a worker process makes with
-- {owner = "parent"}: the pool's process makes them on the task's behalf
-- (wire/remote.h's PR_CREATE), so they leave the worker as the parent's
-- own objects do, and outlive it. What stays refused names what to do.
local parallel = require "parallel"
local core = require "parallel.core"
local support = require "spec.support"

-- The first line of fn's error, without its position.
local function message_of(fn)
  local err = tostring(support.error_of(fn))
  return (err:gsub("^[^\n]-:%d+: ", ""):match("^[^\n]*"))
end

-- Collects in the worker and here until the exports this process holds
-- for others are back to `want` (the worker lets go of what it collected
-- before its next outcome); how many are left.
local function settle(pool, want)
  local n
  for _ = 1, 20 do
    pool:submit(function() collectgarbage() collectgarbage() end):get(10)
    collectgarbage() collectgarbage()
    n = core._remote_exports()
    if n == want then break end
  end
  return n
end

describe("objects made in a worker process with {owner = \"parent\"}", function()
  local pool
  lazy_setup(function() pool = parallel.pool{backend = "process", workers = 1} end)
  lazy_teardown(function() pool:shutdown() end)

  it("leave the worker: a queue, a pipe's ends and a dict come here with what the task put in", function()
    local q, a, b, d = pool:apply(function()
      local parallel = require "parallel"
      local q = parallel.queue(5, {owner = "parent"})
      q:push(1)
      q:push({x = 2})
      local a, b = parallel.pipe{owner = "parent"}
      a:send("hi")
      local d = parallel.dict{owner = "parent"}
      d.k = "v"
      return q, a, b, d
    end)
    assert.equal("parallel.queue", getmetatable(q).__name)
    assert.equal(5, q:capacity())
    assert.equal(2, #q)
    assert.equal(1, q:pop(0))
    assert.same({x = 2}, q:pop(0))
    assert.equal("hi", b:recv(0))
    b:send("back")
    assert.equal("back", a:recv(0))
    assert.equal("v", d.k)
  end)

  it("take the queue's options: queue{owner =} unbounded, queue(n, {owner =}) bounded", function()
    local caps = {pool:apply(function()
      local parallel = require "parallel"
      return parallel.queue{owner = "parent"}:capacity(), parallel.queue(3, {owner = "parent"}):capacity(),
             parallel.queue(3, {owner = "here"}):capacity()
    end)}
    assert.same({math.huge, 3, 3}, caps)
  end)

  it("are the parent's own objects here: owner = \"parent\" outside a worker makes a local one", function()
    local q = parallel.queue(2, {owner = "parent"})
    assert.equal("parallel.queue", getmetatable(q).__name)
    assert.equal(2, q:capacity())
    local d = parallel.dict{owner = "here"}
    d.x = 1
    assert.equal(1, d.x)
  end)

  it("come back to the worker as its very proxy, and here as the very object", function()
    local q = pool:apply(function()
      KEEP = require("parallel").queue(0, {owner = "parent"})
      return KEEP
    end)
    assert.is_true(pool:apply(function(x) return rawequal(x, KEEP) end, q))
    local back = pool:apply(function(x) return x end, q)
    assert.is_true(rawequal(q, back))
    pool:apply(function() KEEP = nil end)
  end)

  it("travel two hops: made in one pool's worker, used by another pool's worker", function()
    local other <close> = parallel.pool{backend = "process", workers = 1}
    local q = pool:apply(function(n)
      local q = require("parallel").queue(0, {owner = "parent"})
      for i = 1, n do q:push(i) end
      return q
    end, 50)
    local sum = other:apply(function(q) local s = 0 for _ = 1, #q do s = s + q:pop(0) end return s end, q)
    assert.equal(50 * 51 // 2, sum)
    assert.equal(0, #q)
  end)

  it("travel inside a queue of this process, to another worker", function()
    local other <close> = parallel.pool{backend = "process", workers = 1}
    local box = parallel.queue()
    pool:apply(function(box)
      local d = require("parallel").dict{owner = "parent"}
      d.answer = 42
      box:push(d)
    end, box)
    assert.equal(42, other:apply(function(box) return box:pop(5).answer end, box))
  end)

  it("are let go both ways: the exports this process holds come back to where they were", function()
    local base = settle(pool, core._remote_exports())
    -- made and dropped in the worker
    pool:apply(function()
      local parallel = require "parallel"
      for _ = 1, 30 do parallel.queue(0, {owner = "parent"}):push(1) end
      for _ = 1, 10 do local a, b = parallel.pipe{owner = "parent"} a:send(b) end
      for _ = 1, 10 do parallel.dict{owner = "parent"}.x = 1 end
    end)
    assert.equal(base, settle(pool, base))
    -- made in the worker, sent here, dropped on both sides
    local kept = {pool:apply(function()
      local parallel = require "parallel"
      local t = {}
      for i = 1, 20 do t[i] = parallel.queue(0, {owner = "parent"}) end
      return table.unpack(t)
    end)}
    assert.equal(20, #kept)
    kept = nil
    assert.equal(base, settle(pool, base))
  end)

  it("kept here, stays usable after the worker let go of it", function()
    local q = pool:apply(function()
      local q = require("parallel").queue(0, {owner = "parent"})
      q:push("in")
      return q
    end)
    settle(pool, -1)
    q:push("more")
    assert.same({"in", "more"}, q:pop_many(2, 0))
  end)

  it("work in a coroutine of the task, a blocking pop included", function()
    local r = pool:apply(function()
      local parallel = require "parallel"
      local co = coroutine.wrap(function()
        local q = parallel.queue(0, {owner = "parent"})
        coroutine.yield(q)
        return q:pop(5)
      end)
      local q = co()
      q:push("through")
      return co()
    end)
    assert.equal("through", r)
  end)

  it("closed here while the worker's pop waits on it: the pop ends with closed", function()
    local box, ready = parallel.queue(), parallel.event()
    local f = pool:submit(function(box, ready)
      local q = require("parallel").queue(0, {owner = "parent"})
      box:push(q)
      ready:set()
      return q:pop(20)
    end, box, ready)
    local q = box:pop(10)
    assert.is_true(ready:wait(10))
    q:close()
    assert.same({nil, "closed"}, {f:get(10)})
  end)

  it("a finalizer that makes and uses one while a proxy's value is encoded", function()
    local n, used = pool:apply(function()
      local parallel = require "parallel"
      local q = parallel.queue(0, {owner = "parent"})
      local made
      -- garbage with a finalizer, collected during the pushes' encodes
      for i = 1, 200 do
        setmetatable({}, {__gc = function()
          if not made then made = parallel.queue(0, {owner = "parent"}) end
          made:push(i)
        end})
        q:push({i, string.rep("x", 100)})
      end
      collectgarbage()
      return #q, made ~= nil and #made > 0
    end)
    assert.equal(200, n)
    assert.is_true(used)
  end)

  it("a tiny memory_limit: what the task keeps in them is held by this process, not the worker", function()
    local small <close> = parallel.pool{backend = "process", workers = 1, memory_limit = 4 * 1024 * 1024}
    local q = small:apply(function()
      local q = require("parallel").queue(0, {owner = "parent"})
      for _ = 1, 16 do q:push(string.rep("m", 512 * 1024)) end
      return q
    end)
    assert.equal(16, #q)
    assert.equal(512 * 1024, #q:pop(0))
  end)

  it("closed by another process's worker while this one's pop waits on it", function()
    local other <close> = parallel.pool{backend = "process", workers = 1}
    local box, ready = parallel.queue(), parallel.event()
    local f = pool:submit(function(box, ready)
      local q = require("parallel").queue(0, {owner = "parent"})
      box:push(q)
      ready:set()
      return q:pop(20)
    end, box, ready)
    local q = box:pop(10)
    assert.is_true(ready:wait(10))
    other:apply(function(q) q:close() end, q)
    assert.same({nil, "closed"}, {f:get(10)})
    assert.has_error(function() q:push(1) end, "queue is closed")
  end)

  it("closed: clear errors in the worker, and a pipe's other end, in another worker, sees it", function()
    local other <close> = parallel.pool{backend = "process", workers = 1}
    local r = table.pack(pool:apply(function()
      local parallel = require "parallel"
      local q = parallel.queue(0, {owner = "parent"})
      q:close()
      local e1 = select(2, pcall(q.push, q, 1))
      local popped = table.pack(q:pop(0))
      local h = parallel.queue(0, {owner = "parent"})
      getmetatable(h).__close(h)
      local e2 = select(2, pcall(h.pop, h, 0))
      local a, b = parallel.pipe{owner = "parent"}
      a:send("last")
      a:close()
      return e1, popped, e2, b
    end))
    assert.matches("queue is closed$", r[1])
    assert.same({nil, "closed", n = 2}, r[2])
    assert.matches("parallel.queue %(remote%) is closed$", r[3])
    local got = table.pack(other:apply(function(b) return b:recv(5), b:recv(5) end, r[4]))
    assert.same({"last", nil, "closed", n = 3}, got)
  end)

  it("let go when the worker that made them is replaced (max_tasks_per_worker = 1)", function()
    local once <close> = parallel.pool{backend = "process", workers = 1, max_tasks_per_worker = 1}
    local base = core._remote_exports()
    local made, go = parallel.event(), parallel.event()
    local f = once:submit(function(made, go)
      local parallel = require "parallel"
      KEEP = {}
      for i = 1, 10 do KEEP[i] = parallel.dict{owner = "parent"} end
      KEEP[1].x = "kept"
      made:set()
      go:wait(20)
      return KEEP[1]
    end, made, go)
    assert.is_true(made:wait(10))
    assert.equal(base + 10, core._remote_exports())   -- the worker holds them
    go:set()
    local kept = f:get(10)
    -- the next task runs in a fresh process: the first one's exports are gone
    once:apply(function() end)
    local n
    for _ = 1, 50 do
      n = core._remote_exports()
      if n == base then break end
      once:apply(function() end)
    end
    assert.equal(base, n)
    assert.equal("kept", kept.x)
  end)

  it("made until the worker's memory_limit refuses: an error, and nothing left exported", function()
    local small <close> = parallel.pool{backend = "process", workers = 1, memory_limit = 1024 * 1024}
    local base = core._remote_exports()
    local n, err = small:apply(function()
      local parallel = require "parallel"
      local t = {}
      local ok, err = pcall(function()
        while true do t[#t + 1] = parallel.queue(0, {owner = "parent"}) end
      end)
      local n = #t
      t = nil
      collectgarbage() collectgarbage()
      return n, err
    end)
    assert.is_true(n > 10)
    assert.matches("not enough memory", err)
    assert.equal(base, settle(small, base))
  end)

  it("a future of a pool handed to the task travels on: to this process, then another worker", function()
    local other <close> = parallel.pool{backend = "process", workers = 1}
    local threads <close> = parallel.pool(1)
    local f = pool:apply(function(p) return p:submit(function() return "from the pool" end) end, threads)
    assert.equal("parallel.future", getmetatable(f).__name)
    assert.equal("from the pool", other:apply(function(f) return f:get(10) end, f))
  end)

  describe("what stays refused, naming what to do", function()
    it("a queue, pipe or dict made here in the worker", function()
      assert.equal("parallel.queue created in a worker process cannot leave it (make it with "
        .. "{owner = \"parent\"}, e.g. parallel.queue(n, {owner = \"parent\"}), or create it in the "
        .. "parent and pass it to the task)",
        message_of(function() return pool:apply(function() return require("parallel").queue() end) end))
      assert.matches("^parallel.dict created in a worker process cannot leave it",
        message_of(function() return pool:apply(function() return require("parallel").dict() end) end))
    end)

    it("a pool made in the worker, and a future of it", function()
      assert.equal("parallel.pool created in a worker process cannot leave it (its workers belong "
        .. "to that process: create the pool in the parent and pass it to the task)",
        message_of(function()
          return pool:apply(function() return require("parallel").pool(1) end)
        end))
      assert.equal("parallel.future created in a worker process cannot leave it (send its result "
        .. "instead, or submit to a pool the task was given)",
        message_of(function()
          return pool:apply(function()
            local p = require("parallel").pool(1)
            local f = p:submit(function() return 1 end)
            f:wait()
            return f
          end)
        end))
    end)

    it("owner = \"parent\" in a thread pool the task made, and the parent's objects used there", function()
      local made, used = pool:apply(function(q)
        local parallel = require "parallel"
        local tp = parallel.pool(1)
        local made = tp:submit(function()
          return select(2, pcall(require("parallel").queue, 0, {owner = "parent"}))
        end):get(10)
        local used = tp:submit(function(q) return select(2, pcall(q.push, q, 1)) end, q):get(10)
        tp:shutdown()
        return made, used
      end, parallel.queue())
      assert.matches("owner = \"parent\" works in a task's own thread of a worker process, not in a "
        .. "thread pool the task made %(make the object in the task and pass it to the threads%)$", made)
      assert.matches("objects of the parent process can be used only by the task's own thread in a "
        .. "worker process, not by a thread pool the task made", used)
    end)

    it("a bad owner", function()
      assert.equal("bad argument #2 to 'queue' (invalid option 'elsewhere' for owner (one of here|parent))",
        message_of(function() return parallel.queue(1, {owner = "elsewhere"}) end))
      assert.matches("bad argument #1 to 'dict' %(unknown option 'ownr'%)",
        message_of(function() return parallel.dict{ownr = "parent"} end))
    end)
  end)

  it("outlive the worker that made them: a worker killed after filling one, nothing lost #child", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local box = parallel.queue()
      local f = pool:submit(function(box)
        local parallel = require "parallel"
        local q = parallel.queue(0, {owner = "parent"})
        for i = 1, 100 do q:push(i) end
        local d = parallel.dict{owner = "parent"}
        d.who = "dead worker"
        box:push({q = q, d = d})
        os.exit(7)
      end, box)
      assert(f:wait(10))
      assert(f:state() == "failed", f:state())
      local t = box:pop(5)
      local sum = 0
      for _ = 1, #t.q do sum = sum + t.q:pop(0) end
      assert(sum == 5050, sum)
      assert(t.d.who == "dead worker")
      -- and the replacement worker can use them
      t.q:push("again")
      assert(pool:apply(function(t) return t.q:pop(5) .. " " .. t.d.who end, t) == "again dead worker")
      pool:shutdown()
      print("ok")
    ]])
    assert.equal("ok\n", out, err)
    assert.equal(0, status)
  end)

  it("the maker killed while this process waits in a pop on its queue: the wait goes on #child", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local maker = parallel.pool{backend = "process", workers = 1}
      local other = parallel.pool{backend = "process", workers = 1}
      local threads = parallel.pool(1)
      local box = parallel.queue()
      local f = maker:submit(function(box)
        local q = require("parallel").queue(0, {owner = "parent"})
        box:push(q)
        while true do end
      end, box)
      local q = box:pop(10)
      local waiting = parallel.event()
      local popped = threads:submit(function(q, waiting) waiting:set() return q:pop(20) end, q, waiting)
      assert(waiting:wait(10))
      assert(f:kill())
      assert(f:wait(10))
      other:apply(function(q) q:push("after the maker died") end, q)
      print(popped:get(20))
      maker:shutdown() other:shutdown() threads:shutdown()
    ]])
    assert.equal(0, status, err)
    assert.equal("after the maker died\n", out)
  end)

  it("a worker killed while blocked in a pop on its own: the item pushed later stays #child", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local box = parallel.queue()
      local f = pool:submit(function(box)
        local q = require("parallel").queue(0, {owner = "parent"})
        box:push(q)
        return q:pop()
      end, box)
      local q = box:pop(10)
      assert(f:kill())
      assert(f:wait(10))
      q:push("kept")
      -- a pop the dead worker's helper took is put back: the item comes
      assert(q:pop(5) == "kept")
      assert(#q == 0, #q)
      pool:shutdown()
      print("ok")
    ]])
    assert.equal("ok\n", out, err)
    assert.equal(0, status)
  end)
end)
