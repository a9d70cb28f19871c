-- The measuring helpers (the tutorial's performance chapter).

local support = require "spec.support"
local parallel = require "parallel"

local function busy(seconds)
  local t = parallel.now()
  local x = 0
  while parallel.now() - t < seconds do x = x + 1 end
  return x
end

describe("parallel.cpu_count", function()
  it("is an integer of at least 1", function()
    local n = parallel.cpu_count()
    assert.equal("integer", math.type(n))
    assert.is_true(n >= 1)
  end)
end)

describe("parallel.now", function()
  it("is a number that never goes backwards", function()
    local prev = parallel.now()
    assert.is_number(prev)
    for _ = 1, 10000 do
      local t = parallel.now()
      assert.is_true(t >= prev)
      prev = t
    end
  end)

  it("advances", function()
    local t0 = parallel.now()
    busy(0.01)
    assert.is_true(parallel.now() > t0)
  end)
end)

describe("parallel.sleep", function()
  it("sleeps at least the given seconds as measured by now", function()
    local t0 = parallel.now()
    parallel.sleep(0.05)
    assert.is_true(parallel.now() - t0 >= 0.05)
  end)

  it("returns at once for 0", function()
    parallel.sleep(0)
  end)

  it("raises bad argument for a non-number", function()
    assert.has_error(function() parallel.sleep("x") end, "bad argument #1 to 'sleep' (number expected, got string)")
  end)
end)

describe("parallel.cpu_time", function()
  it("increases under a busy loop", function()
    -- on a loaded machine a wall-clock slice may get little CPU: spin until
    -- 0.05 s of CPU went by (it must, within 20 s of wall time)
    local c0, t0 = parallel.cpu_time(), parallel.now()
    assert.is_number(c0)
    while parallel.cpu_time() - c0 < 0.05 and parallel.now() - t0 < 20 do busy(0.01) end
    assert.is_true(parallel.cpu_time() - c0 >= 0.05)
  end)

  it("barely increases while sleeping", function()
    local c0 = parallel.cpu_time()
    parallel.sleep(0.1)
    assert.is_true(parallel.cpu_time() - c0 < 0.05)
  end)
end)

describe("parallel.timeit", function()
  it("returns the seconds taken and fn's results", function()
    local s, a, b = parallel.timeit(function(x, y) return x + y, x * y end, 2, 3)
    assert.is_number(s)
    assert.is_true(s >= 0)
    assert.equal(5, a)
    assert.equal(6, b)
  end)

  it("measures the call's duration", function()
    local s = parallel.timeit(parallel.sleep, 0.05)
    assert.is_true(s >= 0.05)
  end)

  it("keeps nil results", function()
    local r = table.pack(parallel.timeit(function() return nil, 2 end))
    assert.equal(3, r.n)
    assert.is_nil(r[2])
    assert.equal(2, r[3])
  end)
end)

describe("parallel.speedup", function()
  it("returns speedup and efficiency", function()
    local s, e = parallel.speedup(10, 5, 2)
    assert.equal(2, s)
    assert.equal(1.0, e)
  end)

  it("computes efficiency as speedup / n", function()
    local s, e = parallel.speedup(12, 4, 4)
    assert.equal(3, s)
    assert.equal(0.75, e)
  end)
end)

describe("parallel.amdahl", function()
  it("is 1 / (s + (1 - s) / n)", function()
    assert.near(1 / (0.1 + 0.9 / 4), parallel.amdahl(0.1, 4), 1e-12)
  end)

  it("is n for no serial part and 1 for all serial", function()
    assert.near(8, parallel.amdahl(0, 8), 1e-12)
    assert.near(1, parallel.amdahl(1, 8), 1e-12)
  end)
end)

describe("parallel.gustafson", function()
  it("is n - s * (n - 1)", function()
    assert.near(4 - 0.1 * 3, parallel.gustafson(0.1, 4), 1e-12)
  end)

  it("is n for no serial part", function()
    assert.near(8, parallel.gustafson(0, 8), 1e-12)
  end)
end)
