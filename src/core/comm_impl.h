/* comm_impl.h: the communicator interface (internal), a small table like the backend's: each
 * engine (core's "single", src/dist's MPI) fills the iface and its ctx. kiln/dist.h's calls go
 * through it (comm.c), which also counts the time spent in collectives. */
#ifndef KILN_COMM_IMPL_H
#define KILN_COMM_IMPL_H

#include "kiln/dist.h"

typedef struct kiln_comm_iface {
    kiln_status (*allreduce_sum)(void *ctx, double *buf, int64_t n);
    kiln_status (*broadcast)(void *ctx, void *buf, size_t nbytes, int root);
    kiln_status (*barrier)(void *ctx);
    void (*abort)(void *ctx, const char *msg); /* ends every rank; may be NULL (one rank) */
    void (*free)(void *ctx);                   /* may be NULL */
} kiln_comm_iface;

struct kiln_comm {
    kiln_comm_iface iface;
    void *ctx;
    int rank, size;
    const char *engine;
    double seconds; /* in collectives */
};

/* a communicator around an engine (ctx owned by it; iface.free releases it) */
kiln_status kiln_comm_wrap(const kiln_comm_iface *iface, void *ctx, int rank, int size, const char *engine,
                           kiln_comm **out);

#endif
