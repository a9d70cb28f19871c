-- What the specs share: finding the module in this checkout when busted
-- runs without the Makefile's LUA_PATH, and assertions on errors.
if not package.searchpath("parallel.core", package.cpath) then
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end

local assert = require "luassert"

local M = {}

-- The error value of fn(...), which must raise.
function M.error_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

-- Asserts that fn raises exactly msg, allowing only a "file:line: " position prefix.
function M.assert_raises(msg, fn, ...)
  local e = M.error_of(fn, ...)
  assert.is_string(e)
  assert.equal(msg, (e:gsub("^[^\n]-:%d+: ", "", 1)))
end

-- Asserts that fn raises a string error containing text (plain).
function M.assert_raises_containing(text, fn, ...)
  local e = M.error_of(fn, ...)
  assert.is_string(e)
  assert.is_truthy(e:find(text, 1, true), ("%q not found in %q"):format(text, e))
end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs code in a child lua5.4 with this checkout's paths, after an optional
-- shell prelude (`ulimit -v ...`), killed after 10 s. Returns its stdout,
-- stderr, exit status and the seconds it took.
function M.run_lua(code, prelude)
  local base = os.tmpname()
  local script, errf = base .. ".lua", base .. ".err"
  local f = assert(io.open(script, "w")); f:write(code); f:close()
  local cmd = ("%s LUA_PATH=%s LUA_CPATH=%s timeout 10 lua5.4 %s 2>%s"):format(
    prelude or "", M.shell_quote(package.path), M.shell_quote(package.cpath), script, errf)
  local clock = require("parallel").now
  local t0 = clock()
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local _, _, status = p:close()
  local elapsed = clock() - t0
  local ef = io.open(errf, "r")
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(script); os.remove(errf); os.remove(base)
  return out, err, status, elapsed
end

-- Occupies one worker of pool until release() is called. Returns the
-- task's future, a function that returns once the task runs, and release.
function M.occupy(pool)
  local parallel = require "parallel"
  local started, go = parallel.event(), parallel.event()
  local f = pool:submit(function(s, g)
    s:set()
    g:wait(10)
    return "released"
  end, started, go)
  local function running() assert.is_true(started:wait(10)) end
  local function release() go:set() end
  return f, running, release
end

return M
