-- Shared objects in process pools (wire/remote.h): what one request to the
-- owning process costs, seen from a task in a worker process, beside the
-- same calls from a thread pool's task (the object in the same process).
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
print(("%-26s %10s %10s"):format("µs per call (in a task)", "threads", "process"))
for _, k in ipairs{"push", "pop", "dset", "dget", "push_all", "pop_many"} do
  local label = ({push = "q:push(i)", pop = "q:pop()", dset = "d[k] = v", dget = "d[k]",
                  push_all = "q:push_all, per item (100)", pop_many = "q:pop_many, per item (100)"})[k]
  print(("%-26s %10.2f %10.2f"):format(label, rows.threads[k], rows.process[k]))
end
