/* cpu/conv.c: Conv2D on the CPU: im2col + OpenBLAS sgemm, NHWC, with the kernel in Keras'
 * (kh, kw, in, out) layout, which read row-major is the (K = kh kw in, out) matrix the patch
 * matrix multiplies, so no transpose is needed anywhere.
 *   forward          y (rows, out)  = col (rows, K) . W (K, out) + b
 *   backward data    dcol (rows, K) = dy (rows, out) . W^T, then col2im adds dcol into dx
 *   backward filter  dW (K, out)   += col^T . dy, summed over batch chunks; db = sum of dy rows
 * with rows = images x OH x OW. Images are taken in chunks so the patch matrix stays under
 * CONV_CHUNK_BYTES (at least one image a chunk). A 1x1, stride-1 convolution without padding
 * uses x itself as the patch matrix. The patch matrix and the bias gradient's accumulators live
 * in the backend's scratch slots (memory.c). When oneDNN is built in, conv_dnnl.c runs the
 * convolution instead and this file keeps db and the shapes oneDNN declines; grouped
 * convolutions it declines run conv_grouped.c's direct loops. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"
#include "simd.h"

#define CONV_CHUNK_BYTES ((size_t)64 << 20)

typedef struct conv_dims {
    int64_t n, h, w, c;   /* x (N, H, W, C) */
    int64_t kh, kw, oc;   /* w (kh, kw, C, OC) */
    int64_t oh, ow;       /* y (N, OH, OW, OC) */
    int sh, sw, dh, dw, pt, pl;
    int64_t k;            /* kh kw C: columns of the patch matrix */
    int64_t rows_per_image; /* OH OW */
    bool direct;          /* 1x1, stride 1, no padding: x is the patch matrix */
} conv_dims;

/* x, w, y: the image, kernel and output-image tensors of the op (x or dx, w or dw, y or dy) */
static conv_dims dims_of(const kiln_conv2d_args *a, const kiln_tensor *x, const kiln_tensor *w,
                         const kiln_tensor *y) {
    conv_dims d = {
        .n = x->shape[0], .h = x->shape[1], .w = x->shape[2], .c = x->shape[3],
        .kh = w->shape[0], .kw = w->shape[1], .oc = w->shape[3],
        .oh = y->shape[1], .ow = y->shape[2],
        .sh = a->stride_h, .sw = a->stride_w, .dh = a->dilation_h, .dw = a->dilation_w,
        .pt = a->pad_top, .pl = a->pad_left,
    };
    d.k = d.kh * d.kw * d.c;
    d.rows_per_image = d.oh * d.ow;
    d.direct = d.kh == 1 && d.kw == 1 && d.sh == 1 && d.sw == 1 && d.pt == 0 && d.pl == 0;
    return d;
}

/* Walks the patch matrix of images [n0, n0 + nb): row (n, oh, ow), column block (ky, kx) of C
 * values <-> x[n, oh sh - pt + ky dh, ow sw - pl + kx dw, :]. gather: col = x (zeros where the
 * window leaves the image: im2col); otherwise x += col (col2im, out-of-image parts dropped). */
static void patch_walk(const conv_dims *d, int64_t n0, int64_t nb, float *col, float *x,
                       bool gather) {
    /* images are independent (distinct patch rows, distinct parts of x): one per thread */
#pragma omp parallel for schedule(static) if (nb > 1 && nb * d->rows_per_image * d->k > (1 << 16))
    for (int64_t n = n0; n < n0 + nb; n++) {
        int64_t r = (n - n0) * d->rows_per_image;
        for (int64_t oh = 0; oh < d->oh; oh++)
            for (int64_t ow = 0; ow < d->ow; ow++, r++)
                for (int64_t ky = 0; ky < d->kh; ky++) {
                    int64_t ih = oh * d->sh - d->pt + ky * d->dh;
                    for (int64_t kx = 0; kx < d->kw; kx++) {
                        int64_t iw = ow * d->sw - d->pl + kx * d->dw;
                        float *cp = col + r * d->k + (ky * d->kw + kx) * d->c;
                        bool inside = ih >= 0 && ih < d->h && iw >= 0 && iw < d->w;
                        float *xp = inside ? x + ((n * d->h + ih) * d->w + iw) * d->c : NULL;
                        if (gather && inside) memcpy(cp, xp, (size_t)d->c * sizeof *cp);
                        else if (gather) memset(cp, 0, (size_t)d->c * sizeof *cp);
                        else if (inside)
                            for (int64_t ci = 0; ci < d->c; ci++) xp[ci] += cp[ci];
                    }
                }
    }
}

/* images per chunk and the patch buffer (NULL for a direct convolution) */
static kiln_status chunk_buffer(kiln_backend *be, const conv_dims *d, int64_t *nb, float **col) {
    *col = NULL;
    size_t per_image = (size_t)d->rows_per_image * (size_t)d->k * sizeof(float);
    int64_t fit = per_image ? (int64_t)(CONV_CHUNK_BYTES / per_image) : d->n;
    *nb = fit < 1 ? 1 : fit > d->n ? d->n : fit;
    if (d->direct) { /* sgemm's row count is an int */
        int64_t cap = INT32_MAX / (d->rows_per_image ? d->rows_per_image : 1);
        *nb = d->n < cap ? d->n : cap < 1 ? 1 : cap;
        return KILN_OK;
    }
    return kiln_cpu_scratch(be, KILN_CPU_SCRATCH_COL, per_image * (size_t)*nb, (void **)col);
}

/* y (N, OH, OW, OC) = x * w + b */
static kiln_status conv_forward(kiln_backend *be, const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    const kiln_tensor *xt = a->x, *wt = a->w, *bt = a->b;
    kiln_tensor *yt = a->y;
    conv_dims d = dims_of(a, xt, wt, yt);
    float *y = yt->data, *col;
    const float *x = xt->data, *w = wt->data, *b = bt ? bt->data : NULL;
    int64_t nb;
    KILN_TRY(chunk_buffer(be, &d, &nb, &col));
    int64_t rows = d.n * d.rows_per_image;
    for (int64_t r = 0; r < rows; r++) /* the bias (or 0) first; sgemm then adds (beta 1) */
        for (int64_t o = 0; o < d.oc; o++) y[r * d.oc + o] = b ? b[o] : 0.0f;
    for (int64_t n0 = 0; n0 < d.n; n0 += nb) {
        int64_t cnt = n0 + nb <= d.n ? nb : d.n - n0, m = cnt * d.rows_per_image;
        const float *p = x + n0 * d.h * d.w * d.c;
        if (!d.direct) {
            patch_walk(&d, n0, cnt, col, (float *)x, true);
            p = col;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d.oc, (int)d.k, 1.0f,
                    p, (int)d.k, w, (int)d.oc, 1.0f, y + n0 * d.rows_per_image * d.oc, (int)d.oc);
    }
    return KILN_OK;
}

/* dx (N, H, W, C) from dy (N, OH, OW, OC) and w */
static kiln_status conv_backward_data(kiln_backend *be, const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    const kiln_tensor *dyt = a->dy, *wt = a->w;
    kiln_tensor *dxt = a->dx;
    conv_dims d = dims_of(a, dxt, wt, dyt);
    float *dx = dxt->data, *col;
    const float *dy = dyt->data, *w = wt->data;
    int64_t nb;
    KILN_TRY(chunk_buffer(be, &d, &nb, &col));
    memset(dx, 0, kiln_tensor_nbytes(dxt));
    for (int64_t n0 = 0; n0 < d.n; n0 += nb) {
        int64_t cnt = n0 + nb <= d.n ? nb : d.n - n0, m = cnt * d.rows_per_image;
        float *c = d.direct ? dx + n0 * d.h * d.w * d.c : col;
        if (!d.direct) memset(c, 0, (size_t)(m * d.k) * sizeof *c);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)d.k, (int)d.oc, 1.0f,
                    dy + n0 * d.rows_per_image * d.oc, (int)d.oc, w, (int)d.oc, 1.0f, c, (int)d.k);
        if (!d.direct) patch_walk(&d, n0, cnt, col, dx, false);
    }
    return KILN_OK;
}

/* dw (kh, kw, C, OC) and db (OC) from x and dy */
static kiln_status conv_backward_filter(kiln_backend *be, const kiln_op *op) {
    const kiln_conv2d_args *a = &op->conv;
    const kiln_tensor *xt = a->x, *dyt = a->dy;
    kiln_tensor *dwt = a->dw;
    conv_dims d = dims_of(a, xt, dwt, dyt);
    float *dw = dwt->data, *col;
    const float *x = xt->data, *dy = dyt->data;
    int64_t nb;
    KILN_TRY(chunk_buffer(be, &d, &nb, &col));
    memset(dw, 0, kiln_tensor_nbytes(dwt));
    for (int64_t n0 = 0; n0 < d.n; n0 += nb) {
        int64_t cnt = n0 + nb <= d.n ? nb : d.n - n0, m = cnt * d.rows_per_image;
        const float *p = x + n0 * d.h * d.w * d.c;
        if (!d.direct) {
            patch_walk(&d, n0, cnt, col, (float *)x, true);
            p = col;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d.k, (int)d.oc, (int)m, 1.0f, p,
                    (int)d.k, dy + n0 * d.rows_per_image * d.oc, (int)d.oc, 1.0f, dw, (int)d.oc);
    }
    return KILN_OK;
}

/* channels [o0, o0 + w) of db, w <= 16: each channel's rows added in order in double (a local
 * accumulator per channel: a fixed-width inner loop the compiler vectorises at every level) */
KILN_SIMD_INLINE void bias_rows_body(const float *dy, int64_t rows, int64_t oc, int64_t o0, int64_t w, float *db) {
    double s[16] = {0};
    if (w == 16)
        for (int64_t r = 0; r < rows; r++)
            for (int o = 0; o < 16; o++) s[o] += (double)dy[r * oc + o0 + o];
    else
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < w; o++) s[o] += (double)dy[r * oc + o0 + o];
    for (int64_t o = 0; o < w; o++) db[o0 + o] = (float)s[o];
}
KILN_SIMD_CLONES(bias_rows, (const float *dy, int64_t rows, int64_t oc, int64_t o0, int64_t w, float *db),
                 (dy, rows, oc, o0, w, db))

/* db (OC) = the sum of dy's rows, accumulated in double, row by row in order whatever the
 * thread count: the threads split the channels (blocks of up to 16, at least one per thread) */
static void conv_bias_grad(const kiln_op *op) {
    const kiln_tensor *dyt = op->conv.dy;
    kiln_tensor *dbt = op->conv.db;
    int64_t oc = dbt->shape[0], rows = kiln_tensor_numel(dyt) / (oc ? oc : 1), nt = kiln_threads_get();
    int64_t width = (oc + nt - 1) / nt < 16 ? (oc + nt - 1) / nt : 16, blocks = (oc + width - 1) / width;
    const float *dy = dyt->data;
    float *db = dbt->data;
#pragma omp parallel for schedule(static) if (blocks > 1 && rows * oc > (1 << 18))
    for (int64_t bk = 0; bk < blocks; bk++) {
        int64_t o0 = bk * width, w = o0 + width < oc ? width : oc - o0;
        bias_rows(dy, rows, oc, o0, w, db);
    }
}

kiln_status kiln_cpu_conv2d(kiln_backend *be, const kiln_op *op) {
    bool done = false;
    KILN_TRY(kiln_cpu_dnnl_conv2d(be, op, &done));
    if (!done && op->conv.groups > 1) return kiln_cpu_conv2d_grouped(op); /* db included */
    if (!done) switch (op->type) {
        case KILN_OP_CONV2D: KILN_TRY(conv_forward(be, op)); break;
        case KILN_OP_CONV2D_BACK_DATA: KILN_TRY(conv_backward_data(be, op)); break;
        default: KILN_TRY(conv_backward_filter(be, op)); break;
        }
    if (op->type == KILN_OP_CONV2D_BACK_FILTER && op->conv.db) conv_bias_grad(op);
    return KILN_OK;
}
