/* test_conv_dnnl.c: the CPU convolution's two paths, oneDNN (src/backends/cpu/conv_dnnl.c) and
 * im2col + OpenBLAS (conv.c), chosen per backend by KILN_CPU_CONV at open: on seeded shapes with
 * strides, pads, dilations, odd sizes, 1x1 and bias or none, forward, backward data and backward
 * filter of both paths are checked element by element against float64 direct loops and against
 * each other; the primitive cache stays bounded; repeated steps allocate nothing (scratch
 * reuse). GEMM likewise (KILN_CPU_GEMM: oneDNN's matmul or OpenBLAS) with transposes, alpha and
 * beta. Grouped convolutions get their own primitives (their oracle tests are
 * test_conv_family_ops.c's, on both paths). In a build without oneDNN the "onednn" backends run
 * the other path and the checks still hold. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

static kiln_backend *open_with(const char *var, const char *impl) {
    kiln_backend *be;
    setenv(var, impl, 1);
    OK(kiln_backend_init("cpu", &be));
    unsetenv(var);
    return be;
}

static kiln_backend *open_conv(const char *impl) { return open_with("KILN_CPU_CONV", impl); }

typedef struct shape_cfg {
    const char *name;
    int64_t n, h, w, c, kh, kw, oc;
    int sh, sw, dh, dw;
    kiln_padding pad;
    bool bias;
} shape_cfg;

static const shape_cfg cfgs[] = {
    {"3x3 same, odd sizes", 3, 7, 9, 5, 3, 3, 6, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"3x3 same stride 2, even input", 2, 8, 8, 4, 3, 3, 8, 2, 2, 1, 1, KILN_PADDING_SAME, true},
    {"5x3 valid strides 2x1, no bias", 2, 11, 9, 3, 5, 3, 4, 2, 1, 1, 1, KILN_PADDING_VALID, false},
    {"3x3 dilation 2 same", 1, 9, 10, 2, 3, 3, 3, 1, 1, 2, 2, KILN_PADDING_SAME, true},
    {"3x2 valid dilation 2x3", 2, 10, 11, 3, 3, 2, 2, 1, 1, 2, 3, KILN_PADDING_VALID, true},
    {"1x1 stride 2 same (a ResNet shortcut)", 2, 8, 8, 16, 1, 1, 32, 2, 2, 1, 1, KILN_PADDING_SAME, false},
    {"1x1 stride 1 valid", 2, 5, 5, 7, 1, 1, 5, 1, 1, 1, 1, KILN_PADDING_VALID, true},
    {"4x3 valid strides 3x2, rows left over", 2, 11, 8, 2, 4, 3, 2, 3, 2, 1, 1, KILN_PADDING_VALID, true},
    {"2x2 same (pad after)", 2, 5, 6, 3, 2, 2, 3, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"3x3 same 16 -> 16 (ResNet-20 stage 1)", 4, 16, 16, 16, 3, 3, 16, 1, 1, 1, 1, KILN_PADDING_SAME, true},
    {"3x3 valid 1 -> 8 (seed-cnn's first)", 4, 14, 14, 1, 3, 3, 8, 1, 1, 1, 1, KILN_PADDING_VALID, true},
};
#define N_CFGS (sizeof cfgs / sizeof cfgs[0])

/* TensorFlow's window rule */
static void axis(int64_t in, int64_t k, int s, int d, kiln_padding pad, int64_t *out, int64_t *before) {
    int64_t eff = (k - 1) * d + 1;
    *out = pad == KILN_PADDING_SAME ? (in + s - 1) / s : (in - eff) / s + 1;
    int64_t total = (*out - 1) * s + eff - in;
    *before = pad == KILN_PADDING_SAME && total > 0 ? total / 2 : 0;
}

/* float64 results of the three ops (direct loops over every product) */
typedef struct conv_want {
    double *y, *dx, *dw, *db;
} conv_want;

static double *f64_of(const kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    float *f = kt_get_f32(t);
    double *d = calloc((size_t)(n ? n : 1), sizeof *d);
    cr_assert_not_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static conv_want reference(const shape_cfg *k, int64_t oh, int64_t ow, int64_t pt, int64_t pl,
                           const kiln_tensor *xt, const kiln_tensor *wt, const kiln_tensor *bt,
                           const kiln_tensor *dyt) {
    double *x = f64_of(xt), *w = f64_of(wt), *dy = f64_of(dyt), *b = bt ? f64_of(bt) : NULL;
    conv_want r = {calloc((size_t)(k->n * oh * ow * k->oc), sizeof(double)),
                   calloc((size_t)kiln_tensor_numel(xt), sizeof(double)),
                   calloc((size_t)kiln_tensor_numel(wt), sizeof(double)), calloc((size_t)k->oc, sizeof(double))};
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t o = 0; o < k->oc; o++) {
                    int64_t yi = ((n * oh + i) * ow + j) * k->oc + o;
                    double s = b ? b[o] : 0.0, g = dy[yi];
                    r.db[o] += g;
                    for (int64_t ky = 0; ky < k->kh; ky++)
                        for (int64_t kx = 0; kx < k->kw; kx++) {
                            int64_t ih = i * k->sh - pt + ky * k->dh, iw = j * k->sw - pl + kx * k->dw;
                            if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                            for (int64_t c = 0; c < k->c; c++) {
                                int64_t xi = ((n * k->h + ih) * k->w + iw) * k->c + c;
                                int64_t wi = ((ky * k->kw + kx) * k->c + c) * k->oc + o;
                                s += x[xi] * w[wi];
                                r.dx[xi] += w[wi] * g;
                                r.dw[wi] += x[xi] * g;
                            }
                        }
                    r.y[yi] = s;
                }
    free(x); free(w); free(dy); free(b);
    return r;
}

/* the three ops of cfg k on backend be (inputs cloned there); outputs downloaded */
typedef struct conv_got {
    float *y, *dx, *dw, *db;
} conv_got;

static conv_got run_on(kiln_backend *be, const shape_cfg *k, const kiln_tensor *x, const kiln_tensor *w,
                       const kiln_tensor *b, const kiln_tensor *dy) {
    kiln_conv2d_params p = {k->sh, k->sw, k->dh, k->dw, k->pad, KILN_MATH_STRICT, 1};
    kiln_tensor *xb = kt_clone(be, x), *wb = kt_clone(be, w), *dyb = kt_clone(be, dy);
    kiln_tensor *bb = b ? kt_clone(be, b) : NULL;
    kiln_tensor *y = kt_new(be, KILN_F32, 4, dy->shape), *dx = kt_new(be, KILN_F32, 4, x->shape);
    kiln_tensor *dw = kt_new(be, KILN_F32, 4, w->shape), *db = kt_new(be, KILN_F32, 1, &k->oc);
    kt_poison(y); kt_poison(dx); kt_poison(dw); kt_poison(db);
    OK(kiln_conv2d(xb, wb, bb, &p, y));
    OK(kiln_conv2d_backward_data(dyb, wb, &p, dx));
    OK(kiln_conv2d_backward_filter(xb, dyb, &p, dw, db));
    conv_got g = {kt_get_f32(y), kt_get_f32(dx), kt_get_f32(dw), kt_get_f32(db)};
    kiln_tensor *all[] = {xb, wb, dyb, bb, y, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kiln_tensor_free(all[i]);
    return g;
}

static void expect_both(const char *shape, const char *out, const float *dnnl, const float *im2col,
                        const double *want, int64_t n) {
    char what[200];
    snprintf(what, sizeof what, "%s: %s, oneDNN path vs float64", shape, out);
    kt_expect_close_f64(what, dnnl, want, n, 1e-5);
    snprintf(what, sizeof what, "%s: %s, im2col or OpenBLAS path vs float64", shape, out);
    kt_expect_close_f64(what, im2col, want, n, 1e-5);
    snprintf(what, sizeof what, "%s: %s, oneDNN vs im2col or OpenBLAS", shape, out);
    kt_expect_close(what, dnnl, im2col, n, 1e-5);
}

static void free_got(conv_got g) { free(g.y); free(g.dx); free(g.dw); free(g.db); }

Test(conv_dnnl, paths_match_float64_on_every_element) {
    kiln_backend *dnnl = open_conv("onednn"), *im2col = open_conv("im2col");
    for (size_t i = 0; i < N_CFGS; i++) {
        const shape_cfg *k = &cfgs[i];
        int64_t oh, ow, pt, pl;
        axis(k->h, k->kh, k->sh, k->dh, k->pad, &oh, &pt);
        axis(k->w, k->kw, k->sw, k->dw, k->pad, &ow, &pl);
        int64_t xs[4] = {k->n, k->h, k->w, k->c}, ws[4] = {k->kh, k->kw, k->c, k->oc};
        int64_t ys[4] = {k->n, oh, ow, k->oc};
        kt_rng r;
        kt_rng_seed(&r, 1200 + i);
        kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *w = kt_new(kt_cpu(), KILN_F32, 4, ws);
        kiln_tensor *dy = kt_new(kt_cpu(), KILN_F32, 4, ys);
        kiln_tensor *b = k->bias ? kt_new(kt_cpu(), KILN_F32, 1, &k->oc) : NULL;
        kt_fill_random(x, &r, -1, 1);
        kt_fill_random(w, &r, -1, 1);
        kt_fill_random(dy, &r, -1, 1);
        if (b) kt_fill_random(b, &r, -1, 1);
        conv_want want = reference(k, oh, ow, pt, pl, x, w, b, dy);
        conv_got a = run_on(dnnl, k, x, w, b, dy), c = run_on(im2col, k, x, w, b, dy);
        expect_both(k->name, "y", a.y, c.y, want.y, kiln_tensor_numel(dy));
        expect_both(k->name, "dx", a.dx, c.dx, want.dx, kiln_tensor_numel(x));
        expect_both(k->name, "dw", a.dw, c.dw, want.dw, kiln_tensor_numel(w));
        expect_both(k->name, "db", a.db, c.db, want.db, k->oc);
        free_got(a);
        free_got(c);
        free(want.y); free(want.dx); free(want.dw); free(want.db);
        kiln_tensor_free(x); kiln_tensor_free(w); kiln_tensor_free(dy); kiln_tensor_free(b);
    }
    /* the oneDNN backend really ran oneDNN (three primitives a shape), the other never did */
    if (kiln_cpu_dnnl_built())
        cr_expect_eq(kiln_cpu_dnnl_cached(dnnl->ctx), 3 * (int)N_CFGS, "%d primitives cached",
                     kiln_cpu_dnnl_cached(dnnl->ctx));
    cr_expect_eq(kiln_cpu_dnnl_cached(im2col->ctx), 0);
    kiln_backend_free(dnnl);
    kiln_backend_free(im2col);
}

/* more shapes than the cache holds: it stays at its bound and the answers stay right */
Test(conv_dnnl, cache_is_bounded) {
    kiln_backend *be = open_conv("onednn");
    kiln_conv2d_params p = KILN_CONV2D_DEFAULTS;
    for (int64_t n = 1; n <= 80; n++) {
        int64_t xs[4] = {n, 3, 3, 2}, ws[4] = {1, 1, 2, 1}, ys[4] = {n, 3, 3, 1};
        kiln_tensor *x = kt_new(be, KILN_F32, 4, xs), *w = kt_new(be, KILN_F32, 4, ws);
        kiln_tensor *y = kt_new(be, KILN_F32, 4, ys);
        kt_rng r;
        kt_rng_seed(&r, 300 + (uint64_t)n);
        kt_fill_random(x, &r, -1, 1);
        kt_fill_random(w, &r, -1, 1);
        kt_poison(y);
        OK(kiln_conv2d(x, w, NULL, &p, y));
        float *xf = kt_get_f32(x), *wf = kt_get_f32(w), *yf = kt_get_f32(y);
        double *want = calloc((size_t)(9 * n), sizeof *want);
        for (int64_t i = 0; i < 9 * n; i++) want[i] = (double)xf[2 * i] * wf[0] + (double)xf[2 * i + 1] * wf[1];
        kt_expect_close_f64("1x1 conv of a cache-filling batch size", yf, want, 9 * n, 1e-6);
        free(xf); free(wf); free(yf); free(want);
        kiln_tensor_free(x); kiln_tensor_free(w); kiln_tensor_free(y);
    }
    int held = kiln_cpu_dnnl_cached(be->ctx);
    cr_expect(held <= 64 && (held == 64 || !kiln_cpu_dnnl_built()), "%d primitives cached", held);
    kiln_backend_free(be);
}

/* the forward convolution of x by w with `groups` on backend be, downloaded */
static float *forward_on(kiln_backend *be, const kiln_tensor *x, const kiln_tensor *w, int groups) {
    kiln_conv2d_params p = {1, 1, 1, 1, KILN_PADDING_SAME, KILN_MATH_STRICT, groups};
    int64_t ys[4] = {x->shape[0], x->shape[1], x->shape[2], w->shape[3]};
    kiln_tensor *xb = kt_clone(be, x), *wb = kt_clone(be, w), *y = kt_new(be, KILN_F32, 4, ys);
    kt_poison(y);
    OK(kiln_conv2d(xb, wb, NULL, &p, y));
    float *out = kt_get_f32(y);
    kiln_tensor_free(xb), kiln_tensor_free(wb), kiln_tensor_free(y);
    return out;
}

/* a depthwise and a plain convolution of the same image into as many channels are two
 * primitives (the groups are part of the cache key): each stays right after the other ran,
 * and running both again makes no new one */
Test(conv_dnnl, grouped_and_plain_get_their_own_primitives) {
    kiln_backend *dn = open_conv("onednn"), *ref = open_conv("im2col");
    int64_t xs[4] = {2, 6, 5, 8}, ws[2][4] = {{3, 3, 8, 8}, {3, 3, 1, 8}};
    kt_rng r;
    kt_rng_seed(&r, 4242);
    kiln_tensor *x = kt_new(kt_cpu(), KILN_F32, 4, xs), *w[2];
    kt_fill_random(x, &r, -1, 1);
    for (int i = 0; i < 2; i++) {
        w[i] = kt_new(kt_cpu(), KILN_F32, 4, ws[i]);
        kt_fill_random(w[i], &r, -1, 1);
    }
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 2; i++) {
            float *a = forward_on(dn, x, w[i], i ? 8 : 1), *b = forward_on(ref, x, w[i], i ? 8 : 1);
            char what[96];
            snprintf(what, sizeof what, "%s conv, round %d: oneDNN vs the other path", i ? "depthwise" : "plain", rep);
            kt_expect_close(what, a, b, 2 * 6 * 5 * 8, 1e-5);
            free(a), free(b);
        }
    if (kiln_cpu_dnnl_built())
        cr_expect_eq(kiln_cpu_dnnl_cached(dn->ctx), 2, "%d primitives cached", kiln_cpu_dnnl_cached(dn->ctx));
    cr_expect_eq(kiln_cpu_dnnl_cached(ref->ctx), 0);
    kiln_tensor_free(x), kiln_tensor_free(w[0]), kiln_tensor_free(w[1]);
    kiln_backend_free(dn);
    kiln_backend_free(ref);
}

static uint64_t allocs_of(const kiln_backend *be) {
    kiln_memory_stats st;
    OK(kiln_backend_memory_stats(be, &st));
    return st.system_allocs;
}

/* a second step of the same convolutions asks the system for no memory, on either path */
Test(conv_dnnl, repeated_steps_reuse_scratch) {
    static const char *const impls[] = {"onednn", "im2col"};
    for (int i = 0; i < 2; i++) {
        kiln_backend *be = open_conv(impls[i]);
        const shape_cfg *k = &cfgs[9];
        int64_t xs[4] = {k->n, k->h, k->w, k->c}, ws[4] = {k->kh, k->kw, k->c, k->oc};
        kiln_tensor *x = kt_new(be, KILN_F32, 4, xs), *w = kt_new(be, KILN_F32, 4, ws);
        kiln_tensor *y = kt_new(be, KILN_F32, 4, xs), *dx = kt_new(be, KILN_F32, 4, xs);
        kiln_tensor *dw = kt_new(be, KILN_F32, 4, ws), *db = kt_new(be, KILN_F32, 1, &k->oc);
        kt_rng r;
        kt_rng_seed(&r, 77);
        kt_fill_random(x, &r, -1, 1);
        kt_fill_random(w, &r, -1, 1);
        kiln_conv2d_params p = {1, 1, 1, 1, KILN_PADDING_SAME, KILN_MATH_STRICT, 1};
        uint64_t after_first = 0;
        for (int step = 0; step < 3; step++) {
            OK(kiln_conv2d(x, w, NULL, &p, y));
            OK(kiln_conv2d_backward_data(y, w, &p, dx));
            OK(kiln_conv2d_backward_filter(x, y, &p, dw, db));
            if (step == 0) after_first = allocs_of(be);
        }
        cr_expect_eq(allocs_of(be), after_first, "%s: %llu system allocations after the first step, %llu after three",
                     impls[i], (unsigned long long)after_first, (unsigned long long)allocs_of(be));
        kiln_tensor *all[] = {x, w, y, dx, dw, db};
        for (size_t j = 0; j < 6; j++) kiln_tensor_free(all[j]);
        kiln_backend_free(be);
    }
}

typedef struct gemm_cfg {
    int64_t m, n, k;
    bool ta, tb;
    float alpha, beta;
} gemm_cfg;

static const gemm_cfg gemm_cfgs[] = {
    {7, 5, 9, false, false, 1.0f, 0.0f},   {32, 64, 300, false, false, 1.0f, 0.0f},
    {33, 17, 19, true, false, 1.0f, 0.0f}, {16, 45, 8, false, true, 1.0f, 0.0f},
    {9, 11, 13, true, true, 0.5f, 0.0f},   {12, 10, 7, false, false, 2.0f, 0.75f},
    {5, 6, 40, true, false, -1.0f, 1.0f},
};

/* c = alpha op(a) op(b) + beta c0 in double */
static double *gemm_want(const gemm_cfg *g, const float *a, const float *b, const float *c0) {
    double *w = calloc((size_t)(g->m * g->n), sizeof *w);
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < g->k; p++)
                s += (double)(g->ta ? a[p * g->m + i] : a[i * g->k + p]) * (g->tb ? b[j * g->k + p] : b[p * g->n + j]);
            w[i * g->n + j] = g->alpha * s + (g->beta != 0.0f ? g->beta * (double)c0[i * g->n + j] : 0.0);
        }
    return w;
}

static float *gemm_on(kiln_backend *be, const gemm_cfg *g, const kiln_tensor *a, const kiln_tensor *b,
                      const kiln_tensor *c0) {
    kiln_tensor *ab = kt_clone(be, a), *bb = kt_clone(be, b), *c = kt_clone(be, c0);
    if (g->beta == 0.0f) kt_poison(c); /* beta 0 must not read C */
    OK(kiln_gemm(ab, g->ta, bb, g->tb, g->alpha, g->beta, c, KILN_MATH_STRICT));
    float *out = kt_get_f32(c);
    kiln_tensor_free(ab), kiln_tensor_free(bb), kiln_tensor_free(c);
    return out;
}

Test(gemm_dnnl, paths_match_float64_on_every_element) {
    kiln_backend *dn = open_with("KILN_CPU_GEMM", "onednn"), *ob = open_with("KILN_CPU_GEMM", "openblas");
    for (size_t i = 0; i < sizeof gemm_cfgs / sizeof gemm_cfgs[0]; i++) {
        const gemm_cfg *g = &gemm_cfgs[i];
        int64_t as[2] = {g->ta ? g->k : g->m, g->ta ? g->m : g->k}, bs[2] = {g->tb ? g->n : g->k, g->tb ? g->k : g->n};
        int64_t cs[2] = {g->m, g->n};
        kt_rng r;
        kt_rng_seed(&r, 900 + i);
        kiln_tensor *a = kt_new(kt_cpu(), KILN_F32, 2, as), *b = kt_new(kt_cpu(), KILN_F32, 2, bs);
        kiln_tensor *c0 = kt_new(kt_cpu(), KILN_F32, 2, cs);
        kt_fill_random(a, &r, -1, 1);
        kt_fill_random(b, &r, -1, 1);
        kt_fill_random(c0, &r, -1, 1);
        float *af = kt_get_f32(a), *bf = kt_get_f32(b), *cf = kt_get_f32(c0);
        double *want = gemm_want(g, af, bf, cf);
        float *x = gemm_on(dn, g, a, b, c0), *y = gemm_on(ob, g, a, b, c0);
        char name[96];
        snprintf(name, sizeof name, "gemm %lldx%lldx%lld ta %d tb %d alpha %g beta %g", (long long)g->m,
                 (long long)g->n, (long long)g->k, g->ta, g->tb, g->alpha, g->beta);
        expect_both(name, "c", x, y, want, g->m * g->n);
        free(af), free(bf), free(cf), free(want), free(x), free(y);
        kiln_tensor_free(a), kiln_tensor_free(b), kiln_tensor_free(c0);
    }
    if (kiln_cpu_dnnl_built())
        cr_expect_eq(kiln_cpu_dnnl_cached(dn->ctx), 7, "%d matmuls cached", kiln_cpu_dnnl_cached(dn->ctx));
    cr_expect_eq(kiln_cpu_dnnl_cached(ob->ctx), 0);
    kiln_backend_free(dn);
    kiln_backend_free(ob);
}
