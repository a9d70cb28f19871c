-- Option tables: every function that takes one rejects unknown keys and
-- values of the wrong kind with a bad argument error naming the option.

local support = require "spec.support"
local assert_raises = support.assert_raises
local parallel = require "parallel"

describe("option tables", function()
  local pool
  setup(function() pool = parallel.pool(1) end)
  teardown(function() pool:shutdown() end)

  it("reject an unknown key in parallel.pool", function()
    assert_raises("bad argument #1 to 'pool' (unknown option 'worker')", function() parallel.pool { worker = 1 } end)
    assert_raises("bad argument #1 to 'pool' (unknown option 'initializer')",
      function() parallel.pool { initializer = print } end)
    assert_raises("bad argument #1 to 'pool' (unknown option [1])", function() parallel.pool { 4 } end)
  end)

  it("name the line that called parallel.pool, for either backend", function()
    for _, backend in ipairs{"threads", "process"} do
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, e = pcall(function() parallel.pool { backend = backend, bogus = 1 } end)
      assert.is_false(ok)
      assert.equal(tostring(line), e:match("options_spec%.lua:(%d+): "), e)
      assert.equal("bad argument #1 to 'pool' (unknown option 'bogus')", (e:gsub("^[^\n]-:%d+: ", "", 1)))
    end
  end)

  it("check every value of parallel.pool's options", function()
    assert_raises("bad argument #1 to 'pool' (workers must be a positive integer)",
      function() parallel.pool { workers = "2" } end)
    assert_raises("bad argument #1 to 'pool' (memory_limit must be a non-negative integer)",
      function() parallel.pool { memory_limit = -1 } end)
    assert_raises("bad argument #1 to 'pool' (memory_limit must be a non-negative integer)",
      function() parallel.pool { memory_limit = 1.5 } end)
    assert_raises("bad argument #1 to 'pool' (init must be a function)", function() parallel.pool { init = 1 } end)
    assert_raises("bad argument #1 to 'pool' (init_args must be a table)",
      function() parallel.pool { init = print, init_args = 1 } end)
  end)

  it("pass init_args by n, as table.pack makes it, nils included", function()
    local p <close> = parallel.pool { workers = 1, init = function(...) N_INIT_ARGS = select("#", ...) end,
      init_args = table.pack(1, nil, nil) }
    assert.equal(3, p:submit(function() return N_INIT_ARGS end):get())
    -- a negative n is no argument, as table.unpack(t, 1, n) and starmap give
    -- (it raised "too many init_args")
    local q <close> = parallel.pool { workers = 1, init = function(...) N_INIT_ARGS = select("#", ...) end,
      init_args = { 1, 2, n = -1 } }
    assert.equal(0, q:submit(function() return N_INIT_ARGS end):get())
  end)

  it("reject an unknown key and a bad value in shutdown", function()
    local p <close> = parallel.pool(1)
    assert_raises("bad argument #1 to 'shutdown' (unknown option 'wiat')", function() p:shutdown { wiat = true } end)
    assert_raises("bad argument #1 to 'shutdown' (wait must be a boolean)", function() p:shutdown { wait = 1 } end)
    assert.is_false(p:stats().shutdown)
  end)

  for _, m in ipairs { "map", "starmap", "imap", "imap_unordered" } do
    it("reject an unknown key and bad values in " .. m, function()
      local list = {}
      assert_raises(("bad argument #3 to '%s' (unknown option 'time_out')"):format(m),
        function() pool[m](pool, print, list, { time_out = 0.05 }) end)
      assert_raises(("bad argument #3 to '%s' (timeout must be a non-negative number)"):format(m),
        function() pool[m](pool, print, list, { timeout = "x" }) end)
      assert_raises(("bad argument #3 to '%s' (timeout must be a non-negative number)"):format(m),
        function() pool[m](pool, print, list, { timeout = 0 / 0 }) end)
      assert_raises(("bad argument #3 to '%s' (chunksize must be a positive integer)"):format(m),
        function() pool[m](pool, print, list, { chunksize = 2.5 }) end)
      assert_raises(("bad argument #3 to '%s' (progress must be a boolean or a function)"):format(m),
        function() pool[m](pool, print, list, { progress = "yes" }) end)
      assert_raises(("bad argument #3 to '%s' (table expected, got number)"):format(m),
        function() pool[m](pool, print, list, 5) end)
    end)
  end

  it("reject an unknown key in parallel.map", function()
    assert_raises("bad argument #3 to 'map' (unknown option 'chunk')",
      function() parallel.map(print, {}, { chunk = 1 }) end)
  end)

  it("check parallel.wait's options", function()
    assert_raises("bad argument #2 to 'wait' (timeout must be a non-negative number)",
      function() parallel.wait({}, { timeout = "x" }) end)
    assert_raises("bad argument #2 to 'wait' (unknown option 'retun_when')",
      function() parallel.wait({}, { retun_when = "all" }) end)
    assert_raises("bad argument #2 to 'wait' (invalid option 'any' for return_when (one of all|first|first_error))",
      function() parallel.wait({}, { return_when = "any" }) end)
    assert_raises("bad argument #2 to 'wait' (table expected, got number)", function() parallel.wait({}, 1) end)
  end)

  it("check as_completed's timeout", function()
    assert_raises("bad argument #2 to 'as_completed' (timeout must be a non-negative number)",
      function() parallel.as_completed({}, 0 / 0) end)
    assert_raises("bad argument #2 to 'as_completed' (timeout must be a non-negative number)",
      function() parallel.as_completed({}, "x") end)
  end)

  it("name the caller's line", function()
    local ok, e = pcall(function() pool:map(print, {}, { time_out = 1 }) end)
    assert.is_false(ok)
    assert.is_truthy(e:find("^[^\n]*options_spec.lua:%d+: "), e)
    ok, e = pcall(function() parallel.wait({}, { timeout = "x" }) end)
    assert.is_truthy(e:find("^[^\n]*options_spec.lua:%d+: "), e)
  end)
end)
