/* conv_oracle.c: Conv2D's float64 oracle and check (conv_oracle.h). */
#include <stdio.h>
#include <stdlib.h>

#include "conv_oracle.h"

void kt_ref_axis(int64_t in, int64_t k, int s, int d, kiln_padding pad, int64_t *out, int64_t *before) {
    int64_t eff = (k - 1) * d + 1;
    *out = pad == KILN_PADDING_SAME ? (in + s - 1) / s : (in - eff) / s + 1;
    int64_t total = (*out - 1) * s + eff - in;
    *before = pad == KILN_PADDING_SAME && total > 0 ? total / 2 : 0;
}

typedef struct conv_ref {
    const kt_conv_case *cfg;
    int64_t oh, ow, pt, pl;
    double *x, *w, *b, *dy; /* b NULL without bias; dy weighs the loss */
    double *y;              /* scratch output */
} conv_ref;

/* y[n,i,j,o] = b[o] + sum_{ky,kx,ci} x[n, i sh - pt + ky dh, j sw - pl + kx dw, (o / og) cg + ci]
 * w[ky,kx,ci,o], with cg = c / groups input and og = oc / groups output channels per group */
static void conv_ref_forward(const conv_ref *r) {
    const kt_conv_case *k = r->cfg;
    int64_t cg = k->c / k->groups, og = k->oc / k->groups;
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t i = 0; i < r->oh; i++)
            for (int64_t j = 0; j < r->ow; j++)
                for (int64_t o = 0; o < k->oc; o++) {
                    double s = r->b ? r->b[o] : 0.0;
                    for (int64_t ky = 0; ky < k->kh; ky++)
                        for (int64_t kx = 0; kx < k->kw; kx++) {
                            int64_t ih = i * k->sh - r->pt + ky * k->dh, iw = j * k->sw - r->pl + kx * k->dw;
                            if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w) continue;
                            for (int64_t ci = 0; ci < cg; ci++)
                                s += r->x[((n * k->h + ih) * k->w + iw) * k->c + o / og * cg + ci] *
                                     r->w[((ky * k->kw + kx) * cg + ci) * k->oc + o];
                        }
                    r->y[((n * r->oh + i) * r->ow + j) * k->oc + o] = s;
                }
}

static double conv_ref_loss(void *ctx) {
    conv_ref *r = ctx;
    conv_ref_forward(r);
    return kt_dot_f64(r->y, r->dy, r->cfg->n * r->oh * r->ow * r->cfg->oc);
}

/* t moved to backend be */
static kiln_tensor *moved(kiln_backend *be, kiln_tensor *t) {
    if (!t) return t;
    kiln_tensor *c = kt_clone(be, t);
    kiln_tensor_free(t);
    return c;
}

/* one gradient (got) against central differences of the loss in p (n values) */
static void expect_fd(conv_ref *r, const kiln_tensor *got, double *p, int64_t n, double tol, const char *label,
                      const char *which) {
    double *want = kt_zeros_f64(n);
    kt_fd_grad(conv_ref_loss, r, p, n, 1e-3, want);
    char what[160];
    snprintf(what, sizeof what, "%s %s: %s", label, r->cfg->name, which);
    kt_expect_tensor_f64(what, got, want, tol);
    free(want);
}

void kt_conv_oracle_check(const kt_conv_case *k, kiln_backend *be, uint64_t seed, double tol, const char *label) {
    kiln_conv2d_params p = {k->sh, k->sw, k->dh, k->dw, k->pad, KILN_MATH_STRICT, k->groups};
    conv_ref r = {.cfg = k};
    kt_ref_axis(k->h, k->kh, k->sh, k->dh, k->pad, &r.oh, &r.pt);
    kt_ref_axis(k->w, k->kw, k->sw, k->dw, k->pad, &r.ow, &r.pl);
    int64_t xs[4] = {k->n, k->h, k->w, k->c}, ws[4] = {k->kh, k->kw, k->c / k->groups, k->oc};
    int64_t ys[4] = {k->n, r.oh, r.ow, k->oc}, bs[1] = {k->oc}, got[4];
    cr_assert_eq(kiln_conv2d_output_shape(xs, ws, &p, got), KILN_OK, "%s", kiln_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_eq(got[i], ys[i], "%s: output dim %d is %lld, want %lld", k->name, i, (long long)got[i],
                     (long long)ys[i]);
    kt_rng rng;
    kt_rng_seed(&rng, seed);
    kiln_tensor *x = kt_rand_f32(&rng, 4, xs, -1, 1), *w = kt_rand_f32(&rng, 4, ws, -1, 1);
    kiln_tensor *b = k->bias ? kt_rand_f32(&rng, 1, bs, -1, 1) : NULL, *dy = kt_rand_f32(&rng, 4, ys, -1, 1);
    kiln_tensor *y = kt_poisoned_f32(4, ys), *dx = kt_poisoned_f32(4, xs), *dw = kt_poisoned_f32(4, ws);
    kiln_tensor *db = k->bias ? kt_poisoned_f32(1, bs) : NULL;
    x = moved(be, x), w = moved(be, w), b = moved(be, b), dy = moved(be, dy);
    y = moved(be, y), dx = moved(be, dx), dw = moved(be, dw), db = moved(be, db);
    r.x = kt_to_f64(x), r.w = kt_to_f64(w), r.b = b ? kt_to_f64(b) : NULL, r.dy = kt_to_f64(dy);
    r.y = kt_zeros_f64(kiln_tensor_numel(y));

    cr_assert_eq(kiln_conv2d(x, w, b, &p, y), KILN_OK, "%s", kiln_last_error());
    conv_ref_forward(&r);
    char what[160];
    snprintf(what, sizeof what, "%s %s: y", label, k->name);
    kt_expect_tensor_f64(what, y, r.y, tol);
    cr_assert_eq(kiln_conv2d_backward_data(dy, w, &p, dx), KILN_OK, "%s", kiln_last_error());
    expect_fd(&r, dx, r.x, kiln_tensor_numel(x), tol, label, "dx");
    cr_assert_eq(kiln_conv2d_backward_filter(x, dy, &p, dw, db), KILN_OK, "%s", kiln_last_error());
    expect_fd(&r, dw, r.w, kiln_tensor_numel(w), tol, label, "dw");
    if (b) expect_fd(&r, db, r.b, k->oc, tol, label, "db");

    free(r.x), free(r.w), free(r.b), free(r.dy), free(r.y);
    kiln_tensor_free(x), kiln_tensor_free(w), kiln_tensor_free(b), kiln_tensor_free(dy);
    kiln_tensor_free(y), kiln_tensor_free(dx), kiln_tensor_free(dw), kiln_tensor_free(db);
}
