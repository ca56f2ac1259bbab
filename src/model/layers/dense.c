/* dense.c: Dense, z (B, units) = x (B, in) kernel (in, units) + bias: Keras' kernel layout, a
 * glorot_uniform kernel and a zero bias. The input must be (batch, features). */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_dense_layer(int units, kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_DENSE);
    c.units = units;
    c.activation = act;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (n->cfg.units < 1) return kiln_error(KILN_ERR_INVALID_ARG, "units must be >= 1 (is %d)", n->cfg.units);
    if (in[0]->out_ndim != 1)
        return kiln_error(KILN_ERR_SHAPE, "Dense takes (batch, features) inputs; '%s' gives %d axes after the batch (add a Flatten)",
                          in[0]->cfg.name, in[0]->out_ndim);
    int64_t ks[2] = {in[0]->out_shape[0], n->cfg.units}, bs[1] = {n->cfg.units};
    kiln_layer_declare_weight(n, "kernel", 2, ks, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (n->cfg.use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    n->out_ndim = 1;
    n->out_shape[0] = n->cfg.units;
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    KILN_TRY(kiln_gemm(x[0], false, n->w[0], false, 1.0f, 0.0f, z, KILN_MATH_STRICT));
    return n->n_w > 1 ? kiln_add(z, n->w[1], z) : KILN_OK;
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    if (n->grads_needed) {
        KILN_TRY(kiln_gemm(x[0], true, dz, false, 1.0f, 0.0f, n->g[0], KILN_MATH_STRICT)); /* (in, units) */
        if (n->n_w > 1) KILN_TRY(kiln_sum(dz, 0x1, n->g[1]));
    }
    if (dx[0]) KILN_TRY(kiln_gemm(dz, false, n->w[0], true, 1.0f, 0.0f, dx[0], KILN_MATH_STRICT)); /* (B, in) */
    return KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                     "kernel_constraint", "bias_constraint", "lora_rank"};
    KILN_TRY(kiln_json_int(j, "units", 0, 1, 1 << 24, &c->units));
    KILN_TRY(kiln_json_activation(j, &c->activation));
    KILN_TRY(kiln_json_bool(j, "use_bias", true, &c->use_bias));
    return kiln_json_refuse(j, no, 6);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "units", c->units);
    kiln_json_add_activation(o, c->activation);
    cJSON_AddBoolToObject(o, "use_bias", c->use_bias);
}

const kiln_layer_desc kiln_layer_dense = {
    .keras_class = "Dense",
    .base_name = "dense",
    .has_activation = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
    .out_rank = kiln_layer_rank_one,
};
