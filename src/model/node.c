/* node.c: what the model, its plans, the optimizer and the layers ask of one node (one layer of
 * a model): its output size, its weights' sizes and which of them train, its activation
 * buffers (what plan.c allocates and budget.c counts). */
#include <stdio.h>

#include "checked.h"
#include "layer.h"

/* The sizes below are products of shapes that kiln_node_check_sizes checked when the model's
 * shapes were inferred (the output per example, each weight, their sum), so they cannot
 * overflow. */

int64_t kiln_node_out_numel(const kiln_node *n) {
    int64_t k = 1;
    for (int i = 0; i < n->out_ndim; i++) k *= n->out_shape[i];
    return k;
}

bool kiln_node_trainable(const kiln_node *n, int w) { return n->w_trainable[w] && n->cfg.trainable; }

int64_t kiln_node_weight_numel(const kiln_node *n, int w) {
    int64_t k = 1;
    for (int d = 0; d < n->w_ndim[w]; d++) k *= n->w_shape[w][d];
    return k;
}

void kiln_node_param_counts(const kiln_node *n, int64_t *total, int64_t *trainable) {
    *total = *trainable = 0;
    for (int w = 0; w < n->n_w; w++) {
        *total += kiln_node_weight_numel(n, w);
        if (kiln_node_trainable(n, w)) *trainable += kiln_node_weight_numel(n, w);
    }
}

bool kiln_node_has_z(const kiln_node *n) { return n->desc->has_activation && n->cfg.activation != KILN_ACT_LINEAR; }

bool kiln_node_z_is_input(const kiln_node *n) { return n->desc->passes_through && n->n_in == 1 && kiln_node_has_z(n); }

bool kiln_node_graph_masks(const kiln_node *n) { return n->fused_relu && n->desc->grad_is_dz; }

int kiln_node_buffers(const kiln_node *n) { return kiln_node_has_z(n) ? (kiln_node_z_is_input(n) ? 3 : 4) : 2; }

int kiln_model_max_inputs(const kiln_model *m) {
    int k = 1;
    for (int i = 0; i < m->n_nodes; i++) k = m->nodes[i].n_in > k ? m->nodes[i].n_in : k;
    return k;
}

kiln_status kiln_node_check_sizes(const kiln_node *n, int64_t *params) {
    KILN_TRY(kiln_shape_size("output", n->out_ndim, n->out_shape, sizeof(float), NULL, NULL));
    int64_t total = 0;
    for (int w = 0; w < n->n_w; w++) {
        char what[KILN_NAME_MAX * 2 + 16];
        int64_t c;
        snprintf(what, sizeof what, "weight '%s'", n->w_name[w]);
        KILN_TRY(kiln_shape_size(what, n->w_ndim[w], n->w_shape[w], sizeof(float), &c, NULL));
        if (!kiln_add_i64(total, c, &total))
            return kiln_error(KILN_ERR_SHAPE, "its parameter count overflows 64 bits");
    }
    *params = total;
    return KILN_OK;
}
