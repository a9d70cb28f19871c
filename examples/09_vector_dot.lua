-- 09_vector_dot.lua: the tutorial's GPU example, on CPU cores.
--
-- There is no GPU here (and no CuPy). What the example computes — the dot product of two
-- large random vectors — is ported as chunked parallel work: both vectors live in shared
-- parallel.arrays, each pool task computes the partial dot product of one chunk
-- (`a:view(i, j)` and `b:view(i, j)`, the same memory, no copy), and the main thread adds
-- the partial sums. The sequential version runs the same loop over the whole vectors.
-- Then the same with the arrays' C-speed vector operations: `a:dot(b)` on one thread, and
-- `a:view(i, j):dot(b:view(i, j))` split over the pool, against the plain Lua loop.
-- The partial sums are added in a different order than the sequential loop adds the
-- products, so the results are compared with a relative tolerance, as the tutorial
-- compares CPU and GPU results with `abs(cpu - gpu) < 1e-6`.
--
--   lua5.4 examples/09_vector_dot.lua [size [chunks]]
--   default size 2,000,000 (the tutorial's is 10,000,000), chunks = 4 per core.
local parallel = require "parallel"

local SIZE = math.tointeger(tonumber(arg and arg[1]) or 2000000)
local workers = parallel.cpu_count()
local NCHUNKS = math.tointeger(tonumber(arg and arg[2]) or 4 * workers)
assert(SIZE and NCHUNKS and SIZE > 0 and NCHUNKS > 0, "usage: 09_vector_dot.lua [size [chunks]]")

local function fill_random(v)
  for i = 1, #v do v[i] = math.random() end
end

-- Dot product of two equally long arrays (or views).
local function dot(a, b)
  local s = 0.0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

local pool <close> = parallel.pool(workers)

-- Chunk bounds: NCHUNKS ranges [first, last] covering 1..SIZE.
local chunks = {}
for c = 0, NCHUNKS - 1 do
  local first = c * SIZE // NCHUNKS + 1
  local last = (c + 1) * SIZE // NCHUNKS
  if last >= first then chunks[#chunks + 1] = { first, last } end
end

print(string.format("Creating two random vectors of %d doubles...", SIZE))
local a = parallel.array("double", SIZE)
local b = parallel.array("double", SIZE)
local fills = {}
for _, c in ipairs(chunks) do
  fills[#fills + 1] = pool:submit(fill_random, a:view(c[1], c[2]))
  fills[#fills + 1] = pool:submit(fill_random, b:view(c[1], c[2]))
end
for _, f in ipairs(fills) do f:get() end

print("Sequential computation...")
local t0 = parallel.now()
local seq_result = dot(a, b)
local seq_time = parallel.now() - t0

print(string.format("Parallel computation (%d workers, %d chunks)...", workers, #chunks))
t0 = parallel.now()
local futures = {}
for i, c in ipairs(chunks) do
  futures[i] = pool:submit(dot, a:view(c[1], c[2]), b:view(c[1], c[2]))
end
local par_result = 0.0
for _, f in ipairs(futures) do par_result = par_result + f:get() end
local par_time = parallel.now() - t0

print("Vector operation a:dot(b), one thread...")
t0 = parallel.now()
local vec_result = a:dot(b)
local vec_time = parallel.now() - t0

print(string.format("Vector operation over views (%d workers, %d chunks)...", workers, #chunks))
t0 = parallel.now()
local partial = pool:map(function(c) return a:view(c[1], c[2]):dot(b:view(c[1], c[2])) end, chunks)
local pvec_result = 0.0
for i = 1, partial.n do pvec_result = pvec_result + partial[i] end
local pvec_time = parallel.now() - t0

local function close(x) return math.abs(seq_result - x) <= 1e-9 * math.abs(seq_result) end
print(string.format("Sequential time: %.4f seconds", seq_time))
print(string.format("Parallel time: %.4f seconds", par_time))
print(string.format("Speedup: %.2fx", seq_time / par_time))
print(string.format("a:dot(b) time: %.4f seconds (%.1fx the Lua loop)", vec_time, seq_time / vec_time))
print(string.format("a:dot over views on the pool: %.4f seconds (%.1fx the Lua loop, %.1fx the parallel Lua loops)",
                    pvec_time, seq_time / pvec_time, par_time / pvec_time))
print(string.format("Dot product: %.6f (sequential) %.6f (parallel) %.6f (a:dot) %.6f (views)",
                    seq_result, par_result, vec_result, pvec_result))
print(string.format("Results match: %s",
                    close(par_result) and close(vec_result) and close(pvec_result)))
