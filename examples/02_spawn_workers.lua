-- 02_spawn_workers.lua: starting workers by hand (multiprocessing.Process).
--
-- Five workers with their own durations are started with parallel.spawn, each on a
-- thread (and Lua state) of its own, then joined with future:get(). The tutorial's
-- durations (2, 1, 3, 1.5, 2.5 s) are scaled down ten times: they only simulate work.
--
--   lua5.4 examples/02_spawn_workers.lua
local parallel = require "parallel"

local SCALE = 0.1 -- the tutorial's durations times this

-- One line per write, flushed: lines printed by several threads never interleave.
local function say(fmt, ...)
  io.write(string.format(fmt, ...) .. "\n")
  io.stdout:flush()
end

-- The id of the calling OS thread (the tutorial prints os.getpid(); here every worker
-- is a thread of the same process, so its thread id is what tells them apart).
local function thread_id()
  local f = io.open("/proc/thread-self/stat", "r")
  if not f then return "?" end
  local id = f:read("n")
  f:close()
  return id or "?"
end

-- Worker function that simulates work.
local function worker(name, duration)
  local tid = thread_id()
  say("Process %s (TID: %s) is starting", name, tid)
  parallel.sleep(duration)
  say("Process %s (TID: %s) finished after %g seconds", name, tid, duration)
end

local durations = { 2, 1, 3, 1.5, 2.5 }
local processes = {}
local start = parallel.now()

-- Create and start the workers.
for i, duration in ipairs(durations) do
  processes[i] = parallel.spawn(worker, "P" .. i, duration * SCALE)
end

-- Wait for all of them to complete (Process.join).
for _, p in ipairs(processes) do p:get() end

say("All processes finished.")
say("Elapsed: %.2f seconds (the longest worker alone sleeps %.2f s)",
    parallel.now() - start, 3 * SCALE)
