-- 12_amdahl_gustafson.lua: Amdahl's and Gustafson's laws, predicted vs measured.
--
-- A synthetic workload of WORK loop iterations, a fraction S of which must run serially
-- (in the main thread) while the rest is split evenly over N pool workers.
--
-- Amdahl (fixed problem size): speedup = T(1) / T(N), predicted 1 / (S + (1 - S) / N).
-- Gustafson (problem grows with N): the parallel part is N times larger on N workers;
--   the scaled speedup is the time one core would need for that larger problem
--   (serial part + N x the parallel part, both measured on one core) divided by the
--   measured time; predicted N - S (N - 1).
-- N goes up to 2 x cpu_count(): past the number of cores the laws, which assume N
-- processors, keep rising while the measurement cannot.
-- Pools are created (and warmed up) before the clock starts: the laws do not model
-- start-up costs.
--
--   lua5.4 examples/12_amdahl_gustafson.lua [serial_fraction [work]]
--   default serial_fraction 0.1, work 16000000 iterations (about 0.25 s on one core)
local parallel = require "parallel"

local S = tonumber(arg and arg[1]) or 0.1
local WORK = math.tointeger(tonumber(arg and arg[2]) or 16000000)
assert(S and S >= 0 and S <= 1 and WORK and WORK > 0,
       "usage: 12_amdahl_gustafson.lua [serial_fraction (0..1) [work]]")

-- The unit of work: n iterations of a CPU-bound loop.
local function spin(n)
  local r = 0
  for i = 1, n do r = r + i * i % 7 end
  return r
end

local serial_iters = math.floor(S * WORK + 0.5)
local parallel_iters = WORK - serial_iters

-- Split `total` iterations in n near-equal parts.
local function split(total, n)
  local parts = {}
  for i = 1, n do parts[i] = (total * i) // n - (total * (i - 1)) // n end
  return parts
end

-- One run: the serial part in this thread, then the parallel part on the pool.
local function run(pool, n, par_total)
  local t0 = parallel.now()
  spin(serial_iters)
  pool:map(spin, split(par_total, n), { chunksize = 1 })
  return parallel.now() - t0
end

local cores = parallel.cpu_count()
local counts, seen = {}, {}
for _, n in ipairs({ 1, 2, 3, 4, 6, 8, cores, 2 * cores }) do
  if n <= 2 * cores and not seen[n] then seen[n] = true; counts[#counts + 1] = n end
end
table.sort(counts)

-- One core, no pool: the serial part and the parallel part, timed separately.
local t0 = parallel.now()
spin(serial_iters)
local t_serial = parallel.now() - t0
t0 = parallel.now()
spin(parallel_iters)
local t_parallel = parallel.now() - t0
local t1 = t_serial + t_parallel

print(string.format("Serial fraction S = %.3f, %d iterations, %d cores", S, WORK, cores))
print(string.format("One core: %.4f s (serial part %.4f s, parallel part %.4f s)",
                    t1, t_serial, t_parallel))

print("\nAmdahl's law (fixed problem size)")
print(string.format("%-8s %10s %10s %10s %11s", "workers", "time (s)", "predicted", "measured", "efficiency"))
local amdahl_rows = {}
for _, n in ipairs(counts) do
  local pool <close> = parallel.pool(n)
  pool:map(spin, split(n, n)) -- warm up
  local t = run(pool, n, parallel_iters)
  local measured, efficiency = parallel.speedup(t1, t, n)
  local predicted = parallel.amdahl(S, n)
  amdahl_rows[#amdahl_rows + 1] = { n = n, predicted = predicted, measured = measured }
  print(string.format("%-8d %10.4f %9.2fx %9.2fx %10.1f%%", n, t, predicted, measured, efficiency * 100))
end
print(string.format("Amdahl's limit for S = %.3f (infinitely many processors): %s",
                    S, S > 0 and string.format("%.2fx", 1 / S) or "unbounded"))

print("\nGustafson's law (problem grows with the workers)")
print(string.format("%-8s %10s %10s %10s %11s", "workers", "time (s)", "predicted", "measured", "efficiency"))
for _, n in ipairs(counts) do
  local pool <close> = parallel.pool(n)
  pool:map(spin, split(n, n)) -- warm up
  local t = run(pool, n, n * parallel_iters)
  local one_core = t_serial + n * t_parallel
  local measured = one_core / t
  local predicted = parallel.gustafson(S, n)
  print(string.format("%-8d %10.4f %9.2fx %9.2fx %10.1f%%", n, t, predicted, measured, 100 * measured / n))
end

-- Within the cores, the measured speedup should follow Amdahl's prediction.
local within = {}
for _, r in ipairs(amdahl_rows) do
  if r.n <= cores then within[#within + 1] = string.format("%d: %.0f%%", r.n, 100 * r.measured / r.predicted) end
end
print(string.format("\nMeasured / predicted (Amdahl) up to %d workers: %s", cores, table.concat(within, ", ")))
