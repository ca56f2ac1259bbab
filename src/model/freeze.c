/* freeze.c: freezing layers (Keras' layer.trainable). A frozen layer's weights get no gradient
 * and no optimizer state (kiln_model_sync_slots, when compiled); a frozen BatchNormalization
 * also runs in inference mode, which its layer reads from the same flag. */
#include "error.h"
#include "model_impl.h"

/* layer i trains when `keep` is its type (keep < 0: every layer, as `trainable`) */
static kiln_status set_all(kiln_model *m, int keep, bool trainable) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL model", keep < 0 ? "kiln_model_set_all_trainable" : "kiln_model_freeze_all_but");
    for (int i = 0; i < m->n_nodes; i++)
        m->nodes[i].cfg.trainable = keep < 0 ? trainable : (int)m->nodes[i].cfg.type == keep;
    return m->compiled ? kiln_model_sync_slots(m) : KILN_OK;
}

kiln_status kiln_model_set_trainable(kiln_model *m, int id, bool trainable) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_trainable: NULL model");
    if (id < 0 || id >= m->n_nodes)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_trainable: no layer id %d in model '%s' (it has %d)", id,
                          m->name, m->n_nodes);
    m->nodes[id].cfg.trainable = trainable;
    return m->compiled ? kiln_model_sync_slots(m) : KILN_OK;
}

kiln_status kiln_model_set_all_trainable(kiln_model *m, bool trainable) { return set_all(m, -1, trainable); }

kiln_status kiln_model_freeze_all_but(kiln_model *m, kiln_layer_type keep) {
    if ((int)keep < 0 || keep >= KILN_LAYER_TYPE_COUNT)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_freeze_all_but: unknown layer type %d", (int)keep);
    return set_all(m, (int)keep, false);
}
