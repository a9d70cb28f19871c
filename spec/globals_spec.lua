-- The globals a function reads travel with it, however the compiler reads
-- them (GETTABUP, or _ENV and the name in registers), from stripped dumps
-- too; and a global the sender no longer has does not linger in a worker.

local parallel = require "parallel"

-- A function whose body first builds a table of n string constants, so
-- that the name it reads next is constant number n + 1.
local function with_constants(n, name)
  local src = {"return function() local t = {"}
  for i = 1, n do src[#src + 1] = ("'c%d',"):format(i) end
  src[#src + 1] = ("} return %s() end"):format(name)
  return assert(load(table.concat(src)))()
end

describe("globals a function reads", function()
  local pool
  lazy_setup(function() pool = parallel.pool(1) end)
  lazy_teardown(function() if pool then pool:shutdown() end end)

  it("travel when the name is longer than 40 bytes (a long-string constant)", function()
    _G.a_global_helper_whose_name_is_longer_than_forty_bytes = function() return "long" end
    local f = load("return function() return a_global_helper_whose_name_is_longer_than_forty_bytes() end")()
    assert.equal("long", pool:submit(f):get(10))
    _G.a_global_helper_whose_name_is_longer_than_forty_bytes = nil
  end)

  it("travel when the name is constant number 301 (past GETTABUP's 255)", function()
    _G.HIGH_CONSTANT_HELPER = function() return "high" end
    assert.equal("high", pool:submit(with_constants(300, "HIGH_CONSTANT_HELPER")):get(10))
    _G.HIGH_CONSTANT_HELPER = nil
  end)

  it("travel when the name is constant number 140001 (LOADKX)", function()
    _G.HUGE_CONSTANT_HELPER = function() return "huge" end
    assert.equal("huge", pool:submit(with_constants(140000, "HUGE_CONSTANT_HELPER")):get(10))
    _G.HUGE_CONSTANT_HELPER = nil
  end)

  it("travel with a function loaded from a stripped dump, and with its nested functions", function()
    _G.STRIPPED_HELPER = function(x) return x * 2 end
    local f = load(string.dump(function(n)
      local function inner() return STRIPPED_HELPER(n) end
      return STRIPPED_HELPER(n) + inner()
    end, true))
    assert.equal(20, pool:submit(f, 5):get(10))
    _G.STRIPPED_HELPER = nil
  end)

  it("from a stripped dump fail as in the sender, not in a 'parallel factory'", function()
    local f = load(string.dump(function() return NO_SUCH_GLOBAL_FN() end, true))
    local _, here = pcall(f)
    local ok, there = pcall(function() return pool:submit(f):get(10) end)
    assert.is_false(ok)
    assert.is_nil(there:find("parallel factory", 1, true), there)
    assert.equal(here, there:match("^[^\n]*"))
  end)

  it("are absent in the worker once the sender set them back to nil", function()
    _G.COMES_AND_GOES = 5
    local function read() return COMES_AND_GOES end
    assert.equal(5, pool:submit(read):get(10))
    _G.COMES_AND_GOES = nil
    assert.is_nil(pool:submit(read):get(10))
  end)

  it("that init set and the sender does not have keep init's value", function()
    local p = parallel.pool{workers = 1, init = function() FROM_INIT = "init's" end}
    assert.equal("init's", p:submit(function() return FROM_INIT end):get(10))
    assert.equal("init's", p:submit(function() return FROM_INIT end):get(10))
    p:shutdown()
  end)

  it("that a task set and the sender does not have keep the task's value", function()
    local p = parallel.pool(1)
    p:submit(function() SET_BY_TASK = 42 end):get(10)
    assert.equal(42, p:submit(function() return SET_BY_TASK end):get(10))
    p:shutdown()
  end)
end)
