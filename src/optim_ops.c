/* optim_ops.c: the device-independent front of the fused optimizer updates and global-norm
 * clipping (include/kiln/optim_ops.h). Checks the arguments once, turns the double
 * hyperparameters into the f32 constants the kernels use (once, here, so every backend gets
 * the same bits), fills a kiln_op and hands it to the tensors' backend. Slot meanings are
 * written beside each builder. */
#include <math.h>
#include <stdio.h>

#include "backend_impl.h"
#include "error.h"
#include "kiln/optim_ops.h"
#include "ops_check.h"

/* a slot tensor of w's shape and backend (f32, contiguous) */
static kiln_status check_slot(const char *fn, const char *name, const kiln_tensor *w,
                              const kiln_tensor *t) {
    KILN_TRY(kiln_check_f32(fn, name, t));
    return kiln_check_same_shape(fn, "w", w, name, t);
}

static kiln_status check_scalar(const char *fn, const char *name, const kiln_tensor *ref,
                                 const kiln_tensor *t) {
    KILN_TRY(kiln_check_f32(fn, name, t));
    KILN_TRY(kiln_check_same_backend(fn, ref, t));
    if (kiln_tensor_numel(t) != 1) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s must hold exactly 1 value", fn, name,
                          kiln_shape_str(t, s, sizeof s));
    }
    return KILN_OK;
}

static kiln_status check_hyper(const char *fn, const char *name, double v, double lo, double hi,
                               bool hi_open) {
    if (!isfinite(v) || v < lo || v > hi || (hi_open && v == hi))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is %g, want %g .. %g%s", fn, name, v, lo,
                          hi, hi_open ? " (exclusive)" : "");
    return KILN_OK;
}

static kiln_status check_update(const char *fn, const kiln_tensor *w, const kiln_tensor *g,
                                const kiln_tensor *grad_scale) {
    KILN_TRY(kiln_check_f32(fn, "w", w));
    KILN_TRY(check_slot(fn, "g", w, g));
    if (grad_scale) KILN_TRY(check_scalar(fn, "grad_scale", w, grad_scale));
    return KILN_OK;
}

/* ADAM: dst[0] w, dst[1] m, dst[2] v, dst[3] v_hat (amsgrad) or NULL; src[0] g, src[1]
 * grad_scale or NULL; f[0] alpha, f[1] 1 - beta_1, f[2] 1 - beta_2, f[3] epsilon,
 * f[4] weight_decay, f[5] lr; i[0] amsgrad, i[1] weight decay on */
kiln_status kiln_adam_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *m,
                             kiln_tensor *v, kiln_tensor *v_hat, const kiln_adam_params *p,
                             int64_t step, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_adam_update";
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_update(fn, w, g, grad_scale));
    KILN_TRY(check_slot(fn, "m", w, m));
    KILN_TRY(check_slot(fn, "v", w, v));
    if (p->amsgrad && !v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: amsgrad needs the v_hat slot, got NULL", fn);
    if (!p->amsgrad && v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: v_hat given but amsgrad is off", fn);
    if (v_hat) KILN_TRY(check_slot(fn, "v_hat", w, v_hat));
    KILN_TRY(check_hyper(fn, "learning_rate", p->learning_rate, 0.0, HUGE_VAL, false));
    KILN_TRY(check_hyper(fn, "beta_1", p->beta_1, 0.0, 1.0, true));
    KILN_TRY(check_hyper(fn, "beta_2", p->beta_2, 0.0, 1.0, true));
    KILN_TRY(check_hyper(fn, "epsilon", p->epsilon, 0.0, HUGE_VAL, false));
    KILN_TRY(check_hyper(fn, "weight_decay", p->weight_decay, 0.0, HUGE_VAL, false));
    if (step < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: step is %lld, want >= 1 (the first update is 1)",
                          fn, (long long)step);
    /* Keras keeps the learning rate in an f32 variable; the rest are Python floats */
    float lr = (float)p->learning_rate;
    double t = (double)step;
    double alpha = (double)lr * sqrt(1.0 - pow(p->beta_2, t)) / (1.0 - pow(p->beta_1, t));
    kiln_op op = {.type = KILN_OP_ADAM, .src = {g, grad_scale}, .dst = {w, m, v, v_hat},
                  .f = {(float)alpha, (float)(1.0 - p->beta_1), (float)(1.0 - p->beta_2),
                        (float)p->epsilon, (float)p->weight_decay, lr},
                  .i = {p->amsgrad, p->weight_decay != 0.0}};
    return kiln_tensor_numel(w) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* SGD: dst[0] w, dst[1] velocity or NULL; src[0] g, src[1] grad_scale or NULL; f[0] lr,
 * f[1] momentum, f[2] weight_decay; i[0] nesterov, i[1] momentum on, i[2] weight decay on */
kiln_status kiln_sgd_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *velocity,
                            const kiln_sgd_params *p, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_sgd_update";
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_update(fn, w, g, grad_scale));
    KILN_TRY(check_hyper(fn, "learning_rate", p->learning_rate, 0.0, HUGE_VAL, false));
    KILN_TRY(check_hyper(fn, "momentum", p->momentum, 0.0, 1.0, false));
    KILN_TRY(check_hyper(fn, "weight_decay", p->weight_decay, 0.0, HUGE_VAL, false));
    bool momentum = p->momentum != 0.0;
    if (momentum && !velocity)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: momentum %g needs the velocity slot, got NULL",
                          fn, p->momentum);
    if (velocity) KILN_TRY(check_slot(fn, "velocity", w, velocity));
    kiln_op op = {.type = KILN_OP_SGD, .src = {g, grad_scale}, .dst = {w, momentum ? velocity : NULL},
                  .f = {(float)p->learning_rate, (float)p->momentum, (float)p->weight_decay},
                  .i = {p->nesterov, momentum, p->weight_decay != 0.0}};
    return kiln_tensor_numel(w) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* SUMSQ_ACC: src[0] g; dst[0] acc (1 value) */
kiln_status kiln_sum_squares_accumulate(const kiln_tensor *g, kiln_tensor *acc) {
    const char *fn = "kiln_sum_squares_accumulate";
    KILN_TRY(kiln_check_f32(fn, "g", g));
    KILN_TRY(check_scalar(fn, "acc", g, acc));
    kiln_op op = {.type = KILN_OP_SUMSQ_ACC, .src = {g}, .dst = {acc}};
    return kiln_tensor_numel(g) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* CLIP_SCALE: src[0] sumsq (1 value); dst[0] scale (1 value); f[0] clip_norm */
kiln_status kiln_clip_scale(const kiln_tensor *sumsq, float clip_norm, kiln_tensor *scale) {
    const char *fn = "kiln_clip_scale";
    KILN_TRY(kiln_check_f32(fn, "sumsq", sumsq));
    KILN_TRY(check_scalar(fn, "sumsq", sumsq, sumsq));
    KILN_TRY(check_scalar(fn, "scale", sumsq, scale));
    if (!(clip_norm > 0.0f) || isinf(clip_norm))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: clip_norm is %g, want a finite value > 0", fn,
                          (double)clip_norm);
    kiln_op op = {.type = KILN_OP_CLIP_SCALE, .src = {sumsq}, .dst = {scale}, .f = {clip_norm}};
    return kiln_op_run(&op);
}

kiln_status kiln_global_norm_clip_scale(const kiln_tensor *const *grads, int n, float clip_norm,
                                        kiln_tensor *sumsq, kiln_tensor *scale) {
    const char *fn = "kiln_global_norm_clip_scale";
    if (n < 0 || (n > 0 && !grads))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %d gradients at %p", fn, n, (const void *)grads);
    KILN_TRY(kiln_check_f32(fn, "sumsq", sumsq));
    KILN_TRY(kiln_fill(sumsq, 0.0));
    for (int k = 0; k < n; k++) {
        if (!grads[k]) return kiln_error(KILN_ERR_INVALID_ARG, "%s: gradient %d is NULL", fn, k);
        KILN_TRY(kiln_sum_squares_accumulate(grads[k], sumsq));
    }
    return kiln_clip_scale(sumsq, clip_norm, scale);
}
