/* dropout.c: Dropout (Keras' rate and seed): inverted dropout in training (kept values
 * scaled by 1/(1-rate)), the identity in inference. The mask is a stateless hash of (seed, step,
 * element), the same on every backend; a data-parallel rank counts its elements from its first
 * row in the global batch (node row0), so N ranks draw the masks of one process. */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_dropout_layer(float rate) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_DROPOUT);
    c.rate = rate;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (!(n->cfg.rate >= 0.0f && n->cfg.rate < 1.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "Dropout rate must be in [0, 1) (is %g)", (double)n->cfg.rate);
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    if (!training || n->cfg.rate == 0.0f) return kiln_copy(x[0], z);
    return kiln_dropout_rows(x[0], n->cfg.rate, kiln_layer_mask_seed(n, seed), n->row0, false, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    if (!dx[0]) return KILN_OK;
    if (n->cfg.rate == 0.0f) return kiln_copy(dz, dx[0]);
    return kiln_dropout_rows(dz, n->cfg.rate, kiln_layer_mask_seed(n, seed), n->row0, false, dx[0]);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"noise_shape"};
    KILN_TRY(kiln_json_seed(j, &c->seed));
    KILN_TRY(kiln_json_float(j, "rate", 0.0f, 0.0, 0.999999, &c->rate));
    return kiln_json_refuse(j, no, 1);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "rate", c->rate);
    if (c->seed) cJSON_AddNumberToObject(o, "seed", (double)c->seed);
}

const kiln_layer_desc kiln_layer_dropout = {
    .keras_class = "Dropout",
    .base_name = "dropout",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
