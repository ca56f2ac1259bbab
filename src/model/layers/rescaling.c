/* rescaling.c: Rescaling (Keras' scale and offset, rounded to f32 as Keras casts them): z = x
 * scale + offset, computed in double and rounded once (kiln_act's AFFINE). */
#include <math.h>

#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_rescaling_layer(float scale, float offset) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_RESCALING);
    c.act.scale = scale;
    c.act.offset = offset;
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (!isfinite(n->cfg.act.scale) || !isfinite(n->cfg.act.offset))
        return kiln_error(KILN_ERR_INVALID_ARG, "scale and offset must be finite (are %g, %g)", (double)n->cfg.act.scale,
                          (double)n->cfg.act.offset);
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return kiln_act(&n->cfg.act, x[0], z);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return dx[0] ? kiln_act_backward(&n->cfg.act, x[0], dz, dx[0]) : KILN_OK;
}

/* scale and offset are numbers (Keras also takes per-channel lists: refused) */
static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    const cJSON *s = kiln_json_get(j, "scale");
    if (kiln_json_absent(s)) return kiln_json_fail(j, KILN_ERR_FORMAT, "scale is missing");
    if (!cJSON_IsNumber(s)) return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "scale must be a number (lists are not supported)");
    const cJSON *o = kiln_json_get(j, "offset");
    if (!kiln_json_absent(o) && !cJSON_IsNumber(o))
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "offset must be a number (lists are not supported)");
    KILN_TRY(kiln_json_float(j, "scale", c->act.scale, -3.4e38, 3.4e38, &c->act.scale));
    return kiln_json_float(j, "offset", c->act.offset, -3.4e38, 3.4e38, &c->act.offset);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON_AddNumberToObject(o, "scale", c->act.scale);
    cJSON_AddNumberToObject(o, "offset", c->act.offset);
}

const kiln_layer_desc kiln_layer_rescaling = {
    .keras_class = "Rescaling",
    .base_name = "rescaling",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
