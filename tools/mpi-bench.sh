#!/bin/sh
# make bench-mpi: parallel's MPI backend beside mpi4py.futures on the same
# work, in the same run, on RANKS ranks (default 3: rank 0 and two workers),
# first on this host, then (as root) across three simulated hosts, one rank
# each (tools/mpi-netns.sh; HOSTS=one or HOSTS=three for one of the two).
set -u
cd "$(dirname "$0")/.."
repo=$PWD
. tools/mpi-launch.sh
ranks=${RANKS:-3}
# Debian's python3-mpi4py is for the system Python, whatever python3 is first on PATH.
PY=${PY:-/usr/bin/python3}
export MPI_BENCH_WORKERS=$((ranks - 1))
export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;;"
out=/tmp/parallel-mpi-bench.$$
py=/tmp/parallel-mpi4py-bench.$$

# bench WHERE IMPL LAUNCH...: both benchmarks under one launcher, then the table.
bench() {
  where=$1 impl=$2
  shift 2
  export LUA_CPATH="$repo/build/mpi-$impl/?.so;$repo/build/?.so;;"
  timeout -k 10 300 "$@" -n "$ranks" lua5.4 -l parallel.mpi "$repo/bench/mpi_bench.lua" > $out 2>&1 ||
    { cat $out; return 1; }
  grep -v "$(printf '\t')" $out | sed 's/^/  (rank output) /'
  # Debian builds python3-mpi4py against Open MPI: under another MPI its
  # ranks would start as singletons, so it runs beside Open MPI only.
  : > $py
  if [ "$impl" = openmpi ]; then
    timeout -k 10 600 "$@" -n "$ranks" "$PY" -m mpi4py.futures "$repo/bench/python/mpi4py_bench.py" > $py 2>&1 ||
      { cat $py; return 1; }
  fi
  echo "== $impl, $where, $ranks ranks (rank 0 + $((ranks - 1)) workers), $(date -u +%H:%M) UTC, load $(cut -d' ' -f1 /proc/loadavg)"
  printf '%-12s %14s %16s %8s\n' workload parallel.mpi mpi4py.futures ratio
  # name<TAB>value<TAB>unit lines only (a rank's stderr lines go to the same file)
  awk -F'\t' 'NF != 3 { next }
              FILENAME == ARGV[1] { py[$1] = $2; pyu[$1] = $3; next }
              $1 != "ranks" { if ($1 in py) printf "%-12s %9.2f %-7s %9.2f %-7s %6.1fx\n", $1, $2, $3, py[$1], pyu[$1], py[$1] / $2
                              else printf "%-12s %9.2f %-7s %17s\n", $1, $2, $3, "-" }' $py $out
  rm -f $out $py
}

case ${HOSTS:-both} in one|both) ;; *) [ "${HOSTS}" = three ] || { echo "HOSTS is one, three or both"; exit 1; } ;; esac
if [ "${HOSTS:-both}" != three ]; then
  for impl in ${MPI_IMPLS:-openmpi mpich}; do
    bench "one host" "$impl" $(mpi_launcher "$impl") || exit 1
  done
fi
if [ "${HOSTS:-both}" != one ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "(across simulated hosts: needs root, left out)"
    exit 0
  fi
  . tools/mpi-netns.sh
  netns_up || exit 1
  [ "$ranks" -eq 3 ] || echo "(three simulated hosts: ranks beyond the third share a host)"
  for impl in ${MPI_IMPLS:-openmpi mpich}; do
    bench "3 simulated hosts" "$impl" ip netns exec ${netns_tag}h1 unshare --uts \
      sh -c "hostname $net.1; exec \"\$@\"" sh $(netns_launcher "$impl") || exit 1
  done
fi
