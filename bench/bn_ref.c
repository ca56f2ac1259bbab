/* bench/bn_ref.c: the inputs of one BatchNorm config and an independent float64 reference
 * that every implementation (kiln's CUDA kernels, cuDNN, the CPU backend) is validated
 * against before it is timed.
 *
 * Inputs are drawn from a counter-based hash (element i of a config always gets the same
 * value, whatever the thread count), per channel shifted and scaled so that no channel is
 * centred or unit (a kernel that skips a step is caught) and nothing is zero. The reference
 * computes per channel sums in double in three passes and checks every element of every
 * output through one linear form, want = A[c] dy + P[c] x + Q[c]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "half.h"
#include "rng.h"

#ifdef _OPENMP
#define BENCH_OMP(x) _Pragma(x)
#else
#define BENCH_OMP(x)
#endif

kiln_bn_params bench_bn_params(const bench_config *cfg, kiln_bn_impl impl) {
    kiln_bn_params p = kiln_bn_params_torch(); /* eps 1e-5, momentum 0.1, unbiased moving var */
    p.layout = cfg->layout;
    p.impl = impl;
    return p;
}

double bench_bn_tolerance(kiln_dtype t) {
    /* max-normalised error: f32 arithmetic lands far below 1e-4; f16 and bf16 outputs carry
     * their rounding (2^-11 and 2^-8 of the largest value) plus a little */
    return t == KILN_F16 ? 2e-3 : t == KILN_BF16 ? 1e-2 : 1e-4;
}

/* ---- inputs -------------------------------------------------------------------------------- */

/* draw i of the splitmix64 stream at state seed (core's rng.h), in [0, 1): any i directly */
static inline double hash_unit(uint64_t seed, uint64_t i) {
    kiln_rng r = kiln_rng_at(seed + i * KILN_RNG_GAMMA);
    return kiln_rng_uniform(&r);
}

/* the value stored in dtype t, as a float, and its raw bits at raw[i] */
static inline float store(void *raw, kiln_dtype t, int64_t i, float v) {
    if (t == KILN_F16) {
        uint16_t h = kiln_f32_to_f16(v);
        ((uint16_t *)raw)[i] = h;
        return kiln_f16_to_f32(h);
    }
    if (t == KILN_BF16) {
        uint16_t h = kiln_f32_to_bf16(v);
        ((uint16_t *)raw)[i] = h;
        return kiln_bf16_to_f32(h);
    }
    ((float *)raw)[i] = v;
    return v;
}

/* out[e] = shift[ch] + scale[ch] * u, u uniform in [-1, 1), for every element e */
static void draw(const bench_bn_host *h, uint64_t seed, const float *shift, const float *scale,
                 void *raw, float *out) {
    const int64_t C = h->c, inner = h->inner, total = (int64_t)h->numel;
    kiln_dtype t = h->cfg->dtype;
    BENCH_OMP("omp parallel for schedule(static)")
    for (int64_t e = 0; e < total; e++) {
        int64_t ch = (e / inner) % C;
        float v = shift[ch] + scale[ch] * (float)(2.0 * hash_unit(seed, (uint64_t)e) - 1.0);
        out[e] = store(raw, t, e, v);
    }
}

static void draw_channels(uint64_t seed, int64_t c, float lo, float hi, float *out) {
    for (int64_t i = 0; i < c; i++) out[i] = lo + (hi - lo) * (float)hash_unit(seed, (uint64_t)i);
}

/* ---- per channel sums ------------------------------------------------------------------------ */

/* Over every element: sx[ch] += x - shift[ch], sxx[ch] += (x - shift[ch])^2, and with dy,
 * sdy[ch] += dy, sdyx[ch] += dy (x - shift[ch]). A segment is a run of elements: a row of C
 * channels (channels last) or a plane of one channel (channels first). */
static void channel_sums(const bench_bn_host *h, const double *shift, bool with_dy, double *sx,
                         double *sxx, double *sdy, double *sdyx) {
    const int64_t C = h->c, inner = h->inner;
    const int64_t segs = inner == 1 ? h->outer : h->outer * C, len = inner == 1 ? C : inner;
    const float *x = h->x, *dy = h->dy;
    memset(sx, 0, sizeof(double) * (size_t)C);
    memset(sxx, 0, sizeof(double) * (size_t)C);
    memset(sdy, 0, sizeof(double) * (size_t)C);
    memset(sdyx, 0, sizeof(double) * (size_t)C);
    BENCH_OMP("omp parallel for schedule(static) reduction(+ : sx[:C], sxx[:C], sdy[:C], sdyx[:C])")
    for (int64_t s = 0; s < segs; s++) {
        const int64_t base = s * len, c0 = inner == 1 ? 0 : s % C, step = inner == 1 ? 1 : 0;
        for (int64_t j = 0, ch = c0; j < len; j++, ch += step) {
            double d = (double)x[base + j] - shift[ch];
            sx[ch] += d;
            sxx[ch] += d * d;
            if (with_dy) {
                double g = (double)dy[base + j];
                sdy[ch] += g;
                sdyx[ch] += g * d;
            }
        }
    }
}

static void reference(bench_bn_host *h) {
    const int64_t C = h->c;
    const double n = (double)h->n, eps = 1e-5, w = 0.1;
    /* coef[] and, before they are computed, invstd (as a zero shift) and var serve as scratch */
    double *s1 = h->coef[0], *s2 = h->coef[1], *s3 = h->coef[2], *zero = h->invstd;
    memset(zero, 0, sizeof(double) * (size_t)C);
    channel_sums(h, zero, false, s1, s2, s3, h->var); /* pass 1: the mean */
    for (int64_t c = 0; c < C; c++) h->mean[c] = s1[c] / n;
    channel_sums(h, h->mean, false, s1, s2, s3, h->var); /* pass 2: centred, the variance */
    for (int64_t c = 0; c < C; c++) {
        h->mean[c] += s1[c] / n; /* the first pass's rounding, corrected */
        h->var[c] = s2[c] / n - (s1[c] / n) * (s1[c] / n);
        h->invstd[c] = 1.0 / sqrt(h->var[c] + eps);
        double unbiased = h->n > 1 ? h->var[c] * n / (n - 1.0) : h->var[c];
        h->mm_new[c] = (1.0 - w) * (double)h->mm[c] + w * h->mean[c];
        h->mv_new[c] = (1.0 - w) * (double)h->mv[c] + w * unbiased;
        h->save_mean[c] = (float)h->mean[c];
        h->save_invstd[c] = (float)h->invstd[c];
    }
    /* pass 3: the backward sums, around the saved (float) statistics it is given */
    double *shift = h->coef[2];
    for (int64_t c = 0; c < C; c++) shift[c] = (double)h->save_mean[c];
    channel_sums(h, shift, true, s1, s2, h->dbeta, h->dgamma);
    for (int64_t c = 0; c < C; c++) h->dgamma[c] *= (double)h->save_invstd[c];
}

kiln_status bench_bn_host_new(const bench_config *cfg, uint64_t seed, bench_bn_host **out) {
    bench_bn_host *h = calloc(1, sizeof *h);
    if (!h) return KILN_ERR_OOM;
    h->cfg = cfg;
    int64_t shape[4];
    int nd = bench_config_shape(cfg, shape);
    kiln_bn_params p = bench_bn_params(cfg, KILN_BN_IMPL_KILN);
    /* the (outer, C, inner) view, from the shape as kiln sees it */
    int axis = (nd > 2 && p.layout == KILN_LAYOUT_NCHW) ? 1 : nd - 1;
    h->outer = h->inner = 1;
    for (int d = 0; d < nd; d++) {
        if (d < axis) h->outer *= shape[d];
        else if (d == axis) h->c = shape[d];
        else h->inner *= shape[d];
    }
    h->n = h->outer * h->inner;
    h->numel = (size_t)bench_config_numel(cfg);
    h->esize = kiln_dtype_size(cfg->dtype);
    const size_t C = (size_t)h->c;
    bool ok = true;
#define ALLOC(ptr, count) ok = ok && ((ptr) = malloc(sizeof *(ptr) * (count))) != NULL
    ALLOC(h->x, h->numel);
    ALLOC(h->dy, h->numel);
    ALLOC(h->gamma, C); ALLOC(h->beta, C); ALLOC(h->mm, C); ALLOC(h->mv, C);
    ALLOC(h->mean, C); ALLOC(h->var, C); ALLOC(h->invstd, C);
    ALLOC(h->save_mean, C); ALLOC(h->save_invstd, C);
    ALLOC(h->mm_new, C); ALLOC(h->mv_new, C); ALLOC(h->dgamma, C); ALLOC(h->dbeta, C);
    for (int i = 0; i < 3; i++) ALLOC(h->coef[i], C);
#undef ALLOC
    if (ok && cfg->dtype == KILN_F32) {
        h->x_raw = h->x;
        h->dy_raw = h->dy;
    } else if (ok) {
        ok = (h->x_raw = malloc(h->esize * h->numel)) && (h->dy_raw = malloc(h->esize * h->numel));
    }
    float *shift = ok ? malloc(sizeof(float) * C) : NULL, *scale = ok ? malloc(sizeof(float) * C) : NULL;
    if (!ok || !shift || !scale) {
        free(shift);
        free(scale);
        bench_bn_host_free(h);
        fprintf(stderr, "kiln-bench: out of host memory for %s\n", cfg->cs->name);
        return KILN_ERR_OOM;
    }
    draw_channels(seed + 1, h->c, -1.0f, 1.0f, shift);
    draw_channels(seed + 2, h->c, 0.5f, 2.0f, scale);
    draw(h, seed + 3, shift, scale, h->x_raw, h->x);
    for (size_t c = 0; c < C; c++) shift[c] *= 0.2f, scale[c] = 1.0f;
    draw(h, seed + 4, shift, scale, h->dy_raw, h->dy);
    free(shift);
    free(scale);
    draw_channels(seed + 5, h->c, 0.5f, 1.5f, h->gamma);
    draw_channels(seed + 6, h->c, -0.5f, 0.5f, h->beta);
    draw_channels(seed + 7, h->c, -0.5f, 0.5f, h->mm);
    draw_channels(seed + 8, h->c, 0.5f, 2.0f, h->mv);
    reference(h);
    *out = h;
    return KILN_OK;
}

void bench_bn_host_free(bench_bn_host *h) {
    if (!h) return;
    if (h->x_raw != h->x) free(h->x_raw);
    if (h->dy_raw != h->dy) free(h->dy_raw);
    void *v[] = {h->x, h->dy, h->gamma, h->beta, h->mm, h->mv, h->mean, h->var, h->invstd,
                 h->save_mean, h->save_invstd, h->mm_new, h->mv_new, h->dgamma, h->dbeta,
                 h->coef[0], h->coef[1], h->coef[2]};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
    free(h);
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* max |got - (A dy + P x + Q)| / max |A dy + P x + Q| over every element (A NULL: no dy) */
static double check_elements(const bench_bn_host *h, const float *got, const double *A,
                             const double *P, const double *Q) {
    const int64_t C = h->c, inner = h->inner, total = (int64_t)h->numel;
    const float *x = h->x, *dy = h->dy;
    double worst = 0.0, scale = 0.0;
    int bad = 0;
    BENCH_OMP("omp parallel for schedule(static) reduction(max : worst, scale) reduction(| : bad)")
    for (int64_t e = 0; e < total; e++) {
        int64_t ch = (e / inner) % C;
        double want = P[ch] * (double)x[e] + Q[ch] + (A ? A[ch] * (double)dy[e] : 0.0);
        if (!isfinite(got[e])) bad = 1;
        double d = fabs((double)got[e] - want);
        if (d > worst) worst = d;
        if (fabs(want) > scale) scale = fabs(want);
    }
    if (bad) return INFINITY;
    return worst / (scale > 1e-30 ? scale : 1e-30);
}

static double check_channels(const bench_bn_host *h, const float *got, const double *want) {
    double worst = 0.0, scale = 0.0;
    for (int64_t c = 0; c < h->c; c++) {
        if (!isfinite(got[c])) return INFINITY;
        double d = fabs((double)got[c] - want[c]);
        if (d > worst) worst = d;
        if (fabs(want[c]) > scale) scale = fabs(want[c]);
    }
    return worst / (scale > 1e-30 ? scale : 1e-30);
}

bool bench_bn_check(const bench_bn_host *h, int dir, const bench_bn_out *o, double *err,
                    double *tol, const char **what) {
    double *A = h->coef[0], *P = h->coef[1], *Q = h->coef[2];
    /* y and dx carry their dtype's rounding; the per-channel outputs are f32 computed from
     * exact input values, whatever the dtype */
    const double eps = 1e-5, n = (double)h->n, t_data = bench_bn_tolerance(h->cfg->dtype);
    const double t_stat = bench_bn_tolerance(KILN_F32), t_sum = BENCH_SUM_TOL;
    for (int64_t c = 0; c < h->c; c++) {
        double g = h->gamma[c], b = h->beta[c];
        if (dir == BENCH_DIR_FWD_TRAIN) {
            P[c] = g * h->invstd[c];
            Q[c] = b - P[c] * h->mean[c];
        } else if (dir == BENCH_DIR_FWD_INFER) {
            P[c] = g / sqrt((double)h->mv[c] + eps);
            Q[c] = b - P[c] * (double)h->mm[c];
        } else { /* dx = A dy + P (x - save_mean) - A dbeta / n */
            double si = h->save_invstd[c];
            A[c] = g * si;
            P[c] = -A[c] * si * h->dgamma[c] / n;
            Q[c] = -A[c] * h->dbeta[c] / n - P[c] * (double)h->save_mean[c];
        }
    }
    /* the outputs of each direction: name, reference, tolerance */
    struct {
        const char *name;
        const double *want;
        double tol;
    } ch[4] = {{NULL, NULL, 0}};
    if (dir == BENCH_DIR_FWD_TRAIN) {
        ch[0].name = "save_mean", ch[0].want = h->mean;
        ch[1].name = "save_invstd", ch[1].want = h->invstd;
        ch[2].name = "moving_mean", ch[2].want = h->mm_new;
        ch[3].name = "moving_var", ch[3].want = h->mv_new;
        for (int k = 0; k < 4; k++) ch[k].tol = t_stat;
    } else if (dir == BENCH_DIR_BWD) {
        ch[0].name = "dgamma", ch[0].want = h->dgamma, ch[0].tol = t_sum;
        ch[1].name = "dbeta", ch[1].want = h->dbeta, ch[1].tol = t_sum;
    }
    *err = check_elements(h, o->y, dir == BENCH_DIR_BWD ? A : NULL, P, Q);
    *tol = t_data;
    *what = dir == BENCH_DIR_BWD ? "dx" : "y";
    bool ok = *err <= *tol;
    for (int k = 0; k < 4; k++) {
        if (!ch[k].want || !o->ch[k]) continue;
        double e = check_channels(h, o->ch[k], ch[k].want);
        ok = ok && e <= ch[k].tol;
        if (!(e / ch[k].tol <= *err / *tol)) { /* NaN-safe: inf and NaN win */
            *err = e, *tol = ch[k].tol, *what = ch[k].name;
        }
    }
    return ok;
}
