-- lua5.4 tools/docs-index.lua config.ld docs/index.html
-- Gives each example and topic of the reference's index its one-line
-- description: LDoc lists them by file name only. The description is the first
-- sentence of the file's header comment, without a leading "<name>: ".
local config, index = arg[1], arg[2]

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local M = {}

-- The examples listed in config.ld, in order.
function M.examples(config_text)
  local block = config_text:match("\nexamples%s*=%s*(%b{})")
  local list = {}
  for path in (block or ""):gmatch('"([^"]+)"') do list[#list + 1] = path end
  return list
end

-- The topics listed in config.ld.
function M.topics(config_text)
  local block = config_text:match("\ntopics%s*=%s*(%b{})")
  local list = {}
  for path in (block or ""):gmatch('"([^"]+)"') do list[#list + 1] = path end
  return list
end

-- A topic's description: the first paragraph after its title.
function M.topic_description(path)
  local text = read(path)
  return text:match("^#[^\n]*\n+([^\n]+)") or ""
end

-- The first paragraph of a file's header comment (Lua `--` lines or a C
-- `/* ... */` block), as one line.
function M.description(path)
  local lines, started = {}, false
  for line in io.lines(path) do
    local text = line:match("^%-%-+%s?(.*)$") or line:match("^%s*/?%*+%s?(.-)%s*$")
    if not text then break end
    if text == "" or text == "/" then
      if started then break end
    else
      started = true
      lines[#lines + 1] = text
    end
  end
  local s = table.concat(lines, " ")
  local base = path:match("[^/]+$")
  s = s:gsub("^" .. base:gsub("%p", "%%%0") .. "%s*%-*:?%s*", "")
  return s:match("^(.-[.:])%s") or s   -- its first sentence
end

local function escape(s)
  return (s:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

-- Backquoted words become code, as in the rest of the reference.
local function render(s)
  return (escape(s):gsub("`([^`]+)`", "<code>%1</code>"))
end

if config and index then
  local html = read(index)
  local missing = {}
  for _, path in ipairs(M.examples(read(config))) do
    local base = path:match("[^/]+$")
    local desc = M.description(path)
    local pat = '(<a href="examples/' .. base:gsub("%p", "%%%0") .. '%.html">[^<]*</a></td>%s*<td class="summary">)(</td>)'
    local n
    html, n = html:gsub(pat, function(a, b) return a .. render(desc) .. b end)
    if n ~= 1 or desc == "" then missing[#missing + 1] = path end
  end
  for _, path in ipairs(M.topics(read(config))) do
    local base = path:match("[^/]+$")
    local desc = M.topic_description(path)
    local pat = '(<a href="topics/' .. base:gsub("%p", "%%%0") .. '%.html">[^<]*</a></td>%s*<td class="summary">)(</td>)'
    local n
    html, n = html:gsub(pat, function(a, b) return a .. render(desc) .. b end)
    if n ~= 1 or desc == "" then missing[#missing + 1] = path end
  end
  if #missing > 0 then
    io.stderr:write("docs-index: no description for: ", table.concat(missing, ", "), "\n")
    os.exit(1)
  end
  local f = assert(io.open(index, "wb"))
  f:write(html)
  f:close()
end

return M
