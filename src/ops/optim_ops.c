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
#include "optim_group.h"

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

/* Runs `op` (its f[], i[] and grad_scale in src[1] filled) over n tensor sets, KILN_GROUP_MAX
 * at a time: op->ext is the group; the slots hold the group's first set (for the backend and
 * dtype checks of kiln_op_run). s0, s1, s2: the optimizer's slots (arrays, or NULL). */
static kiln_status run_group(kiln_op *op, kiln_tensor *const *w, const kiln_tensor *const *g,
                             kiln_tensor *const *s0, kiln_tensor *const *s1,
                             kiln_tensor *const *s2, int n) {
    kiln_param_group grp;
    for (int k0 = 0; k0 < n; k0 += KILN_GROUP_MAX) {
        grp.n = n - k0 < KILN_GROUP_MAX ? n - k0 : KILN_GROUP_MAX;
        for (int k = 0; k < grp.n; k++) {
            grp.w[k] = w[k0 + k];
            grp.g[k] = g[k0 + k];
            grp.s0[k] = s0 ? s0[k0 + k] : NULL;
            grp.s1[k] = s1 ? s1[k0 + k] : NULL;
            grp.s2[k] = s2 ? s2[k0 + k] : NULL;
        }
        op->src[0] = grp.g[0];
        op->dst[0] = grp.w[0];
        op->dst[1] = grp.s0[0];
        op->dst[2] = grp.s1[0];
        op->dst[3] = grp.s2[0];
        op->ext = &grp;
        KILN_TRY(kiln_op_run(op));
    }
    op->ext = NULL;
    return KILN_OK;
}

/* "fn (tensor k)": the name of a group member in messages */
static const char *member_name(char *buf, size_t size, const char *fn, int k) {
    snprintf(buf, size, "%s (tensor %d)", fn, k);
    return buf;
}

static kiln_status check_group(const char *fn, int n, const void *w, const void *g) {
    if (n < 0 || (n > 0 && (!w || !g)))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %d tensors, w at %p, g at %p", fn, n, w, g);
    return KILN_OK;
}

/* ADAM: dst[0] w, dst[1] m, dst[2] v, dst[3] v_hat (amsgrad) or NULL; src[0] g, src[1]
 * grad_scale or NULL; f[0] alpha, f[1] 1 - beta_1, f[2] 1 - beta_2, f[3] epsilon,
 * f[4] weight_decay, f[5] lr; i[0] amsgrad, i[1] weight decay on; ext: a kiln_param_group
 * (s0 m, s1 v, s2 v_hat) or NULL */
static kiln_status adam_op(const char *fn, const kiln_adam_params *p, int64_t step,
                           const kiln_tensor *grad_scale, kiln_op *op) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
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
    kiln_op o = {.type = KILN_OP_ADAM, .src = {NULL, grad_scale},
                 .f = {(float)alpha, (float)(1.0 - p->beta_1), (float)(1.0 - p->beta_2),
                       (float)p->epsilon, (float)p->weight_decay, lr},
                 .i = {p->amsgrad, p->weight_decay != 0.0}};
    *op = o;
    return KILN_OK;
}

static kiln_status adam_check_set(const char *fn, const kiln_tensor *w, const kiln_tensor *g,
                                  const kiln_tensor *m, const kiln_tensor *v,
                                  const kiln_tensor *v_hat, bool amsgrad,
                                  const kiln_tensor *grad_scale) {
    KILN_TRY(check_update(fn, w, g, grad_scale));
    KILN_TRY(check_slot(fn, "m", w, m));
    KILN_TRY(check_slot(fn, "v", w, v));
    if (amsgrad && !v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: amsgrad needs the v_hat slot, got NULL", fn);
    if (!amsgrad && v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: v_hat given but amsgrad is off", fn);
    if (v_hat) KILN_TRY(check_slot(fn, "v_hat", w, v_hat));
    return KILN_OK;
}

kiln_status kiln_adam_update_group(kiln_tensor *const *w, const kiln_tensor *const *g,
                                   kiln_tensor *const *m, kiln_tensor *const *v,
                                   kiln_tensor *const *v_hat, int n, const kiln_adam_params *p,
                                   int64_t step, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_adam_update_group";
    KILN_TRY(check_group(fn, n, w, g));
    if (n > 0 && (!m || !v))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: the m and v arrays are required", fn);
    kiln_op op;
    KILN_TRY(adam_op(fn, p, step, grad_scale, &op));
    if (p->amsgrad && n > 0 && !v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: amsgrad needs the v_hat array, got NULL", fn);
    char name[96];
    for (int k = 0; k < n; k++) {
        const char *fk = member_name(name, sizeof name, fn, k);
        KILN_TRY(adam_check_set(fk, w[k], g[k], m[k], v[k], v_hat ? v_hat[k] : NULL, p->amsgrad,
                                grad_scale));
        KILN_TRY(kiln_check_same_backend(fk, w[0], w[k]));
    }
    return run_group(&op, w, g, m, v, p->amsgrad ? v_hat : NULL, n);
}

kiln_status kiln_adam_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *m,
                             kiln_tensor *v, kiln_tensor *v_hat, const kiln_adam_params *p,
                             int64_t step, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_adam_update";
    kiln_op op;
    KILN_TRY(adam_op(fn, p, step, grad_scale, &op));
    KILN_TRY(adam_check_set(fn, w, g, m, v, v_hat, p->amsgrad, grad_scale));
    op.src[0] = g;
    op.dst[0] = w;
    op.dst[1] = m;
    op.dst[2] = v;
    op.dst[3] = v_hat;
    return kiln_tensor_numel(w) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* SGD: dst[0] w, dst[1] velocity or NULL; src[0] g, src[1] grad_scale or NULL; f[0] lr,
 * f[1] momentum, f[2] weight_decay; i[0] nesterov, i[1] momentum on, i[2] weight decay on;
 * ext: a kiln_param_group (s0 velocity) or NULL */
static kiln_status sgd_op(const char *fn, const kiln_sgd_params *p, const kiln_tensor *grad_scale,
                          kiln_op *op) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_hyper(fn, "learning_rate", p->learning_rate, 0.0, HUGE_VAL, false));
    KILN_TRY(check_hyper(fn, "momentum", p->momentum, 0.0, 1.0, false));
    KILN_TRY(check_hyper(fn, "weight_decay", p->weight_decay, 0.0, HUGE_VAL, false));
    kiln_op o = {.type = KILN_OP_SGD, .src = {NULL, grad_scale},
                 .f = {(float)p->learning_rate, (float)p->momentum, (float)p->weight_decay},
                 .i = {p->nesterov, p->momentum != 0.0, p->weight_decay != 0.0}};
    *op = o;
    return KILN_OK;
}

static kiln_status sgd_check_set(const char *fn, const kiln_tensor *w, const kiln_tensor *g,
                                 const kiln_tensor *velocity, const kiln_sgd_params *p,
                                 const kiln_tensor *grad_scale) {
    KILN_TRY(check_update(fn, w, g, grad_scale));
    if (p->momentum != 0.0 && !velocity)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: momentum %g needs the velocity slot, got NULL",
                          fn, p->momentum);
    if (velocity) KILN_TRY(check_slot(fn, "velocity", w, velocity));
    return KILN_OK;
}

kiln_status kiln_sgd_update_group(kiln_tensor *const *w, const kiln_tensor *const *g,
                                  kiln_tensor *const *velocity, int n, const kiln_sgd_params *p,
                                  const kiln_tensor *grad_scale) {
    const char *fn = "kiln_sgd_update_group";
    KILN_TRY(check_group(fn, n, w, g));
    kiln_op op;
    KILN_TRY(sgd_op(fn, p, grad_scale, &op));
    bool momentum = p->momentum != 0.0;
    if (momentum && n > 0 && !velocity)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: momentum %g needs the velocity array, got NULL",
                          fn, p->momentum);
    char name[96];
    for (int k = 0; k < n; k++) {
        const char *fk = member_name(name, sizeof name, fn, k);
        KILN_TRY(sgd_check_set(fk, w[k], g[k], velocity ? velocity[k] : NULL, p, grad_scale));
        KILN_TRY(kiln_check_same_backend(fk, w[0], w[k]));
    }
    return run_group(&op, w, g, momentum ? velocity : NULL, NULL, NULL, n);
}

kiln_status kiln_sgd_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *velocity,
                            const kiln_sgd_params *p, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_sgd_update";
    kiln_op op;
    KILN_TRY(sgd_op(fn, p, grad_scale, &op));
    KILN_TRY(sgd_check_set(fn, w, g, velocity, p, grad_scale));
    op.src[0] = g;
    op.dst[0] = w;
    op.dst[1] = p->momentum != 0.0 ? velocity : NULL;
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
