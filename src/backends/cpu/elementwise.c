/* cpu/elementwise.c: fill, copy, cast and the elementwise arithmetic on the CPU. */
#include <math.h>

#include "cpu.h"
#include "dtype_convert.h"
#include "half.h"
#include "op_args.h"
#include "simd.h"

void kiln_cpu_fill(const kiln_op *op) {
    kiln_tensor *t = op->fill.dst;
    int64_t n = kiln_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) kiln_dtype_store(t->data, t->dtype, i, op->fill.value);
}

/* dst (contiguous) = src (any strides); walks src's 4-D index space in row-major order */
void kiln_cpu_copy(const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    size_t es = kiln_dtype_size(s->dtype);
    const char *sp = s->data;
    char *dp = d->data;
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < s->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < s->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < s->shape[2]; i2++)
                for (int64_t i3 = 0; i3 < s->shape[3]; i3++, k++) {
                    int64_t off = i0 * s->stride[0] + i1 * s->stride[1] + i2 * s->stride[2] +
                                  i3 * s->stride[3];
                    for (size_t b = 0; b < es; b++) dp[(size_t)k * es + b] = sp[(size_t)off * es + b];
                }
}

void kiln_cpu_cast(const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    int64_t n = kiln_tensor_numel(s);
    for (int64_t i = 0; i < n; i++)
        kiln_dtype_store(d->data, d->dtype, i, kiln_dtype_load(s->data, s->dtype, i));
}

/* y = a OP b, b repeated every nb elements : one loop per op, at every ISA level */
#define BINARY(name, OP)                                                                        \
    KILN_SIMD_INLINE void name##_body(const float *a, const float *b, float *y, int64_t n, int64_t nb) { \
        if (nb == 1) {                                                                          \
            float bv = b[0];                                                                    \
            for (int64_t i = 0; i < n; i++) y[i] = a[i] OP bv;                                  \
            return;                                                                             \
        }                                                                                       \
        for (int64_t i0 = 0; i0 < n; i0 += nb)                                                  \
            for (int64_t i = 0; i < nb && i < n - i0; i++) y[i0 + i] = a[i0 + i] OP b[i];       \
    }                                                                                           \
    KILN_SIMD_CLONES(name, (const float *a, const float *b, float *y, int64_t n, int64_t nb), (a, b, y, n, nb))

BINARY(add_loop, +)
BINARY(sub_loop, -)
BINARY(mul_loop, *)

void kiln_cpu_binary(const kiln_op *op) {
    const kiln_binary_args *args = &op->binary;
    const float *a = args->a->data, *b = args->b->data;
    float *y = args->out->data;
    int64_t n = kiln_tensor_numel(args->a), nb = kiln_tensor_numel(args->b);
    if (n == 0 || nb == 0) return;
    switch (op->type) {
    case KILN_OP_ADD: add_loop(a, b, y, n, nb); break;
    case KILN_OP_SUB: sub_loop(a, b, y, n, nb); break;
    default: mul_loop(a, b, y, n, nb); break;
    }
}

/* the unary loops: y[i] = F(i) */
#define UNARY(name, F)                                                                          \
    KILN_SIMD_INLINE void name##_body(const float *x, const float *x2, float *y, float alpha, int64_t n) { \
        (void)x2, (void)alpha;                                                                  \
        for (int64_t i = 0; i < n; i++) y[i] = F;                                               \
    }                                                                                           \
    KILN_SIMD_CLONES(name, (const float *x, const float *x2, float *y, float alpha, int64_t n), (x, x2, y, alpha, n))

UNARY(scale_loop, alpha * x[i])
UNARY(axpy_loop, fmaf(alpha, x[i], y[i]))
UNARY(relu_loop, x[i] > 0.0f ? x[i] : (isnan(x[i]) ? x[i] : 0.0f))
UNARY(relu_back_loop, x[i] > 0.0f ? x2[i] : 0.0f) /* x2: dy */

void kiln_cpu_unary(const kiln_op *op) {
    if (op->type == KILN_OP_RELU_BACK) { /* dx = dy (x > 0) */
        const kiln_unary_back_args *a = &op->unary_back;
        relu_back_loop(a->x->data, a->dy->data, a->dx->data, 0.0f, kiln_tensor_numel(a->x));
        return;
    }
    const float *x = op->unary.x->data;
    float *y = op->unary.y->data;
    float alpha = op->unary.alpha;
    int64_t n = kiln_tensor_numel(op->unary.x);
    switch (op->type) {
    case KILN_OP_SCALE: scale_loop(x, NULL, y, alpha, n); break;
    case KILN_OP_AXPY: axpy_loop(x, NULL, y, alpha, n); break;
    case KILN_OP_RELU: relu_loop(x, NULL, y, alpha, n); break;
    default: break;
    }
}
