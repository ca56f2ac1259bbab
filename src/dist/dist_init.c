/* dist_init.c: kiln_dist_init: the communicator of this launch. Under mpirun (Open MPI's
 * OMPI_COMM_WORLD_SIZE, or PMI_SIZE / PMIX_RANK of other launchers) the MPI engine
 * (mpi_engine.c), else the single engine of src/core/comm.c. */
#include <stdlib.h>

#include "dist_impl.h"
#include "error.h"

/* the world size the launcher announces, 0 when not launched by one */
static int launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) > 0 ? atoi(v) : 1;
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

kiln_status kiln_dist_init(kiln_comm **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dist_init: out is NULL");
    *out = NULL;
    int size = launched_size();
    if (size == 0) return kiln_comm_single(out);
    if (!kiln_dist_have_mpi()) {
        if (size == 1) return kiln_comm_single(out);
        return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_dist_init: launched as %d ranks, but this kiln was built without MPI "
                          "(KILN_MPI=OFF or Open MPI not found: install libopenmpi-dev and rebuild)", size);
    }
    return kiln_dist_mpi_open(out);
}
