// cuda/activation.cu: sigmoid and tanh forward and backward, dropout (and SpatialDropout2D),
// kiln_act (Keras' other activations, Rescaling, Normalization) and Concatenate's column
// copies on CUDA: one elementwise kernel each (kiln_cuda_map).
//
// Forwards use f32 expf / tanhf (at most 2 ulp; the CPU computes in double: the parity table
// allows 1e-6). Backwards and dropout are f32 with explicit round-to-nearest intrinsics
// (__fmul_rn, __fsub_rn), which nvcc never fuses into an FMA: the CPU's operations in the CPU's
// order, so both backends give the same bits. Dropout's mask comes from counter_rng.h, the
// header the CPU backend uses too.
#define KILN_HOST_DEVICE __host__ __device__
#include "act_math.h"
#include "counter_rng.h"

#include "common.cuh"

namespace {

// y = 1 / (1 + e^-x), with exp of a non-positive argument only: x >= 0 as 1 / (1 + e),
// x < 0 as e / (1 + e), e = exp(-|x|). NaN takes the second branch and stays NaN.
struct sigmoid_fwd {
    const float *x;
    float *y;
    __device__ void operator()(int64_t i) const {
        const float v = x[i], e = expf(-fabsf(v)), d = __fadd_rn(1.0f, e);
        y[i] = v >= 0.0f ? __fdiv_rn(1.0f, d) : __fdiv_rn(e, d);
    }
};

struct tanh_fwd {
    const float *x;
    float *y;
    __device__ void operator()(int64_t i) const { y[i] = tanhf(x[i]); }
};

// sigmoid: dx = (dy * y) * (1 - y);  tanh: dx = dy * (1 - y * y)  (src/backends/cpu/activation.c)
struct act_bwd {
    const float *y, *dy;
    float *dx;
    bool sigmoid;
    __device__ void operator()(int64_t i) const {
        const float yv = y[i], g = dy[i];
        if (sigmoid) {
            dx[i] = __fmul_rn(__fmul_rn(g, yv), __fsub_rn(1.0f, yv));
        } else {
            dx[i] = __fmul_rn(g, __fsub_rn(1.0f, __fmul_rn(yv, yv)));
        }
    }
};

// y = keep(key, offset + i) ? x * scale : 0; SpatialDropout2D draws once per (example, channel)
struct dropout_fwd {
    const float *x;
    float *y;
    uint64_t key;
    float rate, scale;
    int64_t channels, per_example, offset;
    __device__ void operator()(int64_t i) const {
        const int64_t k = offset + (per_example ? i / per_example * channels + i % channels : i);
        y[i] = kiln_dropout_keep(key, (uint64_t)k, rate) ? __fmul_rn(x[i], scale) : 0.0f;
    }
};

// kiln_act: the CPU's double formulas (act_math.h), rounded once. Forward y = f(x) (or
// Normalization's (x - mean[c]) / divisor, or Multiply's x * gate[n, c]); backward dx = dy f'(x)
// (or dy / divisor).
struct act_map {
    const float *x, *dy, *mean, *var, *gate;
    float *out;
    kiln_act_params p;
    int64_t channels, per_example;
    float epsilon;
    bool back;
    __device__ void operator()(int64_t i) const {
        if (gate) { // Multiply's broadcast: one f32 product, as the CPU's
            out[i] = __fmul_rn(x[i], gate[i / per_example * channels + i % channels]);
        } else if (var) {
            const double d = kiln_norm_divisor(var[i % channels], epsilon);
            out[i] = back ? (float)((double)dy[i] / d) : (float)(((double)x[i] - mean[i % channels]) / d);
        } else {
            out[i] = back ? (float)((double)dy[i] * kiln_act_df(&p, (double)x[i])) : (float)kiln_act_f(&p, (double)x[i]);
        }
    }
};

// Concatenate: element i of the narrow matrix (rows of wx) to or from column offset + i % wx
// of the wide one (rows of wy)
struct columns_map {
    const float *src;
    float *dst;
    int64_t wx, wy, offset;
    bool back;
    __device__ void operator()(int64_t i) const {
        const int64_t wide = i / wx * wy + offset + i % wx;
        if (back) dst[i] = src[wide];
        else dst[wide] = src[i];
    }
};

} // namespace

extern "C" kiln_status kiln_cuda_activation(kiln_backend *be, const kiln_op *op) {
    const cudaStream_t s = kiln_cuda_stream(be);
    switch (op->type) {
    case KILN_OP_SIGMOID:
    case KILN_OP_TANH: {
        const float *x = (const float *)op->unary.x->data;
        float *y = (float *)op->unary.y->data;
        const int64_t n = kiln_tensor_numel(op->unary.x);
        if (op->type == KILN_OP_SIGMOID) return kiln_cuda_map(s, n, sigmoid_fwd{x, y}, "sigmoid");
        return kiln_cuda_map(s, n, tanh_fwd{x, y}, "tanh");
    }
    case KILN_OP_SIGMOID_BACK:
    case KILN_OP_TANH_BACK: {
        const kiln_unary_back_args &a = op->unary_back;
        act_bwd f{(const float *)a.y->data, (const float *)a.dy->data, (float *)a.dx->data,
                  op->type == KILN_OP_SIGMOID_BACK};
        return kiln_cuda_map(s, kiln_tensor_numel(a.y), f, "activation backward");
    }
    case KILN_OP_ACT:
    case KILN_OP_ACT_BACK: {
        const kiln_act_args &a = op->act;
        const bool back = op->type == KILN_OP_ACT_BACK;
        act_map f{a.x ? (const float *)a.x->data : nullptr, a.dy ? (const float *)a.dy->data : nullptr,
                  a.mean ? (const float *)a.mean->data : nullptr, a.var ? (const float *)a.var->data : nullptr,
                  a.gate ? (const float *)a.gate->data : nullptr, (float *)(back ? a.dx : a.y)->data, a.p,
                  a.channels, a.per_example, a.epsilon, back};
        return kiln_cuda_map(s, kiln_tensor_numel(back ? a.dx : a.y), f, back ? "act backward" : "act");
    }
    case KILN_OP_COPY_COLUMNS: {
        const kiln_columns_args &a = op->columns;
        columns_map f{(const float *)a.src->data, (float *)a.dst->data, a.wx, a.wy, a.offset, a.back};
        return kiln_cuda_map(s, a.rows * a.wx, f, "copy columns");
    }
    default: { // DROPOUT
        const kiln_dropout_args &a = op->dropout;
        dropout_fwd f{(const float *)a.x->data, (float *)a.y->data, kiln_dropout_key(a.seed),
                      a.rate, a.scale, a.channels, a.per_example, a.offset};
        return kiln_cuda_map(s, kiln_tensor_numel(a.x), f, "dropout");
    }
    }
}
