/* plan.c: per-batch-size plans of a built model. Each node's activations (y, and z before its
 * activation when it has one) and their gradients are allocated once for the largest batch
 * used; a plan sees them through views shaped for its batch size, so the partial last batch of
 * an epoch allocates nothing on the device. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "layer.h"

/* the node's output shape with the batch axis first */
static void shape_of(const kiln_node *n, int batch, int *ndim, int64_t shape[4]) {
    *ndim = n->out_ndim + 1;
    shape[0] = batch;
    for (int d = 0; d < n->out_ndim; d++) shape[d + 1] = n->out_shape[d];
}

void kiln_model_free_plans(kiln_model *m) {
    for (int p = 0; p < m->n_plans; p++) {
        kiln_plan *pl = &m->plans[p];
        for (int i = 0; pl->v && i < m->n_nodes; i++) {
            kiln_node_views *v = &pl->v[i];
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

/* node buffers for `batch` examples (all plans are dropped when they grow); kiln_plan_bytes
 * (budget.c) counts them */
static kiln_status grow_buffers(kiln_model *m, int batch) {
    if (m->nodes[0].buf_batch >= batch) return KILN_OK;
    KILN_TRY(kiln_model_budget(m, m->be, kiln_model_slots_now(m), batch));
    kiln_model_free_plans(m);
    int64_t largest = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        kiln_tensor **bufs[4] = {&n->y_buf, &n->dy_buf, &n->dz_buf, &n->z_buf}; /* the first kiln_node_buffers */
        for (int b = 0; b < 4; b++) {
            kiln_tensor_free(*bufs[b]);
            *bufs[b] = NULL;
        }
        int64_t shape[4];
        int nd;
        shape_of(n, batch, &nd, shape);
        for (int b = 0; b < kiln_node_buffers(n); b++) KILN_TRY(kiln_tensor_new(m->be, KILN_F32, nd, shape, n->cfg.name, bufs[b]));
        n->buf_batch = batch;
        int64_t e = kiln_node_out_numel(n) * batch;
        largest = e > largest ? e : largest;
    }
    for (int k = 0; k < KILN_LAYER_MAX_INPUTS; k++) {
        kiln_tensor_free(m->scratch_buf[k]);
        m->scratch_buf[k] = NULL;
    }
    for (int k = 0; k < kiln_model_max_inputs(m); k++)
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &largest, "scratch", &m->scratch_buf[k]));
    return KILN_OK;
}

static kiln_status view(kiln_tensor *buf, int ndim, const int64_t *shape, kiln_tensor **out) {
    return kiln_tensor_view(buf, 0, ndim, shape, out);
}

/* the node whose y buffer holds n's output: a fused ReLU's is its BN's (fuse.c) */
static const kiln_node *y_owner(const kiln_model *m, const kiln_node *n) {
    return n->fused_into ? &m->nodes[n->fused_into] : n;
}

static kiln_tensor *dz_buf(const kiln_model *m, const kiln_node *n);

/* the buffer under node n's dy: a fused BN's is its ReLU's (fuse.c); an input's whose
 * gradient is its consumer's dz (grad_alias) is that dz's */
static kiln_tensor *dy_buf(const kiln_model *m, const kiln_node *n) {
    if (n->fused_relu) return dy_buf(m, &m->nodes[n->fused_relu]);
    if (n->grad_alias) return dz_buf(m, &m->nodes[n->grad_alias]);
    return n->dy_buf;
}

/* the buffer under node n's dz: its own when it keeps z, its own dy buffer when the graph
 * masks its fused ReLU's gradient into it (kiln_node_graph_masks), else its dy's */
static kiln_tensor *dz_buf(const kiln_model *m, const kiln_node *n) {
    if (n->dz_buf) return n->dz_buf;
    return kiln_node_graph_masks(n) ? n->dy_buf : dy_buf(m, n);
}

/* the views of node i for plan pl */
static kiln_status node_plan(kiln_model *m, kiln_plan *pl, int i) {
    kiln_node *n = &m->nodes[i];
    kiln_node_views *v = &pl->v[i];
    int64_t shape[4];
    int nd;
    shape_of(n, pl->batch, &nd, shape);
    /* a fused ReLU's output is its BN's; the BN's gradient is the ReLU's (fuse.c) */
    KILN_TRY(view(y_owner(m, n)->y_buf, nd, shape, &v->y));
    KILN_TRY(view(dy_buf(m, n), nd, shape, &v->dy));
    v->z = v->y;
    v->dz = v->dy;
    if (dz_buf(m, n) != dy_buf(m, n)) KILN_TRY(view(dz_buf(m, n), nd, shape, &v->dz));
    if (n->z_buf) KILN_TRY(view(n->z_buf, nd, shape, &v->z));
    else if (kiln_node_z_is_input(n)) KILN_TRY(view(y_owner(m, &m->nodes[n->in[0]])->y_buf, nd, shape, &v->z));
    for (int k = 0; k < KILN_LAYER_MAX_INPUTS && m->scratch_buf[k]; k++)
        KILN_TRY(view(m->scratch_buf[k], nd, shape, &v->scratch[k]));
    return KILN_OK;
}

/* the loss's tensors for plan pl: per-row losses, labels, dense targets */
static kiln_status loss_plan(kiln_model *m, kiln_plan *pl) {
    int64_t b = pl->batch;
    int64_t ys[4];
    int ynd;
    shape_of(&m->nodes[m->n_nodes - 1], pl->batch, &ynd, ys);
    static const char *const names[KILN_LOSS_ROW_TENSORS] = {"loss_rows", "rows_tmp", "zero_labels", "labels"};
    kiln_tensor **dst[KILN_LOSS_ROW_TENSORS] = {&pl->loss_rows, &pl->rows_tmp, &pl->zero_labels, &pl->labels};
    for (int k = 0; k < KILN_LOSS_ROW_TENSORS; k++) KILN_TRY(kiln_tensor_new(m->be, k < 2 ? KILN_F32 : KILN_I32, 1, &b, names[k], dst[k]));
    KILN_TRY(kiln_fill(pl->zero_labels, 0.0));
    return kiln_tensor_new(m->be, KILN_F32, ynd, ys, "targets", &pl->y_dense);
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
    if (m->n_plans == 0) kiln_model_fuse(m); /* every plan of the model sees the same graph */
    kiln_plan *pl = &m->plans[m->n_plans++];
    memset(pl, 0, sizeof *pl);
    pl->batch = batch;
    pl->v = calloc((size_t)m->n_nodes, sizeof *pl->v);
    if (!pl->v) return kiln_error(KILN_ERR_OOM, "planning model '%s': out of host memory", m->name);
    for (int i = 0; i < m->n_nodes; i++) KILN_TRY(node_plan(m, pl, i));
    KILN_TRY(loss_plan(m, pl));
    *out = pl;
    return KILN_OK;
}
