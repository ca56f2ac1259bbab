/* global_max_pool2d.c: GlobalMaxPooling2D, z (B, C) (or (B, 1, 1, C) with keepdims) = the
 * max of x (B, H, W, C) over H and W; the gradient goes to the first maximal element. */
#include "conv_common.h"

kiln_layer_config kiln_global_max_pool2d_layer(void) { return kiln_layer_defaults(KILN_LAYER_GLOBAL_MAX_POOL2D); }

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    n->out_ndim = n->cfg.keepdims ? 3 : 1;
    n->out_shape[0] = n->out_shape[1] = 1;
    n->out_shape[n->cfg.keepdims ? 2 : 0] = in[0]->out_shape[2];
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_global_max_pool2d(x[0], z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_global_max_pool2d_backward(x[0], dz, dx[0]) : KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(kiln_json_bool(j, "keepdims", false, &c->keepdims));
    return kiln_json_channels_last(j);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    kiln_json_add_channels_last(o);
    cJSON_AddBoolToObject(o, "keepdims", c->keepdims);
}

static int out_rank(const kiln_layer_config *c, int in_rank) { return c->keepdims ? 3 : 1; }

const kiln_layer_desc kiln_layer_global_max_pool2d = {
    .keras_class = "GlobalMaxPooling2D",
    .base_name = "global_max_pooling2d",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
    .out_rank = out_rank,
};
