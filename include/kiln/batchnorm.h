/* kiln/batchnorm.h: batch normalization (Ioffe & Szegedy 2015) as ops: the forward pass in
 * training and in inference mode, the backward pass, and the moving statistics under Keras' or
 * PyTorch's convention. docs/batchnorm.md gives the math, the conventions and the kernels.
 *
 * Tensors. x, y, dy, dx: f32, f16 or bf16 (all the same dtype), contiguous, 2 to 4 dimensions:
 *   (N, C)            per-feature mode (Dense outputs): statistics over N;
 *   (N, H, W, C)      layout KILN_LAYOUT_NHWC (Keras' channels_last): statistics over N, H, W
 *                     (any rank: the channel is the last axis);
 *   (N, C, H, W)      layout KILN_LAYOUT_NCHW (PyTorch's default): statistics over N, H, W
 *                     (any rank: the channel is axis 1).
 * Per-channel tensors (gamma, beta, moving_mean, moving_var, save_mean, save_invstd, dgamma,
 * dbeta) are f32 with C elements (any shape holding C values, e.g. (C,) or (1, C, 1, 1)),
 * whatever the dtype of x. n below is the number of values per channel (numel(x) / C).
 * y must not alias x, nor dx alias dy or x. All tensors of one call live on one backend. */
#ifndef KILN_BATCHNORM_H
#define KILN_BATCHNORM_H

#include "kiln/api.h"

#include "kiln/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef KILN_LAYOUT_DEFINED
#define KILN_LAYOUT_DEFINED
/* Where the channel axis of an image tensor is. */
typedef enum kiln_layout { KILN_LAYOUT_NHWC = 0, KILN_LAYOUT_NCHW } kiln_layout;
#endif

/* Whose moving-statistics rule: see kiln_bn_params.momentum. */
typedef enum kiln_bn_convention { KILN_BN_KERAS = 0, KILN_BN_TORCH } kiln_bn_convention;

/* Which implementation runs on a CUDA backend (the CPU backend always runs its reference and
 * ignores this). The forced paths exist for tests and benchmarks; a forced path that cannot
 * take the shape fails with KILN_ERR_UNSUPPORTED. */
typedef enum kiln_bn_impl {
    KILN_BN_IMPL_KILN = 0,   /* kiln's warp-shuffle kernels, path chosen by shape */
    KILN_BN_IMPL_CUDNN,      /* cuDNN's BatchNormalization (the baseline and a fallback) */
    KILN_BN_IMPL_KILN_BLOCK, /* kiln, forced: one block owns whole channels (no grid sync) */
    KILN_BN_IMPL_KILN_GRID,  /* kiln, forced: one cooperative kernel, the slice kept on chip */
    KILN_BN_IMPL_KILN_MULTI, /* kiln, forced: reduce, finalize, apply as three kernels */
    KILN_BN_IMPL_COUNT
} kiln_bn_impl;

/* A ReLU fused after the normalization (kiln_bn_params.relu): the forwards write max(0, y) in
 * the pass that computes y (NaN stays NaN, -0 becomes +0, as kiln_relu), and
 * kiln_batchnorm_backward_relu masks dy by that output before the backward's sums, in the same
 * passes. The results equal BN then the ReLU, bit for bit; the two values differ only in the
 * mask of the backward, each that of one ReLU of kiln's:
 *   KILN_BN_RELU      kiln_relu_backward's (Activation('relu')): dy where the output is > 0,
 *                     else +0;
 *   KILN_BN_RELU_ACT  kiln_act_backward's for a default ReLU (the ReLU layer): dy relu'(output),
 *                     with relu' 1 on (0, inf), 0 at 0 and +inf (dy * 0: -0 for dy < 0, NaN
 *                     for dy NaN or infinite), and NaN where the output is NaN. */
typedef enum kiln_bn_relu { KILN_BN_RELU_NONE = 0, KILN_BN_RELU, KILN_BN_RELU_ACT, KILN_BN_RELU_COUNT } kiln_bn_relu;

typedef struct kiln_bn_params {
    kiln_bn_convention convention;
    /* added to the variance under the square root: Keras 1e-3, PyTorch 1e-5 (>= 0) */
    float epsilon;
    /* in [0, 1]. Keras: the weight of the old value,
     *     moving = momentum * moving + (1 - momentum) * batch          (default 0.99);
     * PyTorch: the weight of the batch,
     *     moving = (1 - momentum) * moving + momentum * batch          (default 0.1). */
    float momentum;
    /* PyTorch's momentum=None: a cumulative average, the batch weighted 1 / num_batches_tracked
     * (momentum is then ignored) */
    bool cumulative;
    /* training forward calls that updated the moving statistics; kiln_batchnorm_forward_train
     * adds 1 before using it (PyTorch's num_batches_tracked) */
    int64_t num_batches_tracked;
    bool center;    /* add beta (else beta is 0 and may be NULL) */
    bool scale;     /* multiply by gamma (else gamma is 1 and may be NULL) */
    /* false: a frozen layer (Keras' rule since TF 2.0): forward_train runs in inference mode
     * with the moving statistics, updates nothing, and backward gives the inference-mode
     * gradient */
    bool trainable;
    kiln_layout layout; /* for 3-D and 4-D tensors; a 2-D (N, C) tensor is per-feature mode */
    kiln_bn_impl impl;
    /* constant initializers for kiln_batchnorm_init */
    float gamma_init, beta_init, moving_mean_init, moving_var_init;
    /* a BatchNormalization layer of a model trained data-parallel (kiln/dist.h): the batch
     * statistics and the backward's sums over the global batch of every rank (Keras'
     * synchronized=True); the ops themselves ignore it */
    bool synchronized;
    /* a ReLU fused after the normalization (kiln_bn_relu; default none). The backends that
     * take it answer kiln_backend_supports(be, KILN_OP_BN_RELU, dtype); the CPU does, CUDA
     * does not (the ops refuse it there with KILN_ERR_UNSUPPORTED). Not with
     * kiln_batchnorm_backward (which has no output to mask with) nor
     * kiln_batchnorm_backward_infer. */
    kiln_bn_relu relu;
} kiln_bn_params;

/* Keras' BatchNormalization defaults: momentum 0.99, epsilon 1e-3, biased moving variance,
 * NHWC, center and scale on, trainable; gamma 1, beta 0, moving mean 0, moving variance 1. */
KILN_API kiln_bn_params kiln_bn_params_keras(void);
/* PyTorch's BatchNorm2d defaults: momentum 0.1, epsilon 1e-5, unbiased moving variance
 * (n / (n - 1); with n = 1 the biased 0 is used, see docs/batchnorm.md), NCHW, affine, the
 * same initial values, num_batches_tracked 0. */
KILN_API kiln_bn_params kiln_bn_params_torch(void);

/* Fills gamma, beta, moving_mean, moving_var (each may be NULL) with the initializer values. */
KILN_API kiln_status kiln_batchnorm_init(const kiln_bn_params *p, kiln_tensor *gamma, kiln_tensor *beta,
                                kiln_tensor *moving_mean, kiln_tensor *moving_var);

/* Training forward: per channel, the batch mean and biased variance var over every axis but
 * the channel axis (n >= 1 values),
 *   y = gamma * (x - mean) / sqrt(var + epsilon) + beta,
 * save_mean = mean, save_invstd = 1 / sqrt(var + epsilon) (for the backward pass), and the
 * moving statistics updated in place under p's convention, then p->num_batches_tracked += 1.
 * moving_mean and moving_var may both be NULL (no moving statistics, nothing updated).
 * With p->trainable false it is the inference forward instead, and save_mean, save_invstd get
 * the moving mean and 1 / sqrt(moving_var + epsilon); nothing is updated.
 * A channel holding a NaN or an infinity gets NaN in y, in its saved and its moving
 * statistics (never a finite value that hides it). */
KILN_API kiln_status kiln_batchnorm_forward_train(const kiln_tensor *x, const kiln_tensor *gamma,
                                         const kiln_tensor *beta, kiln_tensor *moving_mean,
                                         kiln_tensor *moving_var, kiln_bn_params *p,
                                         kiln_tensor *y, kiln_tensor *save_mean,
                                         kiln_tensor *save_invstd);

/* Inference forward: y = gamma * (x - moving_mean) / sqrt(moving_var + epsilon) + beta. */
KILN_API kiln_status kiln_batchnorm_forward_infer(const kiln_tensor *x, const kiln_tensor *gamma,
                                         const kiln_tensor *beta, const kiln_tensor *moving_mean,
                                         const kiln_tensor *moving_var, const kiln_bn_params *p,
                                         kiln_tensor *y);

/* Backward from the saved statistics of forward_train, with xhat = (x - save_mean) * save_invstd
 * and s = 1 / save_invstd:
 *   dbeta = sum(dy), dgamma = sum(dy * xhat),
 *   dx = gamma / (n * s) * (n * dy - sum(dy) - xhat * sum(dy * xhat))      (training mode);
 * with p->trainable false (the saved values then are the moving ones) the inference gradient
 *   dx = dy * gamma * save_invstd, and the same dgamma, dbeta.
 * dgamma and dbeta may be NULL (not computed); gamma may be NULL when p->scale is false. */
KILN_API kiln_status kiln_batchnorm_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                    const kiln_tensor *gamma, const kiln_tensor *save_mean,
                                    const kiln_tensor *save_invstd, const kiln_bn_params *p,
                                    kiln_tensor *dx, kiln_tensor *dgamma, kiln_tensor *dbeta);

/* kiln_batchnorm_backward of a forward that fused a ReLU (p->relu, not KILN_BN_RELU_NONE):
 * dy, the gradient of the ReLU's output, masked by y, that forward's output (the ReLU's), as
 * p->relu says, then the backward above, in the same passes. y has x's shape and dtype and
 * must not alias dx. */
KILN_API kiln_status kiln_batchnorm_backward_relu(const kiln_tensor *x, const kiln_tensor *y,
                                                  const kiln_tensor *dy, const kiln_tensor *gamma,
                                                  const kiln_tensor *save_mean,
                                                  const kiln_tensor *save_invstd,
                                                  const kiln_bn_params *p, kiln_tensor *dx,
                                                  kiln_tensor *dgamma, kiln_tensor *dbeta);

/* Backward of the inference forward with respect to x only:
 *   dx = dy * gamma / sqrt(moving_var + epsilon). */
KILN_API kiln_status kiln_batchnorm_backward_infer(const kiln_tensor *dy, const kiln_tensor *gamma,
                                          const kiln_tensor *moving_var, const kiln_bn_params *p,
                                          kiln_tensor *dx);

#ifdef __cplusplus
}
#endif
#endif
