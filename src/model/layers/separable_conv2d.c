/* separable_conv2d.c: SeparableConv2D, Keras' depthwise then pointwise convolution:
 *   t (B, OH, OW, C m) = depthwise(x, depthwise_kernel (kh, kw, C, m))   (strides, dilation, padding)
 *   z (B, OH, OW, filters) = t * pointwise_kernel (1, 1, C m, filters) + bias (filters)
 * Weights in Keras' order: depthwise_kernel, pointwise_kernel (both glorot_uniform), bias (zeros).
 * The intermediate t is not kept between forward and backward: each call takes it (and, in the
 * backward, its gradient) as a temporary tensor on the layer's backend (CUDA's caching pool
 * serves it without a device allocation after the first step) and the backward recomputes t. */
#include "conv_common.h"

kiln_layer_config kiln_separable_conv2d_layer(int filters, int kernel_h, int kernel_w, kiln_activation act) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_SEPARABLE_CONV2D);
    c.filters = filters;
    c.kernel_h = kernel_h;
    c.kernel_w = kernel_w;
    c.activation = act;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->filters < 1 || c->depth_multiplier < 1 || c->depth_multiplier > (1 << 20) || c->kernel_h < 1 ||
        c->kernel_w < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "filters, depth_multiplier and kernel_size must be >= 1 (are %d, %d, %dx%d)",
                          c->filters, c->depth_multiplier, c->kernel_h, c->kernel_w);
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    if (in[0]->out_shape[2] > (1 << 20)) /* so that channels x depth_multiplier cannot overflow */
        return kiln_error(KILN_ERR_SHAPE, "%lld input channels: want at most 2^20", (long long)in[0]->out_shape[2]);
    int64_t ch = in[0]->out_shape[2], cm = ch * c->depth_multiplier;
    int64_t ds[4] = {c->kernel_h, c->kernel_w, ch, c->depth_multiplier}, gs[4] = {c->kernel_h, c->kernel_w, 1, cm};
    int64_t ps[4] = {1, 1, cm, c->filters}, bs[1] = {c->filters};
    kiln_conv2d_params p = kiln_layer_depthwise_params(c, ch);
    KILN_TRY(kiln_layer_conv_output(n, in[0], gs, &p));
    n->out_shape[2] = c->filters;
    kiln_layer_declare_weight(n, "depthwise_kernel", 4, ds, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    kiln_layer_declare_weight(n, "pointwise_kernel", 4, ps, true, (kiln_initializer){KILN_INIT_GLOROT_UNIFORM, 0.0});
    if (c->use_bias) kiln_layer_declare_weight(n, "bias", 1, bs, true, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    return KILN_OK;
}

/* t = depthwise(x) into a new temporary (B, OH, OW, C m) */
static kiln_status depthwise(kiln_node *n, const kiln_tensor *x, const kiln_tensor *z, kiln_tensor **t) {
    const int64_t s[4] = {z->shape[0], z->shape[1], z->shape[2], n->w[1]->shape[2]};
    kiln_conv2d_params p = kiln_layer_depthwise_params(&n->cfg, x->shape[3]);
    kiln_tensor k = kiln_layer_depthwise_kernel(n->w[0]);
    KILN_TRY(kiln_tensor_new(x->backend, KILN_F32, 4, s, "separable_conv2d.depthwise", t));
    kiln_status st = kiln_conv2d(x, &k, NULL, &p, *t);
    if (st != KILN_OK) {
        kiln_tensor_free(*t);
        *t = NULL;
    }
    return st;
}

static const kiln_conv2d_params pointwise = KILN_CONV2D_DEFAULTS;

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    kiln_tensor *t;
    KILN_TRY(depthwise(n, x[0], z, &t));
    kiln_status st = kiln_conv2d(t, n->w[1], n->n_w > 2 ? n->w[2] : NULL, &pointwise, z);
    kiln_tensor_free(t);
    return st;
}

/* with t = depthwise(x) and its gradient dt (a tensor like t) */
static kiln_status backward_through(kiln_node *n, const kiln_tensor *x, const kiln_tensor *t, kiln_tensor *dt,
                                    const kiln_tensor *dz, kiln_tensor *dx) {
    kiln_conv2d_params p = kiln_layer_depthwise_params(&n->cfg, x->shape[3]);
    if (n->grads_needed) KILN_TRY(kiln_conv2d_backward_filter(t, dz, &pointwise, n->g[1], n->n_w > 2 ? n->g[2] : NULL));
    KILN_TRY(kiln_conv2d_backward_data(dz, n->w[1], &pointwise, dt));
    if (n->grads_needed) {
        kiln_tensor g = kiln_layer_depthwise_kernel(n->g[0]);
        KILN_TRY(kiln_conv2d_backward_filter(x, dt, &p, &g, NULL));
    }
    kiln_tensor k = kiln_layer_depthwise_kernel(n->w[0]);
    return dx ? kiln_conv2d_backward_data(dt, &k, &p, dx) : KILN_OK;
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    kiln_tensor *t, *dt = NULL;
    if (!n->grads_needed && !dx[0]) return KILN_OK;
    KILN_TRY(depthwise(n, x[0], z, &t));
    kiln_status st = kiln_tensor_new(t->backend, KILN_F32, 4, t->shape, "separable_conv2d.depthwise_grad", &dt);
    if (st == KILN_OK) st = backward_through(n, x[0], t, dt, dz, dx[0]);
    kiln_tensor_free(dt);
    kiln_tensor_free(t);
    return st;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
                                     "activity_regularizer", "depthwise_constraint", "pointwise_constraint",
                                     "bias_constraint"};
    KILN_TRY(kiln_json_int(j, "depth_multiplier", 1, 1, 1 << 20, &c->depth_multiplier));
    KILN_TRY(kiln_json_int(j, "filters", 0, 1, 1 << 20, &c->filters));
    KILN_TRY(kiln_conv_json_read(j, c));
    return kiln_json_refuse(j, no, 7);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "depth_multiplier", c->depth_multiplier);
    cJSON_AddNumberToObject(o, "filters", c->filters);
    kiln_conv_json_write(c, o, NULL);
}

const kiln_layer_desc kiln_layer_separable_conv2d = {
    .keras_class = "SeparableConv2D",
    .base_name = "separable_conv2d",
    .has_activation = true,
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
