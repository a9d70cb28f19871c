-- make bench's load mode: the figures that depend on how threads wait
-- (bench/waits.lua: round trip, submit all then get, a queue, a lock
-- counter), with the waiting policy as built and with spinning off
-- (blocking only), interleaved inside each waits.lua run; Python's
-- ThreadPoolExecutor(2) round trip; a CPU-bound map against two independent
-- lua5.4 processes. First on the machine as it is ("quiet"), then with one
-- busy-loop process per CPU beside it, started and stopped here. Each
-- condition runs ROUNDS rounds of all three; each figure is the median of
-- its rounds: the ratios compare figures of the same minutes.
-- BENCH_LOAD_ROUNDS (default 3) sets the rounds per condition.
if not package.searchpath("parallel.core", package.cpath) then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local parallel = require "parallel"
local workloads = dofile("bench/workloads.lua")
local now = parallel.now

local ROUNDS = tonumber(os.getenv("BENCH_LOAD_ROUNDS")) or 3
local CPUS = parallel.cpu_count()
local py_ok = os.execute("command -v python3 >/dev/null 2>&1")

local function lines_of(cmd)
  local out = {}
  local p = io.popen(cmd)
  for line in p:lines() do
    local k, v = line:match("^([%w_]+)\t([%d%.eE+-]+)\t")
    if k then out[k] = tonumber(v) end
  end
  p:close()
  return out
end

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return nil, nil end
  local one, running = f:read("a"):match("^(%S+) %S+ %S+ (%d+)/")
  f:close()
  return tonumber(one), tonumber(running)
end

-- The CPU-bound map: 20 of the tutorial's items on a pool of 2, against the
-- same items split between two lua5.4 processes; the ratio of speeds.
local cpu_pool = parallel.pool(2)
local function cpu_ratio()
  local items = {}
  for i = 1, 20 do items[i] = workloads.items[2 * i - 1] end
  local src = [[
    local function cpu_intensive_task(n) local result = 0 for i = 0, n - 1 do result = result + i * i end return result end
    for i = %d, 40, 4 do cpu_intensive_task(math.floor(1e6 + (i - 1) * 4e6 / 39 + 0.5)) end ]]
  local t0 = now()
  cpu_pool:map(workloads.cpu_intensive_task, items, { chunksize = 1 })
  local tpar = now() - t0
  t0 = now()
  local a = io.popen("lua5.4 -e '" .. src:format(1) .. "'")
  local b = io.popen("lua5.4 -e '" .. src:format(3) .. "'")
  a:read("a"); b:read("a"); a:close(); b:close()
  return (now() - t0) / tpar
end

local function median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  if #t == 0 then return nil end
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function phase(label)
  local s = { spin = {}, py = {}, cpu = {}, running = {}, spins = {} }
  local l0 = loadavg()
  for r = 1, ROUNDS do
    io.stderr:write(("  %s: round %d of %d\n"):format(label, r, ROUNDS))
    s.spin[r] = lines_of("lua5.4 bench/waits.lua")
    if py_ok then
      s.py[#s.py + 1] = lines_of("python3 bench/python/roundtrip.py --threads-only --repeat 1000 2>/dev/null")
        .roundtrip_threadpool
    end
    s.cpu[r] = cpu_ratio()
    local _, running = loadavg()
    s.running[r] = running
  end
  local l1 = loadavg()
  for r = 1, ROUNDS do s.spins[r] = s.spin[r].spins end
  local out = { label = label, load0 = l0, load1 = l1, running = median(s.running), spins = median(s.spins),
                py = median(s.py), cpu = median(s.cpu), spin = {}, block = {} }
  for _, k in ipairs({ "roundtrip", "submit_all", "queue", "lock_counter" }) do
    local a, b = {}, {}
    for r = 1, ROUNDS do a[r] = s.spin[r][k .. "_spin"]; b[r] = s.spin[r][k .. "_block"] end
    out.spin[k], out.block[k] = median(a), median(b)
  end
  return out
end

-- One busy-loop process per CPU; returns a function that stops them.
local function start_load(n)
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

local quiet = phase("quiet")
local stop = start_load(CPUS)
local ok, loaded = pcall(phase, "under load")
stop()
if not ok then error(loaded, 0) end
cpu_pool:shutdown()

local function f(v) return v and ("%10.2f"):format(v) or ("%10s"):format("-") end
local function ratio(a, b) return a and b and ("%8.2f"):format(a / b) or ("%8s"):format("-") end
print(("waiting, %s: medians of %d rounds; block = spinning off (parallel.waiting{spin = false}),"
  .. " interleaved with spin in the same process"):format(os.date("!%Y-%m-%d %H:%M UTC"), ROUNDS))
for _, p in ipairs({ quiet, loaded }) do
  print(("  %-10s 1-min load %.2f -> %.2f, runnable (median of rounds) %s, %d CPUs, spins begun per run %s"):format(
    p.label, p.load0 or -1, p.load1 or -1, tostring(p.running), CPUS, tostring(p.spins)))
end
print(("%-22s %10s %10s %10s %10s %8s %8s %8s"):format("measure", "quiet", "q.block", "load",
  "l.block", "l/lblk", "l/q", "q/qblk"))
-- ratios are of times: below 1 is faster (queue rates are inverted for them)
local rows = {
  { "roundtrip", "round trip (us)", false },
  { "submit_all", "submit all (us/task)", false },
  { "queue", "queue (M items/s)", true },
  { "lock_counter", "lock counter (ns/op)", false },
}
for _, r in ipairs(rows) do
  local k, inv = r[1], r[3]
  local q, qb, l, lb = quiet.spin[k], quiet.block[k], loaded.spin[k], loaded.block[k]
  local function tr(a, b) if inv then return ratio(b, a) end return ratio(a, b) end
  print(("%-22s %s %s %s %s %s %s %s"):format(r[2], f(q), f(qb), f(l), f(lb), tr(l, lb), tr(l, q), tr(q, qb)))
end
print(("%-22s %s %10s %s"):format("Python TPE(2) rt (us)", f(quiet.py), "", f(loaded.py)))
print(("%-22s %s %10s %s"):format("round trip / Python", ratio(quiet.spin.roundtrip, quiet.py), "",
  ratio(loaded.spin.roundtrip, loaded.py)))
print(("%-22s %s %10s %s"):format("CPU map / 2 processes", f(quiet.cpu), "", f(loaded.cpu)))
