/* reshape.c: Reshape (Keras' target_shape, without the batch; one size may be -1, inferred
 * from the input's size): the same values, row-major, seen with another shape (a copy). */
#include <math.h>
#include <string.h>

#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_reshape_layer(int ndim, const int64_t *target_shape) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_RESHAPE);
    c.target_ndim = ndim; /* infer checks it */
    for (int d = 0; target_shape && d < ndim && d < 3; d++) c.target_shape[d] = target_shape[d];
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->target_ndim < 1 || c->target_ndim > 3)
        return kiln_error(KILN_ERR_SHAPE, "target_shape has 1 to 3 sizes (has %d)", c->target_ndim);
    int64_t known = 1, numel = kiln_node_out_numel(in[0]);
    int unknown = -1;
    for (int d = 0; d < c->target_ndim; d++) {
        int64_t s = c->target_shape[d];
        if (s == -1 && unknown < 0) unknown = d;
        else if (s < 1 || s > numel) /* a size past the input's count cannot fit: no overflow below */
            return kiln_error(KILN_ERR_SHAPE, "target_shape size %lld is not a size (>= 1, or one -1) that fits "
                              "the input's %lld elements", (long long)s, (long long)numel);
        else if (s > numel / known) { /* more than the input holds (and no overflow) */
            known = numel + 1;
            break;
        } else known *= s;
    }
    if (unknown >= 0 ? numel % known != 0 : known != numel)
        return kiln_error(KILN_ERR_SHAPE, "'%s' gives %lld elements per example, which target_shape cannot hold",
                          in[0]->cfg.name, (long long)numel);
    n->out_ndim = c->target_ndim;
    memcpy(n->out_shape, c->target_shape, sizeof n->out_shape);
    if (unknown >= 0) n->out_shape[unknown] = numel / known;
    return KILN_OK;
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    const cJSON *s = kiln_json_get(j, "target_shape");
    int n = cJSON_IsArray(s) ? cJSON_GetArraySize(s) : 0;
    if (n < 1 || n > 3) return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "target_shape must be a list of 1 to 3 sizes");
    for (int d = 0; d < n; d++) {
        const cJSON *v = cJSON_GetArrayItem(s, d);
        double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!((x >= 1 && x <= 1 << 30) || x == -1) || x != floor(x))
            return kiln_json_fail(j, KILN_ERR_FORMAT, "target_shape sizes must be integers in [1, 2^30] or -1");
        c->target_shape[d] = (int64_t)x;
    }
    c->target_ndim = n;
    return KILN_OK;
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON *s = cJSON_AddArrayToObject(o, "target_shape");
    for (int d = 0; d < c->target_ndim; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)c->target_shape[d]));
}

static int out_rank(const kiln_layer_config *c, int in_rank) { return c->target_ndim; }

const kiln_layer_desc kiln_layer_reshape = {
    .keras_class = "Reshape",
    .base_name = "reshape",
    .infer = infer,
    .forward = kiln_layer_copy_forward,
    .backward = kiln_layer_copy_backward,
    .read_json = read_json,
    .write_json = write_json,
    .out_rank = out_rank,
};
