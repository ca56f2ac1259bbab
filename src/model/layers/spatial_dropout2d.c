/* spatial_dropout2d.c: SpatialDropout2D (Keras' rate and seed, channels_last): in training a
 * whole channel of an example is kept (scaled by 1/(1-rate)) or dropped, the identity in
 * inference; the mask is the stateless hash of Dropout (kiln_spatial_dropout2d), seeded as
 * Dropout seeds it, counted from a data-parallel share's first row (kiln_dropout_rows). */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_spatial_dropout2d_layer(float rate) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_SPATIAL_DROPOUT2D);
    c.rate = rate;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (!(n->cfg.rate >= 0.0f && n->cfg.rate < 1.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "SpatialDropout2D rate must be in [0, 1) (is %g)", (double)n->cfg.rate);
    if (in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "SpatialDropout2D takes (batch, H, W, C) inputs; '%s' gives %d axes after "
                          "the batch", in[0]->cfg.name, in[0]->out_ndim);
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}


static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    if (!training || n->cfg.rate == 0.0f) return kiln_copy(x[0], z);
    return kiln_dropout_rows(x[0], n->cfg.rate, kiln_layer_mask_seed(n, seed), n->row0, true, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    if (!dx[0]) return KILN_OK;
    if (n->cfg.rate == 0.0f) return kiln_copy(dz, dx[0]);
    return kiln_dropout_rows(dz, n->cfg.rate, kiln_layer_mask_seed(n, seed), n->row0, true, dx[0]);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(kiln_json_seed(j, &c->seed));
    KILN_TRY(kiln_json_channels_last(j));
    return kiln_json_float(j, "rate", -1.0f, 0.0, 0.999999, &c->rate);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    /* Keras' SpatialDropout2D takes no `trainable` argument (its get_config has none, and
     * from_config refuses one): the key every layer gets is taken out again */
    cJSON_DeleteItemFromObjectCaseSensitive(o, "trainable");
    cJSON_AddNumberToObject(o, "rate", c->rate);
    if (c->seed) cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    kiln_json_add_channels_last(o);
}

const kiln_layer_desc kiln_layer_spatial_dropout2d = {
    .keras_class = "SpatialDropout2D",
    .base_name = "spatial_dropout2d",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
