-- parallel.pool and its methods, the default pool, parallel.spawn.

local support = require "spec.support"
local occupy = support.occupy
local error_of, assert_raises = support.error_of, support.assert_raises
local parallel = require "parallel"

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("parallel.pool", function()
  it("creates a pool of n workers", function()
    local p <close> = parallel.pool(3)
    assert.equal(3, p:stats().workers)
  end)

  it("accepts an options table with workers", function()
    local p <close> = parallel.pool{workers = 2}
    assert.equal(2, p:stats().workers)
  end)

  it("defaults to cpu_count() workers", function()
    local p <close> = parallel.pool{}
    assert.equal(parallel.cpu_count(), p:stats().workers)
    local q <close> = parallel.pool()
    assert.equal(parallel.cpu_count(), q:stats().workers)
  end)

  it("runs init in each worker before any task (a global the task reads)", function()
    local p <close> = parallel.pool{workers = 2, init = function(a, b)
      POOL_SPEC_INIT_SUM = a + b
      POOL_SPEC_INIT_RUNS = (POOL_SPEC_INIT_RUNS or 0) + 1
      POOL_SPEC_WORKER_ID = tostring({})
    end, init_args = {1, 2}}
    local sums = p:map(function() return POOL_SPEC_INIT_SUM end, range(50), {chunksize = 1})
    local runs = p:map(function() return POOL_SPEC_INIT_RUNS end, range(50), {chunksize = 1})
    local ids = p:map(function() return POOL_SPEC_WORKER_ID end, range(50), {chunksize = 1})
    local distinct = {}
    for i = 1, 50 do
      assert.equal(3, sums[i])
      assert.equal(1, runs[i])
      distinct[ids[i]] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.is_true(n >= 1 and n <= 2)
  end)

  it("passes init_args tables and init's upvalues", function()
    local base = 10
    local p <close> = parallel.pool{workers = 1, init = function(cfg, s)
      POOL_SPEC_CFG = cfg.v + base
      POOL_SPEC_S = s
    end, init_args = {{v = 5}, "str"}}
    assert.same({15, "str"}, {p:apply(function() return POOL_SPEC_CFG, POOL_SPEC_S end)})
  end)

  it("gives workers the creator's package.path and package.cpath", function()
    local saved = package.path
    package.path = package.path .. ";/nonexistent/pool_spec/?.lua"
    local ok, p = pcall(parallel.pool, 1)
    package.path = saved
    assert.is_true(ok, p)
    local path, cpath = p:apply(function() return package.path, package.cpath end)
    p:shutdown()
    assert.equal(saved .. ";/nonexistent/pool_spec/?.lua", path)
    assert.equal(package.cpath, cpath)
  end)

  it("gives workers the standard libraries", function()
    local p <close> = parallel.pool(1)
    assert.is_true(p:apply(function()
      return type(string.format) == "function" and type(table.concat) == "function"
        and type(math.floor) == "function" and type(io.write) == "function"
        and type(os.time) == "function" and type(coroutine.wrap) == "function"
        and type(utf8.char) == "function" and type(debug.traceback) == "function"
        and type(require) == "function"
    end))
  end)

  it("raises for workers 0 and -1", function()
    assert_raises("bad argument #1 to 'pool' (workers must be a positive integer)", parallel.pool, 0)
    assert_raises("bad argument #1 to 'pool' (workers must be a positive integer)", parallel.pool, -1)
    assert_raises("bad argument #1 to 'pool' (workers must be a positive integer)",
      function() return parallel.pool{workers = 0} end)
  end)

  it("fails a task past memory_limit with not enough memory, and the worker stays usable", function()
    local p <close> = parallel.pool{workers = 1, memory_limit = 32 * 1024 * 1024}
    local f = p:submit(function() return #string.rep("x", 256 * 1024 * 1024) end)
    local e = error_of(f.get, f)
    assert.is_truthy(tostring(e):find("not enough memory", 1, true), tostring(e))
    assert.equal(3, p:apply(function() return 1 + 2 end))
  end)
end)

describe("pool", function()
  local pool
  lazy_setup(function() pool = parallel.pool(2) end)
  lazy_teardown(function() if pool then pool:shutdown{cancel = true} end end)

  describe("submit", function()
    it("returns a future whose get gives the result", function()
      local f = pool:submit(function(a, b) return a + b end, 2, 3)
      assert.equal(5, f:get())
    end)

    it("runs many tasks", function()
      local fs = {}
      for i = 1, 1000 do fs[i] = pool:submit(function(x) return x * 2 end, i) end
      for i = 1, 1000 do assert.equal(i * 2, fs[i]:get()) end
    end)

    it("raises bad argument for a missing or wrong function", function()
      assert_raises("bad argument #1 to 'submit' (function expected, got nil)", function() pool:submit(nil) end)
      assert_raises("bad argument #1 to 'submit' (function expected, got number)", function() pool:submit(5) end)
      assert_raises("bad argument #1 to 'submit' (function expected, got no value)", function() pool:submit() end)
    end)

    it("raises bad argument for a bad self", function()
      assert_raises("bad argument #1 to 'submit' (parallel.pool expected, got nil)",
        function() pool.submit(nil, function() end) end)
    end)
  end)

  describe("map", function()
    it("returns the results in order with results.n", function()
      local r = pool:map(function(x) return x * x end, range(100))
      assert.equal(100, r.n)
      for i = 1, 100 do assert.equal(i * i, r[i]) end
    end)

    it("keeps the order when items finish out of order", function()
      local r = pool:map(function(x) parallel.sleep((10 - x) * 0.005); return x end, range(10), {chunksize = 1})
      assert.same({n = 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, r)
    end)

    it("keeps the first value of each call and nil results", function()
      local r = pool:map(function(x) if x % 2 == 0 then return nil end return x, "second" end, range(6))
      assert.equal(6, r.n)
      assert.same({n = 6, 1, nil, 3, nil, 5, nil}, r)
    end)

    it("returns an empty result for an empty list", function()
      local r = pool:map(function(x) return x end, {})
      assert.equal(0, r.n)
      for k in pairs(r) do assert.equal("n", k) end
    end)

    it("handles a list of 10000 items", function()
      local r = pool:map(function(x) return x + 1 end, range(10000))
      assert.equal(10000, r.n)
      for i = 1, 10000 do assert.equal(i + 1, r[i]) end
    end)

    it("gives the same results for any chunksize", function()
      for _, cs in ipairs({1, 3, 7, 100, 1000}) do
        local r = pool:map(function(x) return x * 3 end, range(100), {chunksize = cs})
        assert.equal(100, r.n)
        for i = 1, 100 do assert.equal(i * 3, r[i]) end
      end
    end)

    it("runs the items of a chunk on one worker", function()
      local p <close> = parallel.pool{workers = 2, init = function() POOL_SPEC_ID = tostring({}) end}
      local ids = p:map(function() return POOL_SPEC_ID end, range(40), {chunksize = 5})
      for c = 0, 7 do
        for k = 2, 5 do assert.equal(ids[c * 5 + 1], ids[c * 5 + k]) end
      end
    end)

    it("passes items that are tables", function()
      local r = pool:map(function(t) return t.a + t.b end, {{a = 1, b = 2}, {a = 3, b = 4}})
      assert.same({n = 2, 3, 7}, r)
    end)

    it("raises naming the failing item's index with its message and traceback", function()
      local e = error_of(pool.map, pool, function(x)
        if x == 3 then error("bad three") end
        return x
      end, range(5), {chunksize = 1})
      assert.is_string(e)
      assert.is_truthy(e:find("item 3: ", 1, true), e)
      assert.is_truthy(e:find("item 3: [^\n]*bad three"), e)
      assert.is_truthy(e:find("stack traceback", 1, true), e)
    end)

    it("names the item index, not the chunk, when chunks hold several items", function()
      local e = error_of(pool.map, pool, function(x)
        if x == 7 then error("seven") end
        return x
      end, range(10), {chunksize = 2})
      assert.is_truthy(e:find("item 7: [^\n]*seven"), e)
    end)

    it("cancels what has not started when an item fails", function()
      local p <close> = parallel.pool(1)
      local before = p:stats().cancelled
      local go = parallel.event()
      -- item 2 holds the one worker until the map has failed
      pcall(p.map, p, function(x)
        if x == 1 then error("first fails") end
        assert(go:wait(10))
        return x
      end, range(50), {chunksize = 1})
      go:set()
      assert.is_true(p:stats().cancelled > before)
      assert.equal(9, p:apply(function() return 9 end))
    end)

    it("raises timeout past its timeout option and the pool stays usable", function()
      assert_raises("timeout", pool.map, pool, function(x) parallel.sleep(0.5); return x end,
        range(4), {timeout = 0.05, chunksize = 1})
      assert.equal(1, pool:apply(function() return 1 end))
    end)

    it("calls a progress function with increasing done ending at total", function()
      local calls = {}
      local r = pool:map(function(x) return x end, range(20), {chunksize = 1, progress = function(done, total)
        calls[#calls + 1] = {done, total}
      end})
      assert.equal(20, r.n)
      assert.is_true(#calls >= 1)
      for i, c in ipairs(calls) do
        assert.equal(20, c[2])
        if i > 1 then assert.is_true(c[1] > calls[i - 1][1]) end
      end
      assert.equal(20, calls[#calls][1])
    end)

    it("accepts progress = true", function()
      local r = pool:map(function(x) return x end, range(5), {progress = true})
      assert.same({n = 5, 1, 2, 3, 4, 5}, r)
    end)

    it("raises bad argument for wrong types", function()
      local f = function(x) return x end
      assert_raises("bad argument #1 to 'map' (function expected, got nil)", function() pool:map(nil, {}) end)
      assert_raises("bad argument #2 to 'map' (table expected, got number)", function() pool:map(f, 5) end)
      assert_raises("bad argument #2 to 'map' (table expected, got nil)", function() pool:map(f, nil) end)
      assert_raises("bad argument #3 to 'map' (table expected, got number)", function() pool:map(f, {}, 5) end)
    end)

    it("rejects a chunksize that is not a positive integer", function()
      assert.has_error(function() pool:map(function(x) return x end, {1}, {chunksize = 0}) end)
    end)
  end)

  describe("starmap", function()
    it("calls fn with each argument list unpacked, in order", function()
      local r = pool:starmap(function(a, b) return a * b end, {{1, 2}, {3, 4}, {5, 6}})
      assert.same({n = 3, 2, 12, 30}, r)
    end)

    it("returns an empty result for no argument lists", function()
      assert.equal(0, pool:starmap(function() return 1 end, {}).n)
    end)

    it("raises bad argument for wrong types", function()
      assert_raises("bad argument #1 to 'starmap' (function expected, got number)", function() pool:starmap(5, {}) end)
      assert_raises("bad argument #2 to 'starmap' (table expected, got number)",
        function() pool:starmap(function() end, 5) end)
    end)
  end)

  describe("imap", function()
    it("yields i, result in order", function()
      local seen = {}
      for i, r in pool:imap(function(x) parallel.sleep((10 - x) * 0.003); return x * 10 end, range(10), {chunksize = 1}) do
        seen[#seen + 1] = {i, r}
      end
      assert.equal(10, #seen)
      for k = 1, 10 do assert.same({k, k * 10}, seen[k]) end
    end)

    it("accepts an iterator function (closure generator) as input", function()
      local k = 0
      local gen = function() k = k + 1; if k <= 25 then return k end end
      local n = 0
      for i, r in pool:imap(function(x) return x * 2 end, gen) do
        n = n + 1
        assert.equal(n, i)
        assert.equal(i * 2, r)
      end
      assert.equal(25, n)
    end)

    it("accepts io.lines as input", function()
      local path = os.tmpname()
      local fh = assert(io.open(path, "w"))
      fh:write("a\nbb\nccc\n"); fh:close()
      local got = {}
      for i, r in pool:imap(function(line) return #line end, io.lines(path)) do got[i] = r end
      os.remove(path)
      assert.same({1, 2, 3}, got)
    end)

    it("reads an iterator lazily (stops early without consuming the input)", function()
      local calls = 0
      local gen = function() calls = calls + 1; if calls <= 1000000 then return calls end end
      local n = 0
      for _, r in pool:imap(function(x) return x end, gen) do
        n = n + 1
        if n == 5 then break end
      end
      assert.is_true(calls < 100000, "read " .. calls .. " items")
      assert.equal(2, pool:apply(function() return 2 end))
    end)

    it("raises the error of a failing item when iteration reaches it", function()
      assert.has_error(function()
        for _ in pool:imap(function(x) if x == 2 then error("imap boom") end return x end, range(3)) do end
      end)
    end)

    it("raises bad argument for a function expected", function()
      assert_raises("bad argument #1 to 'imap' (function expected, got nil)", function() pool:imap(nil, {}) end)
    end)
  end)

  describe("imap_unordered", function()
    it("yields every index exactly once with its result", function()
      local seen, n = {}, 0
      for i, r in pool:imap_unordered(function(x) parallel.sleep((x % 3) * 0.005); return x * x end, range(30), {chunksize = 1}) do
        assert.is_nil(seen[i])
        seen[i] = r
        n = n + 1
      end
      assert.equal(30, n)
      for i = 1, 30 do assert.equal(i * i, seen[i]) end
    end)

    it("yields in completion order (a held first item is not first) #threads", function()
      -- item 1 waits until the loop has seen every other item
      local release, order = parallel.event(), {}
      local function f(x, e) if x == 1 then e:wait(10) end return x end
      for i in pool:imap_unordered(function(x) return f(x, release) end, range(6), {chunksize = 1}) do
        order[#order + 1] = i
        if #order == 5 then release:set() end
      end
      assert.same({1, 2, 3, 4, 5, 6}, (function() local t = {} for k, v in ipairs(order) do t[k] = v end table.sort(t) return t end)())
      assert.equal(1, order[6])
    end)

    it("accepts an iterator function as input", function()
      local k = 0
      local gen = function() k = k + 1; if k <= 10 then return k end end
      local sum, n = 0, 0
      for _, r in pool:imap_unordered(function(x) return x end, gen) do sum = sum + r; n = n + 1 end
      assert.equal(10, n)
      assert.equal(55, sum)
    end)
  end)

  describe("apply", function()
    it("returns all the values of fn, nils included", function()
      local r = table.pack(pool:apply(function(a) return a, "two", nil, 4 end, 1))
      assert.same({n = 4, 1, "two", nil, 4}, r)
    end)

    it("returns no values for a function that returns none", function()
      assert.equal(0, select("#", pool:apply(function() end)))
    end)

    it("raises the task's error", function()
      local e = error_of(pool.apply, pool, function() error("apply boom") end)
      assert.is_truthy(tostring(e):find("apply boom", 1, true))
    end)

    it("raises bad argument for a missing function", function()
      assert_raises("bad argument #1 to 'apply' (function expected, got nil)", function() pool:apply(nil) end)
    end)
  end)

  describe("a worker that raised", function()
    it("is still usable, with its state kept", function()
      local p <close> = parallel.pool{workers = 1, init = function() POOL_SPEC_KEPT = "kept" end}
      for _ = 1, 3 do
        local f = p:submit(function() error("fail") end)
        assert.has_error(function() f:get() end)
        assert.equal("kept", p:apply(function() return POOL_SPEC_KEPT end))
      end
    end)
  end)

  describe("stats", function()
    it("has the documented fields", function()
      local p <close> = parallel.pool(2)
      local s = p:stats()
      assert.equal(2, s.workers)
      for _, k in ipairs({"submitted", "completed", "failed", "cancelled", "pending", "running"}) do
        assert.equal("integer", math.type(s[k]), k)
      end
      assert.is_table(s.busy)
      assert.equal(2, #s.busy)
      for i = 1, 2 do assert.is_number(s.busy[i]) end
    end)

    it("counts submitted, completed, failed and busy seconds", function()
      local p <close> = parallel.pool(2)
      local fs = {}
      for i = 1, 4 do
        fs[#fs + 1] = p:submit(function()
          local t = parallel.now()
          while parallel.now() - t < 0.05 do end
          return i
        end)
      end
      for _ = 1, 2 do fs[#fs + 1] = p:submit(function() error("x") end) end
      for _, f in ipairs(fs) do f:wait() end
      local s = p:stats()
      assert.equal(6, s.submitted)
      assert.equal(4, s.completed)
      assert.equal(2, s.failed)
      assert.equal(0, s.cancelled)
      assert.equal(0, s.pending)
      assert.equal(0, s.running)
      assert.is_true(s.busy[1] + s.busy[2] >= 0.15, "busy " .. s.busy[1] .. " + " .. s.busy[2])
    end)

    it("counts pending, running and cancelled #threads", function()
      local p <close> = parallel.pool(1)
      local a, _, release = occupy(p)
      local b = p:submit(function() return "b" end)
      local c = p:submit(function() return "c" end)
      local s = p:stats()
      assert.equal(3, s.pending + s.running)
      assert.is_true(b:cancel())
      assert.is_true(c:cancel())
      release()
      a:get()
      s = p:stats()
      assert.equal(2, s.cancelled)
      assert.equal(1, s.completed)
      assert.equal(0, s.pending)
      assert.equal(0, s.running)
    end)
  end)

  describe("shutdown", function()
    it("with wait = true returns once every task has finished", function()
      local p = parallel.pool(2)
      local fs = {}
      for i = 1, 6 do fs[i] = p:submit(function() parallel.sleep(0.02); return i end) end
      p:shutdown{wait = true}
      for i = 1, 6 do
        assert.equal("done", fs[i]:state())
        assert.equal(i, fs[i]:get())
      end
    end)

    it("with cancel = true cancels queued futures #threads", function()
      local p = parallel.pool(1)
      local a, running, release = occupy(p)
      running()
      local queued = {}
      for i = 1, 5 do queued[i] = p:submit(function() return i end) end
      p:shutdown{cancel = true, wait = false}
      release()
      assert.equal("released", a:get())
      for i = 1, 5 do
        assert.equal("cancelled", queued[i]:state())
        assert_raises("cancelled", queued[i].get, queued[i])
      end
    end)

    it("is safe to repeat", function()
      local p = parallel.pool(1)
      p:shutdown()
      p:shutdown()
      p:shutdown{wait = true}
    end)

    it("makes later use raise pool is shut down", function()
      local p = parallel.pool(1)
      p:shutdown()
      local f = function(x) return x end
      assert.has_error(function() p:submit(f) end, "pool is shut down")
      assert.has_error(function() p:map(f, {1}) end, "pool is shut down")
      assert.has_error(function() p:starmap(f, {{1}}) end, "pool is shut down")
      assert.has_error(function() p:apply(f, 1) end, "pool is shut down")
      assert.has_error(function() for _ in p:imap(f, {1}) do end end, "pool is shut down")
      assert.has_error(function() for _ in p:imap_unordered(f, {1}) do end end, "pool is shut down")
    end)
  end)

  describe("<close>", function()
    it("shuts the pool down at scope exit", function()
      local outer
      do
        local p <close> = parallel.pool(1)
        outer = p
        assert.equal(1, p:apply(function() return 1 end))
      end
      assert.has_error(function() outer:submit(function() end) end, "pool is shut down")
    end)

    it("waits for submitted tasks like Python's with-block", function()
      local fs = {}
      do
        local p <close> = parallel.pool(1)
        for i = 1, 3 do fs[i] = p:submit(function() parallel.sleep(0.02); return i end) end
      end
      for i = 1, 3 do assert.equal("done", fs[i]:state()) end
    end)
  end)
end)

describe("the default pool", function()
  it("parallel.map maps in order", function()
    assert.same({n = 3, 2, 3, 4}, parallel.map(function(x) return x + 1 end, {1, 2, 3}))
  end)

  it("parallel.map accepts options", function()
    assert.same({n = 4, 2, 4, 6, 8}, parallel.map(function(x) return x * 2 end, {1, 2, 3, 4}, {chunksize = 1}))
  end)

  it("parallel.submit returns a future", function()
    assert.equal(5, parallel.submit(function(a, b) return a + b end, 2, 3):get())
  end)

  it("has cpu_count() workers", function()
    local n = parallel.cpu_count()
    local ids = parallel.map(function()
      local t = parallel.now()
      while parallel.now() - t < 0.01 do end
      return tostring(_G)
    end, range(8 * n), {chunksize = 1})
    local distinct, k = {}, 0
    for i = 1, ids.n do if not distinct[ids[i]] then distinct[ids[i]] = true; k = k + 1 end end
    assert.is_true(k <= n)
  end)

  it("raises bad argument for wrong types", function()
    assert_raises("bad argument #2 to 'map' (table expected, got number)",
      function() parallel.map(function() end, 5) end)
    assert_raises("bad argument #1 to 'submit' (function expected, got nil)",
      function() parallel.submit(nil) end)
  end)
end)

describe("parallel.spawn", function()
  it("returns a future whose get joins the thread and gives its results", function()
    local f = parallel.spawn(function(a, b) return a * b, "x" end, 6, 7)
    assert.same({42, "x"}, {f:get()})
    assert.equal("done", f:state())
  end)

  it("runs on a thread of its own, beside busy pools #threads", function()
    local p <close> = parallel.pool(1)
    local a, _, release = occupy(p)
    local f = parallel.spawn(function() return "own thread" end)
    assert.equal("own thread", f:get(5))
    release()
    a:get()
  end)

  it("re-raises the thread's error from get", function()
    local f = parallel.spawn(function() error("spawn boom") end)
    local e = error_of(f.get, f)
    assert.is_truthy(tostring(e):find("spawn boom", 1, true))
  end)

  it("raises bad argument for a missing function", function()
    assert_raises("bad argument #1 to 'spawn' (function expected, got nil)", function() parallel.spawn(nil) end)
  end)
end)

describe("the facade", function()
  it("leaves the caller's globals alone, errors and timeouts included", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    local p <close> = parallel.pool(2)
    local function slow(x) parallel.sleep(0.2) return x end
    p:map(function(x) return x end, {1, 2, 3}, {progress = function() end})
    pcall(p.map, p, function(x) if x == 2 then error("no") end return x end, {1, 2, 3})
    pcall(function() for _ in p:imap(slow, {1, 2, 3}, {timeout = 0.01}) do end end)
    pcall(function() for _ in p:imap_unordered(slow, {1, 2, 3}, {timeout = 0.01}) do end end)
    for _ in p:imap(function(x) return x end, {1, 2}) do end
    local fs = {p:submit(slow, 1), p:submit(function() error("x") end)}
    pcall(function() for _ in parallel.as_completed(fs, 0.01) do end end)
    parallel.wait(fs, {return_when = "first_error"})
    pcall(parallel.gather, fs)
    parallel.spawn(function() return 1 end):get()
    for k in pairs(_G) do assert.is_true(before[k] ~= nil, "new global " .. tostring(k)) end
  end)
end)
