-- 03_producer_consumer.lua: interprocess communication with a queue.
--
-- One producer puts 10 items in a parallel.queue, two consumers take them out. Where the
-- tutorial puts a `None` sentinel in the queue, the producer closes the queue: consumers
-- then drain what is left and see nil, "closed" (or the end of `q:items()`) — a single
-- close stops any number of consumers.
-- The random sleeps (0.1–0.5 s producing, 0.2–0.8 s consuming) are scaled down ten
-- times: they only simulate work.
--
--   lua5.4 examples/03_producer_consumer.lua
local parallel = require "parallel"

local SCALE = 0.1

local function say(fmt, ...)
  io.write(string.format(fmt, ...) .. "\n")
  io.stdout:flush()
end

local function uniform(a, b) return a + (b - a) * math.random() end

-- Producer: puts items in the queue, then closes it (signals the end of production).
local function producer(queue, n_items)
  for i = 0, n_items - 1 do
    local item = "Item " .. i
    queue:push(item)
    say("Produced: %s", item)
    parallel.sleep(uniform(0.1, 0.5) * SCALE)
  end
  queue:close()
end

-- Consumer: gets items from the queue until it is closed and drained.
-- Returns how many items it processed.
local function consumer(queue, consumer_id)
  local processed = 0
  while true do
    local item, err = queue:pop()
    if item == nil then -- err == "closed": no more items
      say("Consumer %d: No more items, exiting (%s)", consumer_id, tostring(err))
      break
    end
    say("Consumer %d: Processing %s", consumer_id, item)
    processed = processed + 1
    parallel.sleep(uniform(0.2, 0.8) * SCALE)
  end
  return processed
end

local queue = parallel.queue()
local n_items = 10

-- Start the producer.
local producer_process = parallel.spawn(producer, queue, n_items)

-- Start the consumers.
local consumers = {}
for i = 1, 2 do
  consumers[i] = parallel.spawn(consumer, queue, i)
end

-- Wait for all of them to complete.
producer_process:get()
local total = 0
for i, c in ipairs(consumers) do
  local n = c:get()
  say("Consumer %d processed %d items", i, n)
  total = total + n
end

say("All processes completed.")
say("Items consumed: %d of %d", total, n_items)
