/* cpu/activation.c: sigmoid and tanh forward and backward, and dropout, on the CPU.
 *
 * The forwards are computed in double and rounded once (the correctly rounded value, nearly
 * always): the reference the CUDA backend's f32 expf / tanhf answer to. The backwards and
 * dropout are f32, one IEEE operation per statement in the CUDA kernels' order (no fused
 * multiply-add: C11 mode compiles with -ffp-contract=off), so both backends give the same bits. */
#include <math.h>

#include "counter_rng.h"
#include "cpu.h"
#include "op_args.h"
#include "simd.h"

static void forward(const kiln_op *op) {
    const float *x = op->unary.x->data;
    float *y = op->unary.y->data;
    int64_t n = kiln_tensor_numel(op->unary.x);
    if (op->type == KILN_OP_SIGMOID)
        for (int64_t i = 0; i < n; i++) y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
    else
        for (int64_t i = 0; i < n; i++) y[i] = (float)tanh((double)x[i]);
}

/* sigmoid: dx = (dy * y) * (1 - y);  tanh: dx = dy * (1 - y * y) */
KILN_SIMD_INLINE void backward_loop_body(const float *y, const float *dy, float *dx, int64_t n, bool sigmoid) {
    for (int64_t i = 0; i < n; i++) {
        float a = sigmoid ? dy[i] * y[i] : y[i] * y[i];
        float b = sigmoid ? 1.0f - y[i] : 1.0f - a;
        dx[i] = sigmoid ? a * b : dy[i] * b;
    }
}
KILN_SIMD_CLONES(backward_loop, (const float *y, const float *dy, float *dx, int64_t n, bool sigmoid),
                 (y, dy, dx, n, sigmoid))

static void backward(const kiln_op *op) {
    backward_loop(op->unary_back.y->data, op->unary_back.dy->data, op->unary_back.dx->data,
                  kiln_tensor_numel(op->unary_back.y), op->type == KILN_OP_SIGMOID_BACK);
}

/* y = keep(seed, offset + k) ? x * scale : 0 (forward on x, backward on dy: the same mask); k = i,
 * or for SpatialDropout2D (per_example > 0) the element's (example, channel) index */
KILN_SIMD_INLINE void dropout_loop_body(const float *x, float *y, int64_t n, uint64_t key, float rate, float scale,
                                        int64_t per_example, int64_t channels, int64_t offset) {
    if (!per_example) {
        for (int64_t i = 0; i < n; i++)
            y[i] = kiln_dropout_keep(key, (uint64_t)(offset + i), rate) ? x[i] * scale : 0.0f;
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t k = offset + i / per_example * channels + i % channels;
        y[i] = kiln_dropout_keep(key, (uint64_t)k, rate) ? x[i] * scale : 0.0f;
    }
}
KILN_SIMD_CLONES(dropout_loop, (const float *x, float *y, int64_t n, uint64_t key, float rate, float scale,
                                int64_t per_example, int64_t channels, int64_t offset),
                 (x, y, n, key, rate, scale, per_example, channels, offset))

static void dropout(const kiln_dropout_args *a) {
    dropout_loop(a->x->data, a->y->data, kiln_tensor_numel(a->x), kiln_dropout_key(a->seed), a->rate, a->scale,
                 a->per_example, a->channels, a->offset);
}

void kiln_cpu_activation(const kiln_op *op) {
    switch (op->type) {
    case KILN_OP_SIGMOID:
    case KILN_OP_TANH: forward(op); break;
    case KILN_OP_SIGMOID_BACK:
    case KILN_OP_TANH_BACK: backward(op); break;
    default: dropout(&op->dropout); break;
    }
}
