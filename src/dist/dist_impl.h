/* dist_impl.h: the engines of src/dist (internal). */
#ifndef KILN_DIST_IMPL_H
#define KILN_DIST_IMPL_H

#include <stdbool.h>

#include "comm_impl.h"

/* this build has the MPI engine */
bool kiln_dist_have_mpi(void);
/* MPI_Init and the MPI engine over MPI_COMM_WORLD (fails with a message without MPI) */
kiln_status kiln_dist_mpi_open(kiln_comm **out);

#endif
