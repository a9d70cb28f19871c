-- Hostile use: what users do that no other spec foresaw (an adversarial
-- sweep). Each case names the symptom it once had.
local support = require "spec.support"
local parallel = require "parallel"
local assert_raises_containing = support.assert_raises_containing

describe("an item the receiver cannot decode", function()
  -- A loaded module travels by name; a receiver that cannot require it
  -- cannot decode the item. That item fails the pop that takes it.
  local pool
  before_each(function()
    package.loaded.hostile_unloadable = { x = 1 }
    pool = parallel.pool(1)
  end)
  after_each(function()
    pool:shutdown()
    package.loaded.hostile_unloadable = nil
  end)

  -- pop_many took the whole batch with it (5 values lost for 1 bad one)
  it("fails pop_many, and the rest of its batch stays in the queue, in order", function()
    local q = parallel.queue()
    q:push_all({ 1, "two", { 3 }, { m = package.loaded.hostile_unloadable }, 5, { 6 } })
    local got = pool:submit(function(q)
      local out = {}
      for _ = 1, 3 do
        local ok, r = pcall(q.pop_many, q, 10, 0)
        if not ok then out[#out + 1] = "error"
        elseif r then
          for _, v in ipairs(r) do out[#out + 1] = type(v) == "table" and "{" .. v[1] .. "}" or tostring(v) end
        end
      end
      return table.concat(out, " ")
    end, q):get(10)
    assert.equal("error 1 two {3} 5 {6}", got)
    assert.equal(0, #q)
  end)

  -- a process worker's pop_many on the parent's queue lost them the same way
  it("does the same in a process worker: the rest go back to the owner's queue", function()
    local procs = parallel.pool{backend = "process", workers = 1}
    local q = parallel.queue()
    q:push_all({ 1, "two", { 3 }, { m = package.loaded.hostile_unloadable }, 5, { 6 } })
    local got = procs:submit(function(q)
      local out = {}
      for _ = 1, 3 do
        local ok, r = pcall(q.pop_many, q, 10, 0)
        if not ok then out[#out + 1] = "error"
        elseif r then
          for _, v in ipairs(r) do out[#out + 1] = type(v) == "table" and "{" .. v[1] .. "}" or tostring(v) end
        end
      end
      return table.concat(out, " ")
    end, q):get(10)
    procs:shutdown()
    assert.equal("error 1 two {3} 5 {6}", got)
    assert.equal(0, #q)
  end)

  it("does the same for a pipe's recv_many", function()
    local a, b = parallel.pipe()
    a:send_all({ { m = package.loaded.hostile_unloadable }, "kept" })
    local got = pool:submit(function(b)
      local ok = pcall(b.recv_many, b, 10, 0)
      local r = b:recv_many(10, 0)
      return ok, r and r[1], r and #r
    end, b)
    assert.same({ false, "kept", 1 }, { got:get(10) })
  end)

  it("says which module, why it was wanted and what to do", function()
    local q = parallel.queue()
    q:push({ m = package.loaded.hostile_unloadable })
    local f = pool:submit(function(q) return q:pop(0) end, q)
    assert_raises_containing("cannot receive module 'hostile_unloadable' (a loaded module travels by name, "
      .. "and is required by the receiver): module 'hostile_unloadable' not found", f.get, f, 10)
    assert_raises_containing("make it loadable here", f.get, f, 10)
  end)
end)

describe("a shared array filled from a list with a hole or a non-number", function()
  -- said "number expected, got table": the type of the list, not of the item
  it("names the item and what it is", function()
    local a = parallel.array("int64", 4)
    assert_raises_containing("bad argument #1 to 'set' (item 2 is nil, not a number: give a list of numbers)",
      function() a:set({ 1, nil, 3 }) end)
    assert_raises_containing("bad argument #1 to 'set' (item 3 is string, not a number",
      function() a:set({ 1, 2, "x" }) end)
    assert_raises_containing("bad argument #2 to 'array' (item 2 is nil, not a number",
      function() parallel.array("double", { 1, nil, 3 }) end)
    assert_raises_containing("bad argument #2 to 'array' (item 2 (2.5) has no integer representation for int32)",
      function() parallel.array("int32", { 1, 2.5 }) end)
    assert.same({ 0, 0, 0, 0 }, a:totable())
  end)
end)

describe("a closed parallel object sent", function()
  -- said "open or create it in the thread that uses it", as for a FILE*
  it("says it was closed and to send it while it is open", function()
    local ev = parallel.event()
    getmetatable(ev).__close(ev)
    local msg = "cannot send userdata (parallel.event) at %s: it was closed (close, __close or __gc) "
      .. "before it was sent; send it while it is open"
    assert_raises_containing(msg:format("item"), function() parallel.queue():push(ev) end)
    assert_raises_containing(msg:format("args[1]"), function() parallel.submit(print, ev) end)
  end)
end)

describe("a value nested deeper than the codec goes", function()
  -- the error spelled out all 1000 levels of its path (2 KB of ".n")
  it("says so in a line: the path's ends, how deep, and what to do", function()
    local t = {}
    local c = t
    for _ = 1, 5000 do c.n = {}; c = c.n end
    local e = support.error_of(function() parallel.queue():push(t) end)
    assert.is_truthy(e:find("cannot send value nested too deep at item.n.n.n.n.n.n...(988 levels)....n.n.n.n.n.n: "
      .. "more than 1000 levels of tables", 1, true), e)
    assert.is_truthy(e:find("send it flatter", 1, true), e)
    assert.is_true(#e < 400, e)
  end)
end)

describe("as_completed over remote and local futures #child", function()
  -- once the remote ones were out, the local ones still running were
  -- dropped: the loop ended without them (1 run in 6 of remote_spec's
  -- 'mixed' case summed 8, not 10)
  it("yields the local futures that finish after the remote ones", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local parent = parallel.pool(1)
      local pool = parallel.pool{backend = "process", workers = 1}
      print(pool:apply(function(p)
        local parallel = require "parallel"
        local mine = parallel.pool(1)
        local go = parallel.event()
        local fs = { p:submit(function() return 1 end), mine:submit(function(go) go:wait(10) return 2 end, go) }
        local got = {}
        -- the local one finishes well after the remote one (the order
        -- matters, not the time: it must be yielded whenever it finishes)
        fs[1]:wait(10)
        parallel.timer(0.3, function(go) go:set() end, go)
        for f in parallel.as_completed(fs, 10) do got[#got + 1] = f:get() end
        local done, not_done = parallel.wait(fs, {timeout = 10})
        mine:shutdown()
        return table.concat(got, " "), #done, #not_done
      end, parent))
    ]])
    assert.equal(0, status, err)
    assert.equal("1 2\t2\t0\n", out)
  end)
end)

describe("a future listed twice", function()
  -- gather({f, f}) raised "attempt to index a nil value (local 'f')": the
  -- set holds f once and ran out before the loop over the list did
  it("gather gives its result at each place, as_completed yields it once", function()
    local f = parallel.submit(function() return 7 end)
    assert.same({ 7, 7, 7, n = 3 }, parallel.gather({ f, f, f }))
    local n = 0
    for _ in parallel.as_completed({ f, f }, 10) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("does the same among remote and local futures #child", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local parent = parallel.pool(1)
      local pool = parallel.pool{backend = "process", workers = 1}
      print(pool:apply(function(p)
        local parallel = require "parallel"
        local mine = parallel.pool(1)
        local r, l = p:submit(function() return 1 end), mine:submit(function() return 2 end)
        local n = 0
        for _ in parallel.as_completed({ r, l, r, l }, 10) do n = n + 1 end
        local g = parallel.gather({ r, l, r, l })
        mine:shutdown()
        return n, table.concat(g, " ")
      end, parent))
    ]])
    assert.equal(0, status, err)
    assert.equal("2\t1 2 1 2\n", out)
  end)
end)

describe("parallel.core opened a second time in a state #child", function()
  -- the second open made fresh method tables: the facade's methods (map,
  -- imap, add_done_callback ...) were gone, old pools included
  it("keeps the facade's methods on old and new objects", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local old = parallel.pool(1)
      package.loaded["parallel.core"] = nil
      require "parallel.core"
      local new = parallel.pool(1)
      print(old:map(function(x) return x * 2 end, {1, 2})[2], new:map(function(x) return x * 3 end, {1, 2})[2],
            type(new:submit(function() end).add_done_callback))
    ]])
    assert.equal(0, status, err)
    assert.equal("4\t6\tfunction\n", out)
  end)
end)

describe("a pool handed to a task of a process pool #child", function()
  -- stats, terminate, apply_async ... raised "attempt to call a nil value (method 'stats')"
  it("runs apply_async, and says where to call what it cannot do", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local parent = parallel.pool(1)
      local pool = parallel.pool{backend = "process", workers = 1}
      print(pool:apply(function(p)
        local parallel = require "parallel"
        local got
        local f = p:apply_async(function(a, b) return a + b end, {1, 2}, {callback = function(r) got = r end})
        local r = f:get(10)
        parallel.poll(0)
        local ok, e = pcall(function() return p:stats() end)
        return r, got, ok, e
      end, parent))
    ]])
    assert.equal(0, status, err)
    assert.equal("3\t3\tfalse\t", out:sub(1, 10))
    assert.is_truthy(out:find("pool:stats() is not available on a pool handed to a process worker: "
      .. "call it in the process that made the pool", 1, true), out)
  end)
end)

describe("a proxy list with a huge __len in a process worker #child", function()
  -- push_all on a parent's queue read __index up to math.maxinteger, one
  -- part at a time, until the worker's memory was full (seconds, gigabytes)
  -- ulimit -v cannot coexist with a sanitizer runtime's huge reservations.
  local sanitized = (os.getenv("LD_PRELOAD") or ""):find("san") ~= nil
  ;(sanitized and pending or it)("push_all fails at once with not enough memory, as on a local queue", function()
    local out, err, status = support.run_child{ prelude = "ulimit -v 1500000;", timeout = 60, code = [[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local q = parallel.queue()
      local t0 = parallel.now()
      local ok, e = pcall(function()
        return pool:submit(function(q)
          return q:push_all(setmetatable({}, {__len = function() return math.maxinteger end,
                                              __index = function(_, i) return i end}))
        end, q):get(30)
      end)
      print(ok, (tostring(e):match("not enough memory")), parallel.now() - t0 < 1.5, #q)
    ]] }
    assert.equal(0, status, err)
    assert.equal("false\tnot enough memory\ttrue\t0\n", out)
  end)

  -- _wait_any computed n * 8 bytes, wrapped, and the worker wrote past
  -- the block (signal 11)
  it("future:_wait_any refuses it and never writes past a block", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local inner = parallel.pool(1)
      print(pcall(function()
        return pool:submit(function(ip)
          local f = ip:submit(function() return 1 end)
          local many = setmetatable({}, {__len = function() return 2^61 + 1 end, __index = function() return f end})
          return (select(2, pcall(function() return f:_wait_any(many, 1) end)):gsub("^[^:]*:%d+: ", ""))
        end, inner):get(10)
      end))
    ]])
    assert.equal(0, status, err)
    assert.equal("true\tbad argument #1 to '_wait_any' (too many futures)\n", out)
  end)
end)

describe("interrupting a process pool's task that made a thread pool #child", function()
  -- The parent's SIGURG (sent to the worker process) could land on a thread
  -- of the task's own pool, whose handler had replaced the worker's and
  -- ignored it: the interrupt was lost (remote_spec's 'mixed' interrupt case
  -- failed 2-4 runs in 10; here about 1 round in 10 before the fix).
  it("reaches the task every time", function()
    local out, err, status = support.run_child{ timeout = 120, code = [[
      local parallel = require "parallel"
      local pool = parallel.pool{backend = "process", workers = 1}
      local parent = parallel.pool(1)
      local lost = 0
      for _ = 1, 30 do
        local go, waiting = parallel.event(), parallel.event()
        local f = pool:submit(function(p, go, waiting)
          local parallel = require "parallel"
          local fs = { p:submit(function(go) go:wait(30) end, go),
                       parallel.pool(1):submit(function(go) go:wait(30) end, go) }
          waiting:set()
          parallel.wait(fs)
          return "not interrupted"
        end, parent, go, waiting)
        assert(waiting:wait(10))
        f:interrupt()
        if not f:wait(5) then lost = lost + 1 end
        go:set()
        assert(f:wait(10))
      end
      print(lost)
    ]] }
    assert.equal(0, status, err)
    assert.equal("0\n", out)
  end)
end)
