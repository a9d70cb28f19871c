-- 05_io_downloads.lua: threads for I/O — concurrent downloads vs sequential.
--
-- There is no internet here, so the example starts its own small HTTP server on
-- 127.0.0.1, in a thread of its own (parallel.spawn). Like httpbin.org/delay/N it answers
-- GET /delay/N after N seconds, and it serves many connections at once: a
-- socket.select loop accepts connections, reads requests and sends each response when its
-- delay is up, so slow responses overlap. The tutorial's delays (1, 2, 1, 3 s) are
-- scaled down five times.
--
-- The downloads use Debian's lua-socket (socket.http), sequentially from the main
-- thread, then concurrently from a pool of workers (the tutorial starts one thread per
-- URL; a pool with one worker per URL is the same thing). Tables travel by copy, so
-- instead of filling a shared `results` list, each download returns its result.
--
--   lua5.4 examples/05_io_downloads.lua
local parallel = require "parallel"
local socket = require "socket"
local http = require "socket.http"

local SCALE = 0.2 -- the tutorial's delays times this
local IDLE = 30   -- seconds without a connection after which the server stops

local function say(fmt, ...)
  io.write(string.format(fmt, ...) .. "\n")
  io.stdout:flush()
end

------------------------------------------------------------------------------
-- The server: runs on its own thread; pushes its port into `ready`, serves until
-- GET /quit (or until it has been idle for IDLE seconds, so that a client that died
-- before sending /quit cannot leave it running forever).
------------------------------------------------------------------------------
local function serve(ready)
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0)
  local _, port = server:getsockname()
  ready:push(tonumber(port))

  local reading = {} -- client -> request bytes read so far
  local pending = {} -- responses waiting for their delay: { client, due, body }
  local running = true
  local last_activity = socket.gettime()

  local function respond(c, code, body)
    c:settimeout(2)
    c:send(string.format("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" ..
                         "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                         code, code == 200 and "OK" or "Not Found", #body, body))
    c:close()
  end

  while running or next(pending) do
    -- Sleep until a socket is readable or the next response is due.
    local now, timeout = socket.gettime(), 0.05
    for _, p in ipairs(pending) do timeout = math.min(timeout, math.max(0, p.due - now)) end
    local recvt = { server }
    for c in pairs(reading) do recvt[#recvt + 1] = c end
    local readable = socket.select(recvt, nil, timeout)

    for _, s in ipairs(readable) do
      if s == server then
        local c = server:accept()
        if c then c:settimeout(0); reading[c] = ""; last_activity = socket.gettime() end
      elseif reading[s] then
        local data, err, partial = s:receive(4096)
        local buf = reading[s] .. (data or partial or "")
        reading[s] = buf
        if err == "closed" then
          reading[s] = nil; s:close()
        elseif buf:find("\r\n\r\n", 1, true) then
          reading[s] = nil
          local path = buf:match("^%u+ (%S+)") or "/"
          local delay = tonumber(path:match("^/delay/([%d%.]+)$"))
          if path == "/quit" then
            running = false
            respond(s, 200, '{"bye": true}')
          elseif delay then
            local body = string.format('{"url": "http://127.0.0.1:%d%s", "delay": %s}',
                                       port, path, delay)
            pending[#pending + 1] = { client = s, due = socket.gettime() + delay, body = body }
          else
            respond(s, 404, '{"error": "not found"}')
          end
        end
      end
    end

    -- Send the responses whose delay is up.
    now = socket.gettime()
    for i = #pending, 1, -1 do
      local p = pending[i]
      if p.due <= now then
        table.remove(pending, i)
        respond(p.client, 200, p.body)
      end
    end
    if not next(reading) and not next(pending) and now - last_activity > IDLE then
      running = false
    end
  end
  server:close()
  return "server stopped"
end

------------------------------------------------------------------------------
-- The client side.
------------------------------------------------------------------------------

-- Download one URL; returns { url, status, size, time } or { url, error }.
local function download_url(url)
  local start = parallel.now()
  local body, code = http.request(url)
  local elapsed = parallel.now() - start
  if not body then
    say("Failed %s: %s", url, tostring(code))
    return { url = url, error = tostring(code) }
  end
  say("Downloaded %s in %.2f seconds", url, elapsed)
  return { url = url, status = code, size = #body, time = elapsed }
end

local function download_sequential(urls)
  local start = parallel.now()
  local results = {}
  for i, url in ipairs(urls) do results[i] = download_url(url) end
  say("Sequential total time: %.2f seconds", parallel.now() - start)
  return results
end

local function download_threaded(urls)
  local start = parallel.now()
  local pool <close> = parallel.pool(#urls) -- one worker per URL
  local results = pool:map(download_url, urls, { chunksize = 1 })
  say("Threaded total time: %.2f seconds", parallel.now() - start)
  return results
end

-- Start the server and wait for its port.
local ready = parallel.queue()
local server = parallel.spawn(serve, ready)
local port = ready:pop(10)
if not port then
  error("the HTTP server did not start: " .. tostring(server:error()))
end
local base = "http://127.0.0.1:" .. port

local urls = {}
for i, d in ipairs({ 1, 2, 1, 3 }) do
  urls[i] = string.format("%s/delay/%g", base, d * SCALE)
end

say("Sequential downloads:")
local sequential_results = download_sequential(urls)

say("\nThreaded downloads:")
local threaded_results = download_threaded(urls)

-- Stop the server and join its thread.
http.request(base .. "/quit")
server:get()

local ok = true
for i = 1, #urls do
  local a, b = sequential_results[i], threaded_results[i]
  ok = ok and a.status == 200 and b.status == 200 and a.size == b.size
end
local longest = 3 * SCALE
say("\nAll downloads succeeded with the same content: %s", ok)
say("Results match: %s", ok)
say("(the longest single delay is %.2f s: concurrent downloads take about that long,", longest)
say(" sequential ones the sum of the delays, %.2f s)", (1 + 2 + 1 + 3) * SCALE)
