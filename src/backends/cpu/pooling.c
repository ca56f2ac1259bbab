/* cpu/pooling.c: MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D on the CPU, NHWC.
 *
 * The arithmetic is the CUDA kernels' (src/backends/cuda/pooling.cu) step for step, so both
 * give the same bits: window sums in f32 in row-major window order, the max rule of
 * pool_window.h, and backward contributions added to each dx element in (oh, ow) order starting
 * from 0 (here by scattering window after window, on CUDA by gathering per element); the global
 * average sums in double in (h, w) order. */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h"
#include "op_args.h"
#include "pool_window.h"

/* y (N, OH, OW, C): window max (first maximal element) or mean of the in-range elements */
static void pool_forward(const kiln_pool2d_args *a, bool max) {
    const kiln_tensor *xt = a->x;
    kiln_tensor *yt = a->y;
    kiln_pool_dims d = kiln_pool_dims_of(&a->win, xt->shape, yt->shape);
    const float *x = xt->data;
    float *y = yt->data;
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t oh = 0; oh < d.oh; oh++)
            for (int64_t ow = 0; ow < d.ow; ow++) {
                int64_t r[4];
                kiln_pool_window(&d, oh, ow, r);
                float *yp = y + ((n * d.oh + oh) * d.ow + ow) * d.c;
                if (max) {
                    for (int64_t c = 0; c < d.c; c++) yp[c] = x[kiln_pool_argmax(x, &d, n, c, r)];
                    continue;
                }
                float count = (float)((r[1] - r[0]) * (r[3] - r[2]));
                for (int64_t iy = r[0]; iy < r[1]; iy++)
                    for (int64_t ix = r[2]; ix < r[3]; ix++) {
                        const float *xp = x + ((n * d.h + iy) * d.w + ix) * d.c;
                        bool first = iy == r[0] && ix == r[2];
                        for (int64_t c = 0; c < d.c; c++) yp[c] = first ? xp[c] : yp[c] + xp[c];
                    }
                for (int64_t c = 0; c < d.c; c++) yp[c] = yp[c] / count;
            }
}

/* dx (N, H, W, C) from dy (N, OH, OW, C): max sends each dy to its window's argmax in x;
 * average spreads dy / count over the window */
static void pool_backward(const kiln_pool2d_args *a, bool max) {
    const kiln_tensor *dyt = a->dy;
    kiln_tensor *dxt = a->dx;
    kiln_pool_dims d = kiln_pool_dims_of(&a->win, dxt->shape, dyt->shape);
    const float *x = max ? a->x->data : NULL, *dy = dyt->data;
    float *dx = dxt->data;
    memset(dx, 0, kiln_tensor_nbytes(dxt));
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t oh = 0; oh < d.oh; oh++)
            for (int64_t ow = 0; ow < d.ow; ow++) {
                int64_t r[4];
                kiln_pool_window(&d, oh, ow, r);
                const float *g = dy + ((n * d.oh + oh) * d.ow + ow) * d.c;
                if (max) {
                    for (int64_t c = 0; c < d.c; c++) dx[kiln_pool_argmax(x, &d, n, c, r)] += g[c];
                    continue;
                }
                float count = (float)((r[1] - r[0]) * (r[3] - r[2]));
                for (int64_t iy = r[0]; iy < r[1]; iy++)
                    for (int64_t ix = r[2]; ix < r[3]; ix++) {
                        float *p = dx + ((n * d.h + iy) * d.w + ix) * d.c;
                        for (int64_t c = 0; c < d.c; c++) p[c] += g[c] / count;
                    }
            }
}

/* y (N, C) = mean over H, W of x (N, H, W, C), summed in double in (h, w) order */
static kiln_status global_avg_forward(const kiln_pool2d_args *a) {
    const kiln_tensor *xt = a->x;
    int64_t n = xt->shape[0], hw = xt->shape[1] * xt->shape[2], c = xt->shape[3];
    const float *x = xt->data;
    float *y = a->y->data;
    double *acc = malloc((size_t)c * sizeof *acc);
    if (!acc)
        return kiln_error(KILN_ERR_OOM, "kiln_global_avg_pool2d: out of host memory for %lld accumulators",
                          (long long)c);
    for (int64_t b = 0; b < n; b++) {
        for (int64_t k = 0; k < c; k++) acc[k] = 0.0;
        for (int64_t p = 0; p < hw; p++)
            for (int64_t k = 0; k < c; k++) acc[k] += x[(b * hw + p) * c + k];
        for (int64_t k = 0; k < c; k++) y[b * c + k] = (float)(acc[k] / (double)hw);
    }
    free(acc);
    return KILN_OK;
}

/* dx (N, H, W, C) = dy (N, C) / (H W) */
static void global_avg_backward(const kiln_pool2d_args *a) {
    kiln_tensor *dxt = a->dx;
    int64_t n = dxt->shape[0], hw = dxt->shape[1] * dxt->shape[2], c = dxt->shape[3];
    const float *dy = a->dy->data;
    float *dx = dxt->data, count = (float)hw;
    for (int64_t b = 0; b < n; b++)
        for (int64_t p = 0; p < hw; p++)
            for (int64_t k = 0; k < c; k++) dx[(b * hw + p) * c + k] = dy[b * c + k] / count;
}

kiln_status kiln_cpu_pool2d(const kiln_op *op) {
    const kiln_pool2d_args *a = &op->pool;
    switch (op->type) {
    case KILN_OP_MAX_POOL2D: pool_forward(a, true); break;
    case KILN_OP_AVG_POOL2D: pool_forward(a, false); break;
    case KILN_OP_MAX_POOL2D_BACK: pool_backward(a, true); break;
    case KILN_OP_AVG_POOL2D_BACK: pool_backward(a, false); break;
    case KILN_OP_GLOBAL_AVG_POOL2D: return global_avg_forward(a);
    default: global_avg_backward(a); break;
    }
    return KILN_OK;
}
