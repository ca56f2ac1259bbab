/* batchnorm_ops.c: the device-independent front of the batch-norm ops (kiln/batchnorm.h): the
 * parameter defaults, every argument check (messages naming the op, the tensors' shapes and
 * what is wrong), the moving-average weights of each convention, and the kiln_op each call
 * hands to the tensors' backend (kiln_bn_args in op_args.h). */
#include <math.h>
#include <stdio.h>

#include "batchnorm_math.h"
#include "error.h"
#include "op_args.h"
#include "ops_check.h"

kiln_bn_params kiln_bn_params_keras(void) {
    kiln_bn_params p = {
        .convention = KILN_BN_KERAS, .epsilon = 1e-3f, .momentum = 0.99f, .cumulative = false,
        .num_batches_tracked = 0, .center = true, .scale = true, .trainable = true,
        .layout = KILN_LAYOUT_NHWC, .impl = KILN_BN_IMPL_KILN,
        .gamma_init = 1.0f, .beta_init = 0.0f, .moving_mean_init = 0.0f, .moving_var_init = 1.0f,
    };
    return p;
}

kiln_bn_params kiln_bn_params_torch(void) {
    kiln_bn_params p = kiln_bn_params_keras();
    p.convention = KILN_BN_TORCH;
    p.epsilon = 1e-5f;
    p.momentum = 0.1f;
    p.layout = KILN_LAYOUT_NCHW;
    return p;
}

kiln_status kiln_batchnorm_init(const kiln_bn_params *p, kiln_tensor *gamma, kiln_tensor *beta,
                                kiln_tensor *moving_mean, kiln_tensor *moving_var) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_batchnorm_init: params is NULL");
    if (gamma) KILN_TRY(kiln_fill(gamma, p->gamma_init));
    if (beta) KILN_TRY(kiln_fill(beta, p->beta_init));
    if (moving_mean) KILN_TRY(kiln_fill(moving_mean, p->moving_mean_init));
    if (moving_var) KILN_TRY(kiln_fill(moving_var, p->moving_var_init));
    return KILN_OK;
}

/* ---- checks ---- */

static kiln_status check_params(const char *fn, const kiln_bn_params *p) {
    if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "%s: params is NULL", fn);
    if (p->convention != KILN_BN_KERAS && p->convention != KILN_BN_TORCH)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown convention %d", fn, (int)p->convention);
    if (p->layout != KILN_LAYOUT_NHWC && p->layout != KILN_LAYOUT_NCHW)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown layout %d", fn, (int)p->layout);
    if ((int)p->impl < 0 || p->impl >= KILN_BN_IMPL_COUNT)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown impl %d", fn, (int)p->impl);
    if (!(p->epsilon >= 0.0f) || isinf(p->epsilon))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: epsilon %g is not a finite value >= 0", fn,
                          (double)p->epsilon);
    if (!(p->momentum >= 0.0f && p->momentum <= 1.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: momentum %g is outside [0, 1]", fn,
                          (double)p->momentum);
    if ((int)p->relu < 0 || p->relu >= KILN_BN_RELU_COUNT)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown relu %d", fn, (int)p->relu);
    if (p->num_batches_tracked < 0 || p->num_batches_tracked == INT64_MAX)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: num_batches_tracked %lld is out of range", fn,
                          (long long)p->num_batches_tracked);
    return KILN_OK;
}

/* x (or dy): a float dtype, 2 to 4 dims; fills the geometry */
static kiln_status check_data(const char *fn, const char *arg, const kiln_tensor *x,
                              const kiln_bn_params *p, kiln_bn_geom *g) {
    KILN_TRY(kiln_check_tensor(fn, arg, x));
    if (x->dtype != KILN_F32 && x->dtype != KILN_F16 && x->dtype != KILN_BF16)
        return kiln_error(KILN_ERR_DTYPE, "%s: %s '%s' is %s, want f32, f16 or bf16", fn, arg,
                          x->name, kiln_dtype_name(x->dtype));
    if (x->ndim < 2) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s needs 2 to 4 dimensions (N, C), NHWC or NCHW",
                          fn, arg, kiln_shape_str(x, s, sizeof s));
    }
    *g = kiln_bn_geometry(x, p->layout);
    return KILN_OK;
}

/* y, dx, dy: x's shape, dtype and backend, not x's memory */
static kiln_status check_like(const char *fn, const char *xn, const kiln_tensor *x,
                              const char *an, const kiln_tensor *a) {
    KILN_TRY(kiln_check_tensor(fn, an, a));
    KILN_TRY(kiln_check_same_shape(fn, xn, x, an, a));
    if (a->dtype != x->dtype)
        return kiln_error(KILN_ERR_DTYPE, "%s: %s is %s, %s is %s (they must match)", fn, an,
                          kiln_dtype_name(a->dtype), xn, kiln_dtype_name(x->dtype));
    return KILN_OK;
}

static kiln_status check_not_alias(const char *fn, const char *an, const kiln_tensor *a,
                                   const char *bn, const kiln_tensor *b) {
    if (a->data == b->data && kiln_tensor_numel(a) > 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s and %s share memory (not supported)", fn,
                          an, bn);
    return KILN_OK;
}

/* a fused ReLU (p->relu) on a backend that takes it */
static kiln_status check_relu(const char *fn, const kiln_tensor *x, const kiln_bn_params *p) {
    if (p->relu != KILN_BN_RELU_NONE && !kiln_backend_supports(x->backend, KILN_OP_BN_RELU, x->dtype))
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: backend %s has no batch norm with a fused ReLU on %s "
                          "(run the ReLU after it)", fn, x->backend->name, kiln_dtype_name(x->dtype));
    return KILN_OK;
}

/* a per-channel f32 tensor of C values on x's backend; NULL allowed when !required */
static kiln_status check_channel(const char *fn, const char *arg, const kiln_tensor *t,
                                 bool required, const kiln_tensor *x, const kiln_bn_geom *g,
                                 const kiln_bn_params *p) {
    if (!t) {
        if (required) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
        return KILN_OK;
    }
    KILN_TRY(kiln_check_f32(fn, arg, t));
    KILN_TRY(kiln_check_same_backend(fn, x, t));
    if (kiln_tensor_numel(t) != g->c) {
        char st[96], sx[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: %s %s holds %lld values, x %s has %lld channels (%s)",
                          fn, arg, kiln_shape_str(t, st, sizeof st), (long long)kiln_tensor_numel(t),
                          kiln_shape_str(x, sx, sizeof sx), (long long)g->c,
                          x->ndim == 2 ? "per-feature" : p->layout == KILN_LAYOUT_NCHW ? "NCHW" : "NHWC");
    }
    return KILN_OK;
}

static kiln_status check_values_per_channel(const char *fn, const kiln_tensor *x,
                                            const kiln_bn_geom *g) {
    if (g->n < 1 && g->c > 0) {
        char s[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: x %s has no values per channel to take statistics over",
                          fn, kiln_shape_str(x, s, sizeof s));
    }
    return KILN_OK;
}

/* a BN op of `type` on x (dy for BN_BWD_INFER) with p's layout and impl; the caller fills the
 * rest */
static kiln_op bn_op(kiln_op_type type, const kiln_tensor *x, const kiln_bn_params *p) {
    kiln_op op = kiln_op_on(type, x);
    op.bn.layout = p->layout;
    op.bn.impl = p->impl;
    op.bn.epsilon = p->epsilon; /* BN_BWD: for cuDNN, which wants the forward's; kiln's kernels read invstd */
    op.bn.relu = p->relu;
    return op;
}

/* ---- ops ---- */

static kiln_status forward_infer(const char *fn, const kiln_tensor *x, const kiln_tensor *gamma,
                                 const kiln_tensor *beta, const kiln_tensor *moving_mean,
                                 const kiln_tensor *moving_var, const kiln_bn_params *p,
                                 kiln_tensor *y, kiln_tensor *save_mean, kiln_tensor *save_invstd) {
    kiln_bn_geom g;
    KILN_TRY(check_params(fn, p));
    KILN_TRY(check_data(fn, "x", x, p, &g));
    KILN_TRY(check_like(fn, "x", x, "y", y));
    KILN_TRY(check_not_alias(fn, "x", x, "y", y));
    KILN_TRY(check_relu(fn, x, p));
    KILN_TRY(check_channel(fn, "gamma", gamma, p->scale, x, &g, p));
    KILN_TRY(check_channel(fn, "beta", beta, p->center, x, &g, p));
    KILN_TRY(check_channel(fn, "moving_mean", moving_mean, true, x, &g, p));
    KILN_TRY(check_channel(fn, "moving_var", moving_var, true, x, &g, p));
    KILN_TRY(check_channel(fn, "save_mean", save_mean, false, x, &g, p));
    KILN_TRY(check_channel(fn, "save_invstd", save_invstd, false, x, &g, p));
    if (g.c == 0) return KILN_OK;
    kiln_op op = bn_op(KILN_OP_BN_FWD_INFER, x, p);
    op.bn.x = x;
    op.bn.gamma = p->scale ? gamma : NULL;
    op.bn.beta = p->center ? beta : NULL;
    op.bn.mean = moving_mean;
    op.bn.var = moving_var;
    op.bn.y = y;
    op.bn.save_mean = save_mean;
    op.bn.save_invstd = save_invstd;
    return kiln_op_run(&op);
}

kiln_status kiln_batchnorm_forward_infer(const kiln_tensor *x, const kiln_tensor *gamma,
                                         const kiln_tensor *beta, const kiln_tensor *moving_mean,
                                         const kiln_tensor *moving_var, const kiln_bn_params *p,
                                         kiln_tensor *y) {
    return forward_infer("kiln_batchnorm_forward_infer", x, gamma, beta, moving_mean, moving_var,
                         p, y, NULL, NULL);
}

kiln_status kiln_batchnorm_forward_train(const kiln_tensor *x, const kiln_tensor *gamma,
                                         const kiln_tensor *beta, kiln_tensor *moving_mean,
                                         kiln_tensor *moving_var, kiln_bn_params *p,
                                         kiln_tensor *y, kiln_tensor *save_mean,
                                         kiln_tensor *save_invstd) {
    const char *fn = "kiln_batchnorm_forward_train";
    KILN_TRY(check_params(fn, p));
    if (!save_mean || !save_invstd)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: save_mean and save_invstd are required", fn);
    if (!p->trainable) /* a frozen layer: inference mode, nothing updated */
        return forward_infer(fn, x, gamma, beta, moving_mean, moving_var, p, y, save_mean,
                             save_invstd);
    kiln_bn_geom g;
    KILN_TRY(check_data(fn, "x", x, p, &g));
    KILN_TRY(check_like(fn, "x", x, "y", y));
    KILN_TRY(check_not_alias(fn, "x", x, "y", y));
    KILN_TRY(check_values_per_channel(fn, x, &g));
    KILN_TRY(check_relu(fn, x, p));
    KILN_TRY(check_channel(fn, "gamma", gamma, p->scale, x, &g, p));
    KILN_TRY(check_channel(fn, "beta", beta, p->center, x, &g, p));
    KILN_TRY(check_channel(fn, "save_mean", save_mean, true, x, &g, p));
    KILN_TRY(check_channel(fn, "save_invstd", save_invstd, true, x, &g, p));
    if (!moving_mean != !moving_var)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: moving_mean and moving_var must both be given or both be NULL", fn);
    KILN_TRY(check_channel(fn, "moving_mean", moving_mean, false, x, &g, p));
    KILN_TRY(check_channel(fn, "moving_var", moving_var, false, x, &g, p));
    /* the weights of the moving average: keep * moving + w * batch */
    int64_t tracked = p->num_batches_tracked + 1;
    double w = p->cumulative ? 1.0 / (double)tracked
               : p->convention == KILN_BN_KERAS ? 1.0 - (double)p->momentum
                                                : (double)p->momentum;
    double keep = p->cumulative ? 1.0 - w
                  : p->convention == KILN_BN_KERAS ? (double)p->momentum
                                                   : 1.0 - (double)p->momentum;
    if (g.c > 0) {
        kiln_op op = bn_op(KILN_OP_BN_FWD_TRAIN, x, p);
        op.bn.x = x;
        op.bn.gamma = p->scale ? gamma : NULL;
        op.bn.beta = p->center ? beta : NULL;
        op.bn.moving_mean = moving_mean;
        op.bn.moving_var = moving_var;
        op.bn.y = y;
        op.bn.save_mean = save_mean;
        op.bn.save_invstd = save_invstd;
        op.bn.keep = keep;
        op.bn.weight = w;
        op.bn.unbiased = p->convention == KILN_BN_TORCH;
        KILN_TRY(kiln_op_run(&op));
    }
    if (moving_mean) p->num_batches_tracked = tracked;
    return KILN_OK;
}

/* the training backward; y: the fused ReLU's output (p->relu set), else NULL */
static kiln_status backward(const char *fn, const kiln_tensor *x, const kiln_tensor *y,
                            const kiln_tensor *dy, const kiln_tensor *gamma,
                            const kiln_tensor *save_mean, const kiln_tensor *save_invstd,
                            const kiln_bn_params *p, kiln_tensor *dx, kiln_tensor *dgamma,
                            kiln_tensor *dbeta) {
    kiln_bn_geom g;
    KILN_TRY(check_params(fn, p));
    if (!y != (p->relu == KILN_BN_RELU_NONE))
        return kiln_error(KILN_ERR_INVALID_ARG, y ? "%s: p->relu is none (use kiln_batchnorm_backward)"
                                                  : "%s: p->relu is set: the fused ReLU's backward needs its output "
                                                    "(use kiln_batchnorm_backward_relu)", fn);
    KILN_TRY(check_data(fn, "x", x, p, &g));
    KILN_TRY(check_like(fn, "x", x, "dy", dy));
    KILN_TRY(check_like(fn, "x", x, "dx", dx));
    KILN_TRY(check_not_alias(fn, "dy", dy, "dx", dx));
    KILN_TRY(check_not_alias(fn, "x", x, "dx", dx));
    if (y) {
        KILN_TRY(check_like(fn, "x", x, "y", y));
        KILN_TRY(check_not_alias(fn, "y", y, "dx", dx));
        KILN_TRY(check_relu(fn, x, p));
    }
    KILN_TRY(check_values_per_channel(fn, x, &g));
    KILN_TRY(check_channel(fn, "gamma", gamma, p->scale, x, &g, p));
    KILN_TRY(check_channel(fn, "save_mean", save_mean, true, x, &g, p));
    KILN_TRY(check_channel(fn, "save_invstd", save_invstd, true, x, &g, p));
    KILN_TRY(check_channel(fn, "dgamma", dgamma, false, x, &g, p));
    KILN_TRY(check_channel(fn, "dbeta", dbeta, false, x, &g, p));
    if (dgamma && dbeta && dgamma->data == dbeta->data)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: dgamma and dbeta share memory", fn);
    if (g.c == 0) return KILN_OK;
    kiln_op op = bn_op(KILN_OP_BN_BWD, x, p);
    op.bn.x = x;
    op.bn.dy = dy;
    op.bn.gamma = p->scale ? gamma : NULL;
    op.bn.mean = save_mean;
    op.bn.invstd = save_invstd;
    op.bn.dx = dx;
    op.bn.dgamma = dgamma;
    op.bn.dbeta = dbeta;
    op.bn.frozen = !p->trainable;
    op.bn.relu_y = y;
    return kiln_op_run(&op);
}

kiln_status kiln_batchnorm_backward(const kiln_tensor *x, const kiln_tensor *dy,
                                    const kiln_tensor *gamma, const kiln_tensor *save_mean,
                                    const kiln_tensor *save_invstd, const kiln_bn_params *p,
                                    kiln_tensor *dx, kiln_tensor *dgamma, kiln_tensor *dbeta) {
    return backward("kiln_batchnorm_backward", x, NULL, dy, gamma, save_mean, save_invstd, p, dx,
                    dgamma, dbeta);
}

kiln_status kiln_batchnorm_backward_relu(const kiln_tensor *x, const kiln_tensor *y,
                                         const kiln_tensor *dy, const kiln_tensor *gamma,
                                         const kiln_tensor *save_mean,
                                         const kiln_tensor *save_invstd, const kiln_bn_params *p,
                                         kiln_tensor *dx, kiln_tensor *dgamma, kiln_tensor *dbeta) {
    const char *fn = "kiln_batchnorm_backward_relu";
    if (!y) return kiln_error(KILN_ERR_INVALID_ARG, "%s: y (the fused forward's output) is NULL", fn);
    return backward(fn, x, y, dy, gamma, save_mean, save_invstd, p, dx, dgamma, dbeta);
}

kiln_status kiln_batchnorm_backward_infer(const kiln_tensor *dy, const kiln_tensor *gamma,
                                          const kiln_tensor *moving_var, const kiln_bn_params *p,
                                          kiln_tensor *dx) {
    const char *fn = "kiln_batchnorm_backward_infer";
    kiln_bn_geom g;
    KILN_TRY(check_params(fn, p));
    if (p->relu != KILN_BN_RELU_NONE)
        return kiln_error(KILN_ERR_UNSUPPORTED, "%s: no fused ReLU here (p->relu is set)", fn);
    KILN_TRY(check_data(fn, "dy", dy, p, &g));
    KILN_TRY(check_like(fn, "dy", dy, "dx", dx));
    KILN_TRY(check_not_alias(fn, "dy", dy, "dx", dx));
    KILN_TRY(check_channel(fn, "gamma", gamma, p->scale, dy, &g, p));
    KILN_TRY(check_channel(fn, "moving_var", moving_var, true, dy, &g, p));
    if (g.c == 0) return KILN_OK;
    kiln_op op = bn_op(KILN_OP_BN_BWD_INFER, dy, p);
    op.bn.dy = dy;
    op.bn.gamma = p->scale ? gamma : NULL;
    op.bn.var = moving_var;
    op.bn.dx = dx;
    return kiln_op_run(&op);
}
