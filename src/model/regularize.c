/* regularize.c: Keras' weight regularizers in training (kernel_regularizer, bias_regularizer,
 * ...: kiln_regularizer per weight). Like Keras, the penalty of every trainable weight,
 * l1 * sum |w| + l2 * sum w^2 (no 1/2), is added to the loss fit and evaluate report, and its
 * gradient, l1 * sign(w) + 2 l2 w (sign(0) = 0), to the weight's gradient; a frozen weight adds
 * nothing (Keras counts trainable weights only). Computed on the device with three scratch
 * buffers of the largest regularized weight: sign(w) = step(w) - step(-w), each step a
 * relu_backward of a tensor of ones. */
#include <string.h>

#include "error.h"
#include "model_impl.h"

static bool regularized(const kiln_node *n, int w) {
    return (n->w_reg[w].l1 != 0.0 || n->w_reg[w].l2 != 0.0) && kiln_node_trainable(n, w) && n->g[w];
}

/* the scratch buffers and the scalars, made on first use, for the largest regularized weight */
static kiln_status prepare(kiln_model *m, int64_t most) {
    int64_t one = 1;
    if (m->reg_total && kiln_tensor_numel(m->reg_tmp[0]) >= most) return KILN_OK;
    for (int k = 0; k < 3; k++) {
        kiln_tensor_free(m->reg_tmp[k]);
        m->reg_tmp[k] = NULL;
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &most, "regularizer_scratch", &m->reg_tmp[k]));
    }
    if (!m->reg_sum) KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &one, "regularizer_sum", &m->reg_sum));
    if (!m->reg_total) KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &one, "regularization_loss", &m->reg_total));
    return KILN_OK;
}

/* buf's memory seen with w's (contiguous) shape */
static kiln_tensor like(const kiln_tensor *buf, const kiln_tensor *w) {
    kiln_tensor v = *buf;
    v.ndim = w->ndim;
    memcpy(v.shape, w->shape, sizeof v.shape);
    memcpy(v.stride, w->stride, sizeof v.stride);
    return v;
}

/* total += l2 * sum w^2, g += 2 l2 w */
static kiln_status l2_term(kiln_model *m, const kiln_tensor *w, kiln_tensor *g, double l2, bool grads) {
    kiln_tensor b = like(m->reg_tmp[1], w);
    KILN_TRY(kiln_mul(w, w, &b));
    KILN_TRY(kiln_sum(&b, (1u << w->ndim) - 1u, m->reg_sum));
    KILN_TRY(kiln_axpy((float)l2, m->reg_sum, m->reg_total));
    return grads ? kiln_axpy((float)(2.0 * l2), w, g) : KILN_OK;
}

/* total += l1 * (sum relu(w) + sum relu(-w)), g += l1 * (step(w) - step(-w)) */
static kiln_status l1_term(kiln_model *m, const kiln_tensor *w, kiln_tensor *g, double l1, bool grads) {
    kiln_tensor ones = like(m->reg_tmp[0], w), b = like(m->reg_tmp[1], w), neg = like(m->reg_tmp[2], w);
    unsigned all = (1u << w->ndim) - 1u;
    KILN_TRY(kiln_scale(w, -1.0f, &neg));
    for (int side = 0; side < 2; side++) {
        const kiln_tensor *x = side ? &neg : w;
        KILN_TRY(kiln_relu(x, &b));
        KILN_TRY(kiln_sum(&b, all, m->reg_sum));
        KILN_TRY(kiln_axpy((float)l1, m->reg_sum, m->reg_total));
        if (!grads) continue;
        KILN_TRY(kiln_fill(&ones, 1.0));
        KILN_TRY(kiln_relu_backward(x, &ones, &b));
        KILN_TRY(kiln_axpy(side ? (float)-l1 : (float)l1, &b, g));
    }
    return KILN_OK;
}

kiln_status kiln_model_regularize(kiln_model *m, bool grads, const kiln_tensor **total) {
    int64_t most = 0;
    *total = NULL;
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++)
            if (regularized(&m->nodes[i], w) && kiln_tensor_numel(m->nodes[i].w[w]) > most) most = kiln_tensor_numel(m->nodes[i].w[w]);
    if (!most) return KILN_OK;
    KILN_TRY(prepare(m, most));
    KILN_TRY(kiln_fill(m->reg_total, 0.0));
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++) {
            kiln_node *n = &m->nodes[i];
            if (!regularized(n, w)) continue;
            if (n->w_reg[w].l2 != 0.0) KILN_TRY(l2_term(m, n->w[w], n->g[w], n->w_reg[w].l2, grads));
            if (n->w_reg[w].l1 != 0.0) KILN_TRY(l1_term(m, n->w[w], n->g[w], n->w_reg[w].l1, grads));
        }
    *total = m->reg_total;
    return KILN_OK;
}
