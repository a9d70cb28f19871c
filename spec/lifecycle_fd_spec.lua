-- A host that opens and closes Lua states using parallel (build/test/cycle,
-- from spec/cycle.c) ends each cycle with the descriptors it had: core.so,
-- unloaded by lua_close, kept /proc/loadavg open (the waiting policy's
-- sample), one more per cycle.
local support = require "spec.support"

local CYCLE = os.getenv("PARALLEL_CYCLE") or "./build/test/cycle"

describe("a host that opens and closes states", function()
  it("keeps no descriptor of a state it closed #child", function()
    local out, err, status = support.run_child{ code = ([[
      local f = io.popen(%q .. " 2>&1")
      io.write(f:read("a"))
      f:close()
    ]]):format(support.shell_quote(CYCLE)), timeout = 60 }
    assert.equal(0, status, err)
    local counts = {}
    for n in out:gmatch("%d+") do counts[#counts + 1] = n end
    assert.equal(6, #counts, out)
    for i = 2, 6 do assert.equal(counts[1], counts[i], out) end
  end)
end)
