/* model_json.c: a model's architecture as the JSON Keras 3 writes with model.to_json()
 * ({"class_name": "Sequential" | "Functional", "config": {"name", "layers": [...]}}), so a
 * checkpoint carries its model and Keras users can read it. Reading (Keras 2 and 3 files) is
 * in model_json_read.c. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model_impl.h"

static cJSON *pair(int a, int b) {
    int v[2] = {a, b};
    return cJSON_CreateIntArray(v, 2);
}

static const char *padding_name(kiln_padding p) { return p == KILN_PADDING_SAME ? "same" : "valid"; }

static cJSON *layer_config(const kiln_node *n) {
    const kiln_layer_config *c = &n->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddBoolToObject(o, "trainable", c->trainable);
    cJSON_AddStringToObject(o, "dtype", "float32");
    switch (c->type) {
    case KILN_LAYER_INPUT: {
        cJSON *shape = cJSON_AddArrayToObject(o, "batch_shape");
        cJSON_AddItemToArray(shape, cJSON_CreateNull());
        for (int d = 0; d < c->input_ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)c->input_shape[d]));
        break;
    }
    case KILN_LAYER_CONV2D:
        cJSON_AddNumberToObject(o, "filters", c->filters);
        cJSON_AddItemToObject(o, "kernel_size", pair(c->kernel_h, c->kernel_w));
        cJSON_AddItemToObject(o, "strides", pair(c->conv.stride_h, c->conv.stride_w));
        cJSON_AddStringToObject(o, "padding", padding_name(c->conv.padding));
        cJSON_AddStringToObject(o, "data_format", "channels_last");
        cJSON_AddItemToObject(o, "dilation_rate", pair(c->conv.dilation_h, c->conv.dilation_w));
        cJSON_AddStringToObject(o, "activation", kiln_activation_name(c->activation));
        cJSON_AddBoolToObject(o, "use_bias", c->use_bias);
        break;
    case KILN_LAYER_DENSE:
        cJSON_AddNumberToObject(o, "units", c->units);
        cJSON_AddStringToObject(o, "activation", kiln_activation_name(c->activation));
        cJSON_AddBoolToObject(o, "use_bias", c->use_bias);
        break;
    case KILN_LAYER_BATCHNORM:
        cJSON_AddNumberToObject(o, "axis", -1);
        cJSON_AddNumberToObject(o, "momentum", c->bn.momentum);
        cJSON_AddNumberToObject(o, "epsilon", c->bn.epsilon);
        cJSON_AddBoolToObject(o, "center", c->bn.center);
        cJSON_AddBoolToObject(o, "scale", c->bn.scale);
        if (c->bn.convention == KILN_BN_TORCH) /* kiln's own key: Keras ignores it */
            cJSON_AddStringToObject(o, "kiln_convention", c->bn.cumulative ? "torch_cumulative" : "torch");
        break;
    case KILN_LAYER_MAX_POOL2D:
    case KILN_LAYER_AVG_POOL2D:
        cJSON_AddItemToObject(o, "pool_size", pair(c->pool.pool_h, c->pool.pool_w));
        cJSON_AddItemToObject(o, "strides", pair(c->pool.stride_h ? c->pool.stride_h : c->pool.pool_h,
                                                 c->pool.stride_w ? c->pool.stride_w : c->pool.pool_w));
        cJSON_AddStringToObject(o, "padding", padding_name(c->pool.padding));
        cJSON_AddStringToObject(o, "data_format", "channels_last");
        break;
    case KILN_LAYER_GLOBAL_AVG_POOL2D:
        cJSON_AddStringToObject(o, "data_format", "channels_last");
        cJSON_AddBoolToObject(o, "keepdims", false);
        break;
    case KILN_LAYER_FLATTEN: cJSON_AddStringToObject(o, "data_format", "channels_last"); break;
    case KILN_LAYER_DROPOUT:
        cJSON_AddNumberToObject(o, "rate", c->rate);
        if (c->seed) cJSON_AddNumberToObject(o, "seed", (double)c->seed);
        break;
    case KILN_LAYER_ACTIVATION: cJSON_AddStringToObject(o, "activation", kiln_activation_name(c->activation)); break;
    default: break;
    }
    return o;
}

/* Keras 3's inbound_nodes: [{"args": [tensor or [tensors]], "kwargs": {}}] */
static cJSON *inbound(const kiln_model *m, const kiln_node *n) {
    cJSON *nodes = cJSON_CreateArray();
    if (!n->n_in) return nodes;
    cJSON *call = cJSON_CreateObject(), *args = cJSON_AddArrayToObject(call, "args");
    cJSON *list = n->n_in > 1 ? cJSON_CreateArray() : args;
    for (int k = 0; k < n->n_in; k++) {
        cJSON *t = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(t, "config");
        cJSON_AddStringToObject(t, "class_name", "__keras_tensor__");
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
    cJSON_AddStringToObject(root, "module", "keras");
    cJSON_AddStringToObject(root, "class_name", m->graph_form ? "Functional" : "Sequential");
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cfg, "name", m->name);
    cJSON_AddBoolToObject(cfg, "trainable", true);
    cJSON *layers = cJSON_AddArrayToObject(cfg, "layers");
    for (int i = 0; i < m->n_nodes; i++) {
        const kiln_node *n = &m->nodes[i];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "module", "keras.layers");
        cJSON_AddStringToObject(l, "class_name", kiln_layer_type_name(n->cfg.type));
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
