/* pool_window.h: pooling-window geometry and the max-pooling tie rule (internal, header-only),
 * shared by the CPU backend and the CUDA kernels so that both pick the same element of every
 * window; a .cu file defines KILN_HOST_DEVICE as __host__ __device__ before including it.
 * Layout NHWC: x (N, H, W, C), y (N, OH, OW, C). */
#ifndef KILN_POOL_WINDOW_H
#define KILN_POOL_WINDOW_H

#include <stdint.h>

#ifndef KILN_HOST_DEVICE
#define KILN_HOST_DEVICE
#endif

/* A pooling op's window, decoded once by the front end (src/ops/nn_ops.c; kiln_pool2d_args in
 * src/ops/op_args.h) */
typedef struct kiln_pool_geom {
    int pool_h, pool_w;
    int stride_h, stride_w;
    int pad_top, pad_left; /* padding before the first row / column */
} kiln_pool_geom;

typedef struct kiln_pool_dims {
    int64_t n, h, w, c; /* x (N, H, W, C) */
    int64_t oh, ow;     /* y (N, OH, OW, C) */
    int ph, pw;         /* window */
    int sh, sw;         /* strides */
    int pt, pl;         /* padding before the first row / column */
} kiln_pool_dims;

/* From a pooling op's window and its input and output image shapes. */
static inline kiln_pool_dims kiln_pool_dims_of(const kiln_pool_geom *win,
                                               const int64_t *x_shape, const int64_t *y_shape) {
    kiln_pool_dims d;
    d.n = x_shape[0];
    d.h = x_shape[1];
    d.w = x_shape[2];
    d.c = x_shape[3];
    d.oh = y_shape[1];
    d.ow = y_shape[2];
    d.ph = win->pool_h;
    d.pw = win->pool_w;
    d.sh = win->stride_h;
    d.sw = win->stride_w;
    d.pt = win->pad_top;
    d.pl = win->pad_left;
    return d;
}

/* The window of output (oh, ow) clipped to the image: rows [r[0], r[1]), columns [r[2], r[3]).
 * Never empty (padding is smaller than the window). */
static KILN_HOST_DEVICE inline void kiln_pool_window(const kiln_pool_dims *d, int64_t oh,
                                                     int64_t ow, int64_t r[4]) {
    int64_t y0 = oh * d->sh - d->pt, x0 = ow * d->sw - d->pl;
    int64_t y1 = y0 + d->ph, x1 = x0 + d->pw;
    r[0] = y0 < 0 ? 0 : y0;
    r[1] = y1 > d->h ? d->h : y1;
    r[2] = x0 < 0 ? 0 : x0;
    r[3] = x1 > d->w ? d->w : x1;
}

/* The outputs along one axis whose windows hold input position i: [o[0], o[1]). */
static KILN_HOST_DEVICE inline void kiln_pool_covering(int64_t i, int k, int s, int pad,
                                                       int64_t out, int64_t o[2]) {
    int64_t lo = i + pad - k + 1, hi = (i + pad) / s + 1;
    o[0] = lo <= 0 ? 0 : (lo + s - 1) / s;
    o[1] = hi < out ? hi : out;
}

/* Offset into x of channel c's maximal element in window r of image n: the first one in
 * row-major order within the window (a later element must be strictly greater to win); the
 * first NaN wins over everything and keeps its place. */
static KILN_HOST_DEVICE inline int64_t kiln_pool_argmax(const float *x, const kiln_pool_dims *d,
                                                        int64_t n, int64_t c,
                                                        const int64_t r[4]) {
    int64_t best = ((n * d->h + r[0]) * d->w + r[2]) * d->c + c;
    for (int64_t iy = r[0]; iy < r[1]; iy++)
        for (int64_t ix = r[2]; ix < r[3]; ix++) {
            int64_t at = ((n * d->h + iy) * d->w + ix) * d->c + c;
            float v = x[at], b = x[best];
            if (b == b && (v > b || v != v)) best = at;
        }
    return best;
}

#endif
