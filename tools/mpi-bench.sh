#!/bin/sh
# make bench-mpi: parallel's MPI backend beside mpi4py.futures on the same
# work, in the same run, on RANKS ranks (default 3: rank 0 and two workers).
set -u
cd "$(dirname "$0")/.."
. tools/mpi-launch.sh
ranks=${RANKS:-3}
# Debian's python3-mpi4py is for the system Python, whatever python3 is first on PATH.
PY=${PY:-/usr/bin/python3}
export MPI_BENCH_WORKERS=$((ranks - 1))
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;"
for impl in ${MPI_IMPLS:-openmpi mpich}; do
  export LUA_CPATH="$PWD/build/mpi-$impl/?.so;$PWD/build/?.so;;"
  launch=$(mpi_launcher "$impl")
  timeout 300 $launch -n "$ranks" lua5.4 -l parallel.mpi bench/mpi_bench.lua > /tmp/parallel-mpi-bench.$$ 2>&1 ||
    { cat /tmp/parallel-mpi-bench.$$; exit 1; }
  # Debian builds python3-mpi4py against Open MPI: under another MPI its
  # ranks would start as singletons, so it runs beside Open MPI only.
  : > /tmp/parallel-mpi4py-bench.$$
  if [ "$impl" = openmpi ]; then
    timeout 600 $launch -n "$ranks" "$PY" -m mpi4py.futures bench/python/mpi4py_bench.py > /tmp/parallel-mpi4py-bench.$$ 2>&1 ||
      { cat /tmp/parallel-mpi4py-bench.$$; exit 1; }
  fi
  echo "== $impl, $ranks ranks (rank 0 + $((ranks - 1)) workers), $(date -u +%H:%M) UTC, load $(cut -d' ' -f1 /proc/loadavg)"
  printf '%-12s %14s %16s %8s\n' workload parallel.mpi mpi4py.futures ratio
  awk -F'\t' 'FILENAME == ARGV[1] { py[$1] = $2; pyu[$1] = $3; next }
              $1 != "ranks" { if ($1 in py) printf "%-12s %9.2f %-7s %9.2f %-7s %6.1fx\n", $1, $2, $3, py[$1], pyu[$1], py[$1] / $2
                              else printf "%-12s %9.2f %-7s %17s\n", $1, $2, $3, "-" }' \
    /tmp/parallel-mpi4py-bench.$$ /tmp/parallel-mpi-bench.$$
  rm -f /tmp/parallel-mpi-bench.$$ /tmp/parallel-mpi4py-bench.$$
done
