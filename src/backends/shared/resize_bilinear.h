/* resize_bilinear.h: bilinear upsampling (internal, header-only), TensorFlow's resize_bilinear
 * with half-pixel centres (what Keras 3's UpSampling2D(interpolation="bilinear") runs), shared
 * by the CPU backend and the CUDA kernels so both compute the same f32 operations: a .cu file
 * defines KILN_HOST_DEVICE as __device__ and KILN_FMUL_RN / KILN_FADD_RN as __fmul_rn /
 * __fadd_rn (no contraction into FMA) before including it. */
#ifndef KILN_RESIZE_BILINEAR_H
#define KILN_RESIZE_BILINEAR_H

#include <math.h>
#include <stdint.h>

#ifndef KILN_HOST_DEVICE
#define KILN_HOST_DEVICE
#endif
#ifndef KILN_FMUL_RN
#define KILN_FMUL_RN(a, b) ((a) * (b))
#define KILN_FADD_RN(a, b) ((a) + (b))
#endif

/* Output position `out` of an axis of `in_size` inputs upsampled with `scale` = in / out (f32):
 * its two sources lo <= hi and the weight of hi (lo weighs 1 - frac):
 * src = (out + 0.5) scale - 0.5, lo = max(floor(src), 0), hi = min(ceil(src), in_size - 1),
 * frac = src - floor(src). */
static KILN_HOST_DEVICE inline void kiln_bilinear_source(int64_t out, int64_t in_size, float scale, int64_t *lo,
                                                         int64_t *hi, float *frac) {
    float src = KILN_FADD_RN(KILN_FMUL_RN((float)out + 0.5f, scale), -0.5f);
    float f = floorf(src);
    int64_t c = (int64_t)ceilf(src);
    *lo = f > 0.0f ? (int64_t)f : 0;
    *hi = c < in_size - 1 ? c : in_size - 1;
    *frac = src - f;
}

/* the weight output position `out` gives input position `r` (0 when it reads neither) */
static KILN_HOST_DEVICE inline float kiln_bilinear_weight(int64_t out, int64_t r, int64_t in_size, float scale) {
    int64_t lo, hi;
    float frac;
    kiln_bilinear_source(out, in_size, scale, &lo, &hi, &frac);
    float w = lo == r ? 1.0f - frac : 0.0f;
    return hi == r ? KILN_FADD_RN(w, frac) : w;
}

/* a + (b - a) t, TensorFlow's lerp */
static KILN_HOST_DEVICE inline float kiln_bilinear_lerp(float a, float b, float t) {
    return KILN_FADD_RN(a, KILN_FMUL_RN(b - a, t));
}

/* y[n, i, j, k] for x (N, H, W, C) upsampled (sy = H / (H sh), sx likewise, in f32) */
static KILN_HOST_DEVICE inline float kiln_bilinear_at(const float *x, int64_t n, int64_t i, int64_t j, int64_t k,
                                                      int64_t h, int64_t w, int64_t c, float sy, float sx) {
    int64_t y0, y1, x0, x1;
    float fy, fx;
    kiln_bilinear_source(i, h, sy, &y0, &y1, &fy);
    kiln_bilinear_source(j, w, sx, &x0, &x1, &fx);
    const float *r0 = x + (n * h + y0) * w * c, *r1 = x + (n * h + y1) * w * c;
    float top = kiln_bilinear_lerp(r0[x0 * c + k], r0[x1 * c + k], fx);
    float bottom = kiln_bilinear_lerp(r1[x0 * c + k], r1[x1 * c + k], fx);
    return kiln_bilinear_lerp(top, bottom, fy);
}

/* dx[n, r, q, k] for dy (N, H sh, W sw, C): the sum over the outputs (i, j) that read (r, q) of
 * (dy wy) wx, rows i then columns j ascending (they lie within (r - 1) sh .. (r + 2) sh) */
static KILN_HOST_DEVICE inline float kiln_bilinear_grad_at(const float *dy, int64_t n, int64_t r, int64_t q,
                                                           int64_t k, int64_t h, int64_t w, int64_t c, int64_t sh,
                                                           int64_t sw, float sy, float sx) {
    int64_t oh = h * sh, ow = w * sw;
    int64_t i0 = (r - 1) * sh > 0 ? (r - 1) * sh : 0, i1 = (r + 2) * sh < oh ? (r + 2) * sh : oh;
    int64_t j0 = (q - 1) * sw > 0 ? (q - 1) * sw : 0, j1 = (q + 2) * sw < ow ? (q + 2) * sw : ow;
    float acc = 0.0f;
    for (int64_t i = i0; i < i1; i++) {
        float wy = kiln_bilinear_weight(i, r, h, sy);
        if (wy == 0.0f) continue;
        for (int64_t j = j0; j < j1; j++) {
            float wx = kiln_bilinear_weight(j, q, w, sx);
            if (wx == 0.0f) continue;
            acc = KILN_FADD_RN(acc, KILN_FMUL_RN(KILN_FMUL_RN(dy[((n * oh + i) * ow + j) * c + k], wy), wx));
        }
    }
    return acc;
}

#endif
