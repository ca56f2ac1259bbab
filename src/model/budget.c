/* budget.c: the memory budget. Before kiln_model_build allocates the weights, kiln_model_compile
 * the gradients and the optimizer's state, and a plan the activations of a larger batch, the
 * bytes the model will hold are compared with what the backend can still give
 * (kiln_backend_memory_available), and a model that does not fit is refused with the sizes
 * before any of it is allocated. The bytes are counted from the shapes (whose element counts
 * kiln_model_infer has checked to fit in int64_t; sums and batch products are taken in double)
 * and the helpers (node.c, model_impl.h's counts) that model.c, optimizer.c and plan.c allocate by;
 * tests/test_hostile_budget.c checks that the count equals what the CPU backend holds. */
#include <stdint.h>

#include "error.h"
#include "layer.h"

int kiln_optimizer_slots(const kiln_optimizer_config *o) {
    switch (o->type) {
    case KILN_OPT_SGD: return o->sgd.momentum != 0.0 ? 1 : 0;
    default: return o->adam.amsgrad ? 3 : 2;
    }
}

double kiln_model_weight_bytes(const kiln_model *m) {
    double b = KILN_BUILD_SCALARS * sizeof(float);
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        for (int w = 0; w < n->n_w; w++) b += (double)kiln_node_weight_numel(n, w) * sizeof(float);
        b += n->desc->n_aux * (double)n->aux_len * sizeof(float);
    }
    return b;
}

double kiln_model_trainable_bytes(const kiln_model *m) {
    double b = 0.0;
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++)
            if (kiln_node_trainable(&m->nodes[i], w))
                b += (double)kiln_node_weight_numel(&m->nodes[i], w) * sizeof(float);
    return b;
}

double kiln_plan_bytes(const kiln_model *m, int batch) {
    if (batch < 1) return 0.0;
    double acts = 0.0, largest = 0.0;
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        double e = (double)kiln_node_out_numel(n) * batch;
        acts += kiln_node_buffers(n) * e;
        largest = e > largest ? e : largest;
    }
    const kiln_node *last = &m->nodes[m->n_nodes - 1];
    double loss = KILN_LOSS_ROW_TENSORS * (double)batch + (double)kiln_node_out_numel(last) * batch;
    return (acts + kiln_model_max_inputs(m) * largest + loss) * sizeof(float);
}

int kiln_model_slots_now(const kiln_model *m) {
    return m->compiled ? kiln_optimizer_slots(&m->compile.optimizer) : -1;
}

kiln_model_bytes kiln_model_bytes_of(const kiln_model *m, int slots, int batch) {
    kiln_model_bytes b = {kiln_model_weight_bytes(m), 0.0, 0.0, kiln_plan_bytes(m, batch)};
    if (slots >= 0) {
        b.gradients = kiln_model_trainable_bytes(m);
        b.optimizer = slots * b.gradients;
    }
    return b;
}

static double total_of(const kiln_model_bytes *b) { return b->weights + b->gradients + b->optimizer + b->activations; }

/* 20401094656 -> "19.00 GiB" */
static const char *human(double bytes, char *buf, size_t n) {
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    for (; bytes >= 1024.0 && u < 6; u++) bytes /= 1024.0;
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

kiln_status kiln_model_budget(const kiln_model *m, kiln_backend *be, int slots, int batch) {
    size_t avail;
    KILN_TRY(kiln_backend_memory_available(be, &avail));
    if (avail == SIZE_MAX) return KILN_OK; /* the system does not say */
    kiln_model_bytes want = kiln_model_bytes_of(m, slots, batch);
    kiln_model_bytes now = kiln_model_bytes_of(m, kiln_model_slots_now(m), m->nodes[0].buf_batch);
    double held = m->built ? total_of(&now) : 0.0, need = total_of(&want);
    if (need - held <= (double)avail) return KILN_OK;
    char t[32], w[32], g[32], o[32], a[32], y[32], at[32] = "";
    if (batch > 0) snprintf(at, sizeof at, " at batch %d", batch);
    return kiln_error(KILN_ERR_OOM, "model '%s' needs %s%s (weights %s, gradients %s, optimizer state %s, activations %s), "
                      "the device %s has %s", m->name, human(need, t, sizeof t), at, human(want.weights, w, sizeof w),
                      human(want.gradients, g, sizeof g), human(want.optimizer, o, sizeof o),
                      human(want.activations, a, sizeof a), kiln_backend_name(be), human(held + (double)avail, y, sizeof y));
}
