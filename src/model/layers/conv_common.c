/* conv_common.c: the image check, output shapes, depthwise parameters and Keras JSON keys the
 * convolution-family layers share (conv_common.h). */
#include <string.h>

#include "conv_common.h"

kiln_status kiln_layer_need_image(const kiln_node *n, const kiln_node *in) {
    if (in->out_ndim == 3) return KILN_OK;
    return kiln_error(KILN_ERR_SHAPE, "%s takes (batch, H, W, C) inputs; '%s' gives %d axes after the batch",
                      n->desc->keras_class, in->cfg.name, in->out_ndim);
}

kiln_status kiln_layer_conv_output(kiln_node *n, const kiln_node *in, const int64_t w_shape[4],
                                   const kiln_conv2d_params *p) {
    int64_t xs[4] = {1, in->out_shape[0], in->out_shape[1], in->out_shape[2]}, ys[4];
    KILN_TRY(kiln_conv2d_output_shape(xs, w_shape, p, ys));
    n->out_ndim = 3;
    memcpy(n->out_shape, ys + 1, sizeof(int64_t) * 3);
    return KILN_OK;
}

kiln_conv2d_params kiln_layer_depthwise_params(const kiln_layer_config *c, int64_t channels) {
    kiln_conv2d_params p = c->conv;
    p.groups = (int)channels;
    return p;
}

kiln_tensor kiln_layer_depthwise_kernel(const kiln_tensor *k) {
    kiln_tensor v = *k;
    const int64_t s[4] = {k->shape[0], k->shape[1], 1, k->shape[2] * k->shape[3]};
    (void)kiln_tensor_reshape(&v, 4, s); /* contiguous, the same element count: cannot fail */
    return v;
}

kiln_status kiln_conv_json_read(const kiln_json_layer *j, kiln_layer_config *c) {
    KILN_TRY(kiln_json_pair(j, "kernel_size", 0, &c->kernel_h, &c->kernel_w));
    if (!c->kernel_h) return kiln_json_fail(j, KILN_ERR_FORMAT, "kernel_size is missing");
    KILN_TRY(kiln_json_pair(j, "strides", 1, &c->conv.stride_h, &c->conv.stride_w));
    KILN_TRY(kiln_json_pair(j, "dilation_rate", 1, &c->conv.dilation_h, &c->conv.dilation_w));
    KILN_TRY(kiln_json_padding(j, &c->conv.padding));
    KILN_TRY(kiln_json_channels_last(j));
    KILN_TRY(kiln_json_activation(j, &c->activation));
    return kiln_json_bool(j, "use_bias", true, &c->use_bias);
}

void kiln_conv_json_write(const kiln_layer_config *c, cJSON *o, const char *between) {
    kiln_json_add_pair(o, "kernel_size", c->kernel_h, c->kernel_w);
    kiln_json_add_pair(o, "strides", c->conv.stride_h, c->conv.stride_w);
    kiln_json_add_padding(o, c->conv.padding);
    if (between) cJSON_AddNullToObject(o, between);
    kiln_json_add_channels_last(o);
    kiln_json_add_pair(o, "dilation_rate", c->conv.dilation_h, c->conv.dilation_w);
    kiln_json_add_activation(o, c->activation);
    cJSON_AddBoolToObject(o, "use_bias", c->use_bias);
}
