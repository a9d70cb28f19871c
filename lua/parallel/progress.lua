--- Progress reporting for the map family: a one-line bar on stderr when it
-- is a terminal (done/total, items/s, ETA), or a user function.
local core = require "parallel.core"

local M = {}

local function bar(done, total, t0, final)
  local elapsed = core.now() - t0
  local rate = elapsed > 0 and done / elapsed or 0
  local line
  if total and total > 0 then
    local width = 30
    local filled = math.floor(width * done / total)
    local eta = rate > 0 and (total - done) / rate or 0
    line = string.format("\r[%s%s] %d/%d %.0f items/s ETA %.1fs ",
      string.rep("#", filled), string.rep(".", width - filled), done, total, rate, eta)
  else
    line = string.format("\r%d items %.0f items/s ", done, rate)
  end
  io.stderr:write(line, final and "\n" or "")
  io.stderr:flush()
end

--- progress.new(opt, total) --> report(done, total, final) or nil
function M.new(opt, total)
  if not opt then return nil end
  if type(opt) == "function" then
    local last = -1
    return function(done, t)
      if done ~= last then last = done; opt(done, t or total) end
    end
  end
  if not core._isatty(2) then return nil end
  local t0, last = core.now(), 0
  return function(done, t, final)
    local tnow = core.now()
    if final or tnow - last > 0.1 then
      last = tnow
      bar(done, t or total, t0, final)
    end
  end
end

return M
