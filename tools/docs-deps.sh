#!/bin/sh
# Installs what `make docs` needs when it is missing: LDoc and a Markdown
# formatter it accepts. Debian's lua-ldoc runs under Lua 5.1 or 5.2, and
# its Markdown formatters are lua-discount (5.1, 5.2: tables, fenced code
# through LDoc) and lua-markdown (5.1); the reference uses discount.
# Runs as root (apt-get) on a fresh machine; does nothing when all are there.
need=""
[ -f /usr/bin/ldoc ] || need="$need lua-ldoc"   # Debian's, run by lua5.1 (not a LuaRocks ldoc)
command -v lua5.1 >/dev/null 2>&1 || need="$need lua5.1"
lua5.1 -e 'require "discount"' >/dev/null 2>&1 || need="$need lua-discount"
lua5.1 -e 'require "lfs"; require "pl.path"' >/dev/null 2>&1 || need="$need lua-filesystem lua-penlight"
[ -z "$need" ] && exit 0
echo "installing:$need"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
