-- Done callbacks, apply_async, the async maps and parallel.poll.

local support = require "spec.support"
local run_lua, occupy = support.run_lua, support.occupy
local assert_raises = support.assert_raises
local parallel = require "parallel"

local pool
setup(function() pool = parallel.pool(2) end)
teardown(function() pool:shutdown() end)

-- A task that returns v once `go` is set.
local function gated(v)
  local go = parallel.event()
  local f = pool:submit(function(go, v) go:wait(10); return v end, go, v)
  return f, function() go:set() end
end

describe("future:add_done_callback", function()
  it("runs at once, with the future, when the future is already done", function()
    local f = pool:submit(function() return 1 end)
    f:wait()
    local got
    f:add_done_callback(function(g) got = g end)
    assert.equal(f, got)
  end)

  it("runs in the registering state, at the latest in its next waiting call", function()
    local f, go = gated(5)
    local seen = {}
    f:add_done_callback(function(g) seen[#seen + 1] = g:get() end)
    f:add_done_callback(function() seen[#seen + 1] = "second" end)
    assert.same({}, seen)
    go()
    assert.equal(5, f:get())
    assert.same({ 5, "second" }, seen)
  end)

  it("runs inside sleep, wait, as_completed and pool:completed", function()
    local calls = {
      sleep = function() parallel.sleep(0) end,
      wait = function(f) f:wait(0) end,
      as_completed = function(f) for _ in parallel.as_completed({ f }) do end end,
      completed = function() pool:completed() end,
    }
    for how, call in pairs(calls) do
      local f, go = gated(1)
      local ran = false
      f:add_done_callback(function() ran = true end)
      go()
      -- done() runs no callback: spin on it until the task has finished
      local deadline = parallel.now() + 10
      while not f:done() do assert.is_true(parallel.now() < deadline) end
      assert.is_false(ran, how)
      call(f)
      assert.is_true(ran, how)
    end
  end)

  it("parallel.poll waits for and runs the pending callbacks", function()
    assert.equal(0, parallel.poll())
    local f, go = gated(1)
    local ran = 0
    f:add_done_callback(function() ran = ran + 1 end)
    assert.equal(0, parallel.poll(0))
    go()
    assert.equal(1, parallel.poll(10))
    assert.equal(1, ran)
    assert.equal(0, parallel.poll(10))
  end)

  it("runs for failed and cancelled futures too", function()
    local blocker, running, release = occupy(pool)
    local blocker2, running2, release2 = occupy(pool)
    running(); running2()
    local queued = pool:submit(function() return 1 end)
    local states = {}
    queued:add_done_callback(function(g) states[#states + 1] = g:state() end)
    assert.is_true(queued:cancel())
    local failed = pool:submit(function() error("no") end)
    failed:add_done_callback(function(g) states[#states + 1] = g:state() end)
    release(); release2()
    failed:wait(10)
    blocker:get(); blocker2:get()
    assert.same({ "cancelled", "failed" }, states)
  end)

  it("reports an error in a callback and still runs the others", function()
    local errors = {}
    local old = parallel.on_callback_error(function(err, f) errors[#errors + 1] = { err, f } end)
    local f, go = gated(1)
    local after = false
    f:add_done_callback(function() error("oops") end)
    f:add_done_callback(function() after = true end)
    go()
    f:get()
    parallel.on_callback_error(old)
    assert.is_true(after)
    assert.equal(1, #errors)
    assert.is_truthy(errors[1][1]:find("oops", 1, true))
    assert.is_truthy(errors[1][1]:find("stack traceback", 1, true))
    assert.equal(f, errors[1][2])
  end)

  it("by default writes a callback's error to stderr #child", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local pool <close> = parallel.pool(1)
      local f = pool:submit(function() return 1 end)
      f:wait()
      f:add_done_callback(function() error("boom") end)
      print("still here")
    ]])
    assert.equal(0, status)
    assert.equal("still here\n", out)
    assert.is_truthy(err:find("parallel: error in a done callback of parallel.future", 1, true))
    assert.is_truthy(err:find("boom", 1, true))
  end)

  it("checks its argument", function()
    local f = pool:submit(function() end)
    assert_raises("bad argument #1 to 'add_done_callback' (function expected, got nil)",
      function() f:add_done_callback() end)
    assert_raises("bad argument #1 to 'poll' (number expected, got string)",
      function() parallel.poll("x") end)
  end)
end)

describe("the map family over a table with keys but no items", function()
  it("raises instead of returning an empty result", function()
    local msg = "list expected, got a table with keys but no items 1..n;"
      .. " put its values in a list (or use pairs and submit)"
    assert_raises("bad argument #2 to 'map' (" .. msg .. ")",
      function() pool:map(print, { a = 1, b = 2 }) end)
    assert_raises("bad argument #2 to 'map' (" .. msg .. ")",
      function() parallel.map(print, { a = 1 }) end)
    assert_raises("bad argument #2 to 'starmap' (" .. msg .. ")",
      function() pool:starmap(print, { x = { 1 } }) end)
    assert_raises("bad argument #2 to 'imap' (" .. msg .. ")",
      function() pool:imap(print, { a = 1 }) end)
    assert_raises("bad argument #2 to 'map_async' (" .. msg .. ")",
      function() pool:map_async(print, { a = 1 }) end)
  end)

  it("still takes an empty list, with or without n", function()
    assert.same({ n = 0 }, pool:map(print, {}))
    assert.same({ n = 0 }, pool:map(print, { n = 0 }))
  end)
end)

describe("pool:apply_async", function()
  it("returns a future and calls callback with the first result", function()
    local got
    local f = pool:apply_async(function(a, b) return a + b, "extra" end, { 2, 3 },
      { callback = function(v) got = v end })
    assert.equal(5, (f:get()))
    assert.equal(5, got)
  end)

  it("calls error_callback with the error get would raise", function()
    local got, called = nil, false
    local f = pool:apply_async(function() error("nope", 0) end, nil,
      { callback = function() called = true end, error_callback = function(e) got = e end })
    assert.is_true(f:wait(10))
    assert.is_false(called)
    assert.is_truthy(got:find("^nope"))
  end)

  it("checks its options", function()
    assert_raises("bad argument #3 to 'apply_async' (callback must be a function)",
      function() pool:apply_async(print, {}, { callback = 1 }) end)
    assert_raises("bad argument #2 to 'apply_async' (table expected, got number)",
      function() pool:apply_async(print, 1) end)
  end)
end)

describe("pool:map_async and starmap_async", function()
  it("return one future whose get gives the results table", function()
    local f = pool:map_async(function(x) return x * x end, { 1, 2, 3, 4, 5, 6, 7 }, { chunksize = 2 })
    assert.equal("parallel.future", getmetatable(f).__name)
    assert.same({ 1, 4, 9, 16, 25, 36, 49, n = 7 }, f:get(10))
    assert.equal("done", f:state())
    local g = pool:starmap_async(function(a, b) return a .. b end, { { "a", 1 }, { "b", 2 } })
    assert.same({ "a1", "b2", n = 2 }, g:get())
    assert.same({ n = 0 }, pool:map_async(print, {}):get())
  end)

  it("raise the first failed item's error from get, naming it", function()
    local f = pool:map_async(function(x) if x == 3 then error("three", 0) end return x end,
      { 1, 2, 3, 4 }, { chunksize = 1 })
    assert.is_true(f:wait(10))
    assert.equal("failed", f:state())
    local e = support.error_of(f.get, f)
    assert.is_truthy(e:find("^item 3: three"))
    assert.equal("three", (f:error()))
  end)

  it("cancel cancels the chunks that have not started", function()
    local solo = parallel.pool(1)
    local blocker, running, release = occupy(solo)
    running()
    local f = solo:map_async(function(x) return x end, { 1, 2, 3 }, { chunksize = 1 })
    assert.is_true(f:cancel())
    release()
    assert.is_true(f:wait(10))
    assert.equal("cancelled", f:state())
    assert_raises("cancelled", f.get, f)
    assert.equal("released", blocker:get())
    solo:shutdown()
  end)

  it("work with as_completed, wait, gather and callbacks", function()
    local f, go = gated("x")
    local m = pool:map_async(function(x) return x + 1 end, { 1, 2 })
    local results
    local m2 = pool:map_async(function(x) return -x end, { 1, 2 }, { callback = function(r) results = r end })
    local order = {}
    go()
    for g in parallel.as_completed({ f, m, m2 }) do order[#order + 1] = g end
    assert.equal(3, #order)
    local done, not_done = parallel.wait({ m, m2 })
    assert.equal(2, #done); assert.equal(0, #not_done)
    local all = parallel.gather({ m, f })
    assert.same({ 2, 3, n = 2 }, all[1])
    assert.equal("x", all[2])
    assert.same({ -1, -2, n = 2 }, results)
  end)

  it("send error_callback the error get raises", function()
    local got
    local f = pool:map_async(function() error("bad", 0) end, { 1 }, { error_callback = function(e) got = e end })
    f:wait(10)
    assert.is_truthy(got:find("^item 1: bad"))
  end)

  it("check their arguments", function()
    assert_raises("bad argument #2 to 'map_async' (table expected, got nil)",
      function() pool:map_async(print) end)
    assert_raises("bad argument #3 to 'starmap_async' (chunksize must be a positive integer)",
      function() pool:starmap_async(print, {}, { chunksize = 0 }) end)
    assert_raises("bad argument #3 to 'map_async' (error_callback must be a function)",
      function() pool:map_async(print, {}, { error_callback = "x" }) end)
  end)
end)

describe("the async options", function()
  it("refuse unknown keys", function()
    assert_raises("bad argument #3 to 'map_async' (unknown option 'timeout')",
      function() pool:map_async(print, { 1 }, { timeout = 1 }) end)
    assert_raises("bad argument #3 to 'apply_async' (unknown option 'chunksize')",
      function() pool:apply_async(print, {}, { chunksize = 1 }) end)
  end)
end)
