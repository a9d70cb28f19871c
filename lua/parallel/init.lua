--- parallel: multi-core parallelism for Lua 5.4.
-- The facade over `parallel.core`: option tables, the map family built on
-- chunked submits, as_completed/wait/gather, spawn, the default pool and
-- the measuring helpers. Everything that crosses threads is in C.
local core = require "parallel.core"
local progress = require "parallel.progress"

local M = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then M[k] = v end
end
M._VERSION = core._VERSION

local now, ceil, max, min = core.now, math.ceil, math.max, math.min
local type, error = type, error

-- Errors name the caller's line: `level` counts from the public function
-- (the map family's implementations are tail-called, so they count as it).
local function argerror(n, fname, msg, level)
  error(string.format("bad argument #%d to '%s' (%s)", n, fname, msg), level or 3)
end

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

local function check(v, want, n, fname)
  if type(v) ~= want then argerror(n, fname, want .. " expected, got " .. (v == nil and "nil" or typename(v)), 4) end
end

-- Option tables: every key must be known and every value of its kind
-- (core._options, shared with the C functions' option tables).
local MAP_OPTIONS = { chunksize = "count", timeout = "seconds", progress = "progress",
  task_timeout = "seconds" }

local function check_opts(opts, n, fname, spec)
  opts = core._options(opts, n, fname, spec or MAP_OPTIONS, 3) or {}
  if opts.task_timeout == 0 then argerror(n, fname, "task_timeout must be a positive number", 4) end
  return opts
end

-- A table with keys but none of the items 1..n: most likely a dictionary
-- given where a list is expected (a list with only `n` is an empty list).
local function check_items(list, n, argn, fname)
  local len = math.tointeger(n)
  if not len or len < 0 then    -- a proxy's __len: 2.5, -5, "3" would make a results.n of it
    argerror(argn, fname, "#list must be a non-negative integer, got " .. tostring(n), 4)
  end
  if n ~= 0 or getmetatable(list) ~= nil then return len end
  local k = next(list)
  if k == "n" then k = next(list, k) end
  if k ~= nil then
    argerror(argn, fname, "list expected, got a table with keys but no items 1..n;"
      .. " put its values in a list (or use pairs and submit)", 4)
  end
  return len
end

local function check_open(pool)
  if pool:_closed() then error("pool is shut down", 3) end
end

-- What the map family needs of a pool: workers, backend, whether it is
-- shut down (a remote pool's _info is one request to its owner).
local function pool_info(pool)
  local workers, backend, closed = pool:_info()
  if closed then error("pool is shut down", 3) end
  return workers, backend
end

local MPI_POOL_OPTIONS = { backend = "threads|process|mpi", workers = "count", depth = "count", init = "function",
  init_args = "table" }

--- parallel.pool(n | {workers =, init =, init_args =, memory_limit =,
-- backend = "threads" | "process" | "mpi", max_tasks_per_worker =}) --> pool
-- max_tasks_per_worker = n: a worker's state (or process) is replaced by a
-- fresh one, where init runs again, after n tasks (a map chunk is one).
-- backend = "mpi": the other ranks of an MPI job (parallel.mpi, see README).
function M.pool(...)
  local opts = ...
  if type(opts) == "table" and opts.backend == "mpi" then
    core._options(opts, 1, "pool", MPI_POOL_OPTIONS, 2)
    local ok, mpi = pcall(require, "parallel.mpi")
    if not ok then
      error("backend 'mpi' needs the parallel.mpi module (make mpi), loaded at launch: " ..
            "mpirun -n N lua5.4 -l parallel.mpi script.lua\n" .. tostring(mpi), 2)
    end
    local p = mpi._pool(opts)
    return p
  end
  -- core.pool's errors would point at this line: they name the caller's
  local ok, p = pcall(core.pool, ...)
  if not ok then
    if type(p) == "string" then p = p:gsub("^bad argument (#%d+) to '[^']*'", "bad argument %1 to 'pool'", 1) end
    error(p, 2)
  end
  return p
end

local Pool = core._methods("parallel.pool")
local Future = core._methods("parallel.future")
-- A pool or future of another process, handed to a task (wire/remote.h).
local RemotePool = core._methods("parallel.pool (remote)")
local RemoteFuture = core._methods("parallel.future (remote)")

local function workers_of(pool) return pool:stats().workers end

function Pool:_info()
  local s = self:stats()
  return s.workers, s.backend, self:_closed()
end

-- task_timeout ends a task by killing its worker: process pools only.
local function check_task_timeout(backend, opts, fname)
  if opts.task_timeout and backend ~= "process" then
    argerror(3, fname, "task_timeout needs a process pool (backend = \"process\")", 4)
  end
end

-- The waitset of the map family: a remote pool's futures are waited for at
-- their owner, one request a wait (future:_wait_any).
local RemoteWaitset = {}
RemoteWaitset.__index = RemoteWaitset

function RemoteWaitset:add(f) self[#self + 1] = f end

function RemoteWaitset:next(timeout)
  local n = #self
  if n == 0 then return nil end
  local i = self[1]:_wait_any(self, timeout)
  if not i then return nil end
  local f = self[i]
  self[i] = self[n]
  self[n] = nil
  return f
end

function Pool:_waitset(futures) return core._waitset(futures) end

function RemotePool:_waitset(futures)
  local ws = setmetatable({}, RemoteWaitset)
  for i = 1, #futures do ws[i] = futures[i] end
  return ws
end

local function default_chunksize(n, workers)
  return max(1, ceil(n / (4 * workers)))
end

-- Raises the error of a failed chunk, naming the item.
-- `single`: the index of the chunk's one item, named when the failure has
-- no index of its own (a process pool's worker died or was killed).
local function raise_item(f, single)
  local e, tb, index = f:_failure()
  index = index or single
  if f:state() == "cancelled" then error("cancelled", 0) end
  if type(e) == "string" then
    if index then e = "item " .. index .. ": " .. e end
    if tb and tb ~= "" then e = e .. "\n" .. tb end
  end
  error(e, 0)
end

local function cancel_all(futures)
  for i = 1, #futures do futures[i]:cancel() end
end

local function remaining(deadline)
  if not deadline then return nil end
  return max(0, deadline - now())
end

-- map and starmap: chunks submitted at once, gathered as they complete.
local function map_impl(pool, fname, fn, list, opts, star)
  check(fn, "function", 1, fname)
  check(list, "table", 2, fname)
  opts = check_opts(opts, 3, fname)
  local workers, backend = pool_info(pool)
  check_task_timeout(backend, opts, fname)
  local n = check_items(list, #list, 2, fname)
  local results = { n = n }
  if n == 0 then return results end
  -- task_timeout bounds each task: one item per task unless chunksize says otherwise
  local tt = opts.task_timeout
  local cs = opts.chunksize or (tt and 1) or default_chunksize(n, workers)
  local futures, firsts = {}, {}
  -- A list with a metatable (a proxy) is read as list[i] reads it; the C
  -- side reads plain tables raw, which is the same thing and runs no code.
  local proxy = getmetatable(list) ~= nil
  -- The timeout counts the submission too (a long list takes seconds to
  -- encode). An item that cannot be read (a proxy's __index raises) or
  -- sent (a file handle) raises here: the chunks already submitted are
  -- cancelled.
  local deadline = opts.timeout and now() + opts.timeout
  local late = false
  local ok, err = pcall(function()
    for first = 1, n, cs do
      if deadline and now() > deadline then late = true; return end
      local last = min(first + cs - 1, n)
      local f
      if proxy then
        local items = {}
        for i = first, last do items[i - first + 1] = list[i] end
        f = pool:_chunk(fn, items, 1, last - first + 1, star, first, tt)
      else
        f = pool:_chunk(fn, list, first, last, star, first, tt)
      end
      futures[#futures + 1] = f
      firsts[f] = first
    end
  end)
  if not ok then
    cancel_all(futures)
    error(err, 0)
  end
  local report = progress.new(opts.progress, n)
  if late then
    cancel_all(futures)
    if report then report(0, n, true) end
    error("timeout", 2)
  end
  local ws = pool:_waitset(futures)
  local done = 0
  for _ = 1, #futures do
    local f = ws:next(remaining(deadline))
    if not f then
      cancel_all(futures)
      if report then report(done, n, true) end
      error("timeout", 2)
    end
    if f:state() ~= "done" then
      cancel_all(futures)
      if report then report(done, n, true) end
      raise_item(f, cs == 1 and firsts[f] or nil)
    end
    done = done + f:_into(results, firsts[f])
    if report then report(done, n) end
  end
  if report then report(done, n, true) end
  return results
end

--- pool:map(fn, list [, opts]) --> results (results[i] = fn(list[i]), results.n)
function Pool:map(fn, list, opts) return map_impl(self, "map", fn, list, opts, false) end

--- pool:starmap(fn, arglists [, opts]) --> results of fn(table.unpack(arglists[i]))
function Pool:starmap(fn, arglists, opts) return map_impl(self, "starmap", fn, arglists, opts, true) end

-- A source of items: a list, or an iterator function read lazily.
local function item_source(list, total)
  if type(list) == "table" then
    local i, n = 0, total
    return function()
      if i >= n then return nil, true end
      i = i + 1
      return list[i]
    end
  end
  local ended = false
  return function()
    if ended then return nil, true end
    local v = list()
    if v == nil then ended = true; return nil, true end
    return v
  end
end

-- imap / imap_unordered: a bounded number of chunks in flight.
local function imap_impl(pool, fname, fn, list, opts, ordered)
  check(fn, "function", 1, fname)
  if type(list) ~= "table" and type(list) ~= "function" then
    argerror(2, fname, "table or function expected, got " .. (list == nil and "nil" or typename(list)))
  end
  opts = check_opts(opts, 3, fname)
  local workers, backend = pool_info(pool)
  check_task_timeout(backend, opts, fname)
  local total = type(list) == "table" and check_items(list, #list, 2, fname) or nil
  local tt = opts.task_timeout
  local cs = opts.chunksize or (tt and 1) or (total and default_chunksize(total, workers)) or 16
  local next_item = item_source(list, total)
  local window = 2 * workers
  local inflight, head, tail = {}, 1, 0      -- ordered: FIFO of futures
  local firsts = {}
  local ws = not ordered and pool:_waitset({}) or nil
  local nflight, index, exhausted = 0, 0, false
  local deadline = opts.timeout and now() + opts.timeout
  local report = progress.new(opts.progress, total)
  local delivered = 0
  local buf, bufpos, buflen, buffirst = nil, 0, 0, 0

  local function fill()
    while not exhausted and nflight < window do
      local items, k = {}, 0
      while k < cs do
        local v, ended = next_item()
        if ended then exhausted = true; break end
        k = k + 1
        items[k] = v
      end
      if k == 0 then break end
      local f = pool:_chunk(fn, items, 1, k, false, index + 1, tt)
      firsts[f] = index + 1
      index = index + k
      nflight = nflight + 1
      if ordered then tail = tail + 1; inflight[tail] = f else ws:add(f) end
    end
  end

  -- Every chunk in flight is a key of `firsts` until its results are
  -- taken: cancelling them all is one loop, in either order.
  local function cancel_inflight()
    for g in pairs(firsts) do g:cancel() end
  end

  -- the progress bar's final state, before raising
  local function give_up()
    cancel_inflight()
    if report then report(delivered, total, true) end
  end

  local function next_chunk()
    local f
    if ordered then
      f = inflight[head]
      if not f then return false end
      inflight[head] = nil
      head = head + 1
      if not f:wait(remaining(deadline)) then
        give_up()
        error("timeout", 3)
      end
    else
      if nflight == 0 then return false end
      f = ws:next(remaining(deadline))
      if not f then
        give_up()
        error("timeout", 3)
      end
    end
    nflight = nflight - 1
    if f:state() ~= "done" then
      give_up()
      raise_item(f, cs == 1 and firsts[f] or nil)
    end
    local res, count = f:get()
    buf, bufpos, buflen, buffirst = res, 0, count, firsts[f]
    firsts[f] = nil
    return true
  end

  -- An item that cannot be read or sent (the iterator raises, a file
  -- handle) raises from here: the chunks in flight are cancelled.
  local function refill()
    local ok, err = pcall(fill)
    if not ok then
      give_up()
      error(err, 0)
    end
  end

  refill()
  local function iterate()
    while bufpos >= buflen do
      if not next_chunk() then
        if report then report(delivered, total or delivered, true) end
        return nil
      end
      refill()
    end
    bufpos = bufpos + 1
    delivered = delivered + 1
    if report then report(delivered, total) end
    return buffirst + bufpos - 1, buf[bufpos]
  end
  -- a generic for closes its fourth value when the loop ends, by a break
  -- or an error too: the progress bar then shows where it stopped
  local closing = report and setmetatable({}, {__close = function()
    report(delivered, total, true)
  end})
  return iterate, nil, nil, closing
end

--- pool:imap(fn, list_or_iterator [, opts]) --> iterator over i, result in order
function Pool:imap(fn, list, opts) return imap_impl(self, "imap", fn, list, opts, true) end

--- pool:imap_unordered(fn, list_or_iterator [, opts]) --> iterator over i, result as completed
function Pool:imap_unordered(fn, list, opts) return imap_impl(self, "imap_unordered", fn, list, opts, false) end

-- A remote pool maps as a local one does: its chunks run at its owner.
RemotePool.map, RemotePool.starmap = Pool.map, Pool.starmap
RemotePool.imap, RemotePool.imap_unordered = Pool.imap, Pool.imap_unordered

--- pool:apply(fn, ...) --> the values of fn(...), run on a worker
function Pool:apply(fn, ...)
  check(fn, "function", 1, "apply")
  return self:submit(fn, ...):get()
end

-- The C side reads a list of futures raw: a proxy (__index, __len) is
-- read here as a loop over 1..#t would, into a plain list.
local function future_list(futures, fname)
  check(futures, "table", 1, fname)
  if getmetatable(futures) == nil then return futures end
  local n = math.tointeger(#futures)
  if not n or n < 0 then
    argerror(1, fname, "#futures must be a non-negative integer, got " .. tostring(#futures), 4)
  end
  local copy = {}
  for i = 1, n do copy[i] = futures[i] end
  return copy
end

-- A waitset over futures of this process and remote ones (of a pool handed
-- to this task), for as_completed, wait and gather: the local ones in
-- core._waitset, the remote ones by the link to their owner, each group
-- asked about in one request (future:_wait_any). One group alone waits at
-- its owner; a mix waits in slices (1 ms doubling to 50 ms) on the local
-- set, or on the first group, checking the others between slices.
local REMOTE_FUTURE = "parallel.future (remote)"
local MixedWaitset = {}
MixedWaitset.__index = MixedWaitset

-- fname: the public function (as_completed, wait, gather), named by errors
-- about the list, which point at the line that called it.
local function waitset_of(futures, fname)
  local locals, groups, by_link, seen, at = {}, {}, {}, {}, {}
  for i = 1, #futures do
    local f = futures[i]
    local mt = type(f) == "userdata" and getmetatable(f)
    if seen[f] then
      -- listed twice: yielded once, as by core._waitset
    elseif type(mt) == "table" and mt.__name == REMOTE_FUTURE then
      seen[f] = true
      local link = f:_link()
      local g = by_link[link]
      if not g then
        g = {}
        by_link[link] = g
        groups[#groups + 1] = g
      end
      g[#g + 1] = f
    else
      if not (type(mt) == "table" and mt.__name == "parallel.future") then
        argerror(1, fname, ("futures[%d] is not a future"):format(i), 4)
      end
      seen[f] = true
      locals[#locals + 1] = f
      at[#locals] = i
    end
  end
  if #groups == 0 then return core._waitset(futures, fname, 3) end
  -- the C side names an index of locals: a closed handle is named here
  for j = 1, #locals do
    if not pcall(locals[j].done, locals[j]) then argerror(1, fname, ("futures[%d] is closed"):format(at[j]), 4) end
  end
  return setmetatable({ws = core._waitset(locals, fname, 3), nlocal = #locals, groups = groups}, MixedWaitset)
end

-- The first future of group gi done within wait seconds (nil: no limit), taken out.
function MixedWaitset:_take(gi, wait)
  local g = self.groups[gi]
  local i = g[1]:_wait_any(g, wait)
  if not i then return nil end
  local f = g[i]
  g[i] = g[#g]
  g[#g] = nil
  if #g == 0 then table.remove(self.groups, gi) end
  return f
end

function MixedWaitset:_local(wait)
  if self.nlocal == 0 then return nil end
  local f = self.ws:next(wait)
  if f then self.nlocal = self.nlocal - 1 end
  return f
end

function MixedWaitset:next(timeout)
  local deadline = timeout and now() + timeout
  local slice = 0.001
  while true do
    local f = self:_local(0)
    if f then return f end
    local groups = self.groups
    if #groups == 0 then
      -- the remote ones are all out: what is left waits on the local set
      if self.nlocal == 0 then return nil end
      f = self:_local(remaining(deadline))
      if f then return f end
      return nil, "timeout"
    end
    if #groups == 1 and self.nlocal == 0 then
      f = self:_take(1, remaining(deadline))
      if f then return f end
      return nil, "timeout"
    end
    for gi = #groups, 1, -1 do
      f = self:_take(gi, 0)
      if f then return f end
    end
    local left = remaining(deadline)
    if left and left <= 0 then return nil, "timeout" end
    local w = left and min(left, slice) or slice
    if self.nlocal > 0 then f = self:_local(w) else f = self:_take(1, w) end
    if f then return f end
    slice = min(slice * 2, 0.05)
  end
end

function MixedWaitset:close() self.ws:close() end

--- parallel.as_completed(futures [, timeout]) --> iterator over futures as they finish
function M.as_completed(futures, timeout)
  futures = future_list(futures, "as_completed")
  if timeout ~= nil and not (type(timeout) == "number" and timeout >= 0) then
    argerror(2, "as_completed", "timeout must be a non-negative number")
  end
  local ws = waitset_of(futures, "as_completed")
  local deadline = timeout and now() + timeout
  return function()
    local f, err = ws:next(remaining(deadline))
    if f then return f end
    if err == "timeout" then error("timeout", 2) end
    return nil
  end
end

local WAIT_OPTIONS = { timeout = "seconds", return_when = "all|first|first_error" }

--- parallel.wait(futures, {timeout =, return_when = "all" | "first" | "first_error"})
-- --> done, not_done
function M.wait(futures, opts)
  futures = future_list(futures, "wait")
  opts = core._options(opts, 2, "wait", WAIT_OPTIONS, 2) or {}
  local when = opts.return_when or "all"
  local ws = waitset_of(futures, "wait")
  local deadline = opts.timeout and now() + opts.timeout
  local done, is_done = {}, {}
  while true do
    local f = ws:next(remaining(deadline))
    if not f then break end
    done[#done + 1] = f
    is_done[f] = true
    if when == "first" then break end
    if when == "first_error" and f:state() ~= "done" then break end
  end
  ws:close()
  local not_done = {}
  for i = 1, #futures do
    local f = futures[i]
    if not is_done[f] then
      if f:done() then done[#done + 1] = f else not_done[#not_done + 1] = f end
    end
  end
  return done, not_done
end

--- parallel.gather(futures) --> list of first results; raises the first error
function M.gather(futures)
  futures = future_list(futures, "gather")
  local ws = waitset_of(futures, "gather")
  -- a future listed twice is in the set once: the set runs out first
  while true do
    local f = ws:next()
    if not f then break end
    if f:state() ~= "done" then
      f:get()   -- raises the task's error (with its traceback)
    end
  end
  local out = { n = #futures }
  for i = 1, #futures do out[i] = (futures[i]:get()) end
  return out
end

-- The default pool, made on first use.
local default_pool
local function get_default()
  if not default_pool then default_pool = core.pool(core.cpu_count()) end
  return default_pool
end

--- parallel.map(fn, list [, opts]) on the default pool
function M.map(fn, list, opts) return map_impl(get_default(), "map", fn, list, opts, false) end

--- parallel.submit(fn, ...) on the default pool
function M.submit(fn, ...)
  check(fn, "function", 1, "submit")
  return get_default():submit(fn, ...)
end

-- Threads started by spawn: each has a one-worker pool that ends after
-- its task; the pools are kept here until their task is done.
local spawned = setmetatable({}, { __mode = "" })

--- parallel.spawn(fn, ...) --> future; runs fn on a thread of its own
function M.spawn(fn, ...)
  check(fn, "function", 1, "spawn")
  for p, f in pairs(spawned) do
    if f:done() then spawned[p] = nil; p:shutdown() end
  end
  local p = core.pool(1)
  local ok, f = pcall(p.submit, p, fn, ...)
  if not ok then p:shutdown(); error(f, 2) end
  p:shutdown { wait = false }
  spawned[p] = f
  return f
end

-- Measuring (the tutorial's performance chapter).

--- parallel.timeit(fn, ...) --> seconds, fn's results
function M.timeit(fn, ...)
  check(fn, "function", 1, "timeit")
  local t0 = now()
  local function finish(...) return now() - t0, ... end
  return finish(fn(...))
end

--- parallel.speedup(t_seq, t_par, n) --> speedup, efficiency
function M.speedup(t_seq, t_par, n)
  check(t_seq, "number", 1, "speedup")
  check(t_par, "number", 2, "speedup")
  n = n or 1
  check(n, "number", 3, "speedup")
  if t_par <= 0 then argerror(2, "speedup", "parallel time must be positive") end
  if n <= 0 then argerror(3, "speedup", "workers must be positive") end
  local s = t_seq / t_par
  return s, s / n
end

local function check_fraction(s, n, fname)
  if type(s) ~= "number" then argerror(1, fname, "number expected, got " .. typename(s), 4) end
  if type(n) ~= "number" then argerror(2, fname, "number expected, got " .. typename(n), 4) end
  if not (s >= 0 and s <= 1) then argerror(1, fname, "serial fraction must be in [0, 1]", 4) end
  if not (n >= 1) then argerror(2, fname, "processors must be at least 1", 4) end
end

--- parallel.amdahl(serial_fraction, n) --> 1 / (S + (1 - S) / N)
function M.amdahl(s, n)
  check_fraction(s, n, "amdahl")
  return 1 / (s + (1 - s) / n)
end

--- parallel.gustafson(serial_fraction, n) --> N - S (N - 1)
function M.gustafson(s, n)
  check_fraction(s, n, "gustafson")
  return n - s * (n - 1)
end

-- Synchronisation helpers written in Lua over the core objects.

local Condition = core._methods("parallel.condition")

--- condition:wait_for(predicate [, timeout]) --> predicate's last value
-- Waits until predicate() is true (checked first, then after each wake-up),
-- the lock held as for wait; false-ish on timeout.
function Condition:wait_for(predicate, timeout)
  check(predicate, "function", 1, "wait_for")
  if timeout ~= nil then check(timeout, "number", 2, "wait_for") end
  local deadline = timeout and now() + timeout
  local result = predicate()
  while not result do
    local left = remaining(deadline)
    if left and left <= 0 then break end
    self:wait(left)
    result = predicate()
  end
  return result
end

-- Done callbacks and async maps.
--
-- A callback is Lua code, so it runs in the Lua state that registered it,
-- never in a worker: at once when its future is already done, else inside
-- this state's next call that waits or polls for futures (future:get and
-- :wait, as_completed, wait, gather and the map family as they wait,
-- parallel.sleep, pool:completed(), parallel.poll), before and after it
-- waits. The C side calls the hook set by core._callback_hook while
-- callbacks are pending.

local pending = {}           -- future -> its callbacks not yet run (keeps it alive)
local npending = 0
local cb_ws, ws_size = nil, 0   -- a waitset over the pending futures
-- Remote futures (of a pool handed to this task) with pending callbacks, by
-- the link to their owner: each list is asked about in one request.
local remote_pending = {}
local is_remote = {}         -- the remote ones among the pending futures
local nlocal = 0             -- how many of the pending futures are in cb_ws
local firing = false

local function default_error_handler(err, f)
  io.stderr:write("parallel: error in a done callback of ", tostring(f), ": ", tostring(err), "\n")
end
local error_handler = default_error_handler

local function report(err, f)
  local ok, e = pcall(error_handler, err, f)
  if not ok then
    io.stderr:write("parallel: error in the callback error handler: ", tostring(e), "\n")
  end
end

local function call_back(f, fn)
  local ok, err = xpcall(fn, debug.traceback, f)
  if not ok then report(err, f) end
end

local run_callbacks

local function arm()
  core._callback_hook(npending > 0 and run_callbacks or nil)
end

-- Runs the callbacks of the futures that finished, after waiting up to
-- `timeout` for the first; returns how many ran. Not re-entered: a callback
-- that waits runs no other callback.
function run_callbacks(timeout)
  if firing or npending == 0 then return 0 end
  firing = true
  local ran = 0
  local function fire(f)
    local list = pending[f]
    if list then
      pending[f] = nil
      npending = npending - 1
      if is_remote[f] then is_remote[f] = nil else nlocal = nlocal - 1 end
      for i = 1, #list do
        call_back(f, list[i])
        ran = ran + 1
      end
    end
  end
  local ok, err = pcall(function()
    -- remote futures: waited for (up to timeout) only when no local one is
    if next(remote_pending) then
      local wait = not cb_ws and timeout or 0
      for link, list in pairs(remote_pending) do
        local i = list[1]:_wait_any(list, wait)
        while i do
          local f = list[i]
          list[i] = list[#list]
          list[#list] = nil
          fire(f)
          i = list[1] and list[1]:_wait_any(list, 0)
        end
        if not list[1] then remote_pending[link] = nil end
        if ran > 0 then wait = 0 end
      end
    end
    if not cb_ws then return end
    local f = cb_ws:next(ran > 0 and 0 or timeout or 0)
    while f do
      fire(f)
      f = cb_ws:next(0)
    end
  end)
  -- a waitset keeps every future it was given: start afresh once most are gone
  if not cb_ws then
    ws_size = 0
  elseif nlocal == 0 then
    cb_ws:close()
    cb_ws, ws_size = nil, 0
  elseif ws_size > 64 and ws_size > 4 * nlocal then
    cb_ws:close()
    cb_ws, ws_size = core._waitset({}), 0
    for f in pairs(pending) do
      if not is_remote[f] then cb_ws:add(f); ws_size = ws_size + 1 end
    end
  end
  firing = false
  arm()
  if not ok then error(err, 0) end
  return ran
end

-- Keeps f's first callback until it runs: a local future joins the waitset,
-- a remote one (handed to this task) the list of its owner's link.
local function keep_pending(f, fn)
  pending[f] = { fn }
  npending = npending + 1
  if f._link then
    is_remote[f] = true
    local link = f:_link()
    local list = remote_pending[link]
    if not list then list = {}; remote_pending[link] = list end
    list[#list + 1] = f
  else
    nlocal = nlocal + 1
    if not cb_ws then cb_ws = core._waitset({}) end
    cb_ws:add(f)
    ws_size = ws_size + 1
  end
  arm()
end

--- future:add_done_callback(fn): fn(future) runs in this state once the
-- future is finished (done, failed or cancelled): at once if it is, else
-- in this state's next call that waits or polls (see parallel.poll). A
-- remote future's waits ask its owner whether it finished.
function Future:add_done_callback(fn)
  check(fn, "function", 1, "add_done_callback")
  local list = pending[self]
  if list then
    list[#list + 1] = fn
    return
  end
  if self:done() then
    call_back(self, fn)
    return
  end
  keep_pending(self, fn)
end
RemoteFuture.add_done_callback = Future.add_done_callback

--- parallel.poll([timeout]) --> number of callbacks run
-- Runs the done callbacks whose futures have finished, waiting up to
-- `timeout` seconds (default 0) for one; returns at once when none is pending.
function M.poll(timeout)
  if timeout ~= nil then
    check(timeout, "number", 1, "poll")
    if timeout ~= timeout then argerror(1, "poll", "timeout is NaN") end
  end
  return run_callbacks(timeout or 0)
end

--- parallel.on_callback_error(handler) --> the previous handler
-- handler(err, future) receives the error (with its traceback) of a done
-- callback that raised; the default writes it to stderr. nil restores it.
function M.on_callback_error(handler)
  if handler ~= nil then check(handler, "function", 1, "on_callback_error") end
  local old = error_handler
  error_handler = handler or default_error_handler
  return old
end

-- The {callback =, error_callback =} of apply_async and the async maps
-- (the shared option checker: unknown keys and wrong kinds raise).
local APPLY_ASYNC_OPTIONS = { callback = "function", error_callback = "function" }
local MAP_ASYNC_OPTIONS = { chunksize = "count", callback = "function", error_callback = "function" }

local function check_async_opts(opts, n, fname, chunks)
  return core._options(opts, n, fname, chunks and MAP_ASYNC_OPTIONS or APPLY_ASYNC_OPTIONS, 3) or {}
end

-- callback(first result) when f is done, error_callback(error as get
-- raises it, or "cancelled") when not.
local function attach(f, opts)
  local cb, ecb = opts.callback, opts.error_callback
  if not cb and not ecb then return end
  Future.add_done_callback(f, function(g)
    local ok, v = pcall(g.get, g)
    if ok then
      if cb then cb(v) end
    elseif ecb then
      ecb(v)
    end
  end)
end

--- pool:apply_async(fn, args [, {callback =, error_callback =}]) --> future
-- fn(table.unpack(args)) on a worker; callback(first result) or
-- error_callback(error) then run in this state, as done callbacks.
function Pool:apply_async(fn, args, opts)
  check(fn, "function", 1, "apply_async")
  if args ~= nil then check(args, "table", 2, "apply_async") end
  opts = check_async_opts(opts, 3, "apply_async", false)
  local f = self:submit(fn, table.unpack(args or {}, 1, args and (args.n or #args) or 0))
  attach(f, opts)
  return f
end

local function map_async_impl(pool, fname, fn, list, opts, star)
  check(fn, "function", 1, fname)
  check(list, "table", 2, fname)
  opts = check_async_opts(opts, 3, fname, true)
  check_open(pool)
  local n = check_items(list, #list, 2, fname)
  local g = core._group()
  local ok, err = pcall(function()
    if n == 0 then return end
    local cs = opts.chunksize or default_chunksize(n, workers_of(pool))
    local proxy = getmetatable(list) ~= nil
    for first = 1, n, cs do
      local last = min(first + cs - 1, n)
      local f
      if proxy then
        local items = {}
        for i = first, last do items[i - first + 1] = list[i] end
        f = pool:_chunk(fn, items, 1, last - first + 1, star, first)
      else
        f = pool:_chunk(fn, list, first, last, star)
      end
      g:_add(f, first)
    end
  end)
  g:_seal(n)
  if not ok then
    g:cancel()
    error(err, 0)
  end
  attach(g, opts)
  return g
end

--- pool:map_async(fn, list [, {chunksize =, callback =, error_callback =}]) --> future
-- One future for the whole map: get() gives the results table (as map's),
-- cancel() cancels the chunks that have not started; callback(results).
function Pool:map_async(fn, list, opts) return map_async_impl(self, "map_async", fn, list, opts, false) end

--- pool:starmap_async(fn, arglists [, opts]) --> future (as map_async, for starmap)
function Pool:starmap_async(fn, arglists, opts)
  return map_async_impl(self, "starmap_async", fn, arglists, opts, true)
end

-- A pool handed to a task of a process pool: apply_async works as on a
-- local pool (its callbacks run in the task, at its waits and polls); what
-- needs the pool's own process says so instead of 'attempt to call a nil
-- value (method 'stats')'.
RemotePool.apply_async = Pool.apply_async
for _, name in ipairs { "map_async", "starmap_async", "stats", "fd", "completed", "terminate" } do
  RemotePool[name] = function()
    error(("pool:%s() is not available on a pool handed to a process worker: call it in the process "
      .. "that made the pool (here submit, apply, apply_async, the map family and shutdown work)"):format(name), 2)
  end
end

local Timer = {}
Timer.__index = Timer
Timer.__name = "parallel.timer"

--- parallel.timer(seconds, fn, ...) --> timer
-- fn(...) runs once, after `seconds`, on a thread of its own (as with
-- spawn: fn and its arguments travel by the transfer rules), unless
-- timer:cancel() came first.
function M.timer(seconds, fn, ...)
  check(seconds, "number", 1, "timer")
  if seconds ~= seconds or seconds < 0 then argerror(1, "timer", "seconds must be a non-negative number") end
  check(fn, "function", 2, "timer")
  local wake, st = core.event(), core.value("int32", 0)   -- 0 waiting, 1 fired, 2 cancelled
  local f = M.spawn(function(wake, st, seconds, fn, ...)
    if not wake:wait(seconds) and st:cas(0, 1) then return fn(...) end
  end, wake, st, seconds, fn, ...)
  return setmetatable({ future = f, _wake = wake, _state = st }, Timer)
end

--- timer:cancel() --> true if fn will not run (it had not started)
function Timer:cancel()
  if self._state:cas(0, 2) then
    self._wake:set()
    return true
  end
  return self._state:get() == 2
end

--- timer:fired() --> true once fn has started
function Timer:fired() return self._state:get() == 1 end

--- timer:wait([timeout]) --> true once the timer ended (fired and returned, or cancelled)
function Timer:wait(timeout) return self.future:wait(timeout) end

--- timer:get([timeout]) --> fn's results (nothing if cancelled); raises fn's error
function Timer:get(timeout) return self.future:get(timeout) end

Timer.__close = Timer.cancel

return M
