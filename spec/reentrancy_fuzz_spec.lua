-- Re-entrancy fuzz: Lua code that the codec runs in the middle of an encode
-- or a decode (a __gc finalizer under GC pressure, the __index function of
-- a sent function's _ENV, a module loader, a __newindex of the receiver's
-- globals) uses the module itself: every operation that encodes or decodes,
-- as the outer operation and as the inner one, on the same objects. Every
-- value pushed, sent, set or returned is checked where it comes out, and
-- every one that went in must come out once (a ledger). Runs in a child
-- process: a crash or a sanitizer report fails the spec with its output.
--
-- PARALLEL_REENTRANCY_SEED picks the seed, PARALLEL_REENTRANCY_ROUNDS the
-- rounds per scenario (default 3), PARALLEL_REENTRANCY_ONLY a Lua pattern
-- that the scenario's "hook/outer/inner" name must match.

local support = require "spec.support"

local CHILD = [==[
local parallel = require "parallel"
local SEED = tonumber(os.getenv("PARALLEL_REENTRANCY_SEED")) or 20261202
local ROUNDS = tonumber(os.getenv("PARALLEL_REENTRANCY_ROUNDS")) or 3
local ONLY = os.getenv("PARALLEL_REENTRANCY_ONLY") or ""
math.randomseed(SEED)
local random = math.random

local pool = parallel.pool(2)
local Q = parallel.queue()
local PA, PB = parallel.pipe()
local D = parallel.dict()
local MOD = { name = "reent_mod" }
package.loaded.reent_mod = MOD

local calls, fired_inside, failures = 0, 0, {}
local inside_by_hook, hname = {}, nil
local inside = false          -- an outer operation is running
local ledger, outstanding = {}, 0
local next_id = 0

local function fail(msg)
  failures[#failures + 1] = msg
  if #failures <= 10 then io.stderr:write("FAIL ", msg, "\n") end
end

-- A value that needs allocations to encode and decode (tables, strings,
-- closures with upvalues, a shared object), numbered.
local function make(id)
  local v = {
    id = id, s = ("s"):rep(id % 40) .. id,
    list = {}, sub = { a = { id = id, t = { id } } },
    f = function() return id end,
  }
  for i = 1, 8 + id % 8 do v.list[i] = id + i end
  if id % 3 == 0 then v.q = Q end
  if id % 5 == 0 then v.list[#v.list + 1] = 0.5 + id end
  return v
end

local function check(v, where)
  if type(v) ~= "table" or math.type(v.id) ~= "integer" then
    return fail(where .. ": not a value: " .. tostring(v))
  end
  local id = v.id
  local ok = v.s == ("s"):rep(id % 40) .. id and type(v.sub) == "table" and v.sub.a.id == id
    and v.sub.a.t[1] == id and type(v.f) == "function" and v.f() == id
    and (id % 3 ~= 0 or v.q == Q) and #v.list == 8 + id % 8 + (id % 5 == 0 and 1 or 0)
  for i = 1, 8 + id % 8 do ok = ok and v.list[i] == id + i end
  if id % 5 == 0 then ok = ok and v.list[#v.list] == 0.5 + id end
  if not ok then fail(where .. ": value " .. id .. " came out wrong") end
  return id
end

-- A value that goes in somewhere and must come out once.
local function fresh()
  next_id = next_id + 1
  ledger[next_id] = true
  outstanding = outstanding + 1
  return make(next_id)
end

local function came_out(v, where)
  local id = check(v, where)
  if not id then return end
  if not ledger[id] then return fail(where .. ": value " .. id .. " came out twice or was never sent") end
  ledger[id] = nil
  outstanding = outstanding - 1
end

local function echo(v) return v end

-- What a hook adds to the value of the outer operation, and the state it
-- needs, per kind. inner() runs the inner operation.
local hooks = {}

-- __gc finalizers with the collector always running.
hooks.gc = {
  arm = function(inner)
    for _ = 1, 4 do setmetatable({}, { __gc = function() inner() end }) end
  end,
  decorate = function(v) return v end,
}

-- The __index function of a sent function's _ENV (runs at the encode).
hooks.env_index = {
  arm = function() end,
  decorate = function(v, inner)
    local env = setmetatable({}, { __index = function(_, k)
      if k == "G_reent" then inner() return 1 end
    end })
    v.g = load("return G_reent", "g", "t", env)
    return v
  end,
  encode_only = true,
}

-- A module loader (runs at the decode: the module is not loaded there).
hooks.loader = {
  arm = function(inner)
    package.preload.reent_mod = function() inner() return MOD end
  end,
  decorate = function(v) v.mod = MOD return v end,
  before_decode = function() package.loaded.reent_mod = nil end,
  after = function() package.loaded.reent_mod = MOD package.preload.reent_mod = nil end,
  decode_here = true,
}

-- __newindex of the receiver's globals (runs at the decode, as the
-- globals a function reads are set).
hooks.newindex = {
  arm = function(inner)
    setmetatable(_G, { __newindex = function(t, k, x) inner() rawset(t, k, x) end })
  end,
  decorate = function(v)
    v.h = load("return G_new", "h", "t", setmetatable({}, { __index = { G_new = 7 } }))
    return v
  end,
  before_decode = function() rawset(_G, "G_new", nil) end,
  after = function() setmetatable(_G, nil) rawset(_G, "G_new", nil) end,
  decode_here = true,
}

-- Operations: each is run(v, hook) -> nil, with its own checks. encode:
-- it encodes in this state; decode: it decodes in this state; here: it
-- decodes in this state what this state encoded (no worker between).
local ops = {}
local dict_keys = 0

ops.queue_push = { encode = true, run = function(v) calls = calls + 1 Q:push(v) end }
ops.queue_pop = { decode = true, here = true, run = function(v, h)
  Q:push(v)
  if h and h.before_decode then h.before_decode() end
  calls = calls + 2
  local got = Q:pop(1)
  if got == nil then return fail("queue_pop: nothing") end
  came_out(got, "queue_pop")
end }
ops.queue_push_all = { encode = true, run = function(v) calls = calls + 1 Q:push_all({ v, fresh() }) end }
ops.queue_pop_many = { decode = true, here = true, run = function(v, h)
  Q:push_all({ v, fresh() })
  if h and h.before_decode then h.before_decode() end
  calls = calls + 2
  local got = Q:pop_many(2, 1)
  if got == nil or #got == 0 then return fail("queue_pop_many: nothing") end
  for i = 1, #got do came_out(got[i], "queue_pop_many") end
end }
ops.pipe_send = { encode = true, run = function(v) calls = calls + 1 PA:send(v) end }
ops.pipe_recv = { decode = true, here = true, run = function(v, h)
  PA:send(v)
  if h and h.before_decode then h.before_decode() end
  calls = calls + 2
  local got = PB:recv(1)
  if got == nil then return fail("pipe_recv: nothing") end
  came_out(got, "pipe_recv")
end }
ops.dict_set = { encode = true, run = function(v)
  dict_keys = dict_keys + 1
  local k = "k" .. dict_keys
  calls = calls + 2
  D[k] = v
  came_out(D[k], "dict_set")
  D[k] = nil
end }
ops.dict_get = { decode = true, here = true, run = function(v, h)
  dict_keys = dict_keys + 1
  local k = "k" .. dict_keys
  D[k] = v
  if h and h.before_decode then h.before_decode() end
  calls = calls + 3
  came_out(D[k], "dict_get")
  D[k] = nil
end }
ops.dict_update = { encode = true, decode = true, here = true, run = function(v, h)
  dict_keys = dict_keys + 1
  local k = "k" .. dict_keys
  D[k] = v
  if h and h.before_decode then h.before_decode() end
  calls = calls + 3
  D:update(k, function(old)
    check(old, "dict_update (old)")
    return old
  end)
  came_out(D[k], "dict_update")
  D[k] = nil
end }
ops.submit = { encode = true, run = function(v)
  calls = calls + 2
  local ok, got = pcall(function() return pool:submit(echo, v):get() end)
  if not ok then return fail("submit: " .. tostring(got)) end
  came_out(got, "submit")
end }
ops.future_get = { decode = true, run = function(v)
  local f = pool:submit(echo, v)
  f:wait()
  calls = calls + 3
  local ok, got = pcall(f.get, f)
  if not ok then return fail("future_get: " .. tostring(got)) end
  came_out(got, "future_get")
end }
ops.map = { encode = true, decode = true, run = function(v)
  local w = fresh()
  calls = calls + 1
  local ok, r = pcall(pool.map, pool, echo, { v, w }, { chunksize = 1 })
  if not ok then return fail("map: " .. tostring(r)) end
  came_out(r[1], "map[1]") came_out(r[2], "map[2]")
end }

-- Inner operations: the same, on the same objects, with plain values.
local inner_ops = {}
for name, op in pairs(ops) do
  inner_ops[name] = function()
    local was = inside
    if inside then
      fired_inside = fired_inside + 1
      inside_by_hook[hname] = (inside_by_hook[hname] or 0) + 1
    end
    inside = false
    local ok, e
    if random(3) == 1 then      -- now and then from a coroutine
      ok, e = coroutine.resume(coroutine.create(op.run), fresh())
    else
      ok, e = pcall(op.run, fresh())
    end
    if not ok then fail("inner " .. name .. ": " .. tostring(e)) end
    inside = was
  end
end
-- The queue and the pipe also as one-way operations: the item waits
-- there until the outer operation's own pop, or the round's end.
inner_ops.queue_push_only = function()
  if inside then fired_inside = fired_inside + 1 end
  calls = calls + 1
  Q:push(fresh())
end
inner_ops.pipe_send_only = function()
  if inside then fired_inside = fired_inside + 1 end
  calls = calls + 1
  PA:send(fresh())
end

local function drain()
  for _, from in ipairs { { Q, Q.pop, "queue" }, { PB, PB.recv, "pipe" } } do
    for _ = 1, 1000 do
      local ok, v = pcall(from[2], from[1], 0)
      calls = calls + 1
      if not ok then fail(from[3] .. " (drained): " .. tostring(v))
      elseif v == nil then break
      else came_out(v, from[3] .. " (drained)") end
    end
  end
end

local function sorted(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

local scenarios, rounds = 0, 0
collectgarbage("incremental", 50, 100, 1)   -- a step at nearly every allocation
for _, name in ipairs(sorted(hooks)) do
  hname = name
  local h = hooks[hname]
  for _, oname in ipairs(sorted(ops)) do
    local op = ops[oname]
    local applies = (not h.encode_only or op.encode) and (not h.decode_here or op.here)
    for _, iname in ipairs(applies and sorted(inner_ops) or {}) do
      if (hname .. "/" .. oname .. "/" .. iname):find(ONLY) then
        scenarios = scenarios + 1
        for _ = 1, ROUNDS do
          rounds = rounds + 1
          local inner = inner_ops[iname]
          local armed = true
          local function once() if armed then armed = hname == "gc" inner() end end
          h.arm(once)
          local v = h.decorate(fresh(), once)
          -- a few more finalizers, so that a GC step can fire anywhere
          if random(2) == 1 then hooks.gc.arm(once) end
          inside = true
          local ok, e = pcall(op.run, v, h)
          inside = false
          if h.after then h.after() end
          if not ok then fail(hname .. "/" .. oname .. "/" .. iname .. ": " .. tostring(e)) end
          collectgarbage("step")
          drain()
        end
      end
    end
  end
end
collectgarbage("collect")
collectgarbage("collect")
drain()
collectgarbage("generational")
if outstanding ~= 0 then
  local lost = {}
  for id in pairs(ledger) do lost[#lost + 1] = id end
  table.sort(lost)
  fail(outstanding .. " values never came out (" .. table.concat(lost, ", ", 1, math.min(#lost, 10)) .. ")")
end
pool:shutdown()
local by = {}
for _, name in ipairs(sorted(hooks)) do by[#by + 1] = name .. " " .. (inside_by_hook[name] or 0) end
print(("reentrancy fuzz: %d scenarios, %d rounds, %d calls, %d inner calls inside an operation (%s), seed %d")
  :format(scenarios, rounds, calls, fired_inside, table.concat(by, ", "), SEED))
print(#failures == 0 and "ok" or ("failures: " .. #failures))
]==]

-- The two reports of the issue, as they were seen.
local GC_PUSH_DURING_PUSH = [==[
local parallel = require "parallel"
local q, inner = parallel.queue(), parallel.queue()
collectgarbage("incremental", 50, 100, 1)
local bad = 0
for round = 1, 300 do
  for _ = 1, 4 do setmetatable({}, { __gc = function() inner:push({ "gc", round }) end }) end
  q:push({ round = round, t = { round, { x = round } }, s = "v" .. round })
  local v = q:pop()
  if type(v) ~= "table" or v.round ~= round or v.t[2].x ~= round or v.s ~= "v" .. round then bad = bad + 1 end
  while true do
    local w = inner:pop(0)
    if w == nil then break end
    if w[1] ~= "gc" then bad = bad + 1 end
  end
end
print("bad " .. bad)
]==]

local GC_DICT_DURING_POP = [==[
local parallel = require "parallel"
local q, d = parallel.queue(), parallel.dict()
d.x = { 1, 2, 3 }
collectgarbage("incremental", 50, 100, 1)
local bad = 0
for round = 1, 300 do
  for _ = 1, 4 do
    setmetatable({}, { __gc = function()
      local _ = d.x
      d:update("x", function(t) return t end)
    end })
  end
  q:push({ round = round, t = { round, { x = round } }, s = "v" .. round })
  local v = q:pop()
  if type(v) ~= "table" or v.round ~= round or v.t[2].x ~= round or v.s ~= "v" .. round then bad = bad + 1 end
end
print("bad " .. bad)
]==]

-- Lua code run in the middle of a method closes the object's last handle
-- (a finalizer during the encode, the function of d:update): the method
-- raises "... was closed during the call" or completes, never touching a
-- freed object.
local CLOSE_DURING = [==[
local parallel = require "parallel"
collectgarbage("incremental", 50, 100, 1)
local counts = {}
local function try(name, make, call)
  for round = 1, 100 do
    local obj = make()
    local close = getmetatable(obj).__close
    setmetatable({}, { __gc = function() close(obj) end })
    local ok, e = pcall(call, obj, { round, { x = round }, "s" .. round, function() return round end })
    local k = name .. (ok and " ok" or ((tostring(e):match("closed during the call$") or tostring(e):match("pool is shut down$")) and " closed" or (" " .. tostring(e))))
    counts[k] = (counts[k] or 0) + 1
  end
end
local pool = parallel.pool(1)
try("push", parallel.queue, function(q, v) q:push(v) end)
try("push_all", parallel.queue, function(q, v) q:push_all({ v, v }) end)
try("send", function() local a, b = parallel.pipe() return a end, function(a, v) a:send(v) end)
try("set", parallel.dict, function(d, v) d.k = v end)
try("submit", function() return parallel.pool(1) end, function(p, v) p:submit(function(x) return x end, v) end)
for round = 1, 100 do
  local d = parallel.dict()
  d.k = { round }
  local close = getmetatable(d).__close
  local ok, e = pcall(d.update, d, "k", function(t) close(d) return { t[1] + 1 } end)
  local k = "update " .. (ok and "ok" or (tostring(e):match("closed during the call$") and "closed" or tostring(e)))
  counts[k] = (counts[k] or 0) + 1
end
pool:shutdown()
local keys = {}
for k, n in pairs(counts) do keys[#keys + 1] = k .. "=" .. n end
table.sort(keys)
print(table.concat(keys, " "))
]==]

describe("re-entrancy #child", function()
  it("a handle closed by Lua code in the middle of a method: the method raises or completes", function()
    local out, err, status = support.run_child{ code = CLOSE_DURING, timeout = 60 }
    assert.equal(0, status, out .. err)
    -- every outcome is "ok" or "closed", nothing else, 100 rounds each
    local total = 0
    for name, outcome, n in out:gmatch("([%w_]+) (%S+)=(%d+)") do
      assert.truthy(outcome == "ok" or outcome == "closed", name .. ": " .. outcome)
      total = total + tonumber(n)
    end
    assert.equal(600, total, out)
  end)

  it("a finalizer that pushes to a queue during another push loses nothing", function()
    local out, err, status = support.run_child{ code = GC_PUSH_DURING_PUSH, timeout = 60 }
    assert.equal(0, status, out .. err)
    assert.equal("bad 0\n", out)
  end)

  it("a finalizer that reads and updates a dict during a pop leaves the popped message whole", function()
    local out, err, status = support.run_child{ code = GC_DICT_DURING_POP, timeout = 60 }
    assert.equal(0, status, out .. err)
    assert.equal("bad 0\n", out)
  end)
end)

describe("re-entrancy fuzz #child", function()
  it("keeps every message whole when Lua code run by the codec uses the module", function()
    local out, err, status = support.run_child{ code = CHILD, timeout = 240 }
    io.stderr:write("\n", (out:match("reentrancy fuzz:[^\n]*") or "reentrancy fuzz: no report"), "\n")
    assert.equal(0, status, "child failed:\n" .. out .. err)
    assert.truthy(out:find("\nok\n", 1, true), out .. err)
  end)
end)
