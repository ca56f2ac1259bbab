/* kiln/ops.h: the tensor ops, each run on whichever backend holds its tensors.
 *
 * Every op checks its arguments (dtypes, shapes, one backend for all tensors) and returns a
 * status with a message naming the op and the shapes; then it queues the work on the backend.
 * On CUDA the work is asynchronous: kiln_tensor_get or kiln_backend_synchronize waits for it.
 * Unless stated, tensors are f32 and contiguous. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "kiln/api.h"

#include "kiln/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matrix-multiply precision. STRICT is IEEE fp32 (the default); TF32 lets cuBLAS use tensor
 * cores with 10-bit mantissas (the CPU backend computes fp32 either way). */
typedef enum kiln_math { KILN_MATH_STRICT = 0, KILN_MATH_TF32 } kiln_math;

/* t = value, converted to t's dtype (any dtype). */
KILN_API kiln_status kiln_fill(kiln_tensor *t, double value);
/* dst = src; same dtype and shape; src may be strided (a transposed view, say). */
KILN_API kiln_status kiln_copy(const kiln_tensor *src, kiln_tensor *dst);
/* dst = src converted to dst's dtype; same shape. Floats round to nearest even; to i32 and u8,
 * values round to nearest and saturate; NaN becomes 0 there. */
KILN_API kiln_status kiln_cast(const kiln_tensor *src, kiln_tensor *dst);

/* out = a (op) b. b has a's shape, or the shape of a's trailing dimensions (a bias of C
 * values added to every row of an (N, C) or (N, H, W, C) tensor). out may alias a. */
KILN_API kiln_status kiln_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out);
KILN_API kiln_status kiln_sub(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out);
KILN_API kiln_status kiln_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out);
/* out = relu(a + b) in one pass, b as in kiln_add: the same bits as kiln_add then kiln_relu (a
 * NaN sum stays NaN, -0 becomes +0). Only on backends that answer
 * kiln_backend_supports(be, KILN_OP_ADD_RELU, KILN_F32): the CPU; CUDA refuses it
 * (KILN_ERR_UNSUPPORTED). out may alias a. */
KILN_API kiln_status kiln_add_relu(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out);
/* out = alpha * x (out may alias x). */
KILN_API kiln_status kiln_scale(const kiln_tensor *x, float alpha, kiln_tensor *out);
/* y += alpha * x. */
KILN_API kiln_status kiln_axpy(float alpha, const kiln_tensor *x, kiln_tensor *y);
/* y = max(x, 0); NaN stays NaN. */
KILN_API kiln_status kiln_relu(const kiln_tensor *x, kiln_tensor *y);
/* dx = dy where x > 0, else 0. */
KILN_API kiln_status kiln_relu_backward(const kiln_tensor *x, const kiln_tensor *dy, kiln_tensor *dx);

/* out = sum (or mean) of x over the axes whose bits are set in `axes` (bit i = axis i).
 * out holds the kept axes in order: its element count is the product of the kept sizes
 * (any shape with that count, for example x's shape with 1 at each reduced axis).
 * Accumulates in double on the CPU and in a fixed order on CUDA: results repeat bit for bit. */
KILN_API kiln_status kiln_sum(const kiln_tensor *x, unsigned axes, kiln_tensor *out);
KILN_API kiln_status kiln_mean(const kiln_tensor *x, unsigned axes, kiln_tensor *out);

/* C (M, N) = alpha * op(A) op(B) + beta * C, row-major 2-D tensors; op(A) is A (M, K) or,
 * with trans_a, A stored as (K, M). When beta is 0, C's old contents are ignored. */
KILN_API kiln_status kiln_gemm(const kiln_tensor *a, bool trans_a, const kiln_tensor *b, bool trans_b,
                      float alpha, float beta, kiln_tensor *c, kiln_math math);

/* y = softmax over the last axis of x (rows = numel / last dim); max-subtracted, stable. */
KILN_API kiln_status kiln_softmax(const kiln_tensor *x, kiln_tensor *y);

/* Fused softmax + sparse categorical cross-entropy from logits (B, K) and labels (B) i32:
 * probs (B, K) = softmax(logits), loss (B) = logsumexp(logits) - logits[label].
 * A label outside [0, K) gives a NaN loss for its row (fit checks labels before training). */
KILN_API kiln_status kiln_softmax_xent(const kiln_tensor *logits, const kiln_tensor *labels,
                              kiln_tensor *probs, kiln_tensor *loss);
/* dlogits (B, K) = scale * (probs - onehot(labels)); scale is 1/B for a mean loss. */
KILN_API kiln_status kiln_softmax_xent_backward(const kiln_tensor *probs, const kiln_tensor *labels,
                                       float scale, kiln_tensor *dlogits);

/* idx (rows) i32 = index of the largest value in each row of x (first one on ties). */
KILN_API kiln_status kiln_argmax(const kiln_tensor *x, kiln_tensor *idx);
/* correct (a 1-element f32) = number of rows of x (B, K) whose argmax equals labels (B) i32. */
KILN_API kiln_status kiln_accuracy(const kiln_tensor *x, const kiln_tensor *labels, kiln_tensor *correct);

#ifdef __cplusplus
}
#endif
#endif
