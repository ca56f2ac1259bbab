/* cpu/batchnorm.c: the batch-norm reference (the oracle the CUDA kernels answer to). Plain
 * loops over the (outer, C, inner) view of x (src/batchnorm_impl.h), one channel at a time,
 * everything accumulated in double with a two-pass variance (no E[x^2] - E[x]^2), each result
 * rounded once to its dtype. Channels are independent: OpenMP threads take whole channels, so
 * the result does not depend on the thread count. */
#include "batchnorm_impl.h"
#include "cpu.h"

/* index of element (o, c, i) */
static inline int64_t at(const kiln_bn_geom *g, int64_t o, int64_t c, int64_t i) {
    return (o * g->c + c) * g->inner + i;
}

static inline double ld(const kiln_tensor *t, int64_t k) { return kiln_cpu_load(t->data, t->dtype, k); }

/* a per-channel f32 value, or `dflt` when the tensor is absent (scale or center off) */
static inline double chan(const kiln_tensor *t, int64_t c, double dflt) {
    return t ? (double)((const float *)t->data)[c] : dflt;
}

static inline void put(kiln_tensor *t, int64_t c, double v) {
    if (t) ((float *)t->data)[c] = (float)v;
}

/* out = (in - mean) * scale + shift over channel c */
static void affine_channel(const kiln_bn_geom *g, int64_t c, const kiln_tensor *in, double mean,
                           double scale, double shift, kiln_tensor *out) {
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            int64_t k = at(g, o, c, i);
            kiln_cpu_store(out->data, out->dtype, k, (ld(in, k) - mean) * scale + shift);
        }
}

/* mean and biased variance of channel c, two passes */
static void channel_stats(const kiln_bn_geom *g, int64_t c, const kiln_tensor *x, double *mean,
                          double *var) {
    double sum = 0.0;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) sum += ld(x, at(g, o, c, i));
    double m = sum / (double)g->n;
    double ss = 0.0;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            double d = ld(x, at(g, o, c, i)) - m;
            ss += d * d;
        }
    *var = ss / (double)g->n;
    *mean = kiln_bn_mean_rule(m, *var);
}

static void forward_train(const kiln_op *op, const kiln_bn_geom *g) {
    const kiln_tensor *x = op->src[0], *gamma = op->src[1], *beta = op->src[2];
    const kiln_tensor *mm = op->src[3], *mv = op->src[4]; /* updated in place */
    kiln_tensor *y = op->dst[0], *save_mean = op->dst[1], *save_invstd = op->dst[2];
    const double eps = op->f[0], keep = op->d[0], w = op->d[1];
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t c = 0; c < g->c; c++) {
        double mean, var;
        channel_stats(g, c, x, &mean, &var);
        double invstd = kiln_bn_invstd(var, eps);
        put(save_mean, c, mean);
        put(save_invstd, c, invstd);
        if (mm) {
            float *m = mm->data, *v = mv->data;
            m[c] = kiln_bn_moving(m[c], mean, keep, w);
            v[c] = kiln_bn_moving(v[c], kiln_bn_sample_var(var, g->n, op->i[1]), keep, w);
        }
        affine_channel(g, c, x, mean, chan(gamma, c, 1.0) * invstd, chan(beta, c, 0.0), y);
    }
}

static void forward_infer(const kiln_op *op, const kiln_bn_geom *g) {
    const kiln_tensor *x = op->src[0], *gamma = op->src[1], *beta = op->src[2];
    const kiln_tensor *mm = op->src[3], *mv = op->src[4];
    kiln_tensor *y = op->dst[0];
    const double eps = op->f[0];
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t c = 0; c < g->c; c++) {
        double mean = chan(mm, c, 0.0), invstd = kiln_bn_invstd(chan(mv, c, 1.0), eps);
        put(op->dst[1], c, mean);    /* a frozen layer's training forward */
        put(op->dst[2], c, invstd);
        affine_channel(g, c, x, mean, chan(gamma, c, 1.0) * invstd, chan(beta, c, 0.0), y);
    }
}

static void backward(const kiln_op *op, const kiln_bn_geom *g) {
    const kiln_tensor *x = op->src[0], *dy = op->src[1], *gamma = op->src[2];
    const kiln_tensor *save_mean = op->src[3], *save_invstd = op->src[4];
    kiln_tensor *dx = op->dst[0];
    const bool frozen = (op->i[1] & KILN_BN_FROZEN) != 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t c = 0; c < g->c; c++) {
        double mean = chan(save_mean, c, 0.0), invstd = chan(save_invstd, c, 1.0);
        double sum_dy = 0.0, sum_dy_xc = 0.0; /* sum(dy), sum(dy (x - mean)) */
        for (int64_t o = 0; o < g->outer; o++)
            for (int64_t i = 0; i < g->inner; i++) {
                int64_t k = at(g, o, c, i);
                double d = ld(dy, k);
                sum_dy += d;
                sum_dy_xc += d * (ld(x, k) - mean);
            }
        double dbeta = sum_dy, dgamma = sum_dy_xc * invstd;
        put(op->dst[1], c, dgamma);
        put(op->dst[2], c, dbeta);
        kiln_bn_bwd_coef k = kiln_bn_backward_coef(chan(gamma, c, 1.0), invstd, dgamma, dbeta,
                                                   g->n, op->i[1]);
        for (int64_t o = 0; o < g->outer; o++)
            for (int64_t i = 0; i < g->inner; i++) {
                int64_t e = at(g, o, c, i);
                double v = k.a * ld(dy, e) + k.q;
                if (!frozen) v += k.p * (ld(x, e) - mean); /* the inference gradient reads no x */
                kiln_cpu_store(dx->data, dx->dtype, e, v);
            }
    }
}

static void backward_infer(const kiln_op *op, const kiln_bn_geom *g) {
    const kiln_tensor *dy = op->src[0], *gamma = op->src[1], *mv = op->src[2];
    const double eps = op->f[0];
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t c = 0; c < g->c; c++)
        affine_channel(g, c, dy, 0.0, chan(gamma, c, 1.0) * kiln_bn_invstd(chan(mv, c, 1.0), eps),
                       0.0, op->dst[0]);
}

kiln_status kiln_cpu_batchnorm(const kiln_op *op) {
    kiln_bn_geom g = kiln_bn_geometry(op->src[0], op->i[0]);
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN: forward_train(op, &g); break;
    case KILN_OP_BN_FWD_INFER: forward_infer(op, &g); break;
    case KILN_OP_BN_BWD: backward(op, &g); break;
    case KILN_OP_BN_BWD_INFER: backward_infer(op, &g); break;
    default: break;
    }
    return KILN_OK;
}
