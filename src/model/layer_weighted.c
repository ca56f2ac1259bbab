/* layer_dense.c: Dense and Conv2D layers: weights in Keras' layouts (dense.kernel (in, out),
 * conv2d.kernel (kh, kw, in, out)), glorot_uniform kernels, zero biases. */
#include <math.h>
#include <string.h>

#include "error.h"
#include "model_impl.h"

static void add_weight(kiln_node *n, const char *name, int ndim, const int64_t *shape, bool trainable) {
    int w = n->n_w++;
    snprintf(n->w_name[w], sizeof n->w_name[w], "%s", name);
    n->w_ndim[w] = ndim;
    for (int d = 0; d < 4; d++) n->w_shape[w][d] = d < ndim ? shape[d] : 1;
    n->w_trainable[w] = trainable;
}

/* ---- Dense: z (B, units) = x (B, in) W (in, units) + b ---- */

static kiln_status dense_infer(kiln_node *n, const kiln_node *const *in) {
    if (n->cfg.units < 1) return kiln_error(KILN_ERR_INVALID_ARG, "units must be >= 1 (is %d)", n->cfg.units);
    if (in[0]->out_ndim != 1)
        return kiln_error(KILN_ERR_SHAPE, "Dense takes (batch, features) inputs; '%s' gives %d axes after the batch (add a Flatten)",
                          in[0]->cfg.name, in[0]->out_ndim);
    int64_t ks[2] = {in[0]->out_shape[0], n->cfg.units}, bs[1] = {n->cfg.units};
    add_weight(n, "kernel", 2, ks, true);
    if (n->cfg.use_bias) add_weight(n, "bias", 1, bs, true);
    n->out_ndim = 1;
    n->out_shape[0] = n->cfg.units;
    return KILN_OK;
}

/* glorot_uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); biases zero */
static kiln_status glorot_init(kiln_node *n, uint64_t seed) {
    const int64_t *s = n->w_shape[0];
    double receptive = n->w_ndim[0] == 4 ? (double)(s[0] * s[1]) : 1.0;
    double fan_in = receptive * (double)s[n->w_ndim[0] - 2], fan_out = receptive * (double)s[n->w_ndim[0] - 1];
    KILN_TRY(kiln_init_uniform(n->w[0], seed, sqrt(6.0 / (fan_in + fan_out))));
    return n->n_w > 1 ? kiln_fill(n->w[1], 0.0) : KILN_OK;
}

static kiln_status dense_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                 bool training, uint64_t seed) {
    KILN_TRY(kiln_gemm(x[0], false, n->w[0], false, 1.0f, 0.0f, z, KILN_MATH_STRICT));
    return n->n_w > 1 ? kiln_add(z, n->w[1], z) : KILN_OK;
}

static kiln_status dense_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                  const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    if (n->grads_needed) {
        KILN_TRY(kiln_gemm(x[0], true, dz, false, 1.0f, 0.0f, n->g[0], KILN_MATH_STRICT)); /* (in, units) */
        if (n->n_w > 1) KILN_TRY(kiln_sum(dz, 0x1, n->g[1]));
    }
    if (dx[0]) KILN_TRY(kiln_gemm(dz, false, n->w[0], true, 1.0f, 0.0f, dx[0], KILN_MATH_STRICT)); /* (B, in) */
    return KILN_OK;
}

const layer_ops kiln_layer_dense_ops = {dense_infer, glorot_init, dense_forward, dense_backward, 0, false};

/* ---- Conv2D: z (B, OH, OW, filters) = conv(x (B, H, W, in), kernel (kh, kw, in, filters)) + b ---- */

static kiln_status conv_infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->filters < 1 || c->kernel_h < 1 || c->kernel_w < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "filters and kernel_size must be >= 1 (are %d, %dx%d)",
                          c->filters, c->kernel_h, c->kernel_w);
    if (in[0]->out_ndim != 3)
        return kiln_error(KILN_ERR_SHAPE, "Conv2D takes (batch, H, W, C) inputs; '%s' gives %d axes after the batch",
                          in[0]->cfg.name, in[0]->out_ndim);
    int64_t ks[4] = {c->kernel_h, c->kernel_w, in[0]->out_shape[2], c->filters}, bs[1] = {c->filters};
    int64_t xs[4] = {1, in[0]->out_shape[0], in[0]->out_shape[1], in[0]->out_shape[2]}, ys[4];
    KILN_TRY(kiln_conv2d_output_shape(xs, ks, &c->conv, ys));
    add_weight(n, "kernel", 4, ks, true);
    if (c->use_bias) add_weight(n, "bias", 1, bs, true);
    n->out_ndim = 3;
    memcpy(n->out_shape, ys + 1, sizeof(int64_t) * 3);
    return KILN_OK;
}

static kiln_status conv_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                bool training, uint64_t seed) {
    return kiln_conv2d(x[0], n->w[0], n->n_w > 1 ? n->w[1] : NULL, &n->cfg.conv, z);
}

static kiln_status conv_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                 const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    if (n->grads_needed)
        KILN_TRY(kiln_conv2d_backward_filter(x[0], dz, &n->cfg.conv, n->g[0], n->n_w > 1 ? n->g[1] : NULL));
    if (dx[0]) KILN_TRY(kiln_conv2d_backward_data(dz, n->w[0], &n->cfg.conv, dx[0]));
    return KILN_OK;
}

const layer_ops kiln_layer_conv2d_ops = {conv_infer, glorot_init, conv_forward, conv_backward, 0, false};
