# Sourced: mpi_launcher IMPL prints the launch command of that MPI
# implementation (Open MPI, as root, needs --allow-run-as-root; more ranks
# than cores need --oversubscribe; MPICH needs neither).
mpi_launcher() {
  case "$1" in
    openmpi)
      l="mpirun.openmpi --oversubscribe --bind-to none"
      [ "$(id -u)" -eq 0 ] && l="$l --allow-run-as-root"
      echo "$l" ;;
    mpich) echo "mpiexec.mpich" ;;
    *) echo "unknown MPI implementation: $1" >&2; return 1 ;;
  esac
}
