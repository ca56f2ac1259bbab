/* batchnorm.c: BatchNormalization over the last axis, (B, C) or (B, H, W, C): weights [gamma]
 * [beta] (trainable, as center and scale ask) moving_mean moving_variance (not trainable),
 * Keras' or PyTorch's moving-statistics convention (docs/batchnorm.md). A BatchNormalization
 * that is not trainable runs in inference mode, in fit too (Keras' rule since TF 2.0):
 * kiln_bn_params.trainable follows the layer's flag. */
#include "batchnorm_sync.h"
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_batchnorm_layer(void) { return kiln_layer_defaults(KILN_LAYER_BATCHNORM); }

/* the index of weight `which` (0 gamma, 1 beta, 2 moving mean, 3 moving variance), -1 when
 * the layer has none */
static int weight_index(const kiln_node *n, int which) {
    int k = 0;
    if (which > 0 && n->cfg.bn.scale) k++;
    if (which > 1 && n->cfg.bn.center) k++;
    if (which > 2) k++;
    return (which == 0 && !n->cfg.bn.scale) || (which == 1 && !n->cfg.bn.center) ? -1 : k;
}

static kiln_tensor *weight(const kiln_node *n, int which) {
    int k = weight_index(n, which);
    return k < 0 ? NULL : n->w[k];
}

static kiln_tensor *grad(const kiln_node *n, int which) {
    int k = weight_index(n, which);
    return k < 0 ? NULL : n->g[k];
}

static void declare(kiln_node *n, const char *name, int64_t c, bool trainable, float value) {
    kiln_layer_declare_weight(n, name, 1, &c, trainable, (kiln_initializer){KILN_INIT_CONSTANT, value});
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (in[0]->out_ndim != 1 && in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "BatchNormalization takes (batch, C) or (batch, H, W, C); '%s' gives %d axes after the batch",
                          in[0]->cfg.name, in[0]->out_ndim);
    int64_t c = in[0]->out_shape[in[0]->out_ndim - 1];
    kiln_bn_params *p = &n->cfg.bn;
    p->layout = KILN_LAYOUT_NHWC;
    p->trainable = n->cfg.trainable;
    if (p->scale) declare(n, "gamma", c, true, p->gamma_init);
    if (p->center) declare(n, "beta", c, true, p->beta_init);
    declare(n, "moving_mean", c, false, p->moving_mean_init);
    declare(n, "moving_variance", c, false, p->moving_var_init);
    n->aux_len = c;
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    n->cfg.bn.trainable = n->cfg.trainable;
    n->cfg.bn.relu = (kiln_bn_relu)n->fused_rule; /* a ReLU after it run here (fuse.c) */
    if (kiln_bn_sync_active(n, training))
        return kiln_bn_sync_forward(n, x[0], z, weight(n, 0), weight(n, 1), weight(n, 2), weight(n, 3));
    if (!training)
        return kiln_batchnorm_forward_infer(x[0], weight(n, 0), weight(n, 1), weight(n, 2), weight(n, 3), &n->cfg.bn, z);
    return kiln_batchnorm_forward_train(x[0], weight(n, 0), weight(n, 1), weight(n, 2), weight(n, 3), &n->cfg.bn, z,
                                        n->aux[0], n->aux[1]);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    bool g = n->grads_needed;
    n->cfg.bn.trainable = n->cfg.trainable;
    n->cfg.bn.relu = (kiln_bn_relu)n->fused_rule;
    if (kiln_bn_sync_active(n, true))
        return kiln_bn_sync_backward(n, x[0], dz, dx[0], weight(n, 0), g ? grad(n, 0) : NULL, g ? grad(n, 1) : NULL);
    if (n->fused_rule) /* dz: the ReLU's gradient, masked by z, the fused output */
        return kiln_batchnorm_backward_relu(x[0], z, dz, weight(n, 0), n->aux[0], n->aux[1], &n->cfg.bn, dx[0],
                                            g ? grad(n, 0) : NULL, g ? grad(n, 1) : NULL);
    return kiln_batchnorm_backward(x[0], dz, weight(n, 0), n->aux[0], n->aux[1], &n->cfg.bn, dx[0],
                                   g ? grad(n, 0) : NULL, g ? grad(n, 1) : NULL);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"renorm", "virtual_batch_size", "adjustment", "beta_regularizer",
                                     "gamma_regularizer", "beta_constraint", "gamma_constraint"};
    const cJSON *axis = kiln_json_get(j, "axis");
    if (cJSON_IsArray(axis) && cJSON_GetArraySize(axis) == 1) axis = cJSON_GetArrayItem(axis, 0);
    int a = -1;
    if (!kiln_json_absent(axis)) KILN_TRY(kiln_json_int_of(j, axis, "axis", -1, 16, &a));
    if (a != -1 && a != in_rank) /* Keras counts the batch axis: the last of rank r is r */
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "axis %d is not supported (the last axis only: -1 or %d)", a, in_rank);
    static const char *const conv[] = {"keras", "torch", "torch_cumulative"};
    int k;
    KILN_TRY(kiln_json_choice(j, "kiln_convention", conv, 3, &k));
    if (k) {
        c->bn = kiln_bn_params_torch();
        c->bn.cumulative = k == 2;
    }
    KILN_TRY(kiln_json_float(j, "momentum", c->bn.momentum, 0.0, 1.0, &c->bn.momentum));
    KILN_TRY(kiln_json_float(j, "epsilon", c->bn.epsilon, 0.0, 1e10, &c->bn.epsilon));
    KILN_TRY(kiln_json_bool(j, "center", true, &c->bn.center));
    KILN_TRY(kiln_json_bool(j, "scale", true, &c->bn.scale));
    KILN_TRY(kiln_json_bool(j, "synchronized", false, &c->bn.synchronized));
    return kiln_json_refuse(j, no, 7);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "axis", -1);
    cJSON_AddNumberToObject(o, "momentum", c->bn.momentum);
    cJSON_AddNumberToObject(o, "epsilon", c->bn.epsilon);
    cJSON_AddBoolToObject(o, "center", c->bn.center);
    cJSON_AddBoolToObject(o, "scale", c->bn.scale);
    if (c->bn.synchronized) cJSON_AddBoolToObject(o, "synchronized", true); /* Keras' key, written when on */
    if (c->bn.convention == KILN_BN_TORCH) /* kiln's own key: Keras ignores it */
        cJSON_AddStringToObject(o, "kiln_convention", c->bn.cumulative ? "torch_cumulative" : "torch");
}

const kiln_layer_desc kiln_layer_batchnorm = {
    .keras_class = "BatchNormalization",
    .base_name = "batch_normalization",
    .n_aux = 2,
    .needs_dx = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
