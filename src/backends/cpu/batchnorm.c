/* cpu/batchnorm.c: the batch-norm reference (the oracle the CUDA kernels answer to). Plain
 * loops over the (outer, C, inner) view of x (src/backends/shared/batchnorm_math.h),
 * everything accumulated in double with a two-pass variance (no E[x^2] - E[x]^2), each result
 * rounded once to its dtype. Channels go in blocks of BLOCK: each pass walks the block's
 * elements in memory order, so NHWC tensors (channels innermost) stream through the cache
 * instead of striding by C, while every channel still sums its values in the same order
 * (o, then i) as a channel-at-a-time loop would. OpenMP threads take whole blocks: the result
 * does not depend on the thread count. */
#include "batchnorm_math.h"
#include "cpu.h"
#include "dtype_convert.h"
#include "op_args.h"

#define BLOCK 64

/* index of element (o, c, i) */
static inline int64_t at(const kiln_bn_geom *g, int64_t o, int64_t c, int64_t i) {
    return (o * g->c + c) * g->inner + i;
}

static inline double ld(const kiln_tensor *t, int64_t k) { return kiln_dtype_load(t->data, t->dtype, k); }

/* a per-channel f32 value, or `dflt` when the tensor is absent (scale or center off) */
static inline double chan(const kiln_tensor *t, int64_t c, double dflt) {
    return t ? (double)((const float *)t->data)[c] : dflt;
}

static inline void put(kiln_tensor *t, int64_t c, double v) {
    if (t) ((float *)t->data)[c] = (float)v;
}

/* channels [c0, c0 + nc) of one pass: the loop every pass below shares */
#define EACH(g, c0, nc, body)                                   \
    for (int64_t o = 0; o < (g)->outer; o++)                    \
        for (int64_t j = 0; j < (nc); j++)                      \
            for (int64_t i = 0; i < (g)->inner; i++) {          \
                int64_t k = at((g), o, (c0) + j, i);            \
                body                                            \
            }

/* out = (in - mean[j]) * scale[j] + shift[j] over the block */
static void affine_block(const kiln_bn_geom *g, int64_t c0, int64_t nc, const kiln_tensor *in,
                         const double *mean, const double *scale, const double *shift, kiln_tensor *out) {
    EACH(g, c0, nc, kiln_dtype_store(out->data, out->dtype, k, (ld(in, k) - mean[j]) * scale[j] + shift[j]);)
}

/* mean and biased variance of the block's channels, two passes */
static void block_stats(const kiln_bn_geom *g, int64_t c0, int64_t nc, const kiln_tensor *x, double *mean,
                        double *var) {
    double sum[BLOCK] = {0}, ss[BLOCK] = {0}, m[BLOCK];
    EACH(g, c0, nc, sum[j] += ld(x, k);)
    for (int64_t j = 0; j < nc; j++) m[j] = sum[j] / (double)g->n;
    EACH(g, c0, nc, { double d = ld(x, k) - m[j]; ss[j] += d * d; })
    for (int64_t j = 0; j < nc; j++) {
        var[j] = ss[j] / (double)g->n;
        mean[j] = kiln_bn_mean_rule(m[j], var[j]);
    }
}

static int64_t blocks(const kiln_bn_geom *g) { return (g->c + BLOCK - 1) / BLOCK; }
static int64_t block_len(const kiln_bn_geom *g, int64_t b) { return g->c - b * BLOCK < BLOCK ? g->c - b * BLOCK : BLOCK; }

static void forward_train(const kiln_bn_args *a, const kiln_bn_geom *g) {
    const kiln_tensor *x = a->x, *gamma = a->gamma, *beta = a->beta;
    kiln_tensor *mm = a->moving_mean, *mv = a->moving_var; /* updated in place */
    kiln_tensor *y = a->y, *save_mean = a->save_mean, *save_invstd = a->save_invstd;
    const double eps = a->epsilon, keep = a->keep, w = a->weight;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks(g) > 1)
#endif
    for (int64_t b = 0; b < blocks(g); b++) {
        int64_t c0 = b * BLOCK, nc = block_len(g, b);
        double mean[BLOCK], var[BLOCK], scale[BLOCK], shift[BLOCK];
        block_stats(g, c0, nc, x, mean, var);
        for (int64_t j = 0; j < nc; j++) {
            int64_t c = c0 + j;
            double invstd = kiln_bn_invstd(var[j], eps);
            put(save_mean, c, mean[j]);
            put(save_invstd, c, invstd);
            if (mm) {
                float *m = mm->data, *v = mv->data;
                m[c] = kiln_bn_moving(m[c], mean[j], keep, w);
                v[c] = kiln_bn_moving(v[c], kiln_bn_sample_var(var[j], g->n, a->unbiased), keep, w);
            }
            scale[j] = chan(gamma, c, 1.0) * invstd;
            shift[j] = chan(beta, c, 0.0);
        }
        affine_block(g, c0, nc, x, mean, scale, shift, y);
    }
}

static void forward_infer(const kiln_bn_args *a, const kiln_bn_geom *g) {
    const kiln_tensor *x = a->x, *gamma = a->gamma, *beta = a->beta;
    const kiln_tensor *mm = a->mean, *mv = a->var;
    const double eps = a->epsilon;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks(g) > 1)
#endif
    for (int64_t b = 0; b < blocks(g); b++) {
        int64_t c0 = b * BLOCK, nc = block_len(g, b);
        double mean[BLOCK], scale[BLOCK], shift[BLOCK];
        for (int64_t j = 0; j < nc; j++) {
            int64_t c = c0 + j;
            double invstd = kiln_bn_invstd(chan(mv, c, 1.0), eps);
            mean[j] = chan(mm, c, 0.0);
            put(a->save_mean, c, mean[j]); /* a frozen layer's training forward */
            put(a->save_invstd, c, invstd);
            scale[j] = chan(gamma, c, 1.0) * invstd;
            shift[j] = chan(beta, c, 0.0);
        }
        affine_block(g, c0, nc, x, mean, scale, shift, a->y);
    }
}

static void backward(const kiln_bn_args *a, const kiln_bn_geom *g) {
    const kiln_tensor *x = a->x, *dy = a->dy, *gamma = a->gamma;
    const kiln_tensor *save_mean = a->mean, *save_invstd = a->invstd;
    kiln_tensor *dx = a->dx;
    const bool frozen = a->frozen;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks(g) > 1)
#endif
    for (int64_t b = 0; b < blocks(g); b++) {
        int64_t c0 = b * BLOCK, nc = block_len(g, b);
        double mean[BLOCK], sum_dy[BLOCK] = {0}, sum_dy_xc[BLOCK] = {0}; /* sum(dy), sum(dy (x - mean)) */
        kiln_bn_bwd_coef coef[BLOCK];
        for (int64_t j = 0; j < nc; j++) mean[j] = chan(save_mean, c0 + j, 0.0);
        EACH(g, c0, nc, {
            double d = ld(dy, k);
            sum_dy[j] += d;
            sum_dy_xc[j] += d * (ld(x, k) - mean[j]);
        })
        for (int64_t j = 0; j < nc; j++) {
            int64_t c = c0 + j;
            double invstd = chan(save_invstd, c, 1.0), dbeta = sum_dy[j], dgamma = sum_dy_xc[j] * invstd;
            put(a->dgamma, c, dgamma);
            put(a->dbeta, c, dbeta);
            coef[j] = kiln_bn_backward_coef(chan(gamma, c, 1.0), invstd, dgamma, dbeta, g->n, frozen);
        }
        EACH(g, c0, nc, {
            double v = coef[j].a * ld(dy, k) + coef[j].q;
            if (!frozen) v += coef[j].p * (ld(x, k) - mean[j]); /* the inference gradient reads no x */
            kiln_dtype_store(dx->data, dx->dtype, k, v);
        })
    }
}

static void backward_infer(const kiln_bn_args *a, const kiln_bn_geom *g) {
    const kiln_tensor *dy = a->dy, *gamma = a->gamma, *mv = a->var;
    const double eps = a->epsilon;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks(g) > 1)
#endif
    for (int64_t b = 0; b < blocks(g); b++) {
        int64_t c0 = b * BLOCK, nc = block_len(g, b);
        double zero[BLOCK] = {0}, scale[BLOCK];
        for (int64_t j = 0; j < nc; j++)
            scale[j] = chan(gamma, c0 + j, 1.0) * kiln_bn_invstd(chan(mv, c0 + j, 1.0), eps);
        affine_block(g, c0, nc, dy, zero, scale, zero, a->dx);
    }
}

kiln_status kiln_cpu_batchnorm(const kiln_op *op) {
    const kiln_bn_args *a = &op->bn;
    kiln_bn_geom g = kiln_bn_geometry(kiln_bn_data(op->type, a), a->layout);
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN: forward_train(a, &g); break;
    case KILN_OP_BN_FWD_INFER: forward_infer(a, &g); break;
    case KILN_OP_BN_BWD: backward(a, &g); break;
    case KILN_OP_BN_BWD_INFER: backward_infer(a, &g); break;
    default: break;
    }
    return KILN_OK;
}
