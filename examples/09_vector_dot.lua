-- 09_vector_dot.lua: the tutorial's GPU example, on CPU cores.
--
-- There is no GPU here (and no CuPy). What the example computes — the dot product of two
-- large random vectors — is ported as chunked parallel work: both vectors live in shared
-- parallel.arrays, each pool task computes the partial dot product of one chunk
-- (`a:view(i, j)` and `b:view(i, j)`, the same memory, no copy), and the main thread adds
-- the partial sums. The sequential version runs the same loop over the whole vectors.
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

print(string.format("Sequential time: %.4f seconds", seq_time))
print(string.format("Parallel time: %.4f seconds", par_time))
print(string.format("Speedup: %.2fx", seq_time / par_time))
print(string.format("Dot product: %.6f (sequential) %.6f (parallel)", seq_result, par_result))
print(string.format("Results match: %s",
                    math.abs(seq_result - par_result) <= 1e-9 * math.abs(seq_result)))
