/* checkpoint.c: a model's weights (and, for a full checkpoint, its optimizer state) to and
 * from safetensors files (a Keras .keras or .weights.h5 file given to kiln_model_load goes to
 * keras_file.c). Names and layouts are Keras' ("conv2d.kernel" (kh, kw, in, out)),
 * so PyTorch, Keras and NumPy users can read them; the architecture rides in the header's
 * __metadata__. Writes are atomic (kiln_safetensors_write). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file_kind.h"
#include "keras_file.h"
#include "kiln/safetensors.h"
#include "model_impl.h"
#include "name_index.h"

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

/* "optimizer.<weight>.<slot>": the file name of slot k of weight w of node n */
static void slot_name(const kiln_model *m, const kiln_node *n, int w, int k, char *buf, size_t len) {
    snprintf(buf, len, KILN_SLOT_PREFIX ".%s.%s", n->w_name[w], slot_names[slot_kind(m)][k]);
}

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
                    slot_name(m, n, w, k, name, sizeof name);
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

/* the node a file entry's name points to: "<layer>.<weight>", or "optimizer.<layer>.<weight>.<slot>"
 * for a slot; weight and slot names hold no '.', a layer name may (found through the model's
 * name index, so a file of n entries is matched in O(n)) */
static kiln_node *node_of(kiln_model *m, const char *name, bool slot) {
    char layer[KILN_NAME_MAX * 3];
    if (snprintf(layer, sizeof layer, "%s", slot ? name + sizeof KILN_SLOT_PREFIX : name) >= (int)sizeof layer) return NULL;
    for (int cut = slot ? 2 : 1; cut > 0; cut--) {
        char *dot = strrchr(layer, '.');
        if (!dot) return NULL;
        *dot = '\0';
    }
    int id = kiln_model_find_layer(m, layer);
    return id < 0 ? NULL : &m->nodes[id];
}

/* the weight or optimizer slot a file entry names, or NULL */
static kiln_tensor *target_of(kiln_model *m, const char *name, bool *is_slot) {
    *is_slot = !strncmp(name, KILN_SLOT_PREFIX ".", sizeof KILN_SLOT_PREFIX);
    kiln_node *n = node_of(m, name, *is_slot);
    for (int w = 0; n && w < n->n_w; w++) {
        if (!*is_slot && !strcmp(name, n->w_name[w])) return n->w[w];
        for (int k = 0; *is_slot && k < 3; k++) {
            char slot[KILN_NAME_MAX * 3];
            if (!n->slot[w][k]) continue;
            slot_name(m, n, w, k, slot, sizeof slot);
            if (!strcmp(name, slot)) return n->slot[w][k];
        }
    }
    return NULL;
}

/* the entry fits the tensor: F32 of its shape */
static kiln_status check_entry(const kiln_safetensors *st, const kiln_st_entry *e, const kiln_tensor *t) {
    bool same = e->dtype == KILN_ST_F32 && e->ndim == t->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == t->shape[d];
    if (!same) {
        char want[96];
        return kiln_error(KILN_ERR_SHAPE, "%s: tensor '%s' is %s with %d dims (first %lld), the model wants F32 %s",
                          st->name, e->name, kiln_st_dtype_name(e->dtype), e->ndim,
                          (long long)(e->ndim ? e->shape[0] : 0), kiln_shape_str(t, want, sizeof want));
    }
    return KILN_OK;
}

/* ---- the counters of a full checkpoint: every kiln.* number is read and checked here ---- */

typedef struct ckpt_counters {
    int64_t iterations;
    int epoch;
    double learning_rate;
    uint64_t seed;
    bool has_seed;
} ckpt_counters;

/* metadata `key` as a decimal integer in [0, hi] (digits only: no sign, space or junk);
 * *found is false when the key is absent */
static kiln_status meta_uint(const kiln_safetensors *st, const char *path, const char *key, uint64_t hi, bool *found,
                             uint64_t *out) {
    const char *v = kiln_safetensors_metadata(st, key);
    *found = v != NULL;
    if (!v) return KILN_OK;
    char *end = NULL;
    errno = 0;
    unsigned long long u = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
    if (!end || *end || errno == ERANGE || u > hi)
        return kiln_error(KILN_ERR_FORMAT, "%s: metadata %s is '%.40s%s', not an integer in [0, %llu]", path, key, v,
                          strlen(v) > 40 ? "..." : "", (unsigned long long)hi);
    *out = (uint64_t)u;
    return KILN_OK;
}

/* metadata `key` (required) as a finite number > 0, in plain decimal ("0.001", "1e-05": a digit
 * or '.' first; no space, hex, inf or nan) */
static kiln_status meta_positive(const kiln_safetensors *st, const char *path, const char *key, double *out) {
    const char *v = kiln_safetensors_metadata(st, key);
    if (!v) return kiln_error(KILN_ERR_FORMAT, "%s: not a full checkpoint (no %s in its metadata)", path, key);
    char *end = NULL;
    bool plain = ((*v >= '0' && *v <= '9') || *v == '.') && v[strspn(v, "0123456789.eE+-")] == '\0';
    double d = plain ? strtod(v, &end) : NAN;
    if (!end || *end || !isfinite(d) || !(d > 0.0))
        return kiln_error(KILN_ERR_FORMAT, "%s: metadata %s is '%.40s%s', not a finite number > 0", path, key, v,
                          strlen(v) > 40 ? "..." : "");
    *out = d;
    return KILN_OK;
}

/* kiln.checkpoint "full", kiln.iterations, kiln.epoch, kiln.learning_rate and (optional)
 * kiln.seed, each of its type and range, or an error naming the file and the key */
static kiln_status read_counters(const kiln_safetensors *st, const char *path, ckpt_counters *c) {
    const char *kind = kiln_safetensors_metadata(st, "kiln.checkpoint");
    if (!kind || strcmp(kind, "full"))
        return kiln_error(KILN_ERR_FORMAT, "%s: not a full checkpoint (kiln.checkpoint is '%.40s', not 'full'): it has no "
                          "optimizer state to resume from; load it as weights only to start a new training from them",
                          path, kind ? kind : "absent");
    uint64_t it = 0, ep = 0;
    bool found[3];
    KILN_TRY(meta_uint(st, path, "kiln.iterations", KILN_ITERATIONS_MAX, &found[0], &it));
    KILN_TRY(meta_uint(st, path, "kiln.epoch", INT_MAX, &found[1], &ep));
    KILN_TRY(meta_uint(st, path, "kiln.seed", UINT64_MAX, &found[2], &c->seed));
    if (!found[0] || !found[1])
        return kiln_error(KILN_ERR_FORMAT, "%s: not a full checkpoint (no %s in its metadata)", path,
                          found[0] ? "kiln.epoch" : "kiln.iterations");
    KILN_TRY(meta_positive(st, path, "kiln.learning_rate", &c->learning_rate));
    c->iterations = (int64_t)it;
    c->epoch = (int)ep;
    c->has_seed = found[2];
    return KILN_OK;
}

/* the first weight of m (with slots: or optimizer slot) that st lacks, named in name; false when none */
static const char *entry_name(const void *st, int id) { return ((const kiln_safetensors *)st)->entries[id].name; }

/* the first weight (weights) or optimizer slot (slots) of m that st lacks, named into `name`;
 * st's entries are looked up through an index of their names (unique: the reader refuses a
 * duplicate), so this is O(weights + entries) */
static kiln_status find_missing(const kiln_model *m, const kiln_safetensors *st, bool weights, bool slots, char *name,
                                size_t len, bool *missing) {
    kiln_name_index x = {0};
    kiln_status s = KILN_OK;
    for (size_t i = 0; s == KILN_OK && i < st->n_entries; i++) s = kiln_name_index_add(&x, (int)i, entry_name, st);
    *missing = false;
    for (int i = 0; s == KILN_OK && !*missing && i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        for (int w = 0; !*missing && w < n->n_w; w++) {
            snprintf(name, len, "%s", n->w_name[w]);
            *missing = weights && kiln_name_index_find(&x, name, entry_name, st) < 0;
            for (int k = 0; slots && !*missing && k < 3; k++) {
                if (!n->slot[w][k]) continue;
                slot_name(m, n, w, k, name, len);
                *missing = kiln_name_index_find(&x, name, entry_name, st) < 0;
            }
        }
    }
    kiln_name_index_free(&x);
    return s;
}

/* every tensor of st into its weight or slot (slots only when full): all checked first (each
 * matches, fits, none is missing), so a refused file leaves the model as it was */
static kiln_status load_tensors(kiln_model *m, const kiln_safetensors *st, const char *path, bool subset, bool full) {
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < st->n_entries; i++) {
            const kiln_st_entry *e = &st->entries[i];
            bool is_slot;
            kiln_tensor *t = target_of(m, e->name, &is_slot);
            if (is_slot && !full) continue;
            if (!t)
                return kiln_error(KILN_ERR_FORMAT, "%s: tensor '%s' matches no %s of model '%s'", path, e->name,
                                  is_slot ? "optimizer state" : "weight", m->name);
            KILN_TRY(pass == 0 ? check_entry(st, e, t) : kiln_tensor_set(t, e->data, e->nbytes));
        }
        char name[KILN_NAME_MAX * 3];
        bool missing = false;
        if (pass == 0 && !subset) KILN_TRY(find_missing(m, st, true, false, name, sizeof name, &missing));
        if (missing) return kiln_error(KILN_ERR_FORMAT, "%s: weight '%s' of model '%s' is missing", path, name, m->name);
        if (pass == 0 && full) KILN_TRY(find_missing(m, st, false, true, name, sizeof name, &missing));
        if (missing)
            return kiln_error(KILN_ERR_FORMAT, "%s: optimizer state '%s' of model '%s' is missing (the checkpoint was "
                              "saved with another optimizer, or with that weight frozen); resuming would restart the "
                              "optimizer from zero", path, name, m->name);
    }
    return KILN_OK;
}

kiln_status kiln_model_load(kiln_model *m, const char *path, bool subset, bool full, int *epoch) {
    if (!m || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: NULL argument");
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: model '%s' is not built", m->name);
    if (full && !m->compiled) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_load: compile the model before resuming from '%s'", path);
    kiln_file_kind kind;
    KILN_TRY(kiln_file_kind_of(path, &kind));
    if ((kind == KILN_FILE_ZIP || kind == KILN_FILE_HDF5) && full)
        return kiln_error(KILN_ERR_FORMAT, "%s: this is %s, which holds no kiln optimizer state to resume from; resume from "
                          "kiln's checkpoint.safetensors, or load it as weights to start a new training", path,
                          kiln_file_kind_name(kind));
    if (kind == KILN_FILE_ZIP || kind == KILN_FILE_HDF5) return kiln_model_load_keras(m, path, subset);
    kiln_safetensors *st;
    KILN_TRY(kiln_safetensors_open(path, &st));
    ckpt_counters c = {0};
    kiln_status s = full ? read_counters(st, path, &c) : KILN_OK;
    if (s == KILN_OK) s = load_tensors(m, st, path, subset, full);
    if (s == KILN_OK && full) {
        m->iterations = c.iterations;
        m->base_lr = c.learning_rate;
        if (c.has_seed) m->fit_seed = c.seed;
        if (epoch) *epoch = c.epoch;
    }
    kiln_safetensors_free(st);
    return s;
}
