-- Run by examples/embed/host.c (make embed): waits for tasks that call the
-- host's C function hostlib.checksum with an event loop built on pool:fd()
-- and the host's poll(2), then maps hostlib.checksum itself over the data.
local parallel = require "parallel"
assert(package.cpath == "", "the host empties package.cpath: the core is linked in")

local ROUNDS = 20000

-- The same FNV-1a in Lua, to check the workers' results.
local function fnv1a(s, rounds)
  local h = 2166136261
  for _ = 1, rounds do
    for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  end
  return h
end

local data = {}
for i = 1, 32 do data[i] = ("record %03d of the host"):format(i) end

local pool <close> = parallel.pool(4)

-- 1. An event loop. Ask for the descriptor before submitting anything:
-- futures that finish earlier are not reported by pool:completed().
-- pool:completed() hands back new handles on the finished futures (not the
-- objects submit returned), so each task returns its own index too.
local fd = pool:fd()
for i, s in ipairs(data) do
  pool:submit(function(k, x, r) return k, hostlib.checksum(x, r) end, i, s, ROUNDS)
end
local results, pending, wakeups = {}, #data, 0
while pending > 0 do
  if not hostlib.poll(fd, 5000) then error("no future finished within 5 s") end
  wakeups = wakeups + 1
  for _, f in ipairs(pool:completed()) do
    local i, sum = f:get()
    results[i] = sum
    pending = pending - 1
  end
end
print(("loop: %d results after %d poll() wake-ups"):format(#results, wakeups))

-- 2. map: the C function itself travels to the workers, by module name.
local sums = pool:map(hostlib.checksum, data)
print(("map:  %d checksums, first %08x, last %08x"):format(sums.n, sums[1], sums[#data]))

local bad = 0
for i, s in ipairs(data) do
  if sums[i] ~= fnv1a(s, 1) or results[i] ~= fnv1a(s, ROUNDS) then bad = bad + 1 end
end
print(("check: %d/%d checksums match the Lua reference %s"):format(#data - bad, #data,
  bad == 0 and "OK" or "FAILED"))
if bad > 0 then error("checksum mismatch") end

-- 3. A process pool: this host is its own worker executable (its main calls
-- parallel_worker_main after setting the state hook), so the worker
-- processes have hostlib too.
local procs <close> = parallel.pool{ backend = "process", workers = 2 }
local psums = procs:map(hostlib.checksum, data)
local pids = procs:map(function() return io.open("/proc/self/stat"):read("n") end, { 1, 2, 3, 4 })
for i, s in ipairs(data) do
  if psums[i] ~= fnv1a(s, 1) then error("process pool: checksum mismatch at " .. i) end
end
print(("processes: %d checksums match, computed outside this process (pid %d, e.g. %d)"):format(
  psums.n, io.open("/proc/self/stat"):read("n"), pids[1]))
