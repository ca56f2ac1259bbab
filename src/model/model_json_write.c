/* model_json_write.c: a model's architecture as the JSON Keras 3 writes with model.to_json()
 * ({"class_name": "Sequential" | "Functional", "config": {"name", "layers": [...]}}), so a
 * checkpoint carries its model and Keras users can read it; each layer writes its own config
 * keys (its descriptor's write_json). Reading (Keras 2 and 3 files) is in model_json_read.c. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "layer.h"
#include "weight_options.h"

/* name, trainable and dtype, then the layer's own keys */
static cJSON *layer_config(const kiln_node *n) {
    const kiln_layer_config *c = &n->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddBoolToObject(o, "trainable", c->trainable);
    cJSON_AddStringToObject(o, "dtype", "float32");
    if (n->desc->write_json) n->desc->write_json(c, o);
    kiln_weight_options_write(c, o);
    return o;
}

/* a __keras_tensor__'s shape: [null, the output shape of layer n] (known once the model is
 * inferred or built; Keras needs it to rebuild a Functional model) */
static void add_tensor_shape(const kiln_model *m, const kiln_node *n, cJSON *cfg) {
    if (!m->shaped && !m->built) return;
    cJSON *shape = cJSON_AddArrayToObject(cfg, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNull());
    for (int d = 0; d < n->out_ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)n->out_shape[d]));
    cJSON_AddStringToObject(cfg, "dtype", "float32");
}

/* Keras 3's inbound_nodes: [{"args": [tensor or [tensors]], "kwargs": {}}], each tensor
 * {"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history"}} */
static cJSON *inbound(const kiln_model *m, const kiln_node *n) {
    cJSON *nodes = cJSON_CreateArray();
    if (!n->n_in) return nodes;
    cJSON *call = cJSON_CreateObject(), *args = cJSON_AddArrayToObject(call, "args");
    cJSON *list = n->n_in > 1 ? cJSON_CreateArray() : args;
    for (int k = 0; k < n->n_in; k++) {
        cJSON *t = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(t, "config");
        cJSON_AddStringToObject(t, "class_name", "__keras_tensor__");
        add_tensor_shape(m, &m->nodes[n->in[k]], cfg);
        cJSON *hist = cJSON_AddArrayToObject(cfg, "keras_history");
        cJSON_AddItemToArray(hist, cJSON_CreateString(m->nodes[n->in[k]].cfg.name));
        cJSON_AddItemToArray(hist, cJSON_CreateNumber(0));
        cJSON_AddItemToArray(hist, cJSON_CreateNumber(0));
        cJSON_AddItemToArray(list, t);
    }
    if (list != args) cJSON_AddItemToArray(args, list);
    cJSON_AddObjectToObject(call, "kwargs");
    cJSON_AddItemToArray(nodes, call);
    return nodes;
}

static cJSON *endpoint(const kiln_model *m, int id) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString(m->nodes[id].cfg.name));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(0));
    return a;
}

kiln_status kiln_model_to_json(const kiln_model *m, char **out) {
    if (!m || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_to_json: NULL argument");
    cJSON *root = cJSON_CreateObject();
    /* the module Keras 3 writes for each: Keras refuses "keras" with class Functional */
    cJSON_AddStringToObject(root, "module", m->graph_form ? "keras.src.models.functional" : "keras");
    cJSON_AddStringToObject(root, "class_name", m->graph_form ? "Functional" : "Sequential");
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cfg, "name", m->name);
    cJSON_AddBoolToObject(cfg, "trainable", true);
    cJSON *layers = cJSON_AddArrayToObject(cfg, "layers");
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "module", "keras.layers");
        cJSON_AddStringToObject(l, "class_name", n->desc->keras_class);
        cJSON_AddItemToObject(l, "config", layer_config(n));
        if (m->graph_form) {
            cJSON_AddStringToObject(l, "name", n->cfg.name);
            cJSON_AddItemToObject(l, "inbound_nodes", inbound(m, n));
        }
        cJSON_AddItemToArray(layers, l);
    }
    if (m->graph_form) {
        cJSON *ins = cJSON_AddArrayToObject(cfg, "input_layers"), *outs = cJSON_AddArrayToObject(cfg, "output_layers");
        cJSON_AddItemToArray(ins, endpoint(m, 0));
        cJSON_AddItemToArray(outs, endpoint(m, m->n_nodes - 1));
    }
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? KILN_OK : kiln_error(KILN_ERR_OOM, "kiln_model_to_json: out of host memory");
}
