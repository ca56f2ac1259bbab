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
#include "simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PAR_MIN 32768 /* fewer elements: one thread */

/* the argmax of window r of image n for every channel (pool_window.h's rule, kiln_pool_argmax,
 * across channels at once): best[c] its value, idx[c] its offset into x */
KILN_SIMD_INLINE void window_max_body(const float *x, const kiln_pool_dims *d, int64_t n, const int64_t *r,
                                      float *restrict best, int64_t *restrict idx) {
    const int64_t C = d->c, first = ((n * d->h + r[0]) * d->w + r[2]) * C;
    for (int64_t c = 0; c < C; c++) {
        best[c] = x[first + c];
        idx[c] = first + c;
    }
    for (int64_t iy = r[0]; iy < r[1]; iy++)
        for (int64_t ix = r[2]; ix < r[3]; ix++) {
            const int64_t p = ((n * d->h + iy) * d->w + ix) * C;
            for (int64_t c = 0; c < C; c++) {
                float v = x[p + c], b = best[c];
                bool take = b == b && (v > b || v != v);
                best[c] = take ? v : b;
                idx[c] = take ? p + c : idx[c];
            }
        }
}
KILN_SIMD_CLONES(window_max, (const float *x, const kiln_pool_dims *d, int64_t n, const int64_t *r, float *best,
                              int64_t *idx), (x, d, n, r, best, idx))

/* average pooling's window of output (n, oh, ow) into yp: f32 sums in row-major window order */
static void window_avg(const float *x, const kiln_pool_dims *d, int64_t n, const int64_t *r, float *yp) {
    float count = (float)((r[1] - r[0]) * (r[3] - r[2]));
    for (int64_t iy = r[0]; iy < r[1]; iy++)
        for (int64_t ix = r[2]; ix < r[3]; ix++) {
            const float *xp = x + ((n * d->h + iy) * d->w + ix) * d->c;
            bool first = iy == r[0] && ix == r[2];
            for (int64_t c = 0; c < d->c; c++) yp[c] = first ? xp[c] : yp[c] + xp[c];
        }
    for (int64_t c = 0; c < d->c; c++) yp[c] = yp[c] / count;
}

/* scratch for window_max: per thread, C floats and C offsets */
typedef struct pool_scratch {
    float *best;
    int64_t *idx;
    int64_t c;
} pool_scratch;

static kiln_status scratch_alloc(const kiln_pool_dims *d, pool_scratch *s) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    s->c = d->c;
    s->best = malloc((size_t)(threads * d->c + 1) * sizeof *s->best);
    s->idx = malloc((size_t)(threads * d->c + 1) * sizeof *s->idx);
    if (s->best && s->idx) return KILN_OK;
    free(s->best);
    free(s->idx);
    return kiln_error(KILN_ERR_OOM, "kiln_max_pool2d: out of host memory for %lld channels of scratch",
                      (long long)d->c);
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* y (N, OH, OW, C): window max (first maximal element) or mean of the in-range elements;
 * images in parallel */
static kiln_status pool_forward(const kiln_pool2d_args *a, bool max) {
    kiln_pool_dims d = kiln_pool_dims_of(&a->win, a->x->shape, a->y->shape);
    const float *x = a->x->data;
    float *y = a->y->data;
    pool_scratch s = {0};
    kiln_status st = max ? scratch_alloc(&d, &s) : KILN_OK;
    if (st != KILN_OK) return st;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (d.n > 1 && d.n * d.oh * d.ow * d.c >= PAR_MIN)
#endif
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t oh = 0; oh < d.oh; oh++)
            for (int64_t ow = 0; ow < d.ow; ow++) {
                int64_t r[4];
                kiln_pool_window(&d, oh, ow, r);
                float *yp = y + ((n * d.oh + oh) * d.ow + ow) * d.c;
                if (!max) {
                    window_avg(x, &d, n, r, yp);
                    continue;
                }
                int t = thread_id();
                window_max(x, &d, n, r, yp, s.idx + t * d.c);
            }
    free(s.best);
    free(s.idx);
    return KILN_OK;
}

/* dx (N, H, W, C) from dy (N, OH, OW, C): max sends each dy to its window's argmax in x;
 * average spreads dy / count over the window. Each dx element takes its contributions in
 * (oh, ow) order; images (which share no dx element) in parallel */
static kiln_status pool_backward(const kiln_pool2d_args *a, bool max) {
    kiln_pool_dims d = kiln_pool_dims_of(&a->win, a->dx->shape, a->dy->shape);
    const float *x = max ? a->x->data : NULL, *dy = a->dy->data;
    float *dx = a->dx->data;
    pool_scratch s = {0};
    kiln_status st = max ? scratch_alloc(&d, &s) : KILN_OK;
    if (st != KILN_OK) return st;
    memset(dx, 0, kiln_tensor_nbytes(a->dx));
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (d.n > 1 && d.n * d.h * d.w * d.c >= PAR_MIN)
#endif
    for (int64_t n = 0; n < d.n; n++)
        for (int64_t oh = 0; oh < d.oh; oh++)
            for (int64_t ow = 0; ow < d.ow; ow++) {
                int64_t r[4];
                kiln_pool_window(&d, oh, ow, r);
                const float *g = dy + ((n * d.oh + oh) * d.ow + ow) * d.c;
                if (max) {
                    int t = thread_id();
                    int64_t *idx = s.idx + t * d.c;
                    window_max(x, &d, n, r, s.best + t * d.c, idx);
                    for (int64_t c = 0; c < d.c; c++) dx[idx[c]] += g[c];
                    continue;
                }
                float count = (float)((r[1] - r[0]) * (r[3] - r[2]));
                for (int64_t iy = r[0]; iy < r[1]; iy++)
                    for (int64_t ix = r[2]; ix < r[3]; ix++) {
                        float *p = dx + ((n * d.h + iy) * d.w + ix) * d.c;
                        for (int64_t c = 0; c < d.c; c++) p[c] += g[c] / count;
                    }
            }
    free(s.best);
    free(s.idx);
    return KILN_OK;
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
    case KILN_OP_MAX_POOL2D: return pool_forward(a, true);
    case KILN_OP_AVG_POOL2D: return pool_forward(a, false);
    case KILN_OP_MAX_POOL2D_BACK: return pool_backward(a, true);
    case KILN_OP_AVG_POOL2D_BACK: return pool_backward(a, false);
    case KILN_OP_GLOBAL_AVG_POOL2D: return global_avg_forward(a);
    default: global_avg_backward(a); break;
    }
    return KILN_OK;
}
