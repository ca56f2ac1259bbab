/* model_json_read.c: a model from the JSON Keras writes with model.to_json(), the inverse of
 * model_json_write.c. Keras 2 and Keras 3 files both:
 *   Sequential  config.layers in order; Keras 3 starts with an InputLayer (batch_shape), Keras 2
 *               may instead put batch_input_shape on the first layer;
 *   Functional  ("Model" in older Keras 2) layers with inbound_nodes, Keras 2 as
 *               [[["name", 0, 0, {}], ...]], Keras 3 as [{"args": [keras tensors], "kwargs": {}}];
 *               one input and one output; layers are added in the file's order whenever their
 *               inputs exist (a stable topological order), and the output must come last.
 * Each layer's config is read by model_json_layer.c (its own keys by its descriptor). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_json_impl.h"

#define JSON_MAX_LAYERS 100000

typedef struct jlayer {
    const char *name, *cls;
    const cJSON *cfg;
    int n_in;
    const char *in[KILN_LAYER_MAX_INPUTS];
    int src[KILN_LAYER_MAX_INPUTS]; /* the inputs' indices in the file */
    bool used;                      /* some layer takes it */
    int id;                         /* kiln's id once added, else -1 */
} jlayer;

static const cJSON *item(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }
static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = item(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* adds one layer fed by `inputs` (n_in 0: the previous layer); ranks[] tracks each id's rank */
static kiln_status add_layer(kiln_model *m, const char *cls, const cJSON *cfg, const char *name, int n_in,
                             const int *inputs, int *ranks, int *id) {
    int count = kiln_model_layer_count(m), in_rank = 0;
    if (n_in) in_rank = ranks[inputs[0]];
    else if (count) in_rank = ranks[count - 1];
    kiln_layer_config c;
    KILN_TRY(kiln_layer_config_from_json(cls, cfg, in_rank, &c));
    if (name && strlen(name) < sizeof c.name) /* a Functional layer's own name, which the graph refers to */
        snprintf(c.name, sizeof c.name, "%s", name);
    if ((c.type == KILN_LAYER_INPUT) != (count == 0))
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s' (%s): %s", c.name, cls,
                          count ? "an InputLayer can only come first (one input per model)"
                                : "the model must start with its input");
    kiln_status s = kiln_model_add(m, &c, n_in, inputs, id);
    if (s != KILN_OK) return kiln_error_context(s, "model JSON");
    ranks[count] = kiln_layer_output_rank(&c, in_rank);
    return KILN_OK;
}

static kiln_status sequential(kiln_model *m, const cJSON *root, const cJSON *layers, int *ranks) {
    int n = cJSON_GetArraySize(layers);
    for (int i = 0; i < n; i++) {
        const cJSON *l = cJSON_GetArrayItem(layers, i), *cfg = item(l, "config");
        const char *cls = str(l, "class_name");
        if (i == 0 && (!cls || strcmp(cls, "InputLayer"))) {
            /* Keras 2: batch_input_shape on the first layer, or the model's build input shape */
            const cJSON *build = item(item(root, "build_config"), "input_shape");
            if (!build) build = item(item(root, "config"), "build_input_shape");
            cJSON *in = cJSON_CreateObject();
            if (!in) return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
            const cJSON *shape = item(cfg, "batch_input_shape") ? item(cfg, "batch_input_shape") : build;
            if (shape) cJSON_AddItemReferenceToObject(in, "batch_input_shape", (cJSON *)shape);
            cJSON_AddStringToObject(in, "name", "input_layer");
            kiln_status s = shape ? add_layer(m, "InputLayer", in, NULL, 0, NULL, ranks, NULL)
                                  : kiln_error(KILN_ERR_FORMAT, "model JSON: the Sequential model has no input shape "
                                               "(no InputLayer, and no batch_input_shape on its first layer)");
            cJSON_Delete(in);
            KILN_TRY(s);
        }
        KILN_TRY(add_layer(m, cls, cfg, NULL, 0, NULL, ranks, NULL));
    }
    return KILN_OK;
}

/* the layer names a Keras 3 call's args refer to: every __keras_tensor__ in them */
static kiln_status keras3_args(const cJSON *v, jlayer *l) {
    if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) KILN_TRY(keras3_args(e, l));
        return KILN_OK;
    }
    const char *cls = str(v, "class_name");
    if (!cls || strcmp(cls, "__keras_tensor__")) return KILN_OK; /* a constant argument */
    const cJSON *h = item(item(v, "config"), "keras_history");
    const cJSON *name = cJSON_GetArrayItem(h, 0), *node = cJSON_GetArrayItem(h, 1), *tensor = cJSON_GetArrayItem(h, 2);
    if (!cJSON_IsString(name) || !cJSON_IsNumber(node) || !cJSON_IsNumber(tensor))
        return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s': a keras_history is not [\"layer\", node, tensor]", l->name);
    if (node->valuedouble != 0 || tensor->valuedouble != 0)
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s': input '%s' is a shared layer's later call or a second "
                          "output (not supported)", l->name, name->valuestring);
    if (l->n_in == KILN_LAYER_MAX_INPUTS)
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s': more than %d inputs", l->name, KILN_LAYER_MAX_INPUTS);
    l->in[l->n_in++] = name->valuestring;
    return KILN_OK;
}

/* inbound_nodes of one layer: at most one call (shared layers are not supported) */
static kiln_status inbound(const cJSON *nodes, jlayer *l) {
    int calls = cJSON_IsArray(nodes) ? cJSON_GetArraySize(nodes) : -1;
    if (calls < 0 && nodes)
        return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s': inbound_nodes is not a list", l->name);
    if (calls > 1)
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s' is called %d times (shared layers are not supported)",
                          l->name, calls);
    if (calls <= 0) return KILN_OK;
    const cJSON *call = cJSON_GetArrayItem(nodes, 0);
    if (cJSON_IsObject(call)) return keras3_args(item(call, "args"), l);
    for (const cJSON *t = cJSON_IsArray(call) ? call->child : NULL; t; t = t->next) { /* Keras 2 */
        const cJSON *name = cJSON_GetArrayItem(t, 0), *node = cJSON_GetArrayItem(t, 1), *tensor = cJSON_GetArrayItem(t, 2);
        if (!cJSON_IsString(name) || !cJSON_IsNumber(node) || !cJSON_IsNumber(tensor))
            return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s': an inbound node is not [\"layer\", node, tensor, {}]", l->name);
        if (node->valuedouble != 0 || tensor->valuedouble != 0)
            return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s': input '%s' is a shared layer's later call or a "
                              "second output (not supported)", l->name, name->valuestring);
        if (l->n_in == KILN_LAYER_MAX_INPUTS)
            return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s': more than %d inputs", l->name, KILN_LAYER_MAX_INPUTS);
        l->in[l->n_in++] = name->valuestring;
    }
    return KILN_OK;
}

/* the one layer name of input_layers / output_layers: [["name", 0, 0]] or ["name", 0, 0] */
static kiln_status endpoint(const cJSON *cfg, const char *key, const char **out) {
    const cJSON *e = item(cfg, key);
    if (cJSON_IsArray(e) && cJSON_IsArray(cJSON_GetArrayItem(e, 0))) {
        if (cJSON_GetArraySize(e) != 1)
            return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: %d %s (kiln models have one input and one output)",
                              cJSON_GetArraySize(e), key);
        e = cJSON_GetArrayItem(e, 0);
    }
    const cJSON *name = cJSON_GetArrayItem(e, 0);
    if (!cJSON_IsString(name)) return kiln_error(KILN_ERR_FORMAT, "model JSON: config.%s is missing or malformed", key);
    *out = name->valuestring;
    return KILN_OK;
}

static int find(const jlayer *l, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(l[i].name, name)) return i;
    return -1;
}

/* the index of each layer's inputs; every layer but the output must feed another */
static kiln_status resolve(jlayer *l, int n, const char *output) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < l[i].n_in; k++) {
            int j = find(l, n, l[i].in[k]);
            if (j < 0)
                return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s' takes '%s', which is no layer of the model",
                                  l[i].name, l[i].in[k]);
            l[i].src[k] = j;
            l[j].used = true;
        }
    for (int i = 0; i < n; i++)
        if (!l[i].used && strcmp(l[i].name, output))
            return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s' does not lead to the output '%s' (not supported)",
                              l[i].name, output);
    return KILN_OK;
}

/* adds the layers in file order whenever all their inputs are there */
static kiln_status add_graph(kiln_model *m, jlayer *l, int n, const char *output, int *ranks) {
    KILN_TRY(resolve(l, n, output));
    for (int added = 0; added < n;) {
        int before = added;
        for (int i = 0; i < n; i++) {
            if (l[i].id >= 0) continue;
            int in[KILN_LAYER_MAX_INPUTS];
            bool ready = true;
            for (int k = 0; ready && k < l[i].n_in; k++) {
                ready = l[l[i].src[k]].id >= 0;
                in[k] = l[l[i].src[k]].id;
            }
            if (!ready) continue;
            if (!l[i].n_in && strcmp(l[i].cls, "InputLayer"))
                return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s' has no inbound nodes", l[i].name);
            KILN_TRY(add_layer(m, l[i].cls, l[i].cfg, l[i].name, l[i].n_in, in, ranks, &l[i].id));
            added++;
            break; /* start again from the top: the file's order wherever possible */
        }
        if (added == before) return kiln_error(KILN_ERR_FORMAT, "model JSON: the layers' inbound nodes form a cycle");
    }
    int last = kiln_model_layer_count(m) - 1;
    if (l[find(l, n, output)].id != last)
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: the output '%s' must be the last layer, but '%s' follows it",
                          output, kiln_model_layer(m, last)->name);
    return KILN_OK;
}

static kiln_status functional(kiln_model *m, const cJSON *cfg, const cJSON *layers, int *ranks) {
    int n = cJSON_GetArraySize(layers);
    const char *input, *output;
    KILN_TRY(endpoint(cfg, "input_layers", &input));
    KILN_TRY(endpoint(cfg, "output_layers", &output));
    jlayer *l = calloc((size_t)n, sizeof *l);
    if (!l) return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
    kiln_status s = KILN_OK;
    for (int i = 0; s == KILN_OK && i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(layers, i);
        l[i] = (jlayer){str(o, "name"), str(o, "class_name"), item(o, "config"), 0, {0}, {0}, false, -1};
        if (!l[i].name) l[i].name = str(l[i].cfg, "name");
        if (!l[i].name || !l[i].cls)
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: layer %d has no name or class_name", i);
        else if (find(l, i, l[i].name) >= 0)
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: two layers are named '%s'", l[i].name);
        else
            s = inbound(item(o, "inbound_nodes"), &l[i]);
    }
    if (s == KILN_OK) {
        int in = find(l, n, input);
        if (in < 0 || strcmp(l[in].cls, "InputLayer"))
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: the input '%s' is no InputLayer of the model", input);
        else if (find(l, n, output) < 0)
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: the output '%s' is no layer of the model", output);
    }
    if (s == KILN_OK) s = add_graph(m, l, n, output, ranks);
    free(l);
    return s;
}

kiln_status kiln_model_from_json(const char *json, size_t len, kiln_model **out) {
    if (!json || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_from_json: NULL argument");
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root)
        return kiln_error(KILN_ERR_FORMAT, "model JSON: not valid JSON (error near byte %zu of %zu)",
                          end && end >= json ? (size_t)(end - json) : (size_t)0, len);
    const char *cls = str(root, "class_name");
    const cJSON *cfg = item(root, "config"), *layers = item(cfg, "layers");
    bool seq = cls && !strcmp(cls, "Sequential");
    bool fun = cls && (!strcmp(cls, "Functional") || !strcmp(cls, "Model"));
    kiln_status s = KILN_OK;
    if (!seq && !fun)
        s = kiln_error(cls ? KILN_ERR_UNSUPPORTED : KILN_ERR_FORMAT, "model JSON: class_name %s%s%s is not a model kiln reads "
                       "(Sequential, Functional)", cls ? "'" : "", cls ? cls : "(missing)", cls ? "'" : "");
    else if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1 || cJSON_GetArraySize(layers) > JSON_MAX_LAYERS)
        s = kiln_error(KILN_ERR_FORMAT, "model JSON: config.layers is missing, empty or too long");
    kiln_model *m = NULL;
    int *ranks = NULL;
    if (s == KILN_OK) {
        const char *name = str(cfg, "name");
        s = kiln_model_new(name && strlen(name) < KILN_NAME_MAX ? name : seq ? "sequential" : "functional", &m);
    }
    if (s == KILN_OK && !(ranks = calloc((size_t)cJSON_GetArraySize(layers) + 1, sizeof *ranks)))
        s = kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
    if (s == KILN_OK) s = seq ? sequential(m, root, layers, ranks) : functional(m, cfg, layers, ranks);
    if (s == KILN_OK && kiln_model_layer_count(m) < 2)
        s = kiln_error(KILN_ERR_FORMAT, "model JSON: the model has no layers after its input");
    free(ranks);
    cJSON_Delete(root);
    if (s != KILN_OK) {
        kiln_model_free(m);
        return s;
    }
    *out = m;
    return KILN_OK;
}
