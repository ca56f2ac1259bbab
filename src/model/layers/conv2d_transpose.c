/* conv2d_transpose.c: Conv2DTranspose, the transpose (gradient) of a Conv2D: z (B, OH, OW,
 * filters) = conv2d_backward_data(x (B, H, W, in), kernel (kh, kw, filters, in)) + bias; weights
 * `kernel` (kh, kw, filters, in) (Keras' layout, glorot_uniform) then `bias` (filters, zeros).
 * Keras' output size per axis (output_padding None): "valid" H s + max(k_eff - s, 0), "same"
 * H s, k_eff = (k - 1) d + 1; the convolution it transposes has the same strides, dilation and
 * padding ("same" padding as TensorFlow computes it for the output size). Backward: dx = conv2d
 * (dz, kernel), dkernel = conv2d_backward_filter(dz, x), dbias = the sum of dz over B, OH, OW. */
#include <stdint.h>

#include "conv_common.h"

kiln_layer_config kiln_conv2d_transpose_layer(int filters, int kernel_h, int kernel_w, kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_CONV2D_TRANSPOSE);
    c.filters = filters;
    c.kernel_h = kernel_h;
    c.kernel_w = kernel_w;
    c.activation = act;
    return c;
}

/* Keras' deconv_output_length without output_padding */
static int64_t out_length(int64_t in, int k, int s, int d, kiln_padding pad) {
    int64_t eff = (int64_t)(k - 1) * d + 1;
    return pad == KILN_PADDING_SAME ? in * s : in * s + (eff > s ? eff - s : 0);
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    const kiln_conv2d_params *p = &c->conv;
    if (c->filters < 1 || c->filters > (1 << 20) || c->kernel_h < 1 || c->kernel_w < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "filters and kernel_size must be >= 1 (are %d, %dx%d)", c->filters,
                          c->kernel_h, c->kernel_w);
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    if (in[0]->out_shape[0] > INT32_MAX || in[0]->out_shape[1] > INT32_MAX) /* the conv's limit */
        return kiln_error(KILN_ERR_SHAPE, "the input's %lldx%lld pixels: want each below 2^31",
                          (long long)in[0]->out_shape[0], (long long)in[0]->out_shape[1]);
    int64_t ks[4] = {c->kernel_h, c->kernel_w, c->filters, in[0]->out_shape[2]}, bs[1] = {c->filters};
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 || p->stride_h > (1 << 20) ||
        p->stride_w > (1 << 20) || p->dilation_h > (1 << 20) || p->dilation_w > (1 << 20))
        return kiln_error(KILN_ERR_INVALID_ARG, "strides %dx%d and dilation_rate %dx%d must be in 1 .. 2^20",
                          p->stride_h, p->stride_w, p->dilation_h, p->dilation_w);
    /* the output (below 2^31 x 2^21), then the convolution it transposes must map it back onto
     * the input */
    int64_t zs[4] = {1, out_length(in[0]->out_shape[0], c->kernel_h, p->stride_h, p->dilation_h, p->padding),
                     out_length(in[0]->out_shape[1], c->kernel_w, p->stride_w, p->dilation_w, p->padding), c->filters};
    int64_t back[4];
    KILN_TRY(kiln_conv2d_output_shape(zs, ks, p, back));
    if (back[1] != in[0]->out_shape[0] || back[2] != in[0]->out_shape[1])
        return kiln_error(KILN_ERR_SHAPE, "the output %lldx%lld does not map back onto the %lldx%lld input",
                          (long long)zs[1], (long long)zs[2], (long long)in[0]->out_shape[0],
                          (long long)in[0]->out_shape[1]);
    kiln_layer_declare_weight(n, "kernel", 4, ks, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (c->use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    n->out_ndim = 3;
    n->out_shape[0] = zs[1];
    n->out_shape[1] = zs[2];
    n->out_shape[2] = c->filters;
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    KILN_TRY(kiln_conv2d_backward_data(x[0], n->w[0], &n->cfg.conv, z));
    return n->n_w > 1 ? kiln_add(z, n->w[1], z) : KILN_OK;
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    if (n->grads_needed) {
        KILN_TRY(kiln_conv2d_backward_filter(dz, x[0], &n->cfg.conv, n->g[0], NULL));
        if (n->n_w > 1) KILN_TRY(kiln_sum(dz, 0x7, n->g[1]));
    }
    return dx[0] ? kiln_conv2d(dz, n->w[0], NULL, &n->cfg.conv, dx[0]) : KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"output_padding", "kernel_regularizer", "bias_regularizer",
                                     "activity_regularizer", "kernel_constraint", "bias_constraint"};
    KILN_TRY(kiln_json_int(j, "filters", 0, 1, 1 << 20, &c->filters));
    KILN_TRY(kiln_conv_json_read(j, c));
    return kiln_json_refuse(j, no, 6);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "filters", c->filters);
    kiln_conv_json_write(c, o, "output_padding");
}

const kiln_layer_desc kiln_layer_conv2d_transpose = {
    .keras_class = "Conv2DTranspose",
    .base_name = "conv2d_transpose",
    .has_activation = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
