/* bench/conv_bench.c: `kiln-bench conv`: the CPU convolution's two paths on the Conv2D shapes of
 * the built-in models (seed-cnn on 28x28x1 and 32x32x3 at batch 32, ResNet-20 at batch 128):
 * forward, backward data and backward filter through kiln's ops on a CPU backend opened with
 * KILN_CPU_CONV=onednn and one with im2col; the same for grouped convolutions on MobileNet-like
 * depthwise shapes (the other path is conv_grouped.c's direct loops there, and the table adds
 * how far oneDNN's f32 sums land from those loops' double sums); then the GEMMs of the models' Dense layers and of
 * im2col's patch products, OpenBLAS (kiln_gemm) against oneDNN's matmul. Median and minimum ms
 * of --reps after a warm-up (the minimum says more on a shared machine); Markdown on stdout
 * (docs/performance.md quotes it). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "error.h"

typedef struct conv_shape {
    const char *model;
    int64_t n, h, w, c, k, oc;
    int stride;
    kiln_padding pad;
    int count;  /* how many layers of the model have this shape */
    int groups; /* 0 or 1: a plain Conv2D; the kernel is (k, k, c / groups, oc) */
} conv_shape;

static const conv_shape shapes[] = {
    {"seed-cnn 28x28x1", 32, 28, 28, 1, 3, 32, 1, KILN_PADDING_VALID, 1, 1},
    {"seed-cnn 32x32x3", 32, 32, 32, 3, 3, 32, 1, KILN_PADDING_VALID, 1, 1},
    {"resnet20 stem", 128, 32, 32, 3, 3, 16, 1, KILN_PADDING_SAME, 1, 1},
    {"resnet20 stage 1", 128, 32, 32, 16, 3, 16, 1, KILN_PADDING_SAME, 6, 1},
    {"resnet20 stage 2 in", 128, 32, 32, 16, 3, 32, 2, KILN_PADDING_SAME, 1, 1},
    {"resnet20 stage 2", 128, 16, 16, 32, 3, 32, 1, KILN_PADDING_SAME, 5, 1},
    {"resnet20 stage 2 shortcut", 128, 32, 32, 16, 1, 32, 2, KILN_PADDING_SAME, 1, 1},
    {"resnet20 stage 3 in", 128, 16, 16, 32, 3, 64, 2, KILN_PADDING_SAME, 1, 1},
    {"resnet20 stage 3", 128, 8, 8, 64, 3, 64, 1, KILN_PADDING_SAME, 5, 1},
    {"resnet20 stage 3 shortcut", 128, 16, 16, 32, 1, 64, 2, KILN_PADDING_SAME, 1, 1},
};

/* grouped convolutions at batch 32: MobileNet's depthwise layers (groups = channels, depth
 * multiplier 1; the stride-2 row halves 56x56), one with depth multiplier 2, two ResNeXt-like */
static const conv_shape grouped_shapes[] = {
    {"depthwise 56x56x64", 32, 56, 56, 64, 3, 64, 1, KILN_PADDING_SAME, 1, 64},
    {"depthwise 56x56x64 /2", 32, 56, 56, 64, 3, 64, 2, KILN_PADDING_SAME, 1, 64},
    {"depthwise 28x28x128", 32, 28, 28, 128, 3, 128, 1, KILN_PADDING_SAME, 1, 128},
    {"depthwise 14x14x256", 32, 14, 14, 256, 3, 256, 1, KILN_PADDING_SAME, 1, 256},
    {"depthwise 7x7x512", 32, 7, 7, 512, 3, 512, 1, KILN_PADDING_SAME, 1, 512},
    {"depthwise x2 28x28x64", 32, 28, 28, 64, 3, 128, 1, KILN_PADDING_SAME, 1, 64},
    {"groups 4 28x28x128", 32, 28, 28, 128, 3, 128, 1, KILN_PADDING_SAME, 1, 4},
    {"groups 32 14x14x256", 32, 14, 14, 256, 3, 256, 1, KILN_PADDING_SAME, 1, 32},
};

typedef struct gemm_shape {
    const char *what;
    int m, n, k;
    bool ta, tb;
} gemm_shape;

/* C (m, n) = op(A) op(B): the Dense layers' three products, and im2col's forward product */
static const gemm_shape gemms[] = {
    {"seed-cnn 28x28x1 dense fwd", 32, 64, 5408, false, false},
    {"seed-cnn 28x28x1 dense dx", 32, 5408, 64, false, true},
    {"seed-cnn 28x28x1 dense dW", 5408, 64, 32, true, false},
    {"seed-cnn 32x32x3 dense fwd", 32, 64, 7200, false, false},
    {"seed-cnn 32x32x3 dense dx", 32, 7200, 64, false, true},
    {"seed-cnn 32x32x3 dense dW", 7200, 64, 32, true, false},
    {"resnet20 dense fwd", 128, 10, 64, false, false},
    {"im2col seed-cnn 32x32x3 fwd", 28800, 32, 27, false, false},
    {"im2col resnet20 stage 1 fwd", 131072, 16, 144, false, false},
    {"im2col resnet20 stage 2 fwd", 32768, 32, 288, false, false},
    {"im2col resnet20 stage 3 fwd", 8192, 64, 576, false, false},
};

typedef struct conv_call {
    kiln_tensor *x, *w, *b, *y, *dx, *dw, *db;
    kiln_conv2d_params p;
    int dir;
} conv_call;

static kiln_status conv_run(void *ctx) {
    conv_call *c = ctx;
    if (c->dir == 0) return kiln_conv2d(c->x, c->w, c->b, &c->p, c->y);
    if (c->dir == 1) return kiln_conv2d_backward_data(c->y, c->w, &c->p, c->dx);
    return kiln_conv2d_backward_filter(c->x, c->y, &c->p, c->dw, c->db);
}

/* the median of reps timed calls after two warm-ups; *min the fastest */
static double median_of(bench_fn fn, void *ctx, int reps, double *min, kiln_status *s) {
    double t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < 2 && *s == KILN_OK; i++) *s = fn(ctx);
    for (int i = 0; i < reps && *s == KILN_OK; i++) {
        double t0 = bench_now_ms();
        *s = fn(ctx);
        t[i] = bench_now_ms() - t0;
    }
    return *s == KILN_OK ? bench_median(t, reps, min, NULL) : -1.0;
}

static kiln_status filled(kiln_backend *be, int nd, const int64_t *shape, kiln_tensor **t) {
    KILN_TRY(kiln_tensor_new(be, KILN_F32, nd, shape, NULL, t));
    return kiln_fill(*t, 0.25f);
}

/* the tensors of shape s's three passes on backend be, filled with 0.25 */
static kiln_status conv_alloc(kiln_backend *be, const conv_shape *s, conv_call *c) {
    int g = s->groups > 1 ? s->groups : 1;
    *c = (conv_call){.p = {s->stride, s->stride, 1, 1, s->pad, KILN_MATH_STRICT, g}};
    int64_t xs[4] = {s->n, s->h, s->w, s->c}, ws[4] = {s->k, s->k, s->c / g, s->oc}, ys[4];
    KILN_TRY(kiln_conv2d_output_shape(xs, ws, &c->p, ys));
    kiln_status st = filled(be, 4, xs, &c->x);
    if (st == KILN_OK) st = filled(be, 4, ws, &c->w);
    if (st == KILN_OK) st = filled(be, 1, &s->oc, &c->b);
    if (st == KILN_OK) st = filled(be, 4, ys, &c->y);
    if (st == KILN_OK) st = filled(be, 4, xs, &c->dx);
    if (st == KILN_OK) st = filled(be, 4, ws, &c->dw);
    if (st == KILN_OK) st = filled(be, 1, &s->oc, &c->db);
    return st;
}

static void conv_free(conv_call *c) {
    kiln_tensor *all[] = {c->x, c->w, c->b, c->y, c->dx, c->dw, c->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kiln_tensor_free(all[i]);
}

/* median ms of the three passes of shape s on backend be */
static kiln_status conv_times(kiln_backend *be, const conv_shape *s, int reps, double ms[3], double min[3]) {
    conv_call c;
    kiln_status st = conv_alloc(be, s, &c);
    for (c.dir = 0; c.dir < 3 && st == KILN_OK; c.dir++) ms[c.dir] = median_of(conv_run, &c, reps, &min[c.dir], &st);
    conv_free(&c);
    return st;
}

/* t filled with seeded values in [-1, 1) (an LCG; the same on every backend) */
static kiln_status seeded(kiln_tensor *t, uint64_t seed) {
    int64_t n = kiln_tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!v) return kiln_error(KILN_ERR_OOM, "kiln-bench conv: out of host memory");
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 40) / (double)(1ull << 23) - 1.0);
    }
    kiln_status s = kiln_tensor_set(t, v, sizeof(float) * (size_t)n);
    free(v);
    return s;
}

/* max |a - b| / max |b| over t's elements on both backends */
static kiln_status rel_diff(const kiln_tensor *a, const kiln_tensor *b, double *out) {
    size_t n = (size_t)kiln_tensor_numel(a), bytes = sizeof(float) * (n ? n : 1);
    float *va = malloc(bytes), *vb = malloc(bytes);
    kiln_status s = va && vb ? kiln_tensor_get(a, va, bytes) : kiln_error(KILN_ERR_OOM, "kiln-bench conv: out of host memory");
    if (s == KILN_OK) s = kiln_tensor_get(b, vb, bytes);
    double worst = 0, scale = 1e-30;
    for (size_t i = 0; s == KILN_OK && i < n; i++) {
        double d = fabs((double)va[i] - vb[i]);
        worst = d > worst ? d : worst;
        scale = fabs(vb[i]) > scale ? fabs(vb[i]) : scale;
    }
    *out = worst / scale;
    free(va), free(vb);
    return s;
}

/* how far shape s's y, dx and dw on backend dn lie from those on backend ref (the same inputs);
 * y is compared before dy overwrites it */
static kiln_status conv_diff(kiln_backend *dn, kiln_backend *ref, const conv_shape *s, double diff[3]) {
    conv_call a = {0}, b = {0};
    kiln_status st = conv_alloc(dn, s, &a);
    if (st == KILN_OK) st = conv_alloc(ref, s, &b);
    kiln_tensor *const *pa[] = {&a.x, &a.w, &a.b, &a.y}, *const *pb[] = {&b.x, &b.w, &b.b, &b.y};
    for (int i = 0; st == KILN_OK && i < 3; i++) st = seeded(*pa[i], (uint64_t)i + 1);
    for (int i = 0; st == KILN_OK && i < 3; i++) st = seeded(*pb[i], (uint64_t)i + 1);
    for (int d = 0; st == KILN_OK && d < 3; d++) {
        a.dir = b.dir = d;
        if (d == 1) st = seeded(*pa[3], 4);
        if (d == 1 && st == KILN_OK) st = seeded(*pb[3], 4);
        if (st == KILN_OK) st = conv_run(&a);
        if (st == KILN_OK) st = conv_run(&b);
        const kiln_tensor *oa[] = {a.y, a.dx, a.dw}, *ob[] = {b.y, b.dx, b.dw};
        if (st == KILN_OK) st = rel_diff(oa[d], ob[d], &diff[d]);
    }
    conv_free(&a), conv_free(&b);
    return st;
}

static kiln_status open_conv(const char *impl, kiln_backend **be) {
    setenv("KILN_CPU_CONV", impl, 1);
    kiln_status s = kiln_backend_init("cpu", be);
    unsetenv("KILN_CPU_CONV");
    return s;
}

/* one row per pass of shape c: the oneDNN path (a) against the other (b), and with diff the
 * oneDNN path's distance from the other's results */
static void conv_rows(const conv_shape *c, const double a[3], const double am[3], const double b[3],
                      const double bm[3], const double *diff) {
    static const char *const pass[] = {"fwd", "bwd data", "bwd filter"};
    for (int d = 0; d < 3; d++) {
        printf("| %s (%lld, %lld, %lld, %lld) -> %lldx%lld, %lld, /%d", c->model, (long long)c->n, (long long)c->h,
               (long long)c->w, (long long)c->c, (long long)c->k, (long long)c->k, (long long)c->oc, c->stride);
        if (c->groups > 1) printf(", groups %d", c->groups);
        printf(" | %d | %s | %.3f (%.3f) | %.3f (%.3f) | %.2f (%.2f) |", c->count, pass[d], a[d], am[d], b[d], bm[d],
               b[d] / a[d], bm[d] / am[d]);
        if (diff) printf(" %.1e |", diff[d]);
        printf("\n");
    }
    fflush(stdout);
}

/* the table of n shapes: oneDNN against im2col (plain) or the direct loops (grouped) */
static kiln_status conv_table(int reps, const conv_shape *rows, size_t n, bool grouped) {
    kiln_backend *dn, *ic;
    KILN_TRY(open_conv("onednn", &dn));
    kiln_status s = open_conv("im2col", &ic);
    const char *other = grouped ? "direct loops" : "im2col";
    printf("| shape (N, H, W, C) -> k x k, OC, stride | layers | pass | oneDNN ms median (min) | %s ms median (min) | %s / oneDNN (min) |%s\n"
           "|---|---:|---|---:|---:|---:|%s\n",
           other, other, grouped ? " oneDNN vs direct loops (max diff / max) |" : "", grouped ? "---:|" : "");
    double tot[2] = {0, 0};
    for (size_t i = 0; s == KILN_OK && i < n; i++) {
        const conv_shape *c = &rows[i];
        double a[3], b[3], am[3], bm[3], diff[3];
        s = conv_times(dn, c, reps, a, am);
        if (s == KILN_OK) s = conv_times(ic, c, reps, b, bm);
        if (s == KILN_OK && grouped) s = conv_diff(dn, ic, c, diff);
        if (s == KILN_OK) conv_rows(c, a, am, b, bm, grouped ? diff : NULL);
        for (int d = 0; s == KILN_OK && d < 3; d++)
            if (!strncmp(c->model, "resnet20", 8)) tot[0] += c->count * am[d], tot[1] += c->count * bm[d];
    }
    if (s == KILN_OK && !grouped)
        printf("\nResNet-20's 19 convolutions, all three passes (a training step's conv time, sums of minima): oneDNN %.1f ms, im2col %.1f ms\n\n",
               tot[0], tot[1]);
    if (s == KILN_OK && grouped) printf("\n");
    kiln_backend_free(dn);
    kiln_backend_free(ic);
    return s;
}

/* OpenBLAS through kiln_gemm (the CPU backend's GEMM op) */
typedef struct blas_call {
    kiln_tensor *a, *b, *c;
    bool ta, tb;
} blas_call;

static kiln_status blas_run(void *ctx) {
    blas_call *g = ctx;
    return kiln_gemm(g->a, g->ta, g->b, g->tb, 1.0f, 0.0f, g->c, KILN_MATH_STRICT);
}

static kiln_status gemm_row(kiln_backend *be, const gemm_shape *g, int reps) {
    int64_t as[2] = {g->ta ? g->k : g->m, g->ta ? g->m : g->k}, bs[2] = {g->tb ? g->n : g->k, g->tb ? g->k : g->n};
    int64_t cs[2] = {g->m, g->n};
    blas_call b = {.ta = g->ta, .tb = g->tb};
    kiln_status s = filled(be, 2, as, &b.a);
    if (s == KILN_OK) s = filled(be, 2, bs, &b.b);
    if (s == KILN_OK) s = filled(be, 2, cs, &b.c);
    double bmin = 0, dmin = 0, blas = s == KILN_OK ? median_of(blas_run, &b, reps, &bmin, &s) : -1.0, dn = -1.0;
    kiln_tensor_free(b.a), kiln_tensor_free(b.b), kiln_tensor_free(b.c);
    bench_dnnl *d = NULL;
    kiln_status ds = s == KILN_OK ? bench_dnnl_gemm_new(g->m, g->n, g->k, g->ta, g->tb, &d) : s;
    if (ds == KILN_OK) dn = median_of(bench_dnnl_run, d, reps, &dmin, &ds);
    bench_dnnl_free(d);
    if (s != KILN_OK) return s;
    printf("| %s | %d x %d x %d%s%s | %.3f (%.3f) |", g->what, g->m, g->n, g->k, g->ta ? ", A^T" : "", g->tb ? ", B^T" : "",
           blas, bmin);
    if (ds == KILN_OK) printf(" %.3f (%.3f) | %.2f (%.2f) |\n", dn, dmin, blas / dn, bmin / dmin);
    else printf(" - | %s |\n", kiln_last_error());
    fflush(stdout);
    return KILN_OK;
}

int bench_conv_main(int argc, char **argv) {
    int reps = 7;
    bool grouped_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: kiln-bench conv [--reps N] [--threads N] [--grouped]   (median of N, default 7;\n"
                   "       --grouped: only the grouped / depthwise table)\n");
            return 0;
        }
        if (!strcmp(argv[i], "--grouped")) {
            grouped_only = true;
            continue;
        }
        if (strcmp(argv[i], "--reps") || i + 1 >= argc || !bench_parse_int("--reps", argv[i + 1], 1, 64, &reps)) {
            fprintf(stderr, "kiln-bench conv: unknown or malformed option %s\n", argv[i]);
            return 2;
        }
        i++;
    }
    printf("# kiln-bench conv: %d threads, median of %d, commit %s\n\n", kiln_threads_get(), reps, bench_commit());
    kiln_status s = grouped_only ? KILN_OK : conv_table(reps, shapes, sizeof shapes / sizeof shapes[0], false);
    if (s == KILN_OK) s = conv_table(reps, grouped_shapes, sizeof grouped_shapes / sizeof grouped_shapes[0], true);
    if (s == KILN_OK && grouped_only) return 0;
    kiln_backend *be; /* kiln_gemm on OpenBLAS: the path oneDNN's matmul replaced */
    setenv("KILN_CPU_GEMM", "openblas", 1);
    if (s == KILN_OK) s = kiln_backend_init("cpu", &be);
    unsetenv("KILN_CPU_GEMM");
    if (s != KILN_OK) {
        fprintf(stderr, "kiln-bench conv: %s\n", kiln_last_error());
        return 1;
    }
    printf("| GEMM | m x n x k | OpenBLAS ms median (min) | oneDNN matmul ms median (min) | OpenBLAS / oneDNN (min) |\n"
           "|---|---|---:|---:|---:|\n");
    for (size_t i = 0; s == KILN_OK && i < sizeof gemms / sizeof gemms[0]; i++) s = gemm_row(be, &gemms[i], reps);
    kiln_backend_free(be);
    if (s != KILN_OK) fprintf(stderr, "kiln-bench conv: %s\n", kiln_last_error());
    return s == KILN_OK ? 0 : 1;
}
