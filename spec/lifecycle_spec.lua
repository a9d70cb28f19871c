-- Lifecycle guarantees, checked on child lua5.4 processes: the exit of a script
-- with open pools, garbage-collected pools, thread leaks, Ctrl-C.

local support = require "spec.support"
local run_lua = support.run_lua
local parallel = require "parallel"

-- Runs setup, says it is ready, runs block; gets SIGINT once ready.
-- Returns the exit code, stderr, stdout after ready, and seconds from the signal to the exit.
local function interrupt(setup, block)
  local rest, err, status, elapsed = support.run_interrupted(
    block .. '\nprint("not interrupted")', 'local parallel = require "parallel"\n' .. setup)
  return status, err, rest, elapsed
end

describe("a script that ends with a pool still open #child", function()
  it("exits promptly with status 0 while tasks spin, sleep and wait in the queue", function()
    local out, err, status, elapsed = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      pool:submit(function() while true do end end)
      pool:submit(function() parallel.sleep(100) end)
      for i = 1, 5 do pool:submit(function() return i end) end
      print("end")
    ]])
    assert.equal(0, status, err)
    assert.equal("end\n", out)
    assert.is_true(elapsed < 5, "took " .. elapsed .. " s")
  end)

  it("exits promptly through os.exit(0, true)", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      pool:submit(function() while true do end end)
      pool:submit(function() parallel.sleep(100) end)
      print("end")
      os.exit(0, true)
    ]])
    assert.equal(0, status, err)
    assert.equal("end\n", out)
  end)

  it("exits promptly through os.exit(0) without closing the state", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      pool:submit(function() while true do end end)
      pool:submit(function() parallel.sleep(100) end)
      print("end")
      os.exit(0)
    ]])
    assert.equal(0, status, err)
    assert.equal("end\n", out)
  end)

  it("exits with status 1 and the message when the script raises", function()
    local _, err, status = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      pool:submit(function() while true do end end)
      error("script failed")
    ]])
    assert.equal(1, status)
    assert.is_truthy(err:find("script failed", 1, true), err)
  end)

  it("exits while a task blocks in get on a future that never finishes", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      local never = pool:submit(function() parallel.sleep(100) end)
      pool:submit(function(f) return f:get() end, never)
      print("end")
    ]])
    assert.equal(0, status, err)
    assert.equal("end\n", out)
  end)

  it("exits while the default pool runs a spinning task", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      parallel.submit(function() while true do end end)
      print("end")
    ]])
    assert.equal(0, status, err)
    assert.equal("end\n", out)
  end)
end)

describe("a pool garbage-collected while tasks run #child", function()
  it("lets the script continue: queued tasks cancelled, running ones interrupted", function()
    local out, err, status = run_lua([[
      local parallel = require "parallel"
      local pool = parallel.pool(2)
      local spinning, sleeping = parallel.event(), parallel.event()
      local spin = pool:submit(function(ev) ev:set() while true do end end, spinning)
      local sleeper = pool:submit(function(ev) ev:set() parallel.sleep(100) end, sleeping)
      local queued = pool:submit(function() return "ran" end)
      assert(spinning:wait(5) and sleeping:wait(5))
      pool = nil
      collectgarbage(); collectgarbage()
      print("after gc")
      print("queued", queued:wait(5), queued:state())
      print("spin", spin:wait(5), spin:state())
      local ok, e = pcall(spin.get, spin)
      print("spin error", ok, (tostring(e):match("interrupted") or tostring(e)))
      print("sleeper", sleeper:wait(5))
      local p2 = parallel.pool(1)
      print("new pool", p2:submit(function() return 7 end):get())
      p2:shutdown()
    ]])
    assert.equal(0, status, err)
    assert.equal(table.concat({
      "after gc",
      "queued\ttrue\tcancelled",
      "spin\ttrue\tfailed",
      "spin error\tfalse\tinterrupted",
      "sleeper\ttrue",
      "new pool\t7",
    }, "\n") .. "\n", out)
  end)
end)

describe("threads #child", function()
  local threads_fn = [[
    local function threads()
      for l in io.lines("/proc/self/status") do
        local n = l:match("^Threads:%s*(%d+)")
        if n then return tonumber(n) end
      end
    end
  ]]

  it("do not leak when 50 pools are collected, closed or shut down", function()
    -- 600 threads started and joined: slow under the sanitizers on a busy machine
    local out, err, status = support.run_child{ timeout = 120, code = threads_fn .. [[
      local parallel = require "parallel"
      local before = threads()
      for _ = 1, 50 do
        local p = parallel.pool(4)
        p:submit(function() return 1 end):get()
        p = nil
        collectgarbage(); collectgarbage()
      end
      local after_gc = threads()
      for _ = 1, 50 do
        local p <close> = parallel.pool(4)
        p:apply(function() end)
      end
      local after_close = threads()
      for _ = 1, 50 do
        local p = parallel.pool(4)
        p:apply(function() end)
        p:shutdown()
      end
      collectgarbage(); collectgarbage()
      local after_shutdown = threads()
      print(before, after_gc, after_close, after_shutdown)
    ]] }
    assert.equal(0, status, err)
    local before, gc, close, shut = out:match("^(%d+)\t(%d+)\t(%d+)\t(%d+)")
    assert.is_truthy(before, out)
    before, gc, close, shut = tonumber(before), tonumber(gc), tonumber(close), tonumber(shut)
    assert.is_true(gc <= before + 4, out)
    assert.is_true(close <= before + 4, out)
    assert.is_true(shut <= before + 4, out)
  end)

  it("do not leak when pools are collected with tasks running", function()
    local out, err, status = run_lua(threads_fn .. [[
      local parallel = require "parallel"
      local before = threads()
      for _ = 1, 20 do
        local p = parallel.pool(2)
        p:submit(function() while true do end end)
        p:submit(function() parallel.sleep(100) end)
        p = nil
        collectgarbage(); collectgarbage()
      end
      -- interrupted workers may take a moment to stop: allow up to 3 s
      local t0 = parallel.now()
      while threads() > before + 4 and parallel.now() - t0 < 3 do parallel.sleep(0.05) end
      print(before, threads())
    ]])
    assert.equal(0, status, err)
    local before, after = out:match("^(%d+)\t(%d+)")
    assert.is_truthy(before, out)
    assert.is_true(tonumber(after) <= tonumber(before) + 4, out)
  end)
end)

describe("Ctrl-C #child", function()
  local setup = [[local p = parallel.pool(1)
    local f = p:submit(function() while true do end end)]]

  local cases = {
    {"future:get()", "f:get()"},
    {"future:wait()", "f:wait()"},
    {"pool:map()", "p:map(function() while true do end end, {1, 2})"},
    {"pool:apply()", "p:apply(function() while true do end end)"},
    {"parallel.wait()", "parallel.wait({f})"},
    {"parallel.as_completed()", "for _ in parallel.as_completed({f}) do end"},
    {"parallel.gather()", "parallel.gather({f})"},
    {"parallel.sleep() in the main thread", "parallel.sleep(100)"},
  }
  for _, c in ipairs(cases) do
    it("interrupts " .. c[1] .. " and the script exits within a second", function()
      local status, err, rest, elapsed = interrupt(setup, c[2])
      assert.equal(1, status, err)
      assert.is_truthy(err:find("interrupted", 1, true), err)
      assert.is_falsy(rest:find("not interrupted", 1, true))
      assert.is_true(elapsed < 1, "took " .. elapsed .. " s")
    end)
  end
end)
