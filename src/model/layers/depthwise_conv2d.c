/* depthwise_conv2d.c: DepthwiseConv2D, z (B, OH, OW, C m) = each input channel c convolved with
 * its own m filters, output channel c m + k; weights, in Keras 3's order and names, `kernel`
 * (kh, kw, C, m) (Keras' layout, glorot_uniform; Keras 2 called it depthwise_kernel) then `bias`
 * (C m, zeros). It is the grouped convolution with groups =
 * C: the kernel (kh, kw, C, m) read row-major is the grouped kernel (kh, kw, 1, C m). */
#include "conv_common.h"

kiln_layer_config kiln_depthwise_conv2d_layer(int kernel_h, int kernel_w, int depth_multiplier, kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_DEPTHWISE_CONV2D);
    c.kernel_h = kernel_h;
    c.kernel_w = kernel_w;
    c.depth_multiplier = depth_multiplier;
    c.activation = act;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->depth_multiplier < 1 || c->depth_multiplier > (1 << 20) || c->kernel_h < 1 || c->kernel_w < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "depth_multiplier and kernel_size must be >= 1 (are %d, %dx%d)",
                          c->depth_multiplier, c->kernel_h, c->kernel_w);
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    if (in[0]->out_shape[2] > (1 << 20)) /* so that channels x depth_multiplier cannot overflow */
        return kiln_error(KILN_ERR_SHAPE, "%lld input channels: want at most 2^20", (long long)in[0]->out_shape[2]);
    int64_t ch = in[0]->out_shape[2], m = c->depth_multiplier;
    int64_t ks[4] = {c->kernel_h, c->kernel_w, ch, m}, gs[4] = {c->kernel_h, c->kernel_w, 1, ch * m}, bs[1] = {ch * m};
    kiln_conv2d_params p = kiln_layer_depthwise_params(c, ch);
    KILN_TRY(kiln_layer_conv_output(n, in[0], gs, &p));
    kiln_layer_declare_weight(n, "kernel", 4, ks, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (c->use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    kiln_conv2d_params p = kiln_layer_depthwise_params(&n->cfg, x[0]->shape[3]);
    kiln_tensor k = kiln_layer_depthwise_kernel(n->w[0]);
    return kiln_conv2d(x[0], &k, n->n_w > 1 ? n->w[1] : NULL, &p, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    kiln_conv2d_params p = kiln_layer_depthwise_params(&n->cfg, x[0]->shape[3]);
    if (n->grads_needed) {
        kiln_tensor g = kiln_layer_depthwise_kernel(n->g[0]);
        KILN_TRY(kiln_conv2d_backward_filter(x[0], dz, &p, &g, n->n_w > 1 ? n->g[1] : NULL));
    }
    kiln_tensor k = kiln_layer_depthwise_kernel(n->w[0]);
    return dx[0] ? kiln_conv2d_backward_data(dz, &k, &p, dx[0]) : KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"depthwise_regularizer", "bias_regularizer", "activity_regularizer",
                                     "depthwise_constraint", "bias_constraint"};
    KILN_TRY(kiln_json_int(j, "depth_multiplier", 1, 1, 1 << 20, &c->depth_multiplier));
    KILN_TRY(kiln_conv_json_read(j, c));
    return kiln_json_refuse(j, no, 5);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "depth_multiplier", c->depth_multiplier);
    kiln_conv_json_write(c, o, NULL);
}

const kiln_layer_desc kiln_layer_depthwise_conv2d = {
    .keras_class = "DepthwiseConv2D",
    .base_name = "depthwise_conv2d",
    .has_activation = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
