/* concatenate.c: Concatenate (Keras' axis, default -1): two or more inputs of one shape but
 * along `axis`, placed one after another along it. Each input is seen as rows (the batch and the
 * axes before `axis`) of its axis-and-after block, copied into its columns of the output's rows
 * (kiln_copy_columns); its gradient is those columns of dz. */
#include "layer.h"
#include "layer_json.h"

kiln_layer_config kiln_concatenate_layer(int axis) {
    kiln_layer_config c = kiln_layer_defaults(KILN_LAYER_CONCATENATE);
    c.axis = axis;
    return c;
}

/* the axis among the axes after the batch (0 .. ndim - 1), or -1 when there is none such */
static int example_axis(int axis, int ndim) {
    int a = axis < 0 ? ndim + axis : axis - 1;
    return a >= 0 && a < ndim ? a : -1;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (n->n_in < 2) return kiln_error(KILN_ERR_INVALID_ARG, "Concatenate needs at least 2 inputs (has %d)", n->n_in);
    int nd = in[0]->out_ndim, a = example_axis(n->cfg.axis, nd);
    if (a < 0) return kiln_error(KILN_ERR_SHAPE, "axis %d is not an axis of '%s' (%d axes after the batch; the batch "
                                 "cannot be concatenated)", n->cfg.axis, in[0]->cfg.name, nd);
    kiln_layer_same_shape(n, in[0]);
    for (int k = 1; k < n->n_in; k++) {
        bool same = in[k]->out_ndim == nd;
        for (int d = 0; same && d < nd; d++) same = d == a || in[k]->out_shape[d] == in[0]->out_shape[d];
        if (!same)
            return kiln_error(KILN_ERR_SHAPE, "inputs '%s' and '%s' differ in shape off axis %d", in[0]->cfg.name,
                              in[k]->cfg.name, n->cfg.axis);
        n->out_shape[a] += in[k]->out_shape[a]; /* each below the size limit: no overflow */
    }
    return KILN_OK;
}

/* the column width of input k and of the output: the axis and the axes after it */
static int64_t block(const kiln_tensor *t, int axis) {
    int64_t w = 1;
    for (int d = axis; d < t->ndim; d++) w *= t->shape[d];
    return w;
}

/* every input into (or, back, its gradient out of) its columns of z */
static kiln_status each_input(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, kiln_tensor *zw,
                              kiln_tensor *const *dx) {
    int axis = example_axis(n->cfg.axis, z->ndim - 1) + 1; /* of the tensor, batch included */
    int64_t wy = block(z, axis), offset = 0;
    for (int k = 0; k < n->n_in; k++) {
        int64_t wx = block(x[k], axis);
        if (zw) KILN_TRY(kiln_copy_columns(x[k], zw, wx, wy, offset));
        else if (dx[k]) KILN_TRY(kiln_copy_columns_back(z, dx[k], wx, wy, offset));
        offset += wx;
    }
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    return each_input(n, x, z, z, NULL);
}

static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    return each_input(n, x, dz, NULL, dx);
}

static kiln_status read_json(const kiln_json_layer *j, kiln_layer_config *c, int in_rank) {
    KILN_TRY(kiln_json_int(j, "axis", -1, -4, 3, &c->axis));
    if (c->axis == 0) return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "axis 0 (the batch) is not supported");
    return KILN_OK;
}

static void write_json(const kiln_layer_config *c, cJSON *o) { cJSON_AddNumberToObject(o, "axis", c->axis); }

const kiln_layer_desc kiln_layer_concatenate = {
    .keras_class = "Concatenate",
    .base_name = "concatenate",
    .infer = infer,
    .forward = forward,
    .backward = backward,
    .read_json = read_json,
    .write_json = write_json,
};
