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

-- Brings every state to a full collection before a sample: the main one,
-- and each worker's (one task per worker, held at a barrier so that no
-- worker takes two). What is left is what is still in use, not garbage
-- waiting for its cycle.
local NW = parallel.cpu_count()
local function settle()
  collectgarbage(); collectgarbage()
  local all = parallel.barrier(NW)
  local fs = {}
  for i = 1, NW do
    fs[i] = pool:submit(function(b)
      collectgarbage(); collectgarbage()
      b:wait(10)
    end, all)
  end
  for i = 1, NW do fs[i]:get() end
  collectgarbage(); collectgarbage()
  return rss_kb()
end

local function median3(a, b, c)
  return math.max(math.min(a, b), math.min(math.max(a, b), c))
end

-- Warm-up (400000 tasks): the function caches, the pool's FIFO at its batch size, and
-- glibc's per-thread malloc arenas, which take some 100000 tasks to settle.
local WARMUP = tonumber(os.getenv("SOAK_WARMUP")) or 40
for w = 1, WARMUP do batch(-w * BATCH) end
-- Samples every SAMPLE tasks; growth compares the median of the last three
-- with that of the first three: a leak grows steadily, a heap's high-water
-- mark moves by a few MB either way from one sample to the next.
local SAMPLE = math.max(BATCH, TOTAL // 10)
local samples, t0 = {settle()}, parallel.now()
local done = 0
while done < TOTAL do
  batch(done)
  done = done + BATCH
  if done % SAMPLE == 0 then
    samples[#samples + 1] = settle()
    io.write(("  %7d tasks  %6.1f s  VmRSS %d kB  Lua heap %d kB\n"):format(done, parallel.now() - t0,
      samples[#samples], collectgarbage("count") // 1))
  end
end
local secs = parallel.now() - t0
local n = #samples
local before = median3(samples[1], samples[2] or samples[1], samples[3] or samples[1])
local after = median3(samples[n], samples[n - 1] or samples[n], samples[n - 2] or samples[n])
local growth = (after - before) / before * 100
local low, high = math.huge, 0
for _, v in ipairs(samples) do low, high = math.min(low, v), math.max(high, v) end
print(("soak: %d tasks in %.1f s (%.0f tasks/s); VmRSS (median of the first and of the last three samples) %d kB -> %d kB, growth %.1f%% %s")
  :format(TOTAL, secs, TOTAL / secs, before, after, growth, growth < 10 and "< 10%: ok" or ">= 10%: FAIL"))
print(("soak: %d samples between %d and %d kB"):format(n, low, high))
pool:shutdown()
os.exit(growth < 10 and 0 or 1)
