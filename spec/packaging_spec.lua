-- Packaging: the licence and what the rockspecs promise.

local function rockspec(path)
  local env = {}
  local chunk = assert(loadfile(path, "t", env))
  chunk()
  return env
end

local ROCKSPECS = {
  "parallel-scm-1.rockspec",
  "rockspecs/parallel-0.1.0-1.rockspec",
}

describe("packaging", function()
  it("has an MIT LICENSE with the copyright line", function()
    local f = assert(io.open("LICENSE"))
    local text = f:read("a")
    f:close()
    assert.is_truthy(text:find("^MIT License\n"))
    assert.is_truthy(text:find("Copyright (c) 2026 the parallel authors", 1, true))
    assert.is_truthy(text:find("THE SOFTWARE IS PROVIDED \"AS IS\"", 1, true))
  end)

  for _, path in ipairs(ROCKSPECS) do
    it(path .. " says MIT, Linux only, and runs busted for luarocks test", function()
      local r = rockspec(path)
      assert.equal("MIT", r.description.license)
      assert.same({ "linux" }, r.supported_platforms)
      assert.same({ type = "busted" }, r.test)
    end)
  end
end)
