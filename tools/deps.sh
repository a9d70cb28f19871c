#!/bin/sh
# Installs the Debian packages parallel needs when they are missing.
# Runs as root (apt-get) on a fresh machine; does nothing when all are present.
need=""
command -v lua5.4 >/dev/null 2>&1 || need="$need lua5.4"
[ -f /usr/include/lua5.4/lua.h ] || need="$need liblua5.4-dev"
command -v luarocks >/dev/null 2>&1 || need="$need luarocks"
command -v busted >/dev/null 2>&1 || need="$need lua-busted"
[ -f /usr/share/lua/5.4/socket.lua ] || [ -f /usr/share/lua/5.4/socket/init.lua ] || need="$need lua-socket"
command -v gcc >/dev/null 2>&1 || need="$need gcc"
command -v make >/dev/null 2>&1 || need="$need make"
[ -z "$need" ] && exit 0
echo "installing:$need"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
