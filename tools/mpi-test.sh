#!/bin/sh
# make test-mpi, for one MPI implementation (openmpi or mpich): the MPI
# specs under the launcher (rank 0 runs busted, the others serve), then the
# example, small, and the fail-stop tests. Expects build/mpi-$1/parallel/mpi.so and build/parallel/core.so.
set -u
impl=$1
cd "$(dirname "$0")/.."
. tools/mpi-launch.sh
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/spec/?.lua;;"
export LUA_CPATH="$PWD/build/mpi-$impl/?.so;$PWD/build/?.so;;"
echo "== make test-mpi: $impl ($(mpi_launcher $impl))"
timeout -k 10 240 $(mpi_launcher "$impl") -n 3 lua5.4 -l parallel.mpi "$(command -v busted)" \
  --pattern=_mpi spec/mpi || { echo "test-mpi: the $impl specs failed"; exit 1; }
timeout -k 10 120 $(mpi_launcher "$impl") -n 3 lua5.4 -l parallel.mpi examples/mpi/row_means.lua 2000 2000 250 ||
  { echo "test-mpi: examples/mpi/row_means.lua failed under $impl"; exit 1; }
sh spec/mpi/failstop.sh "$impl" || { echo "test-mpi: the $impl fail-stop tests failed"; exit 1; }
