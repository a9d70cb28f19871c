-- What every bench script shares: the module found from a checkout, the
-- timing helpers, Python's counterparts, the machine's load, and the
-- busy-loop processes of the load mode. Each script loads it with
-- dofile("bench/common.lua") from the repository's root (make bench and
-- tools/mpi-bench.sh run them from there).
if not package.searchpath("parallel.core", package.cpath) then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local parallel = require "parallel"

local M = { parallel = parallel, now = parallel.now }

-- The shortest of n timed runs of fn (parallel.timeit).
function M.best_of(n, fn)
  local best = math.huge
  for _ = 1, n do
    local t = parallel.timeit(fn)
    if t < best then best = t end
  end
  return best
end

-- The median of a list of numbers (a sorted copy; nil when empty).
function M.median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  if #t == 0 then return nil end
  table.sort(t)
  return t[(#t + 1) // 2]
end

M.python_ok = os.execute("command -v python3 >/dev/null 2>&1") and true or false

-- The "name<TAB>value<TAB>unit" lines a command prints: name -> value.
function M.lines_of(cmd)
  local out = {}
  local p = io.popen(cmd)
  for line in p:lines() do
    local k, v = line:match("^([%w_]+)\t([%d%.eE+-]+)\t")
    if k then out[k] = tonumber(v) end
  end
  p:close()
  return out
end

-- A Python counterpart in bench/python/: name -> value, {} without python3.
function M.python(script, args)
  if not M.python_ok then return {} end
  return M.lines_of("python3 bench/python/" .. script .. " " .. (args or "") .. " 2>/dev/null")
end

-- The 1-minute load average and the runnable count of /proc/loadavg: on a
-- shared machine they say what "quiet" meant.
function M.loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil, nil end
  local one, running = f:read("a"):match("^(%S+) %S+ %S+ (%d+)/")
  f:close()
  return tonumber(one), tonumber(running)
end

function M.loadavg_text()
  local one, running = M.loadavg()
  if not one then return "?" end
  return ("%.2f (%d runnable)"):format(one, running)
end

-- Starts n busy-loop processes; returns a function that stops them.
function M.start_load(n)
  local pids = {}
  for i = 1, n do
    local p = io.popen("lua5.4 -e 'while true do end' >/dev/null 2>&1 & echo $!")
    pids[i] = p:read("l")
    p:close()
  end
  return function()
    for _, pid in ipairs(pids) do
      if pid and pid:match("^%d+$") then os.execute("kill " .. pid) end
    end
  end
end

-- Prints one "name<TAB>value<TAB>unit" line, the form lines_of reads.
function M.report(name, value, unit)
  io.write(("%s\t%.6g\t%s\n"):format(name, value, unit or ""))
end

-- Integers from a producer to this thread through a queue of capacity cap,
-- items per second, both sides timed: the producer (start(fn, ...) runs
-- fn(...) in another thread and returns its future) waits for a go signal,
-- then pushes; the clock stops when this thread has drained the closed
-- queue. batch 0: one push and one pop per item; else push_all of
-- batch-item lists and pop_many(batch).
function M.queue_rate(start, n, batch, cap, make)
  local q, go = parallel.queue(cap), parallel.event()
  local f = start(function(q, go, n, batch, make)
    if batch == 0 then
      go:wait()
      for i = 1, n do q:push(make and make(i) or i) end
    else
      local list = {}
      for i = 1, batch do list[i] = make and make(i) or i end
      go:wait()
      for _ = 1, n // batch do q:push_all(list) end
    end
    q:close()
  end, q, go, n, batch, make)
  local t0 = parallel.now()
  go:set()
  local count = 0
  if batch == 0 then
    for _ in q:items() do count = count + 1 end
  else
    while true do
      local l = q:pop_many(batch)
      if not l then break end
      count = count + #l
    end
  end
  local t = parallel.now() - t0
  f:get()
  assert(count == (batch == 0 and n or n // batch * batch), "queue lost items")
  return count / t
end

-- Two threads (start(fn, ...) runs fn(...) in another thread and returns
-- its future) each run body(v, lock, n) on one shared int64 counter,
-- released together by a barrier; the seconds until both are done. Each
-- body must add n to the counter.
function M.counter_time(start, n, body)
  local v, l, go = parallel.value("int64", 0), parallel.lock(), parallel.barrier(3)
  local fs = {}
  for t = 1, 2 do
    fs[t] = start(function(v, l, go, n, body)
      go:wait()
      body(v, l, n)
    end, v, l, go, n, body)
  end
  go:wait()
  local t0 = parallel.now()
  for t = 1, 2 do fs[t]:get() end
  local t = parallel.now() - t0
  assert(v:get() == 2 * n, "counter lost increments")
  return t
end

return M
