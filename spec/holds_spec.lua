-- A method that runs Lua code while it uses its own object (a decode's
-- finalizers, done callbacks, a barrier's action) keeps the object alive
-- even when that code closes the method's handle, the last one. Each case
-- runs in a child: the defect was a use after free (ASan and valgrind see
-- it at once; a plain build may read freed memory and return garbage).

local support = require "spec.support"
local run_lua = support.run_lua

local function child(code)
  local out, err, status = run_lua("local parallel = require 'parallel'\n" .. code)
  assert.are.equal(0, status, err)
  return out
end

-- Finalizers that close handle `h` when the collector runs them; many, so
-- that some run in the middle of the next allocation-heavy decode.
local ARM = [[
-- Only once armed: a finalizer that runs before the method starts would
-- just close the handle, and the method would rightly say "closed".
local armed = false
local function arm(h)
  local close = getmetatable(h).__close
  armed = false
  for _ = 1, 300 do setmetatable({}, {__gc = function() if armed then pcall(close, h) end end}) end
  armed = true
end
local function rows(n) local t = {} for i = 1, n do t[i] = {i, tostring(i)} end return t end
]]

describe("an object whose last handle is closed during its own method #child", function()
  it("future:get decodes the whole result when a finalizer closes the future", function()
    local out = child(ARM .. [[
local pool = parallel.pool{workers = 1}
for round = 1, 20 do
  local f = pool:submit(rows, 5000)
  f:wait()
  arm(f)
  local t = f:get()
  assert(#t == 5000 and t[5000][2] == "5000", "round " .. round)
  collectgarbage()
end
pool:shutdown()
print("ok")
]])
    assert.are.equal("ok\n", out)
  end)

  it("future:get of a failed task raises its error when a finalizer closes the future", function()
    local out = child(ARM .. [[
local pool = parallel.pool{workers = 1}
for round = 1, 20 do
  local f = pool:submit(function(n) error(rows(n)) end, 3000)
  f:wait()
  arm(f)
  local ok, e = pcall(f.get, f)
  assert(not ok and type(e) == "table" and #e == 3000, "round " .. round)
  collectgarbage()
end
pool:shutdown()
print("ok")
]])
    assert.are.equal("ok\n", out)
  end)

  it("map_async's get fills every item when a finalizer closes the group future", function()
    local out = child(ARM .. [[
local pool = parallel.pool{workers = 2}
for round = 1, 10 do
  local items = {} for i = 1, 400 do items[i] = i end
  local g = pool:map_async(function(i) return {i, tostring(i)} end, items)
  g:wait()
  arm(g)
  local r = g:get()
  assert(#r == 400 and r[400][2] == "400", "round " .. round)
  collectgarbage()
end
pool:shutdown()
print("ok")
]])
    assert.are.equal("ok\n", out)
  end)

  it("future:get returns the value when a done callback closes the future", function()
    local out = child([[
local pool = parallel.pool{workers = 1}
local go = parallel.event()
local f = pool:submit(function(go) go:wait(10) return ("x"):rep(1000) end, go)
f:add_done_callback(function(g) getmetatable(g).__close(g) end)
go:set()
local v = f:get()
print(#v)
pool:shutdown()
]])
    assert.are.equal("1000\n", out)
  end)

  -- The task waits for go: a future already done when the callback is
  -- added runs it at once, closing f before wait (then "closed" is right).
  it("future:wait returns when a done callback closes the future", function()
    local out = child([[
local pool = parallel.pool{workers = 1}
local go = parallel.event()
local f = pool:submit(function(go) go:wait(10) return 1 end, go)
f:add_done_callback(function(g) getmetatable(g).__close(g) end)
go:set()
print(f:wait(10))
pool:shutdown()
]])
    assert.are.equal("true\n", out)
  end)

  it("as_completed's next raises 'closed' when a callback closed the waitset", function()
    local out = child([[
local pool = parallel.pool{workers = 1}
local a = pool:submit(function() return 1 end)
local b = pool:submit(function() return 2 end)
local ws = parallel.waitset and parallel.waitset{a, b}
if not ws then print("no waitset") return end
a:add_done_callback(function() ws:close() end)
a:wait(10)
local ok, e = pcall(ws.next, ws, 1)
print(ok, e and tostring(e):match("closed") or e)
pool:shutdown()
]])
    assert.is_truthy(out == "no waitset\n" or out:match("^false\tclosed"), out)
  end)

  it("pool:completed raises 'closed' when a callback closed the pool", function()
    local out = child([[
local pool = parallel.pool{workers = 1}
local f = pool:submit(function() return 1 end)
f:add_done_callback(function() pool:close() end)
f:wait(10)
local ok, e = pcall(pool.completed, pool)
print(ok, tostring(e):match("closed") or e)
]])
    assert.is_truthy(out:match("^false\tclosed") or out:match("^true"), out)
  end)

  it("a barrier's action may close the barrier's last handle", function()
    local out = child([[
-- the action is a copy in the state that runs it: it finds the handle
-- through this state's globals at run time
local b = parallel.barrier(1, function()
  local h = rawget(debug.getregistry()[2], "THE_BARRIER")
  getmetatable(h).__close(h)
end)
THE_BARRIER = b
print(b:wait(5), pcall(b.wait, b))
]])
    assert.are.equal("1\tfalse\tparallel.barrier is closed\n", out)
  end)
end)
