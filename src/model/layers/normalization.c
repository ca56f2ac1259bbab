/* normalization.c: Normalization (Keras' preprocessing layer, axis -1, its statistics from
 * adapt() as weights): z = (x - mean[c]) / max(sqrt(variance[c]), 1e-7) over the last axis c
 * (kiln_normalize). Its weights are Keras' non-trainable mean (C, zeros), variance (C, ones) and
 * count (a scalar; Keras' int64, kiln's f32: exact up to 2^24). */
#include "layer.h"
#include "layer_json.h"

#define KERAS_EPSILON 1e-7f /* keras.backend.epsilon() */

kiln_layer_config kiln_normalization_layer(void) { return kiln_layer_defaults(KILN_LAYER_NORMALIZATION); }

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    int64_t c[1] = {in[0]->out_shape[in[0]->out_ndim - 1]};
    kiln_layer_declare_weight(n, "mean", 1, c, false, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    kiln_layer_declare_weight(n, "variance", 1, c, false, (kiln_initializer){KILN_INIT_CONSTANT, 1.0});
    kiln_layer_declare_weight(n, "count", 0, NULL, false, (kiln_initializer){KILN_INIT_CONSTANT, 0.0});
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_normalize(x[0], n->w[0], n->w[1], KERAS_EPSILON, z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_normalize_backward(n->w[1], KERAS_EPSILON, dz, dx[0]) : KILN_OK;
}

/* axis -1 (or the last axis' index), as an integer or a list of one; mean and variance from
 * adapt() (weights), not given in the config; invert false */
static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"mean", "variance", "invert"};
    const cJSON *a = kiln_json_get(j, "axis");
    if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 1) a = cJSON_GetArrayItem(a, 0);
    int axis = -1;
    if (!kiln_json_absent(a)) KILN_TRY(kiln_json_int_of(j, a, "axis", -4, 3, &axis));
    if (axis != -1 && axis != in_rank)
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "axis must be -1, the last axis (other axes are not supported)");
    return kiln_json_refuse(j, no, 3);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    int axis[1] = {-1};
    cJSON_AddItemToObject(o, "axis", cJSON_CreateIntArray(axis, 1));
    cJSON_AddBoolToObject(o, "invert", false);
    cJSON_AddNullToObject(o, "mean");
    cJSON_AddNullToObject(o, "variance");
}

const kiln_layer_desc kiln_layer_normalization = {
    .keras_class = "Normalization",
    .base_name = "normalization",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
