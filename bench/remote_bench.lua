-- Shared objects in process pools (wire/remote.h): what one request to the
-- owning process costs, seen from a task in a worker process, beside the
-- same calls from a thread pool's task (the object in the same process);
-- then, in a worker process, a queue and a dict the task makes itself:
-- here (they cannot leave the worker) or with {owner = "parent"} (made by
-- the pool's process, so they can leave: every call is a request).
--   lua5.4 bench/remote_bench.lua [n]
local parallel = require "parallel"
local N = tonumber(arg and arg[1]) or 20000

local function task(q, d, n)
  local now = require("parallel").now
  local t0 = now()
  for i = 1, n do q:push(i) end
  local t1 = now()
  for _ = 1, n do q:pop() end
  local t2 = now()
  for i = 1, n // 4 do d[i % 64] = i end
  local t3 = now()
  for i = 1, n // 4 do local _ = d[i % 64] end
  local t4 = now()
  local batch = {}
  for i = 1, 100 do batch[i] = i end
  for _ = 1, n // 100 do q:push_all(batch) end
  local t5 = now()
  for _ = 1, n // 100 do q:pop_many(100) end
  local t6 = now()
  local us = 1e6
  return {push = (t1 - t0) / n * us, pop = (t2 - t1) / n * us,
          dset = (t3 - t2) / (n // 4) * us, dget = (t4 - t3) / (n // 4) * us,
          push_all = (t5 - t4) / n * us, pop_many = (t6 - t5) / n * us}
end

local rows = {}
for _, backend in ipairs{"threads", "process"} do
  local pool <close> = parallel.pool{backend = backend, workers = 1}
  local q, d = parallel.queue(), parallel.dict()
  pool:apply(task, q, d, 200)     -- warm up: code sent, worker started
  rows[backend] = pool:apply(task, q, d, N)
end

-- Made in the worker: here and at the parent, alternated three times.
local function made_in_task(fn, n, owner)
  local parallel = require "parallel"
  local opts = owner and {owner = owner}
  return fn(parallel.queue(0, opts), parallel.dict(opts), n)
end
do
  local pool <close> = parallel.pool{backend = "process", workers = 1}
  pool:apply(made_in_task, task, 200, "parent")
  local runs = {here = {}, parent = {}}
  for _ = 1, 3 do
    for _, owner in ipairs{"here", "parent"} do
      local r = pool:apply(made_in_task, task, N, owner)
      for k, v in pairs(r) do runs[owner][k] = math.min(runs[owner][k] or math.huge, v) end
    end
  end
  rows.here, rows.parent = runs.here, runs.parent
end

print(("%-26s %10s %10s %12s %12s"):format("µs per call (in a task)", "threads", "process",
  "made: here", "made: parent"))
for _, k in ipairs{"push", "pop", "dset", "dget", "push_all", "pop_many"} do
  local label = ({push = "q:push(i)", pop = "q:pop()", dset = "d[k] = v", dget = "d[k]",
                  push_all = "q:push_all, per item (100)", pop_many = "q:pop_many, per item (100)"})[k]
  print(("%-26s %10.2f %10.2f %12.2f %12.2f"):format(label, rows.threads[k], rows.process[k],
    rows.here[k], rows.parent[k]))
end
