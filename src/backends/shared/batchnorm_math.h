/* batchnorm_math.h: what the batch-norm front end (src/ops/batchnorm_ops.c) and the backends
 * share (internal): the geometry every kernel works on, and the per-channel formulas that end a
 * reduction, written once so that the CPU reference and the CUDA kernels apply literally the
 * same arithmetic (in double) to their statistics. (The ops' arguments: kiln_bn_args in
 * src/ops/op_args.h.)
 *
 * Geometry: x is viewed as (outer, C, inner) (row-major), the channel the middle axis:
 *   (N, C)        outer = N,      inner = 1
 *   NHWC          outer = N*H*W,  inner = 1        ("channels last")
 *   NCHW          outer = N,      inner = H*W      ("channels first")
 * element (o, c, i) sits at (o * C + c) * inner + i; n = outer * inner values per channel. */
#ifndef KILN_BATCHNORM_IMPL_H
#define KILN_BATCHNORM_IMPL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/batchnorm.h"

/* A CUDA source defines this as __host__ __device__ before including the header. */
#ifndef KILN_BN_HD
#define KILN_BN_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_bn_geom {
    int64_t outer, c, inner;
    int64_t n; /* outer * inner: values per channel */
} kiln_bn_geom;

/* The geometry of x (2 to 4 dims) in `layout` (ignored for 2-D tensors: per-feature). */
static inline kiln_bn_geom kiln_bn_geometry(const kiln_tensor *x, kiln_layout layout) {
    kiln_bn_geom g = {1, 1, 1, 0};
    int axis = (layout == KILN_LAYOUT_NCHW && x->ndim > 2) ? 1 : x->ndim - 1;
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

/* The variance the moving average takes: the biased batch variance (Keras), or the `unbiased`
 * one n / (n - 1) var (PyTorch). With n = 1 the unbiased estimate is 0 / 0; kiln then takes
 * the biased value, 0 (PyTorch refuses to train on one value per channel). */
static inline KILN_BN_HD double kiln_bn_sample_var(double var, int64_t n, bool unbiased) {
    if (unbiased && n > 1) return var * ((double)n / (double)(n - 1));
    return var;
}

/* moving = keep * moving + w * batch, keep and w from the convention (src/ops/batchnorm_ops.c) */
static inline KILN_BN_HD float kiln_bn_moving(float old, double batch, double keep, double w) {
    return (float)(keep * (double)old + w * batch);
}

/* Backward coefficients: with A = gamma * invstd,
 *   dx = A dy + P (x - mean) + Q,   P = -A invstd dgamma / n,   Q = -A dbeta / n   (training)
 *   dx = A dy                                                          (inference: `frozen`)
 * where dbeta = sum(dy) and dgamma = invstd sum(dy (x - mean)). */
typedef struct kiln_bn_bwd_coef {
    double a, p, q;
} kiln_bn_bwd_coef;

static inline KILN_BN_HD kiln_bn_bwd_coef kiln_bn_backward_coef(double gamma, double invstd,
                                                                double dgamma, double dbeta,
                                                                int64_t n, bool frozen) {
    kiln_bn_bwd_coef k;
    k.a = gamma * invstd;
    k.p = frozen ? 0.0 : -k.a * invstd * dgamma / (double)n;
    k.q = frozen ? 0.0 : -k.a * dbeta / (double)n;
    return k;
}

#ifdef __cplusplus
}
#endif
#endif
