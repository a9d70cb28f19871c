-- Errors that say what happened: an error value that cannot travel, a
-- condition's lock, array offsets past lua_Integer, iterating an array.

local support = require "spec.support"
local assert_raises, error_of = support.assert_raises, support.error_of
local parallel = require "parallel"

describe("a task's error value that cannot travel", function()
  local pool
  setup(function() pool = parallel.pool(1) end)
  teardown(function() pool:shutdown() end)

  it("fails the task saying so, why and what it was, with the traceback", function()
    local f = pool:submit(function() error({ co = coroutine.create(print) }) end)
    local e = error_of(f.get, f)
    assert.is_string(e)
    local first = e:match("^[^\n]*")
    assert.is_truthy(first:find("^the task's error value could not be sent %(cannot send thread at error%.co%); it was table: "), first)
    assert.is_truthy(e:find("stack traceback", 1, true), e)
    local v = f:error()
    assert.equal(first, v:match("^[^\n]*"))
  end)

  it("survives a __tostring that raises", function()
    local f = pool:submit(function()
      error(setmetatable({ io.stdout }, { __tostring = function() error("no") end }))
    end)
    local e = error_of(f.get, f)
    assert.is_truthy(e:find("^the task's error value could not be sent"), e)
    assert.equal(7, pool:submit(function() return 7 end):get())
  end)

  it("names the item in the map family", function()
    local e = error_of(pool.map, pool, function(x)
      if x == 2 then error({ co = coroutine.create(print) }) end
    end, { 1, 2, 3 }, { chunksize = 3 })
    assert.is_truthy(e:find("^item 2: the task's error value could not be sent %(cannot send thread at error%.co%)"), e)
  end)
end)

describe("a condition waited on or released without its lock", function()
  it("names the condition's lock, not an rlock the user never made", function()
    local c = parallel.condition()
    assert_raises("condition's lock is not held by this thread (acquire the condition before waiting)",
      function() c:wait(0) end)
    assert_raises("condition's lock is not held by this thread", function() c:release() end)
    local cl = parallel.condition(parallel.lock())
    assert_raises("condition's lock is not held (acquire the condition before waiting)", function() cl:wait(0) end)
    assert_raises("condition's lock is not held", function() cl:release() end)
  end)
end)

describe("array offsets near math.maxinteger", function()
  it("report the index a set would reach, without overflow #child", function()
    local out, err, status = support.run_lua([[
      local parallel = require "parallel"
      local a = parallel.array("int64", 8)
      local ok, e = pcall(a.set, a, {1}, math.maxinteger)
      print(ok, (e:gsub("^[^\n]-:%d+: ", "")))
      ok, e = pcall(a.set, a, {1, 2}, math.maxinteger - 1)
      print(ok, (e:gsub("^[^\n]-:%d+: ", "")))
      ok, e = pcall(a.set, a, setmetatable({}, {__len = function() return math.maxinteger end}), 8)
      print(ok, (e:gsub("^[^\n]-:%d+: ", "")))
      print(pcall(a.sum, a, math.mininteger, 2))
      print(pcall(a.view, a, 2, math.maxinteger))
    ]])
    assert.equal(0, status, err)
    assert.equal(table.concat({
      "false\tindex 9223372036854775808 out of range [1, 8]",
      "false\tindex 9223372036854775808 out of range [1, 8]",
      "false\tindex 9223372036854775815 out of range [1, 8]",
      "false\tindex -9223372036854775808 out of range [1, 8]",
      "false\tindex 9223372036854775807 out of range [1, 8]",
    }, "\n") .. "\n", (out:gsub("[^\n]*: index", "false\tindex")))
  end)
end)

describe("iterating a shared array", function()
  it("works with ipairs and pairs as on a sequence, views included", function()
    local a = parallel.array("int16", { 5, 6, 7 })
    local seen = {}
    for i, v in ipairs(a) do seen[#seen + 1] = i .. "=" .. v end
    assert.same({ "1=5", "2=6", "3=7" }, seen)
    seen = {}
    for i, v in pairs(a) do seen[#seen + 1] = i .. "=" .. v end
    assert.same({ "1=5", "2=6", "3=7" }, seen)
    local v = a:view(2, 3)
    seen = {}
    for i, x in ipairs(v) do seen[#seen + 1] = i .. "=" .. x end
    assert.same({ "1=6", "2=7" }, seen)
    for _ in pairs(parallel.array("double", 0)) do error("an empty array has no pairs") end
  end)

  it("keeps writes bounds-checked", function()
    local a = parallel.array("int8", 2)
    assert_raises("index 3 out of range [1, 2]", function() a[3] = 1 end)
  end)
end)
