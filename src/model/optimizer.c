/* optimizer.c: compile (optimizer, schedule, clipping, loss) and the optimizer step over the
 * trainable weights, one fused update op per weight. Frozen weights have no gradient buffer
 * and no optimizer state: they are never touched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_impl.h"

kiln_optimizer_config kiln_optimizer_defaults(kiln_optimizer_type type) {
    kiln_optimizer_config c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.adam = type == KILN_OPT_ADAMW ? (kiln_adam_params)KILN_ADAMW_DEFAULTS : (kiln_adam_params)KILN_ADAM_DEFAULTS;
    c.sgd = (kiln_sgd_params)KILN_SGD_DEFAULTS;
    c.step_gamma = 0.1;
    c.cosine_alpha = 0.0;
    return c;
}

/* which layers want their own gradients, and which sit on a path to trainable weights */
static void mark_flow(kiln_model *m) {
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        n->grads_needed = false;
        for (int w = 0; w < n->n_w; w++) n->grads_needed |= kiln_node_trainable(n, w);
        n->upstream_trains = n->grads_needed;
        for (int k = 0; k < n->n_in; k++) n->upstream_trains |= m->nodes[n->in[k]].upstream_trains;
    }
}

/* gathers the trainable weights into the parameter group */
static kiln_status gather_group(kiln_model *m) {
    int total = kiln_model_weight_count(m), n = 0;
    kiln_tensor ***arrays[5] = {&m->group_w, &m->group_g, &m->group_slot[0], &m->group_slot[1], &m->group_slot[2]};
    for (int a = 0; a < 5; a++) {
        free(*arrays[a]);
        *arrays[a] = calloc((size_t)(total ? total : 1), sizeof(kiln_tensor *));
        if (!*arrays[a]) return kiln_error(KILN_ERR_OOM, "compile: out of host memory");
    }
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++) {
            kiln_node *nd = &m->nodes[i];
            if (!nd->g[w]) continue;
            m->group_w[n] = nd->w[w];
            m->group_g[n] = nd->g[w];
            for (int k = 0; k < 3; k++) m->group_slot[k][n] = nd->slot[w][k];
            n++;
        }
    m->n_group = n;
    return KILN_OK;
}

kiln_status kiln_model_sync_slots(kiln_model *m) {
    int want = kiln_optimizer_slots(&m->compile.optimizer);
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        for (int w = 0; w < n->n_w; w++) {
            bool t = kiln_node_trainable(n, w);
            if (!t) { /* frozen: no gradient, no state */
                kiln_tensor_free(n->g[w]);
                n->g[w] = NULL;
            } else if (!n->g[w]) {
                KILN_TRY(kiln_tensor_new(m->be, KILN_F32, n->w_ndim[w], n->w_shape[w], n->w_name[w], &n->g[w]));
            }
            for (int s = 0; s < 3; s++) {
                if (t && s < want) {
                    if (!n->slot[w][s]) {
                        KILN_TRY(kiln_tensor_new(m->be, KILN_F32, n->w_ndim[w], n->w_shape[w], n->w_name[w], &n->slot[w][s]));
                        KILN_TRY(kiln_fill(n->slot[w][s], 0.0));
                    }
                } else {
                    kiln_tensor_free(n->slot[w][s]);
                    n->slot[w][s] = NULL;
                }
            }
        }
    }
    mark_flow(m);
    return gather_group(m);
}

kiln_status kiln_model_compile(kiln_model *m, const kiln_compile_config *cfg) {
    if (!m || !cfg) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: NULL argument");
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: build model '%s' first", m->name);
    const kiln_optimizer_config *o = &cfg->optimizer;
    if ((int)o->type < 0 || o->type > KILN_OPT_ADAMW)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: unknown optimizer %d", (int)o->type);
    if ((int)o->schedule < 0 || o->schedule > KILN_LR_COSINE)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: unknown learning-rate schedule %d", (int)o->schedule);
    double lr = o->type == KILN_OPT_SGD ? o->sgd.learning_rate : o->adam.learning_rate;
    if (!(lr > 0.0) || !isfinite(lr))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: learning rate must be > 0 (is %g)", lr);
    if (o->schedule == KILN_LR_STEP && (o->step_size < 1 || !(o->step_gamma > 0)))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: step schedule needs step_size >= 1 and gamma > 0");
    if (o->schedule == KILN_LR_COSINE && o->decay_steps < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: cosine schedule needs decay_steps >= 1");
    if ((int)cfg->loss < 0 || cfg->loss > KILN_LOSS_MEAN_SQUARED_ERROR)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: unknown loss %d", (int)cfg->loss);
    /* the gradients and the optimizer's state, before any is allocated */
    KILN_TRY(kiln_model_budget(m, m->be, kiln_optimizer_slots(o), m->nodes[0].buf_batch));
    /* a changed optimizer starts from fresh state */
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++)
            for (int s = 0; s < 3; s++) {
                kiln_tensor_free(m->nodes[i].slot[w][s]);
                m->nodes[i].slot[w][s] = NULL;
            }
    m->compile = *cfg;
    m->base_lr = lr;
    m->iterations = 0;
    m->compiled = true;
    return kiln_model_sync_slots(m);
}

double kiln_model_learning_rate(const kiln_model *m) {
    if (!m) {
        kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_learning_rate: NULL model");
        return NAN;
    }
    const kiln_optimizer_config *o = &m->compile.optimizer;
    double it = (double)m->iterations;
    switch (o->schedule) {
    case KILN_LR_STEP: return m->base_lr * pow(o->step_gamma, floor(it / (double)o->step_size));
    case KILN_LR_COSINE: {
        double t = fmin(it, (double)o->decay_steps) / (double)o->decay_steps;
        return m->base_lr * ((1.0 - o->cosine_alpha) * 0.5 * (1.0 + cos(3.141592653589793 * t)) + o->cosine_alpha);
    }
    default: return m->base_lr;
    }
}

kiln_status kiln_model_set_learning_rate(kiln_model *m, double lr) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_learning_rate: NULL model");
    if (!(lr > 0.0) || !isfinite(lr))
        return kiln_error(KILN_ERR_INVALID_ARG, "learning rate must be > 0 (is %g)", lr);
    m->base_lr = lr;
    return KILN_OK;
}

int64_t kiln_model_iterations(const kiln_model *m) {
    if (m) return m->iterations;
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_iterations: NULL model");
    return -1;
}

uint64_t kiln_model_fit_seed(const kiln_model *m) {
    if (m) return m->fit_seed;
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_fit_seed: NULL model");
    return 0;
}

/* one optimizer step: the clip factor (when asked) and one fused group update over every
 * trainable weight (one CUDA launch per 32 tensors) */
kiln_status kiln_model_apply_gradients(kiln_model *m) {
    const kiln_optimizer_config *o = &m->compile.optimizer;
    double lr = kiln_model_learning_rate(m);
    const kiln_tensor *scale = NULL;
    kiln_status s = KILN_OK;
    if (m->iterations < 0 || m->iterations >= KILN_ITERATIONS_MAX)
        return kiln_error(KILN_ERR_INVALID_ARG, "model '%s' has taken %lld optimizer steps: not in [0, %lld), no step can follow",
                          m->name, (long long)m->iterations, (long long)KILN_ITERATIONS_MAX);
    if (m->n_group == 0) {
        m->iterations++;
        return KILN_OK;
    }
    if (o->global_clipnorm > 0.0f) {
        KILN_TRY(kiln_global_norm_clip_scale((const kiln_tensor *const *)m->group_g, m->n_group, o->global_clipnorm,
                                             m->clip_sumsq, m->clip_scale));
        scale = m->clip_scale;
    }
    const kiln_tensor *const *g = (const kiln_tensor *const *)m->group_g;
    if (o->type == KILN_OPT_SGD) {
        kiln_sgd_params p = o->sgd;
        p.learning_rate = lr;
        s = kiln_sgd_update_group(m->group_w, g, p.momentum != 0.0 ? m->group_slot[0] : NULL, m->n_group, &p, scale);
    } else {
        kiln_adam_params p = o->adam;
        p.learning_rate = lr;
        if (o->type == KILN_OPT_ADAM) p.weight_decay = 0.0;
        s = kiln_adam_update_group(m->group_w, g, m->group_slot[0], m->group_slot[1],
                                   p.amsgrad ? m->group_slot[2] : NULL, m->n_group, &p, m->iterations + 1, scale);
    }
    if (s != KILN_OK) return kiln_error_context(s, "optimizer step %lld", (long long)m->iterations + 1);
    m->iterations++;
    return KILN_OK;
}
