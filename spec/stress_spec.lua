-- Stress (make stress): many tasks, queues and pools at once. Every future
-- ends in a terminal state, no result or queue item is lost or duplicated,
-- and pools leave no thread nor descriptor behind.

local support = require "spec.support"
local parallel = require "parallel"

local function proc_status(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- Read with readdir (spec/fdpoll.c), not io.popen("ls ..."): the shell
-- could list this process's fds before popen had closed the pipe's other
-- end, one more on a busy machine (1 run in 5 with a busy loop per CPU).
local fdpoll = assert(package.loadlib(os.getenv("PARALLEL_FDPOLL") or "./build/test/fdpoll.so", "luaopen_fdpoll"))()
local function open_fds()
  return #fdpoll.list("/proc/self/fd")
end

local TERMINAL = { done = true, failed = true, cancelled = true }

describe("stress #stress", function()
  it("100000 tasks: results, errors, cancellations, timeouts, interrupts, nested submits", function()
    local N, BATCH = 100000, 10000
    local pool <close> = parallel.pool(4)
    local seen = {}                 -- i -> how it ended
    local counts = { result = 0, error = 0, cancelled = 0, nested = 0, interrupted = 0, spun = 0, timeout = 0 }
    local function once(i, how)
      assert(seen[i] == nil, "task " .. i .. " ended twice")
      seen[i] = how
      counts[how] = counts[how] + 1
    end

    for first = 1, N, BATCH do
      local futures, kinds = {}, {}
      for i = first, first + BATCH - 1 do
        local k = i % 10
        local f
        if k <= 3 then
          f = pool:submit(function(x) return x end, i)
        elseif k == 4 then
          f = pool:submit(function(x) error("e" .. x, 0) end, i)
        elseif k == 5 or k == 6 then
          f = pool:submit(function(x) return x end, i)
          f:cancel()                          -- cancelled if it had not started
        elseif k == 7 then
          -- a nested submit from a worker: the child future comes back
          f = pool:submit(function(p, x) return p:submit(function(y) return y end, x) end, pool, i)
        elseif k == 8 and i % 1000 == 8 then
          -- a spinner, interrupted once it runs (it gives up after 0.5 s)
          f = pool:submit(function(x)
            local t = parallel.now() + 0.5
            while parallel.now() < t do end
            return x
          end, i)
          k = 9.5
        else
          f = pool:submit(function(x) return x end, i)
        end
        futures[#futures + 1] = f
        kinds[#futures] = k
      end
      -- timeouts: a get with no time left raises "timeout" while pending
      for j = 1, #futures, 97 do
        local ok, e = pcall(futures[j].get, futures[j], 0)
        if not ok and e == "timeout" then counts.timeout = counts.timeout + 1 end
      end
      -- interrupts: keep asking until each spinner has ended
      for j = 1, #futures do
        if kinds[j] == 9.5 then
          local f = futures[j]
          while not f:wait(0.001) do f:interrupt() end
        end
      end
      local done, not_done = parallel.wait(futures, { timeout = 60 })
      assert.equal(0, #not_done)
      assert.equal(#futures, #done)
      for j, f in ipairs(futures) do
        local i, k, st = first + j - 1, kinds[j], f:state()
        assert.is_true(TERMINAL[st], "future " .. i .. " is " .. st)
        if st == "cancelled" then
          assert.is_true(k == 5 or k == 6, "task " .. i .. " cancelled")
          once(i, "cancelled")
        elseif k == 4 then
          assert.equal("failed", st)
          local ok, e = pcall(f.get, f)
          assert.is_false(ok)
          assert.equal("e" .. i, e:match("^[^\n]*"))
          once(i, "error")
        elseif k == 7 then
          local child = f:get()
          assert.equal(i, child:get(60))
          once(i, "nested")
        elseif k == 9.5 then
          local ok, r = pcall(f.get, f)
          if ok then assert.equal(i, r); once(i, "spun")
          else assert.matches("interrupted", tostring(r)); once(i, "interrupted") end
        else
          assert.equal("done", st)
          assert.equal(i, f:get())
          once(i, "result")
        end
      end
    end
    for i = 1, N do assert(seen[i], "task " .. i .. " lost") end
    assert.is_true(counts.interrupted > 0, "no spinner was interrupted")
    local st = pool:stats()
    assert.equal(0, st.pending)
    assert.equal(0, st.running)
    assert.equal(st.submitted, st.completed + st.failed + st.cancelled)
    print(("\n100000 tasks: %d results, %d errors, %d cancelled, %d nested, %d interrupted, %d spun out, %d timeouts seen")
      :format(counts.result, counts.error, counts.cancelled, counts.nested, counts.interrupted, counts.spun, counts.timeout))
  end)

  it("queues with many producers and consumers lose and duplicate nothing", function()
    local PRODUCERS, CONSUMERS, PER = 4, 4, 25000
    local pool <close> = parallel.pool(PRODUCERS + CONSUMERS)
    for _, cap in ipairs { 0, 16 } do
      local q = parallel.queue(cap > 0 and cap or nil)
      local consumers, producers = {}, {}
      for c = 1, CONSUMERS do
        consumers[c] = pool:submit(function(q)
          local got, n = {}, 0
          for v in q:items() do n = n + 1; got[n] = v end
          return got
        end, q)
      end
      for p = 1, PRODUCERS do
        producers[p] = pool:submit(function(q, from, to)
          for i = from, to do
            if i % 3 == 0 then q:push({ i }) else q:push(i) end
          end
          return to - from + 1
        end, q, (p - 1) * PER + 1, p * PER)
      end
      for p = 1, PRODUCERS do assert.equal(PER, producers[p]:get(120)) end
      q:close()
      local seen, total = {}, 0
      for c = 1, CONSUMERS do
        for _, v in ipairs(consumers[c]:get(120)) do
          if type(v) == "table" then v = v[1] end
          assert(not seen[v], "item " .. tostring(v) .. " received twice")
          seen[v] = true
          total = total + 1
        end
      end
      assert.equal(PRODUCERS * PER, total)
      assert.equal(0, #q)
      assert.same({ nil, "closed" }, { q:pop(0) })
    end
  end)

  it("pipes carry many messages both ways in order", function()
    local a, b = parallel.pipe()
    local pool <close> = parallel.pool(1)
    local N = 20000
    local echo = pool:submit(function(b, n)
      for _ = 1, n do b:send(b:recv()) end
      return true
    end, b, N)
    for i = 1, N do
      a:send(i)
      assert.equal(i, a:recv(60))
    end
    assert.is_true(echo:get(60))
  end)

  it("pools created and collected in a loop leak no threads nor descriptors", function()
    -- the process-wide descriptors opened once, on first use, come first:
    -- the shared-memory arena (an event lives there) and the waiting
    -- policy's /proc/loadavg (a wait)
    local gate = parallel.event()
    parallel.waiting()
    collectgarbage(); collectgarbage()
    local threads0, fds0 = proc_status("Threads"), open_fds()
    for i = 1, 300 do
      local p = parallel.pool(i % 4 + 1)
      local m = i % 5
      if m == 0 then
        p:submit(function() return 1 end):get()
      elseif m == 1 then
        -- queued and running tasks when collected: cancelled and interrupted
        for _ = 1, 10 do p:submit(function(g) g:wait() end, gate) end
      elseif m == 2 then
        p:fd()
        p:submit(function() return 1 end):get()
      elseif m == 3 then
        p:shutdown { wait = false }
      else
        local f = p:submit(function() while true do end end)
        f:wait(0.001)
      end
      p = nil
      if i % 10 == 0 then collectgarbage(); collectgarbage() end
    end
    collectgarbage(); collectgarbage()
    -- pools shut down without waiting finish on their own
    local deadline = parallel.now() + 10
    while proc_status("Threads") > threads0 and parallel.now() < deadline do
      parallel.sleep(0.05)
      collectgarbage()
    end
    assert.equal(threads0, proc_status("Threads"))
    assert.equal(fds0, open_fds())
  end)

  it("spawned threads all finish and are reclaimed", function()
    collectgarbage(); collectgarbage()
    local threads0 = proc_status("Threads")
    local futures = {}
    for i = 1, 500 do futures[i] = parallel.spawn(function(x) return x * x end, i) end
    for i = 1, 500 do assert.equal(i * i, futures[i]:get(60)) end
    futures = nil
    local deadline = parallel.now() + 10
    repeat
      collectgarbage(); collectgarbage()
      parallel.spawn(function() end):get()     -- spawn reaps finished ones
      parallel.sleep(0.01)
    until proc_status("Threads") <= threads0 + 1 or parallel.now() > deadline
    assert.is_true(proc_status("Threads") <= threads0 + 1)
  end)
end)
