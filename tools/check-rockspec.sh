#!/bin/sh
# Checks the packaging: both rockspecs pass `luarocks lint`, `luarocks make`
# installs the scm rockspec into a fresh temporary tree (no network: the only
# dependency is Lua itself), and a script run against that tree -- and nothing
# from the checkout -- uses the facade, the core and a worker.
# Usage: tools/check-rockspec.sh   (from anywhere; LUA defaults to lua5.4)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
LUA=${LUA:-lua5.4}
tree=$(mktemp -d "${TMPDIR:-/tmp}/parallel-rock.XXXXXX")
trap 'rm -rf "$tree"' EXIT INT TERM

echo "== luarocks lint"
luarocks lint parallel-scm-1.rockspec
for r in rockspecs/*.rockspec; do luarocks lint "$r"; done

echo "== luarocks make --tree=$tree"
luarocks --lua-version=5.4 make --tree="$tree" parallel-scm-1.rockspec

echo "== a script against the installed tree"
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4
eval "$(luarocks --lua-version=5.4 --tree="$tree" path)"
cd "$tree"
"$LUA" - "$tree" "$repo" <<'LUA'
local tree, repo = ...
local parallel = require "parallel"
local function from(name, path)
  local file = assert(package.searchpath(name, path), name .. " not found")
  assert(file:sub(1, #tree) == tree, name .. " loaded from " .. file .. ", not from the tree")
  assert(file:sub(1, #repo) ~= repo, name .. " loaded from the checkout")
  return file
end
print("parallel          " .. from("parallel", package.path))
print("parallel.progress " .. from("parallel.progress", package.path))
print("parallel.core     " .. from("parallel.core", package.cpath))
local pool <close> = parallel.pool(2)
local squares = pool:map(function(x) return x * x end, {1, 2, 3, 4, 5})
print("map               " .. table.concat(squares, " "))
assert(table.concat(squares, " ") == "1 4 9 16 25")
-- Workers get the creator's package.path: the facade loads there too.
local kind = pool:apply(function() return type(require("parallel.progress")) end)
print("worker require    " .. kind)
assert(require("parallel.core")._VERSION)
-- Process pools start the installed parallel-worker beside core.so.
local procs <close> = parallel.pool{backend = "process", workers = 2}
local cubes = procs:map(function(x) return x * x * x end, {1, 2, 3})
print("process map       " .. table.concat(cubes, " "))
assert(table.concat(cubes, " ") == "1 8 27")
print("rock-check: OK")
LUA
