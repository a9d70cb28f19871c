-- The progress bar of the map family (progress = true): it fits the
-- terminal, redraws in place, shows the first and the final state, and
-- goes without a total when there is none.

local support = require "spec.support"
local progress = require "parallel.progress"

-- Collects what the bar writes.
local function sink()
  local s = { text = "" }
  function s:write(...) for _, v in ipairs{...} do self.text = self.text .. v end end
  function s:flush() end
  return s
end

-- The states drawn, in order: the text between carriage returns, trailing
-- padding removed.
local function frames(text)
  local t = {}
  for f in text:gmatch("\r([^\r]*)") do t[#t + 1] = (f:gsub("\n$", ""):gsub(" +$", "")) end
  return t
end

describe("progress.line", function()
  it("fits every width, leaving the last column free", function()
    for width = 1, 120 do
      for _, total in ipairs{false, 7, 123456} do
        for _, done in ipairs{0, 3, 7} do
          local l = progress.line(done, total or nil, 2.5, width, done == 7)
          assert.is_true(#l <= math.max(1, width - 1), ("%d columns: %q"):format(width, l))
        end
      end
    end
  end)

  it("shows done/total, the rate and the ETA, with a bar when there is room", function()
    local half = ("#"):rep(20) .. ("."):rep(20)
    assert.equal("[" .. half .. "] 5/10 2 items/s ETA 2.5s", progress.line(5, 10, 2.5, 80))
    assert.equal("5/10 2/s ETA 2.5s", progress.line(5, 10, 2.5, 20))
    assert.equal("[" .. ("#"):rep(40) .. "] 10/10 2 items/s 5.0s", progress.line(10, 10, 5, 80, true))
    -- the bar keeps its width while the text grows
    local a, b = progress.line(1, 10, 1, 50), progress.line(9, 10, 0.001, 50)
    assert.equal(#a:match("%b[]"), #b:match("%b[]"))
  end)

  it("shows items done and the rate without a total", function()
    assert.equal("40 items 16 items/s", progress.line(40, nil, 2.5, 80))
    assert.equal("40 items 16 items/s 2.5s", progress.line(40, nil, 2.5, 80, true))
    assert.equal("40 16/s", progress.line(40, nil, 2.5, 12))
  end)
end)

describe("progress.new(true, total, out)", function()
  local interval = progress.interval
  before_each(function() progress.interval = 0 end)
  after_each(function() progress.interval = interval end)

  it("draws the first state at once, redraws in place and ends with the final state and one newline", function()
    local out = sink()
    local report = progress.new(true, 100, out)
    assert.equal("0/100", frames(out.text)[1]:match("%d+/%d+"))
    for i = 1, 100 do report(i, 100) end
    assert.equal(101, #frames(out.text))
    report(100, 100, true)
    report(100, 100, true)       -- once only
    local f = frames(out.text)
    assert.equal("100/100", f[#f]:match("%d+/%d+"))
    assert.equal(1, select(2, out.text:gsub("\n", "")))
    assert.equal("\n", out.text:sub(-1))
  end)

  it("pads a shorter redraw over the longer line before it", function()
    local out = sink()
    local report = progress.new(true, nil, out)
    report(123456)
    report(7, nil, true)
    local last = out.text:match("\r([^\r]*)$")
    local before = out.text:match("\r([^\r]*)\r[^\r]*$")
    assert.is_true(#last - 1 >= #before, ("%q over %q"):format(last, before))
  end)
end)

local has_script = os.execute("command -v script >/dev/null 2>&1")

-- Runs code in a child whose stderr is a terminal (script(1) makes one);
-- returns what the terminal received.
local function on_terminal(code, env)
  local base = os.tmpname()
  local file = base .. ".lua"
  local f = assert(io.open(file, "w")); f:write(code); f:close()
  local cmd = ("%s LUA_PATH=%s LUA_CPATH=%s timeout 20 script -qfec %s /dev/null"):format(
    env or "", support.shell_quote(package.path), support.shell_quote(package.cpath),
    support.shell_quote("stty cols 40 rows 10 2>/dev/null; lua5.4 " .. file .. " 2>&1 >/dev/null"))
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(file); os.remove(base)
  return out, status
end

local MAP = [[
  local parallel = require "parallel"
  local pool <close> = parallel.pool(2)
  local go = parallel.event()
  %s
]]

describe("the progress bar on a terminal #child", function()
  local it_tty = has_script and it or pending

  local function check_fits(out, columns)
    local text = out:gsub("\r\n", "\n")
    assert.equal(1, select(2, text:gsub("\n", "")), ("one newline, at the end: %q"):format(text))
    for _, f in ipairs(frames(text)) do
      assert.is_true(#f <= columns - 1, ("%q is wider than %d columns"):format(f, columns - 1))
    end
    return frames(text)
  end

  it_tty("fits 40 columns given by COLUMNS, redrawn in place: map", function()
    local out, status = on_terminal(MAP:format([[
      pool:map(function(x) parallel.sleep(0.02); return x end, (function()
        local t = {} for i = 1, 40 do t[i] = i end return t end)(), {chunksize = 1, progress = true})
    ]]), "COLUMNS=40")
    assert.equal(0, status, out)
    local f = check_fits(out, 40)
    assert.equal("0/40", f[1]:match("%d+/%d+"))
    assert.equal("40/40", f[#f]:match("%d+/%d+"))
    assert.is_true(#f >= 3, out)
  end)

  it_tty("fits the terminal's own width without COLUMNS", function()
    local out, status = on_terminal(MAP:format([[
      pool:map(function(x) parallel.sleep(0.02); return x end, {1, 2, 3, 4, 5, 6, 7, 8}, {chunksize = 1, progress = true})
    ]]), "env -u COLUMNS")
    assert.equal(0, status, out)
    local f = check_fits(out, 40)
    assert.equal("8/8", f[#f]:match("%d+/%d+"))
  end)

  it_tty("shows items done and the rate without a total: imap over an iterator", function()
    local out, status = on_terminal(MAP:format([[
      local i = 0
      for _ in pool:imap_unordered(function(x) return x end, function()
        i = i + 1
        if i <= 50 then return i end
      end, {chunksize = 5, progress = true}) do end
    ]]), "COLUMNS=40")
    assert.equal(0, status, out)
    local f = check_fits(out, 40)
    assert.matches("^50 items %d+ items/s", f[#f])
    for _, s in ipairs(f) do assert.is_nil(s:find("/%d"), s) end
  end)

  it_tty("shows where imap stopped when the loop breaks", function()
    local out, status = on_terminal(MAP:format([[
      local list = {} for i = 1, 100 do list[i] = i end
      for i in pool:imap(function(x) return x end, list, {chunksize = 5, progress = true}) do
        if i == 30 then break end
      end
      io.stderr:write("after")
    ]]), "COLUMNS=40")
    assert.equal(0, status, out)
    local text = out:gsub("\r\n", "\n")
    local bar, rest = text:match("^(.-)\n(.*)$")
    assert.equal("after", rest)
    local f = frames(bar)
    assert.equal("30/100", f[#f]:match("%d+/%d+"))
  end)

  it_tty("shows the final state when an item fails", function()
    local out = on_terminal(MAP:format([[
      pool:map(function(x) if x == 6 then error("no") end return x end, {1, 2, 3, 4, 5, 6}, {chunksize = 1, progress = true})
    ]]), "COLUMNS=40")
    local text = out:gsub("\r\n", "\n")
    local bar = text:match("^(.-)\n")
    assert.is_truthy(bar, text)
    assert.matches("%d/6", frames(bar .. "\n")[#frames(bar .. "\n")])
  end)
end)
