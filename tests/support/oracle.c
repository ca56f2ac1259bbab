/* oracle.c: the float64-oracle tests' helpers (oracle.h). */
#include <stdlib.h>
#include "oracle.h"

kiln_tensor *kt_rand_f32(kt_rng *r, int ndim, const int64_t *shape, double lo, double hi) {
    kiln_tensor *t = kt_new(kt_cpu(), KILN_F32, ndim, shape);
    kt_fill_random(t, r, lo, hi);
    return t;
}

kiln_tensor *kt_poisoned_f32(int ndim, const int64_t *shape) {
    kiln_tensor *t = kt_new(kt_cpu(), KILN_F32, ndim, shape);
    kt_poison(t);
    return t;
}

double *kt_to_f64(const kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    float *f = kt_get_f32(t);
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert_not_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

double *kt_zeros_f64(int64_t n) {
    double *d = calloc((size_t)(n ? n : 1), sizeof *d);
    cr_assert_not_null(d);
    return d;
}

void kt_expect_tensor_f64(const char *what, const kiln_tensor *got, const double *want, double tol) {
    float *g = kt_get_f32(got);
    kt_expect_close_f64(what, g, want, kiln_tensor_numel(got), tol);
    free(g);
}

void kt_fd_grad(kt_loss_fn loss, void *ctx, double *p, int64_t n, double h, double *grad) {
    for (int64_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double up = loss(ctx);
        p[i] = keep - h;
        double down = loss(ctx);
        p[i] = keep;
        grad[i] = (up - down) / (2.0 * h);
    }
}

double kt_dot_f64(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
