/* fuse.c: the model graph's execution-only fusion of BatchNormalization -> ReLU and Add ->
 * ReLU, decided when a model's first plan is made (plan.c). Where a BatchNormalization (not
 * synchronized) or an Add has one consumer, a default ReLU (a ReLU layer without max_value,
 * negative_slope or threshold, or Activation('relu')), that is not the model's output, the BN
 * runs the ReLU fused (kiln_bn_params.relu, the mask rule of that ReLU's own backward), the Add
 * its last sum as kiln_add_relu: the ReLU's forward and backward are skipped, its output is
 * the BN's or Add's buffer and their gradient is the ReLU's (plan.c aliases the views); the
 * BN's backward masks it, the graph masks the Add's by the ReLU's own backward op
 * (kiln_model_fused_relu_backward). Each pair costs the first layer's passes and gives the same
 * bits. Backends without the fused op (KILN_OP_BN_RELU, KILN_OP_ADD_RELU: CUDA) run both.
 * Layer names, the summary, saved files and weights do not change. Also decided here: which
 * inputs of a layer that passes its gradient on unchanged (Add) take its dz as their dy
 * (grad_alias), so Add's backward copies nothing. KILN_FUSE=0 in the environment turns both
 * off (tests and benchmarks compare the two). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

/* the kiln_bn_relu rule of node j as the ReLU after a BN, or KILN_BN_RELU_NONE */
static kiln_bn_relu relu_rule(const kiln_node *j) {
    const kiln_act_params *p = &j->cfg.act;
    if (j->cfg.type == KILN_LAYER_RELU && p->fn == KILN_FN_RELU && isinf(p->max_value) && p->max_value > 0.0f &&
        p->negative_slope == 0.0f && p->threshold == 0.0f)
        return KILN_BN_RELU_ACT; /* kiln_act's backward: dy relu'(y) */
    if (j->cfg.type == KILN_LAYER_ACTIVATION && j->cfg.activation == KILN_ACT_RELU)
        return KILN_BN_RELU; /* kiln_relu_backward */
    return KILN_BN_RELU_NONE;
}

/* the one consumer of node i, or -1 (none, or several) */
static int only_consumer(const kiln_model *m, int i) {
    int found = -1;
    for (int j = i + 1; j < m->n_nodes; j++)
        for (int k = 0; k < m->nodes[j].n_in; k++)
            if (m->nodes[j].in[k] == i) {
                if (found >= 0) return -1;
                found = j;
            }
    return found;
}

/* grad_alias: a node whose last consumer (the first its backward reaches) passes dz on to its
 * inputs unchanged (grad_is_dz: Add) takes that dz as its dy, so nothing is copied; one input
 * per consumer (another input's later gradients are added into its dy, hence into dz) */
static void alias_grads(kiln_model *m) {
    for (int j = 1; j < m->n_nodes; j++)
        for (int k = 0; k < m->nodes[j].n_in; k++)
            m->nodes[m->nodes[j].in[k]].grad_alias = m->nodes[j].desc->grad_is_dz ? j : 0;
    for (int j = 1; j < m->n_nodes; j++) {
        const kiln_node *c = &m->nodes[j];
        int kept = -1;
        for (int k = 0; c->desc->grad_is_dz && k < c->n_in; k++) {
            kiln_node *in = &m->nodes[c->in[k]];
            if (in->grad_alias != j || in->id == kept) continue;
            if (kept < 0) kept = in->id;
            else in->grad_alias = 0;
        }
    }
}

static bool fusion_on(void) {
    const char *v = getenv("KILN_FUSE");
    return !v || strcmp(v, "0") != 0;
}

/* the op that runs node n with a ReLU fused after it, or KILN_OP_COUNT for none: a BN's (not
 * synchronized) or an Add's */
static kiln_op_type relu_op(const kiln_node *n) {
    if (n->cfg.type == KILN_LAYER_BATCHNORM && !n->cfg.bn.synchronized) return KILN_OP_BN_RELU;
    return n->cfg.type == KILN_LAYER_ADD ? KILN_OP_ADD_RELU : KILN_OP_COUNT;
}

kiln_status kiln_model_fused_relu_backward(const kiln_model *m, const kiln_node *n, const kiln_tensor *y,
                                           const kiln_tensor *dy, kiln_tensor *dz) {
    if (n->fused_rule == KILN_BN_RELU) return kiln_relu_backward(y, dy, dz);
    return kiln_act_backward(&m->nodes[n->fused_relu].cfg.act, y, dy, dz);
}

void kiln_model_fuse(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        m->nodes[i].fused_relu = m->nodes[i].fused_rule = m->nodes[i].fused_into = m->nodes[i].grad_alias = 0;
    if (!fusion_on()) return;
    alias_grads(m);
    for (int i = 1; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        if (relu_op(n) == KILN_OP_COUNT || !kiln_backend_supports(m->be, relu_op(n), KILN_F32)) continue;
        int j = only_consumer(m, i);
        if (j < 0 || j == m->n_nodes - 1 || relu_rule(&m->nodes[j]) == KILN_BN_RELU_NONE) continue;
        n->fused_relu = j;
        n->fused_rule = (int)relu_rule(&m->nodes[j]);
        m->nodes[j].fused_into = i;
    }
}
