-- A process pool gives back what it took: after its shutdown (plain,
-- terminate, or collected) this process has the descriptors, threads and
-- child processes it had before, however its workers ended (killed
-- mid-task, exited, replaced by a spare). Run in a child: it counts its
-- own descriptors and children.
local support = require "spec.support"

local FDPOLL = os.getenv("PARALLEL_FDPOLL") or "./build/test/fdpoll.so"

local CODE = [[
local parallel = require "parallel"
-- readdir and readlink (no io.popen: its own pipe ends would be listed)
local sys = assert(package.loadlib(FDPOLL, "luaopen_fdpoll"))()
-- "n target" for each open descriptor (pipe and socket numbers left out)
local function fds()
  local t = {}
  for _, n in ipairs(sys.list("/proc/self/fd")) do
    local target = sys.readlink("/proc/self/fd/" .. n)
    -- the listing's own descriptor is gone by now (nil) or the directory
    if target and not target:match("^/proc/%d+/fd$") then
      t[#t + 1] = n .. " " .. target:gsub("%[%d+%]", "")
    end
  end
  table.sort(t)
  return table.concat(t, ", ")
end
-- the child processes of every thread of this process, and how many threads
local function children()
  local t, tids = {}, sys.list("/proc/self/task")
  for _, tid in ipairs(tids) do
    local f = io.open("/proc/self/task/" .. tid .. "/children")
    if f then for c in f:read("a"):gmatch("%d+") do t[#t + 1] = c end f:close() end
  end
  table.sort(t)
  return table.concat(t, " "), #tids
end
local function round(n)
  local p = parallel.pool{backend = "process", workers = 2}
  local a = parallel.array("double", 100, 0)
  -- a round trip: a shared array the workers write, queues their tasks make at the parent
  local r = p:starmap(function(i, a)
    a[i] = i
    local q = parallel.queue(4, {owner = "parent"})
    q:push(i * 2)
    return q
  end, {{1, a}, {2, a}, {3, a}, {4, a}})
  for i = 1, 4 do assert(r[i]:pop() == i * 2) assert(a[i] == i) end
  -- a worker killed mid-task, one that exits: both replaced
  local started = parallel.event()
  local f = p:submit(function(ev) ev:set() while true do end end, started)
  assert(started:wait(10), "the task did not start")
  assert(f:kill())
  assert(f:wait(10) and f:state() == "failed", f:state())
  f = p:submit(function() os.exit(3) end)
  assert(f:wait(10) and f:state() == "failed", f:state())
  assert(p:submit(function() return 7 end):get() == 7)
  -- the measure sees the workers (else the comparison proves nothing)
  assert(children() ~= "", "no worker process seen")
  if n % 3 == 1 then p:shutdown() elseif n % 3 == 2 then p:terminate() end
  p, r, a, f = nil, nil, nil, nil
  collectgarbage() collectgarbage()
end
local function snapshot()
  local c, t = children()
  return fds(), c, t
end
local function compare(when, fd0, c0, t0, fd1, c1, t1)
  if fd0 ~= fd1 then print(when .. ": fds before: " .. fd0 .. "\nfds after: " .. fd1) end
  if c0 ~= c1 then print(when .. ": children before: " .. c0 .. "; after: " .. c1) end
  if t0 ~= t1 then print(when .. ": threads before: " .. t0 .. "; after: " .. t1) end
  return fd0 == fd1 and c0 == c1 and t0 == t1
end
-- What the process makes once and keeps (the shared-memory arena's first
-- chunk, /proc/loadavg open for the waiting policy) is not a pool's.
round(1)
local fd0, c0, t0 = snapshot()
-- shutdown and terminate join the pool's threads and reap its processes
round(1)
local ok = compare("shutdown", fd0, c0, t0, snapshot())
round(2)
ok = compare("terminate", fd0, c0, t0, snapshot()) and ok
-- a collected pool's threads end on their own, soon after
round(3)
local deadline = parallel.now() + 10
local fd1, c1, t1 = snapshot()
while not (fd1 == fd0 and c1 == c0 and t1 == t0) and parallel.now() < deadline do
  parallel.sleep(0.01)
  fd1, c1, t1 = snapshot()
end
ok = compare("collected", fd0, c0, t0, fd1, c1, t1) and ok
print(ok and "all back" or "not back")
]]

describe("process pool shutdown", function()
  it("leaves no descriptor, thread or child process behind #child", function()
    local out, err, status = support.run_child{code = ("local FDPOLL = %q\n"):format(FDPOLL) .. CODE, timeout = 120}
    assert.equal(0, status, err)
    assert.equal("all back\n", out)
  end)
end)
