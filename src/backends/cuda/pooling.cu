// cuda/pooling.cu: MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D on CUDA, NHWC.
// Own kernels rather than cuDNN's so that every result equals the CPU's bit for bit
// (src/backends/cpu/pooling.c):
//  - one thread per output element; the max rule (the first maximal element of the window,
//    NaN wins) and the window geometry come from pool_window.h, shared with the CPU;
//  - window sums in f32 in row-major window order with __fadd_rn, then one __fdiv_rn;
//  - backward: one thread per dx element gathers, in (oh, ow) order, the contributions of the
//    windows holding it (the CPU scatters window after window: the same additions in the same
//    order, from 0): deterministic, no atomics;
//  - the global average: one thread per (n, c) sums its H W values in double in (h, w) order.
#define KILN_HOST_DEVICE __host__ __device__
#include "pool_window.h"

#include "common.cuh"

namespace {

// (n, oh, ow, c) of the i-th element of an (N, OH, OW, C) tensor
__device__ __forceinline__ void unravel(int64_t i, int64_t rows, int64_t cols, int64_t c,
                                        int64_t *n, int64_t *r, int64_t *q, int64_t *k) {
    *k = i % c;
    i /= c;
    *q = i % cols;
    i /= cols;
    *r = i % rows;
    *n = i / rows;
}

__global__ void pool_forward_kernel(const float *x, float *y, kiln_pool_dims d, bool max) {
    KILN_CUDA_FOR(i, d.n * d.oh * d.ow * d.c) {
        int64_t n, oh, ow, c, r[4];
        unravel(i, d.oh, d.ow, d.c, &n, &oh, &ow, &c);
        kiln_pool_window(&d, oh, ow, r);
        if (max) {
            y[i] = x[kiln_pool_argmax(x, &d, n, c, r)];
            continue;
        }
        float acc = 0.0f;
        for (int64_t iy = r[0]; iy < r[1]; iy++)
            for (int64_t ix = r[2]; ix < r[3]; ix++) {
                const float v = x[((n * d.h + iy) * d.w + ix) * d.c + c];
                acc = iy == r[0] && ix == r[2] ? v : __fadd_rn(acc, v);
            }
        y[i] = __fdiv_rn(acc, (float)((r[1] - r[0]) * (r[3] - r[2])));
    }
}

// dx (N, H, W, C); x is NULL for the average
__global__ void pool_backward_kernel(const float *x, const float *dy, float *dx, kiln_pool_dims d) {
    KILN_CUDA_FOR(i, d.n * d.h * d.w * d.c) {
        int64_t n, ih, iw, c, rows[2], cols[2], r[4];
        unravel(i, d.h, d.w, d.c, &n, &ih, &iw, &c);
        kiln_pool_covering(ih, d.ph, d.sh, d.pt, d.oh, rows);
        kiln_pool_covering(iw, d.pw, d.sw, d.pl, d.ow, cols);
        float acc = 0.0f;
        for (int64_t oh = rows[0]; oh < rows[1]; oh++)
            for (int64_t ow = cols[0]; ow < cols[1]; ow++) {
                kiln_pool_window(&d, oh, ow, r);
                const float g = dy[((n * d.oh + oh) * d.ow + ow) * d.c + c];
                if (x) {
                    if (kiln_pool_argmax(x, &d, n, c, r) == i) acc = __fadd_rn(acc, g);
                } else {
                    const float count = (float)((r[1] - r[0]) * (r[3] - r[2]));
                    acc = __fadd_rn(acc, __fdiv_rn(g, count));
                }
            }
        dx[i] = acc;
    }
}

// y (N, C) = mean over H W of x (N, H, W, C)
__global__ void global_avg_kernel(const float *x, float *y, int64_t n, int64_t hw, int64_t c) {
    KILN_CUDA_FOR(i, n * c) {
        const int64_t b = i / c, k = i % c;
        double acc = 0.0;
        for (int64_t p = 0; p < hw; p++) acc += (double)x[(b * hw + p) * c + k];
        y[i] = (float)(acc / (double)hw);
    }
}

// dx (N, H, W, C) = dy (N, C) / (H W)
struct global_avg_bwd {
    const float *dy;
    float *dx;
    int64_t hw, c;
    __device__ void operator()(int64_t i) const {
        const int64_t k = i % c, b = i / c / hw;
        dx[i] = __fdiv_rn(dy[b * c + k], (float)hw);
    }
};

} // namespace

extern "C" kiln_status kiln_cuda_pool2d(kiln_backend *be, const kiln_op *op) {
    const cudaStream_t s = kiln_cuda_stream(be);
    const unsigned T = KILN_CUDA_BLOCK;
    const kiln_pool2d_args &a = op->pool;
    switch (op->type) {
    case KILN_OP_MAX_POOL2D:
    case KILN_OP_AVG_POOL2D: {
        const kiln_tensor *x = a.x;
        kiln_tensor *y = a.y;
        kiln_pool_dims d = kiln_pool_dims_of(&a.win, x->shape, y->shape);
        KILN_LAUNCH(pool_forward_kernel, kiln_cuda_blocks(kiln_tensor_numel(y), T), T, 0, s)(
            (const float *)x->data, (float *)y->data, d, op->type == KILN_OP_MAX_POOL2D);
        KILN_CUDA_CHECK_LAUNCH("pool_forward_kernel");
        return KILN_OK;
    }
    case KILN_OP_MAX_POOL2D_BACK:
    case KILN_OP_AVG_POOL2D_BACK: {
        const bool max = op->type == KILN_OP_MAX_POOL2D_BACK;
        const kiln_tensor *dy = a.dy;
        kiln_tensor *dx = a.dx;
        kiln_pool_dims d = kiln_pool_dims_of(&a.win, dx->shape, dy->shape);
        KILN_LAUNCH(pool_backward_kernel, kiln_cuda_blocks(kiln_tensor_numel(dx), T), T, 0, s)(
            max ? (const float *)a.x->data : NULL, (const float *)dy->data, (float *)dx->data, d);
        KILN_CUDA_CHECK_LAUNCH("pool_backward_kernel");
        return KILN_OK;
    }
    case KILN_OP_GLOBAL_AVG_POOL2D: {
        const kiln_tensor *x = a.x;
        const int64_t n = x->shape[0], hw = x->shape[1] * x->shape[2], c = x->shape[3];
        KILN_LAUNCH(global_avg_kernel, kiln_cuda_blocks(n * c, T), T, 0, s)(
            (const float *)x->data, (float *)a.y->data, n, hw, c);
        KILN_CUDA_CHECK_LAUNCH("global_avg_kernel");
        return KILN_OK;
    }
    default: { // GLOBAL_AVG_POOL2D_BACK
        kiln_tensor *dx = a.dx;
        global_avg_bwd f{(const float *)a.dy->data, (float *)dx->data,
                         dx->shape[1] * dx->shape[2], dx->shape[3]};
        return kiln_cuda_map(s, kiln_tensor_numel(dx), f, "global_avg_pool2d_backward");
    }
    }
}
