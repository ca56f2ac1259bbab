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

/* the exponential and piecewise schedules and clipnorm (the others are checked inline) */
static kiln_status check_schedule(const kiln_optimizer_config *o) {
    if (o->schedule == KILN_LR_EXPONENTIAL && (o->decay_steps < 1 || !(o->decay_rate > 0.0) || !isfinite(o->decay_rate)))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: exponential schedule needs decay_steps >= 1 and decay_rate > 0");
    if (o->schedule == KILN_LR_PIECEWISE) {
        int n = o->n_boundaries;
        if (n < 1 || n >= KILN_LR_MAX_PIECES)
            return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: piecewise schedule needs 1 to %d boundaries (has %d)",
                              KILN_LR_MAX_PIECES - 1, n);
        for (int i = 0; i <= n; i++) {
            if (!(o->values[i] > 0.0) || !isfinite(o->values[i]))
                return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: piecewise value %d must be > 0 (is %g)", i, o->values[i]);
            if (i < n && (o->boundaries[i] < 0 || (i > 0 && o->boundaries[i] <= o->boundaries[i - 1])))
                return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: piecewise boundaries must be >= 0 and increase");
        }
    }
    if (!(o->clipnorm >= 0.0f) || !(o->global_clipnorm >= 0.0f) || (o->clipnorm > 0.0f && o->global_clipnorm > 0.0f))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: clipnorm (%g) and global_clipnorm (%g) must be >= 0, "
                          "and only one of them set (Keras' rule)", o->clipnorm, o->global_clipnorm);
    return KILN_OK;
}

kiln_status kiln_model_compile(kiln_model *m, const kiln_compile_config *cfg) {
    if (!m || !cfg) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: NULL argument");
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: build model '%s' first", m->name);
    const kiln_optimizer_config *o = &cfg->optimizer;
    if ((int)o->type < 0 || o->type > KILN_OPT_ADAMW)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: unknown optimizer %d", (int)o->type);
    if ((int)o->schedule < 0 || o->schedule > KILN_LR_PIECEWISE)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: unknown learning-rate schedule %d", (int)o->schedule);
    double lr = o->type == KILN_OPT_SGD ? o->sgd.learning_rate : o->adam.learning_rate;
    if (!(lr > 0.0) || !isfinite(lr))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: learning rate must be > 0 (is %g)", lr);
    if (o->schedule == KILN_LR_STEP && (o->step_size < 1 || !(o->step_gamma > 0)))
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: step schedule needs step_size >= 1 and gamma > 0");
    if (o->schedule == KILN_LR_COSINE && o->decay_steps < 1)
        return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_compile: cosine schedule needs decay_steps >= 1");
    KILN_TRY(check_schedule(o));
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
    case KILN_LR_EXPONENTIAL: {
        double e = it / (double)o->decay_steps;
        return m->base_lr * pow(o->decay_rate, o->staircase ? floor(e) : e);
    }
    case KILN_LR_PIECEWISE: {
        int i = 0;
        while (i < o->n_boundaries && it > (double)o->boundaries[i]) i++;
        return o->values[i];
    }
    default: return m->base_lr;
    }
}

kiln_status kiln_model_set_label_smoothing(kiln_model *m, double ls) {
    if (!m) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_set_label_smoothing: NULL model");
    if (!(ls >= 0.0 && ls < 1.0)) return kiln_error(KILN_ERR_INVALID_ARG, "label smoothing must be in [0, 1) (is %g)", ls);
    m->label_smoothing = ls;
    return KILN_OK;
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

/* the fused update of the group's weights [first, first + n), gradients scaled by `scale` (NULL: 1) */
static kiln_status update(kiln_model *m, double lr, int first, int n, const kiln_tensor *scale) {
    const kiln_optimizer_config *o = &m->compile.optimizer;
    kiln_tensor **w = m->group_w + first, **slot[3] = {m->group_slot[0] + first, m->group_slot[1] + first, m->group_slot[2] + first};
    const kiln_tensor *const *g = (const kiln_tensor *const *)m->group_g + first;
    if (o->type == KILN_OPT_SGD) {
        kiln_sgd_params p = o->sgd;
        p.learning_rate = lr;
        return kiln_sgd_update_group(w, g, p.momentum != 0.0 ? slot[0] : NULL, n, &p, scale);
    }
    kiln_adam_params p = o->adam;
    p.learning_rate = lr;
    if (o->type == KILN_OPT_ADAM) p.weight_decay = 0.0;
    return kiln_adam_update_group(w, g, slot[0], slot[1], p.amsgrad ? slot[2] : NULL, n, &p, m->iterations + 1, scale);
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
    /* clipnorm: each gradient clipped to the norm on its own, so one update per weight */
    for (int i = 0; s == KILN_OK && o->clipnorm > 0.0f && i < m->n_group; i++) {
        s = kiln_global_norm_clip_scale((const kiln_tensor *const *)&m->group_g[i], 1, o->clipnorm, m->clip_sumsq, m->clip_scale);
        if (s == KILN_OK) s = update(m, lr, i, 1, m->clip_scale);
    }
    if (o->clipnorm <= 0.0f) s = update(m, lr, 0, m->n_group, scale);
    if (s != KILN_OK) return kiln_error_context(s, "optimizer step %lld", (long long)m->iterations + 1);
    m->iterations++;
    return KILN_OK;
}
