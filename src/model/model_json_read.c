/* model_json_read.c: a model from the JSON Keras writes with model.to_json(), the inverse of
 * model_json_write.c. Keras 2 and Keras 3 files both:
 *   Sequential  config.layers in order; Keras 3 starts with an InputLayer (batch_shape), Keras 2
 *               may instead put batch_input_shape on the first layer;
 *   Functional  ("Model" in older Keras 2) layers with inbound_nodes, Keras 2 as
 *               [[["name", 0, 0, {}], ...]], Keras 3 as [{"args": [keras tensors], "kwargs": {}}];
 *               one input and one output; layers are added in the file's order whenever their
 *               inputs exist (a stable topological order: Kahn's algorithm taking the first
 *               ready layer in file order from a heap, O(n log n)), and the output must come
 *               last. Names are looked up in an index (name_index.h): reading n layers is not
 *               quadratic, and at most KILN_MODEL_MAX_LAYERS are read.
 * Each layer's config is read by model_json_layer.c (its own keys by its descriptor). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_json_impl.h"
#include "name_index.h"

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
    int i = 0;
    for (const cJSON *l = layers->child; l; l = l->next, i++) { /* cJSON arrays are lists: no GetArrayItem(i) */
        const cJSON *cfg = item(l, "config");
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

/* the file's layers and the index of their names */
typedef struct jgraph {
    jlayer *l;
    int n;
    kiln_name_index names;
} jgraph;

static const char *jlayer_name(const void *g, int id) { return ((const jgraph *)g)->l[id].name; }
static int find(const jgraph *g, const char *name) { return kiln_name_index_find(&g->names, name, jlayer_name, g); }

/* the index of each layer's inputs; every layer but the output must feed another */
static kiln_status resolve(jgraph *g, const char *output) {
    jlayer *l = g->l;
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < l[i].n_in; k++) {
            int j = find(g, l[i].in[k]);
            if (j < 0)
                return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s' takes '%s', which is no layer of the model",
                                  l[i].name, l[i].in[k]);
            l[i].src[k] = j;
            l[j].used = true;
        }
    for (int i = 0; i < g->n; i++)
        if (!l[i].used && strcmp(l[i].name, output))
            return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: layer '%s' does not lead to the output '%s' (not supported)",
                              l[i].name, output);
    return KILN_OK;
}

/* a binary min-heap of file indices: the ready layers, the first in file order on top */
typedef struct heap {
    int *v, n;
} heap;

static void heap_push(heap *h, int x) {
    int i = h->n++;
    for (; i > 0 && h->v[(i - 1) / 2] > x; i = (i - 1) / 2) h->v[i] = h->v[(i - 1) / 2];
    h->v[i] = x;
}

static int heap_pop(heap *h) {
    int top = h->v[0], x = h->v[--h->n], i = 0;
    for (int c; (c = 2 * i + 1) < h->n; i = c) {
        if (c + 1 < h->n && h->v[c + 1] < h->v[c]) c++;
        if (x <= h->v[c]) break;
        h->v[i] = h->v[c];
    }
    h->v[i] = x;
    return top;
}

/* the edges out of each layer (first[i] .. first[i + 1] in to[], one per input taken, so
 * Add(x, x) counts twice) and each layer's count of inputs not yet added (pending) */
static void edges(const jgraph *g, int *first, int *to, int *fill, int *pending) {
    const jlayer *l = g->l;
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < l[i].n_in; k++) first[l[i].src[k] + 1]++;
    for (int i = 0; i < g->n; i++) first[i + 1] += first[i];
    memcpy(fill, first, sizeof *fill * (size_t)g->n);
    for (int i = 0; i < g->n; i++) {
        pending[i] = l[i].n_in;
        for (int k = 0; k < l[i].n_in; k++) to[fill[l[i].src[k]]++] = i;
    }
}

/* adds layer i, its inputs being added already */
static kiln_status add_one(kiln_model *m, jlayer *l, int i, int *ranks) {
    int in[KILN_LAYER_MAX_INPUTS];
    for (int k = 0; k < l[i].n_in; k++) in[k] = l[l[i].src[k]].id;
    if (!l[i].n_in && strcmp(l[i].cls, "InputLayer"))
        return kiln_error(KILN_ERR_FORMAT, "model JSON: layer '%s' has no inbound nodes", l[i].name);
    return add_layer(m, l[i].cls, l[i].cfg, l[i].name, l[i].n_in, in, ranks, &l[i].id);
}

/* adds the layers, each as soon as its inputs are there, the first in file order first */
static kiln_status add_graph(kiln_model *m, jgraph *g, const char *output, int *ranks) {
    KILN_TRY(resolve(g, output));
    int n = g->n, added = 0;
    int *first = calloc((size_t)n * (4 + KILN_LAYER_MAX_INPUTS) + 1, sizeof *first);
    if (!first) return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
    int *fill = first + n + 1, *pending = fill + n, *to = pending + n, *ready = to + (size_t)n * KILN_LAYER_MAX_INPUTS;
    edges(g, first, to, fill, pending);
    heap h = {ready, 0};
    for (int i = 0; i < n; i++)
        if (!pending[i]) heap_push(&h, i);
    kiln_status s = KILN_OK;
    while (s == KILN_OK && h.n) {
        int i = heap_pop(&h);
        s = add_one(m, g->l, i, ranks);
        added++;
        for (int e = first[i]; s == KILN_OK && e < first[i + 1]; e++)
            if (--pending[to[e]] == 0) heap_push(&h, to[e]);
    }
    free(first);
    KILN_TRY(s);
    if (added < n) return kiln_error(KILN_ERR_FORMAT, "model JSON: the layers' inbound nodes form a cycle");
    int last = kiln_model_layer_count(m) - 1;
    if (g->l[find(g, output)].id != last)
        return kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: the output '%s' must be the last layer, but '%s' follows it",
                          output, kiln_model_layer(m, last)->name);
    return KILN_OK;
}

/* reads layer i of the file: its name, class and inputs, and indexes its name */
static kiln_status read_layer(jgraph *g, const cJSON *o, int i) {
    jlayer *l = &g->l[i];
    *l = (jlayer){str(o, "name"), str(o, "class_name"), item(o, "config"), 0, {0}, {0}, false, -1};
    if (!l->name) l->name = str(l->cfg, "name");
    if (!l->name || !l->cls) return kiln_error(KILN_ERR_FORMAT, "model JSON: layer %d has no name or class_name", i);
    if (find(g, l->name) >= 0) return kiln_error(KILN_ERR_FORMAT, "model JSON: two layers are named '%s'", l->name);
    KILN_TRY(kiln_name_index_add(&g->names, i, jlayer_name, g));
    return inbound(item(o, "inbound_nodes"), l);
}

static kiln_status functional(kiln_model *m, const cJSON *cfg, const cJSON *layers, int *ranks) {
    int n = cJSON_GetArraySize(layers);
    const char *input, *output;
    KILN_TRY(endpoint(cfg, "input_layers", &input));
    KILN_TRY(endpoint(cfg, "output_layers", &output));
    jgraph g = {calloc((size_t)n, sizeof *g.l), n, {0}};
    if (!g.l) return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
    kiln_status s = KILN_OK;
    int i = 0;
    for (const cJSON *o = layers->child; s == KILN_OK && o; o = o->next) s = read_layer(&g, o, i++);
    if (s == KILN_OK) {
        int in = find(&g, input);
        if (in < 0 || strcmp(g.l[in].cls, "InputLayer"))
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: the input '%s' is no InputLayer of the model", input);
        else if (find(&g, output) < 0)
            s = kiln_error(KILN_ERR_FORMAT, "model JSON: the output '%s' is no layer of the model", output);
    }
    if (s == KILN_OK) s = add_graph(m, &g, output, ranks);
    kiln_name_index_free(&g.names);
    free(g.l);
    return s;
}

/* Keras 3 saves `x + 3.0` and `x * c` on a Keras tensor (MobileNetV3's hard sigmoid) as operation
 * nodes: module keras.src.ops.numpy, class Add or Multiply, args a tensor and a number. Each is
 * rewritten in place as the Rescaling layer it is (scale c, or offset 3.0), its name kept. */
static kiln_status scalar_ops_as_rescaling(cJSON *layers) {
    for (cJSON *l = layers ? layers->child : NULL; l; l = l->next) {
        const char *module = str(l, "module"), *cls = str(l, "class_name");
        cJSON *args = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(item(l, "inbound_nodes"), 0), "args");
        if (!module || !cls || strcmp(module, "keras.src.ops.numpy") || (strcmp(cls, "Add") && strcmp(cls, "Multiply")) ||
            cJSON_GetArraySize(args) != 2)
            continue;
        cJSON *num = cJSON_IsNumber(args->child) ? args->child : args->child->next;
        if (!cJSON_IsNumber(num) || cJSON_IsNumber(num == args->child ? args->child->next : args->child)) continue;
        bool add = !strcmp(cls, "Add");
        const char *name = str(l, "name") ? str(l, "name") : str(item(l, "config"), "name");
        cJSON *cfg = cJSON_CreateObject();
        if (!cfg || !cJSON_AddStringToObject(cfg, "name", name ? name : "") ||
            !cJSON_AddNumberToObject(cfg, "scale", add ? 1.0 : num->valuedouble) ||
            !cJSON_AddNumberToObject(cfg, "offset", add ? num->valuedouble : 0.0)) {
            cJSON_Delete(cfg);
            return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
        }
        cJSON *rescaling = cJSON_CreateString("Rescaling");
        if (!rescaling || !cJSON_ReplaceItemInObjectCaseSensitive(l, "class_name", rescaling)) {
            cJSON_Delete(cfg);
            cJSON_Delete(rescaling);
            return kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
        }
        cJSON_Delete(cJSON_DetachItemViaPointer(args, num));
        cJSON_DeleteItemFromObjectCaseSensitive(l, "config");
        cJSON_AddItemToObject(l, "config", cfg);
    }
    return KILN_OK;
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
    else if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1)
        s = kiln_error(KILN_ERR_FORMAT, "model JSON: config.layers is missing or empty");
    else if (cJSON_GetArraySize(layers) > KILN_MODEL_MAX_LAYERS)
        s = kiln_error(KILN_ERR_UNSUPPORTED, "model JSON: config.layers holds %d layers, more than kiln's limit of %d",
                       cJSON_GetArraySize(layers), KILN_MODEL_MAX_LAYERS);
    kiln_model *m = NULL;
    int *ranks = NULL;
    if (s == KILN_OK) {
        const char *name = str(cfg, "name");
        s = kiln_model_new(name && strlen(name) < KILN_NAME_MAX ? name : seq ? "sequential" : "functional", &m);
    }
    if (s == KILN_OK && !(ranks = calloc((size_t)cJSON_GetArraySize(layers) + 1, sizeof *ranks)))
        s = kiln_error(KILN_ERR_OOM, "model JSON: out of host memory");
    if (s == KILN_OK && fun)
        s = scalar_ops_as_rescaling(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "config"), "layers"));
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
