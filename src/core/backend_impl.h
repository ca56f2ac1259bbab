/* backend_impl.h: the backend interface (internal), in the spirit of ggml-backend-impl.h.
 *
 * A backend is a table of function pointers plus a context. The op front end (src/ops) checks
 * every op's arguments and builds a kiln_op (src/ops/op_args.h: the op type and its family's
 * named arguments); the backend's `compute` runs it through one switch on op->type and may
 * assume the arguments are valid. A backend never sees a layer, a model or an optimizer. */
#ifndef KILN_BACKEND_IMPL_H
#define KILN_BACKEND_IMPL_H

#include "kiln/backend.h"
#include "kiln/dist.h"
#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One op and its arguments, defined by the op layer above (src/ops/op_args.h); the core only
 * passes it through the interface. */
typedef struct kiln_op kiln_op;

typedef struct kiln_backend_iface {
    void (*free)(kiln_backend *be);
    /* device memory */
    kiln_status (*alloc)(kiln_backend *be, size_t nbytes, void **out);
    void (*release)(kiln_backend *be, void *ptr);
    /* host <-> device; async copies are ordered on the backend's stream */
    kiln_status (*upload)(kiln_backend *be, void *dst, const void *host, size_t nbytes, bool async);
    kiln_status (*download)(kiln_backend *be, void *host, const void *src, size_t nbytes,
                            bool async);
    kiln_status (*synchronize)(kiln_backend *be);
    /* pinned host memory */
    kiln_status (*host_alloc)(kiln_backend *be, size_t nbytes, void **out);
    void (*host_free)(kiln_backend *be, void *ptr);
    bool (*supports_op)(const kiln_backend *be, kiln_op_type op, kiln_dtype dtype);
    kiln_status (*compute)(kiln_backend *be, const kiln_op *op);
    kiln_status (*memory_stats)(const kiln_backend *be, kiln_memory_stats *out);
    /* bytes the backend can still allocate (its pool's free blocks included); SIZE_MAX when
     * the system does not say */
    kiln_status (*memory_available)(const kiln_backend *be, size_t *out);
    /* markers: `mark` records marker `slot` (0 .. KILN_MAX_MARKS-1) behind everything queued
     * so far; `wait_mark` blocks the host until the work before it is done (at once for a
     * marker never recorded) */
    kiln_status (*mark)(kiln_backend *be, int slot);
    kiln_status (*wait_mark)(kiln_backend *be, int slot);
    /* optional: a device communicator for data-parallel gradients (the CUDA backend's NCCL
     * engine), made collectively over the ranks of `bootstrap`; *out NULL when the backend has
     * none; NULL: none (comm_impl.h's host path is used) */
    kiln_status (*comm_create)(kiln_backend *be, kiln_comm *bootstrap, kiln_comm **out);
} kiln_backend_iface;

struct kiln_backend {
    const kiln_backend_iface *iface;
    void *ctx;
    kiln_backend_kind kind;
    int device;
    char name[32];
    /* fit's default steps between downloads of the per-step metrics (kiln_fit_config.log_every
     * 0): 1 where reading a value back costs nothing (CPU), more where it stalls a device */
    int log_interval;
};

/* be's log_interval (at least 1) */
int kiln_backend_log_interval(const kiln_backend *be);
/* be's device communicator over bootstrap's ranks (iface.comm_create), *out NULL when it has
 * none or bootstrap has one rank */
kiln_status kiln_backend_comm_create(kiln_backend *be, kiln_comm *bootstrap, kiln_comm **out);

#ifdef __cplusplus
}
#endif
#endif
