/* relu.c: the activation layers with parameters, each one kiln_act function (kiln/nn.h) of its
 * input: ReLU (Keras' max_value, negative_slope, threshold), LeakyReLU (negative_slope) and
 * ELU (alpha). */
#include <math.h>

#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_relu_layer(float max_value, float negative_slope, float threshold) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_RELU);
    c.act.max_value = max_value;
    c.act.negative_slope = negative_slope;
    c.act.threshold = threshold;
    return c;
}

kiln_layer_config kiln_leaky_relu_layer(float negative_slope) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_LEAKY_RELU);
    c.act.negative_slope = negative_slope;
    return c;
}

kiln_layer_config kiln_elu_layer(float alpha) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_ELU);
    c.act.alpha = alpha;
    return c;
}

/* same shape; the parameters are checked by the op's own rules, named for the layer */
static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_act_params *p = &n->cfg.act;
    if (p->fn == KILN_FN_RELU && !(p->max_value >= 0.0f && p->negative_slope >= 0.0f && p->threshold >= 0.0f &&
                                   isfinite(p->negative_slope) && isfinite(p->threshold)))
        return kiln_error(KILN_ERR_INVALID_ARG, "max_value, negative_slope and threshold must be >= 0 (are %g, %g, %g)",
                          (double)p->max_value, (double)p->negative_slope, (double)p->threshold);
    if (!isfinite(p->alpha)) return kiln_error(KILN_ERR_INVALID_ARG, "alpha must be finite");
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_act(&n->cfg.act, x[0], z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_act_backward(&n->cfg.act, x[0], dz, dx[0]) : KILN_OK;
}

/* a number >= 0 (Keras' layers refuse negative ones); absent: *out, Keras' default (c holds
 * them, kiln_layer_defaults) */
static kiln_status non_negative(const kiln_json_layer *j, const char *key, float *out) {
    return kiln_json_float(j, key, *out, 0.0, 3.4e38, out);
}

static kiln_status relu_read(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(non_negative(j, "max_value", &c->act.max_value)); /* null: none */
    KILN_TRY(non_negative(j, "negative_slope", &c->act.negative_slope));
    return non_negative(j, "threshold", &c->act.threshold);
}

static void relu_write(const kiln_layer_config *c, cJSON *o) {
    if (isinf(c->act.max_value)) cJSON_AddNullToObject(o, "max_value");
    else cJSON_AddNumberToObject(o, "max_value", c->act.max_value);
    cJSON_AddNumberToObject(o, "negative_slope", c->act.negative_slope);
    cJSON_AddNumberToObject(o, "threshold", c->act.threshold);
}

/* Keras 3's negative_slope, or Keras 2's alpha */
static kiln_status leaky_read(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    const char *key = kiln_json_absent(kiln_json_get(j, "negative_slope")) && !kiln_json_absent(kiln_json_get(j, "alpha"))
                          ? "alpha" : "negative_slope";
    return non_negative(j, key, &c->act.negative_slope);
}

static void leaky_write(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "negative_slope", c->act.negative_slope);
}

static kiln_status elu_read(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    return kiln_json_float(j, "alpha", c->act.alpha, -3.4e38, 3.4e38, &c->act.alpha);
}

static void elu_write(const kiln_layer_config *c, cJSON *o) { cJSON_AddNumberToObject(o, "alpha", c->act.alpha); }

const kiln_layer_desc kiln_layer_relu = {
    .keras_class = "ReLU",
    .base_name = "re_lu",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = relu_read,
    .write_json = relu_write,
};

const kiln_layer_desc kiln_layer_leaky_relu = {
    .keras_class = "LeakyReLU",
    .base_name = "leaky_re_lu",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = leaky_read,
    .write_json = leaky_write,
};

const kiln_layer_desc kiln_layer_elu = {
    .keras_class = "ELU",
    .base_name = "elu",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = elu_read,
    .write_json = elu_write,
};
