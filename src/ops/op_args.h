/* op_args.h: what one op hands to a backend (internal): the kiln_op, and one argument struct
 * per op family with every tensor and parameter by name.
 *
 * The front end (the other files of src/ops) checks the arguments once, decodes the parameters
 * the kernels use (window padding, GEMM sizes, the optimizers' f32 constants, the moving-average
 * weights), fills the family's member of the op and calls kiln_op_run. A backend's `compute`
 * reads the member of op->type's family (src/backends/cpu, src/backends/cuda) and may assume it
 * valid. Inputs are `const kiln_tensor *`, tensors written `kiln_tensor *`; a member an op type
 * does not use stays NULL (or 0). */
#ifndef KILN_OP_ARGS_H
#define KILN_OP_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "backend_impl.h"
#include "kiln/batchnorm.h"
#include "kiln/nn.h"
#include "kiln/ops.h"
#include "optim_group.h"
#include "pool_window.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FILL: dst = value, converted to dst's dtype */
typedef struct kiln_fill_args {
    kiln_tensor *dst;
    double value;
} kiln_fill_args;

/* COPY: dst = src, src of any strides; CAST: dst = src converted to dst's dtype */
typedef struct kiln_copy_args {
    const kiln_tensor *src;
    kiln_tensor *dst;
} kiln_copy_args;

/* ADD, SUB, MUL: out = a (op) b, b repeating over a's leading dims; ADD_RELU: relu(a + b) */
typedef struct kiln_binary_args {
    const kiln_tensor *a, *b;
    kiln_tensor *out;
} kiln_binary_args;

/* SCALE: y = alpha x;  AXPY: y += alpha x;  RELU: y = max(x, 0) (NaN kept);
 * SIGMOID, TANH: y = f(x) */
typedef struct kiln_unary_args {
    const kiln_tensor *x;
    kiln_tensor *y;
    float alpha; /* SCALE, AXPY */
} kiln_unary_args;

/* RELU_BACK: dx = dy (x > 0);  SIGMOID_BACK: dx = (dy y) (1 - y);  TANH_BACK: dx = dy (1 - y y) */
typedef struct kiln_unary_back_args {
    const kiln_tensor *x;  /* RELU_BACK: the forward's input */
    const kiln_tensor *y;  /* SIGMOID_BACK, TANH_BACK: the forward's output */
    const kiln_tensor *dy;
    kiln_tensor *dx;
} kiln_unary_back_args;

/* SUM, MEAN: y = the sum or mean of x over the axes in `axes` */
typedef struct kiln_reduce_args {
    const kiln_tensor *x;
    kiln_tensor *y;
    unsigned axes; /* bit d set: axis d is reduced */
} kiln_reduce_args;

/* GEMM: c = alpha op(a) op(b) + beta c, row-major, op(t) = t or its transpose */
typedef struct kiln_gemm_args {
    const kiln_tensor *a, *b;
    kiln_tensor *c;
    bool trans_a, trans_b;
    float alpha, beta;
    kiln_math math;
    int m, n, k; /* c is m x n, the inner dimension k (each below 2^31) */
} kiln_gemm_args;

/* Over the last axis, one row per class vector:
 * SOFTMAX: y = softmax(x);  SOFTMAX_XENT: y = softmax(x) and loss = logsumexp(x) - x[label];
 * SOFTMAX_XENT_BACK: dx = scale (probs - onehot(labels)) */
typedef struct kiln_softmax_args {
    const kiln_tensor *x;      /* SOFTMAX, SOFTMAX_XENT: the logits */
    const kiln_tensor *probs;  /* SOFTMAX_XENT_BACK */
    const kiln_tensor *labels; /* SOFTMAX_XENT(_BACK): i32, one per row */
    kiln_tensor *y;            /* SOFTMAX, SOFTMAX_XENT: the probabilities */
    kiln_tensor *loss;         /* SOFTMAX_XENT: one per row */
    kiln_tensor *dx;           /* SOFTMAX_XENT_BACK: the logits' gradient */
    float scale;               /* SOFTMAX_XENT_BACK */
} kiln_softmax_args;

/* ARGMAX: idx = the first index of each row's largest value;
 * ACCURACY: correct = the number of rows whose argmax is their label */
typedef struct kiln_argmax_args {
    const kiln_tensor *x;
    const kiln_tensor *labels; /* ACCURACY: i32, one per row */
    kiln_tensor *idx;          /* ARGMAX: i32, one per row */
    kiln_tensor *correct;      /* ACCURACY: 1 value */
} kiln_argmax_args;

/* Images NHWC, the kernel (kh, kw, in, out):
 * CONV2D: y = x * w + b;  CONV2D_BACK_DATA: dx from dy and w;
 * CONV2D_BACK_FILTER: dw and db from x and dy */
typedef struct kiln_conv2d_args {
    const kiln_tensor *x;   /* CONV2D, _BACK_FILTER: (N, H, W, in) */
    const kiln_tensor *w;   /* CONV2D, _BACK_DATA */
    const kiln_tensor *b;   /* CONV2D: (out), or NULL */
    const kiln_tensor *dy;  /* _BACK_DATA, _BACK_FILTER: (N, OH, OW, out) */
    kiln_tensor *y;         /* CONV2D: (N, OH, OW, out) */
    kiln_tensor *dx;        /* _BACK_DATA: (N, H, W, in) */
    kiln_tensor *dw, *db;   /* _BACK_FILTER; db (out) or NULL */
    int groups;             /* >= 1; the kernel is (kh, kw, in / groups, out) */
    int stride_h, stride_w;
    int dilation_h, dilation_w;
    int pad_top, pad_left;  /* before the first row / column; what follows comes from the shapes */
    kiln_math math;
} kiln_conv2d_args;

/* NHWC images:
 * MAX_POOL2D, AVG_POOL2D: y from x;  MAX_POOL2D_BACK: dx from x and dy;  AVG_POOL2D_BACK: dx
 * from dy;  GLOBAL_AVG_POOL2D: y (N, C) from x;  GLOBAL_AVG_POOL2D_BACK: dx from dy (N, C) */
typedef struct kiln_pool2d_args {
    const kiln_tensor *x;  /* the forwards; MAX_POOL2D_BACK: the forward's input */
    const kiln_tensor *dy; /* the backwards */
    kiln_tensor *y;        /* the forwards */
    kiln_tensor *dx;       /* the backwards */
    kiln_pool_geom win;  /* not for the global average */
} kiln_pool2d_args;

/* DROPOUT: y = keep(seed, i) ? x * scale : 0; the backward runs it on dy, giving dx */
typedef struct kiln_dropout_args {
    const kiln_tensor *x;
    kiln_tensor *y;
    float rate;    /* an element is kept when its uniform draw is >= rate */
    float scale;   /* 1 / (1 - rate) */
    uint64_t seed; /* the mask's (src/backends/shared/counter_rng.h) */
    /* SpatialDropout2D: element i draws with index (i / per_example) channels + i % channels
     * (one draw per example and channel); per_example 0: index i (Dropout) */
    int64_t channels, per_example;
    /* the draw index of element 0: the share's first row times the draws per row
     * (kiln_dropout_rows, a data-parallel rank's rows of the global batch); 0 otherwise */
    int64_t offset;
} kiln_dropout_args;

/* The four batch-norm ops, x seen as (outer, C, inner) (src/backends/shared/batchnorm_math.h):
 *   BN_FWD_TRAIN  x, gamma, beta -> y, save_mean, save_invstd (the batch's), and moving_mean,
 *                 moving_var updated in place (both, or both NULL)
 *   BN_FWD_INFER  x, gamma, beta, mean and var (the moving statistics) -> y; save_mean and
 *                 save_invstd NULL or (a frozen layer's training forward) given mean and
 *                 1 / sqrt(var + epsilon)
 *   BN_BWD        x, dy, gamma, mean and invstd (the training forward's save_mean and
 *                 save_invstd) -> dx, dgamma or NULL, dbeta or NULL
 *   BN_BWD_INFER  dy, gamma, var (the moving variance) -> dx
 * relu (not with BN_BWD_INFER): a ReLU fused after the normalization, see kiln_bn_relu.
 * gamma NULL: scale off (1); beta NULL: center off (0). */
typedef struct kiln_bn_args {
    const kiln_tensor *x, *dy;
    const kiln_tensor *gamma, *beta;
    const kiln_tensor *mean, *var, *invstd; /* the statistics x is normalised with, read */
    kiln_tensor *moving_mean, *moving_var;  /* BN_FWD_TRAIN */
    kiln_tensor *y, *save_mean, *save_invstd;
    kiln_tensor *dx, *dgamma, *dbeta;
    float epsilon;       /* every BN op; BN_BWD hands it to cuDNN only (kiln's kernels read invstd) */
    double keep, weight; /* BN_FWD_TRAIN: moving = keep * moving + weight * batch */
    bool unbiased;       /* BN_FWD_TRAIN: the moving variance takes n / (n - 1) var (PyTorch) */
    bool frozen;         /* BN_BWD: the gradient of the inference forward (a frozen layer) */
    kiln_layout layout;  /* where the channels are in a 3-D or 4-D x; a 2-D x is (N, C) */
    kiln_bn_impl impl;   /* kiln's kernels (a path forced or not) or cuDNN (CUDA) */
    /* a fused ReLU (kiln_bn_relu; backends answering KILN_OP_BN_RELU only): BN_FWD_TRAIN and
     * BN_FWD_INFER write max(0, y); BN_BWD masks dy by relu_y, the fused forward's output */
    kiln_bn_relu relu;
    const kiln_tensor *relu_y;
} kiln_bn_args;

/* The tensor a BN op's geometry comes from: x, or dy for BN_BWD_INFER. */
static inline const kiln_tensor *kiln_bn_data(kiln_op_type type, const kiln_bn_args *a) {
    return type == KILN_OP_BN_BWD_INFER ? a->dy : a->x;
}

/* ADAM: every tensor of the group, in f32, Keras' order:
 *   g = g * grad_scale;  w -= (w * weight_decay) * lr (when decay_on);
 *   m += (g - m) one_minus_beta_1;  v += (g g - v) one_minus_beta_2;  v_hat = max(v_hat, v);
 *   w -= (m alpha) / (sqrt(v or v_hat) + epsilon) */
typedef struct kiln_adam_args {
    const kiln_param_group *group; /* w, g, m, v, v_hat (NULL without amsgrad) */
    const kiln_tensor *grad_scale; /* 1 value, or NULL */
    float alpha;                   /* lr sqrt(1 - beta_2^t) / (1 - beta_1^t), t the step */
    float one_minus_beta_1, one_minus_beta_2;
    float epsilon;
    float weight_decay;
    float lr;                      /* the learning rate (weight decay) */
    bool amsgrad;
    bool decay_on;                 /* weight_decay != 0 */
} kiln_adam_args;

/* SGD: every tensor of the group, in f32, Keras' order:
 *   g = g * grad_scale;  w -= (w * weight_decay) * lr (when decay_on);  without momentum
 *   w -= g lr; with it u = u momentum - g lr, w += u (or, Nesterov, w += u momentum - g lr) */
typedef struct kiln_sgd_args {
    const kiln_param_group *group; /* w, g, velocity (NULL without momentum) */
    const kiln_tensor *grad_scale; /* 1 value, or NULL */
    float lr, momentum, weight_decay;
    bool nesterov;
    bool momentum_on; /* momentum != 0 */
    bool decay_on;    /* weight_decay != 0 */
} kiln_sgd_args;

/* SUMSQ_ACC: acc (1 value) += the sum of g's squares */
typedef struct kiln_sumsq_args {
    const kiln_tensor *g;
    kiln_tensor *acc;
} kiln_sumsq_args;

/* CLIP_SCALE: scale = clip_norm * min(1 / norm, 1 / clip_norm), norm = sqrt(sumsq), NaN for an
 * infinite norm */
typedef struct kiln_clip_args {
    const kiln_tensor *sumsq; /* 1 value */
    kiln_tensor *scale;       /* 1 value */
    float clip_norm;
} kiln_clip_args;

/* ACT: y = f(x);  ACT_BACK: dx = dy f'(x) (kiln/nn.h, the formulas in
 * src/backends/shared/act_math.h). With mean and var (C values, the last axis), f is
 * Normalization's (x - mean[c]) / max(sqrt(var[c]), epsilon). */
typedef struct kiln_act_args {
    const kiln_tensor *x;  /* ACT, ACT_BACK: the forward's input (ACT_BACK of Normalization: NULL) */
    const kiln_tensor *dy; /* ACT_BACK */
    const kiln_tensor *mean, *var; /* Normalization, else NULL */
    kiln_tensor *y;        /* ACT */
    kiln_tensor *dx;       /* ACT_BACK */
    kiln_act_params p;
    int64_t channels;      /* Normalization, gate: the last axis */
    float epsilon;         /* Normalization */
    /* ACT with a gate (Multiply's broadcast): y = x * gate[(i / per_example) channels + i % channels] */
    const kiln_tensor *gate;
    int64_t per_example;
} kiln_act_args;

/* COPY_COLUMNS: x (rows, wx) into columns [offset, offset + wx) of y (rows, wy), or (back) out
 * of them into x */
typedef struct kiln_columns_args {
    const kiln_tensor *src;
    kiln_tensor *dst;
    int64_t rows, wx, wy, offset;
    bool back; /* src is y, dst is x */
} kiln_columns_args;
/* NHWC images, x (N, H, W, C) -> y (N, OH, OW, C):
 * PAD2D: y[n, i, j, c] = x[n, i - top, j - left, c], 0 outside x (top, left < 0: a crop);
 * UPSAMPLE2D: y[n, i, j, c] = x[n, i / size_h, j / size_w, c];
 * UPSAMPLE2D_BACK: x (the gradient of the upsampled image) summed over each block, into y;
 * bilinear: interpolated (src/backends/shared/resize_bilinear.h), and its gradient */
typedef struct kiln_resize2d_args {
    const kiln_tensor *x;
    kiln_tensor *y;
    int top, left;        /* PAD2D */
    int size_h, size_w;   /* UPSAMPLE2D(_BACK) */
    bool bilinear;        /* UPSAMPLE2D(_BACK): bilinear (resize_bilinear.h), else nearest */
    float scale_h, scale_w; /* bilinear: H / (H size_h) and W / (W size_w) in f32 (TensorFlow's) */
} kiln_resize2d_args;

/* One op: its type, where it runs, and the arguments of its family. */
struct kiln_op {
    kiln_op_type type;
    kiln_backend *be;  /* the backend of every tensor of the op */
    kiln_dtype dtype;  /* what supports_op is asked about: the dtype the kernels run on */
    union {
        kiln_fill_args fill;             /* FILL */
        kiln_copy_args copy;             /* COPY, CAST */
        kiln_binary_args binary;         /* ADD, SUB, MUL, ADD_RELU */
        kiln_unary_args unary;           /* SCALE, AXPY, RELU, SIGMOID, TANH */
        kiln_unary_back_args unary_back; /* RELU_BACK, SIGMOID_BACK, TANH_BACK */
        kiln_reduce_args reduce;         /* SUM, MEAN */
        kiln_gemm_args gemm;             /* GEMM */
        kiln_softmax_args softmax;       /* SOFTMAX, SOFTMAX_XENT, SOFTMAX_XENT_BACK */
        kiln_argmax_args argmax;         /* ARGMAX, ACCURACY */
        kiln_conv2d_args conv;           /* CONV2D, CONV2D_BACK_DATA, CONV2D_BACK_FILTER */
        kiln_pool2d_args pool;           /* the pooling ops */
        kiln_dropout_args dropout;       /* DROPOUT */
        kiln_bn_args bn;                 /* BN_FWD_TRAIN, BN_FWD_INFER, BN_BWD, BN_BWD_INFER */
        kiln_adam_args adam;             /* ADAM */
        kiln_sgd_args sgd;               /* SGD */
        kiln_sumsq_args sumsq;           /* SUMSQ_ACC */
        kiln_clip_args clip;             /* CLIP_SCALE */
        kiln_act_args act;               /* ACT, ACT_BACK */
        kiln_columns_args columns;       /* COPY_COLUMNS */
        kiln_resize2d_args resize;       /* PAD2D, UPSAMPLE2D, UPSAMPLE2D_BACK */
    };
};

/* An op of `type` on t's backend, supports_op asked about t's dtype, every argument zero: the
 * caller fills its family's member. */
static inline kiln_op kiln_op_on(kiln_op_type type, const kiln_tensor *t) {
    kiln_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.be = t->backend;
    op.dtype = t->dtype;
    return op;
}

/* Runs a filled op on op->be, after the supports_op check (src/ops/ops.c). */
kiln_status kiln_op_run(const kiln_op *op);

#ifdef __cplusplus
}
#endif
#endif
