/* cpu/elementwise.c: fill, copy, cast and the elementwise arithmetic on the CPU. */
#include <math.h>

#include "cpu.h"
#include "dtype_convert.h"
#include "half.h"
#include "op_args.h"

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

void kiln_cpu_binary(const kiln_op *op) {
    const kiln_binary_args *args = &op->binary;
    const float *a = args->a->data, *b = args->b->data;
    float *y = args->out->data;
    int64_t n = kiln_tensor_numel(args->a), nb = kiln_tensor_numel(args->b);
    for (int64_t i = 0; i < n; i++) {
        float bv = b[i % nb];
        switch (op->type) {
        case KILN_OP_ADD: y[i] = a[i] + bv; break;
        case KILN_OP_SUB: y[i] = a[i] - bv; break;
        default: y[i] = a[i] * bv; break;
        }
    }
}

/* RELU_BACK: dx = dy (x > 0) */
static void relu_backward(const kiln_unary_back_args *a) {
    const float *x = a->x->data, *dy = a->dy->data;
    float *dx = a->dx->data;
    int64_t n = kiln_tensor_numel(a->x);
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void kiln_cpu_unary(const kiln_op *op) {
    if (op->type == KILN_OP_RELU_BACK) {
        relu_backward(&op->unary_back);
        return;
    }
    const float *x = op->unary.x->data;
    float *y = op->unary.y->data;
    float alpha = op->unary.alpha;
    int64_t n = kiln_tensor_numel(op->unary.x);
    switch (op->type) {
    case KILN_OP_SCALE:
        for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i];
        break;
    case KILN_OP_AXPY:
        for (int64_t i = 0; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
        break;
    case KILN_OP_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : (isnan(x[i]) ? x[i] : 0.0f);
        break;
    default: break;
    }
}
