/* layer.c: what the layers of src/model/layers share: Keras' default config, declaring a
 * weight, same-shape inference, and the copy that Flatten and Activation compute. */
#include <string.h>

#include "error.h"
#include "layer.h"
#include "weight_options.h"

kiln_layer_config kiln_layer_defaults(kiln_layer_type t) {
    kiln_layer_config c;
    memset(&c, 0, sizeof c);
    c.type = t;
    c.trainable = true;
    c.use_bias = true;
    c.conv = (kiln_conv2d_params)KILN_CONV2D_DEFAULTS;
    c.bn = kiln_bn_params_keras();
    c.act = kiln_act_defaults(t == KILN_LAYER_ELU ? KILN_FN_ELU : t == KILN_LAYER_RESCALING ? KILN_FN_AFFINE : KILN_FN_RELU);
    if (t == KILN_LAYER_LEAKY_RELU) c.act.negative_slope = 0.3f; /* Keras' LeakyReLU */
    c.axis = -1;
    c.depth_multiplier = 1;
    c.pad_top = c.pad_bottom = c.pad_left = c.pad_right = 1;
    c.size_h = c.size_w = 2;
    return c;
}

void kiln_layer_declare_weight(kiln_node *n, const char *name, int ndim, const int64_t *shape, bool trainable,
                               kiln_initializer init) {
    int w = n->n_w++;
    snprintf(n->w_name[w], sizeof n->w_name[w], "%s", name);
    n->w_ndim[w] = ndim;
    for (int d = 0; d < 4; d++) n->w_shape[w][d] = d < ndim ? shape[d] : 1;
    n->w_trainable[w] = trainable;
    /* the config's own initializer and regularizer of the weight, when it gives them */
    const kiln_weight_options *o = kiln_weight_options_find(&n->cfg, name);
    n->w_init[w] = o && o->has_init ? o->init : (kiln_init_spec){.kind = init.kind, .value = init.value};
    n->w_reg[w] = o ? o->reg : (kiln_regularizer){0, 0};
}

void kiln_layer_same_shape(kiln_node *n, const kiln_node *in) {
    n->out_ndim = in->out_ndim;
    memcpy(n->out_shape, in->out_shape, sizeof n->out_shape);
}

kiln_status kiln_layer_copy_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training,
                                    uint64_t step_seed) {
    kiln_tensor v = *x[0]; /* the same memory seen with z's shape */
    KILN_TRY(kiln_tensor_reshape(&v, z->ndim, z->shape));
    return kiln_copy(&v, z);
}

kiln_status kiln_layer_copy_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                     const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t step_seed) {
    if (!dx[0]) return KILN_OK;
    kiln_tensor v = *dz;
    KILN_TRY(kiln_tensor_reshape(&v, dx[0]->ndim, dx[0]->shape));
    return kiln_copy(&v, dx[0]);
}

int kiln_layer_rank_one(const kiln_layer_config *c, int in_rank) { return 1; }

uint64_t kiln_layer_mask_seed(const kiln_node *n, uint64_t step_seed) {
    return (n->cfg.seed ? n->cfg.seed : step_seed) * 0x9e3779b97f4a7c15ull + (uint64_t)n->id;
}
