// cuda/resize.cu: the pixel-moving ops on CUDA, NHWC, one thread per output element (no
// atomics): PAD2D (a shifted copy with zeros around, or a crop) and nearest UPSAMPLE2D with
// its backward, which sums each block in f32 in row-major order from its first element, as
// the CPU does (src/backends/cpu/resize.c): the same bits on both; bilinear UPSAMPLE2D and its
// backward through the formulas the CPU uses (src/backends/shared/resize_bilinear.h, with
// __fmul_rn / __fadd_rn: no FMA contraction).
#ifndef KILN_HOST_DEVICE /* the emulator's prelude defines it for host and device */
#define KILN_HOST_DEVICE __device__
#endif
#define KILN_FMUL_RN(a, b) __fmul_rn((a), (b))
#define KILN_FADD_RN(a, b) __fadd_rn((a), (b))
#include "resize_bilinear.h"

#include "common.cuh"

namespace {

// y (N, OH, OW, C)[n, i, j, k] = x (N, H, W, C)[n, i - top, j - left, k], 0 outside x
struct pad_f {
    const float *x;
    float *y;
    int64_t h, w, oh, ow, c, top, left;
    __device__ void operator()(int64_t e) const {
        const int64_t k = e % c, j = e / c % ow, i = e / c / ow % oh, n = e / c / ow / oh;
        const int64_t si = i - top, sj = j - left;
        const bool in = si >= 0 && si < h && sj >= 0 && sj < w;
        y[e] = in ? x[((n * h + si) * w + sj) * c + k] : 0.0f;
    }
};

// forward: y (N, H sh, W sw, C) = x (N, H, W, C) repeated; backward: y (N, H, W, C) = the
// block sums of x (N, H sh, W sw, C)
struct upsample_f {
    const float *x;
    float *y;
    int64_t h, w, c, sh, sw; // the small image
    bool backward;
    __device__ void operator()(int64_t e) const {
        const int64_t k = e % c;
        if (!backward) {
            const int64_t j = e / c % (w * sw), i = e / c / (w * sw) % (h * sh);
            const int64_t n = e / c / (w * sw) / (h * sh);
            y[e] = x[((n * h + i / sh) * w + j / sw) * c + k];
            return;
        }
        const int64_t j = e / c % w, i = e / c / w % h, n = e / c / w / h;
        float acc = 0.0f;
        for (int64_t u = 0; u < sh; u++)
            for (int64_t v = 0; v < sw; v++) {
                const float t = x[((n * h * sh + i * sh + u) * (w * sw) + j * sw + v) * c + k];
                acc = u == 0 && v == 0 ? t : __fadd_rn(acc, t);
            }
        y[e] = acc;
    }
};

// y (N, OH, OW, C): the interpolation of x (forward), or the gradient gathered from x = dy
struct bilinear_f {
    const float *x;
    float *y;
    int64_t h, w, c, oh, ow, sh, sw; // the small image, the output
    float sy, sx;
    bool backward;
    __device__ void operator()(int64_t e) const {
        const int64_t k = e % c, j = e / c % ow, i = e / c / ow % oh, n = e / c / ow / oh;
        y[e] = backward ? kiln_bilinear_grad_at(x, n, i, j, k, h, w, c, sh, sw, sy, sx)
                        : kiln_bilinear_at(x, n, i, j, k, h, w, c, sy, sx);
    }
};

} // namespace

extern "C" kiln_status kiln_cuda_resize2d(kiln_backend *be, const kiln_op *op) {
    const kiln_resize2d_args &a = op->resize;
    const cudaStream_t s = kiln_cuda_stream(be);
    const float *x = (const float *)a.x->data;
    float *y = (float *)a.y->data;
    const int64_t n = kiln_tensor_numel(a.y);
    if (op->type == KILN_OP_PAD2D) {
        pad_f f{x, y, a.x->shape[1], a.x->shape[2], a.y->shape[1], a.y->shape[2], a.y->shape[3],
                a.top, a.left};
        return kiln_cuda_map(s, n, f, "pad2d");
    }
    const bool back = op->type == KILN_OP_UPSAMPLE2D_BACK;
    const kiln_tensor *small = back ? a.y : a.x;
    if (a.bilinear) {
        bilinear_f f{x, y, small->shape[1], small->shape[2], small->shape[3], a.y->shape[1], a.y->shape[2],
                     a.size_h, a.size_w, a.scale_h, a.scale_w, back};
        return kiln_cuda_map(s, n, f, back ? "upsample2d_bilinear_backward" : "upsample2d_bilinear");
    }
    upsample_f f{x, y, small->shape[1], small->shape[2], small->shape[3], a.size_h, a.size_w, back};
    return kiln_cuda_map(s, n, f, back ? "upsample2d_backward" : "upsample2d");
}
