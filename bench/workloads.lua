-- The tutorial's workloads, shared by bench/run.lua and bench/chart.lua
-- (the Python counterparts in bench/python/ run the same items).
local M = {}

-- The tutorial's cpu_intensive_task.
function M.cpu_intensive_task(n)
  local result = 0
  for i = 0, n - 1 do result = result + i * i end
  return result
end

-- Its 40 items: n from 1e6 to 5e6, evenly spaced, rounded half up.
M.items = {}
for i = 1, 40 do M.items[i] = math.floor(1e6 + (i - 1) * 4e6 / 39 + 0.5) end

-- The tutorial's is_prime.
function M.is_prime(n)
  if n <= 1 then return false end
  if n == 2 then return true end
  if n % 2 == 0 then return false end
  for i = 3, math.floor(math.sqrt(n)), 2 do
    if n % i == 0 then return false end
  end
  return true
end

return M
