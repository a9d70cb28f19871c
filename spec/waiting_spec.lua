-- The waiting policy (src/core/wait.h): when a wait spins before it sleeps.
local support = require "support"
local parallel = require "parallel"

local function waiting_in_child(code, env)
  local out, err, status = support.run_lua([[
    local parallel = require "parallel"
    ]] .. code, env)
  assert.equal(0, status, err)
  return out
end

describe("parallel.waiting", function()
  it("reports what the policy sees: CPUs, runnable threads, a limit per kind of waiter", function()
    local w = parallel.waiting()
    assert.is_boolean(w.spin)
    assert.is_true(w.cpus >= 1 and w.cpus <= parallel.cpu_count())
    assert.is_true(w.online >= w.cpus)
    assert.is_true(w.runnable >= 1)
    for _, kind in ipairs({ "pool", "future", "queue", "lock", "process" }) do
      assert.is_true(w.limit_us[kind] >= 0 and w.limit_us[kind] <= w.cap_us, kind)
      assert.is_true(math.type(w.spins[kind]) == "integer", kind)
    end
  end)

  it("waiting{spin = false} turns spinning off for the process, spin = true back on", function()
    local was = parallel.waiting().spin
    local off = parallel.waiting({ spin = false })
    assert.is_false(off.spin)
    for _, limit in pairs(off.limit_us) do assert.equal(0, limit) end
    local pool = parallel.pool(1)
    for i = 1, 20 do assert.equal(i + 1, pool:submit(function(x) return x + 1 end, i):get()) end
    pool:shutdown()
    assert.equal(was, parallel.waiting({ spin = true }).spin)
  end)

  it("checks its argument", function()
    support.assert_raises("bad argument #1 to 'waiting' (table expected, got number)",
      function() parallel.waiting(1) end)
    support.assert_raises("bad argument #1 to 'waiting' (unknown option 'spinn')",
      function() parallel.waiting({ spinn = false }) end)
    support.assert_raises("bad argument #1 to 'waiting' (spin must be a boolean)",
      function() parallel.waiting({ spin = 0 }) end)
  end)

  it("PARALLEL_SPIN=0 turns spinning off, and every kind of wait still completes #child", function()
    local out = waiting_in_child([[
      local pool = parallel.pool(2)
      local sum = 0
      for i = 1, 200 do sum = sum + pool:submit(function(x) return x + 1 end, i):get() end
      local q = parallel.queue(1)
      local producer = parallel.spawn(function(q) for i = 1, 2000 do q:push(i) end q:close() end, q)
      local n = 0
      for _ in q:items() do n = n + 1 end
      producer:get()
      local v, l = parallel.value("int64", 0), parallel.lock()
      local fs = {}
      for t = 1, 2 do
        fs[t] = pool:submit(function(v, l)
          for _ = 1, 2000 do l:acquire(); v:set(v:get() + 1); l:release() end
        end, v, l)
      end
      for t = 1, 2 do fs[t]:get() end
      local w = parallel.waiting()
      local limits, spins = 0, 0
      for _, x in pairs(w.limit_us) do limits = limits + x end
      for _, x in pairs(w.spins) do spins = spins + x end
      print(w.spin, w.cap_us, limits, spins, sum, n, v:get())
    ]], "PARALLEL_SPIN=0")
    assert.equal("false\t0.0\t0.0\t0\t20300\t2000\t4000\n", out)
  end)

  it("PARALLEL_SPIN=<microseconds> caps every spin #child", function()
    local out = waiting_in_child([[
      local w = parallel.waiting()
      print(w.cpus >= 2 and w.cap_us == 5 or (w.cpus < 2 and not w.spin))
    ]], "PARALLEL_SPIN=5")
    assert.equal("true\n", out)
  end)

  it("a kind of waiter whose spins keep failing stops spinning #child", function()
    local out = waiting_in_child([[
      local pool = parallel.pool(1)
      for i = 1, 40 do pool:submit(function() parallel.sleep(0.005) end):get() end
      local w = parallel.waiting()
      -- each failed spin halves the limit: five take 20 us below 1 us
      print(w.spins.future < 5 or w.limit_us.future == 0, w.spins.future <= 40)
    ]])
    assert.equal("true\ttrue\n", out)
  end)

  it("counts our threads as runnable unless they sleep in a wait #child", function()
    local out = waiting_in_child([[
      local pool = parallel.pool(3)
      local go, busy = parallel.event(), parallel.value("int64", 0)
      local function runnable_becomes(n)
        local stop = parallel.now() + 5
        while parallel.waiting().runnable ~= n do
          if parallel.now() > stop then return parallel.waiting().runnable end
        end
        return n
      end
      local fs = {}
      for i = 1, 3 do fs[i] = pool:submit(function(go) go:wait() end, go) end
      local asleep = runnable_becomes(1)          -- only this thread
      go:set()
      for i = 1, 3 do fs[i]:get() end
      for i = 1, 3 do
        fs[i] = pool:submit(function(busy) while busy:get() == 0 do end end, busy)
      end
      local running = runnable_becomes(4)         -- this thread and three spinning tasks
      busy:set(1)
      for i = 1, 3 do fs[i]:get() end
      print(asleep, running)
    ]])
    assert.equal("1\t4\n", out)
  end)
end)
