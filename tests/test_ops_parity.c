/* test_ops_parity.c: the parity table for the basic ops, in the spirit of ggml's
 * test-backend-ops: each row is {op, shapes, params, dtype, tolerance}, run on the CPU and on
 * CUDA from the same seeded inputs, every element compared (docs/testing.md gives each
 * tolerance's reason). Rows skip, with the driver's reason, where there is no GPU. */
#include "harness.h"

/* ---- how each op is run from a row ---- */
static kiln_status run_fill(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_fill(out[0], c->op.fill.value);
}
static kiln_status run_copy(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    if (!c->transposed) return kiln_copy(in[0], out[0]);
    /* a transposed view: swap the last two axes' shapes and strides */
    kiln_tensor v = *in[0];
    int a = v.ndim - 2, b = v.ndim - 1;
    int64_t t = v.shape[a]; v.shape[a] = v.shape[b]; v.shape[b] = t;
    t = v.stride[a]; v.stride[a] = v.stride[b]; v.stride[b] = t;
    return kiln_copy(&v, out[0]);
}
static kiln_status run_cast(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_cast(in[0], out[0]);
}
static kiln_status run_add(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_add(in[0], in[1], out[0]);
}
static kiln_status run_sub(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_sub(in[0], in[1], out[0]);
}
static kiln_status run_mul(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_mul(in[0], in[1], out[0]);
}
static kiln_status run_scale(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_scale(in[0], c->op.unary.alpha, out[0]);
}
static kiln_status run_axpy(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_axpy(c->op.unary.alpha, in[0], out[0]);
}
static kiln_status run_relu(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_relu(in[0], out[0]);
}
static kiln_status run_relu_back(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_relu_backward(in[0], in[1], out[0]);
}
static kiln_status run_sum(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_sum(in[0], c->op.reduce.axes, out[0]);
}
static kiln_status run_mean(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_mean(in[0], c->op.reduce.axes, out[0]);
}
static kiln_status run_gemm(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    const kiln_gemm_args *g = &c->op.gemm;
    return kiln_gemm(in[0], g->trans_a, in[1], g->trans_b, g->alpha, g->beta, out[0], g->math);
}
static kiln_status run_softmax(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_softmax(in[0], out[0]);
}
static kiln_status run_xent(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_softmax_xent(in[0], in[1], out[0], out[1]);
}
static kiln_status run_xent_back(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_softmax_xent_backward(in[0], in[1], c->op.softmax.scale, out[0]);
}
static kiln_status run_argmax(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_argmax(in[0], out[0]);
}
static kiln_status run_accuracy(const kt_case *c, kiln_tensor *const *in, kiln_tensor *const *out) {
    return kiln_accuracy(in[0], in[1], out[0]);
}

/* ---- the table ---- */
#define F32(...) {KILN_F32, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, -2.0, 2.0}
#define T(dt, lo, hi, ...) {dt, KT_NDIM(__VA_ARGS__), {__VA_ARGS__}, lo, hi}
#define KT_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

static kt_case rows[] = {
    /* fill, copy, cast: exact (tolerance 0): the same conversion rules on both sides */
    {"fill f32", run_fill, 0, 1, .out = {F32(3, 5, 7)}, .op.fill = {.value = 1.25f}, .tol = 0},
    {"fill f16", run_fill, 0, 1, .out = {T(KILN_F16, 0, 0, 1000)}, .op.fill = {.value = 0.1f}, .tol = 0},
    {"fill bf16", run_fill, 0, 1, .out = {T(KILN_BF16, 0, 0, 1000)}, .op.fill = {.value = -3.3f}, .tol = 0},
    {"fill i32", run_fill, 0, 1, .out = {T(KILN_I32, 0, 0, 17, 3)}, .op.fill = {.value = 2.5f}, .tol = 0},
    {"fill u8", run_fill, 0, 1, .out = {T(KILN_U8, 0, 0, 33)}, .op.fill = {.value = 300.0f}, .tol = 0},
    {"copy f32", run_copy, 1, 1, .in = {F32(2, 3, 4, 5)}, .out = {F32(2, 3, 4, 5)}, .tol = 0},
    {"copy transposed", run_copy, 1, 1, .in = {F32(3, 37, 65)}, .out = {F32(3, 65, 37)}, .transposed = true, .tol = 0},
    {"copy u8", run_copy, 1, 1, .in = {T(KILN_U8, 0, 256, 1001)}, .out = {T(KILN_U8, 0, 0, 1001)}, .tol = 0},
    {"cast f32->f16", run_cast, 1, 1, .in = {T(KILN_F32, -70000, 70000, 4097)}, .out = {T(KILN_F16, 0, 0, 4097)}, .tol = 0},
    {"cast f32->f16 small", run_cast, 1, 1, .in = {T(KILN_F32, -1e-4, 1e-4, 4097)}, .out = {T(KILN_F16, 0, 0, 4097)}, .tol = 0},
    {"cast f32->bf16", run_cast, 1, 1, .in = {T(KILN_F32, -1e5, 1e5, 4097)}, .out = {T(KILN_BF16, 0, 0, 4097)}, .tol = 0},
    {"cast f16->f32", run_cast, 1, 1, .in = {T(KILN_F16, -60000, 60000, 4097)}, .out = {T(KILN_F32, 0, 0, 4097)}, .tol = 0},
    {"cast bf16->f32", run_cast, 1, 1, .in = {T(KILN_BF16, -1e30, 1e30, 4097)}, .out = {T(KILN_F32, 0, 0, 4097)}, .tol = 0},
    {"cast f32->i32", run_cast, 1, 1, .in = {T(KILN_F32, -5e9, 5e9, 4097)}, .out = {T(KILN_I32, 0, 0, 4097)}, .tol = 0},
    {"cast f32->u8", run_cast, 1, 1, .in = {T(KILN_F32, -50, 300, 4097)}, .out = {T(KILN_U8, 0, 0, 4097)}, .tol = 0},
    {"cast u8->f32", run_cast, 1, 1, .in = {T(KILN_U8, 0, 256, 32, 32, 3)}, .out = {T(KILN_F32, 0, 0, 32, 32, 3)}, .tol = 0},
    {"cast i32->bf16", run_cast, 1, 1, .in = {T(KILN_I32, -1e6, 1e6, 999)}, .out = {T(KILN_BF16, 0, 0, 999)}, .tol = 0},
    {"cast f16->u8", run_cast, 1, 1, .in = {T(KILN_F16, -10, 300, 999)}, .out = {T(KILN_U8, 0, 0, 999)}, .tol = 0},
    /* elementwise: one rounding per element on both sides: exact */
    {"add", run_add, 2, 1, .in = {F32(4, 5, 6, 7), F32(4, 5, 6, 7)}, .out = {F32(4, 5, 6, 7)}, .tol = 0},
    {"add bias NHWC", run_add, 2, 1, .in = {F32(2, 5, 5, 33), F32(33)}, .out = {F32(2, 5, 5, 33)}, .tol = 0},
    {"sub", run_sub, 2, 1, .in = {F32(1001), F32(1001)}, .out = {F32(1001)}, .tol = 0},
    {"mul rows", run_mul, 2, 1, .in = {F32(7, 129), F32(129)}, .out = {F32(7, 129)}, .tol = 0},
    {"scale", run_scale, 1, 1, .in = {F32(3, 333)}, .out = {F32(3, 333)}, .op.unary = {.alpha = -0.37f}, .tol = 0},
    {"axpy", run_axpy, 1, 1, .in = {F32(70001)}, .out = {F32(70001)}, .op.unary = {.alpha = 0.01f}, .tol = 0, .out_is_input = true},
    {"relu", run_relu, 1, 1, .in = {F32(8, 8, 8, 3)}, .out = {F32(8, 8, 8, 3)}, .tol = 0},
    {"relu backward", run_relu_back, 2, 1, .in = {F32(1025), F32(1025)}, .out = {F32(1025)}, .tol = 0},
    /* reductions: different summation orders (CPU in double): 1e-6 of the output's scale */
    {"sum all", run_sum, 1, 1, .in = {F32(4, 6, 5, 9)}, .out = {F32(1)}, .op.reduce = {.axes = 0xf}, .tol = 1e-6},
    {"sum rows (bias grad)", run_sum, 1, 1, .in = {F32(300, 17)}, .out = {F32(17)}, .op.reduce = {.axes = 0x1}, .tol = 1e-6},
    {"sum NHW", run_sum, 1, 1, .in = {F32(3, 7, 9, 40)}, .out = {F32(40)}, .op.reduce = {.axes = 0x7}, .tol = 1e-6},
    {"sum last", run_sum, 1, 1, .in = {F32(3, 7, 9, 40)}, .out = {F32(3, 7, 9, 1)}, .op.reduce = {.axes = 0x8}, .tol = 1e-6},
    {"mean axes 1,3", run_mean, 1, 1, .in = {F32(3, 7, 9, 40)}, .out = {F32(3, 9)}, .op.reduce = {.axes = 0xa}, .tol = 1e-6},
    {"mean big", run_mean, 1, 1, .in = {F32(2, 300001)}, .out = {F32(2)}, .op.reduce = {.axes = 0x2}, .tol = 1e-6},
    /* GEMM: fp32 products summed in other orders; 1e-5 of the output's scale. TF32: 10-bit
     * mantissas, relative error ~ 2^-11 per product: 5e-3 */
    {"gemm NN", run_gemm, 2, 1, .in = {F32(33, 65), F32(65, 17)}, .out = {F32(33, 17)}, .op.gemm = {.alpha = 1, .beta = 0}, .tol = 1e-5},
    {"gemm TN", run_gemm, 2, 1, .in = {F32(65, 33), F32(65, 17)}, .out = {F32(33, 17)}, .op.gemm = {.trans_a = true, .alpha = 1, .beta = 0}, .tol = 1e-5},
    {"gemm NT", run_gemm, 2, 1, .in = {F32(33, 65), F32(17, 65)}, .out = {F32(33, 17)}, .op.gemm = {.trans_b = true, .alpha = 0.5f, .beta = 0}, .tol = 1e-5},
    {"gemm TT beta", run_gemm, 2, 1, .in = {F32(65, 33), F32(17, 65)}, .out = {F32(33, 17)}, .op.gemm = {.trans_a = true, .trans_b = true, .alpha = 1, .beta = 0.75f}, .tol = 1e-5, .out_is_input = true},
    {"gemm dense 32x7200x64", run_gemm, 2, 1, .in = {F32(32, 7200), F32(7200, 64)}, .out = {F32(32, 64)}, .op.gemm = {.alpha = 1, .beta = 0}, .tol = 1e-5},
    {"gemm tf32", run_gemm, 2, 1, .in = {F32(64, 256), F32(256, 48)}, .out = {F32(64, 48)}, .op.gemm = {.alpha = 1, .beta = 0, .math = KILN_MATH_TF32}, .tol = 5e-3},
    /* softmax family: exp/log in float on CUDA vs double on the CPU: 1e-6 */
    {"softmax", run_softmax, 1, 1, .in = {T(KILN_F32, -20, 20, 77, 10)}, .out = {F32(77, 10)}, .tol = 1e-6},
    {"softmax wide", run_softmax, 1, 1, .in = {T(KILN_F32, -5, 5, 5, 1000)}, .out = {F32(5, 1000)}, .tol = 1e-6},
    {"softmax xent", run_xent, 2, 2, .in = {T(KILN_F32, -30, 30, 64, 10), T(KILN_I32, 0, 10, 64)}, .out = {F32(64, 10), F32(64)}, .tol = 1e-6},
    {"softmax xent k=1000", run_xent, 2, 2, .in = {T(KILN_F32, -8, 8, 9, 1000), T(KILN_I32, 0, 1000, 9)}, .out = {F32(9, 1000), F32(9)}, .tol = 1e-6},
    {"softmax xent bad label", run_xent, 2, 2, .in = {F32(8, 10), T(KILN_I32, 5, 15, 8)}, .out = {F32(8, 10), F32(8)}, .tol = 1e-6},
    {"softmax xent backward", run_xent_back, 2, 1, .in = {T(KILN_F32, 0, 1, 64, 10), T(KILN_I32, 0, 10, 64)}, .out = {F32(64, 10)}, .op.softmax = {.scale = 1.0f / 64}, .tol = 0},
    /* rows wider than 1024: a block per row (the kernels' kBlock variants) */
    {"softmax k=2500 (block per row)", run_softmax, 1, 1, .in = {T(KILN_F32, -5, 5, 3, 2500)}, .out = {F32(3, 2500)}, .tol = 1e-6},
    {"softmax xent k=1500 (block per row)", run_xent, 2, 2, .in = {T(KILN_F32, -8, 8, 4, 1500), T(KILN_I32, 0, 1500, 4)}, .out = {F32(4, 1500), F32(4)}, .tol = 1e-6},
    {"argmax k=2000 (block per row)", run_argmax, 1, 1, .in = {F32(5, 2000)}, .out = {T(KILN_I32, 0, 0, 5)}, .tol = 0},
    {"argmax", run_argmax, 1, 1, .in = {F32(100, 10)}, .out = {T(KILN_I32, 0, 0, 100)}, .tol = 0},
    {"argmax k=37", run_argmax, 1, 1, .in = {T(KILN_F32, 0, 2, 100, 37)}, .out = {T(KILN_I32, 0, 0, 100)}, .tol = 0, .seed = 7},
    {"accuracy", run_accuracy, 2, 1, .in = {F32(1000, 10), T(KILN_I32, 0, 10, 1000)}, .out = {F32(1)}, .tol = 0},
};

KT_PARITY_SUITE(parity_ops, rows)
