/* test_ops_oracle.c: the CPU backend's basic ops against float64 oracles written plainly
 * here, and the ops with a backward (relu, softmax cross-entropy) against central finite
 * differences in double. Tolerances: docs/testing.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "half.h"

static kiln_tensor *rand_f32(kt_rng *r, int ndim, const int64_t *shape, double lo, double hi) {
    kiln_tensor *t = kt_new(kt_cpu(), KILN_F32, ndim, shape);
    kt_fill_random(t, r, lo, hi);
    return t;
}

static kiln_tensor *poisoned(kiln_dtype dt, int ndim, const int64_t *shape) {
    kiln_tensor *t = kt_new(kt_cpu(), dt, ndim, shape);
    kt_poison(t);
    return t;
}

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

Test(oracle, elementwise) {
    kt_rng r;
    kt_rng_seed(&r, 11);
    int64_t sh[] = {3, 4, 5, 6}, bsh[] = {5, 6};
    kiln_tensor *a = rand_f32(&r, 4, sh, -3, 3), *b = rand_f32(&r, 4, sh, -3, 3);
    kiln_tensor *bias = rand_f32(&r, 2, bsh, -1, 1), *y = poisoned(KILN_F32, 4, sh);
    float *av = kt_get_f32(a), *bv = kt_get_f32(b), *cv = kt_get_f32(bias);
    int64_t n = kiln_tensor_numel(a);
    double *want = malloc(sizeof(double) * (size_t)n);
    static const char *const names[7] = {"add", "sub", "mul", "add bias", "scale", "relu", "relu backward"};
    for (int op = 0; op < 7; op++) {
        kt_poison(y);
        switch (op) {
        case 0: OK(kiln_add(a, b, y)); for (int64_t i = 0; i < n; i++) want[i] = (double)av[i] + bv[i]; break;
        case 1: OK(kiln_sub(a, b, y)); for (int64_t i = 0; i < n; i++) want[i] = (double)av[i] - bv[i]; break;
        case 2: OK(kiln_mul(a, b, y)); for (int64_t i = 0; i < n; i++) want[i] = (double)av[i] * bv[i]; break;
        case 3: OK(kiln_add(a, bias, y)); for (int64_t i = 0; i < n; i++) want[i] = (double)av[i] + cv[i % 30]; break;
        case 4: OK(kiln_scale(a, 0.3f, y)); for (int64_t i = 0; i < n; i++) want[i] = 0.3f * (double)av[i]; break;
        case 5: OK(kiln_relu(a, y)); for (int64_t i = 0; i < n; i++) want[i] = av[i] > 0 ? av[i] : 0; break;
        case 6: OK(kiln_relu_backward(a, b, y)); for (int64_t i = 0; i < n; i++) want[i] = av[i] > 0 ? bv[i] : 0; break;
        }
        float *got = kt_get_f32(y);
        /* one fp32 rounding of an exact result: half an ulp, 2^-24 relative */
        kt_expect_close_f64(names[op], got, want, n, 1.2e-7);
        free(got);
    }
    /* axpy: y <- a x + y */
    kiln_tensor *yy = kt_clone(kt_cpu(), b);
    OK(kiln_axpy(-1.5f, a, yy));
    for (int64_t i = 0; i < n; i++) want[i] = -1.5 * av[i] + bv[i];
    float *got = kt_get_f32(yy);
    kt_expect_close_f64("axpy", got, want, n, 1.2e-7);
    free(got); free(want); free(av); free(bv); free(cv);
    kiln_tensor_free(a); kiln_tensor_free(b); kiln_tensor_free(bias); kiln_tensor_free(y); kiln_tensor_free(yy);
}

Test(oracle, relu_keeps_nan) {
    int64_t sh[] = {4};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 1, sh), *y = poisoned(KILN_F32, 1, sh);
    float v[4] = {NAN, -1.0f, 2.0f, -0.0f};
    kt_set_f32(x, v);
    OK(kiln_relu(x, y));
    float *g = kt_get_f32(y);
    cr_expect(isnan(g[0]) && g[1] == 0.0f && g[2] == 2.0f && g[3] == 0.0f);
    free(g); kiln_tensor_free(x); kiln_tensor_free(y);
}

Test(oracle, fill_and_cast) {
    int64_t sh[] = {9};
    const float src[9] = {0.5f, 1.5f, 2.5f, -2.5f, 70000.0f, -1e-8f, NAN, 255.6f, -0.4f};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 1, sh);
    kt_set_f32(x, src);
    /* integers: round half to even, saturate, NaN -> 0 */
    const int32_t want_i[9] = {0, 2, 2, -2, 70000, 0, 0, 256, 0};
    const uint8_t want_u[9] = {0, 2, 2, 0, 255, 0, 0, 255, 0};
    kiln_tensor *yi = poisoned(KILN_I32, 1, sh), *yu = poisoned(KILN_U8, 1, sh);
    kiln_tensor *yh = poisoned(KILN_F16, 1, sh), *yb = poisoned(KILN_BF16, 1, sh);
    OK(kiln_cast(x, yi)); OK(kiln_cast(x, yu)); OK(kiln_cast(x, yh)); OK(kiln_cast(x, yb));
    int32_t *gi = kt_get_bytes(yi); uint8_t *gu = kt_get_bytes(yu);
    uint16_t *gh = kt_get_bytes(yh), *gb = kt_get_bytes(yb);
    for (int i = 0; i < 9; i++) {
        cr_expect_eq(gi[i], want_i[i], "i32[%d] = %d, want %d", i, gi[i], want_i[i]);
        cr_expect_eq(gu[i], want_u[i], "u8[%d] = %d, want %d", i, gu[i], want_u[i]);
    }
    /* f16: 0.5 -> 0x3800, 1.5 -> 0x3e00, 70000 -> inf 0x7c00, -1e-8 -> -0 (below half the
     * smallest subnormal 2^-25), NaN -> NaN; bf16: 1.5 -> 0x3fc0, 255.6 -> 0x437f (255.0 is
     * 0x437f, 256 0x4380; 255.6 rounds to 256? 255.6 = 0x437f99..: rounds up to 0x4380) */
    cr_expect_eq(gh[0], 0x3800); cr_expect_eq(gh[1], 0x3e00); cr_expect_eq(gh[4], 0x7c00);
    cr_expect_eq(gh[5], 0x8000); cr_expect((gh[6] & 0x7c00) == 0x7c00 && (gh[6] & 0x3ff));
    cr_expect_eq(gb[1], 0x3fc0); cr_expect_eq(gb[7], 0x4380);
    /* round trip of every f16 bit pattern through f32 is exact */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaNs: payload may change */
        uint16_t back = kiln_f32_to_f16(kiln_f16_to_f32((uint16_t)h));
        cr_assert_eq(back, h, "f16 0x%04x -> %g -> 0x%04x", h, kiln_f16_to_f32((uint16_t)h), back);
    }
    /* f16 rounding against a double oracle on random values, subnormals included */
    kt_rng r;
    kt_rng_seed(&r, 5);
    for (int k = 0; k < 200000; k++) {
        float f = (float)(kt_uniform(&r, -1, 1) * pow(2.0, kt_uniform(&r, -26, 17)));
        double best = INFINITY;
        uint16_t h = kiln_f32_to_f16(f);
        double got = kiln_f16_to_f32(h);
        /* the neighbours of h must not be strictly closer */
        for (int d = -1; d <= 1; d += 2) {
            uint16_t nb = (uint16_t)(h + d);
            if (((nb & 0x7c00) == 0x7c00)) continue;
            double e = fabs((double)kiln_f16_to_f32(nb) - f);
            if (e < best) best = e;
        }
        if (isfinite(got)) cr_assert(fabs(got - f) <= best, "f16(%.9g) = %.9g is not nearest", f, got);
    }
    float *fill = NULL;
    kiln_tensor *z = poisoned(KILN_F32, 1, sh);
    OK(kiln_fill(z, -7.25));
    fill = kt_get_f32(z);
    for (int i = 0; i < 9; i++) cr_expect_eq(fill[i], -7.25f);
    free(fill); free(gi); free(gu); free(gh); free(gb);
    kiln_tensor_free(x); kiln_tensor_free(yi); kiln_tensor_free(yu); kiln_tensor_free(yh);
    kiln_tensor_free(yb); kiln_tensor_free(z);
}

Test(oracle, copy_strided) {
    kt_rng r;
    kt_rng_seed(&r, 3);
    int64_t sh[] = {2, 3, 4};
    kiln_tensor *x = rand_f32(&r, 3, sh, -1, 1);
    float *xv = kt_get_f32(x);
    /* view x as (2, 4, 3) by swapping the last two axes */
    kiln_tensor v = *x;
    v.shape[1] = 4; v.shape[2] = 3; v.stride[1] = 1; v.stride[2] = 4;
    int64_t osh[] = {2, 4, 3};
    kiln_tensor *y = poisoned(KILN_F32, 3, osh);
    OK(kiln_copy(&v, y));
    float *g = kt_get_f32(y);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 3; c++)
                cr_expect_eq(g[(a * 4 + b) * 3 + c], xv[(a * 3 + c) * 4 + b]);
    free(g); free(xv); kiln_tensor_free(x); kiln_tensor_free(y);
}

Test(oracle, reductions) {
    kt_rng r;
    kt_rng_seed(&r, 21);
    int64_t sh[] = {3, 5, 7, 11};
    kiln_tensor *x = rand_f32(&r, 4, sh, -1, 4);
    float *xv = kt_get_f32(x);
    for (unsigned axes = 1; axes < 16; axes++) {
        int64_t kept[4], nk = 1;
        for (int d = 0; d < 4; d++) { kept[d] = (axes >> d & 1u) ? 1 : sh[d]; nk *= kept[d]; }
        double *want = calloc((size_t)nk, sizeof *want);
        double cnt = (double)(3 * 5 * 7 * 11) / (double)nk;
        for (int i = 0; i < 3; i++) for (int j = 0; j < 5; j++) for (int k = 0; k < 7; k++) for (int l = 0; l < 11; l++) {
            int idx[4] = {i, j, k, l};
            int64_t o = 0;
            for (int d = 0; d < 4; d++) o = o * kept[d] + (kept[d] == 1 ? 0 : idx[d]);
            want[o] += xv[((i * 5 + j) * 7 + k) * 11 + l];
        }
        kiln_tensor *s = poisoned(KILN_F32, 4, kept), *m = poisoned(KILN_F32, 4, kept);
        OK(kiln_sum(x, axes, s));
        OK(kiln_mean(x, axes, m));
        float *gs = kt_get_f32(s), *gm = kt_get_f32(m);
        /* double accumulation, one final rounding: 2^-24 of the scale */
        char what[64];
        snprintf(what, sizeof what, "sum over mask 0x%x", axes);
        kt_expect_close_f64(what, gs, want, nk, 1.2e-7);
        for (int64_t o = 0; o < nk; o++) want[o] /= cnt;
        snprintf(what, sizeof what, "mean over mask 0x%x", axes);
        kt_expect_close_f64(what, gm, want, nk, 1.2e-7);
        free(gs); free(gm); free(want); kiln_tensor_free(s); kiln_tensor_free(m);
    }
    free(xv); kiln_tensor_free(x);
}

Test(oracle, gemm_all_transposes) {
    kt_rng r;
    kt_rng_seed(&r, 31);
    const int M = 13, N = 9, K = 21;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t ash[] = {ta ? K : M, ta ? M : K}, bsh[] = {tb ? N : K, tb ? K : N}, csh[] = {M, N};
            kiln_tensor *a = rand_f32(&r, 2, ash, -1, 1), *b = rand_f32(&r, 2, bsh, -1, 1);
            kiln_tensor *c = rand_f32(&r, 2, csh, -1, 1);
            float *av = kt_get_f32(a), *bv = kt_get_f32(b), *cv = kt_get_f32(c);
            double want[13 * 9];
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? av[k * M + i] : av[i * K + k]) * (tb ? bv[j * K + k] : bv[k * N + j]);
                    want[i * N + j] = 0.5 * s + 0.25 * cv[i * N + j];
                }
            OK(kiln_gemm(a, ta, b, tb, 0.5f, 0.25f, c, KILN_MATH_STRICT));
            float *g = kt_get_f32(c);
            /* fp32 dot products of length 21: error a few ulps of the sum of |terms| */
            kt_expect_close_f64(ta ? (tb ? "gemm TT" : "gemm TN") : (tb ? "gemm NT" : "gemm NN"), g, want, M * N, 1e-6);
            free(g); free(av); free(bv); free(cv);
            kiln_tensor_free(a); kiln_tensor_free(b); kiln_tensor_free(c);
        }
}

Test(oracle, gemm_beta_zero_ignores_nan) {
    kt_rng r;
    kt_rng_seed(&r, 32);
    int64_t sh[] = {4, 4};
    kiln_tensor *a = rand_f32(&r, 2, sh, -1, 1), *c = poisoned(KILN_F32, 2, sh);
    OK(kiln_gemm(a, false, a, true, 1.0f, 0.0f, c, KILN_MATH_STRICT));
    float *g = kt_get_f32(c);
    for (int i = 0; i < 16; i++) cr_expect(isfinite(g[i]), "C[%d] = %g", i, g[i]);
    free(g); kiln_tensor_free(a); kiln_tensor_free(c);
}

/* double oracle: per-row loss and probabilities */
static double xent_row(const double *x, int k, int label, double *p) {
    double m = x[0];
    for (int j = 1; j < k; j++) m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int j = 0; j < k; j++) s += exp(x[j] - m);
    if (p) for (int j = 0; j < k; j++) p[j] = exp(x[j] - m) / s;
    return m + log(s) - x[label];
}

Test(oracle, softmax_xent_and_backward) {
    kt_rng r;
    kt_rng_seed(&r, 41);
    enum { B = 16, K = 10 };
    int64_t sh[] = {B, K}, lsh[] = {B};
    /* large logits: a naive exp would overflow; log-sum-exp must not */
    kiln_tensor *x = rand_f32(&r, 2, sh, -90, 90);
    kiln_tensor *lab = kt_new(kt_cpu(), KILN_I32, 1, lsh);
    kt_fill_random(lab, &r, 0, K);
    kiln_tensor *p = poisoned(KILN_F32, 2, sh), *loss = poisoned(KILN_F32, 1, lsh);
    kiln_tensor *sm = poisoned(KILN_F32, 2, sh), *dx = poisoned(KILN_F32, 2, sh);
    OK(kiln_softmax_xent(x, lab, p, loss));
    OK(kiln_softmax(x, sm));
    OK(kiln_softmax_xent_backward(p, lab, 1.0f / B, dx));
    float *xv = kt_get_f32(x), *pv = kt_get_f32(p), *lv = kt_get_f32(loss), *smv = kt_get_f32(sm), *dv = kt_get_f32(dx);
    int32_t *lb = kt_get_bytes(lab);
    double wp[B * K], wl[B], grad[B * K];
    for (int b = 0; b < B; b++) {
        double row[K];
        for (int j = 0; j < K; j++) row[j] = xv[b * K + j];
        wl[b] = xent_row(row, K, lb[b], wp + b * K);
        /* central differences of the mean loss, in double */
        for (int j = 0; j < K; j++) {
            double h = 1e-4, save = row[j];
            row[j] = save + h; double up = xent_row(row, K, lb[b], NULL);
            row[j] = save - h; double dn = xent_row(row, K, lb[b], NULL);
            row[j] = save;
            grad[b * K + j] = (up - dn) / (2 * h) / B;
        }
    }
    kt_expect_close_f64("softmax_xent probs", pv, wp, B * K, 1e-6);
    kt_expect_close_f64("softmax", smv, wp, B * K, 1e-6);
    kt_expect_close_f64("softmax_xent loss", lv, wl, B, 1e-6);
    /* finite differences with h = 1e-4 on curvature <= 1/4: truncation ~1e-9, plus the
     * fp32 rounding of the probabilities (1e-7): 1e-5 of the gradient's scale */
    kt_expect_close_f64("softmax_xent backward vs finite differences", dv, grad, B * K, 1e-5);
    free(xv); free(pv); free(lv); free(smv); free(dv); free(lb);
    kiln_tensor_free(x); kiln_tensor_free(lab); kiln_tensor_free(p); kiln_tensor_free(loss);
    kiln_tensor_free(sm); kiln_tensor_free(dx);
}

Test(oracle, relu_backward_vs_finite_differences) {
    kt_rng r;
    kt_rng_seed(&r, 51);
    int64_t sh[] = {257};
    kiln_tensor *x = rand_f32(&r, 1, sh, -1, 1), *dy = rand_f32(&r, 1, sh, -1, 1);
    kiln_tensor *dx = poisoned(KILN_F32, 1, sh);
    OK(kiln_relu_backward(x, dy, dx));
    float *xv = kt_get_f32(x), *dyv = kt_get_f32(dy), *g = kt_get_f32(dx);
    double want[257];
    for (int i = 0; i < 257; i++) {
        double h = 1e-6, up = xv[i] + h, dn = xv[i] - h; /* L = sum dy * relu(x) */
        if (fabs(xv[i]) < 2 * h) cr_assert_fail("x too close to the kink; change the seed");
        want[i] = dyv[i] * ((up > 0 ? up : 0) - (dn > 0 ? dn : 0)) / (2 * h);
    }
    kt_expect_close_f64("relu backward vs finite differences", g, want, 257, 1e-7);
    free(xv); free(dyv); free(g);
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(dx);
}

Test(oracle, argmax_and_accuracy) {
    int64_t sh[] = {4, 3}, lsh[] = {4}, one[] = {1};
    const float v[12] = {1, 3, 3, /* tie: first */ 5, 2, 1, -1, -1, -1, 0, 0, 9};
    const int32_t labels[4] = {1, 0, 2, 2};
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 2, sh), *lab = kt_new(kt_cpu(), KILN_I32, 1, lsh);
    kt_set_f32(x, v);
    OK(kiln_tensor_set(lab, labels, sizeof labels));
    kiln_tensor *idx = poisoned(KILN_I32, 1, lsh), *acc = poisoned(KILN_F32, 1, one);
    OK(kiln_argmax(x, idx));
    OK(kiln_accuracy(x, lab, acc));
    int32_t *g = kt_get_bytes(idx);
    float *a = kt_get_f32(acc);
    cr_expect(g[0] == 1 && g[1] == 0 && g[2] == 0 && g[3] == 2, "argmax %d %d %d %d", g[0], g[1], g[2], g[3]);
    cr_expect_eq(a[0], 3.0f, "accuracy count %g, want 3", a[0]);
    free(g); free(a);
    kiln_tensor_free(x); kiln_tensor_free(lab); kiln_tensor_free(idx); kiln_tensor_free(acc);
}
