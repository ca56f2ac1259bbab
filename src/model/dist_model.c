/* dist_model.c: a model's part in data-parallel training (kiln/dist.h): its communicator, seen
 * by every node (synchronized BatchNormalization reads it), and --sync-bn's switch. */
#include "error.h"
#include "model_impl.h"

kiln_status kiln_model_set_comm(kiln_model *m, kiln_comm *c) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_comm: the model is NULL");
    m->comm = c;
    for (int i = 0; i < m->n_nodes; i++) m->nodes[i].comm = c;
    return KILN_OK;
}

kiln_status kiln_model_sync_batchnorm(kiln_model *m, bool on) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_sync_batchnorm: the model is NULL");
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].cfg.type == KILN_LAYER_BATCHNORM) m->nodes[i].cfg.bn.synchronized = on;
    return KILN_OK;
}
