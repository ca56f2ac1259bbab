/* test_batchnorm.c: the CPU batch-norm reference against float64 oracles written plainly here
 * (every mode, layout and option, the edge cases of docs/batchnorm.md), central finite
 * differences for every gradient, the moving statistics against hand-computed values for both
 * conventions, f16/bf16 rounding, NaN/inf propagation, n > 2^24, and the argument checks.
 *
 * Tolerances (normalised error of harness.h unless stated):
 *   CPU vs float64 oracle   1e-6: the CPU computes in double and rounds each output once to
 *                           f32 (2^-24 = 6e-8 of the value); 1e-6 leaves room for nothing else.
 *   finite differences      1e-6: central differences in double (h = 1e-5: truncation and
 *                           cancellation ~1e-9) against the f32 gradients.
 *   hand-computed moving    exact momentum (0.75, 0.25): 2^-23 relative (one f32 rounding);
 *                           the default 0.99f / 0.1f: 2e-6 relative (1 - 0.99f is 0.01 - 9.5e-9).
 *   f16 / bf16              bitwise: the half output is the f32 output rounded once. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"

#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define SHAPE(...) NDIM(__VA_ARGS__), {__VA_ARGS__}

/* ---- a shape and its channel map, written independently of src/ ---- */

typedef struct bn_shape {
    const char *name;
    int ndim;
    int64_t shape[4];
    kiln_layout layout;
    double lo, hi; /* x's random range */
} bn_shape;

static int64_t numel_of(const bn_shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

static int64_t channels_of(const bn_shape *s) {
    return (s->ndim == 2 || s->layout == KILN_LAYOUT_NHWC) ? s->shape[s->ndim - 1] : s->shape[1];
}

/* the channel of flat element k */
static int64_t channel_at(const bn_shape *s, int64_t k) {
    if (s->ndim == 2 || s->layout == KILN_LAYOUT_NHWC) return k % s->shape[s->ndim - 1];
    int64_t plane = 1;
    for (int d = 2; d < s->ndim; d++) plane *= s->shape[d];
    return (k / plane) % s->shape[1];
}

static const bn_shape shapes[] = {
    {"dense (5, 3)", SHAPE(5, 3), KILN_LAYOUT_NHWC, -2, 3},
    {"dense n=1 (1, 7)", SHAPE(1, 7), KILN_LAYOUT_NCHW, -2, 3},
    {"dense (33, 37)", SHAPE(33, 37), KILN_LAYOUT_NHWC, -1, 1},
    {"NHWC (2, 3, 3, 5)", SHAPE(2, 3, 3, 5), KILN_LAYOUT_NHWC, -2, 2},
    {"NHWC HW=1 (3, 1, 1, 40)", SHAPE(3, 1, 1, 40), KILN_LAYOUT_NHWC, 0, 4},
    {"NHWC odd (2, 5, 7, 33)", SHAPE(2, 5, 7, 33), KILN_LAYOUT_NHWC, -3, 1},
    {"NHWC n=1 (1, 1, 1, 6)", SHAPE(1, 1, 1, 6), KILN_LAYOUT_NHWC, -1, 1},
    {"NCHW (2, 5, 3, 3)", SHAPE(2, 5, 3, 3), KILN_LAYOUT_NCHW, -2, 2},
    {"NCHW HW=1 (4, 40, 1, 1)", SHAPE(4, 40, 1, 1), KILN_LAYOUT_NCHW, -1, 2},
    {"NCHW odd (3, 33, 5, 7)", SHAPE(3, 33, 5, 7), KILN_LAYOUT_NCHW, -2, 2},
    {"NCHW n=1 (1, 3, 1, 1)", SHAPE(1, 3, 1, 1), KILN_LAYOUT_NCHW, -1, 1},
    {"NLC 3-D (2, 9, 6)", SHAPE(2, 9, 6), KILN_LAYOUT_NHWC, -1, 1},
    {"NCL 3-D (2, 6, 9)", SHAPE(2, 6, 9), KILN_LAYOUT_NCHW, -1, 1},
    {"NHWC offset 1e4 (4, 6, 6, 8)", SHAPE(4, 6, 6, 8), KILN_LAYOUT_NHWC, 1e4 - 1.7320508, 1e4 + 1.7320508},
    {"NCHW offset 1e4 (4, 8, 6, 6)", SHAPE(4, 8, 6, 6), KILN_LAYOUT_NCHW, 1e4 - 1.7320508, 1e4 + 1.7320508},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* ---- float64 oracles ---- */

/* per-channel mean and biased variance, two passes over the flat array */
static void oracle_stats(const bn_shape *s, const float *x, double *mean, double *var) {
    int64_t n = numel_of(s), C = channels_of(s);
    int64_t *cnt = calloc((size_t)C, sizeof *cnt);
    for (int64_t c = 0; c < C; c++) mean[c] = var[c] = 0.0;
    for (int64_t k = 0; k < n; k++) { mean[channel_at(s, k)] += x[k]; cnt[channel_at(s, k)]++; }
    for (int64_t c = 0; c < C; c++) mean[c] /= (double)cnt[c];
    for (int64_t k = 0; k < n; k++) {
        double d = x[k] - mean[channel_at(s, k)];
        var[channel_at(s, k)] += d * d;
    }
    for (int64_t c = 0; c < C; c++) var[c] /= (double)cnt[c];
    free(cnt);
}

/* y = gamma (x - mean) / sqrt(var + eps) + beta, in double, from double inputs */
static void oracle_normalize(const bn_shape *s, const double *x, const double *mean,
                             const double *var, const double *gamma, const double *beta,
                             double eps, double *y) {
    for (int64_t k = 0; k < numel_of(s); k++) {
        int64_t c = channel_at(s, k);
        y[k] = gamma[c] * (x[k] - mean[c]) / sqrt(var[c] + eps) + beta[c];
    }
}

static double *to_f64(const float *v, int64_t n) {
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

static float *host_f32(const kiln_tensor *t) { return kt_get_f32(t); }

/* ---- helpers ---- */

static kiln_tensor *vec(int64_t c) { return kt_new(kt_cpu(), KILN_F32, 1, (int64_t[]){c}); }

static kiln_tensor *data(const bn_shape *s, kiln_dtype dt) {
    return kt_new(kt_cpu(), dt, s->ndim, s->shape);
}

static kiln_bn_params params_for(const bn_shape *s, kiln_bn_convention conv, int variant) {
    kiln_bn_params p = conv == KILN_BN_KERAS ? kiln_bn_params_keras() : kiln_bn_params_torch();
    p.layout = s->layout;
    p.center = variant != 1; /* variant 1: no beta; variant 2: no gamma */
    p.scale = variant != 2;
    return p;
}

/* a channel vector's values as double, or `dflt` for an absent one */
static double *chan_f64(const kiln_tensor *t, int64_t C, double dflt) {
    double *d = malloc((size_t)C * sizeof *d);
    float *h = t ? host_f32(t) : NULL;
    for (int64_t c = 0; c < C; c++) d[c] = h ? h[c] : dflt;
    free(h);
    return d;
}

/* ---- forward, training mode, both conventions, every shape ---- */

Test(bn_cpu, forward_train_vs_oracle) {
    kt_rng r;
    kt_rng_seed(&r, 11);
    for (int si = 0; si < N_SHAPES; si++)
        for (int conv = 0; conv < 2; conv++) {
            const bn_shape *s = &shapes[si];
            int variant = (si + conv) % 3;
            kiln_bn_params p = params_for(s, (kiln_bn_convention)conv, variant);
            p.num_batches_tracked = 4;
            int64_t C = channels_of(s), n = numel_of(s) / C;
            kiln_tensor *x = data(s, KILN_F32), *y = data(s, KILN_F32);
            kiln_tensor *g = vec(C), *b = vec(C), *mm = vec(C), *mv = vec(C), *sm = vec(C), *si_ = vec(C);
            kt_fill_random(x, &r, s->lo, s->hi);
            kt_fill_random(g, &r, 0.5, 1.5);
            kt_fill_random(b, &r, -1, 1);
            kt_fill_random(mm, &r, -1, 1);
            kt_fill_random(mv, &r, 0.5, 2);
            kt_poison(y); kt_poison(sm); kt_poison(si_);
            float *xh = host_f32(x), *mm0 = host_f32(mm), *mv0 = host_f32(mv);
            cr_assert_eq(kiln_batchnorm_forward_train(x, p.scale ? g : NULL, p.center ? b : NULL, mm, mv, &p, y, sm, si_),
                         KILN_OK, "%s: %s", s->name, kiln_last_error());
            cr_expect_eq(p.num_batches_tracked, 5);

            double *mean = malloc((size_t)C * sizeof *mean), *var = malloc((size_t)C * sizeof *var);
            oracle_stats(s, xh, mean, var);
            double *gd = chan_f64(p.scale ? g : NULL, C, 1.0), *bd = chan_f64(p.center ? b : NULL, C, 0.0);
            double *xd = to_f64(xh, numel_of(s)), *yd = malloc((size_t)numel_of(s) * sizeof *yd);
            oracle_normalize(s, xd, mean, var, gd, bd, p.epsilon, yd);
            double *inv = malloc((size_t)C * sizeof *inv), *emm = malloc((size_t)C * sizeof *emm),
                   *emv = malloc((size_t)C * sizeof *emv);
            for (int64_t c = 0; c < C; c++) {
                inv[c] = 1.0 / sqrt(var[c] + p.epsilon);
                if (conv == KILN_BN_KERAS) {
                    emm[c] = mm0[c] * (double)p.momentum + mean[c] * (1.0 - (double)p.momentum);
                    emv[c] = mv0[c] * (double)p.momentum + var[c] * (1.0 - (double)p.momentum);
                } else {
                    double unbiased = n > 1 ? var[c] * n / (n - 1) : var[c];
                    emm[c] = (1.0 - p.momentum) * mm0[c] + (double)p.momentum * mean[c];
                    emv[c] = (1.0 - p.momentum) * mv0[c] + (double)p.momentum * unbiased;
                }
            }
            char what[160];
            float *got;
#define CHECK(t, want, count, label)                                            \
    got = host_f32(t);                                                          \
    snprintf(what, sizeof what, "%s %s: %s", s->name, conv ? "torch" : "keras", label); \
    kt_expect_close_f64(what, got, want, count, 1e-6);                          \
    free(got);
            CHECK(y, yd, numel_of(s), "y");
            CHECK(sm, mean, C, "save_mean");
            CHECK(si_, inv, C, "save_invstd");
            CHECK(mm, emm, C, "moving_mean");
            CHECK(mv, emv, C, "moving_var");
#undef CHECK
            free(mean); free(var); free(gd); free(bd); free(xd); free(yd); free(inv); free(emm);
            free(emv); free(xh); free(mm0); free(mv0);
            kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(g); kiln_tensor_free(b);
            kiln_tensor_free(mm); kiln_tensor_free(mv); kiln_tensor_free(sm); kiln_tensor_free(si_);
        }
}

/* ---- forward, inference mode, and a frozen layer's training forward ---- */

Test(bn_cpu, forward_infer_and_frozen_vs_oracle) {
    kt_rng r;
    kt_rng_seed(&r, 12);
    for (int si = 0; si < N_SHAPES; si++)
        for (int frozen = 0; frozen < 2; frozen++) {
            const bn_shape *s = &shapes[si];
            kiln_bn_params p = params_for(s, (kiln_bn_convention)((si + frozen) % 2), si % 3);
            int64_t C = channels_of(s);
            kiln_tensor *x = data(s, KILN_F32), *y = data(s, KILN_F32);
            kiln_tensor *g = vec(C), *b = vec(C), *mm = vec(C), *mv = vec(C), *sm = vec(C), *sv = vec(C);
            kt_fill_random(x, &r, s->lo, s->hi);
            kt_fill_random(g, &r, -1.5, 1.5);
            kt_fill_random(b, &r, -1, 1);
            kt_fill_random(mm, &r, s->lo, s->hi);
            kt_fill_random(mv, &r, 0.1, 3);
            kt_poison(y); kt_poison(sm); kt_poison(sv);
            void *mm_before = kt_get_bytes(mm), *mv_before = kt_get_bytes(mv);
            const kiln_tensor *gp = p.scale ? g : NULL, *bp = p.center ? b : NULL;
            if (frozen) {
                p.trainable = false;
                cr_assert_eq(kiln_batchnorm_forward_train(x, gp, bp, mm, mv, &p, y, sm, sv), KILN_OK, "%s", kiln_last_error());
                cr_expect_eq(p.num_batches_tracked, 0, "a frozen layer counts no batch");
            } else {
                cr_assert_eq(kiln_batchnorm_forward_infer(x, gp, bp, mm, mv, &p, y), KILN_OK, "%s", kiln_last_error());
            }
            float *xh = host_f32(x);
            double *mean = chan_f64(mm, C, 0), *var = chan_f64(mv, C, 0);
            double *gd = chan_f64(gp, C, 1.0), *bd = chan_f64(bp, C, 0.0);
            double *xd = to_f64(xh, numel_of(s)), *yd = malloc((size_t)numel_of(s) * sizeof *yd);
            oracle_normalize(s, xd, mean, var, gd, bd, p.epsilon, yd);
            char what[160];
            snprintf(what, sizeof what, "%s %s: y", s->name, frozen ? "frozen" : "infer");
            float *got = host_f32(y);
            kt_expect_close_f64(what, got, yd, numel_of(s), 1e-6);
            free(got);
            void *mm_after = kt_get_bytes(mm), *mv_after = kt_get_bytes(mv);
            kt_expect_bitwise("moving_mean untouched", mm_before, mm_after, (size_t)C * 4);
            kt_expect_bitwise("moving_var untouched", mv_before, mv_after, (size_t)C * 4);
            if (frozen) {
                double *inv = malloc((size_t)C * sizeof *inv);
                for (int64_t c = 0; c < C; c++) inv[c] = 1.0 / sqrt(var[c] + p.epsilon);
                float *gsm = host_f32(sm), *gsv = host_f32(sv);
                kt_expect_close_f64("frozen save_mean = moving_mean", gsm, mean, C, 0);
                kt_expect_close_f64("frozen save_invstd", gsv, inv, C, 1e-6);
                free(gsm); free(gsv); free(inv);
            }
            free(mm_before); free(mv_before); free(mm_after); free(mv_after);
            free(xh); free(mean); free(var); free(gd); free(bd); free(xd); free(yd);
            kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(g); kiln_tensor_free(b);
            kiln_tensor_free(mm); kiln_tensor_free(mv); kiln_tensor_free(sm); kiln_tensor_free(sv);
        }
}

/* ---- backward against the formulas of the issue, written out in double ---- */

Test(bn_cpu, backward_vs_oracle) {
    kt_rng r;
    kt_rng_seed(&r, 13);
    for (int si = 0; si < N_SHAPES; si++)
        for (int mode = 0; mode < 3; mode++) { /* 0 training, 1 frozen, 2 backward_infer */
            const bn_shape *s = &shapes[si];
            kiln_bn_params p = params_for(s, (kiln_bn_convention)(si % 2), (si + mode) % 3);
            p.trainable = mode == 0;
            int64_t C = channels_of(s), N = numel_of(s), n = N / C;
            kiln_tensor *x = data(s, KILN_F32), *dy = data(s, KILN_F32), *dx = data(s, KILN_F32);
            kiln_tensor *g = vec(C), *m = vec(C), *v = vec(C), *dg = vec(C), *db = vec(C);
            kt_fill_random(x, &r, s->lo, s->hi);
            kt_fill_random(dy, &r, -1, 1);
            kt_fill_random(g, &r, -1.5, 1.5);
            kt_fill_random(m, &r, s->lo, s->hi); /* save_mean (or moving_mean) */
            kt_fill_random(v, &r, 0.3, 2);        /* save_invstd (or moving_var) */
            kt_poison(dx); kt_poison(dg); kt_poison(db);
            const kiln_tensor *gp = p.scale ? g : NULL;
            if (mode < 2)
                cr_assert_eq(kiln_batchnorm_backward(x, dy, gp, m, v, &p, dx, dg, db), KILN_OK, "%s", kiln_last_error());
            else
                cr_assert_eq(kiln_batchnorm_backward_infer(dy, gp, v, &p, dx), KILN_OK, "%s", kiln_last_error());
            float *xh = host_f32(x), *dyh = host_f32(dy);
            double *gd = chan_f64(gp, C, 1.0), *md = chan_f64(m, C, 0), *vd = chan_f64(v, C, 0);
            double *sdy = calloc((size_t)C, sizeof *sdy), *sdyxh = calloc((size_t)C, sizeof *sdyxh);
            double *want = malloc((size_t)N * sizeof *want);
            for (int64_t k = 0; k < N; k++) {
                int64_t c = channel_at(s, k);
                sdy[c] += dyh[k];
                sdyxh[c] += dyh[k] * (xh[k] - md[c]) * vd[c];
            }
            for (int64_t k = 0; k < N; k++) {
                int64_t c = channel_at(s, k);
                if (mode == 0) { /* dx = gamma / (n s) (n dy - sum dy - xhat sum(dy xhat)), 1/s = invstd */
                    double xhat = (xh[k] - md[c]) * vd[c];
                    want[k] = gd[c] * vd[c] / n * (n * dyh[k] - sdy[c] - xhat * sdyxh[c]);
                } else if (mode == 1) {
                    want[k] = dyh[k] * gd[c] * vd[c];
                } else { /* dx = dy gamma / sqrt(moving_var + eps) */
                    want[k] = dyh[k] * gd[c] / sqrt(vd[c] + p.epsilon);
                }
            }
            char what[160];
            snprintf(what, sizeof what, "%s mode %d: dx", s->name, mode);
            float *got = host_f32(dx);
            kt_expect_close_f64(what, got, want, N, 1e-6);
            free(got);
            if (mode < 2) {
                got = host_f32(dg);
                snprintf(what, sizeof what, "%s mode %d: dgamma", s->name, mode);
                kt_expect_close_f64(what, got, sdyxh, C, 1e-6);
                free(got);
                got = host_f32(db);
                snprintf(what, sizeof what, "%s mode %d: dbeta", s->name, mode);
                kt_expect_close_f64(what, got, sdy, C, 1e-6);
                free(got);
            }
            free(xh); free(dyh); free(gd); free(md); free(vd); free(sdy); free(sdyxh); free(want);
            kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(dx); kiln_tensor_free(g);
            kiln_tensor_free(m); kiln_tensor_free(v); kiln_tensor_free(dg); kiln_tensor_free(db);
        }
}

/* ---- finite differences (central, double) of L = sum(w * y) ---- */

typedef struct fd_problem {
    const bn_shape *s;
    bool train;
    double eps;
    double *x, *gamma, *beta, *w, *mm, *mv; /* mm, mv: the inference statistics */
} fd_problem;

static double fd_loss(const fd_problem *f) {
    int64_t N = numel_of(f->s), C = channels_of(f->s);
    double *mean = malloc((size_t)C * sizeof *mean), *var = malloc((size_t)C * sizeof *var);
    double *y = malloc((size_t)N * sizeof *y);
    if (f->train) { /* the double oracle's statistics of the perturbed x */
        for (int64_t c = 0; c < C; c++) mean[c] = var[c] = 0;
        double cnt = (double)(N / C);
        for (int64_t k = 0; k < N; k++) mean[channel_at(f->s, k)] += f->x[k] / cnt;
        for (int64_t k = 0; k < N; k++) {
            double d = f->x[k] - mean[channel_at(f->s, k)];
            var[channel_at(f->s, k)] += d * d / cnt;
        }
    } else {
        memcpy(mean, f->mm, (size_t)C * sizeof *mean);
        memcpy(var, f->mv, (size_t)C * sizeof *var);
    }
    oracle_normalize(f->s, f->x, mean, var, f->gamma, f->beta, f->eps, y);
    double L = 0;
    for (int64_t k = 0; k < N; k++) L += f->w[k] * y[k];
    free(mean); free(var); free(y);
    return L;
}

static void fd_grad(fd_problem *f, double *v, int64_t n, double *grad) {
    for (int64_t k = 0; k < n; k++) {
        double keep = v[k], h = 1e-5 * (fabs(keep) > 1 ? fabs(keep) : 1);
        v[k] = keep + h;
        double lp = fd_loss(f);
        v[k] = keep - h;
        double lm = fd_loss(f);
        v[k] = keep;
        grad[k] = (lp - lm) / (2 * h);
    }
}

Test(bn_cpu, finite_differences) {
    static const bn_shape fd_shapes[] = {
        {"dense (6, 3)", SHAPE(6, 3), KILN_LAYOUT_NHWC, -2, 2},
        {"NHWC (2, 2, 3, 4)", SHAPE(2, 2, 3, 4), KILN_LAYOUT_NHWC, -2, 2},
        {"NCHW (2, 3, 2, 3)", SHAPE(2, 3, 2, 3), KILN_LAYOUT_NCHW, -1, 3},
    };
    kt_rng r;
    kt_rng_seed(&r, 14);
    for (int si = 0; si < 3; si++)
        for (int train = 0; train < 2; train++) {
            const bn_shape *s = &fd_shapes[si];
            kiln_bn_params p = params_for(s, KILN_BN_TORCH, 0);
            p.epsilon = 1e-3f;
            int64_t C = channels_of(s), N = numel_of(s);
            kiln_tensor *x = data(s, KILN_F32), *dy = data(s, KILN_F32), *y = data(s, KILN_F32);
            kiln_tensor *dx = data(s, KILN_F32), *g = vec(C), *b = vec(C), *mm = vec(C), *mv = vec(C);
            kiln_tensor *sm = vec(C), *sv = vec(C), *dg = vec(C), *db = vec(C);
            kt_fill_random(x, &r, s->lo, s->hi);
            kt_fill_random(dy, &r, -1, 1);
            kt_fill_random(g, &r, 0.5, 1.5);
            kt_fill_random(b, &r, -1, 1);
            kt_fill_random(mm, &r, -0.5, 0.5);
            kt_fill_random(mv, &r, 0.5, 2);
            fd_problem f = {s, train, p.epsilon, NULL, NULL, NULL, NULL, NULL, NULL};
            float *h;
            f.x = to_f64(h = host_f32(x), N); free(h);
            f.w = to_f64(h = host_f32(dy), N); free(h);
            f.gamma = to_f64(h = host_f32(g), C); free(h);
            f.beta = to_f64(h = host_f32(b), C); free(h);
            f.mm = to_f64(h = host_f32(mm), C); free(h);
            f.mv = to_f64(h = host_f32(mv), C); free(h);
            /* kiln's gradients: training forward then backward; or a frozen layer's */
            p.trainable = train;
            cr_assert_eq(kiln_batchnorm_forward_train(x, g, b, mm, mv, &p, y, sm, sv), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_batchnorm_backward(x, dy, g, sm, sv, &p, dx, dg, db), KILN_OK, "%s", kiln_last_error());
            double *want_dx = malloc((size_t)N * sizeof(double)), *want_dg = malloc((size_t)C * sizeof(double)),
                   *want_db = malloc((size_t)C * sizeof(double));
            fd_grad(&f, f.x, N, want_dx);
            fd_grad(&f, f.gamma, C, want_dg);
            fd_grad(&f, f.beta, C, want_db);
            char what[128];
            float *got;
            snprintf(what, sizeof what, "%s %s: dx vs finite differences", s->name, train ? "train" : "frozen");
            kt_expect_close_f64(what, got = host_f32(dx), want_dx, N, 1e-6); free(got);
            snprintf(what, sizeof what, "%s %s: dgamma vs finite differences", s->name, train ? "train" : "frozen");
            kt_expect_close_f64(what, got = host_f32(dg), want_dg, C, 1e-6); free(got);
            snprintf(what, sizeof what, "%s %s: dbeta vs finite differences", s->name, train ? "train" : "frozen");
            kt_expect_close_f64(what, got = host_f32(db), want_db, C, 1e-6); free(got);
            if (!train) { /* backward_infer: the same dx from moving_var directly */
                kt_poison(dx);
                cr_assert_eq(kiln_batchnorm_backward_infer(dy, g, mv, &p, dx), KILN_OK, "%s", kiln_last_error());
                snprintf(what, sizeof what, "%s: backward_infer dx vs finite differences", s->name);
                kt_expect_close_f64(what, got = host_f32(dx), want_dx, N, 1e-6); free(got);
            }
            free(f.x); free(f.w); free(f.gamma); free(f.beta); free(f.mm); free(f.mv);
            free(want_dx); free(want_dg); free(want_db);
            kiln_tensor *all[] = {x, dy, y, dx, g, b, mm, mv, sm, sv, dg, db};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
        }
}

/* ---- moving statistics against values computed by hand ---- */

/* x (3, 2) per feature: channel 0 = {1, 2, 3}: mean 2, biased var 2/3, unbiased 1;
 * channel 1 = {10, 20, 60}: mean 30, biased var 1400/3, unbiased 700. */
static const float hand_x[] = {1, 10, 2, 20, 3, 60};

static void run_hand(kiln_bn_params *p, const float *x, int64_t rows, float *mm, float *mv,
                     float *save_mean, float *save_invstd) {
    int64_t shape[2] = {rows, 2};
    kiln_tensor *tx = kt_new(kt_cpu(), KILN_F32, 2, shape), *ty = kt_new(kt_cpu(), KILN_F32, 2, shape);
    kiln_tensor *tm = vec(2), *tv = vec(2), *ts = vec(2), *ti = vec(2), *g = vec(2), *b = vec(2);
    kt_set_f32(tx, x);
    kt_set_f32(tm, mm);
    kt_set_f32(tv, mv);
    cr_assert_eq(kiln_batchnorm_init(p, g, b, NULL, NULL), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_batchnorm_forward_train(tx, g, b, tm, tv, p, ty, ts, ti), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_get(tm, mm, 8), KILN_OK);
    cr_assert_eq(kiln_tensor_get(tv, mv, 8), KILN_OK);
    if (save_mean) cr_assert_eq(kiln_tensor_get(ts, save_mean, 8), KILN_OK);
    if (save_invstd) cr_assert_eq(kiln_tensor_get(ti, save_invstd, 8), KILN_OK);
    kiln_tensor *all[] = {tx, ty, tm, tv, ts, ti, g, b};
    for (size_t k = 0; k < 8; k++) kiln_tensor_free(all[k]);
}

static void expect_rel(const char *what, float got, double want, double tol) {
    cr_expect(fabs(got - want) <= tol * fabs(want), "%s: got %.9g, want %.9g (relative tolerance %g)",
              what, (double)got, want, tol);
}

Test(bn_cpu, moving_keras_by_hand) {
    kiln_bn_params p = kiln_bn_params_keras();
    float mm[2] = {0, 0}, mv[2] = {1, 1}, sm[2], si[2];
    /* momentum 0.75 (exact): moving = 0.75 moving + 0.25 batch, biased variance */
    p.momentum = 0.75f;
    run_hand(&p, hand_x, 3, mm, mv, sm, si);
    const double tight = 0x1p-23;
    expect_rel("keras mm[0]", mm[0], 0.5, tight);                 /* 0.25 * 2 */
    expect_rel("keras mm[1]", mm[1], 7.5, tight);                 /* 0.25 * 30 */
    expect_rel("keras mv[0]", mv[0], 0.75 + 0.25 * 2.0 / 3, tight);   /* 0.9166... */
    expect_rel("keras mv[1]", mv[1], 0.75 + 0.25 * 1400.0 / 3, tight); /* 117.416... */
    expect_rel("keras save_mean[1]", sm[1], 30, tight);
    expect_rel("keras save_invstd[0]", si[0], 1 / sqrt(2.0 / 3 + (double)1e-3f), tight);
    /* a second step from there: 0.75 * 0.5 + 0.25 * 2 */
    run_hand(&p, hand_x, 3, mm, mv, NULL, NULL);
    expect_rel("keras mm[0] step 2", mm[0], 0.875, tight);
    expect_rel("keras mv[1] step 2", mv[1], 0.75 * (0.75 + 0.25 * 1400.0 / 3) + 0.25 * 1400.0 / 3, tight);
    /* the default momentum 0.99: 0.99 * 1 + 0.01 * 1400 / 3 */
    kiln_bn_params d = kiln_bn_params_keras();
    float mm2[2] = {0, 0}, mv2[2] = {1, 1};
    run_hand(&d, hand_x, 3, mm2, mv2, NULL, NULL);
    expect_rel("keras default mm[1]", mm2[1], 0.3, 2e-6);
    expect_rel("keras default mv[0]", mv2[0], 0.99 + 0.01 * 2.0 / 3, 2e-6);
    expect_rel("keras default mv[1]", mv2[1], 0.99 + 0.01 * 1400.0 / 3, 2e-6);
    cr_expect_eq(d.num_batches_tracked, 1);
}

Test(bn_cpu, moving_torch_by_hand) {
    kiln_bn_params p = kiln_bn_params_torch();
    float mm[2] = {0, 0}, mv[2] = {1, 1};
    /* momentum 0.25 (exact): moving = 0.75 moving + 0.25 batch, unbiased variance */
    p.momentum = 0.25f;
    run_hand(&p, hand_x, 3, mm, mv, NULL, NULL);
    const double tight = 0x1p-23;
    expect_rel("torch mm[0]", mm[0], 0.5, tight);
    expect_rel("torch mm[1]", mm[1], 7.5, tight);
    expect_rel("torch mv[0]", mv[0], 0.75 + 0.25 * 1.0, tight);   /* 1 */
    expect_rel("torch mv[1]", mv[1], 0.75 + 0.25 * 700.0, tight); /* 175.75 */
    /* the default momentum 0.1 */
    kiln_bn_params d = kiln_bn_params_torch();
    float mm2[2] = {0, 0}, mv2[2] = {1, 1};
    run_hand(&d, hand_x, 3, mm2, mv2, NULL, NULL);
    expect_rel("torch default mm[1]", mm2[1], 3.0, 2e-6);
    expect_rel("torch default mv[1]", mv2[1], 0.9 + 70.0, 2e-6);
}

Test(bn_cpu, moving_torch_cumulative_by_hand) {
    /* momentum=None: after k batches the moving values are the plain average of the k batch
     * values (num_batches_tracked counts them) */
    kiln_bn_params p = kiln_bn_params_torch();
    p.cumulative = true;
    p.momentum = 0.5f; /* ignored */
    float mm[2] = {7, 7}, mv[2] = {7, 7};
    const float b2[] = {0, 0, 4, 0, 8, 3};    /* means 4, 1; unbiased vars 16, 3 */
    const float b3[] = {1, 1, 1, 1, 1, 1};    /* means 1, 1; vars 0, 0 */
    run_hand(&p, hand_x, 3, mm, mv, NULL, NULL);
    cr_expect_eq(p.num_batches_tracked, 1);
    expect_rel("cumulative mm[0] after 1", mm[0], 2, 0x1p-23);   /* factor 1: the batch itself */
    expect_rel("cumulative mv[1] after 1", mv[1], 700, 0x1p-23);
    run_hand(&p, b2, 3, mm, mv, NULL, NULL);
    run_hand(&p, b3, 3, mm, mv, NULL, NULL);
    cr_expect_eq(p.num_batches_tracked, 3);
    expect_rel("cumulative mm[0]", mm[0], (2 + 4 + 1) / 3.0, 4e-7);
    expect_rel("cumulative mm[1]", mm[1], (30 + 1 + 1) / 3.0, 4e-7);
    expect_rel("cumulative mv[0]", mv[0], (1 + 16 + 0) / 3.0, 4e-7);
    expect_rel("cumulative mv[1]", mv[1], (700 + 3 + 0) / 3.0, 4e-7);
}

Test(bn_cpu, one_value_per_channel) {
    /* n = 1: variance 0, y = beta, invstd = 1/sqrt(eps); PyTorch's unbiased n/(n-1) would be
     * 0/0: kiln stores the biased 0 (docs/batchnorm.md) */
    const float x1[] = {5, -1};
    kiln_bn_params p = kiln_bn_params_torch();
    p.momentum = 0.25f;
    float mm[2] = {0, 0}, mv[2] = {1, 2}, sm[2], si[2];
    run_hand(&p, x1, 1, mm, mv, sm, si);
    expect_rel("n=1 mm[0]", mm[0], 1.25, 0x1p-23);
    expect_rel("n=1 mv[0]", mv[0], 0.75, 0x1p-23);
    expect_rel("n=1 mv[1]", mv[1], 1.5, 0x1p-23);
    expect_rel("n=1 save_mean[1]", sm[1], -1, 0);
    expect_rel("n=1 save_invstd", si[0], 1 / sqrt((double)1e-5f), 0x1p-23);
    cr_expect(isfinite(mv[0]) && isfinite(mv[1]));
}

Test(bn_cpu, moving_null_and_frozen_update_nothing) {
    kiln_bn_params p = kiln_bn_params_keras();
    int64_t shape[2] = {3, 2};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, shape), *y = kt_new(kt_cpu(), KILN_F32, 2, shape);
    kiln_tensor *sm = vec(2), *si = vec(2), *g = vec(2), *b = vec(2);
    kt_set_f32(x, hand_x);
    cr_assert_eq(kiln_batchnorm_init(&p, g, b, NULL, NULL), KILN_OK);
    cr_assert_eq(kiln_batchnorm_forward_train(x, g, b, NULL, NULL, &p, y, sm, si), KILN_OK, "%s", kiln_last_error());
    cr_expect_eq(p.num_batches_tracked, 0, "no moving statistics, no batch counted");
    float got[2];
    cr_assert_eq(kiln_tensor_get(sm, got, 8), KILN_OK);
    expect_rel("save_mean without moving statistics", got[1], 30, 0x1p-23);
    kiln_tensor *all[] = {x, y, sm, si, g, b};
    for (size_t k = 0; k < 6; k++) kiln_tensor_free(all[k]);
}

Test(bn_cpu, params_defaults) {
    kiln_bn_params k = kiln_bn_params_keras(), t = kiln_bn_params_torch();
    cr_expect(k.convention == KILN_BN_KERAS && k.momentum == 0.99f && k.epsilon == 1e-3f);
    cr_expect(k.layout == KILN_LAYOUT_NHWC && k.center && k.scale && k.trainable && !k.cumulative);
    cr_expect(t.convention == KILN_BN_TORCH && t.momentum == 0.1f && t.epsilon == 1e-5f);
    cr_expect(t.layout == KILN_LAYOUT_NCHW && t.center && t.scale && t.trainable && !t.cumulative);
    cr_expect(k.impl == KILN_BN_IMPL_KILN && t.num_batches_tracked == 0);
    cr_expect(k.gamma_init == 1 && k.beta_init == 0 && k.moving_mean_init == 0 && k.moving_var_init == 1);
    kiln_tensor *g = vec(3), *b = vec(3), *m = vec(3), *v = vec(3);
    cr_assert_eq(kiln_batchnorm_init(&t, g, b, m, v), KILN_OK);
    float *h[4] = {host_f32(g), host_f32(b), host_f32(m), host_f32(v)};
    for (int c = 0; c < 3; c++)
        cr_expect(h[0][c] == 1 && h[1][c] == 0 && h[2][c] == 0 && h[3][c] == 1, "initializers");
    for (int k2 = 0; k2 < 4; k2++) free(h[k2]);
    kiln_tensor_free(g); kiln_tensor_free(b); kiln_tensor_free(m); kiln_tensor_free(v);
}

/* ---- f16 / bf16: the half output is the f32 output (same input values) rounded once ---- */

static uint16_t round_half(kiln_dtype dt, float v) {
    return dt == KILN_F16 ? kiln_f32_to_f16(v) : kiln_f32_to_bf16(v);
}

/* a f32 tensor holding exactly the values of a half tensor */
static kiln_tensor *widen(const kiln_tensor *h) {
    kiln_tensor *w = kt_new(kt_cpu(), KILN_F32, h->ndim, h->shape);
    float *v = kt_get_f32(h);
    kt_set_f32(w, v);
    free(v);
    return w;
}

static void expect_rounded_once(const char *what, const kiln_tensor *half, const kiln_tensor *f32) {
    int64_t n = kiln_tensor_numel(f32);
    uint16_t *got = kt_get_bytes(half);
    float *ref = kt_get_f32(f32);
    for (int64_t i = 0; i < n; i++)
        if (got[i] != round_half(half->dtype, ref[i]))
            cr_assert_fail("%s: element %lld is 0x%04x, the f32 result %.9g rounds to 0x%04x", what,
                           (long long)i, got[i], (double)ref[i], round_half(half->dtype, ref[i]));
    free(got);
    free(ref);
}

Test(bn_cpu, half_outputs_round_once) {
    kt_rng r;
    kt_rng_seed(&r, 15);
    const kiln_dtype dts[2] = {KILN_F16, KILN_BF16};
    for (int di = 0; di < 2; di++)
        for (int si = 0; si < N_SHAPES; si++) {
            const bn_shape *s = &shapes[si];
            if (s->lo > 100) continue; /* a 1e4 offset leaves no spread in 8-11 bit mantissas */
            kiln_dtype dt = dts[di];
            kiln_bn_params p = params_for(s, (kiln_bn_convention)(si % 2), 0);
            int64_t C = channels_of(s);
            kiln_tensor *xh = data(s, dt), *dyh = data(s, dt), *yh = data(s, dt), *dxh = data(s, dt);
            kt_fill_random(xh, &r, s->lo, s->hi);
            kt_fill_random(dyh, &r, -1, 1);
            kiln_tensor *x = widen(xh), *dy = widen(dyh), *y = data(s, KILN_F32), *dx = data(s, KILN_F32);
            kiln_tensor *g = vec(C), *b = vec(C), *mm = vec(C), *mv = vec(C), *mm2 = vec(C), *mv2 = vec(C);
            kiln_tensor *sm = vec(C), *sv = vec(C), *sm2 = vec(C), *sv2 = vec(C);
            kiln_tensor *dg = vec(C), *db = vec(C), *dg2 = vec(C), *db2 = vec(C);
            kt_fill_random(g, &r, 0.5, 1.5);
            kt_fill_random(b, &r, -1, 1);
            kt_fill_random(mm, &r, -1, 1);
            kt_fill_random(mv, &r, 0.5, 2);
            cr_assert_eq(kiln_copy(mm, mm2), KILN_OK);
            cr_assert_eq(kiln_copy(mv, mv2), KILN_OK);
            kt_poison(yh); kt_poison(dxh);
            kiln_bn_params p2 = p;
            cr_assert_eq(kiln_batchnorm_forward_train(xh, g, b, mm, mv, &p, yh, sm, sv), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_batchnorm_forward_train(x, g, b, mm2, mv2, &p2, y, sm2, sv2), KILN_OK, "%s", kiln_last_error());
            char what[128];
            snprintf(what, sizeof what, "%s %s: y", s->name, kiln_dtype_name(dt));
            expect_rounded_once(what, yh, y);
            void *a, *c;
            kiln_tensor *same[][2] = {{sm, sm2}, {sv, sv2}, {mm, mm2}, {mv, mv2}};
            for (int k = 0; k < 4; k++) {
                kt_expect_bitwise("half vs f32 statistics", a = kt_get_bytes(same[k][0]), c = kt_get_bytes(same[k][1]), (size_t)C * 4);
                free(a); free(c);
            }
            cr_assert_eq(kiln_batchnorm_backward(xh, dyh, g, sm, sv, &p, dxh, dg, db), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_batchnorm_backward(x, dy, g, sm, sv, &p, dx, dg2, db2), KILN_OK, "%s", kiln_last_error());
            snprintf(what, sizeof what, "%s %s: dx", s->name, kiln_dtype_name(dt));
            expect_rounded_once(what, dxh, dx);
            kt_expect_bitwise("half vs f32 dgamma", a = kt_get_bytes(dg), c = kt_get_bytes(dg2), (size_t)C * 4);
            free(a); free(c);
            kt_expect_bitwise("half vs f32 dbeta", a = kt_get_bytes(db), c = kt_get_bytes(db2), (size_t)C * 4);
            free(a); free(c);
            kt_poison(yh);
            cr_assert_eq(kiln_batchnorm_forward_infer(xh, g, b, mm, mv, &p, yh), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_batchnorm_forward_infer(x, g, b, mm, mv, &p, y), KILN_OK, "%s", kiln_last_error());
            expect_rounded_once("inference y", yh, y);
            kt_poison(dxh);
            cr_assert_eq(kiln_batchnorm_backward_infer(dyh, g, mv, &p, dxh), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_batchnorm_backward_infer(dy, g, mv, &p, dx), KILN_OK, "%s", kiln_last_error());
            expect_rounded_once("backward_infer dx", dxh, dx);
            kiln_tensor *all[] = {xh, dyh, yh, dxh, x, dy, y, dx, g, b, mm, mv, mm2, mv2, sm, sv, sm2, sv2, dg, db, dg2, db2};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
        }
}

/* ---- NaN and infinity propagate to their channel, and only there ---- */

Test(bn_cpu, nan_inf_propagate) {
    const bn_shape s = {"NHWC (2, 2, 2, 4)", SHAPE(2, 2, 2, 4), KILN_LAYOUT_NHWC, -1, 1};
    kt_rng r;
    kt_rng_seed(&r, 16);
    kiln_tensor *x = data(&s, KILN_F32), *y = data(&s, KILN_F32), *dy = data(&s, KILN_F32), *dx = data(&s, KILN_F32);
    kiln_tensor *mm = vec(4), *mv = vec(4), *sm = vec(4), *sv = vec(4), *dg = vec(4), *db = vec(4);
    kt_fill_random(x, &r, -1, 1);
    kt_fill_random(dy, &r, -1, 1);
    kiln_bn_params p = kiln_bn_params_keras();
    cr_assert_eq(kiln_batchnorm_init(&p, NULL, NULL, mm, mv), KILN_OK);
    float *xv = host_f32(x);
    xv[4 * 3 + 1] = NAN;       /* channel 1 */
    xv[4 * 5 + 2] = INFINITY;  /* channel 2 */
    xv[4 * 6 + 3] = INFINITY;  /* channel 3: +inf and -inf */
    xv[4 * 7 + 3] = -INFINITY;
    kt_set_f32(x, xv);
    p.scale = p.center = false;
    cr_assert_eq(kiln_batchnorm_forward_train(x, NULL, NULL, mm, mv, &p, y, sm, sv), KILN_OK, "%s", kiln_last_error());
    float *yv = host_f32(y), *smv = host_f32(sm), *svv = host_f32(sv), *mmv = host_f32(mm), *mvv = host_f32(mv);
    for (int k = 0; k < 32; k++) {
        int c = k % 4;
        if (c == 0) cr_expect(isfinite(yv[k]), "y[%d] of the clean channel is %g", k, (double)yv[k]);
        else cr_expect(isnan(yv[k]), "y[%d] of channel %d is %g, want NaN", k, c, (double)yv[k]);
    }
    cr_expect(isfinite(smv[0]) && isfinite(svv[0]) && isfinite(mmv[0]) && isfinite(mvv[0]));
    for (int c = 1; c < 4; c++)
        cr_expect(isnan(smv[c]) && isnan(svv[c]) && isnan(mmv[c]) && isnan(mvv[c]),
                  "channel %d: save_mean %g save_invstd %g moving %g %g, want NaN", c,
                  (double)smv[c], (double)svv[c], (double)mmv[c], (double)mvv[c]);
    /* inference: elementwise, so only the bad elements themselves */
    kiln_bn_params q = kiln_bn_params_keras();
    q.scale = q.center = false;
    kiln_tensor *mm0 = vec(4), *mv0 = vec(4);
    cr_assert_eq(kiln_batchnorm_init(&q, NULL, NULL, mm0, mv0), KILN_OK);
    cr_assert_eq(kiln_batchnorm_forward_infer(x, NULL, NULL, mm0, mv0, &q, y), KILN_OK, "%s", kiln_last_error());
    free(yv);
    yv = host_f32(y);
    for (int k = 0; k < 32; k++)
        cr_expect(isnan(xv[k]) ? isnan(yv[k]) : isinf(xv[k]) ? yv[k] == xv[k] : isfinite(yv[k]),
                  "inference y[%d] = %g from x %g", k, (double)yv[k], (double)xv[k]);
    /* backward: a NaN in dy poisons its channel's dx, dgamma, dbeta */
    float *dyv = host_f32(dy);
    dyv[4 * 2 + 2] = NAN;
    kt_set_f32(dy, dyv);
    for (int k = 0; k < 32; k++) xv[k] = isfinite(xv[k]) ? xv[k] : 0.5f;
    kt_set_f32(x, xv);
    kiln_tensor *m = vec(4), *iv = vec(4);
    cr_assert_eq(kiln_batchnorm_init(&q, NULL, NULL, m, iv), KILN_OK); /* mean 0, invstd 1 */
    cr_assert_eq(kiln_batchnorm_backward(x, dy, NULL, m, iv, &q, dx, dg, db), KILN_OK, "%s", kiln_last_error());
    float *dxv = host_f32(dx), *dgv = host_f32(dg), *dbv = host_f32(db);
    for (int k = 0; k < 32; k++)
        cr_expect(k % 4 == 2 ? isnan(dxv[k]) : isfinite(dxv[k]), "dx[%d] = %g", k, (double)dxv[k]);
    for (int c = 0; c < 4; c++)
        cr_expect(c == 2 ? isnan(dgv[c]) && isnan(dbv[c]) : isfinite(dgv[c]) && isfinite(dbv[c]),
                  "channel %d: dgamma %g dbeta %g", c, (double)dgv[c], (double)dbv[c]);
    free(xv); free(yv); free(smv); free(svv); free(mmv); free(mvv); free(dyv); free(dxv); free(dgv); free(dbv);
    kiln_tensor *all[] = {x, y, dy, dx, mm, mv, sm, sv, dg, db, mm0, mv0, m, iv};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}

/* ---- n above 2^24 per channel: counts and sums must not live in f32 ---- */

Test(bn_cpu, more_than_2pow24_per_channel, .timeout = 300) {
    /* (n, 1) per feature, n = 2^24 + 2^20 + 1: an f32 counter would stick at 2^24 (6% off);
     * values 100 + U(-1, 1) make a mean off by even 1e-6 relative visible in y */
    const int64_t n = (1 << 24) + (1 << 20) + 1;
    int64_t shape[2] = {n, 1};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, shape), *y = kt_new(kt_cpu(), KILN_F32, 2, shape);
    kiln_tensor *sm = vec(1), *sv = vec(1), *mm = vec(1), *mv = vec(1);
    kt_rng r;
    kt_rng_seed(&r, 17);
    kt_fill_random(x, &r, 99, 101);
    kiln_bn_params p = kiln_bn_params_torch();
    cr_assert_eq(kiln_batchnorm_init(&p, NULL, NULL, mm, mv), KILN_OK);
    p.scale = p.center = false;
    cr_assert_eq(kiln_batchnorm_forward_train(x, NULL, NULL, mm, mv, &p, y, sm, sv), KILN_OK, "%s", kiln_last_error());
    float *xv = host_f32(x), *yv = host_f32(y);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += xv[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (xv[i] - mean) * (xv[i] - mean);
    var /= (double)n;
    double inv = 1 / sqrt(var + (double)p.epsilon);
    float *want = malloc((size_t)n * sizeof *want);
    for (int64_t i = 0; i < n; i++) want[i] = (float)((xv[i] - mean) * inv);
    kt_expect_close("n > 2^24: y", yv, want, n, 1e-6);
    float got[1];
    cr_assert_eq(kiln_tensor_get(sm, got, 4), KILN_OK);
    expect_rel("n > 2^24: save_mean", got[0], mean, 1e-7);
    cr_assert_eq(kiln_tensor_get(mv, got, 4), KILN_OK);
    expect_rel("n > 2^24: unbiased moving var", got[0],
               (1.0 - (double)0.1f) * 1.0 + (double)0.1f * var * (double)n / (double)(n - 1), 1e-6);
    /* backward over the same channel, dy independent of x (a dy close to a + b x would leave
     * dx a tiny residual, whose relative error no summation order controls) */
    kiln_tensor *dy = kt_new(kt_cpu(), KILN_F32, 2, shape);
    kt_fill_random(dy, &r, -1, 1);
    free(want);
    want = host_f32(dy);
    kiln_tensor *dx = y, *dg = vec(1), *db = vec(1);
    cr_assert_eq(kiln_batchnorm_backward(x, dy, NULL, sm, sv, &p, dx, dg, db), KILN_OK, "%s", kiln_last_error());
    float smf, svf;
    cr_assert_eq(kiln_tensor_get(sm, &smf, 4), KILN_OK);
    cr_assert_eq(kiln_tensor_get(sv, &svf, 4), KILN_OK);
    double sdy = 0, sdyx = 0;
    for (int64_t i = 0; i < n; i++) {
        sdy += want[i];
        sdyx += want[i] * ((double)xv[i] - smf) * svf;
    }
    float dbv, dgv;
    cr_assert_eq(kiln_tensor_get(db, &dbv, 4), KILN_OK);
    cr_assert_eq(kiln_tensor_get(dg, &dgv, 4), KILN_OK);
    expect_rel("n > 2^24: dbeta", dbv, sdy, 1e-6);
    expect_rel("n > 2^24: dgamma", dgv, sdyx, 1e-6);
    float *dxv = host_f32(dx);
    for (int64_t i = 0; i < n; i++) {
        double xhat = ((double)xv[i] - smf) * svf;
        want[i] = (float)(svf / (double)n * ((double)n * want[i] - sdy - xhat * sdyx));
    }
    kt_expect_close("n > 2^24: dx", dxv, want, n, 1e-6);
    free(xv); free(yv); free(want); free(dxv);
    kiln_tensor *all[] = {x, y, sm, sv, mm, mv, dy, dg, db};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}

/* ---- argument checks: the right status, a message naming the op and the argument ---- */

static void expect_error(kiln_status got, kiln_status want, const char *fn, const char *needle) {
    cr_expect_eq(got, want, "%s: got %s, want %s (%s)", needle, kiln_status_name(got),
                 kiln_status_name(want), kiln_last_error());
    cr_expect(strstr(kiln_last_error(), fn) != NULL, "message does not name %s: %s", fn, kiln_last_error());
    cr_expect(strstr(kiln_last_error(), needle) != NULL, "message does not name %s: %s", needle, kiln_last_error());
}

Test(bn_cpu, argument_checks) {
    const char *ft = "kiln_batchnorm_forward_train", *fb = "kiln_batchnorm_backward";
    int64_t s4[4] = {2, 3, 3, 4}, s1[1] = {12}, s0[2] = {0, 4};
    kiln_backend *cpu = kt_cpu();
    kiln_tensor *x = kt_new(cpu, KILN_F32, 4, s4), *y = kt_new(cpu, KILN_F32, 4, s4), *dy = kt_new(cpu, KILN_F32, 4, s4);
    kiln_tensor *g = vec(4), *b = vec(4), *mm = vec(4), *mv = vec(4), *sm = vec(4), *sv = vec(4), *g5 = vec(5);
    kiln_tensor *xi = kt_new(cpu, KILN_I32, 4, s4), *x1 = kt_new(cpu, KILN_F32, 1, s1), *yh = kt_new(cpu, KILN_F16, 4, s4);
    kiln_tensor *x0 = kt_new(cpu, KILN_F32, 2, s0), *y0 = kt_new(cpu, KILN_F32, 2, s0), *gh = kt_new(cpu, KILN_F16, 1, (int64_t[]){4});
    kiln_tensor *other = NULL;
    cr_assert_eq(kiln_tensor_new(kt_cpu_second(), KILN_F32, 1, (int64_t[]){4}, "other", &other), KILN_OK);
    kt_fill_random(x, &(kt_rng){7}, -1, 1);
    kiln_bn_params p = kiln_bn_params_keras();
    expect_error(kiln_batchnorm_forward_train(xi, g, b, mm, mv, &p, y, sm, sv), KILN_ERR_DTYPE, ft, "i32");
    expect_error(kiln_batchnorm_forward_train(x1, g, b, mm, mv, &p, y, sm, sv), KILN_ERR_SHAPE, ft, "(12,)");
    expect_error(kiln_batchnorm_forward_train(x, g5, b, mm, mv, &p, y, sm, sv), KILN_ERR_SHAPE, ft, "gamma");
    expect_error(kiln_batchnorm_forward_train(x, NULL, b, mm, mv, &p, y, sm, sv), KILN_ERR_INVALID_ARG, ft, "gamma");
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, mv, &p, yh, sm, sv), KILN_ERR_DTYPE, ft, "y");
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, NULL, &p, y, sm, sv), KILN_ERR_INVALID_ARG, ft, "moving_var");
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, mv, &p, x, sm, sv), KILN_ERR_INVALID_ARG, ft, "share memory");
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, mv, &p, y, NULL, sv), KILN_ERR_INVALID_ARG, ft, "save_mean");
    expect_error(kiln_batchnorm_forward_train(x0, g, b, mm, mv, &p, y0, sm, sv), KILN_ERR_SHAPE, ft, "no values per channel");
    expect_error(kiln_batchnorm_forward_train(x, gh, b, mm, mv, &p, y, sm, sv), KILN_ERR_DTYPE, ft, "gamma");
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, other, &p, y, sm, sv), KILN_ERR_DEVICE_MISMATCH, ft, "other");
    cr_expect_eq(p.num_batches_tracked, 0, "a failed call counts no batch");
    kiln_bn_params q = p;
    q.momentum = 1.5f;
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, mv, &q, y, sm, sv), KILN_ERR_INVALID_ARG, ft, "momentum");
    q = p;
    q.epsilon = -1.0f;
    expect_error(kiln_batchnorm_forward_infer(x, g, b, mm, mv, &q, y), KILN_ERR_INVALID_ARG, "kiln_batchnorm_forward_infer", "epsilon");
    q = p;
    q.layout = (kiln_layout)7;
    expect_error(kiln_batchnorm_forward_train(x, g, b, mm, mv, &q, y, sm, sv), KILN_ERR_INVALID_ARG, ft, "layout");
    q = p;
    q.impl = (kiln_bn_impl)99;
    expect_error(kiln_batchnorm_backward(x, dy, g, sm, sv, &q, y, NULL, NULL), KILN_ERR_INVALID_ARG, fb, "impl");
    expect_error(kiln_batchnorm_backward(x, yh, g, sm, sv, &p, y, NULL, NULL), KILN_ERR_DTYPE, fb, "dy");
    expect_error(kiln_batchnorm_backward(x, dy, g, sm, sv, &p, y, g5, NULL), KILN_ERR_SHAPE, fb, "dgamma");
    expect_error(kiln_batchnorm_backward(x, dy, g, sm, sv, &p, dy, NULL, NULL), KILN_ERR_INVALID_ARG, fb, "share memory");
    expect_error(kiln_batchnorm_backward_infer(dy, g, NULL, &p, y), KILN_ERR_INVALID_ARG, "kiln_batchnorm_backward_infer", "moving_var");
    expect_error(kiln_batchnorm_backward(x, dy, g, sm, sv, NULL, y, NULL, NULL), KILN_ERR_INVALID_ARG, fb, "params");
    kiln_tensor *all[] = {x, y, dy, g, b, mm, mv, sm, sv, g5, xi, x1, yh, x0, y0, gh, other};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) kiln_tensor_free(all[k]);
}
