/* batchnorm_math.h: what the batch-norm front end (src/batchnorm.c) and the backends share
 * (internal): the kiln_op slots of the four BN ops, the geometry every kernel works on, and the
 * per-channel formulas that end a reduction, written once so that the CPU reference and the
 * CUDA kernels apply literally the same arithmetic (in double) to their statistics.
 *
 * Geometry: x is viewed as (outer, C, inner) (row-major), the channel the middle axis:
 *   (N, C)        outer = N,      inner = 1
 *   NHWC          outer = N*H*W,  inner = 1        ("channels last")
 *   NCHW          outer = N,      inner = H*W      ("channels first")
 * element (o, c, i) sits at (o * C + c) * inner + i; n = outer * inner values per channel.
 *
 * Slots (src[], dst[], f[], i[], d[] of kiln_op):
 *   BN_FWD_TRAIN  src x, gamma|NULL, beta|NULL, moving_mean|NULL, moving_var|NULL
 *                 dst y, save_mean, save_invstd
 *                 The moving statistics are read and updated in place through src[3], src[4]
 *                 (a kiln_op has four dst slots; their data pointers are not const).
 *                 f[0] epsilon; d[0] weight of the old moving value, d[1] weight of the batch;
 *                 i[0] channels-first (1) or last (0), i[1] flags, i[2] kiln_bn_impl
 *   BN_FWD_INFER  src x, gamma|NULL, beta|NULL, moving_mean, moving_var
 *                 dst y, save_mean|NULL, save_invstd|NULL (a frozen layer's training forward
 *                 also writes moving_mean and 1 / sqrt(moving_var + eps) there)
 *                 f[0] epsilon; i[0], i[2] as above
 *   BN_BWD        src x, dy, gamma|NULL, save_mean, save_invstd
 *                 dst dx, dgamma|NULL, dbeta|NULL
 *                 i[0], i[2] as above, i[1] flags (KILN_BN_FROZEN: the inference gradient)
 *   BN_BWD_INFER  src dy, gamma|NULL, moving_var;  dst dx;  f[0] epsilon; i[0], i[2] */
#ifndef KILN_BATCHNORM_IMPL_H
#define KILN_BATCHNORM_IMPL_H

#include <math.h>
#include <stdint.h>

#include "backend_impl.h"
#include "kiln/batchnorm.h"

/* A CUDA source defines this as __host__ __device__ before including the header. */
#ifndef KILN_BN_HD
#define KILN_BN_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* i[1] flags */
#define KILN_BN_UNBIASED 1 /* the moving variance takes n / (n - 1) var (PyTorch) */
#define KILN_BN_FROZEN 2   /* BN_BWD: the gradient of the inference forward */

typedef struct kiln_bn_geom {
    int64_t outer, c, inner;
    int64_t n; /* outer * inner: values per channel */
} kiln_bn_geom;

/* The geometry of x (2 to 4 dims) for `channels_first` (0 or 1; ignored for 2-D tensors). */
static inline kiln_bn_geom kiln_bn_geometry(const kiln_tensor *x, int channels_first) {
    kiln_bn_geom g = {1, 1, 1, 0};
    int axis = (channels_first && x->ndim > 2) ? 1 : x->ndim - 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d < axis) g.outer *= x->shape[d];
        else if (d == axis) g.c = x->shape[d];
        else g.inner *= x->shape[d];
    }
    g.n = g.outer * g.inner;
    return g;
}

/* ---- the end of a channel's reduction, shared by the CPU and CUDA backends ---- */

/* The documented NaN rule: a channel whose variance is NaN (some input NaN or infinite) also
 * gets a NaN mean, whatever the order of its sums made of it (inf, -inf or NaN). */
static inline KILN_BN_HD double kiln_bn_mean_rule(double mean, double var) {
    return var != var ? var : mean;
}

static inline KILN_BN_HD double kiln_bn_invstd(double var, double eps) {
    return 1.0 / sqrt(var + eps);
}

/* The variance the moving average takes: the biased batch variance (Keras), or the unbiased
 * one n / (n - 1) var (PyTorch). With n = 1 the unbiased estimate is 0 / 0; kiln then takes
 * the biased value, 0 (PyTorch refuses to train on one value per channel). */
static inline KILN_BN_HD double kiln_bn_sample_var(double var, int64_t n, int flags) {
    if ((flags & KILN_BN_UNBIASED) && n > 1) return var * ((double)n / (double)(n - 1));
    return var;
}

/* moving = keep * moving + w * batch, keep and w from the convention (src/batchnorm.c) */
static inline KILN_BN_HD float kiln_bn_moving(float old, double batch, double keep, double w) {
    return (float)(keep * (double)old + w * batch);
}

/* Backward coefficients: with A = gamma * invstd,
 *   dx = A dy + P (x - mean) + Q,   P = -A invstd dgamma / n,   Q = -A dbeta / n   (training)
 *   dx = A dy                                                                   (inference)
 * where dbeta = sum(dy) and dgamma = invstd sum(dy (x - mean)). */
typedef struct kiln_bn_bwd_coef {
    double a, p, q;
} kiln_bn_bwd_coef;

static inline KILN_BN_HD kiln_bn_bwd_coef kiln_bn_backward_coef(double gamma, double invstd,
                                                                double dgamma, double dbeta,
                                                                int64_t n, int flags) {
    kiln_bn_bwd_coef k;
    k.a = gamma * invstd;
    k.p = (flags & KILN_BN_FROZEN) ? 0.0 : -k.a * invstd * dgamma / (double)n;
    k.q = (flags & KILN_BN_FROZEN) ? 0.0 : -k.a * dbeta / (double)n;
    return k;
}

#ifdef __cplusplus
}
#endif
#endif
