/* comm_impl.h: the communicator interface (internal), a small table like the backend's: each
 * engine (core's "single", src/dist's MPI) fills the iface and its ctx. kiln/dist.h's calls go
 * through it (comm.c), which also counts the time spent in collectives. */
#ifndef KILN_COMM_IMPL_H
#define KILN_COMM_IMPL_H

#include "kiln/dist.h"
#include "kiln/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_comm_iface {
    kiln_status (*allreduce_sum)(void *ctx, double *buf, int64_t n);
    kiln_status (*broadcast)(void *ctx, void *buf, size_t nbytes, int root);
    kiln_status (*barrier)(void *ctx);
    void (*abort)(void *ctx, const char *msg, int code); /* ends every rank, the job exiting with code; may be NULL (one rank) */
    void (*free)(void *ctx);                   /* may be NULL */
    /* optional (a device engine, e.g. the CUDA backend's NCCL one): starts the all-reduce of n
     * f32 gradient tensors on the backend, each element becoming the sum over ranks of scale x
     * the rank's value; grads_wait orders every started one before the backend's next work.
     * NULL: comm.c's host path (download, kiln_comm_allreduce_sum in double, upload), at once. */
    kiln_status (*grads_begin)(void *ctx, kiln_tensor *const *t, int n, double scale);
    kiln_status (*grads_wait)(void *ctx);
} kiln_comm_iface;

struct kiln_comm {
    kiln_comm_iface iface;
    void *ctx;
    int rank, size;
    const char *engine;
    double seconds; /* in collectives */
    double *host;   /* the host path of kiln_comm_grads_begin: host_cap doubles and floats */
    float *host_f;
    int64_t host_cap;
};

/* a communicator around an engine (ctx owned by it; iface.free releases it) */
kiln_status kiln_comm_wrap(const kiln_comm_iface *iface, void *ctx, int rank, int size, const char *engine,
                           kiln_comm **out);

/* the gradient all-reduce of fit's buckets (src/train/dist_fit.c): t[0..n) (f32 tensors of any
 * backend) become, element by element, the sum over ranks of scale x each rank's value, added
 * in rank order in double: the engine's grads_begin when it has one, else through the host with
 * kiln_comm_allreduce_sum (done on return). Each element's sum does not depend on how the
 * tensors are grouped into calls. kiln_comm_grads_wait: every begun one is done (on the device:
 * ordered before the backend's next work). */
kiln_status kiln_comm_grads_begin(kiln_comm *c, kiln_tensor *const *t, int n, double scale);
kiln_status kiln_comm_grads_wait(kiln_comm *c);

#ifdef __cplusplus
}
#endif
#endif
