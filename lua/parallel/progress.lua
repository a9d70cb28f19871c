--- Progress reporting for the map family: a one-line bar on stderr when it
-- is a terminal (done/total, items/s, ETA; done and items/s when the total
-- is unknown), or a user function.
--
-- The bar fits the terminal ($COLUMNS, else the terminal's own width, else
-- 80 columns; one column is left free, as a line that fills the last one
-- wraps on some terminals) and is redrawn in place with "\r": the first
-- state at once, then at most every 0.1 s, and the final state always,
-- followed by the only newline.
local core = require "parallel.core"

local floor, max, rep, format = math.floor, math.max, string.rep, string.format

local M = {}

local MAX_BAR = 40    -- columns of the bar itself, at most

M.interval = 0.1      -- seconds between redraws (the first and final are drawn at once)

--- The width of the terminal on descriptor fd (default 2, stderr).
function M.columns(fd)
  local c = math.tointeger(tonumber(os.getenv("COLUMNS")))
  if c and c > 0 then return c end
  c = core._term_columns(fd or 2)
  if c and c > 0 then return c end
  return 80
end

local function duration(s)
  if s ~= s or s == math.huge then return "?" end
  if s < 60 then return format("%.1fs", s) end
  if s < 3600 then return format("%dm%02ds", floor(s / 60), floor(s % 60)) end
  return format("%dh%02dm", floor(s / 3600), floor(s % 3600 / 60))
end

--- The bar's text for `done` items (of `total`, nil when unknown) after
-- `elapsed` seconds, in at most width - 1 characters.
function M.line(done, total, elapsed, width, final)
  local room = max(1, width - 1)
  local rate = elapsed > 0 and done / elapsed or 0
  local texts
  if total then
    local when = final and duration(elapsed)
      or "ETA " .. (rate > 0 and duration((total - done) / rate) or "?")
    texts = {
      format("%d/%d %.0f items/s %s", done, total, rate, when),
      format("%d/%d %.0f/s %s", done, total, rate, when),
      format("%d/%d", done, total),
    }
  else
    local after = final and " " .. duration(elapsed) or ""
    texts = {
      format("%d items %.0f items/s%s", done, rate, after),
      format("%d %.0f/s%s", done, rate, after),
      format("%d", done),
    }
  end
  local text = texts[#texts]
  for _, t in ipairs(texts) do
    if #t <= room then text = t; break end
  end
  local bar = total and total > 0 and math.min(MAX_BAR, room - #text - 3)
  if bar and bar >= 5 then
    -- the same width from one redraw to the next while the text grows
    -- to a rate of 6 digits and an ETA of minutes
    local steady = #format("%d/%d 999999 items/s ETA 59m59s", total, total)
    if #text == #texts[1] and room - steady - 3 >= 5 then bar = math.min(bar, room - steady - 3) end
    local filled = floor(bar * math.min(done, total) / total)
    text = "[" .. rep("#", filled) .. rep(".", bar - filled) .. "] " .. text
  end
  return text:sub(1, room)
end

--- progress.new(opt, total [, out]) --> report(done, total, final) or nil.
-- opt: true (the bar, on stderr when it is a terminal, or on `out`: any
-- object with write and flush), or a function called as fn(done, total).
-- After a final report, later calls do nothing.
function M.new(opt, total, out)
  if not opt then return nil end
  if type(opt) == "function" then
    local last = -1
    return function(done, t)
      if done ~= last then last = done; opt(done, t or total) end
    end
  end
  if not out then
    if not core._isatty(2) then return nil end
    out = io.stderr
  end
  local t0, drawn, shown, ended = core.now(), nil, 0, false
  local function draw(done, final)
    local tnow = core.now()
    if ended or not (final or not drawn or tnow - drawn >= M.interval) then return end
    drawn = tnow
    local width = M.columns()
    local text = M.line(done, total, tnow - t0, width, final)
    -- spaces over what a longer line before left, within the line
    local pad = rep(" ", max(0, math.min(shown, width - 1) - #text))
    shown = #text
    ended = final
    out:write("\r", text, pad, final and "\n" or "")
    out:flush()
  end
  draw(0)
  return function(done, _, final) draw(done, final) end
end

return M
