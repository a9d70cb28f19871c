-- The speedup chart of make bench: the tutorial's cpu_intensive_task over
-- 40 items with 1 .. 2 x cpu_count workers, measured speedup against
-- Amdahl's prediction for the serial fraction fitted to those points.
-- Writes bench/speedup.dat and, when gnuplot is installed, bench/speedup.png.
local parallel = require "parallel"

local workloads = dofile("bench/workloads.lua")
local cpu_intensive_task, items = workloads.cpu_intensive_task, workloads.items

-- This machine's speed drifts by tens of percent within seconds: each
-- round measures the sequential time and every pool size back to back, and
-- a speedup is the median over the rounds of its round's ratio.
local ROUNDS = 3
local cores = parallel.cpu_count()
local pools = {}
for n = 1, 2 * cores do
  pools[n] = parallel.pool(n)
  pools[n]:map(cpu_intensive_task, { 1 })        -- warm the workers up
end
local function timed(fn)
  local t0 = parallel.now()
  fn()
  return parallel.now() - t0
end
local ratios, seqs = {}, {}
for r = 1, ROUNDS do
  local tseq_r = timed(function() for i = 1, #items do cpu_intensive_task(items[i]) end end)
  seqs[r] = tseq_r
  for n = 1, 2 * cores do
    local t = timed(function() pools[n]:map(cpu_intensive_task, items, { chunksize = 1 }) end)
    ratios[n] = ratios[n] or {}
    ratios[n][r] = tseq_r / t
  end
end
for n = 1, 2 * cores do pools[n]:shutdown() end
local function median(t)
  local c = { table.unpack(t) }
  table.sort(c)
  return c[(#c + 1) // 2]
end
local tseq = median(seqs)
-- Amdahl's S: the serial fraction that best fits all the measured points
-- (least squares over a grid; a single point is too noisy here).
local serial, best_err = 0, math.huge
for k = 0, 500 do
  local S, err = k / 1000, 0
  for n = 1, 2 * cores do
    local d = median(ratios[n]) - parallel.amdahl(S, math.min(n, cores))
    err = err + d * d
  end
  if err < best_err then serial, best_err = S, err end
end
local rows = {}
for n = 1, 2 * cores do
  rows[n] = { n = n, speedup = median(ratios[n]), amdahl = parallel.amdahl(serial, math.min(n, cores)),
              ideal = math.min(n, cores) }
end

local dat = assert(io.open("bench/speedup.dat", "w"))
dat:write("# workers measured_speedup amdahl_prediction ideal\n")
print(string.format("\nspeedup chart: cpu_intensive_task x40, sequential %.2f s, %d cores, fitted serial fraction %.3f",
  tseq, cores, serial))
print(string.format("%8s %10s %10s", "workers", "measured", "Amdahl"))
for _, r in ipairs(rows) do
  dat:write(string.format("%d %.4f %.4f %d\n", r.n, r.speedup, r.amdahl, r.ideal))
  print(string.format("%8d %10.2f %10.2f", r.n, r.speedup, r.amdahl))
end
dat:close()

if os.execute("command -v gnuplot >/dev/null 2>&1") then
  local gp = assert(io.popen("gnuplot", "w"))
  gp:write(string.format([[
set terminal png size 720,440 noenhanced
set output 'bench/speedup.png'
set title "parallel: cpu_intensive_task x40 on %d cores (Lua 5.4)"
set xlabel "workers"
set ylabel "speedup over sequential Lua"
set key right bottom
set grid
set xtics 1
set yrange [0:%d]
plot 'bench/speedup.dat' using 1:2 with linespoints lw 2 title "measured", \
     'bench/speedup.dat' using 1:3 with lines dt 2 lw 2 title "Amdahl (S fitted, N = min(workers, cores))", \
     'bench/speedup.dat' using 1:4 with lines dt 3 title "ideal"
]], cores, cores + 1))
  gp:close()
  print("wrote bench/speedup.png")
else
  print("gnuplot not installed: wrote bench/speedup.dat only")
end
