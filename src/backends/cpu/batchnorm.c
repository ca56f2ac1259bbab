/* cpu/batchnorm.c: batch normalization on the CPU, the reference the CUDA kernels answer to.
 *
 * x is viewed as (outer, C, inner) (src/backends/shared/batchnorm_math.h). Every pass is one
 * loop per dtype (f32, f16, bf16: BN_LOOPS below), compiled for AVX-512, AVX2 and the baseline
 * and picked at run time (simd.h). Rows (inner == 1: NHWC, (N, C)) vectorise across channels;
 * runs (inner > 1: NCHW) along the spatial run, in LANES explicit lanes.
 *
 * Precision: the statistics come from ONE read of x, accumulated in double around a per-channel
 * shift K = x(0, c, 0): s1 = sum (x - K), s2 = sum (x - K)^2, mean = K + s1 / n,
 * var = (s2 - s1 s1 / n) / n (the shift keeps the cancellation to (mean - K)^2 / var, a few
 * units for any real batch; see docs/batchnorm.md). The backward's sums (dy, dy (x - mean)) are
 * one read of x and dy, in double. Each stored value is computed in double and rounded once.
 *
 * A fused ReLU (kiln_bn_args.relu, issue 12) adds loops of its own: the forward's pass writes
 * relu(y) (relu in double, then the one rounding: the same bits as relu of the rounded y); the
 * backward's sums and dx pass read dy masked by the fused output as the unfused ReLU's backward
 * would have left it (bn_mask_*), so BN -> ReLU costs BN's passes and gives BN-then-ReLU's bits.
 *
 * Threads: row sums go in chunks fixed by the shape alone (never by the thread count), merged
 * in chunk order; runs give each channel to one thread. The results do not depend on the
 * thread count or the instruction set. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm_math.h"
#include "cpu.h"
#include "dtype_convert.h"
#include "error.h"
#include "half.h"
#include "op_args.h"
#include "simd.h"

#define LANES 16          /* a run's summing lanes */
#define CHUNK_ELEMS 16384 /* a row chunk: about this many elements ... */
#define MAX_CHUNKS 64     /* ... and no more chunks than this */
#define PAR_MIN 131072    /* fewer elements (512 KiB of f32): one thread */
#define BLK 16            /* rows of this many channels get a fixed-width loop (PASS_ROWS) */

/* one pass: y (or dx) from x and dy with per-channel coefficients (C doubles each) */
typedef struct bn_job {
    const void *x, *dy;
    void *y;
    int64_t outer, c, inner;
    const double *m, *s, *b, *p; /* the shift or mean; scale (a); shift (q); p */
    const void *r; /* a fused ReLU's backward: its output, which masks dy (bn_mask_*) */
} bn_job;

/* a pass over rows or channels [lo, hi) (runs: channels for sums, (o, c) items otherwise);
 * sums land in s1[c], s2[c] */
typedef void (*bn_loop)(const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2);

typedef struct bn_loops {
    bn_loop sums[2][2]; /* [grad][runs] */
    bn_loop affine[2];  /* [runs] y = (x - m) s + b */
    bn_loop dx[2];      /* [runs] dx = (a dy + q) + p (x - m) */
    /* with a fused ReLU: y = relu(affine) [runs]; by the mask rule [kiln_bn_relu - 1][runs],
     * the gradient's sums and dx of the masked dy, the frozen backward's affine pass of the
     * masked x (dy there) */
    bn_loop affine_relu[2], grad_relu[2][2], dx_relu[2][2], affine_mask[2][2];
} bn_loops;

/* element k of a tensor as double, and a double stored (rounded once to f32, as before) */
#define LD_f32(t, k) ((double)((const float *)(t))[k])
#define ST_f32(t, k, v) (((float *)(t))[k] = (float)(v))
#define LD_f16(t, k) ((double)kiln_f16_to_f32(((const uint16_t *)(t))[k]))
#define ST_f16(t, k, v) (((uint16_t *)(t))[k] = kiln_f32_to_f16((float)(v)))
#define LD_bf16(t, k) ((double)kiln_bf16_to_f32(((const uint16_t *)(t))[k]))
#define ST_bf16(t, k, v) (((uint16_t *)(t))[k] = kiln_f32_to_bf16((float)(v)))

/* c ? a : b by bit masks: GCC (with its default -ftrapping-math) keeps a ?: on doubles as a
 * branch, which neither vectorises nor predicts on a ReLU's random signs; this vectorises */
KILN_SIMD_INLINE double bn_pick(int c, double a, double b) {
    uint64_t ua, ub, m = -(uint64_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

/* relu(v) in double: v > 0, else +0 (a NaN stays); rounded after, it is relu(rounded v) */
KILN_SIMD_INLINE double bn_relu(double v) { return bn_pick((v > 0.0) | isnan(v), v, 0.0); }

/* g (dy) masked by the fused output r with the ReLU backward's own arithmetic, so the same bits
 * as that backward's result stored and read back (exact: g, 0, g * 0 or g * NaN). r > 0 exactly
 * where the pre-ReLU y > 0, r = +inf and NaN where y is. KILN_BN_RELU: kiln_relu_backward's
 * dy (r > 0); KILN_BN_RELU_ACT: kiln_act_backward's dy relu'(r), relu' 1 on (0, inf), 0 at 0
 * and +inf, r itself when NaN (kiln_act_df) */
KILN_SIMD_INLINE double bn_mask_relu(double r, double g) { return bn_pick(r > 0.0, g, 0.0); }
KILN_SIMD_INLINE double bn_mask_act(double r, double g) {
    return g * bn_pick((r > 0.0) & (r < INFINITY), 1.0, bn_pick(isnan(r), r, 0.0));
}

/* element k of tensor t (dy, or x in the frozen pass): as it is, or masked by rule 1 or 2 */
#define M_OFF(T, j, t, k) LD_##T(t, k)
#define M_1(T, j, t, k) bn_mask_relu(LD_##T((j)->r, k), LD_##T(t, k))
#define M_2(T, j, t, k) bn_mask_act(LD_##T((j)->r, k), LD_##T(t, k))

/* what a sum adds, with d = x - m: the statistics add d and d^2, the gradient dy and dy d */
#define E_STATS(T, j, k, d) (d)
#define E_GRAD(T, j, k, d) LD_##T((j)->dy, k)
#define E_GRAD_1(T, j, k, d) M_1(T, j, (j)->dy, k)
#define E_GRAD_2(T, j, k, d) M_2(T, j, (j)->dy, k)

/* sums over rows [lo, hi) into s1[c], s2[c] (accumulated onto) */
#define SUMS_ROWS(T, name, E)                                                                  \
    KILN_SIMD_INLINE void name##_body(const bn_job *j, int64_t lo, int64_t hi, double *restrict s1, \
                                      double *restrict s2) {                                   \
        const double *restrict m = j->m;                                                       \
        const int64_t C = j->c;                                                                \
        for (int64_t r = lo; r < hi; r++)                                                      \
            for (int64_t c = 0; c < C; c++) {                                                  \
                int64_t k = r * C + c;                                                         \
                double d = LD_##T(j->x, k) - m[c], e = E(T, j, k, d);                          \
                s1[c] += e;                                                                    \
                s2[c] += e * d;                                                                \
            }                                                                                  \
    }                                                                                          \
    KILN_SIMD_CLONES(name, (const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2),  \
                     (j, lo, hi, s1, s2))

/* sums of channels [lo, hi), each over its runs in LANES lanes (tails apart), merged in order */
#define SUMS_RUNS(T, name, E)                                                                  \
    KILN_SIMD_INLINE void name##_body(const bn_job *j, int64_t lo, int64_t hi, double *s1,     \
                                      double *s2) {                                            \
        const int64_t C = j->c, len = j->inner, full = len - len % LANES;                      \
        for (int64_t c = lo; c < hi; c++) {                                                    \
            double a1[LANES] = {0}, a2[LANES] = {0}, t1 = 0.0, t2 = 0.0, m = j->m[c];          \
            for (int64_t o = 0; o < j->outer; o++) {                                           \
                int64_t base = (o * C + c) * len;                                              \
                for (int64_t i = 0; i < full; i += LANES)                                      \
                    for (int l = 0; l < LANES; l++) {                                          \
                        int64_t k = base + i + l;                                              \
                        double d = LD_##T(j->x, k) - m, e = E(T, j, k, d);                     \
                        a1[l] += e;                                                            \
                        a2[l] += e * d;                                                        \
                    }                                                                          \
                for (int64_t k = base + full; k < base + len; k++) {                           \
                    double d = LD_##T(j->x, k) - m, e = E(T, j, k, d);                         \
                    t1 += e;                                                                   \
                    t2 += e * d;                                                               \
                }                                                                              \
            }                                                                                  \
            for (int l = 0; l < LANES; l++) {                                                  \
                t1 += a1[l];                                                                   \
                t2 += a2[l];                                                                   \
            }                                                                                  \
            s1[c] = t1;                                                                        \
            s2[c] = t2;                                                                        \
        }                                                                                      \
    }                                                                                          \
    KILN_SIMD_CLONES(name, (const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2),  \
                     (j, lo, hi, s1, s2))

/* the elementwise passes: F(k, c) the value of element k of channel c; M the mask of dy (or
 * of x, in the frozen backward's affine pass) */
#define F_AFFINE_M(T, j, k, c, M) ((M(T, j, (j)->x, k) - m[c]) * s[c] + b[c])
#define F_DX_M(T, j, k, c, M) ((s[c] * M(T, j, (j)->dy, k) + b[c]) + p[c] * (LD_##T((j)->x, k) - m[c]))
#define F_AFFINE(T, j, k, c) F_AFFINE_M(T, j, k, c, M_OFF)
#define F_DX(T, j, k, c) F_DX_M(T, j, k, c, M_OFF)
#define F_AFFINE_RELU(T, j, k, c) bn_relu(F_AFFINE_M(T, j, k, c, M_OFF))
#define F_AFFINE_MASK_1(T, j, k, c) F_AFFINE_M(T, j, k, c, M_1)
#define F_AFFINE_MASK_2(T, j, k, c) F_AFFINE_M(T, j, k, c, M_2)
#define F_DX_1(T, j, k, c) F_DX_M(T, j, k, c, M_1)
#define F_DX_2(T, j, k, c) F_DX_M(T, j, k, c, M_2)

/* rows [lo, hi) of width W (a compile-time BLK, or the run-time C), the coefficients m, s, b, p
 * indexed by channel */
#define ROWS_LOOP(T, F, W)                                                                     \
    for (int64_t r = lo; r < hi; r++)                                                          \
        for (int64_t c = 0; c < (W); c++) ST_##T(j->y, r * (W) + c, F(T, j, r * (W) + c, c))

/* rows [lo, hi). Rows of exactly BLK channels (ResNet-20's 16) take a loop of that fixed width
 * with the coefficients in locals the compiler keeps in registers: the run-time loop's set-up
 * and overlap check per 16-element row cost it 10-30 % there (warm cache); wider rows amortise
 * them. Each element is computed alone, so either loop gives the same bits. */
#define PASS_ROWS(T, name, F)                                                                  \
    KILN_SIMD_INLINE void name##_body(const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2) { \
        (void)s1, (void)s2;                                                                    \
        if (j->c == BLK) {                                                                     \
            double m[BLK], s[BLK], b[BLK], p[BLK];                                             \
            for (int l = 0; l < BLK; l++)                                                      \
                m[l] = j->m[l], s[l] = j->s[l], b[l] = j->b[l], p[l] = j->p ? j->p[l] : 0.0;   \
            (void)p;                                                                           \
            ROWS_LOOP(T, F, BLK);                                                              \
            return;                                                                            \
        }                                                                                      \
        const double *restrict m = j->m, *restrict s = j->s, *restrict b = j->b, *restrict p = j->p; \
        const int64_t C = j->c;                                                                \
        (void)p;                                                                               \
        ROWS_LOOP(T, F, C);                                                                    \
    }                                                                                          \
    KILN_SIMD_CLONES(name, (const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2),  \
                     (j, lo, hi, s1, s2))

/* runs of items [lo, hi), item q = o * C + c; the channel's coefficients as scalars (index 0) */
#define PASS_RUNS(T, name, F)                                                                  \
    KILN_SIMD_INLINE void name##_body(const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2) { \
        for (int64_t q = lo; q < hi; q++) {                                                    \
            int64_t c = q % j->c, len = j->inner;                                              \
            const double m[1] = {j->m[c]}, s[1] = {j->s[c]}, b[1] = {j->b[c]},                 \
                         p[1] = {j->p ? j->p[c] : 0.0};                                        \
            (void)p;                                                                           \
            for (int64_t k = q * len; k < (q + 1) * len; k++) ST_##T(j->y, k, F(T, j, k, 0));  \
        }                                                                                      \
    }                                                                                          \
    KILN_SIMD_CLONES(name, (const bn_job *j, int64_t lo, int64_t hi, double *s1, double *s2),  \
                     (j, lo, hi, s1, s2))

/* the backward's loops of dtype T that read dy masked by rule R (1 or 2: kiln_bn_relu) */
#define MASKED_LOOPS(T, R)                                                                      \
    SUMS_ROWS(T, grad_##R##_rows_##T, E_GRAD_##R)                                               \
    SUMS_RUNS(T, grad_##R##_runs_##T, E_GRAD_##R)                                               \
    PASS_ROWS(T, dx_##R##_rows_##T, F_DX_##R)                                                   \
    PASS_RUNS(T, dx_##R##_runs_##T, F_DX_##R)                                                   \
    PASS_ROWS(T, affine_mask_##R##_rows_##T, F_AFFINE_MASK_##R)                                 \
    PASS_RUNS(T, affine_mask_##R##_runs_##T, F_AFFINE_MASK_##R)

/* the loops of dtype T */
#define BN_LOOPS(T)                                                                             \
    SUMS_ROWS(T, stats_rows_##T, E_STATS)                                                       \
    SUMS_ROWS(T, grad_rows_##T, E_GRAD)                                                         \
    SUMS_RUNS(T, stats_runs_##T, E_STATS)                                                       \
    SUMS_RUNS(T, grad_runs_##T, E_GRAD)                                                         \
    PASS_ROWS(T, affine_rows_##T, F_AFFINE)                                                     \
    PASS_RUNS(T, affine_runs_##T, F_AFFINE)                                                     \
    PASS_ROWS(T, dx_rows_##T, F_DX)                                                             \
    PASS_RUNS(T, dx_runs_##T, F_DX)                                                             \
    PASS_ROWS(T, affine_relu_rows_##T, F_AFFINE_RELU)                                           \
    PASS_RUNS(T, affine_relu_runs_##T, F_AFFINE_RELU)                                           \
    MASKED_LOOPS(T, 1)                                                                          \
    MASKED_LOOPS(T, 2)                                                                          \
    static const bn_loops loops_##T = {{{stats_rows_##T, stats_runs_##T}, {grad_rows_##T, grad_runs_##T}}, \
                                       {affine_rows_##T, affine_runs_##T},                      \
                                       {dx_rows_##T, dx_runs_##T},                              \
                                       {affine_relu_rows_##T, affine_relu_runs_##T},            \
                                       {{grad_1_rows_##T, grad_1_runs_##T}, {grad_2_rows_##T, grad_2_runs_##T}}, \
                                       {{dx_1_rows_##T, dx_1_runs_##T}, {dx_2_rows_##T, dx_2_runs_##T}}, \
                                       {{affine_mask_1_rows_##T, affine_mask_1_runs_##T},       \
                                        {affine_mask_2_rows_##T, affine_mask_2_runs_##T}}};

BN_LOOPS(f32)
BN_LOOPS(f16)
BN_LOOPS(bf16)

static const bn_loops *loops_of(kiln_dtype t) {
    return t == KILN_F16 ? &loops_f16 : t == KILN_BF16 ? &loops_bf16 : &loops_f32;
}

static int64_t numel(const bn_job *j) { return j->outer * j->c * j->inner; }

/* rows per chunk: fixed by the shape, never by the thread count */
static int64_t chunk_rows(const bn_job *j) {
    int64_t rows = j->c >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / j->c;
    int64_t least = (j->outer + MAX_CHUNKS - 1) / MAX_CHUNKS;
    return rows > least ? rows : least;
}

/* per-channel sums by the loops `sums` ([runs]: the statistics, the gradient or the masked
 * gradient's) into s1, s2 (C each) */
static kiln_status channel_sums(const bn_loop sums[2], const bn_job *j, double *s1, double *s2) {
    const int64_t C = j->c;
    if (j->inner > 1) {
        bn_loop f = sums[1];
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (numel(j) >= PAR_MIN)
#endif
        for (int64_t c = 0; c < C; c++) f(j, c, c + 1, s1, s2);
        return KILN_OK;
    }
    bn_loop f = sums[0];
    int64_t rows = chunk_rows(j), chunks = (j->outer + rows - 1) / rows;
    double *part = calloc((size_t)(chunks * 2 * C + 1), sizeof *part);
    if (!part)
        return kiln_error(KILN_ERR_OOM, "kiln_batch_norm: out of host memory for %lld partial sums",
                          (long long)(chunks * 2 * C));
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (numel(j) >= PAR_MIN)
#endif
    for (int64_t k = 0; k < chunks; k++) {
        int64_t hi = (k + 1) * rows < j->outer ? (k + 1) * rows : j->outer;
        f(j, k * rows, hi, part + k * 2 * C, part + k * 2 * C + C);
    }
    for (int64_t c = 0; c < C; c++) s1[c] = s2[c] = 0.0;
    for (int64_t k = 0; k < chunks; k++)
        for (int64_t c = 0; c < C; c++) {
            s1[c] += part[k * 2 * C + c];
            s2[c] += part[k * 2 * C + C + c];
        }
    free(part);
    return KILN_OK;
}

/* an elementwise pass (affine or dx) over the whole tensor */
static void elementwise(bn_loop f, const bn_job *j) {
    const bool par = numel(j) >= PAR_MIN;
    (void)par;
    if (j->inner > 1) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par)
#endif
        for (int64_t q = 0; q < j->outer * j->c; q++) f(j, q, q + 1, NULL, NULL);
        return;
    }
    int64_t rows = chunk_rows(j), chunks = (j->outer + rows - 1) / rows;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (par)
#endif
    for (int64_t k = 0; k < chunks; k++) {
        int64_t hi = (k + 1) * rows < j->outer ? (k + 1) * rows : j->outer;
        f(j, k * rows, hi, NULL, NULL);
    }
}

/* per-channel scratch: 6 arrays of C doubles */
typedef struct bn_chan {
    double *m, *s, *b, *p, *s1, *s2;
} bn_chan;

static kiln_status chan_alloc(int64_t c, bn_chan *out) {
    double *v = calloc((size_t)(6 * c + 1), sizeof *v);
    if (!v)
        return kiln_error(KILN_ERR_OOM, "kiln_batch_norm: out of host memory for %lld channels", (long long)c);
    *out = (bn_chan){v, v + c, v + 2 * c, v + 3 * c, v + 4 * c, v + 5 * c};
    return KILN_OK;
}

static bn_job job_of(const kiln_bn_geom *g, const kiln_tensor *x, const kiln_tensor *dy, kiln_tensor *y,
                     const bn_chan *ch) {
    return (bn_job){x ? x->data : NULL, dy ? dy->data : NULL, y->data, g->outer, g->c, g->inner,
                    ch->m, ch->s, ch->b, ch->p, NULL};
}

/* the forward's elementwise pass: y = (x - m) s + b, or its relu */
static bn_loop forward_pass(const kiln_bn_args *a, const kiln_bn_geom *g) {
    const bn_loops *L = loops_of(a->x->dtype);
    return a->relu != KILN_BN_RELU_NONE ? L->affine_relu[g->inner > 1] : L->affine[g->inner > 1];
}

/* a per-channel f32 value, or `dflt` when the tensor is absent (scale or center off) */
static inline double chan(const kiln_tensor *t, int64_t c, double dflt) {
    return t ? (double)((const float *)t->data)[c] : dflt;
}

static inline void put(kiln_tensor *t, int64_t c, double v) {
    if (t) ((float *)t->data)[c] = (float)v;
}

static kiln_status forward_train(const kiln_bn_args *a, const kiln_bn_geom *g, const bn_chan *ch) {
    kiln_tensor *mm = a->moving_mean, *mv = a->moving_var; /* updated in place */
    const kiln_tensor *x = a->x;
    bn_job j = job_of(g, x, NULL, a->y, ch);
    for (int64_t c = 0; c < g->c; c++) /* the shift K: x(0, c, 0) */
        ch->m[c] = g->n > 0 ? kiln_dtype_load(x->data, x->dtype, c * g->inner) : 0.0;
    kiln_status st = channel_sums(loops_of(x->dtype)->sums[0], &j, ch->s1, ch->s2);
    if (st != KILN_OK) return st;
    const double n = (double)g->n;
    for (int64_t c = 0; c < g->c; c++) {
        double d1 = ch->s1[c] / n, var = (ch->s2[c] - ch->s1[c] * d1) / n;
        var = var < 0.0 ? 0.0 : var; /* rounding below zero; NaN stays */
        double mean = kiln_bn_mean_rule(ch->m[c] + d1, var), invstd = kiln_bn_invstd(var, a->epsilon);
        put(a->save_mean, c, mean);
        put(a->save_invstd, c, invstd);
        if (mm) {
            float *m = mm->data, *v = mv->data;
            m[c] = kiln_bn_moving(m[c], mean, a->keep, a->weight);
            v[c] = kiln_bn_moving(v[c], kiln_bn_sample_var(var, g->n, a->unbiased), a->keep, a->weight);
        }
        ch->m[c] = mean;
        ch->s[c] = chan(a->gamma, c, 1.0) * invstd;
        ch->b[c] = chan(a->beta, c, 0.0);
    }
    elementwise(forward_pass(a, g), &j);
    return KILN_OK;
}

static void forward_infer(const kiln_bn_args *a, const kiln_bn_geom *g, const bn_chan *ch) {
    for (int64_t c = 0; c < g->c; c++) {
        double invstd = kiln_bn_invstd(chan(a->var, c, 1.0), a->epsilon);
        ch->m[c] = chan(a->mean, c, 0.0);
        put(a->save_mean, c, ch->m[c]); /* a frozen layer's training forward */
        put(a->save_invstd, c, invstd);
        ch->s[c] = chan(a->gamma, c, 1.0) * invstd;
        ch->b[c] = chan(a->beta, c, 0.0);
    }
    bn_job j = job_of(g, a->x, NULL, a->y, ch);
    elementwise(forward_pass(a, g), &j);
}

static kiln_status backward(const kiln_bn_args *a, const kiln_bn_geom *g, const bn_chan *ch) {
    const bn_loops *L = loops_of(a->dy->dtype);
    const bool relu = a->relu != KILN_BN_RELU_NONE, runs = g->inner > 1;
    const int rule = relu ? (int)a->relu - 1 : 0; /* the masked loops' index */
    for (int64_t c = 0; c < g->c; c++) ch->m[c] = chan(a->mean, c, 0.0);
    bn_job j = job_of(g, a->x, a->dy, a->dx, ch);
    j.r = relu ? a->relu_y->data : NULL;
    kiln_status st = channel_sums(relu ? L->grad_relu[rule] : L->sums[1], &j, ch->s1, ch->s2);
    if (st != KILN_OK) return st;
    for (int64_t c = 0; c < g->c; c++) {
        double invstd = chan(a->invstd, c, 1.0), dbeta = ch->s1[c], dgamma = ch->s2[c] * invstd;
        put(a->dgamma, c, dgamma);
        put(a->dbeta, c, dbeta);
        kiln_bn_bwd_coef k = kiln_bn_backward_coef(chan(a->gamma, c, 1.0), invstd, dgamma, dbeta, g->n, a->frozen);
        ch->s[c] = k.a, ch->b[c] = k.q, ch->p[c] = k.p;
    }
    if (!a->frozen) {
        elementwise(relu ? L->dx_relu[rule][runs] : L->dx[runs], &j);
        return KILN_OK;
    }
    /* the inference gradient reads no x: dx = (dy - 0) a + q, the same bits as a dy + q */
    for (int64_t c = 0; c < g->c; c++) ch->m[c] = 0.0;
    j.x = a->dy->data;
    elementwise(relu ? L->affine_mask[rule][runs] : L->affine[runs], &j);
    return KILN_OK;
}

static void backward_infer(const kiln_bn_args *a, const kiln_bn_geom *g, const bn_chan *ch) {
    for (int64_t c = 0; c < g->c; c++) {
        ch->s[c] = chan(a->gamma, c, 1.0) * kiln_bn_invstd(chan(a->var, c, 1.0), a->epsilon);
        ch->m[c] = ch->b[c] = 0.0;
    }
    bn_job j = job_of(g, a->dy, NULL, a->dx, ch);
    elementwise(loops_of(a->dy->dtype)->affine[g->inner > 1], &j);
}

kiln_status kiln_cpu_batchnorm(const kiln_op *op) {
    const kiln_bn_args *a = &op->bn;
    kiln_bn_geom g = kiln_bn_geometry(kiln_bn_data(op->type, a), a->layout);
    bn_chan ch = {0};
    kiln_status st = chan_alloc(g.c, &ch);
    if (st != KILN_OK) return st;
    switch (op->type) {
    case KILN_OP_BN_FWD_TRAIN: st = forward_train(a, &g, &ch); break;
    case KILN_OP_BN_FWD_INFER: forward_infer(a, &g, &ch); break;
    case KILN_OP_BN_BWD: st = backward(a, &g, &ch); break;
    case KILN_OP_BN_BWD_INFER: backward_infer(a, &g, &ch); break;
    default: break;
    }
    free(ch.m);
    return st;
}
