/* optim_ops.c: the device-independent front of the fused optimizer updates and global-norm
 * clipping (include/kiln/optim_ops.h). Checks the arguments once, turns the double
 * hyperparameters into the f32 constants the kernels use (once, here, so every backend gets
 * the same bits), fills the family's arguments in a kiln_op (op_args.h) and hands it to the
 * tensors' backend. A single update is a parameter group of one (optim_group.h). */
#include <math.h>
#include <stdio.h>

#include "error.h"
#include "kiln/optim_ops.h"
#include "op_args.h"
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

/* The tensor arrays of an update of n sets; an optimizer's unused state arrays are NULL. */
typedef struct update_sets {
    kiln_tensor *const *w;
    const kiln_tensor *const *g;
    kiln_tensor *const *m, *const *v, *const *v_hat; /* Adam */
    kiln_tensor *const *velocity;                    /* SGD */
    int n;
} update_sets;

static kiln_tensor *set_member(kiln_tensor *const *array, int k) { return array ? array[k] : NULL; }

/* Runs `op` (ADAM or SGD, its hyperparameters filled, its group `grp`) over the sets,
 * KILN_GROUP_MAX at a time, filling grp with each group in turn. */
static kiln_status run_groups(const kiln_op *op, kiln_param_group *grp, const update_sets *s) {
    for (int k0 = 0; k0 < s->n; k0 += KILN_GROUP_MAX) {
        grp->n = s->n - k0 < KILN_GROUP_MAX ? s->n - k0 : KILN_GROUP_MAX;
        for (int k = 0; k < grp->n; k++) {
            grp->w[k] = s->w[k0 + k];
            grp->g[k] = s->g[k0 + k];
            grp->m[k] = set_member(s->m, k0 + k);
            grp->v[k] = set_member(s->v, k0 + k);
            grp->v_hat[k] = set_member(s->v_hat, k0 + k);
            grp->velocity[k] = set_member(s->velocity, k0 + k);
        }
        KILN_TRY(kiln_op_run(op));
    }
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

/* ADAM's hyperparameters as the kernels take them (the group is filled by run_groups) */
static kiln_status adam_args(const char *fn, const kiln_adam_params *p, int64_t step,
                             const kiln_tensor *grad_scale, kiln_adam_args *a) {
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
    *a = (kiln_adam_args){.grad_scale = grad_scale, .alpha = (float)alpha,
                          .one_minus_beta_1 = (float)(1.0 - p->beta_1),
                          .one_minus_beta_2 = (float)(1.0 - p->beta_2),
                          .epsilon = (float)p->epsilon, .weight_decay = (float)p->weight_decay,
                          .lr = lr, .amsgrad = p->amsgrad, .decay_on = p->weight_decay != 0.0};
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
    kiln_adam_args a;
    KILN_TRY(adam_args(fn, p, step, grad_scale, &a));
    if (p->amsgrad && n > 0 && !v_hat)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: amsgrad needs the v_hat array, got NULL", fn);
    char name[96];
    for (int k = 0; k < n; k++) {
        const char *fk = member_name(name, sizeof name, fn, k);
        KILN_TRY(adam_check_set(fk, w[k], g[k], m[k], v[k], v_hat ? v_hat[k] : NULL, p->amsgrad,
                                grad_scale));
        KILN_TRY(kiln_check_same_backend(fk, w[0], w[k]));
    }
    if (n == 0) return KILN_OK;
    kiln_param_group grp;
    kiln_op op = kiln_op_on(KILN_OP_ADAM, g[0]);
    op.adam = a;
    op.adam.group = &grp;
    update_sets s = {.w = w, .g = g, .m = m, .v = v, .v_hat = p->amsgrad ? v_hat : NULL, .n = n};
    return run_groups(&op, &grp, &s);
}

kiln_status kiln_adam_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *m,
                             kiln_tensor *v, kiln_tensor *v_hat, const kiln_adam_params *p,
                             int64_t step, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_adam_update";
    kiln_adam_args a;
    KILN_TRY(adam_args(fn, p, step, grad_scale, &a));
    KILN_TRY(adam_check_set(fn, w, g, m, v, v_hat, p->amsgrad, grad_scale));
    if (kiln_tensor_numel(w) == 0) return KILN_OK;
    kiln_param_group grp;
    kiln_op op = kiln_op_on(KILN_OP_ADAM, g);
    op.adam = a;
    op.adam.group = &grp;
    update_sets s = {.w = &w, .g = &g, .m = &m, .v = &v, .v_hat = &v_hat, .n = 1};
    return run_groups(&op, &grp, &s);
}

/* SGD's hyperparameters as the kernels take them (the group is filled by run_groups) */
static kiln_status sgd_args(const char *fn, const kiln_sgd_params *p,
                            const kiln_tensor *grad_scale, kiln_sgd_args *a) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    KILN_TRY(check_hyper(fn, "learning_rate", p->learning_rate, 0.0, HUGE_VAL, false));
    KILN_TRY(check_hyper(fn, "momentum", p->momentum, 0.0, 1.0, false));
    KILN_TRY(check_hyper(fn, "weight_decay", p->weight_decay, 0.0, HUGE_VAL, false));
    *a = (kiln_sgd_args){.grad_scale = grad_scale, .lr = (float)p->learning_rate,
                         .momentum = (float)p->momentum, .weight_decay = (float)p->weight_decay,
                         .nesterov = p->nesterov, .momentum_on = p->momentum != 0.0,
                         .decay_on = p->weight_decay != 0.0};
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
    kiln_sgd_args a;
    KILN_TRY(sgd_args(fn, p, grad_scale, &a));
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
    if (n == 0) return KILN_OK;
    kiln_param_group grp;
    kiln_op op = kiln_op_on(KILN_OP_SGD, g[0]);
    op.sgd = a;
    op.sgd.group = &grp;
    update_sets s = {.w = w, .g = g, .velocity = momentum ? velocity : NULL, .n = n};
    return run_groups(&op, &grp, &s);
}

kiln_status kiln_sgd_update(kiln_tensor *w, const kiln_tensor *g, kiln_tensor *velocity,
                            const kiln_sgd_params *p, const kiln_tensor *grad_scale) {
    const char *fn = "kiln_sgd_update";
    kiln_sgd_args a;
    KILN_TRY(sgd_args(fn, p, grad_scale, &a));
    KILN_TRY(sgd_check_set(fn, w, g, velocity, p, grad_scale));
    if (kiln_tensor_numel(w) == 0) return KILN_OK;
    if (p->momentum == 0.0) velocity = NULL;
    kiln_param_group grp;
    kiln_op op = kiln_op_on(KILN_OP_SGD, g);
    op.sgd = a;
    op.sgd.group = &grp;
    update_sets s = {.w = &w, .g = &g, .velocity = &velocity, .n = 1};
    return run_groups(&op, &grp, &s);
}

/* acc: 1 value */
kiln_status kiln_sum_squares_accumulate(const kiln_tensor *g, kiln_tensor *acc) {
    const char *fn = "kiln_sum_squares_accumulate";
    KILN_TRY(kiln_check_f32(fn, "g", g));
    KILN_TRY(check_scalar(fn, "acc", g, acc));
    kiln_op op = kiln_op_on(KILN_OP_SUMSQ_ACC, g);
    op.sumsq = (kiln_sumsq_args){.g = g, .acc = acc};
    return kiln_tensor_numel(g) == 0 ? KILN_OK : kiln_op_run(&op);
}

/* sumsq, scale: 1 value each */
kiln_status kiln_clip_scale(const kiln_tensor *sumsq, float clip_norm, kiln_tensor *scale) {
    const char *fn = "kiln_clip_scale";
    KILN_TRY(kiln_check_f32(fn, "sumsq", sumsq));
    KILN_TRY(check_scalar(fn, "sumsq", sumsq, sumsq));
    KILN_TRY(check_scalar(fn, "scale", sumsq, scale));
    if (!(clip_norm > 0.0f) || isinf(clip_norm))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: clip_norm is %g, want a finite value > 0", fn,
                          (double)clip_norm);
    kiln_op op = kiln_op_on(KILN_OP_CLIP_SCALE, sumsq);
    op.clip = (kiln_clip_args){.sumsq = sumsq, .scale = scale, .clip_norm = clip_norm};
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
