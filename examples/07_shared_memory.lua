-- 07_shared_memory.lua: shared memory — a locked counter and an array processed in chunks.
--
-- multiprocessing.Value / Array / Lock become parallel.value / parallel.array /
-- parallel.lock. They travel to the workers by reference: every worker sees the same
-- memory, where a table would have been copied.
--
--   lua5.4 examples/07_shared_memory.lua
local parallel = require "parallel"

-- Increment a shared counter, holding the lock for the whole loop (as the tutorial's
-- `with lock:` does). The read-modify-write `counter:set(counter:get() + 1)` is not
-- atomic by itself: the lock is what makes the final count exact. (counter:add(1)
-- would be atomic without a lock.)
local function increment_counter(counter, lock, iterations)
  local _ <close> = lock:hold()
  for _ = 1, iterations do
    counter:set(counter:get() + 1)
  end
end

-- Multiply a portion [first, last] of a shared array by `value`.
local function process_array(shared_array, first, last, value)
  for i = first, last do
    shared_array[i] = shared_array[i] * value
  end
end

local function demonstrate_shared_memory()
  -- Shared counter with lock.
  local counter = parallel.value("int64", 0)
  local lock = parallel.lock()

  -- Shared array: 0, 1, ..., 999 as doubles.
  local array_size = 1000
  local init = {}
  for i = 1, array_size do init[i] = i - 1 end
  local shared_array = parallel.array("double", init)

  local processes = {}
  local iterations_per_process = 10000
  local num_processes = 4

  local start = parallel.now()

  for i = 1, num_processes do
    processes[i] = parallel.spawn(increment_counter, counter, lock, iterations_per_process)
  end
  for _, p in ipairs(processes) do p:get() end

  print(string.format("Final counter value: %d", counter:get()))
  print(string.format("Expected value: %d", iterations_per_process * num_processes))

  -- Process the array in 4 chunks, one worker each.
  local array_processes = {}
  local chunk_size = array_size // 4
  for i = 0, 3 do
    local first = i * chunk_size + 1
    local last = (i < 3) and (i + 1) * chunk_size or array_size
    array_processes[#array_processes + 1] =
      parallel.spawn(process_array, shared_array, first, last, 2)
  end
  for _, p in ipairs(array_processes) do p:get() end

  local elapsed = parallel.now() - start

  local first10 = {}
  for i = 1, 10 do first10[i] = string.format("%.1f", shared_array[i]) end
  print(string.format("First 10 elements of processed array: [%s]", table.concat(first10, ", ")))

  local ok = true
  for i = 1, array_size do ok = ok and shared_array[i] == 2 * (i - 1) end
  print(string.format("Whole array doubled: %s", ok))
  print(string.format("Total execution time: %.4f seconds", elapsed))
end

demonstrate_shared_memory()
