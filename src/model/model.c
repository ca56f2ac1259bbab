/* model.c: a model's layers: adding them (Keras' automatic names, the graph's edges), shape
 * inference (kiln_model_infer, allocating nothing), building (the memory budget, then weight
 * allocation and initialization, through each layer's descriptor),
 * the accessors and the weights. */
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "error.h"
#include "layer.h"
#include "weight_options.h"

kiln_status kiln_model_new(const char *name, kiln_model **out) {
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_new: out is NULL");
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) return kiln_error(KILN_ERR_OOM, "kiln_model_new: out of host memory");
    snprintf(m->name, sizeof m->name, "%s", name && *name ? name : "sequential");
    *out = m;
    return KILN_OK;
}

static void free_node_tensors(kiln_node *n) {
    for (int w = 0; w < KILN_MAX_WEIGHTS; w++) {
        kiln_tensor_free(n->w[w]);
        kiln_tensor_free(n->g[w]);
        for (int s = 0; s < 3; s++) kiln_tensor_free(n->slot[w][s]);
        n->w[w] = n->g[w] = NULL;
        n->slot[w][0] = n->slot[w][1] = n->slot[w][2] = NULL;
    }
    for (int a = 0; a < KILN_MAX_AUX; a++) {
        kiln_tensor_free(n->aux[a]);
        n->aux[a] = NULL;
    }
    if (n->ext_free) n->ext_free(n->ext);
    n->ext = NULL;
    n->ext_free = NULL;
    kiln_tensor_free(n->y_buf);
    kiln_tensor_free(n->z_buf);
    kiln_tensor_free(n->dy_buf);
    kiln_tensor_free(n->dz_buf);
    n->y_buf = n->z_buf = n->dy_buf = n->dz_buf = NULL;
    n->buf_batch = 0;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    kiln_model_free_plans(m);
    for (int i = 0; i < m->n_nodes; i++) free_node_tensors(&m->nodes[i]);
    for (int k = 0; k < KILN_LAYER_MAX_INPUTS; k++) kiln_tensor_free(m->scratch_buf[k]);
    kiln_tensor_free(m->clip_sumsq);
    kiln_tensor_free(m->clip_scale);
    kiln_tensor_free(m->eval_loss);
    kiln_tensor_free(m->eval_correct);
    for (int k = 0; k < 3; k++) kiln_tensor_free(m->reg_tmp[k]);
    kiln_tensor_free(m->reg_sum);
    kiln_tensor_free(m->reg_total);
    free(m->group_w);
    free(m->group_g);
    for (int k = 0; k < 3; k++) free(m->group_slot[k]);
    free(m->nodes);
    kiln_name_index_free(&m->names);
    free(m->weight_at);
    free(m);
}

static const char *node_name(const void *m, int id) { return ((const kiln_model *)m)->nodes[id].cfg.name; }

/* Keras' automatic names: the first conv2d is "conv2d", then "conv2d_1", ...: the first free
 * name from the count of layers of the type. Names are never removed, so a suffix found taken
 * stays taken and the search for the type's next layer resumes after the last name given:
 * O(1) amortized per layer. */
static void auto_name(kiln_model *m, kiln_node *n) {
    const char *b = n->desc->base_name;
    int t = (int)n->cfg.type;
    int count = m->type_count[t] > m->type_next[t] ? m->type_count[t] : m->type_next[t];
    for (;; count++) {
        char cand[KILN_NAME_MAX];
        if (count) snprintf(cand, sizeof cand, "%s_%d", b, count);
        else snprintf(cand, sizeof cand, "%s", b);
        if (kiln_model_find_layer(m, cand) < 0) {
            memcpy(n->cfg.name, cand, sizeof cand);
            m->type_next[t] = count + 1;
            return;
        }
    }
}

int kiln_model_find_layer(const kiln_model *m, const char *name) {
    if (!m || !name) return kiln_model_bad_arg("kiln_model_find_layer", NULL, -1); /* "NULL argument" */
    return kiln_name_index_find(&m->names, name, node_name, m);
}

/* the arguments of kiln_model_add, checked */
static kiln_status check_add(const kiln_model *m, const kiln_layer_config *cfg, int n_inputs, const int *inputs) {
    if (!m || !cfg) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: NULL argument");
    if (m->built || m->shaped)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: model '%s' is already %s", m->name, m->built ? "built" : "shaped");
    const kiln_layer_desc *d = kiln_layer_desc_of(cfg->type);
    if (!d) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: unknown layer type %d", (int)cfg->type);
    if (!memchr(cfg->name, '\0', sizeof cfg->name))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: a %s's name is not terminated within %d bytes",
                          d->keras_class, KILN_NAME_MAX);
    if ((int)cfg->activation < 0 || cfg->activation >= KILN_ACT_COUNT)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: layer '%s' (%s): unknown activation %d", cfg->name,
                          d->keras_class, (int)cfg->activation);
    if (kiln_weight_options_check(cfg) != KILN_OK) return kiln_error_context(KILN_ERR_INVALID_ARG, "kiln_model_add");
    if ((cfg->type == KILN_LAYER_INPUT) != (m->n_nodes == 0))
        return kiln_error(KILN_ERR_INVALID_ARG, cfg->type == KILN_LAYER_INPUT
                              ? "kiln_model_add: an Input layer can only come first"
                              : "kiln_model_add: the first layer must be an Input, not %s", d->keras_class);
    if (n_inputs < 0 || n_inputs > KILN_LAYER_MAX_INPUTS || (n_inputs && !inputs))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: %s takes 0 to %d inputs, %d given",
                          d->keras_class, KILN_LAYER_MAX_INPUTS, n_inputs);
    char name[KILN_NAME_MAX];
    snprintf(name, sizeof name, "%.*s", KILN_NAME_MAX - 1, cfg->name);
    if (name[0] && kiln_model_find_layer(m, name) >= 0)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: a layer named '%s' exists already", name);
    if (kiln_layer_name_check_reserved(cfg->name) != KILN_OK) return kiln_error_context(KILN_ERR_INVALID_ARG, "kiln_model_add");
    if (m->n_nodes >= KILN_MODEL_MAX_LAYERS)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: model '%s' has %d layers, the most a model may have",
                          m->name, KILN_MODEL_MAX_LAYERS);
    for (int k = 0; k < n_inputs; k++)
        if (inputs[k] < 0 || inputs[k] >= m->n_nodes)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_add: %s input %d is layer id %d, not an earlier layer",
                              d->keras_class, k, inputs[k]);
    return KILN_OK;
}

kiln_status kiln_model_add(kiln_model *m, const kiln_layer_config *cfg, int n_inputs,
                           const int *inputs, int *id) {
    KILN_TRY(check_add(m, cfg, n_inputs, inputs));
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 16;
        kiln_node *nn = realloc(m->nodes, sizeof *nn * (size_t)cap);
        if (!nn) return kiln_error(KILN_ERR_OOM, "kiln_model_add: out of host memory");
        m->nodes = nn;
        m->cap_nodes = cap;
    }
    kiln_node *n = &m->nodes[m->n_nodes];
    memset(n, 0, sizeof *n);
    n->cfg = *cfg;
    n->desc = kiln_layer_desc_of(cfg->type);
    n->id = m->n_nodes;
    if (n_inputs) {
        n->n_in = n_inputs;
        memcpy(n->in, inputs, sizeof(int) * (size_t)n_inputs);
        if (n_inputs > 1 || inputs[0] != m->n_nodes - 1) m->graph_form = true;
    } else if (m->n_nodes > 0) {
        n->n_in = 1;
        n->in[0] = m->n_nodes - 1;
    }
    n->cfg.name[KILN_NAME_MAX - 1] = '\0';
    if (!n->cfg.name[0]) auto_name(m, n);
    KILN_TRY(kiln_name_index_add(&m->names, m->n_nodes, node_name, m));
    m->type_count[cfg->type]++;
    m->n_nodes++;
    if (id) *id = n->id;
    return KILN_OK;
}

/* NULL for m, else "no layer id <id>": the status of an accessor's bad arguments, returned as
 * its safe value */
int kiln_model_bad_arg(const char *fn, const kiln_model *m, int id) {
    if (!m) kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL argument", fn);
    else kiln_error(KILN_ERR_INVALID_ARG, "%s: no layer id %d in model '%s' (it has %d)", fn, id, m->name, m->n_nodes);
    return -1;
}

static bool has_layer(const kiln_model *m, int id) { return m && id >= 0 && id < m->n_nodes; }

int kiln_model_layer_count(const kiln_model *m) { return m ? m->n_nodes : kiln_model_bad_arg("kiln_model_layer_count", m, 0); }
const kiln_layer_config *kiln_model_layer(const kiln_model *m, int id) {
    if (has_layer(m, id)) return &m->nodes[id].cfg;
    kiln_model_bad_arg("kiln_model_layer", m, id);
    return NULL;
}
int kiln_model_layer_inputs(const kiln_model *m, int id, int inputs[KILN_LAYER_MAX_INPUTS]) {
    if (!has_layer(m, id) || !inputs) return kiln_model_bad_arg("kiln_model_layer_inputs", inputs ? m : NULL, id);
    memcpy(inputs, m->nodes[id].in, sizeof(int) * KILN_LAYER_MAX_INPUTS);
    return m->nodes[id].n_in;
}
kiln_backend *kiln_model_backend(const kiln_model *m) {
    if (m) return m->be;
    kiln_model_bad_arg("kiln_model_backend", m, 0);
    return NULL;
}
const char *kiln_model_name(const kiln_model *m) {
    if (m) return m->name;
    kiln_model_bad_arg("kiln_model_name", m, 0);
    return NULL;
}

kiln_status kiln_model_output_shape(const kiln_model *m, int id, int *ndim, int64_t shape[3]) {
    if (!m || !ndim || !shape) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_output_shape: NULL argument");
    if (!m->shaped) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_output_shape: model '%s' is not built", m->name);
    if (!has_layer(m, id)) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_output_shape: no layer id %d in model '%s'", id, m->name);
    *ndim = m->nodes[id].out_ndim;
    memcpy(shape, m->nodes[id].out_shape, sizeof(int64_t) * 3);
    return KILN_OK;
}

/* node i's output shape and weights (the layer's infer), their sizes checked before anything
 * multiplies them (the running parameter count in *params), the weights named
 * "<layer>.<weight>" */
static kiln_status infer_node(kiln_model *m, int i, int64_t *params) {
    kiln_node *n = &m->nodes[i];
    const kiln_node *in[KILN_LAYER_MAX_INPUTS] = {0};
    for (int k = 0; k < n->n_in; k++) in[k] = &m->nodes[n->in[k]];
    int64_t own = 0;
    kiln_status s = n->desc->infer(n, in);
    if (s == KILN_OK) s = kiln_node_check_sizes(n, &own); /* before anything multiplies them */
    if (s == KILN_OK && !kiln_add_i64(*params, own, params))
        s = kiln_error(KILN_ERR_SHAPE, "the model's parameter count overflows 64 bits here");
    if (s != KILN_OK) return kiln_error_context(s, "layer '%s' (%s)", n->cfg.name, n->desc->keras_class);
    for (int w = 0; w < n->n_w; w++) {
        char full[KILN_NAME_MAX * 2];
        snprintf(full, sizeof full, "%.63s.%.60s", n->cfg.name, n->w_name[w]);
        memcpy(n->w_name[w], full, sizeof full);
    }
    return KILN_OK;
}

/* weight_at: the node and slot of every weight, so kiln_model_weight(i) is O(1) */
static kiln_status index_weights(kiln_model *m) {
    int total = kiln_model_weight_count(m), k = 0;
    m->weight_at = malloc(sizeof *m->weight_at * (size_t)(total ? total : 1));
    if (!m->weight_at) return kiln_error(KILN_ERR_OOM, "kiln_model_infer: out of host memory");
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++, k++) {
            m->weight_at[k][0] = i;
            m->weight_at[k][1] = w;
        }
    m->n_weights = total;
    return KILN_OK;
}

kiln_status kiln_model_infer(kiln_model *m) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_infer: model is NULL");
    if (m->shaped) return KILN_OK;
    if (m->n_nodes < 2) return kiln_error(KILN_ERR_INVALID_ARG, "model '%s' has no layers after its Input", m->name);
    int64_t params = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_status s = infer_node(m, i, &params);
        if (s != KILN_OK) { /* the weights declared so far are forgotten: a later call starts over */
            for (int k = 0; k <= i; k++) m->nodes[k].n_w = m->nodes[k].aux_len = 0;
            return s;
        }
    }
    KILN_TRY(index_weights(m));
    m->shaped = true;
    return KILN_OK;
}

/* node i's weights (kiln_model_weight_bytes counts them) allocated on the backend and
 * initialized from the node's seed */
static kiln_status alloc_node(kiln_model *m, int i, uint64_t seed) {
    kiln_node *n = &m->nodes[i];
    for (int w = 0; w < n->n_w; w++)
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, n->w_ndim[w], n->w_shape[w], n->w_name[w], &n->w[w]));
    for (int a = 0; a < n->desc->n_aux; a++) {
        int64_t c = n->aux_len;
        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, 1, &c, "bn_saved", &n->aux[a]));
    }
    for (int w = 0; w < n->n_w; w++) KILN_TRY(kiln_init_weight(n, w, seed * 1000003u + (uint64_t)i));
    return KILN_OK;
}

/* what a failed allocation made, freed: the model is unbuilt (its shapes stay inferred), ready
 * for another try */
static void unbuild(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) free_node_tensors(&m->nodes[i]);
    kiln_tensor **one[KILN_BUILD_SCALARS] = {&m->clip_sumsq, &m->clip_scale, &m->eval_loss, &m->eval_correct};
    for (int k = 0; k < KILN_BUILD_SCALARS; k++) {
        kiln_tensor_free(*one[k]);
        *one[k] = NULL;
    }
    m->be = NULL;
}

static kiln_status alloc_all(kiln_model *m, kiln_backend *be, uint64_t seed) {
    m->be = be;
    for (int i = 0; i < m->n_nodes; i++) KILN_TRY(alloc_node(m, i, seed));
    static const char *const scalars[KILN_BUILD_SCALARS] = {"clip_sumsq", "clip_scale", "eval_loss", "eval_correct"};
    kiln_tensor **dst[KILN_BUILD_SCALARS] = {&m->clip_sumsq, &m->clip_scale, &m->eval_loss, &m->eval_correct};
    int64_t one = 1;
    for (int k = 0; k < KILN_BUILD_SCALARS; k++) KILN_TRY(kiln_tensor_new(be, KILN_F32, 1, &one, scalars[k], dst[k]));
    return KILN_OK;
}

kiln_status kiln_model_build(kiln_model *m, kiln_backend *be, uint64_t seed) {
    if (!m || !be) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_build: NULL argument");
    if (m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_build: model '%s' is already built", m->name);
    if (m->n_nodes < 2) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_build: model '%s' has no layers after its Input", m->name);
    KILN_TRY(kiln_model_infer(m));
    KILN_TRY(kiln_model_budget(m, be, -1, 0)); /* the weights, before any is allocated */
    kiln_status s = alloc_all(m, be, seed);
    if (s != KILN_OK) unbuild(m);
    m->built = s == KILN_OK;
    return s;
}

kiln_status kiln_model_check_memory(kiln_model *m, kiln_backend *be, int batch, const kiln_optimizer_config *opt) {
    if (!m || !be) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_check_memory: NULL argument");
    if (batch < 0) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_check_memory: batch size must be >= 0 (is %d)", batch);
    KILN_TRY(kiln_model_infer(m));
    return kiln_model_budget(m, be, opt ? kiln_optimizer_slots(opt) : -1, batch);
}

/* ---- weights and counts ---- */

int kiln_model_weight_count(const kiln_model *m) {
    if (!m) return kiln_model_bad_arg("kiln_model_weight_count", m, 0);
    if (m->weight_at) return m->n_weights;
    int c = 0;
    for (int i = 0; i < m->n_nodes; i++) c += m->nodes[i].n_w;
    return c;
}

kiln_status kiln_model_weight(const kiln_model *m, int i, const char **name, kiln_tensor **t,
                              bool *trainable) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_weight: NULL model");
    if (!m->weight_at || i < 0 || i >= kiln_model_weight_count(m))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_weight: no weight %d in model '%s' (it has %d)", i, m->name,
                          kiln_model_weight_count(m));
    const kiln_node *n = &m->nodes[m->weight_at[i][0]];
    int w = m->weight_at[i][1];
    if (name) *name = n->w_name[w];
    if (t) *t = n->w[w];
    if (trainable) *trainable = kiln_node_trainable(n, w);
    return KILN_OK;
}

kiln_tensor *kiln_model_find_weight(const kiln_model *m, const char *name) {
    if (!m || !name) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_find_weight: NULL argument");
        return NULL;
    }
    for (int k = 0; k < m->n_nodes; k++)
        for (int w = 0; w < m->nodes[k].n_w; w++)
            if (!strcmp(m->nodes[k].w_name[w], name)) return m->nodes[k].w[w];
    return NULL;
}
