/* bench/conv_bench.c: `kiln-bench conv`: the CPU convolution's two paths on the Conv2D shapes of
 * the built-in models (seed-cnn on 28x28x1 and 32x32x3 at batch 32, ResNet-20 at batch 128):
 * forward, backward data and backward filter through kiln's ops on a CPU backend opened with
 * KILN_CPU_CONV=onednn and one with im2col; then the GEMMs of the models' Dense layers and of
 * im2col's patch products, OpenBLAS (kiln_gemm) against oneDNN's matmul. Median and minimum ms
 * of --reps after a warm-up (the minimum says more on a shared machine); Markdown on stdout
 * (docs/performance.md quotes it). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "error.h"

typedef struct conv_shape {
    const char *model;
    int64_t n, h, w, c, k, oc;
    int stride;
    kiln_padding pad;
    int count; /* how many layers of the model have this shape */
} conv_shape;

static const conv_shape shapes[] = {
    {"seed-cnn 28x28x1", 32, 28, 28, 1, 3, 32, 1, KILN_PADDING_VALID, 1},
    {"seed-cnn 32x32x3", 32, 32, 32, 3, 3, 32, 1, KILN_PADDING_VALID, 1},
    {"resnet20 stem", 128, 32, 32, 3, 3, 16, 1, KILN_PADDING_SAME, 1},
    {"resnet20 stage 1", 128, 32, 32, 16, 3, 16, 1, KILN_PADDING_SAME, 6},
    {"resnet20 stage 2 in", 128, 32, 32, 16, 3, 32, 2, KILN_PADDING_SAME, 1},
    {"resnet20 stage 2", 128, 16, 16, 32, 3, 32, 1, KILN_PADDING_SAME, 5},
    {"resnet20 stage 2 shortcut", 128, 32, 32, 16, 1, 32, 2, KILN_PADDING_SAME, 1},
    {"resnet20 stage 3 in", 128, 16, 16, 32, 3, 64, 2, KILN_PADDING_SAME, 1},
    {"resnet20 stage 3", 128, 8, 8, 64, 3, 64, 1, KILN_PADDING_SAME, 5},
    {"resnet20 stage 3 shortcut", 128, 16, 16, 32, 1, 64, 2, KILN_PADDING_SAME, 1},
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

/* median ms of the three passes of shape s on backend be */
static kiln_status conv_times(kiln_backend *be, const conv_shape *s, int reps, double ms[3], double min[3]) {
    conv_call c = {.p = {s->stride, s->stride, 1, 1, s->pad, KILN_MATH_STRICT, 1}};
    int64_t xs[4] = {s->n, s->h, s->w, s->c}, ws[4] = {s->k, s->k, s->c, s->oc}, ys[4];
    KILN_TRY(kiln_conv2d_output_shape(xs, ws, &c.p, ys));
    kiln_status st = filled(be, 4, xs, &c.x);
    if (st == KILN_OK) st = filled(be, 4, ws, &c.w);
    if (st == KILN_OK) st = filled(be, 1, &s->oc, &c.b);
    if (st == KILN_OK) st = filled(be, 4, ys, &c.y);
    if (st == KILN_OK) st = filled(be, 4, xs, &c.dx);
    if (st == KILN_OK) st = filled(be, 4, ws, &c.dw);
    if (st == KILN_OK) st = filled(be, 1, &s->oc, &c.db);
    for (c.dir = 0; c.dir < 3 && st == KILN_OK; c.dir++) ms[c.dir] = median_of(conv_run, &c, reps, &min[c.dir], &st);
    kiln_tensor *all[] = {c.x, c.w, c.b, c.y, c.dx, c.dw, c.db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) kiln_tensor_free(all[i]);
    return st;
}

static kiln_status open_conv(const char *impl, kiln_backend **be) {
    setenv("KILN_CPU_CONV", impl, 1);
    kiln_status s = kiln_backend_init("cpu", be);
    unsetenv("KILN_CPU_CONV");
    return s;
}

static kiln_status conv_table(int reps) {
    kiln_backend *dn, *ic;
    KILN_TRY(open_conv("onednn", &dn));
    kiln_status s = open_conv("im2col", &ic);
    printf("| shape (N, H, W, C) -> k x k, OC, stride | layers | pass | oneDNN ms median (min) | im2col ms median (min) | im2col / oneDNN (min) |\n"
           "|---|---:|---|---:|---:|---:|\n");
    static const char *const pass[] = {"fwd", "bwd data", "bwd filter"};
    double tot[2] = {0, 0};
    for (size_t i = 0; s == KILN_OK && i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *c = &shapes[i];
        double a[3], b[3], am[3], bm[3];
        s = conv_times(dn, c, reps, a, am);
        if (s == KILN_OK) s = conv_times(ic, c, reps, b, bm);
        for (int d = 0; s == KILN_OK && d < 3; d++) {
            printf("| %s (%lld, %lld, %lld, %lld) -> %lldx%lld, %lld, /%d | %d | %s | %.3f (%.3f) | %.3f (%.3f) | %.2f (%.2f) |\n",
                   c->model, (long long)c->n, (long long)c->h, (long long)c->w, (long long)c->c, (long long)c->k,
                   (long long)c->k, (long long)c->oc, c->stride, c->count, pass[d], a[d], am[d], b[d], bm[d],
                   b[d] / a[d], bm[d] / am[d]);
            if (!strncmp(c->model, "resnet20", 8)) tot[0] += c->count * am[d], tot[1] += c->count * bm[d];
        }
        fflush(stdout);
    }
    if (s == KILN_OK)
        printf("\nResNet-20's 19 convolutions, all three passes (a training step's conv time, sums of minima): oneDNN %.1f ms, im2col %.1f ms\n\n",
               tot[0], tot[1]);
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
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: kiln-bench conv [--reps N] [--threads N]   (median of N, default 7)\n");
            return 0;
        }
        if (strcmp(argv[i], "--reps") || i + 1 >= argc || !bench_parse_int("--reps", argv[i + 1], 1, 64, &reps)) {
            fprintf(stderr, "kiln-bench conv: unknown or malformed option %s\n", argv[i]);
            return 2;
        }
        i++;
    }
    printf("# kiln-bench conv: %d threads, median of %d, commit %s\n\n", kiln_threads_get(), reps, bench_commit());
    kiln_status s = conv_table(reps);
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
