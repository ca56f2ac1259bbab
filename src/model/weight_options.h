/* weight_options.h: a layer's initializers and regularizers by weight (weight_options.c;
 * kiln_weight_options in kiln/model.h), for the layers' weight declarations and the Keras JSON
 * reader and writer (internal). */
#ifndef KILN_WEIGHT_OPTIONS_H
#define KILN_WEIGHT_OPTIONS_H

#include <cjson/cJSON.h>

#include "error.h"
#include "kiln/model.h"

typedef struct kiln_json_layer kiln_json_layer; /* layer_json.h */

/* c's entry for the layer's weight named `weight` ("kernel", "depthwise_kernel", "gamma"), or NULL */
const kiln_weight_options *kiln_weight_options_find(const kiln_layer_config *c, const char *weight);
/* c's entries as kiln_model_add takes them: names terminated in their arrays, parameters in
 * range (KILN_ERR_INVALID_ARG naming the layer and the weight) */
kiln_status kiln_weight_options_check(const kiln_layer_config *c);
/* a config key this file reads: "<w>_initializer" or "<w>_regularizer" (not activity_regularizer) */
bool kiln_weight_options_key(const char *key);
/* reads every such key of the layer's config into c; an unknown initializer or regularizer, or
 * bad parameters, is an error naming the layer and the key */
kiln_status kiln_weight_options_read(const kiln_json_layer *j, kiln_layer_config *c);
/* writes c's entries back as Keras 3 writes them ({"module", "class_name", "config", ...}) */
void kiln_weight_options_write(const kiln_layer_config *c, cJSON *o);

#endif
