-- make bench's load mode: the figures that depend on how threads wait
-- (bench/waits.lua: round trip, submit all then get, a queue item by item
-- and in batches, a lock counter), with the waiting policy as built and
-- with spinning off (blocking only), interleaved inside each waits.lua
-- run; Python's ThreadPoolExecutor(2) round trip; a CPU-bound map against
-- two independent lua5.4 processes. First on the machine as it is
-- ("quiet"), then with one busy-loop process per CPU beside it, started
-- and stopped here. Each condition runs ROUNDS rounds of all three; each
-- figure is the median of its rounds: the ratios compare figures of the
-- same minutes. Last, issue 12's targets as a Markdown table, printed and
-- written to BENCH_TARGETS (default build/bench-targets.md).
-- BENCH_LOAD_ROUNDS (default 3) sets the rounds per condition.
-- Standalone: lua5.4 bench/load.lua (make bench-load).
local bench = dofile("bench/common.lua")
local parallel, now, median = bench.parallel, bench.now, bench.median
local workloads = dofile("bench/workloads.lua")

local ROUNDS = tonumber(os.getenv("BENCH_LOAD_ROUNDS")) or 3
local CPUS = parallel.cpu_count()
local TARGETS = os.getenv("BENCH_TARGETS") or "build/bench-targets.md"
local MEASURES = { "roundtrip", "submit_all", "queue", "queue_batch", "lock_counter" }

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

local function phase(label)
  local s = { spin = {}, py = {}, cpu = {}, running = {}, spins = {} }
  local l0 = bench.loadavg()
  for r = 1, ROUNDS do
    io.stderr:write(("  %s: round %d of %d\n"):format(label, r, ROUNDS))
    s.spin[r] = bench.lines_of("lua5.4 bench/waits.lua")
    s.py[#s.py + 1] = bench.python("roundtrip.py", "--threads-only --repeat 1000").roundtrip_threadpool
    s.cpu[r] = cpu_ratio()
    local _, running = bench.loadavg()
    s.running[r] = running
  end
  local l1 = bench.loadavg()
  for r = 1, ROUNDS do s.spins[r] = s.spin[r].spins end
  local out = { label = label, load0 = l0, load1 = l1, running = median(s.running), spins = median(s.spins),
                py = median(s.py), cpu = median(s.cpu), spin = {}, block = {} }
  for _, k in ipairs(MEASURES) do
    local a, b = {}, {}
    for r = 1, ROUNDS do a[r] = s.spin[r][k .. "_spin"]; b[r] = s.spin[r][k .. "_block"] end
    out.spin[k], out.block[k] = median(a), median(b)
  end
  return out
end

local started = os.date("!%Y-%m-%d %H:%M UTC")
local quiet = phase("quiet")
local stop = bench.start_load(CPUS)
local ok, loaded = pcall(phase, "under load")
stop()
if not ok then error(loaded, 0) end
cpu_pool:shutdown()

local function f(v) return v and ("%10.2f"):format(v) or ("%10s"):format("-") end
local function ratio(a, b) return a and b and ("%8.2f"):format(a / b) or ("%8s"):format("-") end
print(("waiting, %s: medians of %d rounds; block = spinning off (parallel.waiting{spin = false}),"
  .. " interleaved with spin in the same process"):format(started, ROUNDS))
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
  { "queue_batch", "queue batch (M it/s)", true },
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

-- Issue 12's targets, every figure from this run: a table to paste into
-- the README as it is.
local function div(a, b) return a and b and a / b or nil end
local function num(v, fmt) return v and (fmt or "%.2f"):format(v) or "–" end
local function met(v, target, at_most)
  if not v then return "" end
  if at_most then return v <= target and " ✓" or " ✗" end
  return v >= target and " ✓" or " ✗"
end
local function both(a, b, target, at_most, fmt)
  return ("%s%s / %s%s"):format(num(a, fmt), met(a, target, at_most), num(b, fmt), met(b, target, at_most))
end
local rt_load_block = div(loaded.spin.roundtrip, loaded.block.roundtrip)
local rt_py_q, rt_py_l = div(quiet.spin.roundtrip, quiet.py), div(loaded.spin.roundtrip, loaded.py)
local submit = div(loaded.spin.submit_all, quiet.spin.submit_all)
local md = {
  ("Issue 12's targets, `make bench` (bench/load.lua) of %s: medians of %d rounds per condition; quiet:"
    .. " 1-min load %s -> %s, under load (one busy loop per CPU, %d CPUs): %s -> %s; spins begun per"
    .. " waits.lua run %s quiet, %s under load."):format(started, ROUNDS, num(quiet.load0), num(quiet.load1), CPUS,
    num(loaded.load0), num(loaded.load1), tostring(quiet.spins), tostring(loaded.spins)),
  "",
  "| measure | target | quiet | under load |",
  "|---|---|---|---|",
  ("| round trip (median call) | ≤ 3 µs quiet | %s µs%s | %s µs |"):format(num(quiet.spin.roundtrip),
    met(quiet.spin.roundtrip, 3, true), num(loaded.spin.roundtrip)),
  ("| round trip ÷ blocking-only round trip, same process | ≤ 1.0 under load | %s | %s%s |"):format(
    num(div(quiet.spin.roundtrip, quiet.block.roundtrip)), num(rt_load_block), met(rt_load_block, 1.0, true)),
  ("| round trip ÷ Python `ThreadPoolExecutor(2)` round trip (%s / %s µs) | ≤ 0.5 | %s |"):format(
    num(quiet.py), num(loaded.py), (both(rt_py_q, rt_py_l, 0.5, true):gsub(" / ", " | "))),
  ("| submit all, then get: under load ÷ quiet (%s / %s µs/task) | ≤ 2 | | %s%s |"):format(
    num(quiet.spin.submit_all), num(loaded.spin.submit_all), num(submit), met(submit, 2, true)),
  ("| queue, single push/pop, integers | ≥ 5 M items/s quiet | %s M/s%s | %s M/s |"):format(
    num(quiet.spin.queue), met(quiet.spin.queue, 5), num(loaded.spin.queue)),
  ("| queue, batch (push_all / pop_many of 1000), integers | ≥ 20 M items/s quiet | %s M/s%s | %s M/s |"):format(
    num(quiet.spin.queue_batch), met(quiet.spin.queue_batch, 20), num(loaded.spin.queue_batch)),
  ("| CPU-bound map ÷ two independent `lua5.4` processes (speed) | ≥ 0.98 | %s |"):format(
    (both(quiet.cpu, loaded.cpu, 0.98, false):gsub(" / ", " | "))),
}
local text = table.concat(md, "\n") .. "\n"
print("\n" .. text)
local out = io.open(TARGETS, "w")
if out then
  out:write(text)
  out:close()
  print("(written to " .. TARGETS .. ")")
end
