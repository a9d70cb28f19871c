-- The speedup chart of make bench: the tutorial's cpu_intensive_task over
-- 40 items with 1 .. 2 x cpu_count workers, measured speedup against
-- Amdahl's prediction for the serial fraction fitted from the 1-worker run
-- (the part of the wall time that is not the workers' busy time).
-- Writes bench/speedup.dat and, when gnuplot is installed, bench/speedup.png.
local parallel = require "parallel"

local function cpu_intensive_task(n)
  local result = 0
  for i = 0, n - 1 do result = result + i * i end
  return result
end

local items = {}
for i = 1, 40 do items[i] = math.floor(1e6 + (i - 1) * 4e6 / 39 + 0.5) end

local t0 = parallel.now()
for i = 1, #items do cpu_intensive_task(items[i]) end
local tseq = parallel.now() - t0

local cores = parallel.cpu_count()
local rows = {}
local serial
for n = 1, 2 * cores do
  local pool = parallel.pool(n)
  pool:map(cpu_intensive_task, { 1 })        -- warm the workers up
  t0 = parallel.now()
  pool:map(cpu_intensive_task, items, { chunksize = 1 })
  local t = parallel.now() - t0
  if n == 1 then
    -- Amdahl's S from the 1-worker run: overhead outside the task itself.
    serial = math.max(0, math.min(1, (t - tseq) / t))
  end
  pool:shutdown()
  local predicted = parallel.amdahl(serial, math.min(n, cores))
  rows[#rows + 1] = { n = n, speedup = tseq / t, amdahl = predicted, ideal = math.min(n, cores) }
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
set terminal png size 720,440
set output 'bench/speedup.png'
set title "parallel: cpu_intensive_task x40 on %d cores (Lua 5.4)"
set xlabel "workers"
set ylabel "speedup over sequential Lua"
set key left top
set grid
set xtics 1
set yrange [0:%d]
plot 'bench/speedup.dat' using 1:2 with linespoints lw 2 title "measured", \
     'bench/speedup.dat' using 1:3 with lines dt 2 lw 2 title "Amdahl (S fitted from 1 worker, N = min(workers, cores))", \
     'bench/speedup.dat' using 1:4 with lines dt 3 title "ideal"
]], cores, cores + 1))
  gp:close()
  print("wrote bench/speedup.png")
else
  print("gnuplot not installed: wrote bench/speedup.dat only")
end
