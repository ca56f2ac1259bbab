/* mpi_engine.c: the MPI engine of kiln_comm (built when KILN_MPI finds MPI; else it only says
 * so). The all-reduce gathers every rank's buffer to rank 0, which adds them in rank order in
 * double and broadcasts the sum: the same bits on every rank whatever the timing (an
 * MPI_Allreduce may pick its reduction tree by message size and process layout). Every
 * collective is non-blocking and polled against a deadline (KILN_DIST_TIMEOUT seconds, default
 * 300): a rank that died or stopped calling gives a message, never a hang. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist_impl.h"
#include "error.h"

#if KILN_HAVE_MPI
#include <limits.h>
#include <mpi.h>

typedef struct mpi_ctx {
    int rank, size;
    double timeout;
    double *gather; /* rank 0: size * cap doubles */
    int64_t cap;
} mpi_ctx;

bool kiln_dist_have_mpi(void) { return true; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* waits for req, polling, until the deadline */
static kiln_status wait_for(mpi_ctx *c, MPI_Request *req, const char *what) {
    double t0 = now();
    struct timespec nap = {0, 20000};
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return kiln_error(KILN_ERR_IO, "kiln_comm (mpi): %s failed on rank %d (MPI error %d)", what, c->rank, rc);
        if (done) return KILN_OK;
        if (now() - t0 > c->timeout)
            return kiln_error(KILN_ERR_IO, "kiln_comm (mpi): %s timed out on rank %d of %d after %g s (another rank "
                              "stopped or died; KILN_DIST_TIMEOUT sets the limit)", what, c->rank, c->size, c->timeout);
        if (spins > 200) nanosleep(&nap, NULL);
    }
}

static kiln_status mpi_broadcast(void *ctx, void *buf, size_t nbytes, int root) {
    mpi_ctx *c = ctx;
    for (size_t off = 0; off < nbytes;) { /* MPI counts are int */
        size_t k = nbytes - off < (size_t)INT_MAX ? nbytes - off : (size_t)INT_MAX;
        MPI_Request req;
        if (MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
            return kiln_error(KILN_ERR_IO, "kiln_comm (mpi): broadcast failed on rank %d", c->rank);
        KILN_TRY(wait_for(c, &req, "broadcast"));
        off += k;
    }
    return KILN_OK;
}

/* one chunk of at most INT_MAX / size doubles: gather, add in rank order, broadcast */
static kiln_status allreduce_chunk(mpi_ctx *c, double *buf, int64_t n) {
    if (c->rank == 0 && n > c->cap) {
        double *g = realloc(c->gather, sizeof(double) * (size_t)n * (size_t)c->size);
        if (!g) return kiln_error(KILN_ERR_OOM, "kiln_comm (mpi): out of host memory for an all-reduce of %lld values", (long long)n);
        c->gather = g;
        c->cap = n;
    }
    MPI_Request req;
    if (MPI_Igather(buf, (int)n, MPI_DOUBLE, c->gather, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return kiln_error(KILN_ERR_IO, "kiln_comm (mpi): all-reduce (gather) failed on rank %d", c->rank);
    KILN_TRY(wait_for(c, &req, "all-reduce"));
    if (c->rank == 0)
        for (int64_t i = 0; i < n; i++) {
            double s = c->gather[i];
            for (int r = 1; r < c->size; r++) s += c->gather[(size_t)r * (size_t)n + (size_t)i];
            buf[i] = s;
        }
    return mpi_broadcast(c, buf, sizeof(double) * (size_t)n, 0);
}

static kiln_status mpi_allreduce(void *ctx, double *buf, int64_t n) {
    mpi_ctx *c = ctx;
    int64_t chunk = INT_MAX / c->size;
    for (int64_t off = 0; off < n; off += chunk) KILN_TRY(allreduce_chunk(c, buf + off, n - off < chunk ? n - off : chunk));
    return KILN_OK;
}

static kiln_status mpi_barrier(void *ctx) {
    mpi_ctx *c = ctx;
    MPI_Request req;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS) return kiln_error(KILN_ERR_IO, "kiln_comm (mpi): barrier failed");
    return wait_for(c, &req, "barrier");
}

static void mpi_abort(void *ctx, const char *msg, int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static void mpi_free(void *ctx) {
    mpi_ctx *c = ctx;
    free(c->gather);
    free(c);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

kiln_status kiln_dist_mpi_open(kiln_comm **out) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS) return kiln_error(KILN_ERR_IO, "kiln_dist_init: MPI_Init failed");
    mpi_ctx *c = calloc(1, sizeof *c);
    if (!c) return kiln_error(KILN_ERR_OOM, "kiln_dist_init: out of host memory");
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    const char *t = getenv("KILN_DIST_TIMEOUT");
    c->timeout = t && atof(t) > 0 ? atof(t) : 300.0;
    static const kiln_comm_iface iface = {.allreduce_sum = mpi_allreduce, .broadcast = mpi_broadcast, .barrier = mpi_barrier,
                                         .abort = mpi_abort, .free = mpi_free};
    return kiln_comm_wrap(&iface, c, c->rank, c->size, "mpi", out);
}

#else

bool kiln_dist_have_mpi(void) { return false; }

kiln_status kiln_dist_mpi_open(kiln_comm **out) {
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_dist_init: this kiln was built without MPI");
}

#endif
