/* cpu/elementwise.c: fill, copy, cast and the elementwise arithmetic on the CPU. */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "dtype_convert.h"
#include "half.h"
#include "op_args.h"

void kiln_cpu_fill(const kiln_op *op) {
    kiln_tensor *t = op->fill.dst;
    int64_t n = kiln_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) kiln_dtype_store(t->data, t->dtype, i, op->fill.value);
}

/* n elements of size es, src `stride` elements apart, into contiguous dst: one load and store
 * of the element's width each (a constant-size memcpy is a move) */
static void copy_strided(char *dst, const char *src, int64_t n, int64_t stride, size_t es) {
#define KILN_COPY_RUN(W)                                                                       \
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * (W), src + i * stride * (W), (W));        \
    return;
    switch (es) {
    case 1: KILN_COPY_RUN(1)
    case 2: KILN_COPY_RUN(2)
    case 4: KILN_COPY_RUN(4)
    case 8: KILN_COPY_RUN(8)
    default:
        for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * es, src + (size_t)(i * stride) * es, es);
    }
#undef KILN_COPY_RUN
}

/* dst (contiguous) = src (any strides), in src's row-major index order: the trailing dims that
 * are contiguous in src form one run copied with memcpy (a strided last dim is a run of its
 * own); the dims outside it are walked with an odometer */
void kiln_cpu_copy(const kiln_op *op) {
    const kiln_tensor *s = op->copy.src;
    kiln_tensor *d = op->copy.dst;
    size_t es = kiln_dtype_size(s->dtype);
    int outer = KILN_MAX_DIMS;
    int64_t run = 1, run_stride = 1;
    while (outer > 0 && (s->shape[outer - 1] == 1 || s->stride[outer - 1] == run)) run *= s->shape[--outer];
    if (run == 1 && outer > 0) run = s->shape[--outer], run_stride = s->stride[outer];
    int64_t total = kiln_tensor_numel(s), idx[KILN_MAX_DIMS] = {0}, off = 0;
    const char *sp = s->data;
    char *dp = d->data;
    for (int64_t k = 0; k < total && run > 0; k += run) {
        if (run_stride == 1) memcpy(dp + (size_t)k * es, sp + (size_t)off * es, (size_t)run * es);
        else copy_strided(dp + (size_t)k * es, sp + (size_t)off * es, run, run_stride, es);
        for (int i = outer - 1; i >= 0; i--) { /* the next index of the outer dims */
            off += s->stride[i];
            if (++idx[i] < s->shape[i]) break;
            off -= s->stride[i] * s->shape[i];
            idx[i] = 0;
        }
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
