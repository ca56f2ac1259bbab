/* graph.c: the forward pass and reverse-mode autograd over a built model's layer graph, on the
 * tensors of one plan (plan.c). Gradients reaching one layer from several consumers are
 * summed: the first consumer (in reverse order) writes the layer's dy, the others write a
 * scratch buffer that is then added. A layer whose inputs' gradient is dz itself (Add) has no
 * backward: its dz is added straight into a written dy, or is the dy (plan.c). After each
 * node's backward, m->grads_ready (when set: fit's data-parallel gradient buckets) is told its
 * weight gradients are written. */
#include "error.h"
#include "layer.h"

kiln_status kiln_model_forward(kiln_model *m, kiln_plan *p, bool training, bool loss_follows, uint64_t step_seed) {
    int last = loss_follows && kiln_model_fuses_softmax(m) ? m->n_nodes - 1 : -1; /* its softmax comes with the loss */
    for (int i = 1; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        if (n->fused_into) continue; /* a ReLU its BN or Add ran (fuse.c) */
        const kiln_tensor *x[KILN_LAYER_MAX_INPUTS] = {0};
        for (int k = 0; k < n->n_in; k++) x[k] = p->v[n->in[k]].y;
        kiln_status s = kiln_node_z_is_input(n) ? KILN_OK : n->desc->forward(n, x, p->v[i].z, training, step_seed);
        if (s == KILN_OK && p->v[i].z != p->v[i].y && i != last)
            s = kiln_activation_forward(n->cfg.activation, p->v[i].z, p->v[i].y);
        if (s != KILN_OK) return kiln_error_context(s, "layer '%s' forward", n->cfg.name);
    }
    return KILN_OK;
}

/* where node n's backward writes the gradient of each input: the input's dy when n is the
 * first to reach it, else a scratch buffer added to dy afterwards (add_after); none when
 * nothing upstream trains, unless the layer wants every dx */
static void input_grads(kiln_model *m, kiln_plan *p, const kiln_node *n, kiln_tensor **dx, bool *add_after) {
    for (int k = 0; k < n->n_in; k++) {
        kiln_node *in = &m->nodes[n->in[k]];
        if (in->upstream_trains && !in->dy_written) {
            dx[k] = p->v[in->id].dy;
            in->dy_written = true;
        } else if (in->upstream_trains || n->desc->needs_dx) {
            dx[k] = p->v[in->id].scratch[k]; /* scratch shaped like the input */
            add_after[k] = in->upstream_trains;
        }
    }
}

/* the backward of a layer whose inputs' gradient is dz itself (grad_is_dz: Add): dz handed to
 * each input that trains upstream: nothing to do where the input's dy is dz (grad_alias,
 * plan.c), else copied into a gradient not yet written or added into one written */
static kiln_status pass_dz(kiln_model *m, kiln_plan *p, const kiln_node *n) {
    const kiln_tensor *dz = p->v[n->id].dz;
    for (int k = 0; k < n->n_in; k++) {
        kiln_node *in = &m->nodes[n->in[k]];
        kiln_tensor *dy = p->v[in->id].dy;
        if (!in->upstream_trains) continue;
        kiln_status s = in->dy_written ? kiln_add(dy, dz, dy) : dy->data == dz->data ? KILN_OK : kiln_copy(dz, dy);
        in->dy_written = true;
        KILN_TRY(s);
    }
    return KILN_OK;
}

kiln_status kiln_model_backward(kiln_model *m, kiln_plan *p, uint64_t step_seed) {
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].dy_written = false;
    for (int i = m->n_nodes - 1; i >= 1; i--) {
        kiln_node *n = &m->nodes[i];
        kiln_node_views *v = &p->v[i];
        if (!n->upstream_trains || n->fused_into) continue; /* fused: its BN or the graph (Add) masks */
        const kiln_tensor *x[KILN_LAYER_MAX_INPUTS] = {0};
        kiln_tensor *dx[KILN_LAYER_MAX_INPUTS] = {0};
        bool add_after[KILN_LAYER_MAX_INPUTS] = {0};
        for (int k = 0; k < n->n_in; k++) x[k] = p->v[n->in[k]].y;
        if (!n->desc->grad_is_dz) input_grads(m, p, n, dx, add_after);
        kiln_status s = KILN_OK;
        bool last = i == m->n_nodes - 1; /* the last layer's dz comes from the loss */
        if (kiln_node_z_is_input(n) && !last) { /* the activation's gradient is dx */
            if (dx[0]) s = kiln_activation_backward(n->cfg.activation, v->z, v->y, v->dy, dx[0]);
        } else {
            if (!last && kiln_node_graph_masks(n)) s = kiln_model_fused_relu_backward(m, n, v->y, v->dy, v->dz);
            else if (!last && v->dz != v->dy) s = kiln_activation_backward(n->cfg.activation, v->z, v->y, v->dy, v->dz);
            if (s == KILN_OK && n->desc->grad_is_dz) s = pass_dz(m, p, n);
            else if (s == KILN_OK) s = n->desc->backward(n, x, v->z, v->dz, dx, step_seed);
        }
        for (int k = 0; s == KILN_OK && k < n->n_in; k++)
            if (add_after[k]) s = kiln_add(p->v[n->in[k]].dy, dx[k], p->v[n->in[k]].dy);
        if (s == KILN_OK && m->grads_ready) s = m->grads_ready(m->grads_ready_ctx, i);
        if (s != KILN_OK) return kiln_error_context(s, "layer '%s' backward", n->cfg.name);
    }
    return KILN_OK;
}
