/* layer_json.h: reading and writing the keys of a layer's Keras JSON config, for the layers'
 * read_json and write_json (layer.h) and the JSON reader (internal). Errors name the layer and
 * the key: "model JSON: layer 'd' (Dense): units must be an integer in [1, 16777216]". */
#ifndef KILN_LAYER_JSON_H
#define KILN_LAYER_JSON_H

#include <cjson/cJSON.h>

#include "error.h"
#include "kiln/model.h"

/* one layer being read: its name, its class_name, its "config" object */
struct kiln_json_layer {
    const char *name, *cls;
    const cJSON *cfg;
};
typedef struct kiln_json_layer kiln_json_layer;

/* "model JSON: layer '<name>' (<class>): <message>" with status `code` */
kiln_status kiln_json_fail(const kiln_json_layer *j, kiln_status code, const char *fmt, ...) KILN_PRINTF(3, 4);
const cJSON *kiln_json_get(const kiln_json_layer *j, const char *key);
bool kiln_json_absent(const cJSON *v); /* missing or null */

/* Each reader below gives `def` when the key is absent or null (kiln_json_int: a `def` outside
 * [lo, hi] makes the key required, and its absence an error). */
/* v as an integer in [lo, hi] (key names it in the error) */
kiln_status kiln_json_int_of(const kiln_json_layer *j, const cJSON *v, const char *key, int lo, int hi, int *out);
kiln_status kiln_json_int(const kiln_json_layer *j, const char *key, int def, int lo, int hi, int *out);
/* Keras' int-or-tuple arguments: 3 or [3, 3], each in [1, 2^20] */
kiln_status kiln_json_pair(const kiln_json_layer *j, const char *key, int def, int *a, int *b);
kiln_status kiln_json_bool(const kiln_json_layer *j, const char *key, bool def, bool *out);
kiln_status kiln_json_float(const kiln_json_layer *j, const char *key, float def, double lo, double hi, float *out);
/* a string that must be one of `allowed` (its index in *out; absent: 0) */
kiln_status kiln_json_choice(const kiln_json_layer *j, const char *key, const char *const *allowed, int n, int *out);
kiln_status kiln_json_channels_last(const kiln_json_layer *j); /* data_format */
kiln_status kiln_json_padding(const kiln_json_layer *j, kiln_padding *out);
kiln_status kiln_json_activation(const kiln_json_layer *j, kiln_activation *out); /* absent: linear */
/* "seed": a non-negative integer, or null / absent for 0 (Dropout, SpatialDropout2D) */
kiln_status kiln_json_seed(const kiln_json_layer *j, uint64_t *out);
/* keys that must be absent, null or false: kiln would silently compute something else */
kiln_status kiln_json_refuse(const kiln_json_layer *j, const char *const *keys, int n);

/* writing */
void kiln_json_add_pair(cJSON *o, const char *key, int a, int b);
void kiln_json_add_padding(cJSON *o, kiln_padding p);
void kiln_json_add_activation(cJSON *o, kiln_activation a);
void kiln_json_add_channels_last(cJSON *o); /* "data_format": "channels_last" */

#endif
