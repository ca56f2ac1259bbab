/* dense.c: Dense, z (B, units) = x (B, in) kernel (in, units) + bias: Keras' kernel layout, a
 * glorot_uniform kernel and a zero bias. An input of more axes, (B, ..., in), is applied on its
 * last axis, as Keras: x seen as (B ..., in) rows, z (B, ..., units). */
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
    int last = in[0]->out_ndim - 1;
    int64_t ks[2] = {in[0]->out_shape[last], n->cfg.units}, bs[1] = {n->cfg.units};
    kiln_layer_declare_weight(n, "kernel", 2, ks, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (n->cfg.use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    kiln_layer_same_shape(n, in[0]);
    n->out_shape[last] = n->cfg.units;
    return KILN_OK;
}

/* t seen as a matrix of rows of its last axis (the same tensor for a 2-D one) */
static kiln_tensor rows_of(const kiln_tensor *t) {
    kiln_tensor v = *t;
    if (t->ndim > 2) {
        int64_t s[2] = {kiln_tensor_numel(t) / t->shape[t->ndim - 1], t->shape[t->ndim - 1]};
        (void)kiln_tensor_reshape(&v, 2, s); /* a contiguous activation: cannot fail */
    }
    return v;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    kiln_tensor xr = rows_of(x[0]), zr = rows_of(z);
    KILN_TRY(kiln_gemm(&xr, false, n->w[0], false, 1.0f, 0.0f, &zr, KILN_MATH_STRICT));
    return n->n_w > 1 ? kiln_add(&zr, n->w[1], &zr) : KILN_OK;
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    kiln_tensor xr = rows_of(x[0]), dzr = rows_of(dz);
    if (n->grads_needed) {
        KILN_TRY(kiln_gemm(&xr, true, &dzr, false, 1.0f, 0.0f, n->g[0], KILN_MATH_STRICT)); /* (in, units) */
        if (n->n_w > 1) KILN_TRY(kiln_sum(&dzr, 0x1, n->g[1]));
    }
    if (dx[0]) {
        kiln_tensor dxr = rows_of(dx[0]);
        KILN_TRY(kiln_gemm(&dzr, false, n->w[0], true, 1.0f, 0.0f, &dxr, KILN_MATH_STRICT)); /* (rows, in) */
    }
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
};
