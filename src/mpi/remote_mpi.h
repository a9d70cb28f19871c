/* Shared objects across ranks by requests to rank 0 (remote_mpi.c). */
#ifndef PAR_MPI_REMOTE_H
#define PAR_MPI_REMOTE_H

#include "mpi/comm_impl.h"

typedef struct rmpi rmpi;

/* Made by the communication thread once MPI is up, before the peers. */
rmpi *rmpi_new(mpi_state *st);
void rmpi_free(mpi_state *st, rmpi *r);
/* The hooks of the peer for `rank` (the tasks' and results' peer). */
void rmpi_hooks(rmpi *r, int rank, par_wire_objects *out);
/* K_REQUEST, K_CANCEL, K_REPLY: 1 when handled. */
int rmpi_message(mpi_state *st, comm_impl *im, int src, const mpi_head *h,
                 const unsigned char *payload, size_t len);
/* Sends what waits (replies on rank 0, requests elsewhere): 1 if any. */
int rmpi_pump(mpi_state *st, comm_impl *im);

#endif
