-- pool:fd() and pool:completed() driven by a real poll(2) loop.
-- poll comes from spec/fdpoll.c (build/test/fdpoll.so, `make fdpoll`; the
-- test targets build it): Debian's lua-posix has no Lua 5.4 build.

local support = require "spec.support"
local occupy = support.occupy
local parallel = require "parallel"

local FDPOLL = os.getenv("PARALLEL_FDPOLL") or "./build/test/fdpoll.so"
local open_fdpoll, err = package.loadlib(FDPOLL, "luaopen_fdpoll")
if not open_fdpoll then
  error(("cannot load %s (run `make fdpoll`): %s"):format(FDPOLL, tostring(err)))
end
local poll = open_fdpoll().poll

local LONG = 10000   -- ms: a poll that times out means the descriptor was never signalled

-- Collects n futures of pool through fd with a poll loop; returns them and
-- the number of poll() wake-ups. A wake-up may find nothing new: event loops
-- must tolerate that, and so does this one.
local function collect(pool, fd, n)
  local got, wakeups = {}, 0
  while #got < n do
    assert.is_true(poll(fd, LONG), "no future finished within 10 s")
    wakeups = wakeups + 1
    for _, f in ipairs(pool:completed()) do got[#got + 1] = f end
  end
  return got, wakeups
end

describe("pool:fd", function()
  it("returns the same open descriptor on every call", function()
    local p <close> = parallel.pool(1)
    local fd = p:fd()
    assert.equal("integer", math.type(fd))
    assert.is_true(fd >= 0)
    assert.equal(fd, p:fd())
    assert.is_false(poll(fd, 0))
  end)

  it("is not readable while no future of the pool has finished #threads", function()
    local p <close> = parallel.pool(1)
    local fd = p:fd()
    local _, running, release = occupy(p)
    running()
    assert.is_false(poll(fd, 0))
    assert.is_false(poll(fd, 20))
    assert.same({}, p:completed())
    release()
    assert.is_true(poll(fd, LONG))
  end)

  it("wakes a poll() blocked on it when a future finishes #threads", function()
    local p <close> = parallel.pool(1)
    local fd = p:fd()
    local _, running, release = occupy(p)
    running()
    local done = p:submit(function(x) return x * 2 end, 21)
    release()
    local t0 = parallel.now()
    local got = collect(p, fd, 2)
    assert.is_true(parallel.now() - t0 < LONG / 1000)
    assert.equal(2, #got)
    assert.equal(42, done:get())
  end)

  it("is cleared by pool:completed()", function()
    local p <close> = parallel.pool(1)
    local fd = p:fd()
    p:submit(function() return 1 end)
    -- Readable means the notice is complete: the future is in the list.
    assert.is_true(poll(fd, LONG))
    assert.equal(1, #p:completed())
    assert.is_false(poll(fd, 0))
    assert.same({}, p:completed())
  end)

  it("belongs to one pool: another pool's futures leave it unreadable", function()
    local a <close> = parallel.pool(1)
    local b <close> = parallel.pool(1)
    local fa, fb = a:fd(), b:fd()
    assert.are_not.equal(fa, fb)
    a:submit(function() return 1 end)
    assert.is_true(poll(fa, LONG))
    assert.is_false(poll(fb, 0))
    assert.same({}, b:completed())
  end)
end)

describe("pool:completed", function()
  it("returns every finished future once, through a poll loop", function()
    local p <close> = parallel.pool(4)
    local fd = p:fd()
    local n = 200
    for i = 1, n do p:submit(function(k) return k, k * k end, i) end
    local got, wakeups = collect(p, fd, n)
    assert.equal(n, #got)
    assert.is_true(wakeups >= 1 and wakeups <= n)
    local seen = {}
    for _, f in ipairs(got) do
      assert.is_true(f:done())
      assert.equal("done", f:state())
      local i, sq = f:get()
      assert.is_nil(seen[i])
      seen[i] = sq
    end
    for i = 1, n do assert.equal(i * i, seen[i]) end
  end)

  it("reports failed and cancelled futures too #threads", function()
    local p <close> = parallel.pool(1)
    local fd = p:fd()
    local _, running, release = occupy(p)
    running()
    p:submit(function() error("boom") end)
    local cancelled = p:submit(function() return "never" end)
    assert.is_true(cancelled:cancel())
    release()
    local states, failure = {}, nil
    for _, f in ipairs(collect(p, fd, 3)) do
      states[#states + 1] = f:state()
      if f:state() == "failed" then failure = f:error() end
    end
    table.sort(states)
    assert.same({"cancelled", "done", "failed"}, states)
    assert.matches("boom", failure)
  end)

  it("returns an empty list when nothing has finished", function()
    local p <close> = parallel.pool(1)
    assert.same({}, p:completed())
    p:fd()
    assert.same({}, p:completed())
  end)

  it("hands back the future objects that submit returned (usable as table keys)", function()
    local p <close> = parallel.pool(2)
    local fd = p:fd()
    local index = {}
    for i = 1, 50 do index[p:submit(function(k) return k end, i)] = i end
    local got = collect(p, fd, 50)
    for _, f in ipairs(got) do
      assert.is_not_nil(index[f], "completed() returned a handle submit did not")
      assert.equal(index[f], f:get())
      index[f] = nil
    end
    assert.is_nil(next(index))
  end)

  it("does not report futures that finished before pool:fd() was first called", function()
    for _ = 1, 50 do
      local p <close> = parallel.pool(1)
      local early = p:submit(function() return "early" end)
      assert.is_true(early:wait(10))
      local fd = p:fd()
      local late = p:submit(function() return "late" end)
      local got = collect(p, fd, 1)
      assert.equal(1, #got)
      assert.equal(late, got[1])
    end
  end)

  it("lists a future as soon as a wait on it returns", function()
    local p <close> = parallel.pool(2)
    p:fd()
    for i = 1, 200 do
      local f = p:submit(function(k) return k end, i)
      assert.is_true(f:wait(10))
      local listed = p:completed()
      assert.equal(1, #listed)
      assert.equal(f, listed[1])
    end
  end)
end)
