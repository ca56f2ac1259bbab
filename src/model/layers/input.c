/* input.c: the Input layer (Keras' InputLayer): the shape of one example, without the batch
 * axis; an axis Keras leaves None gets its size before the model is inferred
 * (kiln_model_set_input_shape). It comes first; the batch is copied into its output, so it
 * computes nothing. */
#include <math.h>
#include <string.h>

#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_input_layer(int ndim, const int64_t *shape) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_INPUT);
    c.input_ndim = ndim; /* the build checks it, and the sizes */
    if (!shape && ndim > 0) kiln_error(KILN_ERR_INVALID_ARG, "kiln_input_layer: shape is NULL"); /* sizes of 0 */
    for (int i = 0; shape && i < ndim && i < 3; i++) c.input_shape[i] = shape[i];
    return c;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->input_ndim < 1 || c->input_ndim > 3)
        return kiln_error(KILN_ERR_SHAPE, "an Input has 1 to 3 axes after the batch (has %d)", c->input_ndim);
    for (int d = 0; d < c->input_ndim; d++)
        if (c->input_shape[d] < 1 && (c->input_free >> d & 1))
            return kiln_error(KILN_ERR_SHAPE, "Input axis %d is None (unknown): give its size "
                              "(kiln_model_set_input_shape; the kiln command takes it from the data)", d + 1);
        else if (c->input_shape[d] < 1)
            return kiln_error(KILN_ERR_SHAPE, "Input axis %d has size %lld", d + 1, (long long)c->input_shape[d]);
    n->out_ndim = c->input_ndim;
    memcpy(n->out_shape, c->input_shape, sizeof n->out_shape);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return KILN_OK;
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return KILN_OK;
}

/* the shape from batch_shape (Keras 3) or batch_input_shape (Keras 2): [null, 1 to 3 sizes],
 * a size null when unknown (None: input_free, given later by kiln_model_set_input_shape) */
static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    const cJSON *s = kiln_json_get(j, "batch_shape");
    if (!s) s = kiln_json_get(j, "batch_input_shape");
    if (kiln_json_absent(s))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "no batch_shape (Keras 3) or batch_input_shape (Keras 2)");
    int n = cJSON_IsArray(s) ? cJSON_GetArraySize(s) : 0;
    bool ok = n >= 2 && n <= 4;
    for (int d = 1; ok && d < n; d++) {
        const cJSON *v = cJSON_GetArrayItem(s, d);
        if (cJSON_IsNull(v)) c->input_free |= 1u << (d - 1);
        ok = cJSON_IsNull(v) ||
             (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 1 << 20 && v->valuedouble == floor(v->valuedouble));
        if (ok && !cJSON_IsNull(v)) c->input_shape[d - 1] = (int64_t)v->valuedouble;
    }
    if (!ok)
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "model JSON: layer '%s': the input shape must be [null, then 1 to 3 sizes, each positive "
                          "or null]", j->name);
    c->input_ndim = n - 1;
    static const char *const no[] = {"sparse", "ragged"};
    return kiln_json_refuse(j, no, 2);
}

static void write_json(const kiln_layer_config *c, cJSON *o) {
    cJSON *shape = cJSON_AddArrayToObject(o, "batch_shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNull());
    for (int d = 0; d < c->input_ndim; d++)
        cJSON_AddItemToArray(shape, c->input_free >> d & 1 ? cJSON_CreateNull() : cJSON_CreateNumber((double)c->input_shape[d]));
}

kiln_status kiln_model_set_input_shape(kiln_model *m, int ndim, const int64_t *shape) {
    const char *fn = "kiln_model_set_input_shape";
    if (!m || !shape || m->n_nodes < 1) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL argument or empty model", fn);
    kiln_layer_config *c = &m->nodes[0].cfg;
    if (m->shaped) return kiln_error(KILN_ERR_INVALID_ARG, "%s: model '%s' is inferred already", fn, m->name);
    if (ndim != c->input_ndim)
        return kiln_error(KILN_ERR_SHAPE, "%s: model '%s' takes %d axes after the batch, not %d", fn, m->name,
                          c->input_ndim, ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 1 || shape[d] > 1 << 20 || (!(c->input_free >> d & 1) && shape[d] != c->input_shape[d]))
            return kiln_error(KILN_ERR_SHAPE, "%s: axis %d of model '%s' %s, not %lld", fn, d + 1, m->name,
                              c->input_free >> d & 1 ? "takes 1 .. 2^20" : "has a known size", (long long)shape[d]);
    for (int d = 0; d < ndim; d++) c->input_shape[d] = shape[d];
    return KILN_OK;
}

static int out_rank(const kiln_layer_config *c, int in_rank) { return c->input_ndim; }

const kiln_layer_desc kiln_layer_input = {
    .keras_class = "InputLayer",
    .base_name = "input_layer",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
    .out_rank = out_rank,
};
