/* dist_model.c: a model's part in data-parallel training (kiln/dist.h): its communicator, seen
 * by every node (synchronized BatchNormalization reads it), --sync-bn's switch, and the share's first
 * row that Dropout's masks count from. */
#include "error.h"
#include "model_impl.h"

kiln_status kiln_model_set_comm(kiln_model *m, kiln_comm *c) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_comm: the model is NULL");
    m->comm = c;
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].comm = c;
    return KILN_OK;
}

void kiln_model_set_row0(kiln_model *m, int64_t row0) {
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].row0 = row0;
}

kiln_status kiln_model_sync_batchnorm(kiln_model *m, bool on) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_sync_batchnorm: the model is NULL");
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].cfg.type == KILN_LAYER_BATCHNORM) m->nodes[i].cfg.bn.synchronized = on;
    return KILN_OK;
}
