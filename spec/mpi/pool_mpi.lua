-- The MPI backend, run by tools/mpi-test.sh under mpirun with 3 ranks:
-- busted runs on rank 0, ranks 1 and 2 serve (make test-mpi).
local parallel = require "parallel"
local mpi = require "parallel.mpi"
local support = require "support"

describe("parallel.mpi", function()
  it("tells the rank, the job's size and every rank's host", function()
    assert.equal(0, mpi.rank())
    assert.is_true(mpi.size() >= 2)
    local hosts = mpi.hosts()
    assert.equal(mpi.size(), #hosts)
    for i = 1, #hosts do assert.is_string(hosts[i]) end
    -- make test-cluster: every rank on a host of its own
    local expect = tonumber(os.getenv("PARALLEL_MPI_EXPECT_HOSTS"))
    if expect then
      local distinct, n = {}, 0
      for i = 1, #hosts do
        if not distinct[hosts[i]] then distinct[hosts[i]] = true; n = n + 1 end
      end
      assert.equal(expect, n)
    end
  end)

  it("refuses an unknown option value with the thread pool's wording", function()
    support.assert_raises("bad argument #1 to 'pool' (workers must be a positive integer)",
      parallel.pool, { backend = "mpi", workers = 0 })
  end)
end)

describe("pool{backend = 'mpi'}", function()
  local pool, others
  setup(function()
    pool = parallel.pool { backend = "mpi", workers = 2 }
    others = mpi.size() - 1
  end)
  teardown(function() pool:shutdown() end)

  it("counts the workers of every other rank", function()
    local s = pool:stats()
    assert.equal(2 * others, s.workers)
    assert.equal(others, s.ranks)
    assert.equal("mpi", s.backend)
  end)

  it("runs a task on another rank and returns all its results", function()
    local a, b, r = pool:submit(function(x, y)
      return x + y, x * y, require("parallel.mpi").rank()
    end, 3, 4):get()
    assert.equal(7, a)
    assert.equal(12, b)
    assert.is_true(r >= 1 and r <= others)
  end)

  it("carries closures with upvalues, globals and nested tables both ways", function()
    local k = 10
    Offset_mpi = 5
    local t = pool:submit(function(v)
      local r = { v = v, sum = v.a + k + Offset_mpi }
      r.self = r
      return r, function(x) return x * k end
    end, { a = 1, list = { 1, 2, 3 } }):get()
    assert.equal(16, t.sum)
    assert.same({ 1, 2, 3 }, t.v.list)
    assert.equal(t, t.self)
    local _, f = pool:submit(function() return 1, function(x) return x + 1 end end):get()
    assert.equal(3, f(2))
    Offset_mpi = nil
  end)

  it("keeps integers and floats apart", function()
    local i, f = pool:submit(function() return 3, 3.0 end):get()
    assert.equal("integer", math.type(i))
    assert.equal("float", math.type(f))
  end)

  it("raises a task's error at get, with the remote traceback", function()
    local f = pool:submit(function() error("boom on a rank") end)
    local e = support.error_of(f.get, f)
    assert.is_truthy(e:find("boom on a rank", 1, true))
    assert.is_truthy(e:find("traceback", 1, true))
    assert.equal("failed", f:state())
  end)

  it("carries a table error value as it is", function()
    local ok, e = pcall(function()
      return pool:submit(function() error({ code = 42 }) end):get()
    end)
    assert.is_false(ok)
    assert.equal(42, e.code)
  end)

  it("maps a list in order, in chunks over every rank", function()
    local list = {}
    for i = 1, 2000 do list[i] = i end
    local r = pool:map(function(x) return x * x end, list)
    assert.equal(2000, r.n)
    for i = 1, 2000 do assert.equal(i * i, r[i]) end
  end)

  it("starmaps argument lists", function()
    local r = pool:starmap(function(a, b) return a - b end, { { 5, 1 }, { 7, 2 }, { 9, 9 } })
    assert.same({ 4, 5, 0, n = 3 }, r)
  end)

  it("names the failing item of a map", function()
    support.assert_raises_containing("item 7:", pool.map, pool, function(x)
      if x == 7 then error("seven") end
      return x
    end, { 1, 2, 3, 4, 5, 6, 7, 8 }, { chunksize = 1 })
  end)

  it("imaps in order and imap_unordered delivers everything", function()
    local seen = {}
    for i, v in pool:imap(function(x) return x + 1 end, { 10, 20, 30, 40 }) do seen[#seen + 1] = { i, v } end
    assert.same({ { 1, 11 }, { 2, 21 }, { 3, 31 }, { 4, 41 } }, seen)
    local sum, n = 0, 0
    for _, v in pool:imap_unordered(function(x) return x end, { 1, 2, 3, 4, 5 }, { chunksize = 1 }) do
      sum, n = sum + v, n + 1
    end
    assert.equal(15, sum)
    assert.equal(5, n)
  end)

  it("works with as_completed, wait and gather", function()
    local fs = {}
    for i = 1, 20 do fs[i] = pool:submit(function(x) return x end, i) end
    local n = 0
    for f in parallel.as_completed(fs) do
      assert.equal("done", f:state())
      n = n + 1
    end
    assert.equal(20, n)
    local done, not_done = parallel.wait(fs)
    assert.equal(20, #done)
    assert.equal(0, #not_done)
    local g = parallel.gather(fs)
    for i = 1, 20 do assert.equal(i, g[i]) end
  end)

  it("spreads tasks over every other rank", function()
    local fs, ranks = {}, {}
    for i = 1, 8 * 2 * others do
      fs[i] = pool:submit(function()
        local t = require("parallel").now() + 0.01
        while require("parallel").now() < t do end
        return require("parallel.mpi").rank()
      end)
    end
    for i = 1, #fs do ranks[fs[i]:get()] = true end
    for r = 1, others do assert.is_true(ranks[r], "rank " .. r .. " ran nothing") end
  end)

  it("refuses at the submit the shared objects that cannot cross ranks yet", function()
    local l = parallel.lock()
    support.assert_raises("cannot send parallel.lock to another rank",
      pool.submit, pool, function(x) return x end, l)
    support.assert_raises("cannot send parallel.lock to another rank",
      pool.submit, pool, function() return l end)
  end)

  it("sends a table of 1,000,000 numbers and back", function()
    local t = {}
    for i = 1, 1000000 do t[i] = i * 0.5 end
    local n, back = pool:submit(function(v) return #v, v end, t):get()
    assert.equal(1000000, n)
    assert.equal(500000.0, back[1000000])
  end)

  -- A long argument goes over MPI as one message, not in segments as on
  -- the thread backend (README, "Running on a cluster": measured slower).
  it("delivers a long argument whole: every item of 1,000,000, its hash part and a shared table", function()
    local n, shared = 1000000, { tag = "shared" }
    local t = {}
    for i = 1, n do t[i] = i % 3 == 0 and i * 0.5 or i end
    t[1], t[n], t[700000] = shared, shared, "middle"
    t.name = "big"
    local expect = 0
    for i = 1, n do if type(t[i]) == "number" then expect = expect + t[i] end end
    local sum, same, mid, name, ints = pool:submit(function(v)
      local s, k = 0, 0
      for i = 1, #v do
        if type(v[i]) == "number" then s = s + v[i] end
        if math.type(v[i]) == "integer" then k = k + 1 end
      end
      return s, v[1] == v[#v] and v[1].tag == "shared", v[700000], v.name, k
    end, t):get()
    assert.equal(expect, sum)
    assert.is_true(same)
    assert.equal("middle", mid)
    assert.equal("big", name)
    local k = 0
    for i = 1, n do if math.type(t[i]) == "integer" then k = k + 1 end end
    assert.equal(k, ints)
  end)

  it("fails the submit when a value far into a long argument cannot travel, and loses nothing", function()
    local t = {}
    for i = 1, 1000000 do t[i] = i end
    local before = pool:stats()
    t[900000] = coroutine.create(function() end)
    support.assert_raises("cannot send thread at args[1][900000]: a coroutine cannot travel; "
      .. "create it inside the task", pool.submit, pool, function(v) return #v end, t)
    t[900000] = parallel.lock()
    support.assert_raises("cannot send parallel.lock to another rank",
      pool.submit, pool, function(v) return #v end, t)
    local after = pool:stats()
    assert.equal(before.submitted, after.submitted)   -- no task was left behind
    assert.equal(before.failed, after.failed)
    t[900000] = 0
    assert.equal(1000000, pool:submit(function(v) return #v end, t):get())
    assert.equal(7, pool:submit(function(x) return x + 1 end, 6):get())
  end)

  it("runs many small tasks", function()
    local fs = {}
    for i = 1, 5000 do fs[i] = pool:submit(function(x) return x + 1 end, i) end
    for i = 1, 5000 do assert.equal(i + 1, fs[i]:get()) end
  end)
end)

describe("an mpi pool's life", function()
  it("runs init with its arguments on every worker", function()
    local pool = parallel.pool { backend = "mpi", workers = 1,
      init = function(v) Init_value = v end, init_args = { "ready" } }
    local r = pool:map(function() return Init_value end, { 1, 2, 3, 4 }, { chunksize = 1 })
    assert.same({ "ready", "ready", "ready", "ready", n = 4 }, r)
    pool:shutdown()
  end)

  it("cancels a task that has not been sent yet", function()
    local pool = parallel.pool { backend = "mpi", workers = 1, depth = 1 }
    local function spin()
      local p = require "parallel"
      local t = p.now() + 0.3
      while p.now() < t do end
      return true
    end
    local busy = {}
    for i = 1, mpi.size() - 1 do busy[i] = pool:submit(spin) end
    local last = pool:submit(spin)
    assert.is_true(last:cancel())
    assert.equal("cancelled", last:state())
    for i = 1, #busy do assert.is_true(busy[i]:get()) end
    pool:shutdown()
    assert.equal(1, pool:stats().cancelled)
  end)

  it("interrupts a task running on another rank", function()
    local pool = parallel.pool { backend = "mpi", workers = 1 }
    local f = pool:submit(function() while true do end end)
    while f:state() ~= "running" do parallel.sleep(0.001) end
    assert.is_true(f:interrupt())
    support.assert_raises_containing("interrupted", f.get, f)
    assert.equal("failed", f:state())
    assert.equal(2, pool:submit(function() return 2 end):get())
    assert.is_false(f:interrupt())
    pool:shutdown()
  end)

  it("counts what it ran in stats", function()
    local pool = parallel.pool { backend = "mpi", workers = 1 }
    pool:submit(function() return 1 end):get()
    local f = pool:submit(function() error("x") end)
    assert.is_false(pcall(f.get, f))
    local s = pool:stats()
    assert.equal(2, s.submitted)
    assert.equal(1, s.completed)
    assert.equal(1, s.failed)
    assert.equal(0, s.pending)
    assert.equal(0, s.running)
    pool:shutdown()
  end)

  it("waits for its tasks at shutdown, then refuses new ones", function()
    local pool = parallel.pool { backend = "mpi", workers = 1 }
    local f = pool:submit(function() return "late" end)
    pool:shutdown()
    assert.equal("late", f:get())
    assert.is_true(pool:stats().shutdown)
    support.assert_raises("pool is shut down", pool.submit, pool, function() end)
    support.assert_raises("pool is shut down", pool.map, pool, function() end, { 1 })
  end)

  it("fails its tasks when init raises on the ranks, as a thread pool does", function()
    local pool = parallel.pool { backend = "mpi", workers = 1, init = function() error("no such init") end }
    local f = pool:submit(function() return 1 end)
    support.assert_raises_containing("pool init failed", f.get, f)
    support.assert_raises_containing("no such init", f.get, f)
    pool:shutdown()
  end)
end)

describe("an mpi pool's fd and completed()", function()
  -- poll(2) from spec/fdpoll.c (make test-mpi builds build/test/fdpoll.so)
  local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/mpi/[^/]*$") or "."
  local FDPOLL = os.getenv("PARALLEL_FDPOLL") or (root .. "/build/test/fdpoll.so")
  local open_fdpoll = assert(package.loadlib(FDPOLL, "luaopen_fdpoll"))
  local poll = open_fdpoll().poll
  local LONG = 10000   -- ms: a poll that times out means the descriptor was never signalled

  it("wakes a poll loop as tasks end on other ranks; each future once, the one submit gave", function()
    local pool = parallel.pool { backend = "mpi", workers = 1 }
    local fd = pool:fd()
    assert.equal("integer", math.type(fd))
    assert.equal(fd, pool:fd())
    assert.is_false(poll(fd, 0))
    assert.same({}, pool:completed())
    local index = {}
    for i = 1, 60 do
      index[pool:submit(function(x)
        local p = require "parallel"
        local t = p.now() + 0.002
        while p.now() < t do end
        return x * 2
      end, i)] = i
    end
    local seen, n, wakeups = {}, 0, 0
    while n < 60 do
      assert.is_true(poll(fd, LONG), "no future finished within 10 s")
      wakeups = wakeups + 1
      for _, f in ipairs(pool:completed()) do
        local i = index[f]
        assert.is_number(i, "completed() gave a future that submit did not return")
        assert.is_nil(seen[i], "future " .. tostring(i) .. " listed twice")
        seen[i] = true
        n = n + 1
        assert.equal("done", f:state())
        assert.equal(2 * i, f:get())
      end
    end
    assert.is_true(wakeups >= 1)
    -- drained: no longer readable, nothing listed
    assert.is_false(poll(fd, 0))
    assert.same({}, pool:completed())
    pool:shutdown()
  end)

  it("lists failed and cancelled futures, and leaves another pool's descriptor alone", function()
    local a = parallel.pool { backend = "mpi", workers = 1, depth = 1 }
    local b = parallel.pool { backend = "mpi", workers = 1 }
    local bfd = b:fd()
    local fd = a:fd()
    local function spin()
      local p = require "parallel"
      local t = p.now() + 0.2
      while p.now() < t do end
      return true
    end
    local busy = {}
    for i = 1, mpi.size() - 1 do busy[i] = a:submit(spin) end
    local waiting = a:submit(spin)       -- depth 1: stays on rank 0
    assert.is_true(waiting:cancel())
    local bad = a:submit(function() error("listed anyway") end)
    local want = { [waiting] = "cancelled", [bad] = "failed" }
    for i = 1, #busy do want[busy[i]] = "done" end
    local left = #busy + 2
    while left > 0 do
      assert.is_true(poll(fd, LONG), "no future finished within 10 s")
      for _, f in ipairs(a:completed()) do
        assert.equal(want[f], f:state())
        want[f] = nil
        left = left - 1
      end
    end
    assert.is_false(poll(bfd, 0))
    assert.same({}, b:completed())
    a:shutdown()
    b:shutdown()
  end)

  it("lets a pool with listed futures be collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local pool = parallel.pool { backend = "mpi", workers = 1 }
      local fd = pool:fd()
      pool:submit(function() return 1 end)
      assert.is_true(poll(fd, LONG))
      weak[1] = pool
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)
end)
