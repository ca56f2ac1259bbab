/* layer_json.c: the readers and writers of a layer's Keras JSON config keys (layer_json.h),
 * shared by every layer: integers, int-or-pair arguments, booleans, numbers, choices
 * (data_format, padding), activations, refused options. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "layer_json.h"

kiln_status kiln_json_fail(const kiln_json_layer *j, kiln_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(code, "model JSON: layer '%s' (%s): %s", j->name, j->cls, msg);
}

const cJSON *kiln_json_get(const kiln_json_layer *j, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(j->cfg, key);
}

bool kiln_json_absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

kiln_status kiln_json_int_of(const kiln_json_layer *j, const cJSON *v, const char *key, int lo, int hi, int *out) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi && d == floor(d)))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be an integer in [%d, %d]", key, lo, hi);
    *out = (int)d;
    return KILN_OK;
}

kiln_status kiln_json_int(const kiln_json_layer *j, const char *key, int def, int lo, int hi, int *out) {
    const cJSON *v = kiln_json_get(j, key);
    if (kiln_json_absent(v) && (def < lo || def > hi)) /* no default: the key is required */
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s is missing (an integer in [%d, %d])", key, lo, hi);
    if (kiln_json_absent(v)) {
        *out = def;
        return KILN_OK;
    }
    return kiln_json_int_of(j, v, key, lo, hi, out);
}

kiln_status kiln_json_pair(const kiln_json_layer *j, const char *key, int def, int *a, int *b) {
    const cJSON *v = kiln_json_get(j, key);
    *a = *b = def;
    if (kiln_json_absent(v)) return KILN_OK;
    if (cJSON_IsNumber(v)) {
        KILN_TRY(kiln_json_int_of(j, v, key, 1, 1 << 20, a));
        *b = *a;
        return KILN_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be an integer or a pair of integers", key);
    KILN_TRY(kiln_json_int_of(j, cJSON_GetArrayItem(v, 0), key, 1, 1 << 20, a));
    return kiln_json_int_of(j, cJSON_GetArrayItem(v, 1), key, 1, 1 << 20, b);
}

kiln_status kiln_json_bool(const kiln_json_layer *j, const char *key, bool def, bool *out) {
    const cJSON *v = kiln_json_get(j, key);
    if (kiln_json_absent(v)) *out = def;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be true or false", key);
    return KILN_OK;
}

kiln_status kiln_json_float(const kiln_json_layer *j, const char *key, float def, double lo, double hi, float *out) {
    const cJSON *v = kiln_json_get(j, key);
    if (kiln_json_absent(v)) {
        *out = def;
        return KILN_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be a number in [%g, %g]", key, lo, hi);
    *out = (float)v->valuedouble;
    return KILN_OK;
}

kiln_status kiln_json_choice(const kiln_json_layer *j, const char *key, const char *const *allowed, int n, int *out) {
    const cJSON *v = kiln_json_get(j, key);
    *out = 0;
    if (kiln_json_absent(v)) return KILN_OK;
    if (!cJSON_IsString(v)) return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be a string", key);
    for (int i = 0; i < n; i++)
        if (!strcmp(v->valuestring, allowed[i])) {
            *out = i;
            return KILN_OK;
        }
    return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s '%s' is not supported (%s%s%s)", key, v->valuestring, allowed[0],
                          n > 1 ? " or " : " only", n > 1 ? allowed[1] : "");
}

kiln_status kiln_json_channels_last(const kiln_json_layer *j) {
    static const char *const f[] = {"channels_last"};
    int k;
    return kiln_json_choice(j, "data_format", f, 1, &k);
}

kiln_status kiln_json_padding(const kiln_json_layer *j, kiln_padding *out) {
    static const char *const p[] = {"valid", "same"};
    int k;
    KILN_TRY(kiln_json_choice(j, "padding", p, 2, &k));
    *out = k ? KILN_PADDING_SAME : KILN_PADDING_VALID;
    return KILN_OK;
}

#define ACTS "linear, relu, softmax, sigmoid, tanh, relu6, silu, swish, gelu, elu, hard_sigmoid, hard_silu, " \
             "hard_swish, leaky_relu"

kiln_status kiln_json_activation(const kiln_json_layer *j, kiln_activation *out) {
    const cJSON *v = kiln_json_get(j, "activation");
    *out = KILN_ACT_LINEAR;
    if (kiln_json_absent(v)) return KILN_OK;
    if (!cJSON_IsString(v))
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "activation must be a built-in name (%s)", ACTS);
    if (kiln_activation_parse(v->valuestring, out) != KILN_OK)
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "activation '%s' is not supported (%s)", v->valuestring, ACTS);
    return KILN_OK;
}

kiln_status kiln_json_seed(const kiln_json_layer *j, uint64_t *out) {
    const cJSON *seed = kiln_json_get(j, "seed");
    if (!kiln_json_absent(seed) && !(cJSON_IsNumber(seed) && seed->valuedouble >= 0 && seed->valuedouble < 0x1p63))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "seed must be a non-negative integer or null");
    *out = kiln_json_absent(seed) ? 0 : (uint64_t)seed->valuedouble;
    return KILN_OK;
}

kiln_status kiln_json_refuse(const kiln_json_layer *j, const char *const *keys, int n) {
    for (int i = 0; i < n; i++) {
        const cJSON *v = kiln_json_get(j, keys[i]);
        if (!kiln_json_absent(v) && !cJSON_IsFalse(v))
            return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s is not supported", keys[i]);
    }
    return KILN_OK;
}

void kiln_json_add_pair(cJSON *o, const char *key, int a, int b) {
    int v[2] = {a, b};
    cJSON_AddItemToObject(o, key, cJSON_CreateIntArray(v, 2));
}

void kiln_json_add_padding(cJSON *o, kiln_padding p) {
    cJSON_AddStringToObject(o, "padding", p == KILN_PADDING_SAME ? "same" : "valid");
}

void kiln_json_add_activation(cJSON *o, kiln_activation a) {
    cJSON_AddStringToObject(o, "activation", kiln_activation_name(a));
}

void kiln_json_add_channels_last(cJSON *o) { cJSON_AddStringToObject(o, "data_format", "channels_last"); }
