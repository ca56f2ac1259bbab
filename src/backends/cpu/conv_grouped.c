/* cpu/conv_grouped.c: Conv2D with groups > 1 on the CPU (DepthwiseConv2D is groups = in):
 * direct loops over the kernel taps, every sum in double and rounded once. The kernel is Keras'
 * (kh, kw, in / groups, out); output channel o reads input channels g cg .. g cg + cg - 1 of its
 * group g = o / (out / groups), cg = in / groups.
 *   forward          y[n,i,j,o]   = b[o] + sum_{ky,kx,ci} x[n, ih, iw, g cg + ci] w[ky,kx,ci,o]
 *   backward data    dx[n,p,q,ch] = sum over the taps and outputs (i, j, o of ch's group) that
 *                    read it of dy[n,i,j,o] w[ky,kx,ci,o] (gathered per element of dx)
 *   backward filter  dw[ky,kx,ci,o] = sum_{n,i,j} x[n, ih, iw, g cg + ci] dy[n,i,j,o];
 *                    db[o] = sum of dy
 * with ih = i sh - pt + ky dh, iw = j sw - pl + kx dw (taps outside the image read zeros).
 * Forward and backward data compute each output element in one thread (OpenMP over images and
 * rows), the backward filter sums serially: the same bits for any thread count. */
#include <stdlib.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"

typedef struct gdims {
    int64_t n, h, w, c;   /* the image (N, H, W, C) */
    int64_t kh, kw, cg;   /* the kernel (kh, kw, C / groups, OC) */
    int64_t oc, og;       /* output channels, per group */
    int64_t oh, ow;       /* the output image (N, OH, OW, OC) */
    int64_t sh, sw, dh, dw, pt, pl;
} gdims;

static gdims gdims_of(const kiln_conv2d_args *a, const kiln_tensor *x, const kiln_tensor *w,
                      const kiln_tensor *y) {
    gdims d = {.n = x->shape[0], .h = x->shape[1], .w = x->shape[2], .c = x->shape[3],
               .kh = w->shape[0], .kw = w->shape[1], .cg = w->shape[2], .oc = w->shape[3],
               .oh = y->shape[1], .ow = y->shape[2], .sh = a->stride_h, .sw = a->stride_w,
               .dh = a->dilation_h, .dw = a->dilation_w, .pt = a->pad_top, .pl = a->pad_left};
    d.og = d.oc / a->groups;
    return d;
}

/* the offset of pixel (n, ih, iw) of the image read by output (i, j) at tap (ky, kx), or -1 */
static int64_t tap(const gdims *d, int64_t n, int64_t i, int64_t j, int64_t ky, int64_t kx) {
    int64_t ih = i * d->sh - d->pt + ky * d->dh, iw = j * d->sw - d->pl + kx * d->dw;
    if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) return -1;
    return ((n * d->h + ih) * d->w + iw) * d->c;
}

/* y = x * w + b */
static void forward(const kiln_conv2d_args *a) {
    gdims d = gdims_of(a, a->x, a->w, a->y);
    const float *x = a->x->data, *w = a->w->data, *b = a->b ? a->b->data : NULL;
    float *y = a->y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t i = 0; i < d.oh; i++)
            for (int64_t j = 0; j < d.ow; j++)
                for (int64_t o = 0; o < d.oc; o++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t ky = 0; ky < d.kh; ky++)
                        for (int64_t kx = 0; kx < d.kw; kx++) {
                            int64_t p = tap(&d, n, i, j, ky, kx);
                            if (p < 0) continue;
                            const float *xp = x + p + o / d.og * d.cg;
                            const float *wp = w + (ky * d.kw + kx) * d.cg * d.oc + o;
                            for (int64_t ci = 0; ci < d.cg; ci++) s += (double)xp[ci] * wp[ci * d.oc];
                        }
                    y[((n * d.oh + i) * d.ow + j) * d.oc + o] = (float)s;
                }
}

/* the output index t of one axis whose tap k reads input position p, or -1 */
static int64_t source(int64_t p, int64_t k, int64_t s, int64_t dil, int64_t pad, int64_t out) {
    int64_t t = p + pad - k * dil;
    if (t < 0 || t % s) return -1;
    return t / s < out ? t / s : -1;
}

/* dx from dy and w, one element of dx at a time */
static void backward_data(const kiln_conv2d_args *a) {
    gdims d = gdims_of(a, a->dx, a->w, a->dy);
    const float *dy = a->dy->data, *w = a->w->data;
    float *dx = a->dx->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t p = 0; p < d.h; p++)
            for (int64_t q = 0; q < d.w; q++)
                for (int64_t ch = 0; ch < d.c; ch++) {
                    int64_t g = ch / d.cg, ci = ch % d.cg;
                    double s = 0.0;
                    for (int64_t ky = 0; ky < d.kh; ky++) {
                        int64_t i = source(p, ky, d.sh, d.dh, d.pt, d.oh);
                        for (int64_t kx = 0; kx < d.kw && i >= 0; kx++) {
                            int64_t j = source(q, kx, d.sw, d.dw, d.pl, d.ow);
                            if (j < 0) continue;
                            const float *gp = dy + ((n * d.oh + i) * d.ow + j) * d.oc;
                            const float *wp = w + ((ky * d.kw + kx) * d.cg + ci) * d.oc;
                            for (int64_t o = g * d.og; o < (g + 1) * d.og; o++) s += (double)gp[o] * wp[o];
                        }
                    }
                    dx[((n * d.h + p) * d.w + q) * d.c + ch] = (float)s;
                }
}

/* dw (and db) from x and dy, summed in double */
static kiln_status backward_filter(const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    gdims d = gdims_of(a, a->x, a->dw, a->dy);
    const float *x = a->x->data, *dy = a->dy->data;
    int64_t nw = d.kh * d.kw * d.cg * d.oc;
    double *acc = calloc((size_t)(nw + d.oc), sizeof *acc), *bacc = acc + nw;
    if (!acc)
        return kiln_error(KILN_ERR_OOM, "kiln_%s: out of host memory for %lld accumulators",
                          kiln_op_name(op->type), (long long)(nw + d.oc));
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t i = 0; i < d.oh; i++)
            for (int64_t j = 0; j < d.ow; j++) {
                const float *gp = dy + ((n * d.oh + i) * d.ow + j) * d.oc;
                for (int64_t o = 0; o < d.oc; o++) bacc[o] += gp[o];
                for (int64_t ky = 0; ky < d.kh; ky++)
                    for (int64_t kx = 0; kx < d.kw; kx++) {
                        int64_t p = tap(&d, n, i, j, ky, kx);
                        if (p < 0) continue;
                        double *ap = acc + (ky * d.kw + kx) * d.cg * d.oc;
                        for (int64_t o = 0; o < d.oc; o++) {
                            const float *xp = x + p + o / d.og * d.cg;
                            for (int64_t ci = 0; ci < d.cg; ci++) ap[ci * d.oc + o] += (double)xp[ci] * gp[o];
                        }
                    }
            }
    float *dw = a->dw->data;
    for (int64_t k = 0; k < nw; k++) dw[k] = (float)acc[k];
    if (a->db)
        for (int64_t o = 0; o < d.oc; o++) ((float *)a->db->data)[o] = (float)bacc[o];
    free(acc);
    return KILN_OK;
}

kiln_status kiln_cpu_conv2d_grouped(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_CONV2D: forward(&op->conv); return KILN_OK;
    case KILN_OP_CONV2D_BACK_DATA: backward_data(&op->conv); return KILN_OK;
    default: return backward_filter(op);
    }
}
