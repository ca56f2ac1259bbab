/* model_json_impl.h: what the Keras JSON reader (model_json_read.c: the model, Sequential or
 * Functional, and its graph) asks of model_json_layer.c (one layer's config) (internal). */
#ifndef KILN_MODEL_JSON_IMPL_H
#define KILN_MODEL_JSON_IMPL_H

#include <cjson/cJSON.h>

#include "kiln/model.h"

/* Fills *out from one Keras layer: its class_name `cls` and its "config" object `cfg`.
 * `in_rank` is the rank (without the batch axis) of the layer's first input, 0 for an
 * InputLayer. Anything kiln cannot do exactly (an unknown class, channels_first, an activation
 * kiln lacks, groups != 1, a regularizer, ...) is KILN_ERR_UNSUPPORTED naming the layer and the
 * option. The shape of an InputLayer comes from batch_shape (Keras 3) or batch_input_shape
 * (Keras 2). */
kiln_status kiln_layer_config_from_json(const char *cls, const cJSON *cfg, int in_rank,
                                        kiln_layer_config *out);

/* The rank, without the batch axis, of what a layer of config c gives for an input of rank
 * in_rank. */
int kiln_layer_output_rank(const kiln_layer_config *c, int in_rank);

#endif
