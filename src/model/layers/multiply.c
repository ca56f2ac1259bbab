/* multiply.c: Multiply, z = x0 x1 ... (f32, in input order, as Keras): two or more inputs of one
 * shape, or two where one is (1, ..., 1, C) against the other's (..., C) (Keras' broadcast in
 * squeeze-and-excitation blocks: a gate per example and channel, kiln_mul_channels). Input k's
 * gradient is dz times the product of the others; a gate's is that summed over the other's
 * positions. */
#include "layer.h"

kiln_layer_config kiln_multiply_layer(void) { return kiln_layer_defaults(KILN_LAYER_MULTIPLY); }

static bool same_shape(const kiln_node *a, const kiln_node *b) {
    bool same = a->out_ndim == b->out_ndim;
    for (int d = 0; same && d < a->out_ndim; d++) same = a->out_shape[d] == b->out_shape[d];
    return same;
}

/* g is (1, ..., 1, C) against x's (..., C) */
static bool is_gate(const kiln_node *g, const kiln_node *x) {
    int nd = x->out_ndim;
    bool gate = g->out_ndim == nd && nd >= 2 && g->out_shape[nd - 1] == x->out_shape[nd - 1];
    for (int d = 0; gate && d < nd - 1; d++) gate = g->out_shape[d] == 1;
    return gate && !same_shape(g, x);
}

/* the broadcast input's index (a gate), or -1 when every input has one shape */
static int gate_of(const kiln_node *n, const kiln_node *const *in) {
    if (n->n_in == 2 && is_gate(in[0], in[1])) return 0;
    if (n->n_in == 2 && is_gate(in[1], in[0])) return 1;
    return -1;
}

static kiln_status infer(kiln_node *n, const kiln_node *const *in) {
    if (n->n_in < 2) return kiln_error(KILN_ERR_INVALID_ARG, "Multiply needs at least 2 inputs (has %d)", n->n_in);
    int g = gate_of(n, in);
    for (int k = 1; g < 0 && k < n->n_in; k++)
        if (!same_shape(in[k], in[0]))
            return kiln_error(KILN_ERR_SHAPE, "Multiply inputs '%s' and '%s' differ in shape (kiln broadcasts only a "
                              "(1, ..., 1, C) input against one other)", in[0]->cfg.name, in[k]->cfg.name);
    kiln_layer_same_shape(n, in[g == 0 ? 1 : 0]);
    return KILN_OK;
}

/* the gate among two inputs (its index), or -1 when the inputs have one shape */
static int gate_index(const kiln_node *n, const kiln_tensor *const *x) {
    if (n->n_in != 2 || kiln_tensor_same_shape(x[0], x[1])) return -1;
    int64_t a = 1, b = 1; /* the sizes per example (a batch may be empty) */
    for (int d = 1; d < x[0]->ndim; d++) a *= x[0]->shape[d];
    for (int d = 1; d < x[1]->ndim; d++) b *= x[1]->shape[d];
    return a < b ? 0 : 1;
}

static kiln_status forward(kiln_node *n, const kiln_tensor *const *x, kiln_tensor *z, bool training, uint64_t seed) {
    int g = gate_index(n, x);
    if (g >= 0) return kiln_mul_channels(x[1 - g], x[g], z); /* one product: the order does not matter */
    KILN_TRY(kiln_mul(x[0], x[1], z));
    for (int k = 2; k < n->n_in; k++) KILN_TRY(kiln_mul(z, x[k], z));
    return KILN_OK;
}

/* the gate's gradient: dz * x summed over x's positions (in dx_x, given as scratch: needs_dx),
 * then x's: dz * gate */
static kiln_status backward_gate(const kiln_tensor *x, const kiln_tensor *gate, const kiln_tensor *dz, kiln_tensor *dx,
                                 kiln_tensor *dgate) {
    if (dgate) {
        unsigned axes = 0;
        for (int d = 1; d < x->ndim - 1; d++) axes |= 1u << d;
        KILN_TRY(kiln_mul(dz, x, dx));
        KILN_TRY(kiln_sum(dx, axes, dgate));
    }
    return kiln_mul_channels(dz, gate, dx);
}

/* dx[k] = dz x0 ... (x[k] left out) ..., in input order */
static kiln_status backward(kiln_node *n, const kiln_tensor *const *x, const kiln_tensor *z, const kiln_tensor *dz,
                            kiln_tensor *const *dx, uint64_t seed) {
    int g = gate_index(n, x);
    if (g >= 0) return backward_gate(x[1 - g], x[g], dz, dx[1 - g], dx[g]);
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
    .needs_dx = true, /* a gate's gradient is summed from scratch the size of the other input */
    .infer = infer,
    .forward = forward,
    .backward = backward,
};
