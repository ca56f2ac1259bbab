/* conv2d.c: Conv2D, z (B, OH, OW, filters) = conv(x (B, H, W, in), kernel (kh, kw, in / groups,
 * filters)) + bias: Keras' kernel layout, a glorot_uniform kernel and a zero bias; strides,
 * dilation, padding valid or same, groups, channels_last. */
#include <string.h>

#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_conv2d_layer(int filters, int kernel_h, int kernel_w, kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_CONV2D);
    c.filters = filters;
    c.kernel_h = kernel_h;
    c.kernel_w = kernel_w;
    c.activation = act;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->filters < 1 || c->kernel_h < 1 || c->kernel_w < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "filters and kernel_size must be >= 1 (are %d, %dx%d)",
                          c->filters, c->kernel_h, c->kernel_w);
    if (in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "Conv2D takes (batch, H, W, C) inputs; '%s' gives %d axes after the batch",
                          in[0]->cfg.name, in[0]->out_ndim);
    int groups = c->conv.groups ? c->conv.groups : 1;
    if (in[0]->out_shape[2] % groups || c->filters % groups)
        return kiln_error(KILN_ERR_SHAPE, "groups %d must divide the %lld input channels and the %d filters",
                          groups, (long long)in[0]->out_shape[2], c->filters);
    int64_t ks[4] = {c->kernel_h, c->kernel_w, in[0]->out_shape[2] / groups, c->filters}, bs[1] = {c->filters};
    int64_t xs[4] = {1, in[0]->out_shape[0], in[0]->out_shape[1], in[0]->out_shape[2]}, ys[4];
    KILN_TRY(kiln_conv2d_output_shape(xs, ks, &c->conv, ys));
    kiln_layer_declare_weight(n, "kernel", 4, ks, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (c->use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    n->out_ndim = 3;
    memcpy(n->out_shape, ys + 1, sizeof(int64_t) * 3);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_conv2d(x[0], n->w[0], n->n_w > 1 ? n->w[1] : NULL, &n->cfg.conv, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    if (n->grads_needed)
        KILN_TRY(kiln_conv2d_backward_filter(x[0], dz, &n->cfg.conv, n->g[0], n->n_w > 1 ? n->g[1] : NULL));
    if (dx[0]) KILN_TRY(kiln_conv2d_backward_data(dz, n->w[0], &n->cfg.conv, dx[0]));
    return KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                     "kernel_constraint", "bias_constraint", "lora_rank"};
    KILN_TRY(kiln_json_int(j, "filters", 0, 1, 1 << 20, &c->filters));
    KILN_TRY(kiln_json_pair(j, "kernel_size", 0, &c->kernel_h, &c->kernel_w));
    if (!c->kernel_h) return kiln_json_fail(j, KILN_ERR_FORMAT, "kernel_size is missing");
    KILN_TRY(kiln_json_pair(j, "strides", 1, &c->conv.stride_h, &c->conv.stride_w));
    KILN_TRY(kiln_json_pair(j, "dilation_rate", 1, &c->conv.dilation_h, &c->conv.dilation_w));
    KILN_TRY(kiln_json_padding(j, &c->conv.padding));
    KILN_TRY(kiln_json_channels_last(j));
    KILN_TRY(kiln_json_int(j, "groups", 1, 1, 1 << 20, &c->conv.groups));
    KILN_TRY(kiln_json_activation(j, &c->activation));
    KILN_TRY(kiln_json_bool(j, "use_bias", true, &c->use_bias));
    return kiln_json_refuse(j, no, 6);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "filters", c->filters);
    kiln_json_add_pair(o, "kernel_size", c->kernel_h, c->kernel_w);
    kiln_json_add_pair(o, "strides", c->conv.stride_h, c->conv.stride_w);
    kiln_json_add_padding(o, c->conv.padding);
    kiln_json_add_channels_last(o);
    kiln_json_add_pair(o, "dilation_rate", c->conv.dilation_h, c->conv.dilation_w);
    cJSON_AddNumberToObject(o, "groups", c->conv.groups ? c->conv.groups : 1);
    kiln_json_add_activation(o, c->activation);
    cJSON_AddBoolToObject(o, "use_bias", c->use_bias);
}

const kiln_layer_desc kiln_layer_conv2d = {
    .keras_class = "Conv2D",
    .base_name = "conv2d",
    .has_activation = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
