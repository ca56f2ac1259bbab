/* cpu/resize.c: the pixel-moving ops on the CPU, NHWC: PAD2D (a shifted copy with zeros
 * around, or a crop), nearest UPSAMPLE2D with its backward (block sums in f32, row-major
 * within the block: the CUDA kernels' order, src/backends/cuda/resize.cu), and bilinear
 * UPSAMPLE2D with its backward, element by element through the formulas both backends share
 * (src/backends/shared/resize_bilinear.h). */
#include <string.h>

#include "cpu.h"
#include "op_args.h"
#include "resize_bilinear.h"

/* y[n, i, j, :] = x[n, i - top, j - left, :] or zeros */
static void pad2d(const kiln_resize2d_args *a) {
    const kiln_tensor *xt = a->x;
    int64_t n = xt->shape[0], h = xt->shape[1], w = xt->shape[2], c = xt->shape[3];
    int64_t oh = a->y->shape[1], ow = a->y->shape[2];
    const float *x = xt->data;
    float *y = a->y->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                int64_t si = i - a->top, sj = j - a->left;
                float *yp = y + ((b * oh + i) * ow + j) * c;
                if (si >= 0 && si < h && sj >= 0 && sj < w)
                    memcpy(yp, x + ((b * h + si) * w + sj) * c, (size_t)c * sizeof *yp);
                else
                    memset(yp, 0, (size_t)c * sizeof *yp);
            }
}

/* forward: y (big) from x (small); backward: y (small) = block sums of x (big) */
static void upsample2d(const kiln_resize2d_args *a, bool backward) {
    const kiln_tensor *small = backward ? a->y : a->x;
    int64_t n = small->shape[0], h = small->shape[1], w = small->shape[2], c = small->shape[3];
    int64_t sh = a->size_h, sw = a->size_w, bw = w * sw;
    const float *x = a->x->data;
    float *y = a->y->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                float *sp = backward ? y + ((b * h + i) * w + j) * c : NULL;
                for (int64_t u = 0; u < sh; u++)
                    for (int64_t v = 0; v < sw; v++) {
                        int64_t big = ((b * h * sh + i * sh + u) * bw + j * sw + v) * c;
                        if (!backward) {
                            memcpy(y + big, x + ((b * h + i) * w + j) * c, (size_t)c * sizeof *y);
                            continue;
                        }
                        for (int64_t k = 0; k < c; k++) sp[k] = u == 0 && v == 0 ? x[big + k] : sp[k] + x[big + k];
                    }
            }
}

/* every element of y: the interpolation (forward) or the gathered gradient (backward) */
static void bilinear(const kiln_resize2d_args *a, bool backward) {
    const kiln_tensor *small = backward ? a->y : a->x;
    int64_t h = small->shape[1], w = small->shape[2], c = small->shape[3];
    int64_t n = a->y->shape[0], oh = a->y->shape[1], ow = a->y->shape[2];
    const float *x = a->x->data;
    float *y = a->y->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++)
                for (int64_t k = 0; k < c; k++)
                    y[((b * oh + i) * ow + j) * c + k] =
                        backward ? kiln_bilinear_grad_at(x, b, i, j, k, h, w, c, a->size_h, a->size_w, a->scale_h, a->scale_w)
                                 : kiln_bilinear_at(x, b, i, j, k, h, w, c, a->scale_h, a->scale_w);
}

void kiln_cpu_resize2d(const kiln_op *op) {
    const kiln_resize2d_args *a = &op->resize;
    switch (op->type) {
    case KILN_OP_PAD2D: pad2d(a); break;
    case KILN_OP_UPSAMPLE2D: a->bilinear ? bilinear(a, false) : upsample2d(a, false); break;
    default: a->bilinear ? bilinear(a, true) : upsample2d(a, true); break;
    }
}
