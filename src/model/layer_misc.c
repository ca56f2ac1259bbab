/* layer_misc.c: the layers without weights that move or mix activations: Input, Flatten,
 * Dropout, Activation, Add. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

static kiln_status no_init(kiln_node *n, uint64_t seed) { return KILN_OK; }

static void same_shape(kiln_node *n, const kiln_node *in) {
    n->out_ndim = in->out_ndim;
    memcpy(n->out_shape, in->out_shape, sizeof n->out_shape);
}

/* ---- Input: the batch is copied into its output by the graph ---- */

static kiln_status input_infer(kiln_node *n, const kiln_node *const *in) {
    const kiln_layer_config *c = &n->cfg;
    if (c->input_ndim < 1 || c->input_ndim > 3)
        return kiln_error(KILN_ERR_SHAPE, "an Input has 1 to 3 axes after the batch (has %d)", c->input_ndim);
    for (int d = 0; d < c->input_ndim; d++)
        if (c->input_shape[d] < 1)
            return kiln_error(KILN_ERR_SHAPE, "Input axis %d has size %lld", d + 1, (long long)c->input_shape[d]);
    n->out_ndim = c->input_ndim;
    memcpy(n->out_shape, c->input_shape, sizeof n->out_shape);
    return KILN_OK;
}

static kiln_status none_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                bool training, uint64_t seed) {
    return KILN_OK;
}

static kiln_status none_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                 const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    return KILN_OK;
}

const layer_ops kiln_layer_input_ops = {input_infer, no_init, none_forward, none_backward, 0, false};

/* ---- identity-shaped layers: Flatten (a reshape), Activation (the graph applies it) ---- */

static kiln_status flatten_infer(kiln_node *n, const kiln_node *const *in) {
    n->out_ndim = 1;
    n->out_shape[0] = kiln_node_out_numel(in[0]);
    return KILN_OK;
}

static kiln_status copy_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                bool training, uint64_t seed) {
    kiln_tensor v = *x[0]; /* the same memory seen with z's shape */
    KILN_TRY(kiln_tensor_reshape(&v, z->ndim, z->shape));
    return kiln_copy(&v, z);
}

static kiln_status copy_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                 const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    if (!dx[0]) return KILN_OK;
    kiln_tensor v = *dz;
    KILN_TRY(kiln_tensor_reshape(&v, dx[0]->ndim, dx[0]->shape));
    return kiln_copy(&v, dx[0]);
}

const layer_ops kiln_layer_flatten_ops = {flatten_infer, no_init, copy_forward, copy_backward, 0, false};

static kiln_status activation_infer(kiln_node *n, const kiln_node *const *in) {
    same_shape(n, in[0]);
    return KILN_OK;
}

const layer_ops kiln_layer_activation_ops = {activation_infer, no_init, copy_forward, copy_backward, 0, false};

/* ---- Dropout: inverted dropout in training, the identity in inference ---- */

static kiln_status dropout_infer(kiln_node *n, const kiln_node *const *in) {
    if (!(n->cfg.rate >= 0.0f && n->cfg.rate < 1.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "Dropout rate must be in [0, 1) (is %g)", (double)n->cfg.rate);
    same_shape(n, in[0]);
    return KILN_OK;
}

static uint64_t dropout_seed(const kiln_node *n, uint64_t step_seed) {
    return (n->cfg.seed ? n->cfg.seed : step_seed) * 0x9e3779b97f4a7c15ull + (uint64_t)n->id;
}

static kiln_status dropout_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                                   bool training, uint64_t seed) {
    if (!training || n->cfg.rate == 0.0f) return kiln_copy(x[0], z);
    return kiln_dropout(x[0], n->cfg.rate, dropout_seed(n, seed), z);
}

static kiln_status dropout_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                    const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    if (!dx[0]) return KILN_OK;
    if (n->cfg.rate == 0.0f) return kiln_copy(dz, dx[0]);
    return kiln_dropout_backward(dz, n->cfg.rate, dropout_seed(n, seed), dx[0]);
}

const layer_ops kiln_layer_dropout_ops = {dropout_infer, no_init, dropout_forward, dropout_backward, 0, false};

/* ---- Add: z = x0 + x1 + ...; each input's gradient is dz ---- */

static kiln_status add_infer(kiln_node *n, const kiln_node *const *in) {
    if (n->n_in < 2) return kiln_error(KILN_ERR_INVALID_ARG, "Add needs at least 2 inputs (has %d)", n->n_in);
    for (int k = 1; k < n->n_in; k++) {
        bool same = in[k]->out_ndim == in[0]->out_ndim;
        for (int d = 0; same && d < in[0]->out_ndim; d++) same = in[k]->out_shape[d] == in[0]->out_shape[d];
        if (!same)
            return kiln_error(KILN_ERR_SHAPE, "Add inputs '%s' and '%s' differ in shape", in[0]->cfg.name, in[k]->cfg.name);
    }
    same_shape(n, in[0]);
    return KILN_OK;
}

static kiln_status add_forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z,
                               bool training, uint64_t seed) {
    KILN_TRY(kiln_add(x[0], x[1], z));
    for (int k = 2; k < n->n_in; k++) KILN_TRY(kiln_add(z, x[k], z));
    return KILN_OK;
}

static kiln_status add_backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z,
                                const kiln_tensor *dz, kiln_tensor *const *dx, uint64_t seed) {
    for (int k = 0; k < n->n_in; k++)
        if (dx[k]) KILN_TRY(kiln_copy(dz, dx[k]));
    return KILN_OK;
}

const layer_ops kiln_layer_add_ops = {add_infer, no_init, add_forward, add_backward, 0, false};
