/* upsampling2d.c: UpSampling2D, z (B, H sh, W sw, C): each pixel repeated sh x sw times
 * (Keras' size, default (2, 2); interpolation "nearest", the default) or interpolated
 * ("bilinear": TensorFlow's resize_bilinear with half-pixel centres, as Keras 3). */
#include "checked.h"
#include "conv_common.h"

kiln_layer_config kiln_upsampling2d_layer(int size_h, int size_w) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_UPSAMPLING2D);
    c.size_h = size_h;
    c.size_w = size_w;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->size_h < 1 || c->size_h > (1 << 20) || c->size_w < 1 || c->size_w > (1 << 20))
        return kiln_error(KILN_ERR_INVALID_ARG, "size %dx%d must be in 1 .. 2^20", c->size_h, c->size_w);
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    kiln_layer_same_shape(n, in[0]);
    if (!kiln_mul_i64(in[0]->out_shape[0], c->size_h, &n->out_shape[0]) ||
        !kiln_mul_i64(in[0]->out_shape[1], c->size_w, &n->out_shape[1]))
        return kiln_error(KILN_ERR_SHAPE, "%lldx%lld upsampled %dx%d overflows 64 bits", (long long)in[0]->out_shape[0],
                          (long long)in[0]->out_shape[1], c->size_h, c->size_w);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    const kiln_layer_config *c = &n->cfg;
    return c->bilinear ? kiln_upsample2d_bilinear(x[0], c->size_h, c->size_w, z)
                       : kiln_upsample2d(x[0], c->size_h, c->size_w, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    const kiln_layer_config *c = &n->cfg;
    if (!dx[0]) return KILN_OK;
    return c->bilinear ? kiln_upsample2d_bilinear_backward(dz, c->size_h, c->size_w, dx[0])
                       : kiln_upsample2d_backward(dz, c->size_h, c->size_w, dx[0]);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const interp[] = {"nearest", "bilinear"};
    int which;
    KILN_TRY(kiln_json_choice(j, "interpolation", interp, 2, &which));
    c->bilinear = which == 1;
    KILN_TRY(kiln_json_pair(j, "size", 2, &c->size_h, &c->size_w));
    return kiln_json_channels_last(j);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    kiln_json_add_pair(o, "size", c->size_h, c->size_w);
    kiln_json_add_channels_last(o);
    cJSON_AddStringToObject(o, "interpolation", c->bilinear ? "bilinear" : "nearest");
}

const kiln_layer_desc kiln_layer_upsampling2d = {
    .keras_class = "UpSampling2D",
    .base_name = "up_sampling2d",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
