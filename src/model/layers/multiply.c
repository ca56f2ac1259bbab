/* multiply.c: Multiply, z = x0 x1 ... over two or more inputs of one shape (f32, in input
 * order, as Keras); input k's gradient is dz times the product of the other inputs. */
#include "layer.h"

kiln_layer_config kiln_multiply_layer(void) { return kiln_layer_defaults(KILN_LAYER_MULTIPLY); }

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (n->n_in < 2) return kiln_error(KILN_ERR_INVALID_ARG, "Multiply needs at least 2 inputs (has %d)", n->n_in);
    for (int k = 1; k < n->n_in; k++) {
        bool same = in[k]->out_ndim == in[0]->out_ndim;
        for (int d = 0; same && d < in[0]->out_ndim; d++) same = in[k]->out_shape[d] == in[0]->out_shape[d];
        if (!same)
            return kiln_error(KILN_ERR_SHAPE, "Multiply inputs '%s' and '%s' differ in shape (broadcasting is not "
                              "supported)", in[0]->cfg.name, in[k]->cfg.name);
    }
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    KILN_TRY(kiln_mul(x[0], x[1], z));
    for (int k = 2; k < n->n_in; k++) KILN_TRY(kiln_mul(z, x[k], z));
    return KILN_OK;
}

/* dx[k] = dz x0 ... (x[k] left out) ..., in input order */
static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    for (int k = 0; k < n->n_in; k++) {
        if (!dx[k]) continue;
        const kiln_tensor *acc = dz;
        for (int j = 0; j < n->n_in; j++)
            if (j != k) {
                KILN_TRY(kiln_mul(acc, x[j], dx[k]));
                acc = dx[k];
            }
    }
    return KILN_OK;
}

const kiln_layer_desc kiln_layer_multiply = {
    .keras_class = "Multiply",
    .base_name = "multiply",
    .infer = infer,
    .forward = forward,
    .backward = backward,
};
