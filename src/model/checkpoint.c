/* checkpoint.c: a model's weights (and, for a full checkpoint, its optimizer state) to and
 * from safetensors files. Names and layouts are Keras' ("conv2d.kernel" (kh, kw, in, out)),
 * so PyTorch, Keras and NumPy users can read them; the architecture rides in the header's
 * __metadata__. Writes are atomic (kiln_safetensors_write). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kiln/safetensors.h"
#include "model_impl.h"

static const char *const slot_names[2][3] = {{"m", "v", "v_hat"}, {"velocity", "", ""}};

typedef struct entry_list {
    kiln_st_tensor *t;
    char (*names)[KILN_NAME_MAX * 3];
    void **data;
    size_t n, cap;
} entry_list;

static void list_free(entry_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->data[i]);
    free(l->t);
    free(l->names);
    free(l->data);
}

static kiln_status list_add(entry_list *l, const char *name, const kiln_tensor *t, const int64_t *shape, int ndim) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        kiln_st_tensor *nt = realloc(l->t, sizeof *nt * cap);
        if (nt) l->t = nt;
        char(*nn)[KILN_NAME_MAX * 3] = realloc(l->names, sizeof *nn * cap);
        if (nn) l->names = nn;
        void **nd = realloc(l->data, sizeof *nd * cap);
        if (nd) l->data = nd;
        if (!nt || !nn || !nd) return kiln_error(KILN_ERR_OOM, "kiln_model_save: out of host memory");
        l->cap = cap;
    }
    size_t bytes = kiln_tensor_nbytes(t);
    void *h = malloc(bytes ? bytes : 1);
    if (!h) return kiln_error(KILN_ERR_OOM, "kiln_model_save: out of host memory for '%s'", name);
    kiln_status s = kiln_tensor_get(t, h, bytes);
    if (s != KILN_OK) {
        free(h);
        return s;
    }
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    l->data[l->n] = h;
    l->t[l->n] = (kiln_st_tensor){NULL, KILN_ST_F32, ndim, shape, h};
    l->n++;
    return KILN_OK;
}

static int slot_kind(const kiln_model *m) { return m->compile.optimizer.type == KILN_OPT_SGD; }

kiln_status kiln_model_save(const kiln_model *m, const char *path, bool full, int epoch) {
    if (!m || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_save: NULL argument");
    if (epoch < 0) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_save: epoch %d is negative", epoch);
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_save: model '%s' is not built", m->name);
    entry_list l = {0};
    kiln_status s = KILN_OK;
    for (int i = 0; s == KILN_OK && i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        for (int w = 0; s == KILN_OK && w < n->n_w; w++) {
            s = list_add(&l, n->w_name[w], n->w[w], n->w_shape[w], n->w_ndim[w]);
            for (int k = 0; full && s == KILN_OK && k < 3; k++)
                if (n->slot[w][k]) {
                    char name[KILN_NAME_MAX * 3];
                    snprintf(name, sizeof name, "optimizer.%s.%s", n->w_name[w], slot_names[slot_kind(m)][k]);
                    s = list_add(&l, name, n->slot[w][k], n->w_shape[w], n->w_ndim[w]);
                }
        }
    }
    char *json = NULL;
    if (s == KILN_OK) s = kiln_model_to_json(m, &json);
    char iters[32], ep[32], lr[40], seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)m->fit_seed);
    snprintf(iters, sizeof iters, "%lld", (long long)m->iterations);
    snprintf(ep, sizeof ep, "%d", epoch);
    snprintf(lr, sizeof lr, "%.17g", m->base_lr);
    kiln_st_meta meta[7] = {{"format", "kiln"}, {"kiln.model", json ? json : ""}, {"kiln.checkpoint", full ? "full" : "weights"}};
    size_t n_meta = 3;
    if (full) {
        meta[n_meta++] = (kiln_st_meta){"kiln.iterations", iters};
        meta[n_meta++] = (kiln_st_meta){"kiln.epoch", ep};
        meta[n_meta++] = (kiln_st_meta){"kiln.learning_rate", lr};
        meta[n_meta++] = (kiln_st_meta){"kiln.seed", seed};
    }
    for (size_t i = 0; i < l.n; i++) l.t[i].name = l.names[i];
    if (s == KILN_OK) s = kiln_safetensors_write(path, l.t, l.n, meta, n_meta);
    free(json);
    list_free(&l);
    return s;
}

/* the weight or optimizer slot a file entry names, or NULL */
static kiln_tensor *target_of(kiln_model *m, const char *name, bool *is_slot) {
    *is_slot = !strncmp(name, "optimizer.", 10);
    for (int i = 0; i < m->n_nodes; i++) {
        kiln_node *n = &m->nodes[i];
        for (int w = 0; w < n->n_w; w++) {
            if (!*is_slot && !strcmp(name, n->w_name[w])) return n->w[w];
            if (!*is_slot) continue;
            size_t len = strlen(n->w_name[w]);
            if (strncmp(name + 10, n->w_name[w], len) || name[10 + len] != '.') continue;
            for (int k = 0; k < 3; k++)
                if (n->slot[w][k] && !strcmp(name + 11 + len, slot_names[slot_kind(m)][k])) return n->slot[w][k];
        }
    }
    return NULL;
}

static kiln_status load_entry(const kiln_safetensors *st, const kiln_st_entry *e, kiln_tensor *t) {
    bool same = e->dtype == KILN_ST_F32 && e->ndim == t->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == t->shape[d];
    if (!same) {
        char want[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: tensor '%s' is %s with %d dims (first %lld), the model wants F32 %s",
                          st->name, e->name, kiln_st_dtype_name(e->dtype), e->ndim,
                          (long long)(e->ndim ? e->shape[0] : 0), kiln_shape_str(t, want, sizeof want));
    }
    return kiln_tensor_set(t, e->data, e->nbytes);
}

kiln_status kiln_model_load(kiln_model *m, const char *path, bool subset, bool full, int *epoch) {
    if (!m || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: NULL argument");
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: model '%s' is not built", m->name);
    if (full && !m->compiled) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: compile the model before resuming from '%s'", path);
    kiln_safetensors *st;
    KILN_TRY(kiln_safetensors_open(path, &st));
    kiln_status s = KILN_OK;
    int loaded = 0;
    for (size_t i = 0; s == KILN_OK && i < st->n_entries; i++) {
        const kiln_st_entry *e = &st->entries[i];
        bool is_slot;
        kiln_tensor *t = target_of(m, e->name, &is_slot);
        if (is_slot && !full) continue;
        if (!t)
            s = kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' matches no %s of model '%s'", path, e->name,
                           is_slot ? "optimizer state" : "weight", m->name);
        else if ((s = load_entry(st, e, t)) == KILN_OK && !is_slot)
            loaded++;
    }
    if (s == KILN_OK && !subset && loaded != kiln_model_weight_count(m)) {
        for (int i = 0; i < m->n_nodes; i++)
            for (int w = 0; w < m->nodes[i].n_w; w++)
                if (!kiln_safetensors_find(st, m->nodes[i].w_name[w])) {
                    s = kiln_error(KILN_ERR_FORMAT, "%s: weight '%s' of model '%s' is missing", path,
                                   m->nodes[i].w_name[w], m->name);
                    i = m->n_nodes;
                    break;
                }
    }
    if (s == KILN_OK && full) {
        const char *it = kiln_safetensors_metadata(st, "kiln.iterations"), *ep = kiln_safetensors_metadata(st, "kiln.epoch");
        const char *lr = kiln_safetensors_metadata(st, "kiln.learning_rate");
        if (!it || !ep || !lr)
            s = kiln_error(KILN_ERR_FORMAT, "%s: not a full checkpoint (no kiln.iterations, kiln.epoch, kiln.learning_rate)", path);
        else {
            m->iterations = strtoll(it, NULL, 10);
            m->base_lr = strtod(lr, NULL);
            const char *sd = kiln_safetensors_metadata(st, "kiln.seed");
            if (sd) m->fit_seed = strtoull(sd, NULL, 10);
            if (epoch) *epoch = atoi(ep);
        }
    }
    kiln_safetensors_free(st);
    return s;
}
