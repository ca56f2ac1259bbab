/* zero_padding2d.c: ZeroPadding2D, z (B, top + H + bottom, left + W + right, C) = x with rows and
 * columns of zeros around it; Keras' padding as an int, a pair (rows, columns) or
 * ((top, bottom), (left, right)), default 1 everywhere. The backward is the crop of dz. */
#include "checked.h"
#include "conv_common.h"

kiln_layer_config kiln_zero_padding2d_layer(int top, int bottom, int left, int right) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_ZERO_PADDING2D);
    c.pad_top = top;
    c.pad_bottom = bottom;
    c.pad_left = left;
    c.pad_right = right;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    const int p[4] = {c->pad_top, c->pad_bottom, c->pad_left, c->pad_right};
    for (int i = 0; i < 4; i++)
        if (p[i] < 0 || p[i] > (1 << 20))
            return kiln_error(KILN_ERR_INVALID_ARG, "padding ((%d, %d), (%d, %d)) must be in 0 .. 2^20", p[0], p[1],
                              p[2], p[3]);
    KILN_TRY(kiln_layer_need_image(n, in[0]));
    kiln_layer_same_shape(n, in[0]);
    if (!kiln_add_i64(in[0]->out_shape[0], p[0] + p[1], &n->out_shape[0]) ||
        !kiln_add_i64(in[0]->out_shape[1], p[2] + p[3], &n->out_shape[1]))
        return kiln_error(KILN_ERR_SHAPE, "%lldx%lld padded overflows 64 bits", (long long)in[0]->out_shape[0],
                          (long long)in[0]->out_shape[1]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_pad2d(x[0], n->cfg.pad_top, n->cfg.pad_left, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_pad2d(dz, -n->cfg.pad_top, -n->cfg.pad_left, dx[0]) : KILN_OK;
}

/* one axis: an int v (v, v) or a pair [before, after] */
static kiln_status read_axis(const kiln_json_layer *j, const cJSON *v, int *before, int *after) {
    if (cJSON_IsNumber(v)) {
        KILN_TRY(kiln_json_int_of(j, v, "padding", 0, 1 << 20, before));
        *after = *before;
        return KILN_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return kiln_json_fail(j, KILN_ERR_FORMAT, "padding must be an integer, a pair, or a pair of pairs");
    KILN_TRY(kiln_json_int_of(j, cJSON_GetArrayItem(v, 0), "padding", 0, 1 << 20, before));
    return kiln_json_int_of(j, cJSON_GetArrayItem(v, 1), "padding", 0, 1 << 20, after);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    const cJSON *v = kiln_json_get(j, "padding");
    KILN_TRY(kiln_json_channels_last(j));
    if (kiln_json_absent(v)) return KILN_OK;
    if (cJSON_IsNumber(v)) {
        KILN_TRY(read_axis(j, v, &c->pad_top, &c->pad_bottom));
        c->pad_left = c->pad_right = c->pad_top;
        return KILN_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return kiln_json_fail(j, KILN_ERR_FORMAT, "padding must be an integer, a pair, or a pair of pairs");
    const cJSON *rows = cJSON_GetArrayItem(v, 0), *cols = cJSON_GetArrayItem(v, 1);
    if (cJSON_IsNumber(rows) != cJSON_IsNumber(cols))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "padding must be an integer, a pair, or a pair of pairs");
    KILN_TRY(read_axis(j, rows, &c->pad_top, &c->pad_bottom));
    return read_axis(j, cols, &c->pad_left, &c->pad_right);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON *p = cJSON_AddArrayToObject(o, "padding");
    const int v[2][2] = {{c->pad_top, c->pad_bottom}, {c->pad_left, c->pad_right}};
    for (int a = 0; a < 2; a++) cJSON_AddItemToArray(p, cJSON_CreateIntArray(v[a], 2));
    kiln_json_add_channels_last(o);
}

const kiln_layer_desc kiln_layer_zero_padding2d = {
    .keras_class = "ZeroPadding2D",
    .base_name = "zero_padding2d",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
