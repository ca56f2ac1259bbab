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
 * (grad_alias, alias_inputs), so Add's backward copies nothing to them. KILN_FUSE=0 in the
 * environment turns both off (tests and benchmarks compare the two). */
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

/* the consumers of each node: the latest (last, the first its backward reaches), the latest
 * before it (prev, 0: none) and the count of input edges (uses) */
typedef struct uses_of {
    int *last, *prev, *uses;
} uses_of;

/* node i has one reader, c, and lends its dy to no one (not grad_is_dz): nothing adds into it */
static bool quiet(const kiln_model *m, const uses_of *u, int i) {
    return u->uses[i] == 1 && !m->nodes[i].desc->grad_is_dz;
}

static bool distinct_inputs(const kiln_node *n) {
    for (int k = 0; k < n->n_in; k++)
        for (int q = 0; q < k; q++)
            if (n->in[q] == n->in[k]) return false;
    return true;
}

/* grad_alias of the inputs of node c, a layer that passes dz on unchanged (grad_is_dz: Add):
 * an input that c reaches first takes c's dz as its dy, so c's backward copies nothing to it.
 * One of them owns it: preferably one that other layers read too, whose gradients are added
 * into dz after c's backward. When c's inputs are distinct, so does every other quiet input
 * whose backward reads dz before anything adds into it: after the owner's other consumers and,
 * when the owner lends its own dy on (an Add), after the owner */
static void alias_inputs(kiln_model *m, const uses_of *u, int c) {
    const kiln_node *n = &m->nodes[c];
    int owner = -1;
    for (int k = 0; k < n->n_in; k++) {
        int i = n->in[k];
        if (u->last[i] == c && (owner < 0 || (quiet(m, u, owner) && !quiet(m, u, i)))) owner = i;
    }
    if (owner < 0) return;
    m->nodes[owner].grad_alias = c;
    if (!distinct_inputs(n)) return; /* the owner's second gradient is added into dz at c */
    int writes = m->nodes[owner].desc->grad_is_dz && owner > u->prev[owner] ? owner : u->prev[owner];
    for (int k = 0; k < n->n_in; k++) {
        const kiln_node *in = &m->nodes[n->in[k]];
        int reads = in->fused_into ? in->fused_into : in->id; /* a fused ReLU's dy: its BN's or Add's */
        if (in->id != owner && quiet(m, u, in->id) && reads > writes) m->nodes[in->id].grad_alias = c;
    }
}

/* grad_alias of every node (after the fusions: fused_into); none when out of host memory (the
 * graph copies then) */
static void alias_grads(kiln_model *m) {
    size_t n = (size_t)m->n_nodes;
    uses_of u = {calloc(n, sizeof(int)), calloc(n, sizeof(int)), calloc(n, sizeof(int))};
    for (int j = 1; u.last && u.prev && u.uses && j < m->n_nodes; j++)
        for (int k = 0; k < m->nodes[j].n_in; k++) {
            int i = m->nodes[j].in[k];
            if (u.last[i] != j) u.prev[i] = u.last[i];
            u.last[i] = j;
            u.uses[i]++;
        }
    for (int c = 1; u.last && u.prev && u.uses && c < m->n_nodes; c++)
        if (m->nodes[c].desc->grad_is_dz) alias_inputs(m, &u, c);
    free(u.last);
    free(u.prev);
    free(u.uses);
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
    for (int i = 1; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        if (relu_op(n) == KILN_OP_COUNT || !kiln_backend_supports(m->be, relu_op(n), KILN_F32)) continue;
        int j = only_consumer(m, i);
        if (j < 0 || j == m->n_nodes - 1 || relu_rule(&m->nodes[j]) == KILN_BN_RELU_NONE) continue;
        n->fused_relu = j;
        n->fused_rule = (int)relu_rule(&m->nodes[j]);
        m->nodes[j].fused_into = i;
    }
    alias_grads(m);
}
