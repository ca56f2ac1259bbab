/* cpu/threads.c: one thread count for the CPU backend's three sources of threads: OpenMP (kiln's
 * own loops, and oneDNN, built on OpenMP), OpenBLAS (its own pool) and nothing else. */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu.h"
#include "error.h"

kiln_status kiln_threads_set(int n) {
    if (n < 1 || n > 4096)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_threads_set: %d threads is not in [1, 4096]", n);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
    return KILN_OK;
}

int kiln_threads_get(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
