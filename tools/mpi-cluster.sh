#!/bin/sh
# make test-cluster IMPL: the MPI specs across three simulated hosts (as
# root; tools/mpi-netns.sh makes them, and removes them at the end with
# anything still running in them).
set -u
impl=$1
cd "$(dirname "$0")/.."
repo=$PWD
. tools/mpi-netns.sh
netns_up || exit 1
export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/spec/?.lua;;"
export LUA_CPATH="$repo/build/mpi-$impl/?.so;$repo/build/?.so;;"
export PARALLEL_MPI_EXPECT_HOSTS=3
launch=$(netns_launcher "$impl") || exit 1
echo "== make test-cluster: $impl, 3 simulated hosts ($hosts)"
cd "$netns_dir"
# A hard bound on the whole job: the specs take well under a minute here,
# start-up and the stop a few seconds (MPI_Finalize is given up on after
# PARALLEL_MPI_STOP_MS, 10 s by default, if it hangs: see src/mpi/comm.c).
timeout -k 10 240 ip netns exec ${netns_tag}h1 unshare --uts sh -c \
  "hostname $net.1; exec $launch -n 3 lua5.4 -l parallel.mpi $(command -v busted) --pattern=_mpi $repo/spec/mpi"
rc=$?
[ $rc -eq 124 ] && echo "test-cluster: the $impl job did not end within 240 s"
[ $rc -eq 0 ] || echo "test-cluster: the $impl specs failed across hosts (exit $rc)"
exit $rc
