-- lua5.4 tools/docs-check.lua (make docs-check, after make all and make docs)
-- Checks the generated reference in docs/ against the code:
--   * LDoc ran cleanly (no "format: markdown not found", no warning) and
--     the Markdown was rendered (no raw backticks, tables became tables);
--   * every function of `require "parallel"` and every method of every
--     object type (the C binding's and the facade's, found at run time),
--     every entry of the C binding's luaL_Reg tables (src/lua, src/mpi)
--     and every name of API.md and of the README's API section has its
--     entry in the reference;
--   * every entry of the reference exists in the module (nothing stale);
--   * every option key the module checks (the facade's *_OPTIONS tables,
--     the C l_option tables) is documented;
--   * every example is in the index with a description;
--   * nothing internal leaks (underscore names, TODO notes).
-- API.md is ../shared/API.md, or PARALLEL_API_MD; skipped when absent, and
-- its names only warn unless DOCS_API_STRICT=1 (make docs-check).
package.path = "tools/?.lua;" .. package.path

local failures = {}
local function fail(fmt, ...) failures[#failures + 1] = string.format(fmt, ...) end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function files(dir, pattern)
  local out = {}
  local p = io.popen('find "' .. dir .. '" -type f -name "' .. pattern .. '" 2>/dev/null | sort')
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- LDoc's log: only its two usual lines.
local log = read("build/doc/ldoc.log") or ""
if log == "" then fail("build/doc/ldoc.log is missing: run make docs first") end
for line in log:gmatch("[^\n]+") do
  if not (line:match("^reading configuration from") or line:match("^output written to")) then
    fail("LDoc said: %s", line)
  end
end

-- The pages, and the anchors of their entries.
local pages, anchors, text = {}, {}, {}
for _, path in ipairs(files("docs", "*.html")) do
  local html = read(path)
  pages[path] = html
  for name in html:gmatch('<a name%s*=%s*"([^"]+)"') do
    anchors[name] = anchors[name] or {}
    anchors[name][path] = true
  end
end
if not pages["docs/index.html"] then
  fail("docs/index.html is missing: run make docs first")
end

-- Markdown rendered: outside <pre> blocks no backtick is left.
for path, html in pairs(pages) do
  local prose = html:gsub("<pre>.-</pre>", "")
  text[path] = prose
  local at = prose:find("`", 1, true)
  if at then
    fail("%s: a raw backtick (Markdown not rendered): ...%s...", path,
         prose:sub(math.max(1, at - 60), at + 20):gsub("%s+", " "))
  end
end
local transfer = pages["docs/topics/transfer.md.html"] or ""
if not transfer:find("<table>", 1, true) or not transfer:find("<code>", 1, true) then
  fail("docs/topics/transfer.md.html: its tables and code were not rendered")
end

local function has(page, name)
  return anchors[name] and anchors[name][page]
end

-- Run-time surface of the module.
local parallel = require "parallel"
local core = require "parallel.core"
for name, v in pairs(parallel) do
  if name:sub(1, 1) ~= "_" and type(v) == "function" and not has("docs/modules/parallel.html", name) then
    fail("parallel.%s is not in the reference (doc/parallel.luadoc)", name)
  end
end

-- object type --> the page that documents it
local TYPES = {
  pool = "pool", future = "future", queue = "queue", pipe = "pipe", lock = "lock",
  rlock = "lock", semaphore = "semaphore", condition = "condition", event = "event",
  barrier = "barrier", array = "array", value = "value", dict = "dict",
}
local methods_of = {}
for tname, page in pairs(TYPES) do
  local methods = core._methods("parallel." .. tname)
  if type(methods) == "function" then
    -- an __index function (arrays, dicts): its method table is an upvalue
    local t, i = {}, 1
    while true do
      local name, up = debug.getupvalue(methods, i)
      if not name then break end
      if type(up) == "table" then
        for k, v in pairs(up) do if type(v) == "function" then t[k] = v end end
      end
      i = i + 1
    end
    methods = t
  end
  if not methods then
    fail("no metatable parallel.%s: update TYPES in tools/docs-check.lua", tname)
  else
    methods_of[page] = methods_of[page] or {}
    for name in pairs(methods) do
      if name:sub(1, 1) ~= "_" then methods_of[page][name] = true end
    end
  end
end
do
  local t = parallel.timer(3600, function() end)
  methods_of.timer = {}
  for name in pairs(getmetatable(t).__index) do
    if name:sub(1, 1) ~= "_" then methods_of.timer[name] = true end
  end
  t:cancel()
end
for page, methods in pairs(methods_of) do
  for name in pairs(methods) do
    if not has("docs/classes/" .. page .. ".html", page .. ":" .. name) then
      fail("%s:%s is not in the reference (doc/%s.luadoc)", page, name, page)
    end
  end
end

-- The C binding's luaL_Reg tables, read from the source (the MPI module
-- too, which make all does not build). Tables of internal objects, reached
-- only through underscore functions, are left out.
local INTERNAL_TABLES = { waitset_methods = true, methods = true }
local REG_PAGE = {
  array_methods = "array", value_methods = "value", dict_methods = "dict",
  future_methods = "future", pool_methods = "pool", queue_methods = "queue",
  pipe_methods = "pipe", lockish_methods = "lock", lock_methods = "lock",
  semaphore_methods = "semaphore", condition_methods = "condition",
  event_methods = "event", barrier_methods = "barrier",
}
local sources = files("src/lua", "*.c")
for _, p in ipairs(files("src/mpi", "*.c")) do sources[#sources + 1] = p end
for _, path in ipairs(sources) do
  local src = read(path)
  for tname, body in src:gmatch("luaL_Reg%s+([%w_]+)%[%]%s*=%s*(%b{})") do
    if not INTERNAL_TABLES[tname] then
      for name in body:gmatch('{%s*"([%w_]+)"') do
        if name:sub(1, 1) ~= "_" then
          local ok
          if REG_PAGE[tname] then
            ok = has("docs/classes/" .. REG_PAGE[tname] .. ".html", REG_PAGE[tname] .. ":" .. name)
          elseif path:match("src/mpi/") then
            ok = has("docs/modules/parallel.mpi.html", name)
          elseif tname:match("^constructors$") or tname:match("_funcs$") then
            ok = has("docs/modules/parallel.html", name)
          else
            fail("%s: luaL_Reg table %s is not known to tools/docs-check.lua (REG_PAGE)", path, tname)
            ok = true
          end
          if not ok then fail("%s (%s in %s) is not in the reference", name, tname, path) end
        end
      end
    end
  end
end

-- And the other way: every entry of the reference is something the module
-- has (a method of a pool may be an MPI pool's only).
local mpi_src = read("src/mpi/l_mpi.c") or ""
local mpi_funcs, mpi_pool = {}, {}
local function reg_names(src, tname, into)
  local body = src:match("luaL_Reg%s+" .. tname .. "%[%]%s*=%s*(%b{})") or ""
  for name in body:gmatch('{%s*"([%w_]+)"') do into[name] = true end
end
reg_names(mpi_src, "funcs", mpi_funcs)
reg_names(mpi_src, "pool_methods", mpi_pool)
for path, html in pairs(pages) do
  for entry in html:gmatch('<a name = "([^"]+)"></a>') do
    local page = path:match("^docs/classes/(.-)%.html$")
    if path == "docs/modules/parallel.html" then
      if entry ~= "_VERSION" and type(parallel[entry]) ~= "function" then
        fail("%s documents parallel.%s, which the module does not have", path, entry)
      end
    elseif path == "docs/modules/parallel.mpi.html" then
      if not mpi_funcs[entry] then fail("%s documents %s, which src/mpi/l_mpi.c does not register", path, entry) end
    elseif page then
      local t, m = entry:match("^(.-):(.+)$")
      if t ~= page or not ((methods_of[page] or {})[m] or (page == "pool" and mpi_pool[m])) then
        fail("%s documents %s, which parallel.%s does not have", path, entry, page)
      end
    end
  end
end

-- Names of the API documents: parallel.name(...) and :method(...).
local function any_method(name)
  for a in pairs(anchors) do
    if a:match(":" .. name .. "$") then return true end
  end
  return false
end
local function check_api_text(label, s)
  for name in s:gmatch("parallel%.([%a][%w_]*)%s*[%({]") do
    if not has("docs/modules/parallel.html", name) and not has("docs/modules/parallel.mpi.html", name)
       and name ~= "mpi" then
      fail("%s names parallel.%s, which is not in the reference", label, name)
    end
  end
  for name in s:gmatch("[%w_]:([%a][%w_]*)%(") do
    if not any_method(name) then
      fail("%s names the method :%s, which is not in the reference", label, name)
    end
  end
end
local readme = read("README.md") or ""
local api_section = readme:match("\n## API\n(.-)\n## Common mistakes") or readme
local blocks = {}
for code in api_section:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
check_api_text("README.md's API section", table.concat(blocks, "\n"))
if not readme:find("docs/index.html", 1, true) then fail("README.md does not link the reference (docs/index.html)") end
local api_md_path = os.getenv("PARALLEL_API_MD") or "../shared/API.md"
local api_md = read(api_md_path)
if api_md then
  local code = {}
  for c in api_md:gmatch("```lua\n(.-)```") do code[#code + 1] = c end
  if os.getenv("DOCS_API_STRICT") == "1" then
    check_api_text(api_md_path, table.concat(code, "\n"))
  else
    local before = #failures
    check_api_text(api_md_path, table.concat(code, "\n"))
    for i = #failures, before + 1, -1 do
      print("docs-check: warning: " .. table.remove(failures, i))
    end
  end
else
  print("docs-check: " .. api_md_path .. " not found, its names not checked")
end

-- Option keys: the facade's tables and the C binding's l_option tables.
local all_text = {}
for _, s in pairs(text) do all_text[#all_text + 1] = s end
all_text = table.concat(all_text, "\n")
local function documented_option(key)
  return all_text:find("<code>" .. key .. "</code>", 1, true)
    or all_text:find("<code>" .. key .. " =", 1, true)
    or all_text:find("<code>{" .. key .. " =", 1, true)
    or all_text:find(", " .. key .. " =", 1, true)
end
local facade = read("lua/parallel/init.lua")
for tname, body in facade:gmatch("local%s+([%u_]*OPTIONS)%s*=%s*(%b{})") do
  for key in body:gmatch("([%a_][%w_]*)%s*=") do
    if not documented_option(key) then fail("option %s (%s in the facade) is not documented", key, tname) end
  end
end
for _, path in ipairs(sources) do
  for tname, body in (read(path)):gmatch("l_option%s+([%w_]+)%[%]%s*=%s*(%b{})") do
    for key in body:gmatch('{%s*"([%w_]+)"') do
      if not documented_option(key) then fail("option %s (%s in %s) is not documented", key, tname, path) end
    end
  end
end

-- Examples: each in the index, with its description.
local index_mod = require "docs-index"
local listed = {}
for _, p in ipairs(index_mod.examples(read("config.ld"))) do listed[p] = true end
local example_files = files("examples", "*.lua")
for _, p in ipairs(files("examples", "*.c")) do example_files[#example_files + 1] = p end
local index = pages["docs/index.html"] or ""
for _, path in ipairs(example_files) do
  local base = path:match("[^/]+$")
  if not listed[path] then
    fail("%s is not among the examples of config.ld", path)
  else
    local summary = index:match('<a href="examples/' .. base:gsub("%p", "%%%0")
                                .. '%.html">[^<]*</a></td>%s*<td class="summary">(.-)</td>')
    if not summary or summary:gsub("<[^>]*>", ""):match("^%s*$") then
      fail("%s has no description in the index", path)
    end
  end
end

-- Nothing internal: the reference's own pages (not the examples' source).
for path, prose in pairs(text) do
  if not path:match("^docs/examples/") then
    local plain = prose:gsub("<[^>]*>", " ")
    for _, marker in ipairs({ "TODO", "FIXME", "XXX" }) do
      if plain:find(marker, 1, true) then fail("%s: an internal note (%s)", path, marker) end
    end
    for name in plain:gmatch("[%.:]_([%a][%w_]*)") do
      if name ~= "VERSION" then fail("%s: an internal name (_%s)", path, name) end
    end
  end
end

if #failures > 0 then
  io.stderr:write("docs-check: the reference does not match the code:\n")
  for _, f in ipairs(failures) do io.stderr:write("  ", f, "\n") end
  os.exit(1)
end
print("docs-check: the reference covers the module")
