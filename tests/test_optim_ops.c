/* test_optim_ops.c: the fused optimizer updates and global-norm clipping of
 * include/kiln/optim_ops.h: hand-computed Keras values for a few steps, a float64 transcription
 * of Keras 3's update_step formulas over whole tensors, argument errors, and the CPU-vs-CUDA
 * parity table (bit for bit; skipped without a GPU). Tolerances: docs/testing.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static kiln_tensor *vec(int64_t n) { return kt_new(kt_cpu(), KILN_F32, 1, (int64_t[]){n}); }

static kiln_tensor *vec_of(int64_t n, const float *v) {
    kiln_tensor *t = vec(n);
    kt_set_f32(t, v);
    return t;
}

static float get1(const kiln_tensor *t) {
    float v;
    OK(kiln_tensor_get(t, &v, sizeof v));
    return v;
}

/* ---- hand-computed Keras values (keras/src/optimizers/{adam,sgd}.py, in Python floats) ---- */

/* Adam, defaults, w0 = 1, gradients 0.5, -0.25, 0.125:
 *  t=1: alpha = 1e-3 sqrt(1 - 0.999) / (1 - 0.9) = 3.16227766e-4; m = 0.05, v = 2.5e-4
 *       w = 1 - 0.05 alpha / (sqrt(2.5e-4) + 1e-7) = 0.9990000063245154
 *  t=2: m = 0.02, v = 3.1225e-4,      w = 0.9987336707920792
 *  t=3: m = 0.0305, v = 3.2756275e-4, w = 0.9983932435248193 */
Test(adam, hand_computed_keras_steps) {
    kiln_adam_params p = KILN_ADAM_DEFAULTS;
    float one = 1.0f, zero = 0.0f;
    kiln_tensor *w = vec_of(1, &one), *m = vec_of(1, &zero), *v = vec_of(1, &zero), *g = vec(1);
    const float grads[3] = {0.5f, -0.25f, 0.125f};
    const double want_w[3] = {0.9990000063245154, 0.9987336707920792, 0.9983932435248193};
    const double want_m[3] = {0.05, 0.02, 0.0305}, want_v[3] = {2.5e-4, 3.1225e-4, 3.2756275e-4};
    for (int t = 0; t < 3; t++) {
        kt_set_f32(g, &grads[t]);
        OK(kiln_adam_update(w, g, m, v, NULL, &p, t + 1, NULL));
        /* a few f32 roundings of values near 1 (w) or of the moments themselves */
        cr_expect(fabs(get1(w) - want_w[t]) < 3e-7, "step %d: w %.9g, want %.9g", t + 1, (double)get1(w), want_w[t]);
        cr_expect(fabs(get1(m) - want_m[t]) < 1e-6 * want_m[t], "step %d: m %.9g, want %.9g", t + 1, (double)get1(m), want_m[t]);
        cr_expect(fabs(get1(v) - want_v[t]) < 1e-6 * want_v[t], "step %d: v %.9g, want %.9g", t + 1, (double)get1(v), want_v[t]);
    }
    kiln_tensor_free(w); kiln_tensor_free(m); kiln_tensor_free(v); kiln_tensor_free(g);
}

/* SGD lr 0.01 momentum 0.9, w0 = 1, gradients 0.5, -0.25, 0.125:
 *  plain momentum: w = 0.995, 0.993, 0.98995 (velocity -0.005, -0.002, -0.00305)
 *  nesterov:       w = 0.9905, 0.9912, 0.987205 */
Test(sgd, hand_computed_keras_steps) {
    const float grads[3] = {0.5f, -0.25f, 0.125f};
    const double want[2][3] = {{0.995, 0.993, 0.98995}, {0.9905, 0.9912, 0.987205}};
    const double want_u[3] = {-0.005, -0.002, -0.00305};
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        kiln_sgd_params p = {0.01, 0.9, nesterov, 0.0};
        float one = 1.0f, zero = 0.0f;
        kiln_tensor *w = vec_of(1, &one), *u = vec_of(1, &zero), *g = vec(1);
        for (int t = 0; t < 3; t++) {
            kt_set_f32(g, &grads[t]);
            OK(kiln_sgd_update(w, g, u, &p, NULL));
            cr_expect(fabs(get1(w) - want[nesterov][t]) < 3e-7, "nesterov %d step %d: w %.9g, want %.9g",
                      nesterov, t + 1, (double)get1(w), want[nesterov][t]);
            cr_expect(fabs(get1(u) - want_u[t]) < 1e-6 * fabs(want_u[t]), "step %d: velocity %.9g, want %.9g",
                      t + 1, (double)get1(u), want_u[t]);
        }
        kiln_tensor_free(w); kiln_tensor_free(u); kiln_tensor_free(g);
    }
    /* plain SGD, defaults: w = 1 - 0.01 * 0.5 = 0.995 */
    kiln_sgd_params p = KILN_SGD_DEFAULTS;
    float one = 1.0f;
    kiln_tensor *w = vec_of(1, &one), *g = vec_of(1, &grads[0]);
    OK(kiln_sgd_update(w, g, NULL, &p, NULL));
    cr_expect(fabs(get1(w) - 0.995) < 1e-7, "plain SGD: w %.9g", (double)get1(w));
    kiln_tensor_free(w); kiln_tensor_free(g);
}

/* ---- Keras 3's formulas in double over whole tensors, several steps ---- */

typedef struct adam_state { double *w, *m, *v, *vh; } adam_state;

static void keras_adam_step(adam_state *s, const double *g, int64_t n, const kiln_adam_params *p,
                            int t) {
    double lr = (float)p->learning_rate; /* Keras' learning rate is an f32 variable */
    double alpha = lr * sqrt(1 - pow(p->beta_2, t)) / (1 - pow(p->beta_1, t));
    for (int64_t i = 0; i < n; i++) {
        if (p->weight_decay != 0) s->w[i] -= s->w[i] * p->weight_decay * lr;
        s->m[i] += (g[i] - s->m[i]) * (1 - p->beta_1);
        s->v[i] += (g[i] * g[i] - s->v[i]) * (1 - p->beta_2);
        double vv = s->v[i];
        if (p->amsgrad) vv = s->vh[i] = fmax(s->vh[i], s->v[i]);
        s->w[i] -= s->m[i] * alpha / (sqrt(vv) + p->epsilon);
    }
}

static void keras_sgd_step(double *w, double *u, const double *g, int64_t n, const kiln_sgd_params *p) {
    double lr = (float)p->learning_rate;
    for (int64_t i = 0; i < n; i++) {
        if (p->weight_decay != 0) w[i] -= w[i] * p->weight_decay * lr;
        if (p->momentum == 0) {
            w[i] -= g[i] * lr;
            continue;
        }
        u[i] = u[i] * p->momentum - g[i] * lr;
        w[i] += p->nesterov ? u[i] * p->momentum - g[i] * lr : u[i];
    }
}

static double *to_f64(const kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    float *f = kt_get_f32(t);
    double *d = malloc(sizeof(double) * (size_t)n);
    cr_assert_not_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static void expect_vec(const char *what, const kiln_tensor *t, const double *want, double tol) {
    float *got = kt_get_f32(t);
    kt_expect_close_f64(what, got, want, kiln_tensor_numel(t), tol);
    free(got);
}

/* the gradient of step t: large first, then small, so v falls and amsgrad's v_hat matters */
static void draw_grad(kiln_tensor *g, kt_rng *r, int t) {
    double mag = t < 2 ? 1.0 : 0.05;
    kt_fill_random(g, r, -mag, mag);
}

Test(adam, keras_formulas_over_tensors) {
    static const struct { const char *name; kiln_adam_params p; } cfgs[] = {
        {"adam defaults", KILN_ADAM_DEFAULTS},
        {"adam lr 0.01", {0.01, 0.9, 0.999, 1e-7, 0.0, false}},
        {"amsgrad", {0.002, 0.8, 0.99, 1e-7, 0.0, true}},
        {"adamw defaults", KILN_ADAMW_DEFAULTS},
        {"adamw amsgrad big decay", {0.01, 0.9, 0.999, 1e-6, 0.1, true}},
    };
    const int64_t n = 1031;
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        const kiln_adam_params *p = &cfgs[k].p;
        kt_rng r;
        kt_rng_seed(&r, 600 + k);
        kiln_tensor *w = vec(n), *m = vec(n), *v = vec(n), *g = vec(n);
        kiln_tensor *vh = p->amsgrad ? vec(n) : NULL;
        kt_fill_random(w, &r, -1, 1);
        OK(kiln_fill(m, 0));
        OK(kiln_fill(v, 0));
        if (vh) OK(kiln_fill(vh, 0));
        adam_state s = {to_f64(w), calloc((size_t)n, 8), calloc((size_t)n, 8), calloc((size_t)n, 8)};
        for (int t = 1; t <= 5; t++) {
            draw_grad(g, &r, t);
            double *gd = to_f64(g);
            OK(kiln_adam_update(w, g, m, v, vh, p, t, NULL));
            keras_adam_step(&s, gd, n, p, t);
            free(gd);
        }
        char what[128];
        /* f32 against double: a few roundings per step on every value, five steps */
        snprintf(what, sizeof what, "%s: w", cfgs[k].name);
        expect_vec(what, w, s.w, 1e-6);
        snprintf(what, sizeof what, "%s: m", cfgs[k].name);
        expect_vec(what, m, s.m, 2e-6);
        snprintf(what, sizeof what, "%s: v", cfgs[k].name);
        expect_vec(what, v, s.v, 2e-6);
        if (vh) {
            snprintf(what, sizeof what, "%s: v_hat", cfgs[k].name);
            expect_vec(what, vh, s.vh, 2e-6);
        }
        free(s.w); free(s.m); free(s.v); free(s.vh);
        kiln_tensor_free(w); kiln_tensor_free(m); kiln_tensor_free(v); kiln_tensor_free(g);
        kiln_tensor_free(vh);
    }
}

Test(sgd, keras_formulas_over_tensors) {
    static const struct { const char *name; kiln_sgd_params p; } cfgs[] = {
        {"sgd defaults", KILN_SGD_DEFAULTS},
        {"momentum 0.9", {0.05, 0.9, false, 0.0}},
        {"nesterov 0.95", {0.01, 0.95, true, 0.0}},
        {"momentum + weight decay", {0.1, 0.5, false, 0.01}},
        {"plain + weight decay", {0.1, 0.0, false, 0.05}},
    };
    const int64_t n = 1031;
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        const kiln_sgd_params *p = &cfgs[k].p;
        kt_rng r;
        kt_rng_seed(&r, 700 + k);
        kiln_tensor *w = vec(n), *u = vec(n), *g = vec(n);
        kt_fill_random(w, &r, -1, 1);
        OK(kiln_fill(u, 0));
        double *wd = to_f64(w), *ud = calloc((size_t)n, 8);
        for (int t = 1; t <= 5; t++) {
            draw_grad(g, &r, t);
            double *gd = to_f64(g);
            OK(kiln_sgd_update(w, g, p->momentum != 0 ? u : NULL, p, NULL));
            keras_sgd_step(wd, ud, gd, n, p);
            free(gd);
        }
        char what[128];
        snprintf(what, sizeof what, "%s: w", cfgs[k].name);
        expect_vec(what, w, wd, 1e-6);
        if (p->momentum != 0) {
            snprintf(what, sizeof what, "%s: velocity", cfgs[k].name);
            expect_vec(what, u, ud, 2e-6);
        }
        free(wd); free(ud);
        kiln_tensor_free(w); kiln_tensor_free(u); kiln_tensor_free(g);
    }
}

/* grad_scale multiplies g first: with a power of two the product is exact, so the update must
 * equal, bit for bit, the update on the pre-scaled gradient. */
Test(adam, grad_scale_is_applied_first) {
    kt_rng r;
    kt_rng_seed(&r, 800);
    const int64_t n = 257;
    kiln_adam_params p = KILN_ADAMW_DEFAULTS;
    kiln_tensor *w1 = vec(n), *g = vec(n), *gs = vec(n), *m1 = vec(n), *v1 = vec(n);
    kt_fill_random(w1, &r, -1, 1);
    kt_fill_random(g, &r, -1, 1);
    kiln_tensor *w2 = kt_clone(kt_cpu(), w1), *m2 = vec(n), *v2 = vec(n);
    float quarter = 0.25f;
    kiln_tensor *scale = vec_of(1, &quarter);
    OK(kiln_scale(g, 0.25f, gs));
    OK(kiln_fill(m1, 0)); OK(kiln_fill(v1, 0)); OK(kiln_fill(m2, 0)); OK(kiln_fill(v2, 0));
    OK(kiln_adam_update(w1, g, m1, v1, NULL, &p, 1, scale));
    OK(kiln_adam_update(w2, gs, m2, v2, NULL, &p, 1, NULL));
    float *a = kt_get_f32(w1), *b = kt_get_f32(w2);
    kt_expect_bitwise("adam with grad_scale vs pre-scaled gradient", a, b, sizeof(float) * (size_t)n);
    free(a); free(b);
    kiln_sgd_params q = {0.1, 0.9, true, 0.0};
    OK(kiln_fill(m1, 0)); OK(kiln_fill(m2, 0));
    OK(kiln_sgd_update(w1, g, m1, &q, scale));
    OK(kiln_sgd_update(w2, gs, m2, &q, NULL));
    a = kt_get_f32(w1); b = kt_get_f32(w2);
    kt_expect_bitwise("sgd with grad_scale vs pre-scaled gradient", a, b, sizeof(float) * (size_t)n);
    free(a); free(b);
    kiln_tensor *ts[] = {w1, g, gs, m1, v1, w2, m2, v2, scale};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) kiln_tensor_free(ts[k]);
}

/* ---- parameter groups ---- */

/* A group of 37 tensors (two launches on CUDA: 32 + 5), one of them empty, equals 37 single
 * updates bit for bit, for Adam with amsgrad and weight decay and for Nesterov SGD. */
Test(group, equals_single_updates) {
    enum { N = 37 };
    kt_rng r;
    kt_rng_seed(&r, 1000);
    kiln_tensor *w[2][N], *m[2][N], *v[2][N], *vh[2][N], *g[N];
    for (int k = 0; k < N; k++) {
        int64_t n = k == 5 ? 0 : 1 + (int64_t)(kt_next(&r) % 300);
        g[k] = vec(n);
        w[0][k] = vec(n);
        if (n) {
            kt_fill_random(g[k], &r, -1, 1);
            kt_fill_random(w[0][k], &r, -1, 1);
        }
        w[1][k] = kt_clone(kt_cpu(), w[0][k]);
        for (int c = 0; c < 2; c++) {
            m[c][k] = vec(n);
            v[c][k] = vec(n);
            vh[c][k] = vec(n);
            OK(kiln_fill(m[c][k], 0));
            OK(kiln_fill(v[c][k], 0));
            OK(kiln_fill(vh[c][k], 0));
        }
    }
    float half = 0.5f;
    kiln_tensor *scale = vec_of(1, &half);
    kiln_adam_params p = {0.01, 0.9, 0.99, 1e-7, 0.01, true};
    kiln_sgd_params q = {0.05, 0.9, true, 0.001};
    for (int t = 1; t <= 2; t++) {
        OK(kiln_adam_update_group(w[0], (const kiln_tensor *const *)g, m[0], v[0], vh[0], N, &p, t, scale));
        for (int k = 0; k < N; k++) OK(kiln_adam_update(w[1][k], g[k], m[1][k], v[1][k], vh[1][k], &p, t, scale));
    }
    OK(kiln_sgd_update_group(w[0], (const kiln_tensor *const *)g, m[0], N, &q, NULL));
    for (int k = 0; k < N; k++) OK(kiln_sgd_update(w[1][k], g[k], m[1][k], &q, NULL));
    for (int k = 0; k < N; k++) {
        kiln_tensor *pairs[4][2] = {{w[0][k], w[1][k]}, {m[0][k], m[1][k]}, {v[0][k], v[1][k]}, {vh[0][k], vh[1][k]}};
        for (int j = 0; j < 4; j++) {
            float *a = kt_get_f32(pairs[j][0]), *b = kt_get_f32(pairs[j][1]);
            char what[64];
            snprintf(what, sizeof what, "group tensor %d slot %d", k, j);
            kt_expect_bitwise(what, a, b, kiln_tensor_nbytes(pairs[j][0]));
            free(a);
            free(b);
        }
    }
    /* a member's error names its index */
    kiln_tensor *odd = vec(kiln_tensor_numel(w[0][1]) + 1);
    kiln_tensor *ws[2] = {w[0][0], w[0][1]}, *us[2] = {m[0][0], odd};
    const kiln_tensor *gs2[2] = {g[0], g[1]};
    cr_expect_eq(kiln_sgd_update_group(ws, gs2, us, 2, &q, NULL), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "kiln_sgd_update_group (tensor 1)"), "%s", kiln_last_error());
    kiln_tensor_free(odd);
    kiln_tensor_free(scale);
    for (int k = 0; k < N; k++) {
        kiln_tensor_free(g[k]);
        for (int c = 0; c < 2; c++) {
            kiln_tensor_free(w[c][k]); kiln_tensor_free(m[c][k]); kiln_tensor_free(v[c][k]); kiln_tensor_free(vh[c][k]);
        }
    }
}

/* ---- global-norm clipping ---- */

Test(clip, global_norm_scale) {
    float a[2] = {3.0f, 0.0f}, b[1] = {4.0f};
    kiln_tensor *g1 = vec_of(2, a), *g2 = vec_of(1, b), *ss = vec(1), *sc = vec(1);
    const kiln_tensor *gs[2] = {g1, g2};
    /* norm 5: clip 1 -> 1 * min(1/5, 1/1) = 0.2; clip 10 -> 10 * min(0.2, 0.1) = 1 */
    OK(kiln_global_norm_clip_scale(gs, 2, 1.0f, ss, sc));
    cr_expect_eq(get1(ss), 25.0f, "sum of squares %g", (double)get1(ss));
    float want = 1.0f * (1.0f / 5.0f);
    cr_expect_eq(get1(sc), want, "clip 1: scale %.9g, want %.9g", (double)get1(sc), (double)want);
    OK(kiln_global_norm_clip_scale(gs, 2, 10.0f, ss, sc));
    want = 10.0f * (1.0f / 10.0f);
    cr_expect_eq(get1(sc), want, "clip 10: scale %.9g, want %.9g", (double)get1(sc), (double)want);
    /* a non-finite gradient makes the scale NaN (Keras: + (norm - norm)) */
    float bad[1] = {INFINITY};
    kiln_tensor *g3 = vec_of(1, bad);
    const kiln_tensor *gs3[3] = {g1, g2, g3};
    OK(kiln_global_norm_clip_scale(gs3, 3, 1.0f, ss, sc));
    cr_expect(isnan(get1(sc)), "scale with an inf gradient is %g", (double)get1(sc));
    /* random tensors: the sum of squares against double */
    kt_rng r;
    kt_rng_seed(&r, 900);
    kiln_tensor *big = vec(100003), *small = vec(17);
    kt_fill_random(big, &r, -0.01, 0.01);
    kt_fill_random(small, &r, -3, 3);
    double *bd = to_f64(big), *sd = to_f64(small), sum = 0;
    for (int i = 0; i < 100003; i++) sum += bd[i] * bd[i];
    for (int i = 0; i < 17; i++) sum += sd[i] * sd[i];
    const kiln_tensor *gs4[2] = {big, small};
    OK(kiln_global_norm_clip_scale(gs4, 2, 0.5f, ss, sc));
    /* double sums rounded to f32 once per tensor */
    cr_expect(fabs(get1(ss) - sum) <= 2.4e-7 * sum, "sum of squares %.9g, want %.9g", (double)get1(ss), sum);
    double norm = sqrt(sum), scale = 0.5 * fmin(1 / norm, 1 / 0.5);
    cr_expect(fabs(get1(sc) - scale) <= 1e-6 * scale, "scale %.9g, want %.9g", (double)get1(sc), scale);
    free(bd); free(sd);
    kiln_tensor_free(g1); kiln_tensor_free(g2); kiln_tensor_free(g3); kiln_tensor_free(ss);
    kiln_tensor_free(sc); kiln_tensor_free(big); kiln_tensor_free(small);
}

Test(optim, argument_errors) {
    kiln_tensor *w = vec(4), *g = vec(4), *m = vec(4), *v = vec(4), *bad = vec(5), *two = vec(2);
    kiln_adam_params p = KILN_ADAM_DEFAULTS;
    cr_expect_eq(kiln_adam_update(w, g, m, v, NULL, &p, 0, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_adam_update") && strstr(kiln_last_error(), "step"), "%s",
              kiln_last_error());
    cr_expect_eq(kiln_adam_update(w, bad, m, v, NULL, &p, 1, NULL), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "(4,)") && strstr(kiln_last_error(), "(5,)"), "%s", kiln_last_error());
    p.amsgrad = true;
    cr_expect_eq(kiln_adam_update(w, g, m, v, NULL, &p, 1, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "v_hat"), "%s", kiln_last_error());
    p = (kiln_adam_params)KILN_ADAM_DEFAULTS;
    p.beta_1 = 1.0;
    cr_expect_eq(kiln_adam_update(w, g, m, v, NULL, &p, 1, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "beta_1"), "%s", kiln_last_error());
    p = (kiln_adam_params)KILN_ADAM_DEFAULTS;
    cr_expect_eq(kiln_adam_update(w, g, m, v, NULL, &p, 1, two), KILN_ERR_SHAPE);
    cr_expect(strstr(kiln_last_error(), "grad_scale"), "%s", kiln_last_error());
    kiln_sgd_params q = {0.01, 0.9, false, 0.0};
    cr_expect_eq(kiln_sgd_update(w, g, NULL, &q, NULL), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "kiln_sgd_update") && strstr(kiln_last_error(), "velocity"), "%s",
              kiln_last_error());
    q.momentum = 1.5;
    cr_expect_eq(kiln_sgd_update(w, g, m, &q, NULL), KILN_ERR_INVALID_ARG);
    cr_expect_eq(kiln_clip_scale(two, 1.0f, w), KILN_ERR_SHAPE);
    cr_expect_eq(kiln_clip_scale(g, 1.0f, w), KILN_ERR_SHAPE);
    kiln_tensor *one = vec(1), *one2 = vec(1);
    cr_expect_eq(kiln_clip_scale(one, 0.0f, one2), KILN_ERR_INVALID_ARG);
    cr_expect(strstr(kiln_last_error(), "clip_norm"), "%s", kiln_last_error());
    kiln_tensor *ts[] = {w, g, m, v, bad, two, one, one2};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) kiln_tensor_free(ts[k]);
}

/* ---- CPU vs CUDA parity: the same f32 operations in the same order: exact ---- */

/* Rows: in[0] w, in[1] g, in[2] m / velocity, in[3] v, then v_hat (amsgrad), then grad_scale
 * (when .grad_scale); outputs are the updated w, m, v (, v_hat). The hyperparameters are the
 * rows' op.adam (lr, weight_decay, amsgrad; the rest Keras' defaults) and op.sgd (lr, momentum,
 * nesterov, weight_decay); Adam's step is the row's .step. */
static kiln_status copy_state(kiln_tensor *const *in, kiln_tensor *const *out, int n) {
    kiln_status s = KILN_OK;
    for (int k = 0; k < n && s == KILN_OK; k++) s = kiln_copy(in[k == 0 ? 0 : k + 1], out[k]);
    return s;
}

static kiln_status run_adam(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_adam_params p = KILN_ADAM_DEFAULTS;
    p.learning_rate = c->op.adam.lr;
    p.weight_decay = c->op.adam.weight_decay;
    p.amsgrad = c->op.adam.amsgrad;
    int slots = p.amsgrad ? 4 : 3;
    kiln_status s = copy_state(in, out, slots);
    if (s != KILN_OK) return s;
    return kiln_adam_update(out[0], in[1], out[1], out[2], p.amsgrad ? out[3] : NULL, &p, c->step,
                            c->grad_scale ? in[slots + 1] : NULL);
}

static kiln_status run_sgd(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_sgd_params p = {.learning_rate = c->op.sgd.lr, .momentum = c->op.sgd.momentum,
                         .nesterov = c->op.sgd.nesterov, .weight_decay = c->op.sgd.weight_decay};
    int slots = p.momentum != 0 ? 2 : 1;
    kiln_status s = copy_state(in, out, slots);
    if (s != KILN_OK) return s;
    return kiln_sgd_update(out[0], in[1], slots > 1 ? out[1] : NULL, &p,
                           c->grad_scale ? in[slots + 1] : NULL);
}

/* A group over views: in[0..3] (w, g, m, v) are each cut into pieces of the sizes below;
 * out[0..2] get the updated w, m, v. amsgrad is off; op.adam's lr and weight_decay; step 4. */
static const int64_t group_sizes[] = {1000, 1, 0, 517, 2048, 33};
#define GROUP_TOTAL 3599
static kiln_status run_adam_group(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    enum { K = sizeof group_sizes / sizeof group_sizes[0] };
    kiln_adam_params p = KILN_ADAM_DEFAULTS;
    p.learning_rate = c->op.adam.lr;
    p.weight_decay = c->op.adam.weight_decay;
    kiln_status s = copy_state(in, out, 3);
    kiln_tensor *w[K] = {0}, *g[K] = {0}, *m[K] = {0}, *v[K] = {0};
    int64_t off = 0;
    for (int k = 0; k < K && s == KILN_OK; k++) {
        s = kiln_tensor_view(out[0], off, 1, &group_sizes[k], &w[k]);
        if (s == KILN_OK) s = kiln_tensor_view(in[1], off, 1, &group_sizes[k], &g[k]);
        if (s == KILN_OK) s = kiln_tensor_view(out[1], off, 1, &group_sizes[k], &m[k]);
        if (s == KILN_OK) s = kiln_tensor_view(out[2], off, 1, &group_sizes[k], &v[k]);
        off += group_sizes[k];
    }
    if (s == KILN_OK) s = kiln_adam_update_group(w, (const kiln_tensor *const *)g, m, v, NULL, K, &p, 4, NULL);
    for (int k = 0; k < K; k++) {
        kiln_tensor_free(w[k]); kiln_tensor_free(g[k]); kiln_tensor_free(m[k]); kiln_tensor_free(v[k]);
    }
    return s;
}

static kiln_status run_sumsq(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    kiln_status s = kiln_fill(out[0], 0.0);
    if (s == KILN_OK) s = kiln_sum_squares_accumulate(in[0], out[0]);
    if (s != KILN_OK) return s;
    return kiln_sum_squares_accumulate(in[1], out[0]);
}

static kiln_status run_clip(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_clip_scale(in[0], c->op.clip.clip_norm, out[0]);
}

#define V(lo, hi, n) {KILN_F32, 1, {n}, lo, hi}
#define W(n) V(-1, 1, n)
#define MOM(n) V(-0.1, 0.1, n)
#define VEL(n) V(0, 0.01, n)
#define SCALE V(0.25, 1, 1)

static kt_case rows[] = {
    {"adam step 1", run_adam, 4, 3, .in = {W(4099), W(4099), MOM(4099), VEL(4099)}, .out = {W(4099), W(4099), W(4099)}, .op.adam = {.lr = 1e-3f}, .step = 1, .tol = 0},
    {"adam step 1000", run_adam, 4, 3, .in = {W(1000), W(1000), MOM(1000), VEL(1000)}, .out = {W(1000), W(1000), W(1000)}, .op.adam = {.lr = 1e-3f}, .step = 1000, .tol = 0},
    {"adam amsgrad", run_adam, 5, 4, .in = {W(3001), W(3001), MOM(3001), VEL(3001), VEL(3001)}, .out = {W(3001), W(3001), W(3001), W(3001)}, .op.adam = {.lr = 1e-2f, .amsgrad = true}, .step = 7, .tol = 0},
    {"adamw", run_adam, 4, 3, .in = {W(2049), W(2049), MOM(2049), VEL(2049)}, .out = {W(2049), W(2049), W(2049)}, .op.adam = {.lr = 1e-3f, .weight_decay = 0.004f}, .step = 3, .tol = 0},
    {"adamw amsgrad grad_scale", run_adam, 6, 4, .in = {W(2049), W(2049), MOM(2049), VEL(2049), VEL(2049), SCALE}, .out = {W(2049), W(2049), W(2049), W(2049)}, .op.adam = {.lr = 1e-3f, .weight_decay = 0.1f, .amsgrad = true}, .step = 2, .grad_scale = true, .tol = 0},
    {"sgd plain", run_sgd, 2, 1, .in = {W(5000), W(5000)}, .out = {W(5000)}, .op.sgd = {.lr = 0.01f}, .tol = 0},
    {"sgd plain weight decay grad_scale", run_sgd, 3, 1, .in = {W(5000), W(5000), SCALE}, .out = {W(5000)}, .op.sgd = {.lr = 0.01f, .weight_decay = 0.05f}, .grad_scale = true, .tol = 0},
    {"sgd momentum", run_sgd, 3, 2, .in = {W(4097), W(4097), MOM(4097)}, .out = {W(4097), W(4097)}, .op.sgd = {.lr = 0.05f, .momentum = 0.9f}, .tol = 0},
    {"sgd nesterov weight decay", run_sgd, 3, 2, .in = {W(4097), W(4097), MOM(4097)}, .out = {W(4097), W(4097)}, .op.sgd = {.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 0.01f}, .tol = 0},
    {"adamw group of 6 (views, one empty)", run_adam_group, 4, 3, .in = {W(GROUP_TOTAL), W(GROUP_TOTAL), MOM(GROUP_TOTAL), VEL(GROUP_TOTAL)}, .out = {W(GROUP_TOTAL), W(GROUP_TOTAL), W(GROUP_TOTAL)}, .op.adam = {.lr = 1e-3f, .weight_decay = 0.004f}, .tol = 0},
    /* sum of squares: double sums in different orders, rounded to f32: 1e-6 */
    {"sum of squares", run_sumsq, 2, 1, .in = {V(-0.1, 0.1, 300007), V(-5, 5, 33)}, .out = {V(0, 0, 1)}, .tol = 1e-6},
    {"clip scale", run_clip, 1, 1, .in = {V(0, 100, 1)}, .out = {V(0, 0, 1)}, .op.clip = {.clip_norm = 2.0f}, .tol = 0},
    {"clip scale below the norm", run_clip, 1, 1, .in = {V(0, 1, 1)}, .out = {V(0, 0, 1)}, .op.clip = {.clip_norm = 5.0f}, .tol = 0},
};

KT_PARITY_SUITE(parity_optim, rows)
