/* test_conv_family_ops.c: the ops under the convolution-family layers (DepthwiseConv2D,
 * Conv2D groups, SeparableConv2D, ZeroPadding2D, UpSampling2D, Conv2DTranspose,
 * GlobalMaxPooling2D): grouped Conv2D, pad2d, upsample2d, global max pooling. The CPU backend
 * against float64 oracles written plainly here, every backward against central finite
 * differences in double of the oracle's loss L = sum(dy * y), argument errors, and the
 * CPU-vs-CUDA parity table (skipped without a GPU). Grouped Conv2D runs on both CPU paths:
 * backends opened with KILN_CPU_CONV=onednn (oneDNN when built in) and =im2col (the direct
 * loops of conv_grouped.c). Tolerances: docs/testing.md. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "harness.h"
#include "conv_oracle.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

/* ==== grouped Conv2D (DepthwiseConv2D: groups = channels) ==== */

static const kt_conv_case gconv_cfgs[] = {
    {"depthwise 3x3 same, multiplier 1", 2, 6, 5, 4, 3, 3, 4, 4, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"depthwise 3x3 multiplier 2, stride 2 same (pad 0 top, 1 bottom)", 2, 8, 7, 3, 3, 3, 6, 3, 2, 2, 1, 1, KILN_PADDING_SAME, true},
    {"depthwise 3x2 dilation 2 valid, no bias", 1, 9, 8, 2, 3, 2, 6, 2, 1, 1, 2, 2, KILN_PADDING_VALID, false},
    {"groups 2, 3x3 valid strides 2x1", 2, 7, 6, 4, 3, 3, 6, 2, 2, 1, 1, 1, KILN_PADDING_VALID, true},
    {"groups 3, 2x2 same (pad after), 6 -> 9 channels", 1, 5, 6, 6, 2, 2, 9, 3, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"groups 2, 1x1 (pointwise groups)", 2, 3, 4, 4, 1, 1, 2, 2, 1, 1, 1, 1, KILN_PADDING_VALID, false},
    /* oneDNN's depthwise kernels (multiplier 1) block channels by 16 (8 with AVX2): channel
     * counts past one block with a tail, MobileNet's stride 2 with the pad after, 5x5, dilation */
    {"depthwise 3x3 stride 2 same, 20 channels (pad 0 top, 1 bottom)", 1, 6, 5, 20, 3, 3, 20, 20, 2, 2, 1, 1, KILN_PADDING_SAME, true},
    {"depthwise 3x3 valid, 35 channels, no bias", 1, 4, 5, 35, 3, 3, 35, 35, 1, 1, 1, 1, KILN_PADDING_VALID, false},
    {"depthwise 5x5 same strides 2x1, 17 channels", 1, 6, 4, 17, 5, 5, 17, 17, 2, 1, 1, 1, KILN_PADDING_SAME, true},
    {"depthwise 3x3 dilation 2 same, 16 channels", 1, 6, 6, 16, 3, 3, 16, 16, 1, 1, 2, 2, KILN_PADDING_SAME, true},
    {"depthwise 3x3 multiplier 3 same, 8 -> 24 channels", 1, 5, 5, 8, 3, 3, 24, 8, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"groups 2 of 8 -> 8 channels, 3x3 same stride 2", 1, 4, 4, 16, 3, 3, 16, 2, 2, 2, 1, 1, KILN_PADDING_SAME, true},
};
#define N_GCONV (sizeof gconv_cfgs / sizeof gconv_cfgs[0])
static size_t gconv_index[N_GCONV];

ParameterizedTestParameters(grouped_conv2d, oracle_and_gradients) {
    for (size_t k = 0; k < N_GCONV; k++) gconv_index[k] = k;
    return cr_make_param_array(size_t, gconv_index, N_GCONV);
}

/* row ix on a CPU backend opened with KILN_CPU_CONV=impl; with oneDNN built in, "onednn" must
 * have run the row's three convolutions through it (not declined them to the direct loops) */
static void gconv_on(size_t ix, const char *impl) {
    setenv("KILN_CPU_CONV", impl, 1);
    kiln_backend *be;
    OK(kiln_backend_init("cpu", &be));
    unsetenv("KILN_CPU_CONV");
    /* 1e-6 of the output's scale (docs/testing.md) */
    kt_conv_oracle_check(&gconv_cfgs[ix], be, 300 + ix, 1e-6, "grouped conv2d");
    int want = kiln_cpu_dnnl_built() && !strcmp(impl, "onednn") ? 3 : 0;
    cr_expect_eq(kiln_cpu_dnnl_cached(be->ctx), want, "%s: %d oneDNN primitives, %d expected", gconv_cfgs[ix].name,
                 kiln_cpu_dnnl_cached(be->ctx), want);
    kiln_backend_free(be);
}

/* oneDNN's grouped convolution (in a build without it, the direct loops) */
ParameterizedTest(size_t *ix, grouped_conv2d, oracle_and_gradients) { gconv_on(*ix, "onednn"); }

ParameterizedTestParameters(grouped_conv2d, direct_loops_oracle_and_gradients) {
    for (size_t k = 0; k < N_GCONV; k++) gconv_index[k] = k;
    return cr_make_param_array(size_t, gconv_index, N_GCONV);
}

/* the same rows on conv_grouped.c's direct loops (the path of a build without oneDNN) */
ParameterizedTest(size_t *ix, grouped_conv2d, direct_loops_oracle_and_gradients) { gconv_on(*ix, "im2col"); }

/* groups = 1 given as 1 and as 0 (KILN_CONV2D_DEFAULTS' old zero): the ungrouped path, the same bits */
Test(grouped_conv2d, groups_one_and_zero_are_plain_conv) {
    int64_t xs[4] = {2, 5, 5, 3}, ws[4] = {3, 3, 3, 4}, ys[4] = {2, 5, 5, 4};
    kt_rng rng;
    kt_rng_seed(&rng, 17);
    kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1), *w = kt_rand_f32(&rng, 4, ws, -1, 1);
    kiln_tensor *y0 = kt_poisoned_f32(4, ys), *y1 = kt_poisoned_f32(4, ys);
    kiln_conv2d_params p = KILN_CONV2D_DEFAULTS;
    p.padding = KILN_PADDING_SAME;
    OK(kiln_conv2d(x, w, NULL, &p, y1));
    p.groups = 0;
    OK(kiln_conv2d(x, w, NULL, &p, y0));
    float *a = kt_get_f32(y0), *b = kt_get_f32(y1);
    kt_expect_bitwise("groups 0 vs 1", a, b, sizeof(float) * 2 * 5 * 5 * 4);
    free(a); free(b);
    kiln_tensor_free(x); kiln_tensor_free(w); kiln_tensor_free(y0); kiln_tensor_free(y1);
}

Test(grouped_conv2d, argument_errors) {
    int64_t xs[4] = {1, 5, 5, 4}, ws[4] = {3, 3, 2, 6}, w3s[4] = {3, 3, 2, 5}, ys[4] = {1, 3, 3, 6};
    kiln_tensor *x = kt_poisoned_f32(4, xs), *w = kt_poisoned_f32(4, ws), *w3 = kt_poisoned_f32(4, w3s), *y = kt_poisoned_f32(4, ys);
    kiln_conv2d_params p = KILN_CONV2D_DEFAULTS;
    p.groups = 3; /* 4 channels are not 3 groups of 2 */
    cr_expect_eq(kiln_conv2d(x, w, NULL, &p, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "with 3 groups takes 6"), "%s", kiln_last_error());
    p.groups = 2; /* 5 filters do not split into 2 groups */
    int64_t y5s[4] = {1, 3, 3, 5};
    kiln_tensor *y5 = kt_poisoned_f32(4, y5s);
    cr_expect_eq(kiln_conv2d(x, w3, NULL, &p, y5), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "do not split into 2 groups"), "%s", kiln_last_error());
    p.groups = -1;
    cr_expect_eq(kiln_conv2d(x, w, NULL, &p, y), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "groups is -1"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(w); kiln_tensor_free(w3); kiln_tensor_free(y); kiln_tensor_free(y5);
}

/* ==== pad2d (ZeroPadding2D) and its crop ==== */

Test(pad2d, pads_and_crops_every_element) {
    static const int offs[][2] = {{1, 2}, {0, 0}, {3, 0}, {-1, -2}, {-2, 1}};
    static const int64_t outs[][2] = {{8, 9}, {5, 6}, {9, 6}, {3, 3}, {2, 7}};
    int64_t xs[4] = {2, 5, 6, 3};
    kt_rng rng;
    kt_rng_seed(&rng, 41);
    kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1);
    float *xv = kt_get_f32(x);
    for (int t = 0; t < 5; t++) {
        int64_t ys[4] = {2, outs[t][0], outs[t][1], 3}, n = 2 * ys[1] * ys[2] * 3;
        kiln_tensor *y = kt_poisoned_f32(4, ys);
        OK(kiln_pad2d(x, offs[t][0], offs[t][1], y));
        double *want = kt_zeros_f64(n);
        for (int64_t b = 0; b < 2; b++)
            for (int64_t i = 0; i < ys[1]; i++)
                for (int64_t j = 0; j < ys[2]; j++)
                    for (int64_t c = 0; c < 3; c++) {
                        int64_t si = i - offs[t][0], sj = j - offs[t][1];
                        bool in = si >= 0 && si < 5 && sj >= 0 && sj < 6;
                        want[((b * ys[1] + i) * ys[2] + j) * 3 + c] = in ? xv[((b * 5 + si) * 6 + sj) * 3 + c] : 0.0;
                    }
        char what[64];
        snprintf(what, sizeof what, "pad2d top %d left %d", offs[t][0], offs[t][1]);
        kt_expect_tensor_f64(what, y, want, 0.0);
        /* the backward of a padding is the crop back: dx = pad2d(dy, -top, -left), against
         * finite differences of sum(dy * pad(x)), which are dy at x's positions */
        kiln_tensor *dy = kt_rand_f32(&rng, 4, ys, -1, 1), *dx = kt_poisoned_f32(4, xs);
        OK(kiln_pad2d(dy, -offs[t][0], -offs[t][1], dx));
        float *g = kt_get_f32(dy);
        double *fd = kt_zeros_f64(kiln_tensor_numel(x));
        for (int64_t b = 0; b < 2; b++)
            for (int64_t i = 0; i < 5; i++)
                for (int64_t j = 0; j < 6; j++)
                    for (int64_t c = 0; c < 3; c++) {
                        int64_t oi = i + offs[t][0], oj = j + offs[t][1];
                        bool in = oi >= 0 && oi < ys[1] && oj >= 0 && oj < ys[2];
                        fd[((b * 5 + i) * 6 + j) * 3 + c] = in ? g[((b * ys[1] + oi) * ys[2] + oj) * 3 + c] : 0.0;
                    }
        snprintf(what, sizeof what, "pad2d top %d left %d: dx", offs[t][0], offs[t][1]);
        kt_expect_tensor_f64(what, dx, fd, 0.0);
        free(g); free(fd); free(want);
        kiln_tensor_free(y); kiln_tensor_free(dy); kiln_tensor_free(dx);
    }
    free(xv);
    kiln_tensor_free(x);
}

Test(pad2d, argument_errors) {
    int64_t xs[4] = {2, 5, 6, 3}, ys[4] = {2, 7, 8, 4}, zs[4] = {3, 7, 8, 3};
    kiln_tensor *x = kt_poisoned_f32(4, xs), *y = kt_poisoned_f32(4, ys), *z = kt_poisoned_f32(4, zs);
    cr_expect_eq(kiln_pad2d(x, 1, 1, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_pad2d") && strstr(kiln_last_error(), "batch or channels"), "%s",
              kiln_last_error());
    cr_expect_eq(kiln_pad2d(x, 1, 1, z), KILN_ERR_SHAPE);
    cr_expect_eq(kiln_pad2d(x, 1 << 21, 1, y), KILN_ERR_SHAPE); /* shapes first */
    int64_t okv[4] = {2, 7, 8, 3};
    kiln_tensor *ok = kt_poisoned_f32(4, okv);
    cr_expect_eq(kiln_pad2d(x, 1 << 21, 1, ok), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_pad2d(NULL, 1, 1, ok), KILN_ERR_INVALID_ARG);
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(z); kiln_tensor_free(ok);
}

/* ==== upsample2d (UpSampling2D, nearest) ==== */

typedef struct up_ref {
    int64_t n, h, w, c, sh, sw;
    double *x, *dy, *y;
} up_ref;

static void up_ref_forward(const up_ref *r) {
    for (int64_t b = 0; b < r->n; b++)
        for (int64_t i = 0; i < r->h * r->sh; i++)
            for (int64_t j = 0; j < r->w * r->sw; j++)
                for (int64_t c = 0; c < r->c; c++)
                    r->y[((b * r->h * r->sh + i) * r->w * r->sw + j) * r->c + c] =
                        r->x[((b * r->h + i / r->sh) * r->w + j / r->sw) * r->c + c];
}

static double up_ref_loss(void *ctx) {
    up_ref *r = ctx;
    up_ref_forward(r);
    return kt_dot_f64(r->y, r->dy, r->n * r->h * r->sh * r->w * r->sw * r->c);
}

Test(upsample2d, oracle_and_gradient) {
    static const int sizes[][2] = {{2, 2}, {1, 3}, {3, 2}};
    for (int t = 0; t < 3; t++) {
        up_ref r = {.n = 2, .h = 3, .w = 4, .c = 3, .sh = sizes[t][0], .sw = sizes[t][1]};
        int64_t xs[4] = {r.n, r.h, r.w, r.c}, ys[4] = {r.n, r.h * r.sh, r.w * r.sw, r.c};
        kt_rng rng;
        kt_rng_seed(&rng, 50 + t);
        kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1), *dy = kt_rand_f32(&rng, 4, ys, -1, 1);
        kiln_tensor *y = kt_poisoned_f32(4, ys), *dx = kt_poisoned_f32(4, xs);
        r.x = kt_to_f64(x);
        r.dy = kt_to_f64(dy);
        r.y = kt_zeros_f64(kiln_tensor_numel(y));
        char what[64];
        OK(kiln_upsample2d(x, r.sh, r.sw, y));
        up_ref_forward(&r);
        snprintf(what, sizeof what, "upsample2d %dx%d: y", sizes[t][0], sizes[t][1]);
        kt_expect_tensor_f64(what, y, r.y, 0.0); /* copies: exact */
        OK(kiln_upsample2d_backward(dy, r.sh, r.sw, dx));
        double *want = kt_zeros_f64(kiln_tensor_numel(x));
        kt_fd_grad(up_ref_loss, &r, r.x, kiln_tensor_numel(x), 1e-3, want);
        snprintf(what, sizeof what, "upsample2d %dx%d: dx", sizes[t][0], sizes[t][1]);
        kt_expect_tensor_f64(what, dx, want, 1e-6); /* f32 sums of <= 6 terms */
        free(want); free(r.x); free(r.dy); free(r.y);
        kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
    }
}

/* TensorFlow's half-pixel bilinear resize, in double */
static void bilinear_axis(int64_t out, int64_t in, int64_t s, int64_t *lo, int64_t *hi, double *frac) {
    double src = ((double)out + 0.5) / (double)s - 0.5, f = floor(src);
    *lo = f > 0 ? (int64_t)f : 0;
    *hi = (int64_t)ceil(src) < in - 1 ? (int64_t)ceil(src) : in - 1;
    *frac = src - f;
}

static void bilinear_ref_forward(const up_ref *r) {
    int64_t oh = r->h * r->sh, ow = r->w * r->sw;
    for (int64_t b = 0; b < r->n; b++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t c = 0; c < r->c; c++) {
                    int64_t y0, y1, x0, x1;
                    double fy, fx;
                    bilinear_axis(i, r->h, r->sh, &y0, &y1, &fy);
                    bilinear_axis(j, r->w, r->sw, &x0, &x1, &fx);
#define X(yy, xx) r->x[((b * r->h + (yy)) * r->w + (xx)) * r->c + c]
                    double top = X(y0, x0) + (X(y0, x1) - X(y0, x0)) * fx;
                    double bottom = X(y1, x0) + (X(y1, x1) - X(y1, x0)) * fx;
#undef X
                    r->y[((b * oh + i) * ow + j) * r->c + c] = top + (bottom - top) * fy;
                }
}

static double bilinear_ref_loss(void *ctx) {
    up_ref *r = ctx;
    bilinear_ref_forward(r);
    return kt_dot_f64(r->y, r->dy, r->n * r->h * r->sh * r->w * r->sw * r->c);
}

Test(upsample2d, bilinear_oracle_and_gradient) {
    static const int sizes[][2] = {{2, 2}, {1, 3}, {3, 2}, {4, 1}};
    for (int t = 0; t < 4; t++) {
        up_ref r = {.n = 2, .h = 3, .w = 4, .c = 3, .sh = sizes[t][0], .sw = sizes[t][1]};
        int64_t xs[4] = {r.n, r.h, r.w, r.c}, ys[4] = {r.n, r.h * r.sh, r.w * r.sw, r.c};
        kt_rng rng;
        kt_rng_seed(&rng, 70 + t);
        kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1), *dy = kt_rand_f32(&rng, 4, ys, -1, 1);
        kiln_tensor *y = kt_poisoned_f32(4, ys), *dx = kt_poisoned_f32(4, xs);
        r.x = kt_to_f64(x);
        r.dy = kt_to_f64(dy);
        r.y = kt_zeros_f64(kiln_tensor_numel(y));
        char what[64];
        OK(kiln_upsample2d_bilinear(x, r.sh, r.sw, y));
        bilinear_ref_forward(&r);
        snprintf(what, sizeof what, "bilinear %dx%d: y", sizes[t][0], sizes[t][1]);
        kt_expect_tensor_f64(what, y, r.y, 1e-6); /* three f32 lerps, the f32 scale 1 / s */
        OK(kiln_upsample2d_bilinear_backward(dy, r.sh, r.sw, dx));
        double *want = kt_zeros_f64(kiln_tensor_numel(x));
        kt_fd_grad(bilinear_ref_loss, &r, r.x, kiln_tensor_numel(x), 1e-3, want);
        snprintf(what, sizeof what, "bilinear %dx%d: dx", sizes[t][0], sizes[t][1]);
        kt_expect_tensor_f64(what, dx, want, 1e-6); /* f32 sums of <= 36 weighted terms */
        free(want); free(r.x); free(r.dy); free(r.y);
        kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
    }
}

Test(upsample2d, argument_errors) {
    int64_t xs[4] = {2, 3, 4, 3}, ys[4] = {2, 6, 7, 3};
    kiln_tensor *x = kt_poisoned_f32(4, xs), *y = kt_poisoned_f32(4, ys);
    cr_expect_eq(kiln_upsample2d(x, 2, 2, y), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "is not x (2, 3, 4, 3) upsampled 2x2"), "%s", kiln_last_error());
    cr_expect_eq(kiln_upsample2d(x, 0, 2, y), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_upsample2d_backward(y, 2, 2, x), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_upsample2d_backward"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(y);
}

/* ==== global max pooling (GlobalMaxPooling2D) ==== */

/* distinct values 1/64 apart, shuffled: the max is differentiable at x */
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

typedef struct gmax_ref {
    int64_t n, hw, c;
    double *x, *dy, *y;
} gmax_ref;

static void gmax_ref_forward(const gmax_ref *r) {
    for (int64_t b = 0; b < r->n; b++)
        for (int64_t c = 0; c < r->c; c++) {
            double best = -INFINITY;
            for (int64_t p = 0; p < r->hw; p++) best = fmax(best, r->x[(b * r->hw + p) * r->c + c]);
            r->y[b * r->c + c] = best;
        }
}

static double gmax_ref_loss(void *ctx) {
    gmax_ref *r = ctx;
    gmax_ref_forward(r);
    return kt_dot_f64(r->y, r->dy, r->n * r->c);
}

Test(global_max_pool2d, oracle_and_gradient) {
    for (int keep = 0; keep < 2; keep++) {
        int64_t xs[4] = {3, 4, 5, 6}, ys2[2] = {3, 6}, ys4[4] = {3, 1, 1, 6};
        gmax_ref r = {.n = 3, .hw = 20, .c = 6};
        kt_rng rng;
        kt_rng_seed(&rng, 60 + keep);
        kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs);
        fill_distinct(x, &rng);
        kiln_tensor *dy = keep ? kt_rand_f32(&rng, 4, ys4, -1, 1) : kt_rand_f32(&rng, 2, ys2, -1, 1);
        kiln_tensor *y = keep ? kt_poisoned_f32(4, ys4) : kt_poisoned_f32(2, ys2), *dx = kt_poisoned_f32(4, xs);
        r.x = kt_to_f64(x);
        r.dy = kt_to_f64(dy);
        r.y = kt_zeros_f64(18);
        OK(kiln_global_max_pool2d(x, y));
        gmax_ref_forward(&r);
        kt_expect_tensor_f64(keep ? "global max (N, 1, 1, C): y" : "global max (N, C): y", y, r.y, 0.0);
        OK(kiln_global_max_pool2d_backward(x, dy, dx));
        double *want = kt_zeros_f64(kiln_tensor_numel(x));
        kt_fd_grad(gmax_ref_loss, &r, r.x, kiln_tensor_numel(x), 1e-4, want);
        kt_expect_tensor_f64(keep ? "global max (N, 1, 1, C): dx" : "global max (N, C): dx", dx, want, 1e-6);
        free(want); free(r.x); free(r.dy); free(r.y);
        kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(y); kiln_tensor_free(dx);
    }
}

/* ties go to the first maximal element in (h, w) order; a NaN gives NaN */
Test(global_max_pool2d, ties_and_nan) {
    int64_t xs[4] = {1, 2, 2, 2}, ys[2] = {1, 2};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *y = kt_poisoned_f32(2, ys), *dy = kt_new(kt_cpu(), KILN_F32, 2, ys);
    kiln_tensor *dx = kt_poisoned_f32(4, xs);
    const float v[8] = {1, NAN, 3, 0, 3, 2, 3, 1}; /* channel 0: 1 3 3 3; channel 1: NaN 0 2 1 */
    const float g[2] = {5, 7};
    kt_set_f32(x, v);
    kt_set_f32(dy, g);
    OK(kiln_global_max_pool2d(x, y));
    OK(kiln_global_max_pool2d_backward(x, dy, dx));
    float *gy = kt_get_f32(y), *gx = kt_get_f32(dx);
    cr_expect_eq(gy[0], 3.0f);
    cr_expect(isnan(gy[1]) && !kt_is_poison_f32(gy[1]), "max over a NaN is %g", (double)gy[1]);
    const float want[8] = {0, 7, 5, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++) cr_expect_eq(gx[i], want[i], "dx[%d] = %g, want %g", i, (double)gx[i], (double)want[i]);
    free(gy); free(gx);
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(dy); kiln_tensor_free(dx);
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
static kiln_status run_pad(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_pad2d(in[0], c->op.resize.top, c->op.resize.left, out[0]);
}
static kiln_status run_up(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_upsample2d(in[0], c->op.resize.size_h, c->op.resize.size_w, out[0]);
}
static kiln_status run_up_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_upsample2d_backward(in[0], c->op.resize.size_h, c->op.resize.size_w, out[0]);
}
static kiln_status run_bilinear(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_upsample2d_bilinear(in[0], c->op.resize.size_h, c->op.resize.size_w, out[0]);
}
static kiln_status run_bilinear_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_upsample2d_bilinear_backward(in[0], c->op.resize.size_h, c->op.resize.size_w, out[0]);
}
static kiln_status run_gmax(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_global_max_pool2d(in[0], out[0]);
}
static kiln_status run_gmax_b(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_global_max_pool2d_backward(in[0], in[1], out[0]);
}

#define F32(...) {KILN_F32, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, -1.0, 1.0}
#define KT_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define CONV(sh, sw, d, pad, g) .conv = {.stride_h = (sh), .stride_w = (sw), .dilation_h = (d), .dilation_w = (d), .padding = (pad), .groups = (g)}
#define VALID KILN_PADDING_VALID
#define SAME KILN_PADDING_SAME

static kt_case rows[] = {
    /* grouped Conv2D: cuDNN's grouped convolution (strict fp32) against the CPU's double sums:
     * f32 sums of at most 9 x 16 products in another order, 1e-5 of the output's scale */
    {"depthwise 3x3 same", run_conv, 3, 1, .in = {F32(4, 16, 16, 32), F32(3, 3, 1, 32), F32(32)}, .out = {F32(4, 16, 16, 32)}, CONV(1, 1, 1, SAME, 32), .tol = 1e-5},
    {"depthwise x2 3x3 stride 2 same (asymmetric pad)", run_conv, 3, 1, .in = {F32(2, 15, 16, 8), F32(3, 3, 1, 16), F32(16)}, .out = {F32(2, 8, 8, 16)}, CONV(2, 2, 1, SAME, 8), .tol = 1e-5},
    {"depthwise 3x3 dilation 2 valid", run_conv, 2, 1, .in = {F32(2, 12, 11, 6), F32(3, 3, 1, 6)}, .out = {F32(2, 8, 7, 6)}, CONV(1, 1, 2, VALID, 6), .tol = 1e-5},
    {"groups 4, 3x3 same", run_conv, 3, 1, .in = {F32(2, 9, 9, 16), F32(3, 3, 4, 32), F32(32)}, .out = {F32(2, 9, 9, 32)}, CONV(1, 1, 1, SAME, 4), .tol = 1e-5},
    {"depthwise backward data 3x3 same", run_conv_bd, 2, 1, .in = {F32(4, 16, 16, 32), F32(3, 3, 1, 32)}, .out = {F32(4, 16, 16, 32)}, CONV(1, 1, 1, SAME, 32), .tol = 1e-5},
    {"depthwise x2 backward data stride 2", run_conv_bd, 2, 1, .in = {F32(2, 8, 8, 16), F32(3, 3, 1, 16)}, .out = {F32(2, 15, 16, 8)}, CONV(2, 2, 1, SAME, 8), .tol = 1e-5},
    {"groups 4 backward data", run_conv_bd, 2, 1, .in = {F32(2, 9, 9, 32), F32(3, 3, 4, 32)}, .out = {F32(2, 9, 9, 16)}, CONV(1, 1, 1, SAME, 4), .tol = 1e-5},
    {"depthwise backward filter 3x3 same", run_conv_bf, 2, 2, .in = {F32(4, 16, 16, 32), F32(4, 16, 16, 32)}, .out = {F32(3, 3, 1, 32), F32(32)}, CONV(1, 1, 1, SAME, 32), .tol = 1e-5},
    {"depthwise x2 backward filter stride 2", run_conv_bf, 2, 2, .in = {F32(2, 15, 16, 8), F32(2, 8, 8, 16)}, .out = {F32(3, 3, 1, 16), F32(16)}, CONV(2, 2, 1, SAME, 8), .tol = 1e-5},
    {"groups 4 backward filter", run_conv_bf, 2, 1, .in = {F32(2, 9, 9, 16), F32(2, 9, 9, 32)}, .out = {F32(3, 3, 4, 32)}, CONV(1, 1, 1, SAME, 4), .tol = 1e-5},
    /* copies: exact */
    {"pad2d", run_pad, 1, 1, .in = {F32(2, 7, 9, 5)}, .out = {F32(2, 10, 10, 5)}, .op.resize = {.top = 1, .left = 0}, .tol = 0},
    {"pad2d crop", run_pad, 1, 1, .in = {F32(2, 10, 10, 5)}, .out = {F32(2, 7, 9, 5)}, .op.resize = {.top = -1, .left = -1}, .tol = 0},
    {"upsample2d 2x3", run_up, 1, 1, .in = {F32(2, 5, 4, 7)}, .out = {F32(2, 10, 12, 7)}, .op.resize = {.size_h = 2, .size_w = 3}, .tol = 0},
    /* block sums in f32 in the same order on both: exact */
    {"upsample2d backward 2x3", run_up_b, 1, 1, .in = {F32(2, 10, 12, 7)}, .out = {F32(2, 5, 4, 7)}, .op.resize = {.size_h = 2, .size_w = 3}, .tol = 0},
    /* bilinear: the same f32 operations (resize_bilinear.h, no FMA on CUDA): exact */
    {"upsample2d bilinear 2x3", run_bilinear, 1, 1, .in = {F32(2, 5, 4, 7)}, .out = {F32(2, 10, 12, 7)}, .op.resize = {.size_h = 2, .size_w = 3}, .tol = 0},
    {"upsample2d bilinear backward 3x2", run_bilinear_b, 1, 1, .in = {F32(2, 15, 8, 7)}, .out = {F32(2, 5, 4, 7)}, .op.resize = {.size_h = 3, .size_w = 2}, .tol = 0},
    /* the max-pooling kernels over one window: exact */
    {"global max pool", run_gmax, 1, 1, .in = {F32(3, 7, 6, 10)}, .out = {F32(3, 10)}, .tol = 0},
    {"global max pool keepdims backward", run_gmax_b, 2, 1, .in = {F32(3, 7, 6, 10), F32(3, 1, 1, 10)}, .out = {F32(3, 7, 6, 10)}, .tol = 0},
};

KT_PARITY_SUITE(parity_conv_family, rows)

/* NULL tensors: a status and a message naming the function, never a crash */
Test(conv_family_ops, null_arguments) {
    int64_t xs[4] = {1, 2, 2, 1}, ys[4] = {1, 4, 4, 1}, gs[2] = {1, 1};
    kiln_tensor *x = kt_poisoned_f32(4, xs), *y = kt_poisoned_f32(4, ys), *g = kt_poisoned_f32(2, gs);
    struct {
        const char *fn;
        kiln_status st;
    } calls[] = {
        {"kiln_pad2d", kiln_pad2d(NULL, 0, 0, y)},
        {"kiln_pad2d", kiln_pad2d(x, 0, 0, NULL)},
        {"kiln_upsample2d", kiln_upsample2d(NULL, 2, 2, y)},
        {"kiln_upsample2d", kiln_upsample2d(x, 2, 2, NULL)},
        {"kiln_upsample2d_backward", kiln_upsample2d_backward(NULL, 2, 2, x)},
        {"kiln_upsample2d_backward", kiln_upsample2d_backward(y, 2, 2, NULL)},
        {"kiln_global_max_pool2d", kiln_global_max_pool2d(NULL, g)},
        {"kiln_global_max_pool2d", kiln_global_max_pool2d(x, NULL)},
        {"kiln_global_max_pool2d_backward", kiln_global_max_pool2d_backward(NULL, g, x)},
        {"kiln_global_max_pool2d_backward", kiln_global_max_pool2d_backward(x, NULL, x)},
        {"kiln_global_max_pool2d_backward", kiln_global_max_pool2d_backward(x, g, NULL)},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
        cr_expect_eq(calls[i].st, KILN_ERR_INVALID_ARG, "call %zu (%s): status %d", i, calls[i].fn, calls[i].st);
    /* (an initializer list's calls run in no set order: the message of one more) */
    cr_expect_eq(kiln_upsample2d(x, 2, 2, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_upsample2d"), "%s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(y); kiln_tensor_free(g);
}
