/* pooling.c: the pooling layers over (B, H, W, C) inputs: MaxPooling2D and AveragePooling2D
 * (pool_size, strides defaulting to pool_size, padding valid or same) and
 * GlobalAveragePooling2D ((B, H, W, C) -> (B, C), or (B, 1, 1, C) with keepdims). */
#include <string.h>

#include "layer.h"
#include "layer_json.h"

static kiln_layer_config pool(kiln_layer_type t, int ph, int pw) {
    kiln_layer_config c = kiln_layer_defaults(t);
    c.pool = (kiln_pool2d_params){ph, pw, 0, 0, KILN_PADDING_VALID};
    return c;
}

kiln_layer_config kiln_max_pool2d_layer(int ph, int pw) { return pool(KILN_LAYER_MAX_POOL2D, ph, pw); }
kiln_layer_config kiln_avg_pool2d_layer(int ph, int pw) { return pool(KILN_LAYER_AVG_POOL2D, ph, pw); }
kiln_layer_config kiln_global_avg_pool2d_layer(void) { return kiln_layer_defaults(KILN_LAYER_GLOBAL_AVG_POOL2D); }

static kiln_status need_image(const kiln_node *n, const kiln_node *in) {
    if (in->out_ndim == 3) return KILN_OK;
    return kiln_error(KILN_ERR_SHAPE, "%s takes (batch, H, W, C) inputs; '%s' gives %d axes after the batch",
                      n->desc->keras_class, in->cfg.name, in->out_ndim);
}

/* ---- MaxPooling2D and AveragePooling2D ---- */

static kiln_status pool_infer(kiln_node *n, const kiln_node *const *in) {
    KILN_TRY(need_image(n, in[0]));
    int64_t xs[4] = {1, in[0]->out_shape[0], in[0]->out_shape[1], in[0]->out_shape[2]}, ys[4];
    KILN_TRY(kiln_pool2d_output_shape(xs, &n->cfg.pool, ys));
    n->out_ndim = 3;
    memcpy(n->out_shape, ys + 1, sizeof(int64_t) * 3);
    return KILN_OK;
}

static kiln_status max_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_max_pool2d(x[0], &n->cfg.pool, z);
}

static kiln_status max_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                                kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_max_pool2d_backward(x[0], dz, &n->cfg.pool, dx[0]) : KILN_OK;
}

static kiln_status avg_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_avg_pool2d(x[0], &n->cfg.pool, z);
}

static kiln_status avg_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                                kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_avg_pool2d_backward(dz, &n->cfg.pool, dx[0]) : KILN_OK;
}

static kiln_status pool_read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(kiln_json_pair(j, "pool_size", 2, &c->pool.pool_h, &c->pool.pool_w));
    KILN_TRY(kiln_json_pair(j, "strides", 0, &c->pool.stride_h, &c->pool.stride_w));
    KILN_TRY(kiln_json_padding(j, &c->pool.padding));
    return kiln_json_channels_last(j);
}

static void pool_write_json(const kiln_layer_config *c, cJSON *o) {
    const kiln_pool2d_params *p = &c->pool;
    kiln_json_add_pair(o, "pool_size", p->pool_h, p->pool_w);
    kiln_json_add_pair(o, "strides", p->stride_h ? p->stride_h : p->pool_h, p->stride_w ? p->stride_w : p->pool_w);
    kiln_json_add_padding(o, p->padding);
    kiln_json_add_channels_last(o);
}

const kiln_layer_desc kiln_layer_max_pool2d = {
    .keras_class = "MaxPooling2D",
    .base_name = "max_pooling2d",
    .infer = pool_infer,
    .forward = max_forward,
    .backward = max_backward,
    .read_json = pool_read_json,
    .write_json = pool_write_json,
};

const kiln_layer_desc kiln_layer_avg_pool2d = {
    .keras_class = "AveragePooling2D",
    .base_name = "average_pooling2d",
    .infer = pool_infer,
    .forward = avg_forward,
    .backward = avg_backward,
    .read_json = pool_read_json,
    .write_json = pool_write_json,
};

/* ---- GlobalAveragePooling2D ---- */

static kiln_status global_infer(kiln_node *n, const kiln_node *const *in) {
    KILN_TRY(need_image(n, in[0]));
    n->out_ndim = n->cfg.keepdims ? 3 : 1;
    n->out_shape[0] = n->out_shape[1] = 1;
    n->out_shape[n->cfg.keepdims ? 2 : 0] = in[0]->out_shape[2];
    return KILN_OK;
}

static kiln_status global_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_global_avg_pool2d(x[0], z);
}

static kiln_status global_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                                   kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_global_avg_pool2d_backward(dz, dx[0]) : KILN_OK;
}

static kiln_status global_read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(kiln_json_bool(j, "keepdims", false, &c->keepdims));
    return kiln_json_channels_last(j);
}

static void global_write_json(const kiln_layer_config *c, cJSON *o) {
    kiln_json_add_channels_last(o);
    cJSON_AddBoolToObject(o, "keepdims", c->keepdims);
}

static int global_out_rank(const kiln_layer_config *c, int in_rank) { return c->keepdims ? 3 : 1; }

const kiln_layer_desc kiln_layer_global_avg_pool2d = {
    .keras_class = "GlobalAveragePooling2D",
    .base_name = "global_average_pooling2d",
    .infer = global_infer,
    .forward = global_forward,
    .backward = global_backward,
    .read_json = global_read_json,
    .write_json = global_write_json,
    .out_rank = global_out_rank,
};
