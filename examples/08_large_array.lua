-- 08_large_array.lua: large array computation (the tutorial's Dask example).
--
-- The mean of each row of a large random matrix. Dask splits a 10000 x 10000 array in
-- 1000 x 1000 chunks and computes them on a pool; here the matrix lives in one shared
-- parallel.array (row-major doubles, the same memory in every worker), a pool fills it
-- with random numbers in row blocks, and the row means are computed block by block by
-- the pool (each task gets `m:view(i, j)`, its rows of the matrix) and written into a
-- shared result array. The sequential computation runs the same code over the whole
-- matrix in the main thread.
--
--   lua5.4 examples/08_large_array.lua [rows [cols [rows_per_chunk]]]
--   default 2000 x 2000 (32 MB), chunks of rows/10 rows; the tutorial's size is
--   `10000 10000 1000` (800 MB of doubles).
local parallel = require "parallel"

local ROWS = math.tointeger(tonumber(arg and arg[1]) or 2000)
local COLS = math.tointeger(tonumber(arg and arg[2]) or ROWS)
local CHUNK = math.tointeger(tonumber(arg and arg[3]) or math.max(1, ROWS // 10))
assert(ROWS and COLS and CHUNK and ROWS > 0 and COLS > 0 and CHUNK > 0,
       "usage: 08_large_array.lua [rows [cols [rows_per_chunk]]]")

-- Fill a block of the matrix with uniform random numbers in [0, 1).
local function fill_random(block)
  for i = 1, #block do block[i] = math.random() end
  return #block
end

-- Mean of each row of `block` (nrows x cols, row-major), stored in means[first_row ...].
local function row_means(block, cols, means, first_row)
  local nrows = #block // cols
  for r = 0, nrows - 1 do
    local base, s = r * cols, 0.0
    for j = 1, cols do s = s + block[base + j] end
    means[first_row + r] = s / cols
  end
  return nrows
end

-- The row blocks: { first_row, last_row }.
local blocks = {}
for first = 1, ROWS, CHUNK do blocks[#blocks + 1] = { first, math.min(first + CHUNK - 1, ROWS) } end

local function block_view(m, b) return m:view((b[1] - 1) * COLS + 1, b[2] * COLS) end

local workers = parallel.cpu_count()
local pool <close> = parallel.pool(workers)

print(string.format("Creating large array (%d x %d doubles, %.0f MB, %d blocks of %d rows)...",
                    ROWS, COLS, ROWS * COLS * 8 / 2^20, #blocks, CHUNK))
local t0 = parallel.now()
local m = parallel.array("double", ROWS * COLS)
local fills = {}
for i, b in ipairs(blocks) do fills[i] = pool:submit(fill_random, block_view(m, b)) end
for _, f in ipairs(fills) do f:get() end
print(string.format("Created in %.2f seconds", parallel.now() - t0))

print("Performing computation...")

-- Sequential: the whole matrix in the main thread.
local means_seq = parallel.array("double", ROWS)
t0 = parallel.now()
row_means(m, COLS, means_seq, 1)
local t_seq = parallel.now() - t0
print(string.format("Sequential computation completed in %.2f seconds", t_seq))

-- Parallel: one task per row block.
local means_par = parallel.array("double", ROWS)
t0 = parallel.now()
local futures = {}
for i, b in ipairs(blocks) do
  futures[i] = pool:submit(row_means, block_view(m, b), COLS, means_par, b[1])
end
for _, f in ipairs(futures) do f:get() end
local t_par = parallel.now() - t0
print(string.format("Parallel computation completed in %.2f seconds (%d workers)", t_par, workers))

local speedup, efficiency = parallel.speedup(t_seq, t_par, workers)
print(string.format("Speedup: %.2fx, efficiency: %.1f%%", speedup, efficiency * 100))

print(string.format("Result shape: (%d,)", #means_par))
local first5 = {}
for i = 1, math.min(5, ROWS) do first5[i] = string.format("%.8f", means_par[i]) end
print(string.format("First 5 results: [%s]", table.concat(first5, " ")))

local ok, maxdiff = true, 0.0
for i = 1, ROWS do
  local d = math.abs(means_seq[i] - means_par[i])
  if d > maxdiff then maxdiff = d end
  if not (d <= 1e-12) then ok = false end
end
-- The mean of uniform [0, 1) numbers is about 0.5: a sanity check of the data.
local overall = m:sum() / (ROWS * COLS)
print(string.format("Overall mean: %.4f (expected about 0.5)", overall))
print(string.format("Results match: %s", ok))
