/* cpu/threads.c: one thread count for the CPU backend's three sources of threads: OpenMP (kiln's
 * own loops, and oneDNN, built on OpenMP), OpenBLAS (its own pool) and nothing else; and the
 * split of an elementwise loop into one range per thread. */
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

void kiln_cpu_parallel_ranges(int64_t n, int64_t align, kiln_cpu_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (align < 1) align = 1;
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    if (n >= KILN_CPU_PAR_MIN && nt > 1 && n / align >= 2) {
#pragma omp parallel num_threads(nt)
        {
            int64_t parts = omp_get_num_threads(), t = omp_get_thread_num(), units = (n + align - 1) / align;
            int64_t lo = units * t / parts * align, hi = units * (t + 1) / parts * align;
            if (hi > n) hi = n;
            if (lo < hi) fn(ctx, lo, hi);
        }
        return;
    }
#endif
    fn(ctx, 0, n);
}

int kiln_threads_get(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
