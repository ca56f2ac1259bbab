/* test_act_ops.c: the ops behind Keras' other activations and simple layers (kiln/nn.h):
 * kiln_act and its backward for every function (float64 oracles written here, central finite
 * differences), Concatenate's column copies, SpatialDropout2D's per-channel mask,
 * Normalization; and their parity rows (CPU against CUDA, skipped without a GPU). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* ---- float64 oracles, written from Keras' definitions ---- */

static double relu_keras(const kiln_act_params *p, double x) {
    /* Keras' relu(): where(x > t, x, 0), clip to [0, max_value], minus slope relu(t - x) */
    double y = x > p->threshold ? x : 0.0;
    if (!isinf(p->max_value)) y = fmin(fmax(y, 0.0), p->max_value);
    double neg = p->threshold - x > 0 ? p->threshold - x : 0.0;
    return y - p->negative_slope * neg;
}

static double oracle(const kiln_act_params *p, double x) {
    double hs = fmin(fmax(x + 3.0, 0.0), 6.0) / 6.0;
    switch (p->fn) {
    case KILN_FN_RELU: return relu_keras(p, x);
    case KILN_FN_ELU: return x > 0 ? x : p->alpha * expm1(x);
    case KILN_FN_GELU: return x * 0.5 * erfc(-x / sqrt(2.0));
    case KILN_FN_GELU_TANH: /* 0.5 x (1 + tanh u), with 1 + tanh u = 2 / (1 + e^-2u) (no cancellation) */
        return x / (1.0 + exp(-2.0 * sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * pow(x, 3))));
    case KILN_FN_SWISH: return x / (1.0 + exp(-x));
    case KILN_FN_HARD_SIGMOID: return hs;
    case KILN_FN_HARD_SWISH: return x * hs;
    default: return x * p->scale + p->offset;
    }
}

typedef struct act_case {
    const char *name;
    kiln_act_params p;
    double kinks[3]; /* points where f' jumps (finite differences stay clear of them) */
    int n_kinks;
} act_case;

#define P(fn, slope, max, thr, alpha, scale, offset) {fn, slope, max, thr, alpha, scale, offset}
static const act_case cases[] = {
    {"relu", P(KILN_FN_RELU, 0, INFINITY, 0, 1, 1, 0), {0}, 1},
    {"relu6", P(KILN_FN_RELU, 0, 6, 0, 1, 1, 0), {0, 6}, 2},
    {"relu max 4 slope 0.1 threshold 0.5", P(KILN_FN_RELU, 0.1f, 4, 0.5f, 1, 1, 0), {0.5, 4}, 2},
    {"leaky relu 0.3", P(KILN_FN_RELU, 0.3f, INFINITY, 0, 1, 1, 0), {0}, 1},
    {"relu slope 1.5 threshold 1", P(KILN_FN_RELU, 1.5f, INFINITY, 1, 1, 1, 0), {1}, 1},
    {"elu", P(KILN_FN_ELU, 0, INFINITY, 0, 1, 1, 0), {0}, 1},
    {"elu alpha 0.5", P(KILN_FN_ELU, 0, INFINITY, 0, 0.5f, 1, 0), {0}, 1},
    {"gelu", P(KILN_FN_GELU, 0, INFINITY, 0, 1, 1, 0), {0}, 0},
    {"gelu tanh", P(KILN_FN_GELU_TANH, 0, INFINITY, 0, 1, 1, 0), {0}, 0},
    {"swish", P(KILN_FN_SWISH, 0, INFINITY, 0, 1, 1, 0), {0}, 0},
    {"hard sigmoid", P(KILN_FN_HARD_SIGMOID, 0, INFINITY, 0, 1, 1, 0), {-3, 3}, 2},
    {"hard swish", P(KILN_FN_HARD_SWISH, 0, INFINITY, 0, 1, 1, 0), {-3, 3}, 2},
    {"affine 1/255", P(KILN_FN_AFFINE, 0, INFINITY, 0, 1, 1.0f / 255, 0), {0}, 0},
    {"affine 1/127.5 - 1", P(KILN_FN_AFFINE, 0, INFINITY, 0, 1, 1.0f / 127.5f, -1), {0}, 0},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* n inputs: the kinks and special points, then seeded values in [-8, 8] */
static float *inputs(kt_rng *r, int64_t n) {
    static const float special[] = {0.0f, -0.0f, 0.5f, 1.0f, -3.0f, 3.0f, 4.0f, 6.0f, -6.0f, 1e-30f, -1e-30f, 30.0f, -30.0f, -90.0f, 90.0f};
    float *x = malloc(sizeof(float) * (size_t)n);
    cr_assert_not_null(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = i < (int64_t)(sizeof special / sizeof special[0]) ? special[i] : (float)kt_uniform(r, -8, 8);
    return x;
}

static kiln_tensor *tensor_of(const float *v, int64_t n) {
    kiln_tensor *t = kt_new(kt_cpu(), KILN_F32, 1, &n);
    kt_set_f32(t, v);
    return t;
}

/* got is the f32 rounding of want: within half an ulp of it (a tie that rounding through double
 * moves would be one ulp: none occurs in these inputs) */
static void expect_rounded(const char *what, const float *got, const double *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            cr_expect(isnan(got[i]), "%s[%lld]: %g, want NaN", what, (long long)i, (double)got[i]);
            continue;
        }
        double ulp = fabs(want[i]) < 0x1p-126 ? 0x1p-149 : ldexp(1.0, ilogb(want[i]) - 23);
        cr_expect(fabs((double)got[i] - want[i]) <= 0.5 * ulp + 1e-300, "%s[%lld]: %.9g, want %.17g (%.3g ulp)", what,
                  (long long)i, (double)got[i], want[i], fabs((double)got[i] - want[i]) / ulp);
    }
}

Test(act, forward_correctly_rounded) {
    kt_rng r;
    kt_rng_seed(&r, 11);
    enum { N = 2001 };
    float *x = inputs(&r, N);
    kiln_tensor *xt = tensor_of(x, N);
    int64_t n = N;
    for (size_t c = 0; c < N_CASES; c++) {
        kiln_tensor *y = kt_new(kt_cpu(), KILN_F32, 1, &n);
        kt_poison(y);
        OK(kiln_act(&cases[c].p, xt, y));
        float *got = kt_get_f32(y);
        double *want = malloc(sizeof(double) * N);
        for (int i = 0; i < N; i++) want[i] = oracle(&cases[c].p, (double)x[i]);
        expect_rounded(cases[c].name, got, want, N);
        free(got);
        free(want);
        kiln_tensor_free(y);
    }
    kiln_tensor_free(xt);
    free(x);
}

/* the special values: NaN stays NaN, infinities as the formula gives them */
Test(act, special_values) {
    float x[4] = {NAN, INFINITY, -INFINITY, 0.0f};
    kiln_tensor *xt = tensor_of(x, 4), *y = tensor_of(x, 4), *dx = tensor_of(x, 4);
    for (size_t c = 0; c < N_CASES; c++) {
        OK(kiln_act(&cases[c].p, xt, y));
        float *got = kt_get_f32(y);
        cr_expect(isnan(got[0]), "%s(NaN) = %g", cases[c].name, (double)got[0]);
        double want = oracle(&cases[c].p, INFINITY);
        cr_expect(isnan(want) ? isnan(got[1]) : got[1] == (float)want, "%s(inf) = %g, want %g", cases[c].name,
                  (double)got[1], want);
        OK(kiln_act_backward(&cases[c].p, xt, xt, dx));
        float *g = kt_get_f32(dx);
        cr_expect(isnan(g[0]), "%s'(NaN) dy = %g", cases[c].name, (double)g[0]);
        free(got);
        free(g);
    }
    kiln_tensor_free(xt); kiln_tensor_free(y); kiln_tensor_free(dx);
}

/* dx = dy f'(x) against central differences of the oracle (h 1e-6 in double: truncation ~1e-12,
 * rounding ~1e-10), away from the kinks; the bound is 2^-23 of the scale: one f32 rounding */
Test(act, backward_matches_finite_differences) {
    kt_rng r;
    kt_rng_seed(&r, 12);
    enum { N = 1000 };
    int64_t n = N;
    float x[N], dy[N];
    for (size_t c = 0; c < N_CASES; c++) {
        const act_case *k = &cases[c];
        for (int i = 0; i < N; i++) {
            bool clear;
            do { /* at least 1e-3 from every kink */
                x[i] = (float)kt_uniform(&r, -8, 8);
                clear = true;
                for (int j = 0; j < k->n_kinks; j++) clear = clear && fabs(x[i] - k->kinks[j]) > 1e-3;
            } while (!clear);
            dy[i] = (float)kt_uniform(&r, -1, 1);
        }
        kiln_tensor *xt = tensor_of(x, N), *dyt = tensor_of(dy, N), *dx = kt_new(kt_cpu(), KILN_F32, 1, &n);
        kt_poison(dx);
        OK(kiln_act_backward(&k->p, xt, dyt, dx));
        float *got = kt_get_f32(dx);
        double want[N];
        for (int i = 0; i < N; i++) {
            double h = 1e-6;
            want[i] = dy[i] * (oracle(&k->p, x[i] + h) - oracle(&k->p, x[i] - h)) / (2 * h);
        }
        kt_expect_close_f64(k->name, got, want, N, 2e-7);
        free(got);
        kiln_tensor_free(xt); kiln_tensor_free(dyt); kiln_tensor_free(dx);
    }
}

Test(act, argument_errors) {
    int64_t n = 4, m = 5;
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 1, &n), *y = kt_new(kt_cpu(), KILN_F32, 1, &m);
    kiln_act_params p = kiln_act_defaults(KILN_FN_RELU);
    cr_expect_eq(kiln_act(&p, x, y), KILN_ERR_SHAPE);
    cr_expect_eq(kiln_act(NULL, x, x), KILN_ERR_INVALID_ARG);
    p.threshold = -1.0f;
    cr_expect_eq(kiln_act(&p, x, x), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_act: relu needs"), "%s", kiln_last_error());
    p = kiln_act_defaults(KILN_FN_COUNT);
    cr_expect_eq(kiln_act_backward(&p, x, x, x), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_copy_columns(x, y, 2, 5, 0), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_copy_columns"), "%s", kiln_last_error());
    cr_expect_eq(kiln_spatial_dropout2d(x, 0.5f, 1, x), KILN_ERR_SHAPE);
    cr_expect_eq(kiln_normalize(x, y, y, 1e-7f, x), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_normalize: mean"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(y);
}

/* ---- Concatenate's columns ---- */

Test(columns, into_and_back_out) {
    kt_rng r;
    kt_rng_seed(&r, 13);
    int64_t xs[3] = {6, 5, 3}, ys[3] = {6, 5, 8};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 3, xs), *y = kt_new(kt_cpu(), KILN_F32, 3, ys);
    kiln_tensor *back = kt_new(kt_cpu(), KILN_F32, 3, xs);
    kt_fill_random(x, &r, -1, 1);
    kt_fill_random(y, &r, -1, 1);
    float *y0 = kt_get_f32(y), *xv = kt_get_f32(x);
    OK(kiln_copy_columns(x, y, 3, 8, 4));
    float *y1 = kt_get_f32(y);
    for (int64_t i = 0; i < 30 * 8; i++) {
        int64_t row = i / 8, col = i % 8;
        float want = col >= 4 && col < 7 ? xv[row * 3 + col - 4] : y0[i];
        cr_expect(y1[i] == want, "y[%lld] = %g, want %g", (long long)i, (double)y1[i], (double)want);
    }
    kt_poison(back);
    OK(kiln_copy_columns_back(y, back, 3, 8, 4));
    float *b = kt_get_f32(back);
    kt_expect_bitwise("columns back out", b, xv, sizeof(float) * 90);
    free(y0); free(y1); free(xv); free(b);
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(back);
}

/* ---- Multiply's broadcast ---- */

Test(mul_channels, one_product_per_element) {
    kt_rng r;
    kt_rng_seed(&r, 16);
    int64_t s[4] = {3, 4, 5, 7}, gs[4] = {3, 1, 1, 7};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, s), *g = kt_new(kt_cpu(), KILN_F32, 4, gs), *y = kt_new(kt_cpu(), KILN_F32, 4, s);
    kt_fill_random(x, &r, -2, 2);
    kt_fill_random(g, &r, 0, 1);
    kt_poison(y);
    OK(kiln_mul_channels(x, g, y));
    float *xv = kt_get_f32(x), *gv = kt_get_f32(g), *yv = kt_get_f32(y);
    for (int64_t i = 0; i < 3 * 140; i++) {
        float want = xv[i] * gv[i / 140 * 7 + i % 7];
        cr_expect(yv[i] == want, "y[%lld] = %g, want %g", (long long)i, (double)yv[i], (double)want);
    }
    cr_expect_eq(kiln_mul_channels(x, x, y), KILN_ERR_SHAPE);
    free(xv); free(gv); free(yv);
    kiln_tensor_free(x); kiln_tensor_free(g); kiln_tensor_free(y);
}

/* ---- SpatialDropout2D ---- */

Test(spatial_dropout, whole_channels_dropped_and_scaled) {
    int64_t s[4] = {8, 3, 4, 16};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, s), *y = kt_new(kt_cpu(), KILN_F32, 4, s);
    kt_rng r;
    kt_rng_seed(&r, 14);
    kt_fill_random(x, &r, 0.5, 1.5); /* never 0: a zero output means dropped */
    kt_poison(y);
    float rate = 0.25f, scale = (float)(1.0 / 0.75);
    OK(kiln_spatial_dropout2d(x, rate, 99, y));
    float *xv = kt_get_f32(x), *yv = kt_get_f32(y);
    int kept = 0;
    for (int64_t n = 0; n < 8; n++)
        for (int64_t c = 0; c < 16; c++) {
            int64_t first = n * 192 + c;
            bool keep = yv[first] != 0.0f;
            kept += keep;
            for (int64_t p = 0; p < 12; p++) {
                int64_t i = first + p * 16;
                cr_expect(yv[i] == (keep ? xv[i] * scale : 0.0f), "y[%lld] = %g: channel %lld of example %lld is %s",
                          (long long)i, (double)yv[i], (long long)c, (long long)n, keep ? "kept" : "dropped");
            }
        }
    cr_expect(kept > 128 * 0.6 && kept < 128 * 0.9, "%d of 128 channels kept at rate 0.25", kept);
    /* the backward is the same op on dy: the same channels */
    kiln_tensor *dx = kt_new(kt_cpu(), KILN_F32, 4, s);
    OK(kiln_spatial_dropout2d(x, rate, 99, dx));
    float *dv = kt_get_f32(dx);
    kt_expect_bitwise("the same mask again", dv, yv, sizeof(float) * 8 * 192);
    free(xv); free(yv); free(dv);
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(dx);
}

/* ---- Normalization ---- */

Test(normalize, oracle_and_gradient) {
    kt_rng r;
    kt_rng_seed(&r, 15);
    int64_t s[2] = {7, 5}, c = 5;
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, s), *dy = kt_new(kt_cpu(), KILN_F32, 2, s);
    kiln_tensor *mean = kt_new(kt_cpu(), KILN_F32, 1, &c), *var = kt_new(kt_cpu(), KILN_F32, 1, &c);
    kiln_tensor *y = kt_new(kt_cpu(), KILN_F32, 2, s), *dx = kt_new(kt_cpu(), KILN_F32, 2, s);
    kt_fill_random(x, &r, -3, 3);
    kt_fill_random(dy, &r, -1, 1);
    kt_fill_random(mean, &r, -1, 1);
    float v[5] = {4.0f, 0.25f, 1e-20f, 0.0f, 2.0f}; /* tiny and zero variances: the divisor is epsilon */
    kt_set_f32(var, v);
    kt_poison(y);
    kt_poison(dx);
    OK(kiln_normalize(x, mean, var, 1e-7f, y));
    OK(kiln_normalize_backward(var, 1e-7f, dy, dx));
    float *xv = kt_get_f32(x), *mv = kt_get_f32(mean), *dyv = kt_get_f32(dy), *yv = kt_get_f32(y), *dxv = kt_get_f32(dx);
    double want[35], grad[35];
    for (int i = 0; i < 35; i++) {
        double d = fmax(sqrt((double)v[i % 5]), (double)1e-7f);
        want[i] = ((double)xv[i] - mv[i % 5]) / d;
        grad[i] = dyv[i] / d; /* the derivative of a linear map: exact */
    }
    expect_rounded("normalize y", yv, want, 35);
    expect_rounded("normalize dx", dxv, grad, 35);
    free(xv); free(mv); free(dyv); free(yv); free(dxv);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(mean); kiln_tensor_free(var);
    kiln_tensor_free(y); kiln_tensor_free(dx);
}

/* ---- the parity table: CPU against CUDA, the same double formulas on both; elementwise rows
 * exact but for the last bit of a libm function (1e-7 of the scale); data movement exact ---- */

static kiln_status run_act(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_act(&c->op.act.p, in[0], out[0]);
}
static kiln_status run_act_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_act_backward(&c->op.act.p, in[0], in[1], out[0]);
}
static kiln_status run_columns(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_status s = kiln_copy_columns(in[0], out[0], 3, 7, 0);
    return s != KILN_OK ? s : kiln_copy_columns(in[1], out[0], 4, 7, 3);
}
static kiln_status run_columns_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_copy_columns_back(in[0], out[0], 16, 40, 24);
}
static kiln_status run_sdrop(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_spatial_dropout2d(in[0], c->op.dropout.rate, c->op.dropout.seed, out[0]);
}
static kiln_status run_mulc(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_mul_channels(in[0], in[1], out[0]);
}
static kiln_status run_norm(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_normalize(in[0], in[1], in[2], 1e-7f, out[0]);
}
static kiln_status run_norm_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_normalize_backward(in[1], 1e-7f, in[0], out[0]);
}

#define T(lo, hi, ...) {KILN_F32, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, lo, hi}
#define KT_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ACT(name, fn_params) \
    {name, run_act, 1, 1, .in = {T(-8, 8, 33, 65)}, .out = {T(0, 0, 33, 65)}, .op.act.p = fn_params, .tol = 1e-7}, \
    {name " backward", run_act_b, 2, 1, .in = {T(-8, 8, 33, 65), T(-1, 1, 33, 65)}, .out = {T(0, 0, 33, 65)}, \
     .op.act.p = fn_params, .tol = 1e-7}

static kt_case rows[] = {
    ACT("relu6", P(KILN_FN_RELU, 0, 6, 0, 1, 1, 0)),
    ACT("relu max slope threshold", P(KILN_FN_RELU, 0.1f, 4, 0.5f, 1, 1, 0)),
    ACT("elu", P(KILN_FN_ELU, 0, INFINITY, 0, 0.7f, 1, 0)),
    ACT("gelu", P(KILN_FN_GELU, 0, INFINITY, 0, 1, 1, 0)),
    ACT("gelu tanh", P(KILN_FN_GELU_TANH, 0, INFINITY, 0, 1, 1, 0)),
    ACT("swish", P(KILN_FN_SWISH, 0, INFINITY, 0, 1, 1, 0)),
    ACT("hard sigmoid", P(KILN_FN_HARD_SIGMOID, 0, INFINITY, 0, 1, 1, 0)),
    ACT("hard swish", P(KILN_FN_HARD_SWISH, 0, INFINITY, 0, 1, 1, 0)),
    ACT("affine", P(KILN_FN_AFFINE, 0, INFINITY, 0, 1, 1.0f / 127.5f, -1)),
    {"copy columns", run_columns, 2, 1, .in = {T(-1, 1, 9, 5, 3), T(-1, 1, 9, 5, 4)}, .out = {T(0, 0, 9, 5, 7)}, .tol = 0},
    {"copy columns back", run_columns_b, 1, 1, .in = {T(-1, 1, 30, 40)}, .out = {T(0, 0, 30, 16)}, .tol = 0},
    {"spatial dropout2d", run_sdrop, 1, 1, .in = {T(-1, 1, 4, 5, 6, 33)}, .out = {T(0, 0, 4, 5, 6, 33)},
     .op.dropout = {.rate = 0.3f, .seed = 1234}, .tol = 0},
    {"mul channels", run_mulc, 2, 1, .in = {T(-2, 2, 5, 6, 6, 40), T(0, 1, 5, 1, 1, 40)}, .out = {T(0, 0, 5, 6, 6, 40)}, .tol = 0},
    {"normalize", run_norm, 3, 1, .in = {T(-3, 3, 4, 3, 3, 17), T(-1, 1, 17), T(0.01, 4, 17)}, .out = {T(0, 0, 4, 3, 3, 17)}, .tol = 0},
    {"normalize backward", run_norm_b, 2, 1, .in = {T(-1, 1, 4, 3, 3, 17), T(0.01, 4, 17)}, .out = {T(0, 0, 4, 3, 3, 17)}, .tol = 0},
};

KT_PARITY_SUITE(parity_act, rows)
