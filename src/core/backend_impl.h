/* backend_impl.h: the backend interface (internal), in the spirit of ggml-backend-impl.h.
 *
 * A backend is a table of function pointers plus a context. The device-independent core
 * (src/ops.c) checks every op's arguments and builds a kiln_op; the backend's `compute` runs it
 * through one switch on op->type and may assume the arguments are valid. A backend never sees
 * a layer, a model or an optimizer. */
#ifndef KILN_BACKEND_IMPL_H
#define KILN_BACKEND_IMPL_H

#include "kiln/backend.h"
#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_OP_MAX_SRC 6
#define KILN_OP_MAX_DST 4

/* One op with its tensors and parameters. Which slot means what is written beside each op
 * type in the builder functions of src/ops.c (and src/batchnorm.c for the BN ops). */
typedef struct kiln_op {
    kiln_op_type type;
    const kiln_tensor *src[KILN_OP_MAX_SRC];
    kiln_tensor *dst[KILN_OP_MAX_DST];
    float f[8];     /* float parameters (alpha, beta, epsilon, momentum, ...) */
    int32_t i[8];   /* integer parameters (flags, axes, layout, ...) */
    double d[2];    /* double parameters (fill value) */
    const void *ext; /* an op's extra argument, NULL for most (ADAM, SGD: a kiln_param_group,
                      * src/optim_group.h) */
} kiln_op;

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
    /* markers: `mark` records marker `slot` (0 .. KILN_MAX_MARKS-1) behind everything queued
     * so far; `wait_mark` blocks the host until the work before it is done (at once for a
     * marker never recorded) */
    kiln_status (*mark)(kiln_backend *be, int slot);
    kiln_status (*wait_mark)(kiln_backend *be, int slot);
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

/* Runs a built op on the backend of its first tensor, after the supports_op check. */
kiln_status kiln_op_run(const kiln_op *op);

#ifdef __cplusplus
}
#endif
#endif
