/* add.c: Add, z = x0 + x1 + ... over two or more inputs of one shape (residual graphs); each
 * input's gradient is dz, which the graph hands on with no backward of the layer's
 * (grad_is_dz; with a fused ReLU, the graph masks dz first). */
#include "layer.h"

kiln_layer_config kiln_add_layer(void) { return kiln_layer_defaults(KILN_LAYER_ADD); }

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (n->n_in < 2) return kiln_error(KILN_ERR_INVALID_ARG, "Add needs at least 2 inputs (has %d)", n->n_in);
    for (int k = 1; k < n->n_in; k++) {
        bool same = in[k]->out_ndim == in[0]->out_ndim;
        for (int d = 0; same && d < in[0]->out_ndim; d++) same = in[k]->out_shape[d] == in[0]->out_shape[d];
        if (!same)
            return kiln_error(KILN_ERR_SHAPE, "Add inputs '%s' and '%s' differ in shape", in[0]->cfg.name, in[k]->cfg.name);
    }
    kiln_layer_same_shape(n, in[0]);
    return KILN_OK;
}

/* z = ((x0 + x1) + x2) + ...; with a ReLU fused after it (fuse.c), the last sum is relu'd in
 * its own pass (kiln_add_relu): the bits of the sums then kiln_relu */
static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    const kiln_tensor *a = x[0];
    for (int k = 1; k < n->n_in; k++, a = z)
        KILN_TRY(k == n->n_in - 1 && n->fused_relu ? kiln_add_relu(a, x[k], z) : kiln_add(a, x[k], z));
    return KILN_OK;
}

const kiln_layer_desc kiln_layer_add = {
    .keras_class = "Add",
    .base_name = "add",
    .infer = infer,
    .forward = forward,
    .grad_is_dz = true, /* the graph hands dz on (graph.c) */
};
