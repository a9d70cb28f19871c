rockspec_format = "3.0"
package = "parallel-mpi"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/lua-parallel/parallel.git",
   tag = "v0.1.0",
}
description = {
   summary = "parallel's pools across the ranks of an MPI job (Open MPI, MPICH)",
   detailed = [[
The optional MPI backend of parallel: `mpirun -n N lua5.4 -l parallel.mpi script.lua`
runs the script on rank 0, and parallel.pool{backend = "mpi"} there runs tasks on
thread pools inside every other rank, with the same API as a thread pool. Built with
mpicc against the MPI installed on the machine; the parallel rock itself never
depends on MPI.
]],
   homepage = "https://github.com/lua-parallel/parallel",
   license = "MIT",
   labels = { "concurrency", "mpi", "cluster", "parallel" },
}
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.4, < 5.5",
   "parallel = 0.1.0",
}
-- make mpi-module compiles src/mpi with $(MPICC) (mpicc by default: set
-- MPICC=mpicc.mpich or mpicc.openmpi to pick an implementation) into
-- parallel/mpi.so; install-mpi copies it to LIBDIR. The module reaches
-- parallel.core through its C interface table, so both must come from the
-- same version.
build = {
   type = "make",
   build_target = "mpi-module",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      BUILD = "build/rock-mpi",
   },
   install_target = "install-mpi",
   install_variables = {
      BUILD = "build/rock-mpi",
      PREFIX = "$(PREFIX)",
      LUA_LIBDIR = "$(LIBDIR)",
   },
}
