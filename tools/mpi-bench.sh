#!/bin/sh
# make bench-mpi: parallel's MPI backend beside mpi4py.futures on the same
# work, in the same run, on RANKS ranks (default 3: rank 0 and two workers).
set -u
cd "$(dirname "$0")/.."
. tools/mpi-launch.sh
ranks=${RANKS:-3}
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;"
for impl in ${MPI_IMPLS:-openmpi mpich}; do
  export LUA_CPATH="$PWD/build/mpi-$impl/?.so;$PWD/build/?.so;;"
  launch=$(mpi_launcher "$impl")
  timeout 300 $launch -n "$ranks" lua5.4 -l parallel.mpi bench/mpi_bench.lua > /tmp/parallel-mpi-bench.$$ 2>&1 ||
    { cat /tmp/parallel-mpi-bench.$$; exit 1; }
  timeout 600 $launch -n "$ranks" python3 -m mpi4py.futures bench/python/mpi4py_bench.py > /tmp/parallel-mpi4py-bench.$$ 2>&1 ||
    { cat /tmp/parallel-mpi4py-bench.$$; exit 1; }
  echo "== $impl, $ranks ranks (rank 0 + $((ranks - 1)) workers), $(date -u +%H:%M) UTC, load $(cut -d' ' -f1 /proc/loadavg)"
  printf '%-12s %14s %16s %8s\n' workload parallel.mpi mpi4py.futures ratio
  awk -F'\t' 'NR == FNR { ours[$1] = $2; unit[$1] = $3; next }
              ($1 in ours) { printf "%-12s %9.2f %-5s %10.2f %-5s %7.1fx\n", $1, ours[$1], unit[$1], $2, $3, $2 / ours[$1] }' \
    /tmp/parallel-mpi-bench.$$ /tmp/parallel-mpi4py-bench.$$
  rm -f /tmp/parallel-mpi-bench.$$ /tmp/parallel-mpi4py-bench.$$
done
