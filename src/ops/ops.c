/* ops.c: the device-independent front of every basic op.
 *
 * Each public op checks its arguments once, here, with messages that name the op, the tensors'
 * shapes and what is wrong; then it fills its family's arguments in a kiln_op (op_args.h) and
 * hands it to the tensors' backend. */
#include <stdio.h>
#include <string.h>

#include "checked.h"
#include "error.h"
#include "op_args.h"
#include "ops_check.h"

const char *kiln_op_name(kiln_op_type op) {
    static const char *const names[KILN_OP_COUNT] = {
        [KILN_OP_FILL] = "fill",
        [KILN_OP_COPY] = "copy",
        [KILN_OP_CAST] = "cast",
        [KILN_OP_ADD] = "add",
        [KILN_OP_SUB] = "sub",
        [KILN_OP_MUL] = "mul",
        [KILN_OP_SCALE] = "scale",
        [KILN_OP_AXPY] = "axpy",
        [KILN_OP_RELU] = "relu",
        [KILN_OP_RELU_BACK] = "relu_backward",
        [KILN_OP_SUM] = "sum",
        [KILN_OP_MEAN] = "mean",
        [KILN_OP_GEMM] = "gemm",
        [KILN_OP_SOFTMAX] = "softmax",
        [KILN_OP_SOFTMAX_XENT] = "softmax_xent",
        [KILN_OP_SOFTMAX_XENT_BACK] = "softmax_xent_backward",
        [KILN_OP_ARGMAX] = "argmax",
        [KILN_OP_ACCURACY] = "accuracy",
        [KILN_OP_BN_FWD_TRAIN] = "batchnorm_forward_train",
        [KILN_OP_BN_FWD_INFER] = "batchnorm_forward_infer",
        [KILN_OP_BN_BWD] = "batchnorm_backward",
        [KILN_OP_BN_BWD_INFER] = "batchnorm_backward_infer",
        [KILN_OP_CONV2D] = "conv2d",
        [KILN_OP_CONV2D_BACK_DATA] = "conv2d_backward_data",
        [KILN_OP_CONV2D_BACK_FILTER] = "conv2d_backward_filter",
        [KILN_OP_MAX_POOL2D] = "max_pool2d",
        [KILN_OP_MAX_POOL2D_BACK] = "max_pool2d_backward",
        [KILN_OP_AVG_POOL2D] = "avg_pool2d",
        [KILN_OP_AVG_POOL2D_BACK] = "avg_pool2d_backward",
        [KILN_OP_GLOBAL_AVG_POOL2D] = "global_avg_pool2d",
        [KILN_OP_GLOBAL_AVG_POOL2D_BACK] = "global_avg_pool2d_backward",
        [KILN_OP_SIGMOID] = "sigmoid",
        [KILN_OP_SIGMOID_BACK] = "sigmoid_backward",
        [KILN_OP_TANH] = "tanh",
        [KILN_OP_TANH_BACK] = "tanh_backward",
        [KILN_OP_DROPOUT] = "dropout",
        [KILN_OP_ADAM] = "adam_update",
        [KILN_OP_SGD] = "sgd_update",
        [KILN_OP_SUMSQ_ACC] = "sum_squares_accumulate",
        [KILN_OP_CLIP_SCALE] = "clip_scale",
        [KILN_OP_ACT] = "act",
        [KILN_OP_ACT_BACK] = "act_backward",
        [KILN_OP_COPY_COLUMNS] = "copy_columns",
        [KILN_OP_PAD2D] = "pad2d",
        [KILN_OP_UPSAMPLE2D] = "upsample2d",
        [KILN_OP_UPSAMPLE2D_BACK] = "upsample2d_backward",
        [KILN_OP_BN_RELU] = "batchnorm_relu",
        [KILN_OP_ADD_RELU] = "add_relu",
    };
    if ((int)op < 0 || op >= KILN_OP_COUNT || !names[op]) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_op_name: unknown op %d", (int)op);
        return "?";
    }
    return names[op];
}

kiln_status kiln_op_run(const kiln_op *op) {
    kiln_backend *be = op->be;
    if (!be->iface->supports_op(be, op->type, op->dtype))
        return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_%s: backend %s does not run it on %s", 
                          kiln_op_name(op->type), be->name, kiln_dtype_name(op->dtype));
    return be->iface->compute(be, op);
}

/* ---- argument checks shared by every op (ops_check.h) ---- */

kiln_status kiln_check_tensor(const char *fn, const char *arg, const kiln_tensor *t) {
    KILN_TRY(kiln_tensor_check(fn, arg, t)); /* NULL, or not a tensor kiln made */
    if (!kiln_tensor_is_contiguous(t))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s '%s' is not contiguous", fn, arg, t->name);
    return KILN_OK;
}

kiln_status kiln_check_dtype(const char *fn, const char *arg, const kiln_tensor *t,
                             kiln_dtype want) {
    if (t->dtype != want)
        return kiln_error(KILN_ERR_DTYPE, "%s: %s '%s' is %s, want %s", fn, arg, t->name,
                          kiln_dtype_name(t->dtype), kiln_dtype_name(want));
    return KILN_OK;
}

kiln_status kiln_check_f32(const char *fn, const char *arg, const kiln_tensor *t) {
    KILN_TRY(kiln_check_tensor(fn, arg, t));
    return kiln_check_dtype(fn, arg, t, KILN_F32);
}

kiln_status kiln_check_same_backend(const char *fn, const kiln_tensor *a, const kiln_tensor *b) {
    if (a->backend != b->backend)
        return kiln_error(KILN_ERR_DEVICE_MISMATCH, "%s: '%s' is on %s, '%s' on %s", fn, a->name,
                          a->backend->name, b->name, b->backend->name);
    return KILN_OK;
}

kiln_status kiln_check_same_shape(const char *fn, const char *an, const kiln_tensor *a,
                                  const char *bn, const kiln_tensor *b) {
    if (!kiln_tensor_same_shape(a, b)) {
        char sa[96], sb[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: shapes differ: %s is %s, %s is %s", fn, an,
                          kiln_shape_str(a, sa, sizeof sa), bn, kiln_shape_str(b, sb, sizeof sb));
    }
    return kiln_check_same_backend(fn, a, b);
}

/* ---- fill, copy, cast ---- */

kiln_status kiln_fill(kiln_tensor *t, double value) {
    KILN_TRY(kiln_check_tensor("kiln_fill", "t", t));
    kiln_op op = kiln_op_on(KILN_OP_FILL, t);
    op.fill = (kiln_fill_args){.dst = t, .value = value};
    return kiln_op_run(&op);
}

/* src may be strided */
kiln_status kiln_copy(const kiln_tensor *src, kiln_tensor *dst) {
    KILN_TRY(kiln_tensor_check("kiln_copy", "src", src)); /* may be strided */
    KILN_TRY(kiln_check_tensor("kiln_copy", "dst", dst));
    KILN_TRY(kiln_check_same_shape("kiln_copy", "src", src, "dst", dst));
    if (src->dtype != dst->dtype)
        return kiln_error(KILN_ERR_DTYPE, "kiln_copy: src is %s, dst is %s (kiln_cast converts)",
                          kiln_dtype_name(src->dtype), kiln_dtype_name(dst->dtype));
    kiln_op op = kiln_op_on(KILN_OP_COPY, src);
    op.copy = (kiln_copy_args){.src = src, .dst = dst};
    return kiln_op_run(&op);
}

kiln_status kiln_cast(const kiln_tensor *src, kiln_tensor *dst) {
    KILN_TRY(kiln_check_tensor("kiln_cast", "src", src));
    KILN_TRY(kiln_check_tensor("kiln_cast", "dst", dst));
    KILN_TRY(kiln_check_same_shape("kiln_cast", "src", src, "dst", dst));
    kiln_op op = kiln_op_on(KILN_OP_CAST, src);
    op.copy = (kiln_copy_args){.src = src, .dst = dst};
    return kiln_op_run(&op);
}

/* ---- elementwise ---- */

/* ADD, SUB, MUL, ADD_RELU: b must be a's shape or a's trailing dimensions */
static kiln_status binary(kiln_op_type type, const char *fn, const kiln_tensor *a,
                          const kiln_tensor *b, kiln_tensor *out) {
    KILN_TRY(kiln_check_f32(fn, "a", a));
    KILN_TRY(kiln_check_f32(fn, "b", b));
    KILN_TRY(kiln_check_f32(fn, "out", out));
    KILN_TRY(kiln_check_same_shape(fn, "a", a, "out", out));
    KILN_TRY(kiln_check_same_backend(fn, a, b));
    /* b must be a's shape or a's trailing dimensions */
    int lead = a->ndim - b->ndim;
    bool ok = lead >= 0;
    for (int i = 0; ok && i < b->ndim; i++) ok = b->shape[i] == a->shape[lead + i];
    if (!ok) {
        char sa[96], sb[96];
        return kiln_error(KILN_ERR_SHAPE,
                          "%s: b %s is neither a's shape %s nor its trailing dimensions", fn,
                          kiln_shape_str(b, sb, sizeof sb), kiln_shape_str(a, sa, sizeof sa));
    }
    kiln_op op = kiln_op_on(type, a);
    op.binary = (kiln_binary_args){.a = a, .b = b, .out = out};
    return kiln_op_run(&op);
}

kiln_status kiln_add(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out) {
    return binary(KILN_OP_ADD, "kiln_add", a, b, out);
}
kiln_status kiln_add_relu(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out) {
    return binary(KILN_OP_ADD_RELU, "kiln_add_relu", a, b, out);
}
kiln_status kiln_sub(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out) {
    return binary(KILN_OP_SUB, "kiln_sub", a, b, out);
}
kiln_status kiln_mul(const kiln_tensor *a, const kiln_tensor *b, kiln_tensor *out) {
    return binary(KILN_OP_MUL, "kiln_mul", a, b, out);
}

/* x and out: f32, the same shape */
static kiln_status check_unary(const char *fn, const kiln_tensor *x, const kiln_tensor *out) {
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "out", out));
    return kiln_check_same_shape(fn, "x", x, "out", out);
}

/* SCALE, AXPY, RELU */
static kiln_status unary(kiln_op_type type, const char *fn, const kiln_tensor *x, float alpha,
                         kiln_tensor *out) {
    KILN_TRY(check_unary(fn, x, out));
    kiln_op op = kiln_op_on(type, x);
    op.unary = (kiln_unary_args){.x = x, .y = out, .alpha = alpha};
    return kiln_op_run(&op);
}

kiln_status kiln_scale(const kiln_tensor *x, float alpha, kiln_tensor *out) {
    return unary(KILN_OP_SCALE, "kiln_scale", x, alpha, out);
}
kiln_status kiln_axpy(float alpha, const kiln_tensor *x, kiln_tensor *y) {
    return unary(KILN_OP_AXPY, "kiln_axpy", x, alpha, y);
}
kiln_status kiln_relu(const kiln_tensor *x, kiln_tensor *y) {
    return unary(KILN_OP_RELU, "kiln_relu", x, 0.0f, y);
}

kiln_status kiln_relu_backward(const kiln_tensor *x, const kiln_tensor *dy, kiln_tensor *dx) {
    const char *fn = "kiln_relu_backward";
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "dy", dy));
    KILN_TRY(kiln_check_f32(fn, "dx", dx));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dy", dy));
    KILN_TRY(kiln_check_same_shape(fn, "x", x, "dx", dx));
    kiln_op op = kiln_op_on(KILN_OP_RELU_BACK, x);
    op.unary_back = (kiln_unary_back_args){.x = x, .dy = dy, .dx = dx};
    return kiln_op_run(&op);
}

/* ---- reductions ---- */

/* SUM, MEAN over the axes in the bitmask `axes` */
static kiln_status reduce(kiln_op_type type, const char *fn, const kiln_tensor *x, unsigned axes,
                          kiln_tensor *out) {
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(kiln_check_f32(fn, "out", out));
    KILN_TRY(kiln_check_same_backend(fn, x, out));
    if (axes >> x->ndim)
        return kiln_error(KILN_ERR_SHAPE, "%s: axes mask 0x%x names an axis past x's %d", fn,
                          axes, x->ndim);
    int64_t kept = 1;
    for (int i = 0; i < x->ndim; i++)
        if (!(axes >> i & 1u)) kept *= x->shape[i];
    if (kiln_tensor_numel(out) != kept) {
        char sx[96], so[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: x %s reduced over mask 0x%x keeps %lld values, out %s holds %lld",
                          fn, kiln_shape_str(x, sx, sizeof sx), axes, (long long)kept,
                          kiln_shape_str(out, so, sizeof so), (long long)kiln_tensor_numel(out));
    }
    kiln_op op = kiln_op_on(type, x);
    op.reduce = (kiln_reduce_args){.x = x, .y = out, .axes = axes};
    return kiln_op_run(&op);
}

kiln_status kiln_sum(const kiln_tensor *x, unsigned axes, kiln_tensor *out) {
    return reduce(KILN_OP_SUM, "kiln_sum", x, axes, out);
}
kiln_status kiln_mean(const kiln_tensor *x, unsigned axes, kiln_tensor *out) {
    return reduce(KILN_OP_MEAN, "kiln_mean", x, axes, out);
}

/* ---- GEMM ---- */

kiln_status kiln_gemm(const kiln_tensor *a, bool trans_a, const kiln_tensor *b, bool trans_b,
                      float alpha, float beta, kiln_tensor *c, kiln_math math) {
    const char *fn = "kiln_gemm";
    KILN_TRY(kiln_check_f32(fn, "A", a));
    KILN_TRY(kiln_check_f32(fn, "B", b));
    KILN_TRY(kiln_check_f32(fn, "C", c));
    KILN_TRY(kiln_check_same_backend(fn, a, b));
    KILN_TRY(kiln_check_same_backend(fn, a, c));
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2)
        return kiln_error(KILN_ERR_SHAPE, "kiln_gemm: A, B and C must be 2-D (have %d, %d, %d dims)",
                          a->ndim, b->ndim, c->ndim);
    if (math != KILN_MATH_STRICT && math != KILN_MATH_TF32)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_gemm: unknown math mode %d", (int)math);
    int64_t m = trans_a ? a->shape[1] : a->shape[0], ka = trans_a ? a->shape[0] : a->shape[1];
    int64_t kb = trans_b ? b->shape[1] : b->shape[0], n = trans_b ? b->shape[0] : b->shape[1];
    if (ka != kb)
        return kiln_error(KILN_ERR_SHAPE, "kiln_gemm: inner dimensions differ: A%s is %lldx%lld, B%s is %lldx%lld",
                          trans_a ? "^T" : "", (long long)m, (long long)ka, trans_b ? "^T" : "",
                          (long long)kb, (long long)n);
    if (c->shape[0] != m || c->shape[1] != n)
        return kiln_error(KILN_ERR_SHAPE, "kiln_gemm: C is %lldx%lld, the product is %lldx%lld",
                          (long long)c->shape[0], (long long)c->shape[1], (long long)m, (long long)n);
    if (m > INT32_MAX || n > INT32_MAX || ka > INT32_MAX)
        return kiln_error(KILN_ERR_SHAPE, "kiln_gemm: dimensions past 2^31 are not supported");
    kiln_op op = kiln_op_on(KILN_OP_GEMM, a);
    op.gemm = (kiln_gemm_args){.a = a, .b = b, .c = c, .trans_a = trans_a, .trans_b = trans_b,
                               .alpha = alpha, .beta = beta, .math = math,
                               .m = (int)m, .n = (int)n, .k = (int)ka};
    return kiln_op_run(&op);
}

/* ---- softmax, cross-entropy, argmax, accuracy ---- */

static kiln_status check_rows(const char *fn, const kiln_tensor *x) {
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: x %s has no classes on its last axis", fn,
                          kiln_shape_str(x, s, sizeof s));
    }
    return KILN_OK;
}

static kiln_status check_labels(const char *fn, const kiln_tensor *x, const kiln_tensor *labels) {
    KILN_TRY(kiln_check_tensor(fn, "labels", labels));
    KILN_TRY(kiln_check_dtype(fn, "labels", labels, KILN_I32));
    KILN_TRY(kiln_check_same_backend(fn, x, labels));
    int64_t rows = kiln_tensor_numel(x) / x->shape[x->ndim - 1];
    if (kiln_tensor_numel(labels) != rows) {
        char sx[96], sl[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %lld rows in %s but %lld labels %s", fn,
                          (long long)rows, kiln_shape_str(x, sx, sizeof sx),
                          (long long)kiln_tensor_numel(labels), kiln_shape_str(labels, sl, sizeof sl));
    }
    return KILN_OK;
}

kiln_status kiln_softmax(const kiln_tensor *x, kiln_tensor *y) {
    KILN_TRY(kiln_check_f32("kiln_softmax", "x", x));
    KILN_TRY(check_rows("kiln_softmax", x));
    KILN_TRY(check_unary("kiln_softmax", x, y));
    kiln_op op = kiln_op_on(KILN_OP_SOFTMAX, x);
    op.softmax = (kiln_softmax_args){.x = x, .y = y};
    return kiln_op_run(&op);
}

kiln_status kiln_softmax_xent(const kiln_tensor *logits, const kiln_tensor *labels,
                              kiln_tensor *probs, kiln_tensor *loss) {
    const char *fn = "kiln_softmax_xent";
    KILN_TRY(kiln_check_f32(fn, "logits", logits));
    KILN_TRY(check_rows(fn, logits));
    KILN_TRY(check_labels(fn, logits, labels));
    KILN_TRY(kiln_check_f32(fn, "probs", probs));
    KILN_TRY(kiln_check_same_shape(fn, "logits", logits, "probs", probs));
    KILN_TRY(kiln_check_f32(fn, "loss", loss));
    KILN_TRY(kiln_check_same_backend(fn, logits, loss));
    if (kiln_tensor_numel(loss) != kiln_tensor_numel(labels))
        return kiln_error(KILN_ERR_SHAPE, "%s: loss holds %lld values for %lld rows", fn,
                          (long long)kiln_tensor_numel(loss), (long long)kiln_tensor_numel(labels));
    kiln_op op = kiln_op_on(KILN_OP_SOFTMAX_XENT, logits);
    op.softmax = (kiln_softmax_args){.x = logits, .labels = labels, .y = probs, .loss = loss};
    return kiln_op_run(&op);
}

kiln_status kiln_softmax_xent_backward(const kiln_tensor *probs, const kiln_tensor *labels,
                                       float scale, kiln_tensor *dlogits) {
    const char *fn = "kiln_softmax_xent_backward";
    KILN_TRY(kiln_check_f32(fn, "probs", probs));
    KILN_TRY(check_rows(fn, probs));
    KILN_TRY(check_labels(fn, probs, labels));
    KILN_TRY(kiln_check_f32(fn, "dlogits", dlogits));
    KILN_TRY(kiln_check_same_shape(fn, "probs", probs, "dlogits", dlogits));
    kiln_op op = kiln_op_on(KILN_OP_SOFTMAX_XENT_BACK, probs);
    op.softmax = (kiln_softmax_args){.probs = probs, .labels = labels, .dx = dlogits,
                                     .scale = scale};
    return kiln_op_run(&op);
}

/* idx: one i32 per row */
kiln_status kiln_argmax(const kiln_tensor *x, kiln_tensor *idx) {
    const char *fn = "kiln_argmax";
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(check_rows(fn, x));
    KILN_TRY(check_labels(fn, x, idx));
    kiln_op op = kiln_op_on(KILN_OP_ARGMAX, x);
    op.argmax = (kiln_argmax_args){.x = x, .idx = idx};
    return kiln_op_run(&op);
}

/* correct: 1 value */
kiln_status kiln_accuracy(const kiln_tensor *x, const kiln_tensor *labels, kiln_tensor *correct) {
    const char *fn = "kiln_accuracy";
    KILN_TRY(kiln_check_f32(fn, "x", x));
    KILN_TRY(check_rows(fn, x));
    KILN_TRY(check_labels(fn, x, labels));
    KILN_TRY(kiln_check_f32(fn, "correct", correct));
    KILN_TRY(kiln_check_same_backend(fn, x, correct));
    if (kiln_tensor_numel(correct) != 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: correct must hold 1 value, holds %lld", fn,
                          (long long)kiln_tensor_numel(correct));
    kiln_op op = kiln_op_on(KILN_OP_ACCURACY, x);
    op.argmax = (kiln_argmax_args){.x = x, .labels = labels, .correct = correct};
    return kiln_op_run(&op);
}
