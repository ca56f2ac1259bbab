/* graph.c: running a built model: per-batch-size plans (views over buffers allocated once
 * for the largest batch), the forward pass, the loss, and reverse-mode autograd over the
 * layer graph. Gradients reaching one layer from several consumers are summed: the first
 * consumer (in reverse order) writes the layer's dy, the others write a scratch buffer that is
 * then added. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_impl.h"

static bool has_z(const kiln_node *n) {
    return n->cfg.activation != KILN_ACT_LINEAR &&
           (n->cfg.type == KILN_LAYER_CONV2D || n->cfg.type == KILN_LAYER_DENSE ||
            n->cfg.type == KILN_LAYER_ACTIVATION);
}

static kiln_status shape_of(const kiln_node *n, int batch, int *ndim, int64_t shape[4]) {
    *ndim = n->out_ndim + 1;
    shape[0] = batch;
    for (int d = 0; d < n->out_ndim; d++) shape[d + 1] = n->out_shape[d];
    return KILN_OK;
}

static int max_inputs(const kiln_model *m) {
    int k = 1;
    for (int i = 0; i < m->n_nodes; i++) k = m->nodes[i].n_in > k ? m->nodes[i].n_in : k;
    return k;
}

void kiln_model_free_plans(kiln_model *m) {
    for (int p = 0; p < m->n_plans; p++) {
        kiln_plan *pl = &m->plans[p];
        for (int i = 0; pl->v && i < m->n_nodes; i++) {
            node_views *v = &pl->v[i];
            if (v->z != v->y) kiln_tensor_free(v->z);
            if (v->dz != v->dy) kiln_tensor_free(v->dz);
            kiln_tensor_free(v->y);
            kiln_tensor_free(v->dy);
            for (int k = 0; k < KILN_LAYER_MAX_INPUTS; k++) kiln_tensor_free(v->scratch[k]);
        }
        free(pl->v);
        kiln_tensor_free(pl->loss_rows);
        kiln_tensor_free(pl->labels);
        kiln_tensor_free(pl->y_dense);
        kiln_tensor_free(pl->rows_tmp);
        kiln_tensor_free(pl->zero_labels);
        memset(pl, 0, sizeof *pl);
    }
    m->n_plans = 0;
}

/* node buffers for `batch` examples (all plans are dropped when they grow) */
static kiln_status grow_buffers(kiln_model *m, int batch) {
    if (m->nodes[0].buf_batch >= batch) return KILN_OK;
    kiln_model_free_plans(m);
    int64_t largest = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        kiln_tensor **bufs[4] = {&n->y_buf, &n->z_buf, &n->dy_buf, &n->dz_buf};
        for (int b = 0; b < 4; b++) {
            kiln_tensor_free(*bufs[b]);
            *bufs[b] = NULL;
        }
        int64_t shape[4];
        int nd;
        shape_of(n, batch, &nd, shape);
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, nd, shape, n->cfg.name, &n->y_buf));
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, nd, shape, n->cfg.name, &n->dy_buf));
        if (has_z(n)) {
            KILN_TRY(kiln_tensor_new(m->be, KILN_F32, nd, shape, n->cfg.name, &n->z_buf));
            KILN_TRY(kiln_tensor_new(m->be, KILN_F32, nd, shape, n->cfg.name, &n->dz_buf));
        }
        n->buf_batch = batch;
        int64_t e = kiln_node_out_numel(n) * batch;
        largest = e > largest ? e : largest;
    }
    for (int k = 0; k < KILN_LAYER_MAX_INPUTS; k++) {
        kiln_tensor_free(m->scratch_buf[k]);
        m->scratch_buf[k] = NULL;
    }
    for (int k = 0; k < max_inputs(m); k++)
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &largest, "scratch", &m->scratch_buf[k]));
    return KILN_OK;
}

static kiln_status view(kiln_tensor *buf, int ndim, const int64_t *shape, kiln_tensor **out) {
    return kiln_tensor_view(buf, 0, ndim, shape, out);
}

kiln_status kiln_model_plan(kiln_model *m, int batch, kiln_plan **out) {
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "model '%s' is not built", m->name);
    if (batch < 1) return kiln_error(KILN_ERR_INVALID_ARG, "batch size must be >= 1 (is %d)", batch);
    for (int p = 0; p < m->n_plans; p++)
        if (m->plans[p].batch == batch) {
            *out = &m->plans[p];
            return KILN_OK;
        }
    KILN_TRY(grow_buffers(m, batch));
    if (m->n_plans == KILN_MAX_PLANS) kiln_model_free_plans(m); /* rare: many batch sizes */
    kiln_plan *pl = &m->plans[m->n_plans++];
    memset(pl, 0, sizeof *pl);
    pl->batch = batch;
    pl->v = calloc((size_t)m->n_nodes, sizeof *pl->v);
    if (!pl->v) return kiln_error(KILN_ERR_OOM, "planning model '%s': out of host memory", m->name);
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        node_views *v = &pl->v[i];
        int64_t shape[4];
        int nd;
        shape_of(n, batch, &nd, shape);
        KILN_TRY(view(n->y_buf, nd, shape, &v->y));
        KILN_TRY(view(n->dy_buf, nd, shape, &v->dy));
        v->z = v->y;
        v->dz = v->dy;
        if (n->z_buf) {
            KILN_TRY(view(n->z_buf, nd, shape, &v->z));
            KILN_TRY(view(n->dz_buf, nd, shape, &v->dz));
        }
        for (int k = 0; k < KILN_LAYER_MAX_INPUTS && m->scratch_buf[k]; k++)
            KILN_TRY(view(m->scratch_buf[k], nd, shape, &v->scratch[k]));
    }
    int64_t b = batch;
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    int64_t ys[4];
    int ynd;
    shape_of(last, batch, &ynd, ys);
    KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &b, "loss_rows", &pl->loss_rows));
    KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &b, "rows_tmp", &pl->rows_tmp));
    KILN_TRY(kiln_tensor_new(m->be, KILN_I32, 1, &b, "zero_labels", &pl->zero_labels));
    KILN_TRY(kiln_fill(pl->zero_labels, 0.0));
    KILN_TRY(kiln_tensor_new(m->be, KILN_I32, 1, &b, "labels", &pl->labels));
    KILN_TRY(kiln_tensor_new(m->be, KILN_F32, ynd, ys, "targets", &pl->y_dense));
    *out = pl;
    return KILN_OK;
}

/* true when the loss takes the last layer's logits (softmax fused into the cross-entropy) */
static bool fused_softmax(const kiln_model *m) {
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    return m->compile.loss != KILN_LOSS_MEAN_SQUARED_ERROR &&
           (last->cfg.activation == KILN_ACT_SOFTMAX || m->compile.from_logits);
}

static kiln_status need_fused(const kiln_model *m, const char *loss) {
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    if (fused_softmax(m)) return KILN_OK;
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "%s from probabilities needs a softmax on the last layer (layer '%s' has activation %s); "
                      "use from_logits or a softmax", loss, last->cfg.name, kiln_activation_name(last->cfg.activation));
}

/* categorical cross-entropy from logits z (B, K) and target distributions t (rows sum to 1,
 * checked by fit): loss = logsumexp(z) - sum_j t_j z_j, dz = (softmax(z) - t) / B.
 * logsumexp comes from the sparse op with label 0: (lse - z_0) + z_0. */
static kiln_status categorical(kiln_plan *p, node_views *v, kiln_tensor *probs, bool need_grad) {
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


kiln_status kiln_model_forward(kiln_model *m, kiln_plan *p, bool training, bool loss_follows, uint64_t step_seed) {
    int last = loss_follows && fused_softmax(m) ? m->n_nodes - 1 : -1; /* its softmax comes with the loss */
    for (int i = 1; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        const kiln_tensor *x[KILN_LAYER_MAX_INPUTS] = {0};
        for (int k = 0; k < n->n_in; k++) x[k] = p->v[n->in[k]].y;
        kiln_status s = n->ops->forward(n, x, p->v[i].z, training, step_seed);
        if (s == KILN_OK && p->v[i].z != p->v[i].y && i != last)
            s = kiln_activation_forward(n->cfg.activation, p->v[i].z, p->v[i].y);
        if (s != KILN_OK) return kiln_error_context(s, "layer '%s' forward", n->cfg.name);
    }
    return KILN_OK;
}

kiln_status kiln_model_loss(kiln_model *m, kiln_plan *p, bool need_grad) {
    int last = m->n_nodes - 1;
    node_views *v = &p->v[last];
    float inv_b = 1.0f / (float)p->batch;
    switch (m->compile.loss) {
    case KILN_LOSS_CATEGORICAL_CROSSENTROPY:
        KILN_TRY(need_fused(m, "categorical_crossentropy"));
        return categorical(p, v, v->y != v->z ? v->y : v->scratch[0], need_grad);
    case KILN_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
        KILN_TRY(need_fused(m, "sparse_categorical_crossentropy"));
        {
            /* probabilities into y (a separate buffer when y holds the logits) */
            kiln_tensor *probs = v->y != v->z ? v->y : v->scratch[0];
            KILN_TRY(kiln_softmax_xent(v->z, p->labels, probs, p->loss_rows));
            if (need_grad) KILN_TRY(kiln_softmax_xent_backward(probs, p->labels, inv_b, v->dz));
        }
        return KILN_OK;
    case KILN_LOSS_MEAN_SQUARED_ERROR: {
        /* loss row = mean over the outputs of (y - t)^2; dy = 2 (y - t) / (batch * outputs) */
        kiln_tensor *diff = v->scratch[0];
        int64_t k = kiln_node_out_numel(&m->nodes[last]);
        unsigned axes = 0;
        for (int d = 1; d < v->y->ndim; d++) axes |= 1u << d;
        KILN_TRY(kiln_sub(v->y, p->y_dense, diff));
        KILN_TRY(kiln_mul(diff, diff, v->dy));
        KILN_TRY(kiln_mean(v->dy, axes, p->loss_rows));
        if (!need_grad) return KILN_OK;
        KILN_TRY(kiln_scale(diff, 2.0f * inv_b / (float)k, v->dy));
        return kiln_activation_backward(m->nodes[last].cfg.activation, v->z, v->y, v->dy, v->dz);
    }
    default:
        return kiln_error(KILN_ERR_UNSUPPORTED, "loss %d is not supported", (int)m->compile.loss);
    }
}

kiln_status kiln_model_backward(kiln_model *m, kiln_plan *p, uint64_t step_seed) {
    bool written[4096];
    if (m->n_nodes > 4096) return kiln_error(KILN_ERR_UNSUPPORTED, "more than 4096 layers");
    memset(written, 0, sizeof(bool) * (size_t)m->n_nodes);
    for (int i = m->n_nodes - 1; i >= 1; i--) {
        kiln_node *n = &m->nodes[i];
        node_views *v = &p->v[i];
        if (!n->upstream_trains) continue;
        kiln_status s = KILN_OK;
        if (i != m->n_nodes - 1 && v->dz != v->dy) /* the last layer's dz comes from the loss */
            s = kiln_activation_backward(n->cfg.activation, v->z, v->y, v->dy, v->dz);
        const kiln_tensor *x[KILN_LAYER_MAX_INPUTS] = {0};
        kiln_tensor *dx[KILN_LAYER_MAX_INPUTS] = {0};
        bool add_after[KILN_LAYER_MAX_INPUTS] = {0};
        for (int k = 0; k < n->n_in; k++) {
            int pi = n->in[k];
            x[k] = p->v[pi].y;
            if (m->nodes[pi].upstream_trains && !written[pi]) {
                dx[k] = p->v[pi].dy;
                written[pi] = true;
            } else if (m->nodes[pi].upstream_trains || n->ops->needs_dx) {
                /* scratch shaped like the input */
                kiln_tensor *sc = p->v[pi].scratch[k];
                dx[k] = sc;
                add_after[k] = m->nodes[pi].upstream_trains;
            }
        }
        if (s == KILN_OK) s = n->ops->backward(n, x, v->z, v->dz, dx, step_seed);
        for (int k = 0; s == KILN_OK && k < n->n_in; k++)
            if (add_after[k]) s = kiln_add(p->v[n->in[k]].dy, dx[k], p->v[n->in[k]].dy);
        if (s != KILN_OK) return kiln_error_context(s, "layer '%s' backward", n->cfg.name);
    }
    return KILN_OK;
}
