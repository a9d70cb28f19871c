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

-- The one child-process runner of the specs. Runs a lua5.4 child with this
-- checkout's paths, killed after opts.timeout seconds (default 10):
--   code     Lua source to run (written to a temporary file), or
--   file     a script to run, with opts.args (strings) after it
--   prelude  shell text before the command (`ulimit -v 100000;`)
--   cwd      directory to run in
--   ready    when set, the child's first line of output must be
--            "ready <pid>": ready(pid) is called then (to send a signal),
--            and the elapsed time counts from that moment
-- Returns stdout, stderr, the exit status and the seconds it took.
function M.run_child(opts)
  local base = os.tmpname()
  local script, errf = opts.file, base .. ".err"
  if opts.code then
    script = base .. ".lua"
    local f = assert(io.open(script, "w")); f:write(opts.code); f:close()
  end
  local args = {}
  for i, a in ipairs(opts.args or {}) do args[i] = M.shell_quote(a) end
  local cmd = ("%s %s LUA_PATH=%s LUA_CPATH=%s timeout %d lua5.4 %s %s 2>%s"):format(
    opts.cwd and ("cd " .. M.shell_quote(opts.cwd) .. " &&") or "", opts.prelude or "",
    M.shell_quote(package.path), M.shell_quote(package.cpath), opts.timeout or 10,
    M.shell_quote(script), table.concat(args, " "), errf)
  local clock = require("parallel").now
  local function cleanup()
    local ef = io.open(errf, "r")
    local err = ef and ef:read("a") or ""
    if ef then ef:close() end
    if opts.code then os.remove(script) end
    os.remove(errf); os.remove(base)
    return err
  end
  local t0 = clock()
  local p = io.popen(cmd, "r")
  local out = ""
  if opts.ready then
    local line = p:read("l")
    local pid = line and line:match("^ready (%d+)$")
    if not pid then
      local rest = p:read("a"); p:close()
      error("the child did not get ready: " .. tostring(line) .. (rest or "") .. cleanup())
    end
    t0 = clock()
    opts.ready(pid)
  end
  out = p:read("a")
  local _, _, status = p:close()
  local elapsed = clock() - t0
  return out, cleanup(), status, elapsed
end

-- run_child for code, after an optional shell prelude (`ulimit -v ...`).
function M.run_lua(code, prelude)
  return M.run_child{ code = code, prelude = prelude }
end

-- Runs setup (optional), then code in a child that says it is ready in
-- between, and sends it SIGINT then (a signal before lua.c installs its
-- handler would just kill it). Returns stdout after ready, stderr, the exit
-- status and the seconds from the signal to the exit.
function M.run_interrupted(code, setup)
  return M.run_child{
    code = (setup or "") .. '\nio.stdout:write("ready ", io.open("/proc/self/stat"):read("n"), "\\n") '
      .. 'io.stdout:flush()\n' .. code,
    ready = function(pid) os.execute("kill -INT " .. pid) end,
  }
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

-- Source that child scripts of the process specs start with: my_pid(),
-- workers() (this process's worker processes, by their command line:
-- io.popen's shell is a child too) and alive(pid) (exists, not a zombie).
M.PROCESS_PRELUDE = [[
local function my_pid() return io.open("/proc/self/stat"):read("n") end
local function workers()
  local t = {}
  local ls = io.popen("cat /proc/" .. my_pid() .. "/task/*/children")
  for pid in ls:read("a"):gmatch("%d+") do
    local f = io.open("/proc/" .. pid .. "/cmdline")
    if f and f:read("a"):find("--parallel-worker", 1, true) then t[#t + 1] = tonumber(pid) end
    if f then f:close() end
  end
  ls:close()
  return t
end
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local st = f:read("a"); f:close()
  return st:match("^%d+ %b() (%a)") ~= "Z"
end
]]
M.alive = assert(load(M.PROCESS_PRELUDE .. "return alive", "=process prelude"))()

-- PARALLEL_TEST_BACKEND=process (make test-process): every pool the specs
-- make with parallel.pool is a process pool unless it names its backend.
-- Tests of what only thread pools have are tagged #threads.
M.backend = os.getenv("PARALLEL_TEST_BACKEND") or "threads"
if M.backend ~= "threads" then
  local parallel = require "parallel"
  local make = parallel.pool
  parallel.pool = function(opts, ...)
    if opts == nil or math.type(opts) == "integer" then opts = { workers = opts } end
    if type(opts) == "table" and opts.backend == nil then
      local copy = {}
      for k, v in pairs(opts) do copy[k] = v end
      copy.backend = M.backend
      opts = copy
    end
    return make(opts, ...)
  end
end

return M
