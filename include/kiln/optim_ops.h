/* kiln/optim_ops.h: fused optimizer updates, one op per parameter tensor, with Keras 3's
 * formulas and defaults, and the global-norm gradient clip.
 *
 * Each update reads the gradient g and rewrites the parameter w and its slots in place, in one
 * pass (one kernel on CUDA). Hyperparameters are doubles (Python floats in Keras) and are
 * rounded to f32 once on the host; the per-element arithmetic is f32, one IEEE operation at a
 * time (no fused multiply-add), in the order Keras writes it, so every backend gives the same
 * bits. `grad_scale`, when not NULL, is a 1-element f32 tensor on w's backend that multiplies
 * g first (the factor from kiln_clip_scale), read on the device: no host round trip.
 * All tensors are f32, contiguous, of w's shape (grad_scale: 1 element). */
#ifndef KILN_OPTIM_OPS_H
#define KILN_OPTIM_OPS_H

#include "kiln/api.h"

#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* keras.optimizers.Adam / AdamW. With weight_decay > 0 this is AdamW (decoupled). */
typedef struct kiln_adam_params {
    double learning_rate; /* 0.001 */
    double beta_1;        /* 0.9 */
    double beta_2;        /* 0.999 */
    double epsilon;       /* 1e-7, added to sqrt(v) (Keras' "epsilon hat") */
    double weight_decay;  /* 0 for Adam; AdamW's default is 0.004 */
    bool amsgrad;         /* keep v_hat = max(v_hat, v) and divide by sqrt(v_hat) */
} kiln_adam_params;

#define KILN_ADAM_DEFAULTS {0.001, 0.9, 0.999, 1e-7, 0.0, false}
#define KILN_ADAMW_DEFAULTS {0.001, 0.9, 0.999, 1e-7, 0.004, false}

/* One Adam step; `step` is t >= 1, the number of this update (Keras' iterations + 1).
 * alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)        (on the host, in double, then f32)
 * g = g * grad_scale                                     (when grad_scale is given)
 * w = w - (w * weight_decay) * lr                        (when weight_decay > 0)
 * m = m + (g - m) * (1 - beta_1)
 * v = v + (g * g - v) * (1 - beta_2)
 * v_hat = max(v_hat, v)                                  (amsgrad; v_hat NULL otherwise)
 * w = w - (m * alpha) / (sqrt(amsgrad ? v_hat : v) + epsilon)
 * m, v (and v_hat) start at zero. */
KILN_API kiln_status kiln_adam_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *m,
                             kiln_tensor *v, kiln_tensor *v_hat, const kiln_adam_params *p,
                             int64_t step, const kiln_tensor *grad_scale);

/* keras.optimizers.SGD. */
typedef struct kiln_sgd_params {
    double learning_rate; /* 0.01 */
    double momentum;      /* 0: plain SGD (velocity may be NULL) */
    bool nesterov;
    double weight_decay;  /* 0 (Keras' base-optimizer weight decay) */
} kiln_sgd_params;

#define KILN_SGD_DEFAULTS {0.01, 0.0, false, 0.0}

/* One SGD step:
 * g = g * grad_scale;  w = w - (w * weight_decay) * lr   (as for Adam)
 * momentum 0:  w = w - g * lr
 * otherwise:   u = u * momentum - g * lr  (u = velocity, starts at zero)
 *              w = w + u                               (nesterov: w = w + (u * momentum - g * lr)) */
KILN_API kiln_status kiln_sgd_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *velocity,
                            const kiln_sgd_params *p, const kiln_tensor *grad_scale);

/* ---- parameter groups ---- */

/* The same updates over n parameter tensors at once: set k is w[k], g[k] and its slots (m[k],
 * v[k], v_hat[k] for Adam, v_hat NULL without amsgrad; velocity[k] for SGD, velocity NULL
 * without momentum). One fused kernel per 32 tensors on CUDA (a loop on the CPU); the results
 * equal n single updates bit for bit. Every tensor on one backend; grad_scale applies to all. */
KILN_API kiln_status kiln_adam_update_group(kiln_tensor *const *w, const kiln_tensor *const *g,
                                   kiln_tensor *const *m, kiln_tensor *const *v,
                                   kiln_tensor *const *v_hat, int n, const kiln_adam_params *p,
                                   int64_t step, const kiln_tensor *grad_scale);
KILN_API kiln_status kiln_sgd_update_group(kiln_tensor *const *w, const kiln_tensor *const *g,
                                  kiln_tensor *const *velocity, int n, const kiln_sgd_params *p,
                                  const kiln_tensor *grad_scale);

/* ---- global-norm clipping (Keras' global_clipnorm) ---- */

/* acc (1 f32 element) += sum of g * g (summed in double within g, in a fixed order). */
KILN_API kiln_status kiln_sum_squares_accumulate(const kiln_tensor *g, kiln_tensor *acc);
/* scale (1 f32) = c * min(1 / norm, 1 / c) + (norm - norm), norm = sqrt(sumsq): 1 while the
 * norm is at most c = clip_norm > 0, c / norm above, NaN when the norm is not finite (Keras'
 * clip_by_global_norm). */
KILN_API kiln_status kiln_clip_scale(const kiln_tensor *sumsq, float clip_norm, kiln_tensor *scale);
/* Both: sumsq = sum over the n gradients of sum(g * g), then scale as above; pass `scale` as
 * every update's grad_scale. sumsq and scale are 1-element f32 tensors on the gradients'
 * backend. */
KILN_API kiln_status kiln_global_norm_clip_scale(const kiln_tensor *const *grads, int n, float clip_norm,
                                        kiln_tensor *sumsq, kiln_tensor *scale);

#ifdef __cplusplus
}
#endif
#endif
