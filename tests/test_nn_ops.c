/* test_nn_ops.c: the layer ops of include/kiln/nn.h (Conv2D, pooling, sigmoid/tanh,
 * dropout). The CPU backend against float64 oracles written plainly here (direct convolution
 * loops, window loops), every backward against central finite differences in double of the
 * oracle's loss L = sum(dy * y), argument errors, and the CPU-vs-CUDA parity table (skipped
 * without a GPU). Tolerances and their reasons: docs/testing.md, "Layer and optimizer ops". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "conv_oracle.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* ==== Conv2D ==== */

static const kt_conv_case conv_cfgs[] = {
    {"3x3 valid", 2, 7, 6, 3, 3, 3, 4, 1, 1, 1, 1, 1, KILN_PADDING_VALID, true},
    {"3x3 same", 2, 6, 7, 2, 3, 3, 3, 1, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"3x3 same stride 2, even input (pad 0 top, 1 bottom)", 2, 8, 6, 3, 3, 3, 2, 1, 2, 2, 1, 1, KILN_PADDING_SAME, true},
    {"5x3 same strides 2x1, odd sizes, no bias", 1, 9, 7, 2, 5, 3, 3, 1, 2, 1, 1, 1, KILN_PADDING_SAME, false},
    {"3x3 dilation 2 same", 1, 9, 8, 2, 3, 3, 2, 1, 1, 1, 2, 2, KILN_PADDING_SAME, true},
    {"1x1 (x is the patch matrix)", 3, 5, 4, 5, 1, 1, 6, 1, 1, 1, 1, 1, KILN_PADDING_VALID, true},
    {"1x1 stride 2 same", 2, 5, 5, 3, 1, 1, 2, 1, 2, 2, 1, 1, KILN_PADDING_SAME, true},
    {"2x2 same (even kernel, pad after)", 2, 5, 6, 2, 2, 2, 3, 1, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"4x3 valid strides 3x2, rows left over", 2, 11, 8, 2, 4, 3, 2, 1, 3, 2, 1, 1, KILN_PADDING_VALID, true},
    {"3x2 valid dilation 2x3, no bias", 1, 10, 11, 2, 3, 2, 2, 1, 1, 1, 2, 3, KILN_PADDING_VALID, false},
    {"3x3 same stride 2 dilation 2", 1, 9, 10, 2, 3, 3, 2, 1, 2, 2, 2, 2, KILN_PADDING_SAME, true},
};
#define N_CONV (sizeof conv_cfgs / sizeof conv_cfgs[0])
static size_t conv_index[N_CONV];

ParameterizedTestParameters(conv2d, oracle_and_gradients) {
    for (size_t k = 0; k < N_CONV; k++) conv_index[k] = k;
    return cr_make_param_array(size_t, conv_index, N_CONV);
}

/* Forward against the direct loops; dx, dw, db against central differences of sum(dy * y).
 * The loss is linear in each argument, so the differences are exact up to double rounding;
 * the tolerance covers the f32 sums of up to a few hundred products (docs/testing.md). */
ParameterizedTest(size_t *ix, conv2d, oracle_and_gradients) {
    kt_conv_oracle_check(&conv_cfgs[*ix], kt_cpu(), 100 + *ix, 1e-5, "conv2d");
}

/* Patch matrices bigger than one chunk: the batch is split, dw summed across chunks. */
Test(conv2d, chunked_batch) {
    kt_rng rng;
    kt_rng_seed(&rng, 7);
    /* 9 x 64 x 64 rows of 3 x 3 x 64 columns: 85 MB of patches, over the 64 MB chunk */
    int64_t xs[4] = {9, 64, 64, 64}, ws[4] = {3, 3, 64, 1}, ys[4] = {9, 64, 64, 1};
    kiln_conv2d_params p = {1, 1, 1, 1, KILN_PADDING_SAME, KILN_MATH_STRICT, 1};
    kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1), *dy = kt_rand_f32(&rng, 4, ys, -1, 1);
    kiln_tensor *dw = kt_poisoned_f32(4, ws);
    OK(kiln_conv2d_backward_filter(x, dy, &p, dw, NULL));
    /* dw[ky,kx,c,0] = sum over n, i, j of x[n, i+ky-1, j+kx-1, c] dy[n, i, j] */
    double *xd = kt_to_f64(x), *dyd = kt_to_f64(dy), *want = kt_zeros_f64(9 * 64);
    for (int64_t n = 0; n < 9; n++)
        for (int64_t i = 0; i < 64; i++)
            for (int64_t j = 0; j < 64; j++)
                for (int64_t ky = 0; ky < 3; ky++)
                    for (int64_t kx = 0; kx < 3; kx++) {
                        int64_t ih = i + ky - 1, iw = j + kx - 1;
                        if (ih < 0 || ih >= 64 || iw < 0 || iw >= 64) continue;
                        double g = dyd[(n * 64 + i) * 64 + j];
                        for (int64_t c = 0; c < 64; c++)
                            want[(ky * 3 + kx) * 64 + c] += xd[((n * 64 + ih) * 64 + iw) * 64 + c] * g;
                    }
    /* sums of 36864 products: 1e-5 of the scale still holds (OpenBLAS blocks its sums) */
    kt_expect_tensor_f64("conv2d chunked dw", dw, want, 1e-5);
    free(xd); free(dyd); free(want);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(dw);
}

Test(conv2d, argument_errors) {
    int64_t xs[4] = {1, 5, 5, 3}, ws[4] = {3, 3, 3, 2}, bad_ws[4] = {3, 3, 4, 2};
    int64_t ys[4] = {1, 3, 3, 2}, bad_ys[4] = {1, 5, 5, 2}, bs[1] = {3}, big_ws[4] = {6, 3, 3, 2};
    kiln_conv2d_params p = KILN_CONV2D_DEFAULTS;
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *w = kt_new(kt_cpu(), KILN_F32, 4, ws);
    kiln_tensor *w2 = kt_new(kt_cpu(), KILN_F32, 4, bad_ws), *y = kt_new(kt_cpu(), KILN_F32, 4, ys);
    kiln_tensor *y2 = kt_new(kt_cpu(), KILN_F32, 4, bad_ys), *b = kt_new(kt_cpu(), KILN_F32, 1, bs);
    kiln_tensor *w3 = kt_new(kt_cpu(), KILN_F32, 4, big_ws);
    cr_expect_eq(kiln_conv2d(x, w2, NULL, &p, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_conv2d") && strstr(kiln_last_error(), "channels"),
              "%s", kiln_last_error());
    cr_expect_eq(kiln_conv2d(x, w, NULL, &p, y2), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "(1, 5, 5, 2)") && strstr(kiln_last_error(), "(1, 3, 3, 2)"),
              "%s", kiln_last_error());
    cr_expect_eq(kiln_conv2d(x, w, b, &p, y), KILN_ERR_SHAPE); /* 3 biases for 2 channels */
    cr_expect(strstr(kiln_last_error(), "one per output channel"), "%s", kiln_last_error());
    cr_expect_eq(kiln_conv2d(x, w3, NULL, &p, y), KILN_ERR_SHAPE); /* 6 rows of kernel, 5 of x */
    cr_expect(strstr(kiln_last_error(), "does not fit"), "%s", kiln_last_error());
    kiln_conv2d_params bad = p;
    bad.stride_w = 0;
    cr_expect_eq(kiln_conv2d(x, w, NULL, &bad, y), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "stride_w"), "%s", kiln_last_error());
    bad = p;
    bad.padding = (kiln_padding)7;
    cr_expect_eq(kiln_conv2d(x, w, NULL, &bad, y), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_conv2d(x, w, NULL, NULL, y), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_conv2d_backward_data(y, w2, &p, x), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_conv2d_backward_data"), "%s", kiln_last_error());
    cr_expect_eq(kiln_conv2d_backward_filter(x, y2, &p, w, NULL), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_conv2d_backward_filter"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(w); kiln_tensor_free(w2); kiln_tensor_free(w3);
    kiln_tensor_free(y); kiln_tensor_free(y2); kiln_tensor_free(b);
}

/* ==== pooling ==== */

typedef struct pool_cfg {
    const char *name;
    int64_t n, h, w, c;
    int ph, pw, sh, sw; /* sh, sw 0: the pool size */
    kiln_padding pad;
} pool_cfg;

typedef struct pool_ref {
    const pool_cfg *cfg;
    bool max;
    int64_t oh, ow, pt, pl;
    int sh, sw;
    double *x, *dy, *y;
} pool_ref;

static void pool_ref_forward(const pool_ref *r) {
    const pool_cfg *k = r->cfg;
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t i = 0; i < r->oh; i++)
            for (int64_t j = 0; j < r->ow; j++)
                for (int64_t c = 0; c < k->c; c++) {
                    double best = -INFINITY, sum = 0.0;
                    int64_t count = 0;
                    for (int64_t a = 0; a < k->ph; a++)
                        for (int64_t b = 0; b < k->pw; b++) {
                            int64_t ih = i * r->sh - r->pt + a, iw = j * r->sw - r->pl + b;
                            if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                            double v = r->x[((n * k->h + ih) * k->w + iw) * k->c + c];
                            best = v > best ? v : best;
                            sum += v;
                            count++;
                        }
                    cr_assert(count > 0, "%s: an empty window", k->name);
                    r->y[((n * r->oh + i) * r->ow + j) * k->c + c] = r->max ? best : sum / (double)count;
                }
}

static double pool_ref_loss(void *ctx) {
    pool_ref *r = ctx;
    pool_ref_forward(r);
    return kt_dot_f64(r->y, r->dy, r->cfg->n * r->oh * r->ow * r->cfg->c);
}

static const pool_cfg pool_cfgs[] = {
    {"2x2 (Keras defaults: strides = pool, valid)", 2, 6, 6, 3, 2, 2, 0, 0, KILN_PADDING_VALID},
    {"3x3 stride 2 same, odd sizes", 2, 7, 5, 2, 3, 3, 2, 2, KILN_PADDING_SAME},
    {"3x3 stride 1 same (overlapping windows)", 1, 5, 6, 2, 3, 3, 1, 1, KILN_PADDING_SAME},
    {"2x3 strides 1x2 valid", 1, 5, 7, 3, 2, 3, 1, 2, KILN_PADDING_VALID},
    {"2x2 stride 2 same, odd (partial windows)", 2, 5, 5, 2, 2, 2, 2, 2, KILN_PADDING_SAME},
    {"3x2 strides 3x1 valid, rows left over", 1, 8, 4, 2, 3, 2, 3, 1, KILN_PADDING_VALID},
};
#define N_POOL (sizeof pool_cfgs / sizeof pool_cfgs[0])
static size_t pool_index[N_POOL];

ParameterizedTestParameters(pool2d, oracle_and_gradients) {
    for (size_t k = 0; k < N_POOL; k++) pool_index[k] = k;
    return cr_make_param_array(size_t, pool_index, N_POOL);
}

/* distinct values 1/64 apart in a shuffled order: no two elements of a window within the
 * finite-difference step, so max pooling is differentiable at x */
static void fill_distinct(kiln_tensor *t, kt_rng *r) {
    int64_t n = kiln_tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(i - n / 2) / 64.0f + 1.0f / 128.0f;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(kt_next(r) % (uint64_t)(i + 1));
        float t2 = v[i];
        v[i] = v[j];
        v[j] = t2;
    }
    kt_set_f32(t, v);
    free(v);
}

ParameterizedTest(size_t *ix, pool2d, oracle_and_gradients) {
    const pool_cfg *k = &pool_cfgs[*ix];
    kiln_pool2d_params p = {k->ph, k->pw, k->sh, k->sw, k->pad};
    for (int kind = 0; kind < 2; kind++) {
        pool_ref r = {.cfg = k, .max = kind == 0, .sh = k->sh ? k->sh : k->ph,
                      .sw = k->sw ? k->sw : k->pw};
        kt_ref_axis(k->h, k->ph, r.sh, 1, k->pad, &r.oh, &r.pt);
        kt_ref_axis(k->w, k->pw, r.sw, 1, k->pad, &r.ow, &r.pl);
        int64_t xs[4] = {k->n, k->h, k->w, k->c}, ys[4] = {k->n, r.oh, r.ow, k->c}, got[4];
        OK(kiln_pool2d_output_shape(xs, &p, got));
        for (int i = 0; i < 4; i++) cr_assert_eq(got[i], ys[i], "%s: output dim %d", k->name, i);
        kt_rng rng;
        kt_rng_seed(&rng, 200 + *ix);
        kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *dy = kt_rand_f32(&rng, 4, ys, -1, 1);
        fill_distinct(x, &rng);
        kiln_tensor *y = kt_poisoned_f32(4, ys), *dx = kt_poisoned_f32(4, xs);
        r.x = kt_to_f64(x);
        r.dy = kt_to_f64(dy);
        r.y = kt_zeros_f64(kiln_tensor_numel(y));
        const char *op = r.max ? "max_pool2d" : "avg_pool2d";
        char what[160];
        OK(r.max ? kiln_max_pool2d(x, &p, y) : kiln_avg_pool2d(x, &p, y));
        pool_ref_forward(&r);
        snprintf(what, sizeof what, "%s %s: y", op, k->name);
        /* max: a copy, exact; average: f32 sum of <= 9 terms and a division */
        kt_expect_tensor_f64(what, y, r.y, r.max ? 0.0 : 1e-6);
        OK(r.max ? kiln_max_pool2d_backward(x, dy, &p, dx) : kiln_avg_pool2d_backward(dy, &p, dx));
        double *want = kt_zeros_f64(kiln_tensor_numel(x));
        kt_fd_grad(pool_ref_loss, &r, r.x, kiln_tensor_numel(x), 1e-4, want);
        snprintf(what, sizeof what, "%s %s: dx", op, k->name);
        kt_expect_tensor_f64(what, dx, want, 1e-6);
        free(want); free(r.x); free(r.dy); free(r.y);
        kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
    }
}

/* Equal values: each window's gradient goes to its first element in row-major order. */
Test(pool2d, max_ties_go_to_the_first_element) {
    int64_t xs[4] = {1, 5, 5, 2}, ys[4] = {1, 3, 3, 2};
    kiln_pool2d_params p = {2, 2, 2, 2, KILN_PADDING_SAME}; /* pad 0 before, 1 after */
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *dy = kt_new(kt_cpu(), KILN_F32, 4, ys);
    kiln_tensor *dx = kt_poisoned_f32(4, xs);
    OK(kiln_fill(x, 1.5));
    float g[18];
    for (int i = 0; i < 18; i++) g[i] = (float)(i + 1);
    kt_set_f32(dy, g);
    OK(kiln_max_pool2d_backward(x, dy, &p, dx));
    float *got = kt_get_f32(dx);
    for (int64_t ih = 0; ih < 5; ih++)
        for (int64_t iw = 0; iw < 5; iw++)
            for (int64_t c = 0; c < 2; c++) {
                bool first = ih % 2 == 0 && iw % 2 == 0;
                float want = first ? g[((ih / 2) * 3 + iw / 2) * 2 + c] : 0.0f;
                cr_expect_eq(got[(ih * 5 + iw) * 2 + c], want, "dx[%lld, %lld, %lld] is %g, want %g",
                             (long long)ih, (long long)iw, (long long)c,
                             (double)got[(ih * 5 + iw) * 2 + c], (double)want);
            }
    free(got);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(dx);
}

Test(pool2d, max_propagates_nan) {
    int64_t xs[4] = {1, 2, 2, 1}, ys[4] = {1, 1, 1, 1};
    kiln_pool2d_params p = {2, 2, 0, 0, KILN_PADDING_VALID};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *y = kt_poisoned_f32(4, ys);
    float v[4] = {1.0f, NAN, 3.0f, 2.0f};
    kt_set_f32(x, v);
    OK(kiln_max_pool2d(x, &p, y));
    float *got = kt_get_f32(y);
    cr_expect(isnan(got[0]) && !kt_is_poison_f32(got[0]), "max over a NaN is %g", (double)got[0]);
    free(got);
    kiln_tensor_free(x); kiln_tensor_free(y);
}

Test(pool2d, global_average) {
    kt_rng rng;
    kt_rng_seed(&rng, 300);
    int64_t xs[4] = {3, 5, 7, 4}, ys[2] = {3, 4}, ys4[4] = {3, 1, 1, 4};
    kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -2, 2), *dy = kt_rand_f32(&rng, 2, ys, -1, 1);
    kiln_tensor *y = kt_poisoned_f32(2, ys), *y4 = kt_poisoned_f32(4, ys4), *dx = kt_poisoned_f32(4, xs);
    double *xd = kt_to_f64(x), *dyd = kt_to_f64(dy), want[12] = {0};
    OK(kiln_global_avg_pool2d(x, y));
    OK(kiln_global_avg_pool2d(x, y4)); /* keepdims form */
    for (int64_t n = 0; n < 3; n++)
        for (int64_t p = 0; p < 35; p++)
            for (int64_t c = 0; c < 4; c++) want[n * 4 + c] += xd[(n * 35 + p) * 4 + c] / 35.0;
    /* a double sum rounded once: half an ulp */
    kt_expect_tensor_f64("global_avg_pool2d y", y, want, 1.2e-7);
    kt_expect_tensor_f64("global_avg_pool2d y (N, 1, 1, C)", y4, want, 1.2e-7);
    OK(kiln_global_avg_pool2d_backward(dy, dx));
    double *g = kt_zeros_f64(105 * 4);
    for (int64_t n = 0; n < 3; n++)
        for (int64_t p = 0; p < 35; p++)
            for (int64_t c = 0; c < 4; c++) g[(n * 35 + p) * 4 + c] = dyd[n * 4 + c] / 35.0;
    /* d(sum dy * mean)/dx = dy / (H W) exactly; one f32 division */
    kt_expect_tensor_f64("global_avg_pool2d dx", dx, g, 1.2e-7);
    free(xd); free(dyd); free(g);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(y4);
    kiln_tensor_free(dx);
}

Test(pool2d, argument_errors) {
    int64_t xs[4] = {1, 4, 4, 2}, ys[4] = {1, 2, 2, 2}, bad[4] = {1, 3, 3, 2}, flat[2] = {1, 3};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *y = kt_new(kt_cpu(), KILN_F32, 4, ys);
    kiln_tensor *yb = kt_new(kt_cpu(), KILN_F32, 4, bad), *g = kt_new(kt_cpu(), KILN_F32, 2, flat);
    kiln_pool2d_params p = {2, 2, 0, 0, KILN_PADDING_VALID}, big = {5, 2, 0, 0, KILN_PADDING_VALID};
    cr_expect_eq(kiln_max_pool2d(x, &p, yb), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_max_pool2d") && strstr(kiln_last_error(), "(1, 3, 3, 2)"),
              "%s", kiln_last_error());
    cr_expect_eq(kiln_avg_pool2d(x, &big, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "does not fit"), "%s", kiln_last_error());
    kiln_pool2d_params neg = {2, 2, -1, 0, KILN_PADDING_VALID};
    cr_expect_eq(kiln_avg_pool2d(x, &neg, y), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_max_pool2d_backward(x, yb, &p, x), KILN_ERR_SHAPE);
    cr_expect_eq(kiln_global_avg_pool2d(x, g), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_global_avg_pool2d"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(yb); kiln_tensor_free(g);
}

/* ==== sigmoid, tanh ==== */

typedef struct act_ref {
    bool sigmoid;
    int64_t n;
    double *x, *dy;
} act_ref;

static double act_f(bool sigmoid, double x) { return sigmoid ? 1.0 / (1.0 + exp(-x)) : tanh(x); }

static double act_loss(void *ctx) {
    act_ref *r = ctx;
    double s = 0.0;
    for (int64_t i = 0; i < r->n; i++) s += r->dy[i] * act_f(r->sigmoid, r->x[i]);
    return s;
}

Test(activation, sigmoid_tanh_oracle_and_gradients) {
    kt_rng rng;
    kt_rng_seed(&rng, 400);
    int64_t sh[2] = {37, 29};
    for (int kind = 0; kind < 2; kind++) {
        bool sig = kind == 0;
        kiln_tensor *x = kt_rand_f32(&rng, 2, sh, -6, 6), *dy = kt_rand_f32(&rng, 2, sh, -1, 1);
        kiln_tensor *y = kt_poisoned_f32(2, sh), *dx = kt_poisoned_f32(2, sh);
        act_ref r = {sig, kiln_tensor_numel(x), kt_to_f64(x), kt_to_f64(dy)};
        double *want = kt_zeros_f64(r.n);
        OK(sig ? kiln_sigmoid(x, y) : kiln_tanh(x, y));
        for (int64_t i = 0; i < r.n; i++) want[i] = act_f(sig, r.x[i]);
        /* computed in double, rounded once: half an ulp of values below 1 */
        kt_expect_tensor_f64(sig ? "sigmoid y" : "tanh y", y, want, 6e-8);
        OK(sig ? kiln_sigmoid_backward(y, dy, dx) : kiln_tanh_backward(y, dy, dx));
        kt_fd_grad(act_loss, &r, r.x, r.n, 1e-4, want);
        /* from the rounded y, in f32: a few ulps of the largest gradient */
        kt_expect_tensor_f64(sig ? "sigmoid dx" : "tanh dx", dx, want, 1e-6);
        free(want); free(r.x); free(r.dy);
        kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
    }
}

Test(activation, special_values) {
    int64_t sh[1] = {7};
    float v[7] = {INFINITY, -INFINITY, NAN, 0.0f, 100.0f, -100.0f, -0.0f};
    double sig[7] = {1, 0, NAN, 0.5, 1, 3.720075976020836e-44, 0.5};
    double th[7] = {1, -1, NAN, 0, 1, -1, 0};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 1, sh), *y = kt_poisoned_f32(1, sh);
    kt_set_f32(x, v);
    OK(kiln_sigmoid(x, y));
    kt_expect_tensor_f64("sigmoid special values", y, sig, 6e-8);
    OK(kiln_tanh(x, x)); /* in place */
    kt_expect_tensor_f64("tanh special values (in place)", x, th, 0.0);
    kiln_tensor_free(x); kiln_tensor_free(y);
}

/* ==== dropout ==== */

/* mask[i] = 1 where dropout keeps element i: dropout of ones is 1 / (1 - rate) there, 0 elsewhere */
static unsigned char *dropout_mask(kiln_backend *be, int ndim, const int64_t *shape, float rate,
                                   uint64_t seed, float scale) {
    kiln_tensor *ones = kt_new(be, KILN_F32, ndim, shape), *m = kt_new(be, KILN_F32, ndim, shape);
    OK(kiln_fill(ones, 1.0));
    kt_poison(m);
    OK(kiln_dropout(ones, rate, seed, m));
    float *v = kt_get_f32(m);
    int64_t n = kiln_tensor_numel(m);
    unsigned char *mask = malloc((size_t)n);
    cr_assert_not_null(mask);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(v[i] == 0.0f || v[i] == scale, "dropout of 1 gave %g at %lld", (double)v[i],
                  (long long)i);
        mask[i] = v[i] != 0.0f;
    }
    free(v);
    kiln_tensor_free(ones);
    kiln_tensor_free(m);
    return mask;
}

typedef struct drop_ref {
    int64_t n;
    const unsigned char *mask;
    double scale, *x, *dy;
} drop_ref;

static double drop_loss(void *ctx) {
    drop_ref *r = ctx;
    double s = 0.0;
    for (int64_t i = 0; i < r->n; i++) s += r->dy[i] * (r->mask[i] ? r->x[i] * r->scale : 0.0);
    return s;
}

Test(dropout, mask_rate_forward_and_gradient) {
    int64_t sh[2] = {200, 501};
    int64_t n = sh[0] * sh[1];
    float rate = 0.3f, scale = (float)(1.0 / (1.0 - (double)rate));
    unsigned char *mask = dropout_mask(kt_cpu(), 2, sh, rate, 42, scale);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += mask[i];
    /* Binomial(n, 0.7): standard deviation 0.00145 of n; 5 of them */
    double frac = (double)kept / (double)n;
    cr_expect(fabs(frac - 0.7) < 5 * sqrt(0.21 / (double)n), "kept %.5f of the elements, want 0.7", frac);
    /* runs of equal mask bits are as short as independent draws make them */
    int64_t same_as_next = 0;
    for (int64_t i = 0; i + 1 < n; i++) same_as_next += mask[i] == mask[i + 1];
    double p_same = 0.7 * 0.7 + 0.3 * 0.3;
    cr_expect(fabs((double)same_as_next / (double)(n - 1) - p_same) < 5 * sqrt(p_same * (1 - p_same) / (double)n),
              "neighbouring mask bits are correlated: %lld equal pairs", (long long)same_as_next);
    /* the same seed gives the same mask; another seed another mask */
    unsigned char *again = dropout_mask(kt_cpu(), 2, sh, rate, 42, scale);
    unsigned char *other = dropout_mask(kt_cpu(), 2, sh, rate, 43, scale);
    kt_expect_bitwise("dropout mask, same seed", mask, again, (size_t)n);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += mask[i] != other[i];
    cr_expect(differ > n / 3, "seeds 42 and 43 differ in only %lld of %lld elements", (long long)differ, (long long)n);

    /* forward and backward on random data: x * scale where kept, 0 elsewhere, exactly */
    kt_rng rng;
    kt_rng_seed(&rng, 500);
    int64_t small[2] = {13, 31};
    unsigned char *m2 = dropout_mask(kt_cpu(), 2, small, rate, 7, scale);
    kiln_tensor *x = kt_rand_f32(&rng, 2, small, -3, 3), *dy = kt_rand_f32(&rng, 2, small, -1, 1);
    kiln_tensor *y = kt_poisoned_f32(2, small), *dx = kt_poisoned_f32(2, small);
    drop_ref r = {kiln_tensor_numel(x), m2, scale, kt_to_f64(x), kt_to_f64(dy)};
    double *want = kt_zeros_f64(r.n);
    OK(kiln_dropout(x, rate, 7, y));
    for (int64_t i = 0; i < r.n; i++) want[i] = m2[i] ? (double)((float)r.x[i] * scale) : 0.0;
    kt_expect_tensor_f64("dropout y", y, want, 0.0);
    OK(kiln_dropout_backward(dy, rate, 7, dx));
    kt_fd_grad(drop_loss, &r, r.x, r.n, 1e-3, want);
    /* linear: the differences are exact but for double rounding; dx is dy * scale in f32 */
    kt_expect_tensor_f64("dropout dx", dx, want, 1.2e-7);
    /* rate 0 is the identity */
    OK(kiln_dropout(x, 0.0f, 7, y));
    float *xv = kt_get_f32(x), *yv = kt_get_f32(y);
    kt_expect_bitwise("dropout rate 0", xv, yv, sizeof(float) * (size_t)r.n);
    free(xv); free(yv); free(want); free(r.x); free(r.dy);
    free(mask); free(again); free(other); free(m2);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
}

Test(dropout, argument_errors) {
    int64_t sh[1] = {4}, sh2[1] = {5};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 1, sh), *y = kt_new(kt_cpu(), KILN_F32, 1, sh2);
    cr_expect_eq(kiln_dropout(x, 1.0f, 1, x), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_dropout") && strstr(kiln_last_error(), "rate"), "%s",
              kiln_last_error());
    cr_expect_eq(kiln_dropout(x, NAN, 1, x), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_dropout_backward(x, 0.5f, 1, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_dropout_backward"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(y);
}

/* The mask on CUDA, bit for bit the CPU's. */
Test(dropout, same_mask_on_cuda) {
    kiln_backend *cuda = kt_cuda_or_skip();
    int64_t sh[3] = {3, 1001, 17};
    float scale = (float)(1.0 / (1.0 - (double)0.45f)); /* kiln_dropout's scale, from the float rate */
    unsigned char *a = dropout_mask(kt_cpu(), 3, sh, 0.45f, 0xfeedfacecafebeefull, scale);
    unsigned char *b = dropout_mask(cuda, 3, sh, 0.45f, 0xfeedfacecafebeefull, scale);
    kt_expect_bitwise("dropout mask cuda vs cpu", a, b, (size_t)(sh[0] * sh[1] * sh[2]));
    free(a);
    free(b);
}

/* ==== CPU vs CUDA parity ==== */

static kiln_status run_conv(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_conv2d(in[0], in[1], c->n_in > 2 ? in[2] : NULL, &c->conv, out[0]);
}
static kiln_status run_conv_bd(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_conv2d_backward_data(in[0], in[1], &c->conv, out[0]);
}
static kiln_status run_conv_bf(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_conv2d_backward_filter(in[0], in[1], &c->conv, out[0], c->n_out > 1 ? out[1] : NULL);
}
static kiln_status run_maxpool(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_max_pool2d(in[0], &c->pool, out[0]);
}
static kiln_status run_maxpool_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_max_pool2d_backward(in[0], in[1], &c->pool, out[0]);
}
/* x rounded to the integers 0, 1, 2 (through an i32 cast) before pooling: many equal values
 * per window, so the tie rule is what decides */
static kiln_status run_maxpool_b_ties(const kt_case *c, kiln_tensor *const *in,
                                      kiln_tensor *const *out) {
    kiln_tensor *xi = kt_new(in[0]->backend, KILN_I32, 4, in[0]->shape);
    kiln_tensor *x = kt_new(in[0]->backend, KILN_F32, 4, in[0]->shape);
    kiln_status s = kiln_cast(in[0], xi);
    if (s == KILN_OK) s = kiln_cast(xi, x);
    if (s == KILN_OK) s = kiln_max_pool2d_backward(x, in[1], &c->pool, out[0]);
    if (s == KILN_OK) s = kiln_backend_synchronize(in[0]->backend);
    kiln_tensor_free(xi);
    kiln_tensor_free(x);
    return s;
}
static kiln_status run_avgpool(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_avg_pool2d(in[0], &c->pool, out[0]);
}
static kiln_status run_avgpool_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_avg_pool2d_backward(in[0], &c->pool, out[0]);
}
static kiln_status run_gap(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_global_avg_pool2d(in[0], out[0]);
}
static kiln_status run_gap_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_global_avg_pool2d_backward(in[0], out[0]);
}
static kiln_status run_sigmoid(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_sigmoid(in[0], out[0]);
}
static kiln_status run_sigmoid_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_sigmoid_backward(in[0], in[1], out[0]);
}
static kiln_status run_tanh(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_tanh(in[0], out[0]);
}
static kiln_status run_tanh_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_tanh_backward(in[0], in[1], out[0]);
}
static kiln_status run_dropout(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_dropout(in[0], c->op.dropout.rate, c->op.dropout.seed, out[0]);
}
static kiln_status run_dropout_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_dropout_backward(in[0], c->op.dropout.rate, c->op.dropout.seed, out[0]);
}

#define F32(...) {KILN_F32, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, -1.0, 1.0}
#define T(lo, hi, ...) {KILN_F32, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, lo, hi}
#define KT_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define VALID KILN_PADDING_VALID
#define SAME KILN_PADDING_SAME
#define TF32 KILN_MATH_TF32
#define STRIDES(h, w) .stride_h = (h), .stride_w = (w)
#define DILATION(h, w) .dilation_h = (h), .dilation_w = (w)
#define POOL(h, w) .pool_h = (h), .pool_w = (w)

static kt_case rows[] = {
    /* Conv2D, strict fp32: cuDNN's GEMM-family algorithms against im2col + sgemm, f32 sums of
     * up to 576 products in other orders: 1e-5 of the output's scale */
    {"conv 3x3 same bias", run_conv, 3, 1, .in = {F32(4, 16, 16, 8), F32(3, 3, 8, 16), F32(16)}, .out = {F32(4, 16, 16, 16)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv 3x3 same stride 2 (asymmetric pad)", run_conv, 3, 1, .in = {F32(2, 15, 16, 5), F32(3, 3, 5, 7), F32(7)}, .out = {F32(2, 8, 8, 7)}, .conv = {STRIDES(2, 2), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv 5x5 valid odd sizes", run_conv, 3, 1, .in = {F32(3, 13, 11, 3), F32(5, 5, 3, 6), F32(6)}, .out = {F32(3, 9, 7, 6)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv 1x1", run_conv, 3, 1, .in = {F32(2, 9, 9, 32), F32(1, 1, 32, 24), F32(24)}, .out = {F32(2, 9, 9, 24)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv 3x3 dilation 2 same", run_conv, 3, 1, .in = {F32(2, 12, 12, 4), F32(3, 3, 4, 8), F32(8)}, .out = {F32(2, 12, 12, 8)}, .conv = {STRIDES(1, 1), DILATION(2, 2), .padding = SAME}, .tol = 1e-5},
    {"conv 4x4 strides 3x2 valid no bias", run_conv, 2, 1, .in = {F32(2, 14, 13, 3), F32(4, 4, 3, 5)}, .out = {F32(2, 4, 5, 5)}, .conv = {STRIDES(3, 2), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv 2x2 same (pad after)", run_conv, 3, 1, .in = {F32(2, 7, 9, 3), F32(2, 2, 3, 4), F32(4)}, .out = {F32(2, 7, 9, 4)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    /* TF32: 10-bit mantissas, ~2^-11 relative per product: 5e-3 */
    {"conv 3x3 same tf32", run_conv, 3, 1, .in = {F32(4, 16, 16, 16), F32(3, 3, 16, 32), F32(32)}, .out = {F32(4, 16, 16, 32)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME, .math = TF32}, .tol = 5e-3},
    {"conv backward data 3x3 same", run_conv_bd, 2, 1, .in = {F32(4, 16, 16, 16), F32(3, 3, 8, 16)}, .out = {F32(4, 16, 16, 8)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv backward data stride 2 (asymmetric pad)", run_conv_bd, 2, 1, .in = {F32(2, 8, 8, 7), F32(3, 3, 5, 7)}, .out = {F32(2, 15, 16, 5)}, .conv = {STRIDES(2, 2), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv backward data 4x4 strides 3x2 valid", run_conv_bd, 2, 1, .in = {F32(2, 4, 5, 5), F32(4, 4, 3, 5)}, .out = {F32(2, 14, 13, 3)}, .conv = {STRIDES(3, 2), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv backward data dilation 2", run_conv_bd, 2, 1, .in = {F32(2, 12, 12, 8), F32(3, 3, 4, 8)}, .out = {F32(2, 12, 12, 4)}, .conv = {STRIDES(1, 1), DILATION(2, 2), .padding = SAME}, .tol = 1e-5},
    {"conv backward data tf32", run_conv_bd, 2, 1, .in = {F32(4, 16, 16, 32), F32(3, 3, 16, 32)}, .out = {F32(4, 16, 16, 16)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME, .math = TF32}, .tol = 5e-3},
    {"conv backward filter 3x3 same", run_conv_bf, 2, 2, .in = {F32(4, 16, 16, 8), F32(4, 16, 16, 16)}, .out = {F32(3, 3, 8, 16), F32(16)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv backward filter stride 2 (asymmetric pad)", run_conv_bf, 2, 2, .in = {F32(2, 15, 16, 5), F32(2, 8, 8, 7)}, .out = {F32(3, 3, 5, 7), F32(7)}, .conv = {STRIDES(2, 2), DILATION(1, 1), .padding = SAME}, .tol = 1e-5},
    {"conv backward filter 5x5 valid no bias", run_conv_bf, 2, 1, .in = {F32(3, 13, 11, 3), F32(3, 9, 7, 6)}, .out = {F32(5, 5, 3, 6)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv backward filter 1x1", run_conv_bf, 2, 2, .in = {F32(2, 9, 9, 32), F32(2, 9, 9, 24)}, .out = {F32(1, 1, 32, 24), F32(24)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = VALID}, .tol = 1e-5},
    {"conv backward filter dilation 2", run_conv_bf, 2, 2, .in = {F32(2, 12, 12, 4), F32(2, 12, 12, 8)}, .out = {F32(3, 3, 4, 8), F32(8)}, .conv = {STRIDES(1, 1), DILATION(2, 2), .padding = SAME}, .tol = 1e-5},
    {"conv backward filter tf32", run_conv_bf, 2, 2, .in = {F32(4, 16, 16, 16), F32(4, 16, 16, 32)}, .out = {F32(3, 3, 16, 32), F32(32)}, .conv = {STRIDES(1, 1), DILATION(1, 1), .padding = SAME, .math = TF32}, .tol = 5e-3},
    /* pooling: the same f32 operations in the same order on both sides: exact */
    {"max pool 2x2", run_maxpool, 1, 1, .in = {F32(4, 16, 16, 8)}, .out = {F32(4, 8, 8, 8)}, .pool = {POOL(2, 2), .padding = VALID}, .tol = 0},
    {"max pool 3x3 stride 2 same odd", run_maxpool, 1, 1, .in = {F32(2, 15, 13, 5)}, .out = {F32(2, 8, 7, 5)}, .pool = {POOL(3, 3), STRIDES(2, 2), .padding = SAME}, .tol = 0},
    {"max pool backward 2x2", run_maxpool_b, 2, 1, .in = {F32(4, 16, 16, 8), F32(4, 8, 8, 8)}, .out = {F32(4, 16, 16, 8)}, .pool = {POOL(2, 2), .padding = VALID}, .tol = 0},
    {"max pool backward 3x3 stride 1 same (overlap)", run_maxpool_b, 2, 1, .in = {F32(2, 9, 10, 4), F32(2, 9, 10, 4)}, .out = {F32(2, 9, 10, 4)}, .pool = {POOL(3, 3), STRIDES(1, 1), .padding = SAME}, .tol = 0},
    {"max pool backward 3x3 stride 2 same odd", run_maxpool_b, 2, 1, .in = {F32(2, 15, 13, 5), F32(2, 8, 7, 5)}, .out = {F32(2, 15, 13, 5)}, .pool = {POOL(3, 3), STRIDES(2, 2), .padding = SAME}, .tol = 0},
    {"max pool backward ties (values 0, 1, 2)", run_maxpool_b_ties, 2, 1, .in = {T(0, 2.2, 2, 9, 10, 4), F32(2, 9, 10, 4)}, .out = {F32(2, 9, 10, 4)}, .pool = {POOL(3, 3), STRIDES(1, 1), .padding = SAME}, .tol = 0, .seed = 3},
    {"avg pool 2x2", run_avgpool, 1, 1, .in = {F32(4, 16, 16, 8)}, .out = {F32(4, 8, 8, 8)}, .pool = {POOL(2, 2), .padding = VALID}, .tol = 0},
    {"avg pool 3x3 stride 2 same odd", run_avgpool, 1, 1, .in = {F32(2, 15, 13, 5)}, .out = {F32(2, 8, 7, 5)}, .pool = {POOL(3, 3), STRIDES(2, 2), .padding = SAME}, .tol = 0},
    {"avg pool backward 3x3 stride 1 same", run_avgpool_b, 1, 1, .in = {F32(2, 9, 10, 4)}, .out = {F32(2, 9, 10, 4)}, .pool = {POOL(3, 3), STRIDES(1, 1), .padding = SAME}, .tol = 0},
    {"avg pool backward 3x3 stride 2 same odd", run_avgpool_b, 1, 1, .in = {F32(2, 8, 7, 5)}, .out = {F32(2, 15, 13, 5)}, .pool = {POOL(3, 3), STRIDES(2, 2), .padding = SAME}, .tol = 0},
    /* global average: double sums in the same (h, w) order: exact */
    {"global avg pool", run_gap, 1, 1, .in = {F32(4, 7, 9, 33)}, .out = {F32(4, 33)}, .tol = 0},
    {"global avg pool backward", run_gap_b, 1, 1, .in = {F32(4, 33)}, .out = {F32(4, 7, 9, 33)}, .tol = 0},
    /* activations: f32 expf / tanhf (<= 2 ulp) on CUDA against the CPU's double: 1e-6;
     * backwards: the same f32 operations: exact */
    {"sigmoid", run_sigmoid, 1, 1, .in = {T(-12, 12, 1000, 33)}, .out = {F32(1000, 33)}, .tol = 1e-6},
    {"tanh", run_tanh, 1, 1, .in = {T(-6, 6, 1000, 33)}, .out = {F32(1000, 33)}, .tol = 1e-6},
    {"sigmoid backward", run_sigmoid_b, 2, 1, .in = {T(0, 1, 4097), F32(4097)}, .out = {F32(4097)}, .tol = 0},
    {"tanh backward", run_tanh_b, 2, 1, .in = {F32(4097), F32(4097)}, .out = {F32(4097)}, .tol = 0},
    /* dropout: the same hash and one f32 product: exact */
    {"dropout 0.5", run_dropout, 1, 1, .in = {F32(3, 1001, 7)}, .out = {F32(3, 1001, 7)}, .op.dropout = {.rate = 0.5f, .seed = 12345}, .tol = 0},
    {"dropout 0.1", run_dropout, 1, 1, .in = {F32(64, 100)}, .out = {F32(64, 100)}, .op.dropout = {.rate = 0.1f, .seed = 7}, .tol = 0},
    {"dropout backward 0.3", run_dropout_b, 1, 1, .in = {F32(5, 999)}, .out = {F32(5, 999)}, .op.dropout = {.rate = 0.3f, .seed = 99}, .tol = 0},
};

KT_PARITY_SUITE(parity_nn, rows)
