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

return M
