/* keras_file.c: a model's weights in Keras 3's layout, and Keras 3's files (docs/formats.md):
 *   model.weights.h5 / *.weights.h5   HDF5: "vars" (the model's, name attribute), then for each
 *        layer of model.layers (a Sequential model's InputLayer is not one of them) the group
 *        "layers/<path>/vars" with the layer's variables "0", "1", ... in Keras' order. <path> is
 *        Keras' own: the snake case of the class name (Conv2D -> conv2d, BatchNormalization ->
 *        batch_normalization), "_1", "_2", ... for the second, third layer of a class, in the
 *        model's layer order; the group's "name" attribute holds the layer's name. Keras loads by
 *        path, and so does kiln.
 *        With an Adam or AdamW model's state: "optimizer/vars" 0 (iterations, int64), 1 (the
 *        learning rate), then m and v of each trainable variable in Keras' order.
 *   .keras   a zip of config.json (model.to_json(), with Keras' compile_config when the
 *        optimizer's state is there), metadata.json and model.weights.h5.
 * A layer's variables are its declared weights in their order, unless its descriptor lists
 * Keras' order (keras_vars, layer.h): one place per layer type. Reading checks every variable's
 * count and shape against the model before any is read, and loads nothing when one is wrong. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file_kind.h"
#include "file_read.h"
#include "keras_file.h"
#include "keras_h5.h"
#include "keras_zip.h"
#include "layer.h"

/* the largest config.json and model.weights.h5 read from a .keras archive */
#define CONFIG_MAX ((size_t)64 << 20)
#define WEIGHTS_MAX ((size_t)64 << 30)

void kiln_keras_snake_case(const char *cls, char *out, size_t n) {
    char w[KILN_NAME_MAX], t[2 * KILN_NAME_MAX];
    size_t k = 0, o = 0;
    for (const char *p = cls; *p && k + 1 < sizeof w; p++) /* re.sub(r"\W+", "", name) */
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') w[k++] = *p;
    w[k] = '\0';
    for (size_t i = 0; i < k;) { /* re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name) */
        size_t j = i + 2;
        while (j < k && w[j] >= 'a' && w[j] <= 'z') j++;
        bool hit = i + 2 < k && w[i + 1] >= 'A' && w[i + 1] <= 'Z' && j > i + 2;
        t[o++] = w[i];
        if (hit) {
            t[o++] = '_';
            memcpy(t + o, w + i + 1, j - i - 1);
            o += j - i - 1;
        }
        i = hit ? j : i + 1;
    }
    size_t m = 0;
    for (size_t i = 0; i < o && m + 2 < n; i++) { /* re.sub("([a-z])([A-Z])", r"\1_\2", name).lower() */
        bool lower = t[i] >= 'a' && t[i] <= 'z', upper_next = i + 1 < o && t[i + 1] >= 'A' && t[i + 1] <= 'Z';
        out[m++] = t[i] >= 'A' && t[i] <= 'Z' ? (char)(t[i] - 'A' + 'a') : t[i];
        if (lower && upper_next) out[m++] = '_';
    }
    out[m] = '\0';
}

/* the Keras path of every node ("layers/conv2d_1"; "" for a Sequential model's InputLayer) into
 * paths[n_nodes] (free with free()) */
static kiln_status keras_paths(const kiln_model *m, char (**paths)[2 * KILN_NAME_MAX]) {
    *paths = calloc((size_t)m->n_nodes, sizeof **paths);
    if (!*paths) return kiln_error(KILN_ERR_OOM, "out of host memory for the Keras paths of model '%s'", m->name);
    /* Keras' _get_unique_name: a count per snake name (a class), at most one per layer type */
    char snakes[KILN_LAYER_TYPE_COUNT][KILN_NAME_MAX];
    int used[KILN_LAYER_TYPE_COUNT] = {0}, n_snakes = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        if (i == 0 && !m->graph_form) continue;
        char snake[KILN_NAME_MAX];
        kiln_keras_snake_case(n->desc->keras_class, snake, sizeof snake);
        int j = 0;
        while (j < n_snakes && strcmp(snakes[j], snake)) j++;
        if (j == n_snakes && n_snakes < KILN_LAYER_TYPE_COUNT) memcpy(snakes[n_snakes++], snake, sizeof snake);
        int k = used[j < KILN_LAYER_TYPE_COUNT ? j : 0]++;
        if (k) snprintf((*paths)[i], sizeof (*paths)[i], "layers/%s_%d", snake, k);
        else snprintf((*paths)[i], sizeof (*paths)[i], "layers/%s", snake);
    }
    return KILN_OK;
}

int kiln_keras_var_order(const kiln_node *n, int order[KILN_MAX_WEIGHTS]) {
    const char *const *names = n->desc->keras_vars;
    if (!names) {
        for (int w = 0; w < n->n_w; w++) order[w] = w;
        return n->n_w;
    }
    size_t skip = strlen(n->cfg.name) + 1; /* w_name is "<layer>.<weight>" */
    int count = 0;
    for (; *names; names++)
        for (int w = 0; w < n->n_w && count < KILN_MAX_WEIGHTS; w++)
            if (!strcmp(n->w_name[w] + skip, *names)) order[count++] = w;
    return count;
}

/* ---- writing ---- */

/* ---- the optimizer: Adam and AdamW as Keras keeps them ---- */

/* whether m's optimizer state goes into Keras' files: compiled with Adam or AdamW (no amsgrad,
 * whose v_hat Keras keeps apart), a constant learning rate, probabilities out (Keras' default
 * loss), and the state made (every trainable weight has its m and v) */
static bool keras_optimizer(const kiln_model *m) {
    const kiln_optimizer_config *o = &m->compile.optimizer;
    if (!m->compiled || (o->type != KILN_OPT_ADAM && o->type != KILN_OPT_ADAMW) || o->adam.amsgrad ||
        o->schedule != KILN_LR_CONSTANT || m->compile.from_logits)
        return false;
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++)
            if (kiln_node_trainable(&m->nodes[i], w) && (!m->nodes[i].slot[w][0] || !m->nodes[i].slot[w][1])) return false;
    return true;
}

static kiln_status write_tensor(kiln_h5 *h, const char *path, const kiln_tensor *t, int ndim, const int64_t *shape) {
    size_t bytes = kiln_tensor_nbytes(t);
    float *host = malloc(bytes ? bytes : 1);
    if (!host) return kiln_error(KILN_ERR_OOM, "out of host memory for '%s'", path);
    kiln_status s = kiln_tensor_get(t, host, bytes);
    if (s == KILN_OK) s = kiln_h5_var_write(h, path, ndim, shape, host);
    free(host);
    return s;
}

/* optimizer/vars: 0 iterations (int64), 1 learning_rate, then m and v of each trainable
 * variable in model.trainable_variables' order (layers in order, each in Keras' variable order) */
static kiln_status write_optimizer(const kiln_model *m, kiln_h5 *h) {
    KILN_TRY(kiln_h5_group_make(h, "optimizer/vars", m->compile.optimizer.type == KILN_OPT_ADAMW ? "adamw" : "adam"));
    KILN_TRY(kiln_h5_scalar_write_i64(h, "optimizer/vars/0", m->iterations));
    float lr = (float)kiln_model_learning_rate(m);
    KILN_TRY(kiln_h5_var_write(h, "optimizer/vars/1", 0, NULL, &lr));
    int k = 2;
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        int order[KILN_MAX_WEIGHTS], count = kiln_keras_var_order(n, order);
        for (int v = 0; v < count; v++) {
            int w = order[v];
            for (int slot = 0; kiln_node_trainable(n, w) && slot < 2; slot++) {
                char path[64];
                snprintf(path, sizeof path, "optimizer/vars/%d", k++);
                KILN_TRY(write_tensor(h, path, n->slot[w][slot], n->w_ndim[w], n->w_shape[w]));
            }
        }
    }
    return KILN_OK;
}

/* Keras' compile_config for an optimizer keras_optimizer() takes: Adam or AdamW with kiln's
 * hyperparameters and the loss, so load_model compiles the model and restores the state */
static void compile_config(const kiln_model *m, cJSON *root) {
    static const char *const losses[] = {"sparse_categorical_crossentropy", "categorical_crossentropy", "mean_squared_error"};
    const kiln_optimizer_config *o = &m->compile.optimizer;
    bool w = o->type == KILN_OPT_ADAMW;
    cJSON *cc = cJSON_AddObjectToObject(root, "compile_config"), *opt = cJSON_AddObjectToObject(cc, "optimizer");
    cJSON_AddStringToObject(opt, "module", "keras.optimizers");
    cJSON_AddStringToObject(opt, "class_name", w ? "AdamW" : "Adam");
    cJSON *c = cJSON_AddObjectToObject(opt, "config");
    cJSON_AddStringToObject(c, "name", w ? "adamw" : "adam");
    cJSON_AddNumberToObject(c, "learning_rate", kiln_model_learning_rate(m));
    if (w) cJSON_AddNumberToObject(c, "weight_decay", o->adam.weight_decay);
    else cJSON_AddNullToObject(c, "weight_decay");
    if (o->global_clipnorm > 0) cJSON_AddNumberToObject(c, "global_clipnorm", o->global_clipnorm);
    cJSON_AddNumberToObject(c, "beta_1", o->adam.beta_1);
    cJSON_AddNumberToObject(c, "beta_2", o->adam.beta_2);
    cJSON_AddNumberToObject(c, "epsilon", o->adam.epsilon);
    cJSON_AddBoolToObject(c, "amsgrad", false);
    cJSON_AddNullToObject(opt, "registered_name");
    cJSON_AddStringToObject(cc, "loss", losses[m->compile.loss]);
    cJSON_AddNullToObject(cc, "metrics");
}

static kiln_status write_weights(const kiln_model *m, kiln_h5 *h, char (*paths)[2 * KILN_NAME_MAX]) {
    KILN_TRY(kiln_h5_group_make(h, "vars", m->name));
    KILN_TRY(kiln_h5_group_make(h, "layers", NULL));
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        if (!paths[i][0]) continue;
        char path[3 * KILN_NAME_MAX];
        snprintf(path, sizeof path, "%s/vars", paths[i]);
        KILN_TRY(kiln_h5_group_make(h, path, n->cfg.name));
        int order[KILN_MAX_WEIGHTS], count = kiln_keras_var_order(n, order);
        for (int k = 0; k < count; k++) {
            snprintf(path, sizeof path, "%s/vars/%d", paths[i], k);
            KILN_TRY(write_tensor(h, path, n->w[order[k]], n->w_ndim[order[k]], n->w_shape[order[k]]));
        }
    }
    return keras_optimizer(m) ? write_optimizer(m, h) : KILN_OK;
}

/* the model's weights as the bytes of a .weights.h5 file */
static kiln_status weights_image(const kiln_model *m, const char *file, void **buf, size_t *len) {
    if (!m->built) return kiln_error(KILN_ERR_INVALID_ARG, "%s: model '%s' is not built", file, m->name);
    char(*paths)[2 * KILN_NAME_MAX];
    KILN_TRY(keras_paths(m, &paths));
    kiln_h5 *h = NULL;
    kiln_status s = kiln_h5_create(file, &h);
    if (s == KILN_OK) s = write_weights(m, h, paths);
    if (s == KILN_OK) s = kiln_h5_image(h, buf, len);
    kiln_h5_close(h);
    free(paths);
    return s;
}

kiln_status kiln_model_save_weights_h5(const kiln_model *m, const char *path) {
    if (!m || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_save_weights_h5: NULL argument");
    void *buf = NULL;
    size_t len = 0;
    KILN_TRY(weights_image(m, path, &buf, &len));
    kiln_status s = kiln_file_write_atomic(path, &(kiln_file_part){buf, len}, 1);
    free(buf);
    return s;
}

/* config.json: the architecture (kiln_model_to_json), with compile_config when the optimizer's
 * state goes with it */
static kiln_status config_json(const kiln_model *m, char **out) {
    KILN_TRY(kiln_model_to_json(m, out));
    if (!m->built || !keras_optimizer(m)) return KILN_OK;
    cJSON *root = cJSON_Parse(*out);
    free(*out);
    *out = NULL;
    if (root) compile_config(m, root);
    if (root) *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? KILN_OK : kiln_error(KILN_ERR_OOM, "out of host memory for the config of model '%s'", m->name);
}

kiln_status kiln_model_save_keras(const kiln_model *m, const char *path) {
    if (!m || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_save_keras: NULL argument");
    static const char meta[] = "{\"keras_version\": \"3.0.0\", \"producer\": \"kiln\"}";
    static const char *const names[3] = {"metadata.json", "config.json", "model.weights.h5"};
    char *json = NULL;
    void *h5 = NULL;
    size_t h5_len = 0;
    kiln_status s = config_json(m, &json);
    if (s == KILN_OK) s = weights_image(m, path, &h5, &h5_len);
    kiln_file_part parts[3] = {{meta, sizeof meta - 1}, {json, json ? strlen(json) : 0}, {h5, h5_len}};
    if (s == KILN_OK) s = kiln_zip_write(path, names, parts, 3);
    free(json);
    free(h5);
    return s;
}

/* ---- reading ---- */

/* the file's group of node n's variables: found or not, and when found its count checked */
static kiln_status vars_group(kiln_h5 *h, const char *file, const kiln_node *n, const char *path, int count, bool *found) {
    int64_t members = 0;
    KILN_TRY(kiln_h5_group_members(h, path, found, &members));
    if (*found && members != count)
        return kiln_error(KILN_ERR_FORMAT, "%s: layer '%s' (%s): '%s' holds %lld variables, kiln's layer has %d", file,
                          n->cfg.name, n->desc->keras_class, path, (long long)members, count);
    return KILN_OK;
}

/* variable k of node n (weight w) has the weight's shape */
static kiln_status check_var(kiln_h5 *h, const char *file, const kiln_node *n, int w, const char *path) {
    int nd;
    int64_t shape[KILN_H5_MAX_DIMS];
    KILN_TRY(kiln_h5_var_shape(h, path, &nd, shape));
    bool same = nd == n->w_ndim[w];
    for (int d = 0; same && d < nd; d++) same = shape[d] == n->w_shape[w][d];
    if (same) return KILN_OK;
    char got[128] = "(", want[128] = "(";
    for (int d = 0; d < nd; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)shape[d]);
    for (int d = 0; d < n->w_ndim[w]; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)n->w_shape[w][d]);
    return kiln_error(KILN_ERR_SHAPE, "%s: '%s' is %s), but weight '%s' of layer '%s' (%s) is %s)", file, path, got,
                      n->w_name[w], n->cfg.name, n->desc->keras_class, want);
}

/* node n's variables: checked (load false) or read into its weights (load true) */
static kiln_status node_vars(kiln_h5 *h, const char *file, kiln_node *n, const char *base, bool subset, bool load,
                             float *host) {
    int order[KILN_MAX_WEIGHTS], count = kiln_keras_var_order(n, order);
    char path[3 * KILN_NAME_MAX];
    snprintf(path, sizeof path, "%s/vars", base);
    bool found;
    KILN_TRY(vars_group(h, file, n, path, count, &found));
    if (!found && (subset || !count)) return KILN_OK;
    if (!found)
        return kiln_error(KILN_ERR_FORMAT, "%s: layer '%s' (%s) has no weights in the file (no group '%s')", file, n->cfg.name,
                          n->desc->keras_class, path);
    for (int k = 0; k < count; k++) {
        int w = order[k];
        snprintf(path, sizeof path, "%s/vars/%d", base, k);
        if (!load) KILN_TRY(check_var(h, file, n, w, path));
        if (!load) continue;
        KILN_TRY(kiln_h5_var_read(h, path, host, kiln_tensor_numel(n->w[w])));
        KILN_TRY(kiln_tensor_set(n->w[w], host, kiln_tensor_nbytes(n->w[w])));
    }
    return KILN_OK;
}

/* a Keras 3 weights file: "layers" is there, holding no more layers than the model has (its InputLayer too) */
static kiln_status check_layout(kiln_h5 *h, const char *file, const kiln_model *m, bool subset) {
    bool found, legacy;
    int64_t members = 0, dummy;
    KILN_TRY(kiln_h5_group_members(h, "layers", &found, &members));
    KILN_TRY(kiln_h5_group_members(h, "model_weights", &legacy, &dummy));
    if (!found)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s, not Keras 3's weights layout (no 'layers' group); re-save it with Keras 3 "
                          "(model.save(\"m.keras\") or model.save_weights(\"m.weights.h5\"))", file,
                          legacy ? "a Keras 2 HDF5 file (it has 'model_weights')" : "an HDF5 file");
    /* a chain Functional model runs as a Sequential one, but its file holds its InputLayer */
    bool input_layer = false;
    if (!m->graph_form) KILN_TRY(kiln_h5_group_members(h, "layers/input_layer", &input_layer, &dummy));
    int layers = m->n_nodes - (m->graph_form ? 0 : 1);
    if (!subset && members - (input_layer ? 1 : 0) > layers)
        return kiln_error(KILN_ERR_FORMAT, "%s: holds %lld layers, model '%s' has %d", file, (long long)members, m->name, layers);
    return KILN_OK;
}

/* every variable checked, then all read: a refused file leaves the model as it was */
static kiln_status read_weights(kiln_model *m, kiln_h5 *h, const char *file, bool subset) {
    KILN_TRY(check_layout(h, file, m, subset));
    char(*paths)[2 * KILN_NAME_MAX];
    KILN_TRY(keras_paths(m, &paths));
    size_t most = 4;
    for (int i = 0; i < m->n_nodes; i++)
        for (int w = 0; w < m->nodes[i].n_w; w++)
            if (kiln_tensor_nbytes(m->nodes[i].w[w]) > most) most = kiln_tensor_nbytes(m->nodes[i].w[w]);
    float *host = malloc(most);
    kiln_status s = host ? KILN_OK : kiln_error(KILN_ERR_OOM, "%s: out of host memory", file);
    for (int pass = 0; s == KILN_OK && pass < 2; pass++)
        for (int i = 0; s == KILN_OK && i < m->n_nodes; i++)
            if (paths[i][0] && m->nodes[i].n_w) s = node_vars(h, file, &m->nodes[i], paths[i], subset, pass == 1, host);
    free(host);
    free(paths);
    return s;
}

/* the members `names` of the .keras archive buf[0..len) named `file` (out[i].data NULL for a missing one) */
static kiln_status keras_members(const void *buf, size_t len, const char *file, const char *const *names, size_t n,
                                 size_t max, kiln_file_part *out) {
    kiln_status s = kiln_zip_read(buf, len, file, names, n, max, out);
    for (size_t i = 0; s == KILN_OK && i < n; i++)
        if (!out[i].data) s = kiln_error(KILN_ERR_FORMAT, "%s: a zip archive without '%s': not a Keras .keras file", file, names[i]);
    for (size_t i = 0; s != KILN_OK && i < n; i++) free((void *)out[i].data);
    return s;
}

kiln_status kiln_model_load_keras_bytes(kiln_model *m, const void *buf, size_t len, const char *file, bool subset) {
    kiln_file_kind kind = kiln_file_kind_sniff(buf, len);
    if (kind != KILN_FILE_ZIP && kind != KILN_FILE_HDF5)
        return kiln_error(KILN_ERR_FORMAT, "%s: this is %s, not a Keras .keras or .weights.h5 file", file, kiln_file_kind_name(kind));
    kiln_file_part image = {buf, len};
    static const char *const member[1] = {"model.weights.h5"};
    if (kind == KILN_FILE_ZIP) KILN_TRY(keras_members(buf, len, file, member, 1, WEIGHTS_MAX, &image));
    char name[4200];
    snprintf(name, sizeof name, kind == KILN_FILE_ZIP ? "%s: model.weights.h5" : "%s", file);
    kiln_h5 *h = NULL;
    kiln_status s = kiln_h5_open_image(image.data, image.len, name, &h);
    if (kind == KILN_FILE_ZIP) free((void *)image.data);
    if (s == KILN_OK) s = read_weights(m, h, name, subset);
    kiln_h5_close(h);
    return s;
}

kiln_status kiln_model_load_keras(kiln_model *m, const char *path, bool subset) {
    void *buf;
    size_t len;
    KILN_TRY(kiln_file_read(path, false, &buf, &len));
    kiln_status s = kiln_model_load_keras_bytes(m, buf, len, path, subset);
    free(buf);
    return s;
}

kiln_status kiln_keras_config(const void *buf, size_t len, const char *file, char **json, size_t *json_len) {
    static const char *const member[1] = {"config.json"};
    kiln_file_part config;
    KILN_TRY(keras_members(buf, len, file, member, 1, CONFIG_MAX, &config));
    *json = (char *)config.data;
    *json_len = config.len;
    return KILN_OK;
}

kiln_status kiln_model_from_keras(const char *path, kiln_model **out) {
    if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_from_keras: NULL argument");
    *out = NULL;
    kiln_file_kind kind;
    KILN_TRY(kiln_file_kind_of(path, &kind));
    if (kind != KILN_FILE_ZIP)
        return kiln_error(KILN_ERR_FORMAT, "%s: this is %s, not a .keras zip archive", path, kiln_file_kind_name(kind));
    void *buf;
    size_t len;
    KILN_TRY(kiln_file_read(path, false, &buf, &len));
    char *json = NULL;
    size_t json_len = 0;
    kiln_status s = kiln_keras_config(buf, len, path, &json, &json_len);
    free(buf);
    if (s == KILN_OK) s = kiln_model_from_json(json, json_len, out);
    free(json);
    if (s != KILN_OK && json) return kiln_error_context(s, "%s: config.json", path);
    return s;
}
