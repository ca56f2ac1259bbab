/* loss.c: the loss of a plan's batch, one value per row, and its gradient dz at the last
 * layer. A cross-entropy takes the last layer's logits: the softmax is fused into it (stable,
 * and the probabilities still come out in y), so a last softmax is never differentiated on its
 * own. */
#include "error.h"
#include "model_impl.h"

bool kiln_model_fuses_softmax(const kiln_model *m) {
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    return m->compile.loss != KILN_LOSS_MEAN_SQUARED_ERROR &&
           (last->cfg.activation == KILN_ACT_SOFTMAX || m->compile.from_logits);
}

kiln_status kiln_model_check_loss(const kiln_model *m) {
    if (!m || !m->compiled) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_check_loss: the model is NULL or not compiled");
    if (m->compile.loss == KILN_LOSS_MEAN_SQUARED_ERROR) return KILN_OK;
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    if (kiln_model_fuses_softmax(m)) return KILN_OK;
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "%s from probabilities needs a softmax on the last layer (layer '%s' has activation %s); "
                      "use from_logits or a softmax",
                      m->compile.loss == KILN_LOSS_CATEGORICAL_CROSSENTROPY ? "categorical_crossentropy" : "sparse_categorical_crossentropy",
                      last->cfg.name, kiln_activation_name(last->cfg.activation));
}

/* categorical cross-entropy from logits z (B, K) and target distributions t (rows sum to 1,
 * checked by fit): loss = logsumexp(z) - sum_j t_j z_j, dz = (softmax(z) - t) / B.
 * logsumexp comes from the sparse op with label 0: (lse - z_0) + z_0. */
static kiln_status categorical(kiln_plan *p, kiln_node_views *v, kiln_tensor *probs, bool need_grad) {
    int64_t k = v->z->shape[v->z->ndim - 1];
    kiln_tensor z0 = *v->z; /* column 0 of z: a strided (B,) view */
    z0.ndim = 1;
    z0.shape[0] = p->batch;
    z0.stride[0] = k;
    z0.shape[1] = z0.shape[2] = z0.shape[3] = 1;
    KILN_TRY(kiln_softmax_xent(v->z, p->zero_labels, probs, p->loss_rows));
    KILN_TRY(kiln_copy(&z0, p->rows_tmp));
    KILN_TRY(kiln_add(p->loss_rows, p->rows_tmp, p->loss_rows));
    KILN_TRY(kiln_mul(v->z, p->y_dense, v->dz)); /* dz as room for t * z */
    KILN_TRY(kiln_sum(v->dz, 1u << (v->z->ndim - 1), p->rows_tmp));
    KILN_TRY(kiln_sub(p->loss_rows, p->rows_tmp, p->loss_rows));
    if (!need_grad) return KILN_OK;
    KILN_TRY(kiln_sub(probs, p->y_dense, v->dz));
    return kiln_scale(v->dz, 1.0f / (float)p->batch, v->dz);
}

/* sparse categorical cross-entropy from logits and class labels */
static kiln_status sparse(kiln_plan *p, kiln_node_views *v, kiln_tensor *probs, bool need_grad) {
    KILN_TRY(kiln_softmax_xent(v->z, p->labels, probs, p->loss_rows));
    return need_grad ? kiln_softmax_xent_backward(probs, p->labels, 1.0f / (float)p->batch, v->dz) : KILN_OK;
}

/* sparse labels with Keras' label smoothing: the categorical loss against the targets
 * (1 - ls) onehot + ls / K, made in y_dense as -(1 - ls) (c - onehot) with c = -ls / (K (1 - ls))
 * (softmax_xent_backward of a tensor of c, dz as its room) */
static kiln_status smoothed(kiln_plan *p, kiln_node_views *v, kiln_tensor *probs, double ls, bool need_grad) {
    double k = (double)v->z->shape[v->z->ndim - 1];
    KILN_TRY(kiln_fill(v->dz, -ls / (k * (1.0 - ls))));
    KILN_TRY(kiln_softmax_xent_backward(v->dz, p->labels, (float)-(1.0 - ls), p->y_dense));
    return categorical(p, v, probs, need_grad);
}

/* loss row = mean over the outputs of (y - t)^2; dy = 2 (y - t) / (batch * outputs), then
 * through the last layer's activation */
static kiln_status mean_squared(const kiln_node *last, kiln_plan *p, kiln_node_views *v, bool need_grad) {
    kiln_tensor *diff = v->scratch[0];
    int64_t k = kiln_node_out_numel(last);
    unsigned axes = 0;
    for (int d = 1; d < v->y->ndim; d++) axes |= 1u << d;
    KILN_TRY(kiln_sub(v->y, p->y_dense, diff));
    KILN_TRY(kiln_mul(diff, diff, v->dy));
    KILN_TRY(kiln_mean(v->dy, axes, p->loss_rows));
    if (!need_grad) return KILN_OK;
    KILN_TRY(kiln_scale(diff, 2.0f * (1.0f / (float)p->batch) / (float)k, v->dy));
    return kiln_activation_backward(last->cfg.activation, v->z, v->y, v->dy, v->dz);
}

kiln_status kiln_model_loss(kiln_model *m, kiln_plan *p, bool need_grad) {
    int last = m->n_nodes - 1;
    kiln_node_views *v = &p->v[last];
    /* the probabilities go into y (a separate buffer when y holds the logits) */
    kiln_tensor *probs = v->y != v->z ? v->y : v->scratch[0];
    switch (m->compile.loss) {
    case KILN_LOSS_CATEGORICAL_CROSSENTROPY:
        KILN_TRY(kiln_model_check_loss(m));
        if (m->label_smoothing > 0.0)
            return kiln_error(KILN_ERR_UNSUPPORTED, "label smoothing with categorical_crossentropy: smooth the targets themselves");
        return categorical(p, v, probs, need_grad);
    case KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
        KILN_TRY(kiln_model_check_loss(m));
        if (m->label_smoothing > 0.0) return smoothed(p, v, probs, m->label_smoothing, need_grad);
        return sparse(p, v, probs, need_grad);
    case KILN_LOSS_MEAN_SQUARED_ERROR: return mean_squared(&m->nodes[last], p, v, need_grad);
    default: return kiln_error(KILN_ERR_UNSUPPORTED, "loss %d is not supported", (int)m->compile.loss);
    }
}
