-- Soak: 1,000,000 tasks through one pool, in batches; resident memory
-- (VmRSS) after warm-up batches and at the end. Growth under 10% passes.
--   lua5.4 bench/soak.lua [tasks] [batch]
local parallel = require "parallel"

local TOTAL = tonumber(arg and arg[1]) or 1000000
local BATCH = tonumber(arg and arg[2]) or 10000

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local pool = parallel.pool(parallel.cpu_count())
local function task(i) if i % 7 == 0 then return { i, tostring(i) } end return i * 2 end

local function batch(first)
  local futures = {}
  for i = 1, BATCH do futures[i] = pool:submit(task, first + i) end
  for i = 1, BATCH do
    local r = futures[i]:get()
    local want = first + i
    if want % 7 == 0 then assert(r[1] == want) else assert(r == want * 2) end
  end
end

-- Warm-up (400000 tasks): the function caches, the pool's FIFO at its batch size, and
-- glibc's per-thread malloc arenas, which take some 100000 tasks to settle.
local WARMUP = tonumber(os.getenv("SOAK_WARMUP")) or 40
for w = 1, WARMUP do batch(-w * BATCH) end
collectgarbage(); collectgarbage()
local before, t0 = rss_kb(), parallel.now()
local done, half = 0, nil
while done < TOTAL do
  batch(done)
  done = done + BATCH
  if done == TOTAL // 2 then collectgarbage(); half = rss_kb() end
  if done % 200000 == 0 then
    collectgarbage()
    io.write(("  %7d tasks  %6.1f s  VmRSS %d kB  Lua heap %d kB\n"):format(done, parallel.now() - t0, rss_kb(), collectgarbage("count") // 1))
  end
end
collectgarbage(); collectgarbage()
local after, secs = rss_kb(), parallel.now() - t0
local growth = (after - before) / before * 100
print(("soak: %d tasks in %.1f s (%.0f tasks/s); VmRSS %d kB -> %d kB, growth %.1f%% %s")
  :format(TOTAL, secs, TOTAL / secs, before, after, growth, growth < 10 and "< 10%: ok" or ">= 10%: FAIL"))
if half then
  print(("soak: second half %d kB -> %d kB, growth %.1f%% (a leak grows steadily; settling allocators do not)")
    :format(half, after, (after - half) / half * 100))
end
pool:shutdown()
os.exit(growth < 10 and 0 or 1)
