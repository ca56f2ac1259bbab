/* test_cpu_loops.c: the CPU backend's vectorised loops (src/backends/cpu/simd.h) at every
 * instruction-set level this machine has (baseline, AVX2, AVX-512, forced in turn): the same
 * bits at every level and for 1 or 2 threads, and every element against plain scalar oracles
 * written here (the elementwise ops, max pooling and the optimizer steps bit for bit; batch
 * norm within 1e-6 of a two-pass float64 oracle). Odd sizes leave tails at every vector width. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "simd.h"

/* libgomp's, when the library is built with OpenMP (weak: absent otherwise) */
void omp_set_num_threads(int n) __attribute__((weak));
int omp_get_max_threads(void) __attribute__((weak));

static int max_level(void) { return kiln_cpu_simd_force(99); }

static kiln_tensor *f32(int ndim, const int64_t *shape) { return kt_new(kt_cpu(), KILN_F32, ndim, shape); }

static float *data(kiln_tensor *t) { return (float *)t->data; }

/* ---- elementwise: ADD/SUB/MUL with broadcasts, SCALE, AXPY, RELU, RELU_BACK ---- */

/* inputs with NaN, infinities, signed zeros at fixed places */
static void fill_special(kiln_tensor *t, kt_rng *r) {
    kt_fill_random(t, r, -3, 3);
    float *v = data(t);
    int64_t n = kiln_tensor_numel(t);
    const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f};
    for (int i = 0; i < 7 && i * 37 < n; i++) v[i * 37] = sp[i];
}

/* every elementwise op on (rows, 61, 1) against the scalar formula, bit for bit, at every ISA
 * level (and, large enough, on each thread count: kiln_cpu_parallel_ranges' split) */
static void check_elementwise(int64_t rows) {
    kt_rng r;
    kt_rng_seed(&r, 7);
    const int64_t n = rows * 61, nbs[] = {n, 61, 1}, shape[3] = {rows, 61, 1};
    const int nd[] = {3, 2, 1};
    kiln_tensor *a = f32(3, shape), *y = f32(3, shape), *y2 = f32(3, shape), *c = f32(3, shape);
    float *want = malloc((size_t)n * sizeof *want);
    cr_assert(want);
    fill_special(a, &r);
    for (int lv = 0; lv <= max_level(); lv++) {
        kiln_cpu_simd_force(lv);
        for (int bi = 0; bi < 3; bi++) {
            kiln_tensor *b = f32(nd[bi], shape + 3 - nd[bi]); /* all, (61, 1), (1) */
            fill_special(b, &r);
            for (int op = 0; op < 3; op++) {
                kiln_status st = op == 0 ? kiln_add(a, b, y) : op == 1 ? kiln_sub(a, b, y) : kiln_mul(a, b, y);
                cr_assert_eq(st, KILN_OK, "%s", kiln_last_error());
                float *w = malloc((size_t)n * sizeof *w);
                for (int64_t i = 0; i < n; i++) {
                    float av = data(a)[i], bv = data(b)[i % nbs[bi]];
                    w[i] = op == 0 ? av + bv : op == 1 ? av - bv : av * bv;
                }
                kt_expect_bitwise("binary", data(y), w, (size_t)n * 4);
                free(w);
            }
            kiln_tensor_free(b);
        }
        const size_t nbytes = (size_t)n * sizeof *want;
        cr_assert_eq(kiln_scale(a, 0.37f, y), KILN_OK);
        for (int64_t i = 0; i < n; i++) want[i] = 0.37f * data(a)[i];
        kt_expect_bitwise("scale", data(y), want, nbytes);
        kt_fill_random(c, &r, -1, 1);
        cr_assert_eq(kiln_copy(a, c), KILN_OK);
        kt_expect_bitwise("copy", data(c), data(a), nbytes);
        kt_fill_random(y, &r, -1, 1);
        for (int64_t i = 0; i < n; i++) want[i] = fmaf(-1.3f, data(a)[i], data(y)[i]);
        cr_assert_eq(kiln_axpy(-1.3f, a, y), KILN_OK);
        kt_expect_bitwise("axpy", data(y), want, nbytes);
        cr_assert_eq(kiln_relu(a, y), KILN_OK);
        for (int64_t i = 0; i < n; i++) {
            float v = data(a)[i];
            want[i] = v > 0.0f ? v : (isnan(v) ? v : 0.0f);
        }
        kt_expect_bitwise("relu", data(y), want, nbytes);
        kt_fill_random(y2, &r, -1, 1);
        cr_assert_eq(kiln_relu_backward(a, y2, y), KILN_OK);
        for (int64_t i = 0; i < n; i++) want[i] = data(a)[i] > 0.0f ? data(y2)[i] : 0.0f;
        kt_expect_bitwise("relu_backward", data(y), want, nbytes);
    }
    kiln_cpu_simd_force(-1);
    free(want);
    kiln_tensor_free(a), kiln_tensor_free(y), kiln_tensor_free(y2), kiln_tensor_free(c);
}

Test(cpu_loops, elementwise_every_level_matches_scalar) { check_elementwise(17); }

/* 68,381 elements: over KILN_CPU_PAR_MIN, so 2 and 3 threads split every loop (3: ranges that
 * are not multiples of the vector width, and of the 61 a repeating b needs) */
Test(cpu_loops, elementwise_split_among_threads_matches_scalar) {
    if (!omp_set_num_threads || !omp_get_max_threads) cr_skip_test("built without OpenMP");
    int was = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        check_elementwise(1121);
    }
    omp_set_num_threads(was);
}

/* ---- max pooling: the first maximal element, NaN first, ties everywhere ---- */

static int64_t oracle_argmax(const float *x, const int64_t *s, int64_t n, int64_t c, int64_t y0, int64_t y1,
                             int64_t x0, int64_t x1) {
    int64_t best = -1;
    for (int64_t iy = y0; iy < y1; iy++)
        for (int64_t ix = x0; ix < x1; ix++) {
            int64_t at = ((n * s[1] + iy) * s[2] + ix) * s[3] + c;
            if (best < 0) best = at;
            else if (x[best] == x[best] && (x[at] > x[best] || x[at] != x[at])) best = at;
        }
    return best;
}

Test(cpu_loops, max_pool_every_level_matches_scalar) {
    kt_rng r;
    kt_rng_seed(&r, 11);
    const int64_t xs[4] = {3, 9, 8, 35}, ys[4] = {3, 5, 4, 35}; /* 3x3, stride 2, same */
    kiln_pool2d_params p = {3, 3, 2, 2, KILN_PADDING_SAME};
    int64_t got_shape[4];
    cr_assert_eq(kiln_pool2d_output_shape(xs, &p, got_shape), KILN_OK);
    cr_assert(memcmp(got_shape, ys, sizeof ys) == 0);
    kiln_tensor *x = f32(4, xs), *y = f32(4, ys), *dy = f32(4, ys), *dx = f32(4, xs);
    kt_fill_random(x, &r, 0, 4);
    int64_t nx = kiln_tensor_numel(x), ny = kiln_tensor_numel(y);
    for (int64_t i = 0; i < nx; i++) data(x)[i] = floorf(data(x)[i]); /* ties */
    for (int64_t i = 5; i < nx; i += 97) data(x)[i] = NAN;
    kt_fill_random(dy, &r, -1, 1);
    float *wy = malloc((size_t)ny * 4), *wdx = calloc((size_t)nx, 4);
    /* SAME: half the total padding before (9 -> 5: 1 row; 8 -> 4: 0 columns) */
    int64_t pt = ((ys[1] - 1) * 2 + 3 - xs[1]) / 2, pl = ((ys[2] - 1) * 2 + 3 - xs[2]) / 2;
    for (int64_t n = 0; n < xs[0]; n++)
        for (int64_t oh = 0; oh < ys[1]; oh++)
            for (int64_t ow = 0; ow < ys[2]; ow++)
                for (int64_t c = 0; c < xs[3]; c++) {
                    int64_t y0 = oh * 2 - pt, x0 = ow * 2 - pl;
                    int64_t a = oracle_argmax(data(x), xs, n, c, y0 < 0 ? 0 : y0, y0 + 3 > xs[1] ? xs[1] : y0 + 3,
                                              x0 < 0 ? 0 : x0, x0 + 3 > xs[2] ? xs[2] : x0 + 3);
                    int64_t k = ((n * ys[1] + oh) * ys[2] + ow) * ys[3] + c;
                    wy[k] = data(x)[a];
                    wdx[a] += data(dy)[k];
                }
    for (int lv = 0; lv <= max_level(); lv++) {
        kiln_cpu_simd_force(lv);
        cr_assert_eq(kiln_max_pool2d(x, &p, y), KILN_OK, "%s", kiln_last_error());
        kt_expect_bitwise("max_pool2d", data(y), wy, (size_t)ny * 4);
        kt_poison(dx);
        cr_assert_eq(kiln_max_pool2d_backward(x, dy, &p, dx), KILN_OK, "%s", kiln_last_error());
        kt_expect_bitwise("max_pool2d_backward", data(dx), wdx, (size_t)nx * 4);
    }
    kiln_cpu_simd_force(-1);
    free(wy), free(wdx);
    kiln_tensor_free(x), kiln_tensor_free(y), kiln_tensor_free(dy), kiln_tensor_free(dx);
}

/* ---- optimizer steps: Adam / AMSGrad / AdamW, SGD / momentum / Nesterov ---- */

/* n parameters, 3 steps of every variant at every ISA level on 1 to max_threads threads (when
 * OpenMP is there), all bit for bit the first (level 0, 1 thread), and SGD with momentum equal to
 * the scalar formula */
static void check_optimizer_steps(int64_t n, int max_threads) {
    kiln_tensor *w0 = f32(1, &n), *g = f32(1, &n);
    kt_rng r;
    kt_rng_seed(&r, 13);
    kt_fill_random(w0, &r, -1, 1);
    kt_fill_random(g, &r, -1, 1);
    float *ref[6] = {0};
    int was = omp_get_max_threads ? omp_get_max_threads() : 1;
    if (!omp_set_num_threads) max_threads = 1;
    for (int t = 1; t <= max_threads; t++) {
        for (int lv = 0; lv <= max_level(); lv++) {
            if (omp_set_num_threads) omp_set_num_threads(t);
            kiln_cpu_simd_force(lv);
            for (int v = 0; v < 6; v++) {
                kiln_tensor *w = kt_clone(kt_cpu(), w0), *m = f32(1, &n), *vv = f32(1, &n), *vh = f32(1, &n);
                memset(m->data, 0, (size_t)n * 4), memset(vv->data, 0, (size_t)n * 4), memset(vh->data, 0, (size_t)n * 4);
                for (int step = 1; step <= 3; step++) {
                    kiln_status st;
                    if (v < 3) {
                        kiln_adam_params ap = KILN_ADAM_DEFAULTS;
                        ap.amsgrad = v == 1;
                        ap.weight_decay = v == 2 ? 0.004 : 0.0;
                        st = kiln_adam_update(w, g, m, vv, v == 1 ? vh : NULL, &ap, step, NULL);
                    } else {
                        kiln_sgd_params sp = {0.01, v == 3 ? 0.0 : 0.9, v == 5, v == 5 ? 0.01 : 0.0};
                        st = kiln_sgd_update(w, g, v == 3 ? NULL : m, &sp, NULL);
                    }
                    cr_assert_eq(st, KILN_OK, "%s", kiln_last_error());
                }
                if (lv == 0 && t == 1) ref[v] = kt_get_f32(w);
                else kt_expect_bitwise("optimizer step", data(w), ref[v], (size_t)n * 4);
                kiln_tensor_free(w), kiln_tensor_free(m), kiln_tensor_free(vv), kiln_tensor_free(vh);
            }
        }
    }
    /* and the scalar formula of optim_ops.h for plain SGD with momentum after 3 steps */
    float *w = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        float wv = data(w0)[i], u = 0.0f;
        for (int s = 0; s < 3; s++) {
            float glr = data(g)[i] * 0.01f, a = u * 0.9f;
            u = a - glr;
            wv = wv + u;
        }
        w[i] = wv;
    }
    kt_expect_bitwise("sgd momentum vs scalar", ref[4], w, (size_t)n * 4);
    free(w);
    kiln_cpu_simd_force(-1);
    if (omp_set_num_threads) omp_set_num_threads(was);
    for (int v = 0; v < 6; v++) free(ref[v]);
    kiln_tensor_free(w0), kiln_tensor_free(g);
}

Test(cpu_loops, optimizer_steps_same_bits_at_every_level) { check_optimizer_steps(1003, 1); }

/* 70,001 parameters: over KILN_CPU_PAR_MIN, so 2 and 3 threads split each tensor's update */
Test(cpu_loops, optimizer_steps_split_among_threads) { check_optimizer_steps(70001, 3); }

/* ---- reduction over leading axes: the same double sums as a plain loop ---- */

Test(cpu_loops, leading_sum_matches_scalar) {
    const int64_t xs[3] = {7, 13, 29}, os[1] = {29};
    kiln_tensor *x = f32(3, xs), *y = f32(1, os);
    kt_rng r;
    kt_rng_seed(&r, 17);
    kt_fill_random(x, &r, -1e3, 1e3);
    float want[29];
    for (int64_t c = 0; c < 29; c++) {
        double s = 0.0;
        for (int64_t k = 0; k < 7 * 13; k++) s += data(x)[k * 29 + c];
        want[c] = (float)s;
    }
    for (int lv = 0; lv <= max_level(); lv++) {
        kiln_cpu_simd_force(lv);
        cr_assert_eq(kiln_sum(x, 3u, y), KILN_OK, "%s", kiln_last_error());
        kt_expect_bitwise("sum over axes 0, 1", data(y), want, sizeof want);
    }
    kiln_cpu_simd_force(-1);
    kiln_tensor_free(x), kiln_tensor_free(y);
}

/* ---- batch norm: every level and thread count the same bits; f32 against float64 ---- */

typedef struct bn_case {
    int ndim;
    int64_t shape[4];
    kiln_layout layout;
} bn_case;

static const bn_case bn_cases[] = {
    {4, {3, 5, 7, 33}, KILN_LAYOUT_NHWC},  /* rows, 33 channels: a tail at every width */
    {4, {3, 33, 5, 7}, KILN_LAYOUT_NCHW},  /* runs of 35: 2 x 16 lanes + 3 */
    {4, {2, 6, 4, 4}, KILN_LAYOUT_NCHW},   /* runs of exactly 16 */
    {2, {37, 19}, KILN_LAYOUT_NHWC},       /* (N, C) */
    {4, {8, 33, 17, 33}, KILN_LAYOUT_NCHW}, /* above the threading threshold (131072) */
    {4, {8, 17, 33, 33}, KILN_LAYOUT_NHWC}, /* above the threshold, several row chunks */
    {4, {3, 5, 7, 16}, KILN_LAYOUT_NHWC},   /* rows of exactly 16: the fixed-width loop */
    {4, {8, 32, 32, 16}, KILN_LAYOUT_NHWC}, /* the same, threaded, several row chunks */
};

/* the outputs of one run: y, save mean and invstd, dx, dgamma, dbeta (malloc'ed bytes) */
typedef struct bn_out {
    void *y, *dx;
    float *sm, *si, *dg, *db;
} bn_out;

static bn_out bn_run(const bn_case *bc, kiln_dtype dt, const kiln_tensor *x, const kiln_tensor *dy) {
    kiln_bn_params p = kiln_bn_params_keras();
    p.layout = bc->layout;
    int64_t C = bc->ndim == 2 || bc->layout == KILN_LAYOUT_NHWC ? bc->shape[bc->ndim - 1] : bc->shape[1];
    kiln_tensor *g = f32(1, &C), *b = f32(1, &C), *mm = f32(1, &C), *mv = f32(1, &C), *sm = f32(1, &C),
                *si = f32(1, &C), *dg = f32(1, &C), *db = f32(1, &C);
    for (int64_t c = 0; c < C; c++)
        data(g)[c] = 0.5f + 0.01f * (float)c, data(b)[c] = 0.1f * (float)c, data(mm)[c] = 0, data(mv)[c] = 1;
    kiln_tensor *y = kt_new(kt_cpu(), dt, bc->ndim, bc->shape), *dx = kt_new(kt_cpu(), dt, bc->ndim, bc->shape);
    cr_assert_eq(kiln_batchnorm_forward_train(x, g, b, mm, mv, &p, y, sm, si), KILN_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_batchnorm_backward(x, dy, g, sm, si, &p, dx, dg, db), KILN_OK, "%s", kiln_last_error());
    bn_out o = {kt_get_bytes(y), kt_get_bytes(dx), kt_get_f32(sm), kt_get_f32(si), kt_get_f32(dg), kt_get_f32(db)};
    kiln_tensor *t[] = {g, b, mm, mv, sm, si, dg, db, y, dx};
    for (int i = 0; i < 10; i++) kiln_tensor_free(t[i]);
    return o;
}

static void bn_same(const bn_out *a, const bn_out *b, size_t nbytes, int64_t C, const char *what) {
    cr_log_info("%s", what);
    kt_expect_bitwise("y", a->y, b->y, nbytes);
    kt_expect_bitwise("dx", a->dx, b->dx, nbytes);
    kt_expect_bitwise("save_mean", a->sm, b->sm, (size_t)C * 4);
    kt_expect_bitwise("save_invstd", a->si, b->si, (size_t)C * 4);
    kt_expect_bitwise("dgamma", a->dg, b->dg, (size_t)C * 4);
    kt_expect_bitwise("dbeta", a->db, b->db, (size_t)C * 4);
}

static void bn_free(bn_out *o) { free(o->y), free(o->dx), free(o->sm), free(o->si), free(o->dg), free(o->db); }

/* float64 oracle of the training forward's y, two passes per channel */
static void bn_oracle_y(const bn_case *bc, const float *x, double *want) {
    int64_t n = 1;
    for (int d = 0; d < bc->ndim; d++) n *= bc->shape[d];
    bool last = bc->ndim == 2 || bc->layout == KILN_LAYOUT_NHWC;
    int64_t C = last ? bc->shape[bc->ndim - 1] : bc->shape[1], inner = last ? 1 : n / bc->shape[0] / C;
    double *s = calloc((size_t)(3 * C), sizeof *s);
    int64_t per = n / C;
    for (int64_t k = 0; k < n; k++) s[(k / inner) % C] += x[k];
    for (int64_t k = 0; k < n; k++) {
        double d = x[k] - s[(k / inner) % C] / (double)per;
        s[C + (k / inner) % C] += d * d;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t c = (k / inner) % C;
        double mean = s[c] / (double)per, var = s[C + c] / (double)per;
        want[k] = (double)(0.5f + 0.01f * (float)c) * (x[k] - mean) / sqrt(var + (double)1e-3f) +
                  (double)(0.1f * (float)c);
    }
    free(s);
}

/* float64 oracle of the training backward's dx from kiln's saved (f32) statistics sm, si:
 * dx = gamma si (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - sm) si */
static void bn_oracle_dx(const bn_case *bc, const float *x, const float *dy, const float *sm,
                         const float *si, double *want) {
    int64_t n = 1;
    for (int d = 0; d < bc->ndim; d++) n *= bc->shape[d];
    bool last = bc->ndim == 2 || bc->layout == KILN_LAYOUT_NHWC;
    int64_t C = last ? bc->shape[bc->ndim - 1] : bc->shape[1], inner = last ? 1 : n / bc->shape[0] / C;
    double *s = calloc((size_t)(2 * C), sizeof *s), per = (double)(n / C);
    for (int64_t k = 0; k < n; k++) {
        int64_t c = (k / inner) % C;
        s[c] += dy[k];
        s[C + c] += dy[k] * ((x[k] - (double)sm[c]) * si[c]);
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t c = (k / inner) % C;
        double xhat = (x[k] - (double)sm[c]) * si[c];
        want[k] = (double)(0.5f + 0.01f * (float)c) * si[c] * (dy[k] - s[c] / per - xhat * s[C + c] / per);
    }
    free(s);
}

Test(cpu_loops, batchnorm_levels_threads_and_oracle) {
    const kiln_dtype dts[] = {KILN_F32, KILN_F16, KILN_BF16};
    for (size_t ci = 0; ci < sizeof bn_cases / sizeof bn_cases[0]; ci++)
        for (int di = 0; di < 3; di++) {
            const bn_case *bc = &bn_cases[ci];
            kt_rng r;
            kt_rng_seed(&r, 100 + ci);
            kiln_tensor *x = kt_new(kt_cpu(), dts[di], bc->ndim, bc->shape),
                        *dy = kt_new(kt_cpu(), dts[di], bc->ndim, bc->shape);
            kt_fill_random(x, &r, 3, 7); /* a mean away from 0: the shift at work */
            kt_fill_random(dy, &r, -1, 1);
            int64_t n = kiln_tensor_numel(x);
            int64_t C = bc->ndim == 2 || bc->layout == KILN_LAYOUT_NHWC ? bc->shape[bc->ndim - 1] : bc->shape[1];
            if (dts[di] == KILN_F32) /* +-1e8 in every other row, cancelling: sum(dy) shows its order */
                for (int64_t k = 0; k < n; k++) {
                    int64_t row = k / C;
                    data(dy)[k] = row % 4 == 0 ? 1e8f : row % 4 == 2 ? -1e8f : data(dy)[k] * 1e-3f;
                }
            size_t nbytes = (size_t)n * kiln_dtype_size(dts[di]);
            kiln_cpu_simd_force(0);
            bn_out ref = bn_run(bc, dts[di], x, dy);
            for (int lv = 1; lv <= max_level(); lv++) {
                kiln_cpu_simd_force(lv);
                bn_out o = bn_run(bc, dts[di], x, dy);
                bn_same(&ref, &o, nbytes, C, "level against baseline");
                bn_free(&o);
            }
            kiln_cpu_simd_force(-1);
            if (omp_set_num_threads && omp_get_max_threads) {
                int was = omp_get_max_threads();
                for (int t = 1; t <= 3; t++) {
                    omp_set_num_threads(t);
                    bn_out o = bn_run(bc, dts[di], x, dy);
                    bn_same(&ref, &o, nbytes, C, "threads against one");
                    bn_free(&o);
                }
                omp_set_num_threads(was);
            }
            if (dts[di] == KILN_F32) {
                double *want = malloc((size_t)n * sizeof *want);
                bn_oracle_y(bc, data(x), want);
                kt_expect_close_f64("y vs float64", ref.y, want, n, 1e-6);
                bn_oracle_dx(bc, data(x), data(dy), ref.sm, ref.si, want);
                kt_expect_close_f64("dx vs float64", ref.dx, want, n, 1e-6);
                free(want);
            }
            bn_free(&ref);
            kiln_tensor_free(x), kiln_tensor_free(dy);
        }
}

/* ---- softmax cross-entropy: each exp once, the same bits as computing it twice ---- */

Test(cpu_loops, softmax_xent_matches_scalar) {
    const int64_t B = 37, ks[2] = {13, 300}; /* on the stack buffer, and past it */
    for (int ki = 0; ki < 2; ki++) {
        const int64_t K = ks[ki], xs[2] = {B, K};
        kiln_tensor *x = f32(2, xs), *p = f32(2, xs), *dx = f32(2, xs), *loss = f32(1, &B),
                    *lab = kt_new(kt_cpu(), KILN_I32, 1, &B);
        kt_rng r;
        kt_rng_seed(&r, 19);
        kt_fill_random(x, &r, -20, 20);
        int32_t *l = lab->data;
        for (int64_t b = 0; b < B; b++) l[b] = (int32_t)((b * 7) % K);
        l[3] = (int32_t)K; /* out of range: a NaN row */
        float *wp = malloc((size_t)(B * K) * 4), wl[37];
        for (int64_t b = 0; b < B; b++) {
            const float *xr = data(x) + b * K;
            double m = -INFINITY, s = 0.0;
            for (int64_t j = 0; j < K; j++) m = xr[j] > m ? xr[j] : m;
            for (int64_t j = 0; j < K; j++) s += exp((double)xr[j] - m);
            for (int64_t j = 0; j < K; j++) wp[b * K + j] = (float)(exp((double)xr[j] - m) / s);
            wl[b] = l[b] >= K ? NAN : (float)(m + log(s) - (double)xr[l[b]]);
        }
        for (int lv = 0; lv <= max_level(); lv++) {
            kiln_cpu_simd_force(lv);
            cr_assert_eq(kiln_softmax_xent(x, lab, p, loss), KILN_OK, "%s", kiln_last_error());
            kt_expect_bitwise("probs", data(p), wp, (size_t)(B * K) * 4);
            kt_expect_bitwise("loss", data(loss), wl, sizeof wl);
            cr_assert_eq(kiln_softmax_xent_backward(p, lab, 0.25f, dx), KILN_OK, "%s", kiln_last_error());
            for (int64_t k = 0; k < B * K; k++) {
                int64_t b = k / K, j = k % K;
                float want = l[b] >= K ? NAN : 0.25f * (data(p)[k] - (j == l[b] ? 1.0f : 0.0f));
                cr_assert(memcmp(&data(dx)[k], &want, 4) == 0 || (isnan(want) && isnan(data(dx)[k])),
                          "dlogits[%lld]: %a, want %a", (long long)k, data(dx)[k], want);
            }
        }
        kiln_cpu_simd_force(-1);
        free(wp);
        kiln_tensor_free(x), kiln_tensor_free(p), kiln_tensor_free(dx), kiln_tensor_free(loss), kiln_tensor_free(lab);
    }
}
