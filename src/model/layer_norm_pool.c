/* layer_norm_pool.c: BatchNormalization and the pooling layers (MaxPooling2D,
 * AveragePooling2D, GlobalAveragePooling2D). A BatchNormalization layer that is not trainable
 * runs in inference mode, in fit too (Keras' rule since TF 2.0): kiln_bn_params.trainable
 * follows the layer's flag. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

/* ---- BatchNormalization over the last axis: (B, C) or (B, H, W, C) ---- */

static void add_weight(kiln_node *n, const char *name, int64_t c, bool trainable) {
    int w = n->n_w++;
    snprintf(n->w_name[w], sizeof n->w_name[w], "%s", name);
    n->w_ndim[w] = 1;
    n->w_shape[w][0] = c;
    n->w_shape[w][1] = n->w_shape[w][2] = n->w_shape[w][3] = 1;
    n->w_trainable[w] = trainable;
}

/* weight order: [gamma] [beta] moving_mean moving_variance */
static int bn_index(const kiln_node *n, int which) { /* 0 gamma, 1 beta, 2 mean, 3 var */
    int k = 0;
    if (which > 0 && n->cfg.bn.scale) k++;
    if (which > 1 && n->cfg.bn.center) k++;
    if (which > 2) k++;
    return (which == 0 && !n->cfg.bn.scale) || (which == 1 && !n->cfg.bn.center) ? -1 : k;
}

static kiln_tensor *bn_w(const kiln_node *n, int which) {
    int k = bn_index(n, which);
    return k < 0 ? NULL : n->w[k];
}

static kiln_tensor *bn_g(const kiln_node *n, int which) {
    int k = bn_index(n, which);
    return k < 0 ? NULL : n->g[k];
}

static kiln_status bn_infer(kiln_node *n, const kiln_node *const *in) {
    if (in[0]->out_ndim != 1 && in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "BatchNormalization takes (batch, C) or (batch, H, W, C); '%s' gives %d axes after the batch",
                          in[0]->cfg.name, in[0]->out_ndim);
    int64_t c = in[0]->out_shape[in[0]->out_ndim - 1];
    n->cfg.bn.layout = KILN_LAYOUT_NHWC;
    n->cfg.bn.trainable = n->cfg.trainable;
    if (n->cfg.bn.scale) add_weight(n, "gamma", c, true);
    if (n->cfg.bn.center) add_weight(n, "beta", c, true);
    add_weight(n, "moving_mean", c, false);
    add_weight(n, "moving_variance", c, false);
    n->aux_len = c;
    n->out_ndim = in[0]->out_ndim;
    memcpy(n->out_shape, in[0]->out_shape, sizeof n->out_shape);
    return KILN_OK;
}

static kiln_status bn_init(kiln_node *n, uint64_t seed) {
    return kiln_batchnorm_init(&n->cfg.bn, bn_w(n, 0), bn_w(n, 1), bn_w(n, 2), bn_w(n, 3));
}

static kiln_status bn_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                              bool training, uint64_t seed) {
    n->cfg.bn.trainable = n->cfg.trainable;
    if (!training)
        return kiln_batchnorm_forward_infer(x[0], bn_w(n, 0), bn_w(n, 1), bn_w(n, 2), bn_w(n, 3), &n->cfg.bn, z);
    return kiln_batchnorm_forward_train(x[0], bn_w(n, 0), bn_w(n, 1), bn_w(n, 2), bn_w(n, 3), &n->cfg.bn, z,
                                        n->aux[0], n->aux[1]);
}

static kiln_status bn_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                               const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    bool g = n->grads_needed;
    n->cfg.bn.trainable = n->cfg.trainable;
    return kiln_batchnorm_backward(x[0], dz, bn_w(n, 0), n->aux[0], n->aux[1], &n->cfg.bn, dx[0],
                                   g ? bn_g(n, 0) : NULL, g ? bn_g(n, 1) : NULL);
}

const layer_ops kiln_layer_batchnorm_ops = {bn_infer, bn_init, bn_forward, bn_backward, 2, true};

/* ---- pooling ---- */

static kiln_status no_init(kiln_node *n, uint64_t seed) { return KILN_OK; }

static kiln_status pool_infer(kiln_node *n, const kiln_node *const *in) {
    if (in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "%s takes (batch, H, W, C) inputs; '%s' gives %d axes after the batch",
                          kiln_layer_type_name(n->cfg.type), in[0]->cfg.name, in[0]->out_ndim);
    if (n->cfg.type == KILN_LAYER_GLOBAL_AVG_POOL2D) {
        n->out_ndim = 1;
        n->out_shape[0] = in[0]->out_shape[2];
        return KILN_OK;
    }
    int64_t xs[4] = {1, in[0]->out_shape[0], in[0]->out_shape[1], in[0]->out_shape[2]}, ys[4];
    KILN_TRY(kiln_pool2d_output_shape(xs, &n->cfg.pool, ys));
    n->out_ndim = 3;
    memcpy(n->out_shape, ys + 1, sizeof(int64_t) * 3);
    return KILN_OK;
}

static kiln_status pool_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                bool training, uint64_t seed) {
    switch (n->cfg.type) {
    case KILN_LAYER_MAX_POOL2D: return kiln_max_pool2d(x[0], &n->cfg.pool, z);
    case KILN_LAYER_AVG_POOL2D: return kiln_avg_pool2d(x[0], &n->cfg.pool, z);
    default: return kiln_global_avg_pool2d(x[0], z);
    }
}

static kiln_status pool_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                 const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    if (!dx[0]) return KILN_OK;
    switch (n->cfg.type) {
    case KILN_LAYER_MAX_POOL2D: return kiln_max_pool2d_backward(x[0], dz, &n->cfg.pool, dx[0]);
    case KILN_LAYER_AVG_POOL2D: return kiln_avg_pool2d_backward(dz, &n->cfg.pool, dx[0]);
    default: return kiln_global_avg_pool2d_backward(dz, dx[0]);
    }
}

const layer_ops kiln_layer_max_pool2d_ops = {pool_infer, no_init, pool_forward, pool_backward, 0, false};
const layer_ops kiln_layer_avg_pool2d_ops = {pool_infer, no_init, pool_forward, pool_backward, 0, false};
const layer_ops kiln_layer_global_avg_pool2d_ops = {pool_infer, no_init, pool_forward, pool_backward, 0, false};
