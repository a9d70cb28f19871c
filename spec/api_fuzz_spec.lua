-- API fuzz: every public function and method called with random argument
-- lists (and, now and then, a wrong self). Each call must return or raise a
-- Lua error: never crash, hang or corrupt what later calls see.
--
-- Calls that could block forever are tamed, not skipped: every timeout
-- argument is replaced by a small one when it would wait long (nil, big or
-- a numeric string), parallel.sleep gets a short time, and the few calls
-- without a timeout (lock:with/hold on a held lock, gather/wait on a task
-- that never ends) are skipped when they would block.
--
-- PARALLEL_FUZZ_SEED picks the seed (printed); a failing call is printed
-- with its index so that the run can be replayed.

local support = require "spec.support"
local parallel = require "parallel"
local core = require "parallel.core"

local SEED = tonumber(os.getenv("PARALLEL_FUZZ_SEED")) or 20261124
-- PARALLEL_FUZZ_TRACE=file: each call's index and target, flushed (find a hang)
local TRACE = os.getenv("PARALLEL_FUZZ_TRACE") and assert(io.open(os.getenv("PARALLEL_FUZZ_TRACE"), "w"))

local random = math.random

local function pick(list) return list[random(#list)] end

-- Type name of a parallel object, or nil.
local function kind(v)
  if type(v) ~= "userdata" then return nil end
  local mt = getmetatable(v)
  return type(mt) == "table" and type(mt.__name) == "string" and mt.__name:match("^parallel%.(.*)") or nil
end

local SHORT = 0.002

local function long_wait(v)
  if v == nil then return true end
  local n = tonumber(v)
  return n ~= nil and n > SHORT
end

local function short_timeout() return pick { 0, 0.001, -1, 0 / 0, "0", false, "x", {} } end

-- Blocking methods: the positions (after self) of their timeout argument.
local TIMEOUTS = {
  ["future.get"] = 1, ["future.wait"] = 1,
  ["queue.push"] = 2, ["queue.pop"] = 1, ["pipe.recv"] = 1,
  ["lock.acquire"] = 1, ["rlock.acquire"] = 1, ["semaphore.acquire"] = 1,
  ["condition.acquire"] = 1, ["condition.wait"] = 1,
  ["event.wait"] = 1, ["barrier.wait"] = 1, ["waitset.next"] = 1,
  ["pipe.poll"] = 1, ["queue.join"] = 1, ["condition.wait_for"] = 2,
  ["queue.push_all"] = 2, ["queue.pop_many"] = 2, ["pipe.recv_many"] = 2,
}

-- Methods that are not in the metatables' __index tables.
local EXTRA = {
  array = { "add", "cas", "fill", "sum", "min", "max", "totable", "set", "view",
            "dot", "scale", "axpy", "copy" },
  value = { "get", "set", "add", "cas" },
  dict = { "keys", "update" },
}

-- Option tables made so far (random_options), for the report.
local stats_options = 0

-- Hooks a user may have set while calling the module: none of them is an
-- interrupt (a count hook of 1 is also what lua.c's Ctrl-C handler sets:
-- a call may then raise "interrupted", which is an error like any other).
local HOOKS = {
  { "", 1000 }, { "c", 0 }, { "l", 0 }, { "r", 0 }, { "", 1 }, { "crl", 7 },
}
local function noop_hook() end

local function fuzz(calls, seed)
  math.randomseed(seed)
  stats_options = 0
  print(("\napi fuzz: %d calls, seed %d (PARALLEL_FUZZ_SEED)"):format(calls, seed))

  -- Tasks that never end unless interrupted: their futures are in the
  -- object list, their pool is not (shutting it down would wait forever).
  local gate = parallel.event()
  local blocker = parallel.pool(2)
  local blocked = {}
  local never = blocker:submit(function(g) return g:wait() end, gate)
  local never2 = blocker:submit(function(g) return g:wait() end, gate)
  local queued = blocker:submit(function() return 1 end)
  blocked[never], blocked[never2], blocked[queued] = true, true, true
  local cancelled = blocker:submit(function() return 2 end)
  cancelled:cancel()

  -- For the end of the run (the fuzz never closes these).
  local mine = { gate = gate, never = never, never2 = never2, queued = queued }

  local pool = parallel.pool(2)
  local done = pool:submit(function(...) return ... end, 1, "two", { 3 })
  local failed = pool:submit(function() error("boom") end)
  local failed_t = pool:submit(function() error({ code = 7 }) end)
  local chunk = pool:_chunk(function(x) return x * 2 end, { 1, 2, 3 }, 1, 3, false)
  assert(done:wait(10) and failed:wait(10) and failed_t:wait(10) and chunk:wait(10))

  local full = parallel.queue(1)
  full:push("x")
  local closed_q = parallel.queue()
  closed_q:push(1)
  closed_q:close()
  local pa, pb = parallel.pipe()
  local held = parallel.lock()
  held:acquire()
  local sem0 = parallel.semaphore(0)

  local objects = {
    pool, done, failed, failed_t, chunk, never, never2, queued, cancelled,
    parallel.queue(), full, closed_q, pa, pb,
    parallel.lock(), held, parallel.rlock(), sem0, parallel.semaphore(2),
    parallel.condition(), parallel.condition(held), parallel.condition(parallel.rlock()),
    parallel.event(), gate, parallel.barrier(2), parallel.barrier(1),
    parallel.array("double", 4, 1.5), parallel.array("int8", { 1, -2, 3 }),
    parallel.array("uint64", 3), parallel.array("float", 2), parallel.array("int64", { 5, 6, 7, 8 }):view(2, 3),
    parallel.value("int64", 0), parallel.value("double", 2.5), parallel.value("uint8", 3),
    parallel.dict(), core._waitset { done, failed, never },
  }
  local d = objects[#objects - 1]
  d.a, d[1], d[true] = 1, { 2 }, "t"
  local MAX_OBJECTS = 200
  local function keep(v)
    if kind(v) == nil then return end
    if #objects < MAX_OBJECTS then objects[#objects + 1] = v
    else objects[random(30, MAX_OBJECTS)] = v end   -- the first ones stay
  end
  local function object_of(k)
    local found = {}
    for _, o in ipairs(objects) do if kind(o) == k then found[#found + 1] = o end end
    return #found > 0 and pick(found) or nil
  end

  local cyclic = {}
  cyclic.self = cyclic
  local big = {}
  for i = 1, 300 do big[i] = i end
  local scalars = {
    true, false, 0, 1, 2, 3, -1, 7, 100, -0.0, 0.5, -2.5, 0 / 0, 1 / 0, -1 / 0,
    math.maxinteger, math.mininteger, 2 ^ 53, 2 ^ 63, 1e308, -1e308, 2 ^ 40, -2 ^ 40,
    "", "a", "double", "int64", "uint8", "float", "int32", "all", "first", "first_error",
    "10", "0.001", "nan", "\0", string.rep("x", 1000),
  }
  local functions = {
    function() end, function(...) return ... end, function(x) return x end,
    function() error("boom") end, function() error({ code = 1 }) end,
    function(x) return x, x end, function(a) return a == nil end,
    function() return coroutine.create(function() end) end,
    function() return io.stdout end,
    type, tostring, math.abs, select,
  }
  local function tables()
    return pick {
      {}, { 1, 2, 3 }, { n = 2 }, { 1, "a", {} }, cyclic, big,
      { workers = 1 }, { workers = 0 }, { workers = 2, memory_limit = 4 * 1024 * 1024 },
      { workers = 1, init = function() end, init_args = { 1 } }, { init = 5 },
      { wait = false }, { cancel = true, wait = true }, { wait = true },
      { timeout = 0.001 }, { timeout = -1 }, { timeout = 0 / 0 }, { chunksize = 0 }, { chunksize = 2 },
      { progress = function() end }, { return_when = "first", timeout = 0.001 },
      { return_when = "nope" }, { done, failed }, { done, never, 5 }, { chunk, cancelled },
      { { 1, 2 }, { 3 } }, { parallel.queue(), parallel.lock() },
      setmetatable({}, { __index = function() error("index") end }),
    }
  end
  -- Option tables with random keys: every option any function takes, a
  -- misspelt or foreign one, a non-string key; values of any kind.
  local OPTION_KEYS = {
    "workers", "init", "init_args", "memory_limit", "backend", "wait", "cancel", "chunksize",
    "timeout", "progress", "return_when", "worker", "time_out", "chunk", "initializer", 1, true,
  }
  local function random_options()
    local t = {}
    for _ = 1, random(0, 3) do
      local v = random(2) == 1 and pick(scalars) or pick { 1, 2, 0.001, true, false, "first", "threads", {} }
      t[pick(OPTION_KEYS)] = v
    end
    stats_options = stats_options + 1
    return t
  end
  local function value()
    local r = random(100)
    if r <= 5 then return random_options() end
    if r <= 8 then return nil
    elseif r <= 50 then return pick(scalars)
    elseif r <= 65 then return tables()
    elseif r <= 75 then return pick(functions)
    else return pick(objects) end
  end
  local function args(max)
    local t = { n = random(0, max or 4) }
    for i = 1, t.n do t[i] = value() end
    return t
  end
  local function has_blocked(t)
    if type(t) ~= "table" then return false end
    for _, v in pairs(t) do if blocked[v] and not v:done() then return true end end
    return false
  end

  -- The callables: module functions and every method of every type.
  local targets = {}
  for name, fn in pairs(parallel) do
    if type(fn) == "function" then targets[#targets + 1] = { name = name, fn = fn } end
  end
  for _, k in ipairs { "pool", "future", "queue", "pipe", "lock", "rlock", "semaphore",
                       "condition", "event", "barrier", "waitset" } do
    local methods = core._methods("parallel." .. k)
    for m, fn in pairs(methods) do
      if type(fn) == "function" then targets[#targets + 1] = { name = k .. "." .. m, fn = fn, self = k, method = m } end
    end
  end
  for k, list in pairs(EXTRA) do
    for _, m in ipairs(list) do
      targets[#targets + 1] = { name = k .. "." .. m, self = k, method = m }
    end
  end
  -- Metamethods and indexing of arrays, values and dicts; tostring and close of all.
  for _, k in ipairs { "array", "dict" } do
    targets[#targets + 1] = { name = k .. "[]", self = k, index = true }
    targets[#targets + 1] = { name = k .. "[]=", self = k, newindex = true }
    targets[#targets + 1] = { name = "#" .. k, self = k, len = true }
  end
  targets[#targets + 1] = { name = "pairs(dict)", self = "dict", pairs = true }
  targets[#targets + 1] = { name = "tostring", tostring = true }
  targets[#targets + 1] = { name = "__close", close = true }
  table.sort(targets, function(a, b) return a.name < b.name end)

  local stats = { calls = 0, ok = 0, errors = 0, skipped = 0, in_coroutine = 0, hooked = 0 }
  local per_target = {}

  -- Returns the function to call and its argument list, or nil to skip.
  local function prepare(t)
    local a = args()
    if t.tostring then return tostring, { n = 1, value() } end
    if t.close then
      -- objects made during the run, so that the first ones stay open
      if #objects <= 40 then return nil end
      local o = objects[random(41, #objects)]
      -- a proxy is one per object and state: a future or the gate that came
      -- back from a call (pool:completed(), a queue) is the very handle the
      -- end of the run needs
      if blocked[o] or rawequal(o, gate) then return nil end
      return function() return getmetatable(o).__close(o) end, { n = 0 }
    end
    local self
    if t.self then
      self = random(10) == 1 and value() or object_of(t.self)
      if self == nil then return nil end
    end
    if t.index then
      return function(o, k) return o[k] end, { n = 2, self, value() }
    elseif t.newindex then
      return function(o, k, v) o[k] = v end, { n = 3, self, value(), value() }
    elseif t.len then
      return function(o) return #o end, { n = 1, self }
    elseif t.pairs then
      return function(o)
        local n = 0
        for _ in pairs(o) do n = n + 1; if n > 100 then break end end
        return n
      end, { n = 1, self }
    end
    local fn = t.fn
    if not fn then
      fn = function(o, ...) return o[t.method](o, ...) end
    end
    local name = t.name
    local tpos = TIMEOUTS[name]
    if tpos and long_wait(a[tpos]) then
      a[tpos] = short_timeout()
      if a.n < tpos then a.n = tpos end
    end
    -- calls with no timeout that block while the object is taken
    if t.method == "with" or t.method == "hold" then
      local k = kind(self)
      if k == "lock" or k == "condition" then
        local ok, taken = pcall(self.locked, self)
        if ok and taken then return nil end
      elseif k == "semaphore" then
        local ok, n = pcall(self.value, self)
        if ok and n == 0 then return nil end
      end
    end
    if name == "sleep" and (long_wait(a[1]) or a.n == 0) then a[1] = pick { 0, 0.001, -1, 0 / 0, "x" }; a.n = math.max(a.n, 1) end
    if name == "pool" and tonumber(a[1]) and tonumber(a[1]) > 4 then a[1] = 2 end
    if name == "gather" and (has_blocked(a[1]) or a[1] == objects) then return nil end
    if name == "wait" and has_blocked(a[1]) and (type(a[2]) ~= "table" or long_wait(rawget(a[2], "timeout"))) then
      a[2] = { timeout = 0.001, return_when = type(a[2]) == "table" and rawget(a[2], "return_when") or nil }
      a.n = math.max(a.n, 2)
    end
    if name == "as_completed" and long_wait(a[2]) then a[2] = 0.001; a.n = math.max(a.n, 2) end
    if (name == "array" or name == "value") and tonumber(a[2]) and tonumber(a[2]) > 1e6 and tonumber(a[2]) < 2 ^ 40 then
      a[2] = 10
    end
    if self ~= nil then       -- shift by a.n, not #a: the list has holes
      for j = a.n, 1, -1 do a[j + 1] = a[j] end
      a[1] = self
      a.n = a.n + 1
    end
    return fn, a
  end

  for i = 1, calls do
    local t = targets[random(#targets)]
    local fn, a = prepare(t)
    if not fn then
      stats.skipped = stats.skipped + 1
    else
      stats.calls = stats.calls + 1
      if TRACE then
        local parts = {}
        for j = 1, a.n do parts[j] = type(a[j]) == "string" and ("%q"):format(a[j]:sub(1, 20)) or tostring(a[j]) end
        TRACE:write(i, " ", t.name, "(", table.concat(parts, ", "), ")\n")
        TRACE:flush()
      end
      per_target[t.name] = (per_target[t.name] or 0) + 1
      -- a call from inside a coroutine, under a user's debug hook, or both
      local mode = random(8)
      local call = fn
      local hook = (mode == 2 or mode == 3) and pick(HOOKS) or nil
      if mode == 1 or mode == 3 then
        stats.in_coroutine = stats.in_coroutine + 1
        call = function(...)
          local co = coroutine.create(function(...)
            if hook then debug.sethook(noop_hook, hook[1], hook[2]) end
            return fn(...)
          end)
          local r = table.pack(coroutine.resume(co, ...))
          if not r[1] then error(r[2], 0) end
          return table.unpack(r, 2, r.n)
        end
      elseif hook then
        call = function(...)
          debug.sethook(noop_hook, hook[1], hook[2])
          local r = table.pack(pcall(fn, ...))
          debug.sethook()
          if not r[1] then error(r[2], 0) end
          return table.unpack(r, 2, r.n)
        end
      end
      if hook then stats.hooked = stats.hooked + 1 end
      local res = table.pack(pcall(call, table.unpack(a, 1, a.n)))
      if res[1] then
        stats.ok = stats.ok + 1
        for j = 2, res.n do keep(res[j]) end
        -- iterators and waits returned by the call: step them once, briefly
        if t.name == "as_completed" and type(res[2]) == "function" then pcall(res[2]) end
      else
        stats.errors = stats.errors + 1
      end
    end
    if i % 5000 == 0 then collectgarbage() end
  end

  -- Everything still works: the blocked tasks end, a fresh pool runs tasks.
  mine.gate:set()
  for _, f in ipairs { mine.never, mine.never2, mine.queued } do assert.is_true(f:wait(10)) end
  local p = parallel.pool(2)
  assert.same({ n = 3, 2, 4, 6 }, p:map(function(x) return 2 * x end, { 1, 2, 3 }))
  p:shutdown()
  blocker:shutdown()
  pcall(pool.shutdown, pool, { cancel = true })
  local missing = {}
  for _, t in ipairs(targets) do if not per_target[t.name] then missing[#missing + 1] = t.name end end
  print(("api fuzz: %d calls (%d returned, %d raised; %d inside coroutines, %d under a user's debug hook; %d random option tables), %d skipped, %d targets%s"):format(
    stats.calls, stats.ok, stats.errors, stats.in_coroutine, stats.hooked, stats_options, stats.skipped, #targets,
    #missing > 0 and (", never called: " .. table.concat(missing, " ")) or ""))
  return stats, targets, per_target
end

describe("API fuzz", function()
  it("survives 10000 random calls: only returns and Lua errors", function()
    local stats, targets, per = fuzz(10000, SEED)
    assert.is_true(stats.calls >= 9000)
    assert.is_true(stats.in_coroutine > 1000 and stats.hooked > 1000 and stats_options > 200)
    for _, t in ipairs(targets) do assert.is_truthy(per[t.name], t.name .. " never called") end
    collectgarbage()
  end)

  it("survives 100000 random calls #stress", function()
    local stats = fuzz(100000, SEED + 1)
    assert.is_true(stats.calls >= 90000)
    collectgarbage()
  end)
end)
