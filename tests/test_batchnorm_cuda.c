/* test_batchnorm_cuda.c: the CUDA batch norm beyond the parity table (test_batchnorm_parity.c):
 * kiln's kernels against cuDNN's on the same inputs, determinism (two runs, memcmp), NaN and
 * infinity against the CPU, the moving statistics against hand-computed values on CUDA (kiln's
 * kernels and the cuDNN path), misaligned tensors (the scalar path), and a forced path that
 * cannot take the shape. Every test skips, with the driver's reason, where there is no GPU.
 *
 * Tolerances: kiln vs cuDNN, f32 outputs: 1e-5 normalised error (two f32 implementations with
 * different summation orders, each ~1e-6 from the exact result); f16 outputs: within one ulp of
 * the dtype plus 1e-5 of the output's scale (two independent roundings of f32 results).
 * Hand-computed moving statistics: 2^-23 relative on kiln's path (one f32 rounding), 1e-6 on the
 * cuDNN path (its variance comes back as 1/invstd^2 - eps from a rounded invstd). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "harness.h"

/* ---- one forward (training) and backward on a backend, from host values ---- */

typedef struct bn_problem {
    int ndim;
    int64_t shape[4];
    kiln_layout layout;
    kiln_dtype dt;
    int64_t C, N;
    float *x, *dy, *gamma, *beta, *mm, *mv; /* x, dy hold values exact in dt */
} bn_problem;

typedef struct bn_result {
    float *y, *sm, *sv, *mm, *mv, *dx, *dg, *db, *yi; /* yi: the inference forward */
} bn_result;

static void problem_init(bn_problem *p, int ndim, const int64_t *shape, kiln_layout layout,
                         kiln_dtype dt, double lo, double hi, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->ndim = ndim;
    p->N = 1;
    for (int d = 0; d < ndim; d++) p->N *= (p->shape[d] = shape[d]);
    p->layout = layout;
    p->dt = dt;
    p->C = (ndim == 2 || layout == KILN_LAYOUT_NHWC) ? shape[ndim - 1] : shape[1];
    kt_rng r;
    kt_rng_seed(&r, seed);
    p->x = malloc((size_t)p->N * 4);
    p->dy = malloc((size_t)p->N * 4);
    for (int64_t i = 0; i < p->N; i++) {
        float a = (float)kt_uniform(&r, lo, hi), b = (float)kt_uniform(&r, -1, 1);
        if (dt == KILN_F16) { a = kiln_f16_to_f32(kiln_f32_to_f16(a)); b = kiln_f16_to_f32(kiln_f32_to_f16(b)); }
        if (dt == KILN_BF16) { a = kiln_bf16_to_f32(kiln_f32_to_bf16(a)); b = kiln_bf16_to_f32(kiln_f32_to_bf16(b)); }
        p->x[i] = a;
        p->dy[i] = b;
    }
    float **ch[4] = {&p->gamma, &p->beta, &p->mm, &p->mv};
    const double rng[4][2] = {{0.5, 1.5}, {-1, 1}, {-0.5, 0.5}, {0.5, 2}};
    for (int k = 0; k < 4; k++) {
        *ch[k] = malloc((size_t)p->C * 4);
        for (int64_t c = 0; c < p->C; c++) (*ch[k])[c] = (float)kt_uniform(&r, rng[k][0], rng[k][1]);
    }
}

static void problem_free(bn_problem *p) {
    free(p->x); free(p->dy); free(p->gamma); free(p->beta); free(p->mm); free(p->mv);
}

static void result_free(bn_result *o) {
    float *all[] = {o->y, o->sm, o->sv, o->mm, o->mv, o->dx, o->dg, o->db, o->yi};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) free(all[k]);
}

/* a tensor of dtype dt on be holding the f32 values v (exact in dt); `offset` elements into a
 * larger allocation when offset > 0 (a misaligned view); *base gets that allocation */
static kiln_tensor *upload(kiln_backend *be, kiln_dtype dt, int ndim, const int64_t *shape,
                           const float *v, int64_t offset, kiln_tensor **base) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    int64_t total = n + offset;
    *base = kt_new(be, dt, 1, &total);
    kiln_tensor *t = NULL;
    cr_assert_eq(kiln_tensor_view(*base, offset, ndim, shape, &t), KILN_OK, "%s", kiln_last_error());
    size_t es = kiln_dtype_size(dt);
    unsigned char *h = malloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        if (dt == KILN_F32) memcpy(h + i * 4, &v[i], 4);
        else {
            uint16_t u = dt == KILN_F16 ? kiln_f32_to_f16(v[i]) : kiln_f32_to_bf16(v[i]);
            memcpy(h + i * 2, &u, 2);
        }
    }
    cr_assert_eq(kiln_tensor_set(t, h, (size_t)n * es), KILN_OK, "%s", kiln_last_error());
    free(h);
    return t;
}

/* training forward, backward from its saved statistics, and the inference forward */
static kiln_status run_all(kiln_backend *be, const bn_problem *p, kiln_bn_params prm, int64_t offset,
                           bn_result *o) {
    kiln_tensor *bases[16] = {0}, **bp = bases;
    int64_t C = p->C;
    kiln_tensor *x = upload(be, p->dt, p->ndim, p->shape, p->x, offset, bp++);
    kiln_tensor *dy = upload(be, p->dt, p->ndim, p->shape, p->dy, offset, bp++);
    kiln_tensor *y = upload(be, p->dt, p->ndim, p->shape, p->x, offset, bp++);
    kiln_tensor *dx = upload(be, p->dt, p->ndim, p->shape, p->x, offset, bp++);
    kiln_tensor *yi = upload(be, p->dt, p->ndim, p->shape, p->x, offset, bp++);
    kiln_tensor *g = upload(be, KILN_F32, 1, &C, p->gamma, 0, bp++), *b = upload(be, KILN_F32, 1, &C, p->beta, 0, bp++);
    kiln_tensor *mm = upload(be, KILN_F32, 1, &C, p->mm, 0, bp++), *mv = upload(be, KILN_F32, 1, &C, p->mv, 0, bp++);
    kiln_tensor *sm = upload(be, KILN_F32, 1, &C, p->mm, 0, bp++), *sv = upload(be, KILN_F32, 1, &C, p->mv, 0, bp++);
    kiln_tensor *dg = upload(be, KILN_F32, 1, &C, p->mm, 0, bp++), *db = upload(be, KILN_F32, 1, &C, p->mv, 0, bp++);
    kiln_tensor *views[] = {x, dy, y, dx, yi, g, b, mm, mv, sm, sv, dg, db};
    for (int k = 2; k < 5; k++) kt_poison(views[k]);
    for (int k = 9; k < 13; k++) kt_poison(views[k]);
    prm.layout = p->layout;
    kiln_status s = kiln_batchnorm_forward_infer(x, g, b, mm, mv, &prm, yi);
    if (s == KILN_OK) s = kiln_batchnorm_forward_train(x, g, b, mm, mv, &prm, y, sm, sv);
    if (s == KILN_OK) s = kiln_batchnorm_backward(x, dy, g, sm, sv, &prm, dx, dg, db);
    if (s == KILN_OK) s = kiln_backend_synchronize(be);
    if (s == KILN_OK) {
        o->y = kt_get_f32(y); o->sm = kt_get_f32(sm); o->sv = kt_get_f32(sv); o->mm = kt_get_f32(mm);
        o->mv = kt_get_f32(mv); o->dx = kt_get_f32(dx); o->dg = kt_get_f32(dg); o->db = kt_get_f32(db);
        o->yi = kt_get_f32(yi);
    }
    for (size_t k = 0; k < sizeof views / sizeof views[0]; k++) kiln_tensor_free(views[k]);
    for (int k = 0; k < 16; k++) kiln_tensor_free(bases[k]);
    return s;
}

/* |a - b| <= ulp_dt(max(|a|, |b|)) + tol * scale for every element (two roundings) */
static void expect_within_ulp(const char *what, const float *a, const float *b, int64_t n,
                              kiln_dtype dt, double tol) {
    double scale = 1e-30;
    for (int64_t i = 0; i < n; i++) if (isfinite(b[i]) && fabs(b[i]) > scale) scale = fabs(b[i]);
    for (int64_t i = 0; i < n; i++) {
        double m = fmax(fabs(a[i]), fabs(b[i]));
        int e;
        (void)frexp(m, &e);
        int min_e = dt == KILN_F16 ? -13 : -125, bits = dt == KILN_F16 ? 10 : 7;
        double ulp = ldexp(1.0, (m == 0 || e < min_e ? min_e : e) - 1 - bits);
        if (!(fabs((double)a[i] - b[i]) <= ulp + tol * scale))
            cr_assert_fail("%s: element %lld: %.9g vs %.9g (more than one ulp of %s + %g x %g)", what,
                           (long long)i, (double)a[i], (double)b[i], kiln_dtype_name(dt), tol, scale);
    }
}

static void compare_results(const char *label, const bn_problem *p, const bn_result *a,
                            const bn_result *b, double tol) {
    char what[160];
    const float *const big_a[3] = {a->y, a->dx, a->yi}, *const big_b[3] = {b->y, b->dx, b->yi};
    const char *const big_n[3] = {"y", "dx", "inference y"};
    for (int k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "%s: %s", label, big_n[k]);
        if (p->dt == KILN_F32) kt_expect_close(what, big_a[k], big_b[k], p->N, tol);
        else expect_within_ulp(what, big_a[k], big_b[k], p->N, p->dt, tol);
    }
    const float *const ch_a[6] = {a->sm, a->sv, a->mm, a->mv, a->dg, a->db};
    const float *const ch_b[6] = {b->sm, b->sv, b->mm, b->mv, b->dg, b->db};
    const char *const ch_n[6] = {"save_mean", "save_invstd", "moving_mean", "moving_var", "dgamma", "dbeta"};
    for (int k = 0; k < 6; k++) {
        snprintf(what, sizeof what, "%s: %s", label, ch_n[k]);
        kt_expect_close(what, ch_a[k], ch_b[k], p->C, tol);
    }
}

static const char *const layout_names[3] = {"NHWC", "NCHW", "dense"};

/* (N, H, W, C) as layout kind 0 NHWC, 1 NCHW, 2 dense (N*H*W, C) */
static int make_shape(const int64_t *nhwc, int kind, int64_t *shape, kiln_layout *layout) {
    *layout = kind == 1 ? KILN_LAYOUT_NCHW : KILN_LAYOUT_NHWC;
    if (kind == 0) { memcpy(shape, nhwc, 4 * sizeof *shape); return 4; }
    if (kind == 1) { shape[0] = nhwc[0]; shape[1] = nhwc[3]; shape[2] = nhwc[1]; shape[3] = nhwc[2]; return 4; }
    shape[0] = nhwc[0] * nhwc[1] * nhwc[2];
    shape[1] = nhwc[3];
    return 2;
}

/* ---- kiln vs cuDNN ---- */

static void kiln_vs_cudnn(kiln_dtype dt) {
    kiln_backend *cuda = kt_gpu_or_skip(); /* cuDNN: not on the CUDA emulator */
    static const int64_t sizes[2][4] = {{8, 14, 14, 64}, {32, 5, 5, 40}};
    for (int si = 0; si < 2; si++)
        for (int kind = 0; kind < 3; kind++)
            for (int conv = 0; conv < 2; conv++) {
                int64_t shape[4];
                kiln_layout layout;
                int ndim = make_shape(sizes[si], kind, shape, &layout);
                bn_problem p;
                problem_init(&p, ndim, shape, layout, dt, -2, 3, 77 + si * 10 + kind);
                kiln_bn_params prm = conv ? kiln_bn_params_torch() : kiln_bn_params_keras();
                bn_result a = {0}, b = {0};
                cr_assert_eq(run_all(cuda, &p, prm, 0, &a), KILN_OK, "kiln: %s", kiln_last_error());
                prm.impl = KILN_BN_IMPL_CUDNN;
                kiln_status s = run_all(cuda, &p, prm, 0, &b);
                if (s == KILN_ERR_UNSUPPORTED) /* cuDNN's NOT_SUPPORTED_* family (common.cuh) */
                    cr_skip_test("cuDNN does not take this case: %s", kiln_last_error());
                cr_assert_eq(s, KILN_OK, "cuDNN: %s", kiln_last_error());
                char label[96];
                snprintf(label, sizeof label, "kiln vs cuDNN %s %s (%lld values/channel) %s", kiln_dtype_name(dt),
                         layout_names[kind], (long long)(p.N / p.C), conv ? "torch" : "keras");
                compare_results(label, &p, &a, &b, 1e-5);
                result_free(&a);
                result_free(&b);
                problem_free(&p);
            }
}

Test(bn_cuda, kiln_vs_cudnn_f32) { kiln_vs_cudnn(KILN_F32); }
Test(bn_cuda, kiln_vs_cudnn_f16) { kiln_vs_cudnn(KILN_F16); }
Test(bn_cuda, kiln_vs_cudnn_bf16) { kiln_vs_cudnn(KILN_BF16); }

/* ---- determinism: two runs, the same bits, on every path ---- */

static void expect_same_bits(const char *label, const bn_problem *p, const bn_result *a, const bn_result *b) {
    char what[160];
    const float *const va[9] = {a->y, a->dx, a->yi, a->sm, a->sv, a->mm, a->mv, a->dg, a->db};
    const float *const vb[9] = {b->y, b->dx, b->yi, b->sm, b->sv, b->mm, b->mv, b->dg, b->db};
    const char *const nm[9] = {"y", "dx", "inference y", "save_mean", "save_invstd", "moving_mean", "moving_var", "dgamma", "dbeta"};
    for (int k = 0; k < 9; k++) {
        snprintf(what, sizeof what, "%s: %s, run 1 vs run 2", label, nm[k]);
        kt_expect_bitwise(what, va[k], vb[k], (size_t)(k < 3 ? p->N : p->C) * sizeof(float));
    }
}

Test(bn_cuda, deterministic_every_path, .timeout = 300) {
    kiln_backend *cuda = kt_cuda_or_skip();
    static const int64_t sizes[2][4] = {{16, 14, 14, 96}, {4, 7, 7, 37}};
    static const kiln_bn_impl impls[4] = {KILN_BN_IMPL_KILN, KILN_BN_IMPL_KILN_BLOCK, KILN_BN_IMPL_KILN_GRID,
                                          KILN_BN_IMPL_KILN_MULTI};
    static const kiln_dtype dts[2] = {KILN_F32, KILN_BF16};
    for (int si = 0; si < 2; si++)
        for (int kind = 0; kind < 3; kind++)
            for (int di = 0; di < 2; di++)
                for (int ii = 0; ii < 4; ii++) {
                    int64_t shape[4];
                    kiln_layout layout;
                    int ndim = make_shape(sizes[si], kind, shape, &layout);
                    bn_problem p;
                    problem_init(&p, ndim, shape, layout, dts[di], -1, 2, 5 + si);
                    kiln_bn_params prm = kiln_bn_params_torch();
                    prm.impl = impls[ii];
                    bn_result a = {0}, b = {0};
                    cr_assert_eq(run_all(cuda, &p, prm, 0, &a), KILN_OK, "%s", kiln_last_error());
                    cr_assert_eq(run_all(cuda, &p, prm, 0, &b), KILN_OK, "%s", kiln_last_error());
                    char label[96];
                    snprintf(label, sizeof label, "%s %s impl %d", layout_names[kind], kiln_dtype_name(dts[di]), (int)impls[ii]);
                    expect_same_bits(label, &p, &a, &b);
                    result_free(&a);
                    result_free(&b);
                    problem_free(&p);
                }
}

/* ---- NaN and infinity: the CPU's answers, element for element ---- */

Test(bn_cuda, nan_inf_match_cpu) {
    kiln_backend *cuda = kt_cuda_or_skip();
    static const int64_t size[4] = {4, 6, 6, 40};
    static const kiln_bn_impl impls[3] = {KILN_BN_IMPL_KILN_BLOCK, KILN_BN_IMPL_KILN_GRID, KILN_BN_IMPL_KILN_MULTI};
    for (int kind = 0; kind < 3; kind++)
        for (int ii = 0; ii < 3; ii++) {
            int64_t shape[4];
            kiln_layout layout;
            int ndim = make_shape(size, kind, shape, &layout);
            bn_problem p;
            problem_init(&p, ndim, shape, layout, KILN_F32, -1, 1, 9);
            /* channel of flat element k */
            int64_t plane = kind == 1 ? 36 : 1;
            for (int64_t k = 0; k < p.N; k++) {
                int64_t c = (k / plane) % p.C;
                if (c == 1 && k % 7 == 0) p.x[k] = NAN;
                if (c == 2 && k % 11 == 0) p.x[k] = INFINITY;
                /* 13 is prime to C = 40 and to the plane: channel 3 gets both infinities in every
                 * layout (k % 5 never met c == 3 when channels are last) */
                if (c == 3 && k % 13 == 0) p.x[k] = (k / 520) % 2 ? INFINITY : -INFINITY;
                if (c == 0 && k % 3 == 0) p.x[k] = INFINITY; /* the first value: the shift itself */
                if (c == 4 && k % 13 == 0) p.dy[k] = NAN;
            }
            kiln_bn_params prm = kiln_bn_params_keras();
            prm.impl = impls[ii];
            bn_result a = {0}, b = {0};
            cr_assert_eq(run_all(cuda, &p, prm, 0, &a), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(run_all(kt_cpu(), &p, prm, 0, &b), KILN_OK, "%s", kiln_last_error());
            char label[96];
            snprintf(label, sizeof label, "NaN/inf %s impl %d (cuda vs cpu)", layout_names[kind], (int)impls[ii]);
            compare_results(label, &p, &a, &b, 1e-5);
            for (int64_t c = 0; c < 4; c++)
                cr_expect(isnan(a.sm[c]) && isnan(a.sv[c]) && isnan(a.mm[c]) && isnan(a.mv[c]),
                          "%s: channel %lld keeps a finite statistic", label, (long long)c);
            result_free(&a);
            result_free(&b);
            problem_free(&p);
        }
}

/* ---- the moving statistics by hand, on CUDA ---- */

/* x (3, 2): channel 0 = {1, 2, 3} (mean 2, var 2/3, unbiased 1), channel 1 = {10, 20, 60}
 * (mean 30, var 1400/3, unbiased 700); moving mean 0, moving variance 1 before */
static void hand_on_cuda(kiln_bn_impl impl, double tol) {
    /* cuDNN's path needs a GPU; kiln's kernels also run on the CUDA emulator */
    kiln_backend *cuda = impl == KILN_BN_IMPL_CUDNN ? kt_gpu_or_skip() : kt_cuda_or_skip();
    static const float x[6] = {1, 10, 2, 20, 3, 60};
    int64_t shape[2] = {3, 2}, C = 2;
    struct { kiln_bn_convention conv; float momentum; bool cumulative; double mm[2], mv[2]; } cases[] = {
        {KILN_BN_KERAS, 0.75f, false, {0.5, 7.5}, {0.75 + 0.25 * 2.0 / 3, 0.75 + 0.25 * 1400.0 / 3}},
        {KILN_BN_TORCH, 0.25f, false, {0.5, 7.5}, {1.0, 0.75 + 0.25 * 700.0}},
        {KILN_BN_TORCH, 0.5f, true, {2.0, 30.0}, {1.0, 700.0}}, /* cumulative, first batch: factor 1 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kiln_bn_params p = cases[k].conv == KILN_BN_KERAS ? kiln_bn_params_keras() : kiln_bn_params_torch();
        p.momentum = cases[k].momentum;
        p.cumulative = cases[k].cumulative;
        p.impl = impl;
        kiln_tensor *tx = kt_new(cuda, KILN_F32, 2, shape), *ty = kt_new(cuda, KILN_F32, 2, shape);
        kiln_tensor *mm = kt_new(cuda, KILN_F32, 1, &C), *mv = kt_new(cuda, KILN_F32, 1, &C);
        kiln_tensor *sm = kt_new(cuda, KILN_F32, 1, &C), *sv = kt_new(cuda, KILN_F32, 1, &C);
        kt_set_f32(tx, x);
        cr_assert_eq(kiln_batchnorm_init(&p, NULL, NULL, mm, mv), KILN_OK, "%s", kiln_last_error());
        p.scale = p.center = false;
        cr_assert_eq(kiln_batchnorm_forward_train(tx, NULL, NULL, mm, mv, &p, ty, sm, sv), KILN_OK, "%s", kiln_last_error());
        float gm[2], gv[2];
        cr_assert_eq(kiln_tensor_get(mm, gm, 8), KILN_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_tensor_get(mv, gv, 8), KILN_OK, "%s", kiln_last_error());
        for (int c = 0; c < 2; c++) {
            cr_expect(fabs(gm[c] - cases[k].mm[c]) <= tol * fabs(cases[k].mm[c]),
                      "case %zu impl %d: moving mean[%d] %.9g, want %.9g", k, (int)impl, c, (double)gm[c], cases[k].mm[c]);
            cr_expect(fabs(gv[c] - cases[k].mv[c]) <= tol * fabs(cases[k].mv[c]),
                      "case %zu impl %d: moving var[%d] %.9g, want %.9g", k, (int)impl, c, (double)gv[c], cases[k].mv[c]);
        }
        kiln_tensor *all[] = {tx, ty, mm, mv, sm, sv};
        for (int t = 0; t < 6; t++) kiln_tensor_free(all[t]);
    }
}

Test(bn_cuda, moving_by_hand_kiln) {
    hand_on_cuda(KILN_BN_IMPL_KILN, 0x1p-23);
    hand_on_cuda(KILN_BN_IMPL_KILN_GRID, 0x1p-23);
    hand_on_cuda(KILN_BN_IMPL_KILN_MULTI, 0x1p-23);
}
Test(bn_cuda, moving_by_hand_cudnn) { hand_on_cuda(KILN_BN_IMPL_CUDNN, 1e-6); }

/* ---- misaligned tensors take the scalar path and give the CPU's answers ---- */

Test(bn_cuda, misaligned_views_match_cpu) {
    kiln_backend *cuda = kt_cuda_or_skip();
    static const int64_t size[4] = {8, 6, 6, 64}; /* vectorisable when aligned */
    for (int kind = 0; kind < 3; kind++)
        for (int di = 0; di < 2; di++) {
            int64_t shape[4];
            kiln_layout layout;
            int ndim = make_shape(size, kind, shape, &layout);
            bn_problem p;
            kiln_dtype dt = di ? KILN_F16 : KILN_F32;
            problem_init(&p, ndim, shape, layout, dt, -2, 2, 21);
            kiln_bn_params prm = kiln_bn_params_keras();
            bn_result a = {0}, b = {0};
            cr_assert_eq(run_all(cuda, &p, prm, 1, &a), KILN_OK, "%s", kiln_last_error());
            cr_assert_eq(run_all(cuda, &p, prm, 0, &b), KILN_OK, "%s", kiln_last_error());
            char label[96];
            snprintf(label, sizeof label, "misaligned vs aligned %s %s", layout_names[kind], kiln_dtype_name(dt));
            compare_results(label, &p, &a, &b, 1e-5);
            result_free(&a);
            result_free(&b);
            problem_free(&p);
        }
}

/* ---- a forced path that cannot take the shape says so ---- */

Test(bn_cuda, forced_grid_too_large_is_unsupported) {
    kiln_backend *cuda = kt_cuda_or_skip();
    int64_t shape[4] = {64, 56, 56, 64}, C = 64; /* 51 MB of x and 51 MB of dy: more than any chip keeps */
    kiln_tensor *x = kt_new(cuda, KILN_F32, 4, shape), *dy = kt_new(cuda, KILN_F32, 4, shape), *dx = kt_new(cuda, KILN_F32, 4, shape);
    kiln_tensor *m = kt_new(cuda, KILN_F32, 1, &C), *v = kt_new(cuda, KILN_F32, 1, &C);
    kiln_bn_params p = kiln_bn_params_keras();
    cr_assert_eq(kiln_batchnorm_init(&p, NULL, NULL, m, v), KILN_OK);
    cr_assert_eq(kiln_fill(x, 1.0), KILN_OK);
    cr_assert_eq(kiln_fill(dy, 1.0), KILN_OK);
    p.impl = KILN_BN_IMPL_KILN_GRID;
    p.scale = false;
    kiln_status s = kiln_batchnorm_backward(x, dy, NULL, m, v, &p, dx, NULL, NULL);
    cr_expect_eq(s, KILN_ERR_UNSUPPORTED, "got %s: %s", kiln_status_name(s), kiln_last_error());
    cr_expect(strstr(kiln_last_error(), "cooperative") != NULL, "message: %s", kiln_last_error());
    kiln_tensor_free(x); kiln_tensor_free(dy); kiln_tensor_free(dx); kiln_tensor_free(m); kiln_tensor_free(v);
}
