#!/bin/sh
# Installs Open MPI and MPICH (and mpi4py for make bench-mpi) when missing.
# As root (apt-get); does nothing when all are present.
need=""
command -v mpicc.openmpi >/dev/null 2>&1 || need="$need openmpi-bin libopenmpi-dev"
command -v mpicc.mpich >/dev/null 2>&1 || need="$need mpich libmpich-dev"
[ "$1" = bench ] && { /usr/bin/python3 -c 'import mpi4py' >/dev/null 2>&1 || need="$need python3-mpi4py"; }
[ -z "$need" ] && exit 0
echo "installing:$need"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null 2>&1 || {
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null; }
