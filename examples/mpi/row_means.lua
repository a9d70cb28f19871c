-- The tutorial's Dask example across MPI ranks: the mean of each row of a
-- 10,000 x 10,000 array of random numbers, computed in chunks of rows.
-- As with dask.array, no rank ever holds the whole array: each task makes
-- its block of rows (seeded by the block's index, so the result does not
-- depend on where the block runs) and returns only the block's means.
--
--   mpirun -n 3 lua5.4 -l parallel.mpi examples/mpi/row_means.lua [rows [cols [rows_per_chunk]]]
--
-- (Open MPI as root: add --allow-run-as-root; more ranks than cores:
-- --oversubscribe. make test-mpi runs it small.)
local parallel = require "parallel"
local mpi = require "parallel.mpi"

local rows = tonumber(arg[1]) or 10000
local cols = tonumber(arg[2]) or 10000
local per_chunk = tonumber(arg[3]) or 500

-- One chunk: rows first .. last, each row's mean.
local function block_means(block)
  local first, last, ncols = block[1], block[2], block[3]
  math.randomseed(first)
  local random = math.random
  local means = {}
  for r = first, last do
    local sum = 0.0
    for _ = 1, ncols do sum = sum + random() end
    means[#means + 1] = sum / ncols
  end
  return means
end

local blocks = {}
for first = 1, rows, per_chunk do
  blocks[#blocks + 1] = { first, math.min(first + per_chunk - 1, rows), cols }
end

local pool = parallel.pool { backend = "mpi" }
local stats = pool:stats()
print(string.format("%d x %d array, %d chunks of %d rows, on %d ranks (%s), %d workers",
  rows, cols, #blocks, per_chunk, stats.ranks, table.concat(mpi.hosts(), " "), stats.workers))

local t, results = parallel.timeit(pool.map, pool, block_means, blocks, { chunksize = 1 })
local means, overall = {}, 0.0
for i = 1, #results do
  for _, m in ipairs(results[i]) do
    means[#means + 1] = m
    overall = overall + m
  end
end
overall = overall / #means
print(string.format("%d row means in %.2f s; first %.4f, last %.4f, their mean %.4f (0.5 expected)",
  #means, t, means[1], means[#means], overall))
assert(#means == rows and math.abs(overall - 0.5) < 0.01)
pool:shutdown()
