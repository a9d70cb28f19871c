-- The map family reads its items as a sequential loop would: list[i] for
-- i = 1, #list (proxies, nil holes), starmap's argument lists by t.n or #t,
-- and an item whose result cannot travel is named.

local support = require "spec.support"
local error_of = support.error_of
local parallel = require "parallel"

local function proxy(n, f)
  return setmetatable({}, {
    __index = function(_, i) return f(i) end,
    __len = function() return n end,
  })
end

local function show(x) return x == nil and "<nil>" or x end

describe("the map family's items", function()
  local pool
  setup(function() pool = parallel.pool(2) end)
  teardown(function() pool:shutdown() end)

  for _, cs in ipairs { 1, 2, 10 } do
    it("reads a proxy list through __index and __len (map, starmap; chunksize " .. cs .. ")", function()
      local r = pool:map(function(x) return x + 1 end, proxy(5, function(i) return i * 10 end), { chunksize = cs })
      assert.same({ 11, 21, 31, 41, 51, n = 5 }, r)
      r = pool:starmap(function(a, b) return a .. b end,
        proxy(3, function(i) return { "x", i } end), { chunksize = cs })
      assert.same({ "x1", "x2", "x3", n = 3 }, r)
    end)

    it("calls fn for a nil hole, as a loop over 1..#list does (chunksize " .. cs .. ")", function()
      local list = { 1, 2, nil, 4 }
      assert.equal(4, #list)
      local r = pool:map(function(x) return show(x) end, list, { chunksize = cs })
      assert.same({ 1, 2, "<nil>", 4, n = 4 }, r)
      local got = {}
      for i, v in pool:imap(function(x) return show(x) end, list, { chunksize = cs }) do got[i] = v end
      assert.same({ 1, 2, "<nil>", 4 }, got)
      got = {}
      for i, v in pool:imap_unordered(function(x) return show(x) end, list, { chunksize = cs }) do got[i] = v end
      assert.same({ 1, 2, "<nil>", 4 }, got)
    end)
  end

  it("passes imap a proxy's items", function()
    local got = {}
    for i, v in pool:imap(function(x) return x end, proxy(4, function(i) return -i end)) do got[i] = v end
    assert.same({ -1, -2, -3, -4 }, got)
  end)

  it("gives starmap every value of an argument list with a hole (#t)", function()
    local r = pool:starmap(function(...) return select("#", ...) .. ":" .. tostring((select(3, ...))) end,
      { { "a.b", ".", nil, true } })
    assert.same({ "4:nil", n = 1 }, r)
  end)

  it("honours t.n as table.pack makes it, trailing nils included", function()
    local r = pool:starmap(function(...) return select("#", ...) end,
      { table.pack(1, nil, nil), table.pack(), { n = 2 }, { 1, 2, 3, n = 1 } })
    assert.same({ 3, 0, 2, 1, n = 4 }, r)
  end)

  it("names the item whose result cannot travel, with its path from that result", function()
    local e = error_of(pool.map, pool, function(x)
      if x == 8 then return coroutine.create(print) end
      return x
    end, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, { chunksize = 3 })
    assert.is_string(e)
    assert.equal("item 8: cannot send thread at results[1]: a coroutine cannot travel; create it in the thread that uses it", (e:match("^[^\n]*")))
    e = error_of(pool.map, pool, function(x)
      if x == 5 then return { ok = true, bad = { io.stdout } } end
      return x
    end, { 1, 2, 3, 4, 5, 6 }, { chunksize = 6 })
    assert.equal("item 5: cannot send userdata (FILE*) at results[1].bad[1]: open it in the thread that uses it", (e:match("^[^\n]*")))
  end)

  it("names the item in imap and imap_unordered too", function()
    for _, m in ipairs { "imap", "imap_unordered" } do
      local e = error_of(function()
        for _ in pool[m](pool, function(x)
          if x == 5 then return coroutine.create(print) end
          return x
        end, { 1, 2, 3, 4, 5, 6 }, { chunksize = 4 }) do end
      end)
      assert.equal("item 5: cannot send thread at results[1]: a coroutine cannot travel; create it in the thread that uses it", (e:match("^[^\n]*")), m)
    end
  end)

  it("names an argument that cannot travel by its item index", function()
    local e = error_of(pool.starmap, pool, function() end, { { 1 }, { 2, io.stdout } }, { chunksize = 2 })
    assert.is_truthy(e:find("cannot send userdata (FILE*) at list[2][2]", 1, true), e)
    e = error_of(function()
      for _ in pool:imap(function() end, { 1, 2, 3, 4, 5, coroutine.create(print) }, { chunksize = 4 }) do end
    end)
    assert.is_truthy(e:find("cannot send thread at list[6]", 1, true), e)
  end)
  -- An item that could not be read or sent raised from the submission
  -- loop and left the chunks submitted before it running.
  it("cancels the chunks already submitted when an item cannot be read or sent", function()
    local ran = parallel.value("int64")
    local function task(x) ran:add(1) return x end
    local p <close> = parallel.pool(1)
    local gate, go = parallel.event(), parallel.event()
    local busy = p:submit(function(g, s) s:set() g:wait(10) end, go, gate)
    assert.is_true(gate:wait(10))
    local list = {}
    for i = 1, 50 do list[i] = i end
    list[50] = io.stdout
    local e = error_of(pool.map, p, task, list, { chunksize = 1 })
    assert.is_truthy(e:find("cannot send userdata (FILE*) at list[50]", 1, true), e)
    e = error_of(pool.map, p, task, proxy(50, function(i) if i == 50 then error("no item 50") end return i end))
    assert.matches("no item 50", e)
    e = error_of(function()
      local n = 0
      for _ in p:imap(task, function() n = n + 1; if n == 2 then error("no item 2") end return n end,
                      { chunksize = 1 }) do end
    end)
    assert.matches("no item 2", e)
    go:set()
    busy:get(10)
    p:shutdown{ wait = true }
    assert.equal(0, ran:get())
  end)

  -- The timeout started after every chunk was submitted: a map of 3,000,000
  -- items with timeout = 0.05 encoded for seconds, then returned its results.
  it("counts the submission in the timeout, and submits no more once it passed", function()
    local p <close> = parallel.pool(1)
    local list = {}
    for i = 1, 300000 do list[i] = { i } end
    local e = error_of(p.map, p, function(x) return x[1] end, list, { timeout = 0, chunksize = 100 })
    assert.matches("timeout", e)
    assert.is_true(p:stats().submitted < 3000, "submitted " .. p:stats().submitted)
  end)

  -- The C side read a list of futures raw: a proxy gave as_completed no
  -- future, gather an "attempt to index a nil value", and wait returned at
  -- once with the pending ones in not_done.
  it("reads a proxy list of futures in wait, as_completed and gather", function()
    local p <close> = parallel.pool(1)
    local go = parallel.event()
    local fs = { p:submit(function(g) g:wait(10) return 1 end, go), p:submit(function() return 2 end) }
    local px = proxy(2, function(i) return fs[i] end)
    local done, not_done = parallel.wait(px, { timeout = 0 })
    assert.equal(2, #done + #not_done)
    go:set()
    done, not_done = parallel.wait(px, { timeout = 10 })
    assert.equal(2, #done)
    assert.equal(0, #not_done)
    local n = 0
    for _ in parallel.as_completed(px, 10) do n = n + 1 end
    assert.equal(2, n)
    assert.same({ 1, 2, n = 2 }, parallel.gather(px))
    local e = error_of(parallel.gather, proxy(1.5, function() return fs[1] end))
    assert.matches("#futures must be a non%-negative integer", e)
  end)

  it("refuses a proxy whose length is no count", function()
    for _, n in ipairs { 2.5, -1, 0 / 0 } do
      local bad = proxy(n, function(i) return i end)
      for _, name in ipairs { "map", "starmap", "imap", "map_async" } do
        local e = error_of(pool[name], pool, function() end, bad)
        assert.matches("#list must be a non%-negative integer, got " .. tostring(n):gsub("%p", "%%%0"), e)
      end
    end
    assert.equal(3, pool:map(function(x) return x end, proxy(3.0, function(i) return i end)).n)
  end)
end)
