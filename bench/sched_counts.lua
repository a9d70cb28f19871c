-- What a round trip, a submit-all-then-get and a locked get/set of a
-- counter two pool workers share cost the scheduler, per operation: context switches (voluntary: the thread slept; involuntary:
-- it was preempted), migrations and CPU time, for the submitting thread
-- and for the workers, read from /proc/<pid>/task/<tid>/sched before and
-- after (Linux with schedstats; the fields are missing elsewhere and the
-- script says so). Counts depend far less on the machine's load than
-- times do: on a shared machine they are what an A/B compares (issue 12).
-- Quiet, then with one busy loop per CPU beside it (bench.start_load),
-- each with the waiting policy as built and with spinning off.
-- Standalone: lua5.4 bench/sched_counts.lua [rounds]
local bench = dofile("bench/common.lua")
local parallel, now, median = bench.parallel, bench.now, bench.median

local ROUNDS = tonumber(arg and arg[1]) or 3
local RT, SA, LK = 3000, 20000, 50000

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local pid = read("/proc/self/stat"):match("^(%d+)")

-- tid -> { vol, inv, mig, cpu (us) } for every thread of this process.
local function sample()
  local out = {}
  local ls = io.popen("ls /proc/" .. pid .. "/task")
  for tid in ls:lines() do
    local s = read(("/proc/%s/task/%s/sched"):format(pid, tid))
    if s then
      out[tid] = {
        vol = tonumber(s:match("nr_voluntary_switches%s*:%s*(%d+)")) or 0,
        inv = tonumber(s:match("nr_involuntary_switches%s*:%s*(%d+)")) or 0,
        mig = tonumber(s:match("se%.nr_migrations%s*:%s*(%d+)")) or 0,
        cpu = (tonumber(s:match("se%.sum_exec_runtime%s*:%s*([%d.]+)")) or 0) * 1000,
      }
    end
  end
  ls:close()
  return out
end

if not (read(("/proc/%s/task/%s/sched"):format(pid, pid)) or ""):match("nr_voluntary_switches") then
  print("sched_counts: no /proc/<pid>/task/<tid>/sched with switch counts here")
  return
end

local KEYS = { "vol", "inv", "mig", "cpu" }

-- Per-operation differences: the submitting thread apart, workers summed.
local function per_op(a, b, n)
  local main, workers = {}, {}
  for _, k in ipairs(KEYS) do main[k], workers[k] = 0, 0 end
  for tid, x in pairs(b) do
    local y = a[tid] or { vol = 0, inv = 0, mig = 0, cpu = 0 }
    local t = tid == pid and main or workers
    for _, k in ipairs(KEYS) do t[k] = t[k] + (x[k] - y[k]) / n end
  end
  return main, workers
end

local pool = parallel.pool(2)
local function inc(x) return x + 1 end
pool:map(inc, { 1, 2, 3, 4 })

local function roundtrip()
  local samples = {}
  local a = sample()
  for i = 1, RT do
    local t0 = now()
    pool:submit(inc, i):get()
    samples[i] = now() - t0
  end
  local m, w = per_op(a, sample(), RT)
  return median(samples) * 1e6, m, w
end

local function submit_all()
  local fs = {}
  local a = sample()
  local t0 = now()
  for i = 1, SA do fs[i] = pool:submit(inc, i) end
  for i = 1, SA do fs[i]:get() end
  local t = (now() - t0) / SA * 1e6
  local m, w = per_op(a, sample(), SA)
  return t, m, w
end

-- Two pool workers x LK locked get/set of one counter (bench.counter_time);
-- their switches per operation say how often the lock put one to sleep.
local function lock_counter()
  local a = sample()
  local t = bench.counter_time(function(fn, ...) return pool:submit(fn, ...) end, LK, function(v, l, n)
    for _ = 1, n do l:acquire(); v:set(v:get() + 1); l:release() end
  end)
  local m, w = per_op(a, sample(), 2 * LK)
  return t / (2 * LK) * 1e6, m, w
end

local function run(label)
  for _, mode in ipairs({ "spin", "block" }) do
    parallel.waiting({ spin = mode == "spin" })
    local got = { rt = {}, sa = {}, lk = {} }
    for _ = 1, ROUNDS do
      for name, fn in pairs({ rt = roundtrip, sa = submit_all, lk = lock_counter }) do
        local t, m, w = fn()
        local r = got[name]
        r.t = r.t or {}
        r.t[#r.t + 1] = t
        for _, k in ipairs(KEYS) do
          r["m" .. k] = r["m" .. k] or {}
          r["w" .. k] = r["w" .. k] or {}
          table.insert(r["m" .. k], m[k])
          table.insert(r["w" .. k], w[k])
        end
      end
    end
    for _, name in ipairs({ "rt", "sa", "lk" }) do
      local r = got[name]
      local function md(k) return median(r[k]) end
      print(("%-10s %-5s %-3s %7.3f us | submitter: vol %.3f inv %.3f mig %.3f cpu %.2f us"
        .. " | workers: vol %.3f inv %.3f mig %.3f cpu %.2f us"):format(label, mode, name, md("t"),
        md("mvol"), md("minv"), md("mmig"), md("mcpu"), md("wvol"), md("winv"), md("wmig"), md("wcpu")))
    end
  end
  parallel.waiting({ spin = true })
end

print(("per operation, medians of %d rounds (rt: round trip, median call; sa: submit %d then get,"
  .. " per task; lk: 2 workers x %d locked get/set, per operation); load %s"):format(ROUNDS, SA, LK,
  bench.loadavg_text()))
run("quiet")
local stop = bench.start_load(parallel.cpu_count())
local ok, err = pcall(run, "under load")
stop()
pool:shutdown()
if not ok then error(err, 0) end
