/* model_json_layer.c: one Keras layer's JSON config (Keras 2 or 3, as model.to_json() writes
 * it) into a kiln_layer_config. kiln reads every option that changes what a layer computes and
 * refuses, naming the layer and the option, what it cannot do exactly; options that only
 * matter to Keras (initializers, dtype policies of float32, names of Keras internals) are
 * ignored, and initial weights are Keras' defaults. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "model_json_impl.h"

typedef struct jl {
    const char *name, *cls;
    const cJSON *cfg;
} jl;

#define JL_FAIL(j, code, ...) jl_fail((j), (code), __VA_ARGS__)

static kiln_status jl_fail(const jl *j, kiln_status code, const char *fmt, ...) KILN_PRINTF(3, 4);
static kiln_status jl_fail(const jl *j, kiln_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(code, "model JSON: layer '%s' (%s): %s", j->name, j->cls, msg);
}

static const cJSON *get(const jl *j, const char *key) { return cJSON_GetObjectItemCaseSensitive(j->cfg, key); }
static bool absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* an integer in [lo, hi] */
static kiln_status int_of(const jl *j, const cJSON *v, const char *key, int lo, int hi, int *out) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi && d == floor(d)))
        return JL_FAIL(j, KILN_ERR_FORMAT, "%s must be an integer in [%d, %d]", key, lo, hi);
    *out = (int)d;
    return KILN_OK;
}

static kiln_status get_int(const jl *j, const char *key, int def, int lo, int hi, int *out) {
    const cJSON *v = get(j, key);
    if (absent(v)) {
        *out = def;
        return KILN_OK;
    }
    return int_of(j, v, key, lo, hi, out);
}

/* Keras' int-or-tuple arguments: 3 or [3, 3]; absent or null gives the default */
static kiln_status get_pair(const jl *j, const char *key, int def, int *a, int *b) {
    const cJSON *v = get(j, key);
    *a = *b = def;
    if (absent(v)) return KILN_OK;
    if (cJSON_IsNumber(v)) {
        KILN_TRY(int_of(j, v, key, 1, 1 << 20, a));
        *b = *a;
        return KILN_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return JL_FAIL(j, KILN_ERR_FORMAT, "%s must be an integer or a pair of integers", key);
    KILN_TRY(int_of(j, cJSON_GetArrayItem(v, 0), key, 1, 1 << 20, a));
    return int_of(j, cJSON_GetArrayItem(v, 1), key, 1, 1 << 20, b);
}

static kiln_status get_bool(const jl *j, const char *key, bool def, bool *out) {
    const cJSON *v = get(j, key);
    if (absent(v)) *out = def;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return JL_FAIL(j, KILN_ERR_FORMAT, "%s must be true or false", key);
    return KILN_OK;
}

static kiln_status get_float(const jl *j, const char *key, float def, double lo, double hi, float *out) {
    const cJSON *v = get(j, key);
    if (absent(v)) {
        *out = def;
        return KILN_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return JL_FAIL(j, KILN_ERR_FORMAT, "%s must be a number in [%g, %g]", key, lo, hi);
    *out = (float)v->valuedouble;
    return KILN_OK;
}

/* a string option that must be one of `allowed` (absent or null: the first) */
static kiln_status get_choice(const jl *j, const char *key, const char *const *allowed, int n, int *out) {
    const cJSON *v = get(j, key);
    *out = 0;
    if (absent(v)) return KILN_OK;
    if (!cJSON_IsString(v)) return JL_FAIL(j, KILN_ERR_FORMAT, "%s must be a string", key);
    for (int i = 0; i < n; i++)
        if (!strcmp(v->valuestring, allowed[i])) {
            *out = i;
            return KILN_OK;
        }
    return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "%s '%s' is not supported (%s%s%s)", key, v->valuestring, allowed[0],
                   n > 1 ? " or " : " only", n > 1 ? allowed[1] : "");
}

static kiln_status channels_last(const jl *j) {
    static const char *const f[] = {"channels_last"};
    int k;
    return get_choice(j, "data_format", f, 1, &k);
}

static kiln_status padding(const jl *j, kiln_padding *out) {
    static const char *const p[] = {"valid", "same"};
    int k;
    KILN_TRY(get_choice(j, "padding", p, 2, &k));
    *out = k ? KILN_PADDING_SAME : KILN_PADDING_VALID;
    return KILN_OK;
}

static kiln_status activation(const jl *j, kiln_activation *out) {
    const cJSON *v = get(j, "activation");
    *out = KILN_ACT_LINEAR;
    if (absent(v)) return KILN_OK;
    if (!cJSON_IsString(v)) return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "activation must be a built-in name (linear, relu, softmax, sigmoid, tanh)");
    if (kiln_activation_parse(v->valuestring, out) != KILN_OK)
        return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "activation '%s' is not supported (linear, relu, softmax, sigmoid, tanh)", v->valuestring);
    return KILN_OK;
}

/* options that must be absent or null (or false): kiln would silently compute something else */
static kiln_status refuse(const jl *j, const char *const *keys, int n) {
    for (int i = 0; i < n; i++) {
        const cJSON *v = get(j, keys[i]);
        if (!absent(v) && !cJSON_IsFalse(v)) return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "%s is not supported", keys[i]);
    }
    return KILN_OK;
}

static kiln_status dtype_float32(const jl *j) {
    const cJSON *v = get(j, "dtype");
    if (cJSON_IsObject(v)) /* Keras 3's DTypePolicy {"config": {"name": "float32"}} */
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "config"), "name");
    if (absent(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, "float32"))) return KILN_OK;
    return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "dtype %s is not supported (float32 only)",
                   cJSON_IsString(v) ? v->valuestring : "(not a name)");
}

bool kiln_json_input_shape(const cJSON *cfg, const char *layer, kiln_layer_config *out, kiln_status *status) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cfg, "batch_shape");
    if (!s) s = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
    *status = KILN_OK;
    if (absent(s)) return false;
    int n = cJSON_IsArray(s) ? cJSON_GetArraySize(s) : 0;
    int64_t shape[3] = {0};
    bool ok = n >= 2 && n <= 4;
    for (int d = 1; ok && d < n; d++) {
        const cJSON *v = cJSON_GetArrayItem(s, d);
        ok = cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 1 << 20 && v->valuedouble == floor(v->valuedouble);
        if (ok) shape[d - 1] = (int64_t)v->valuedouble;
    }
    if (!ok) {
        *status = kiln_error(KILN_ERR_UNSUPPORTED,
                             "model JSON: layer '%s': the input shape must be [null, then 1 to 3 positive sizes] "
                             "(every size known)", layer);
        return true;
    }
    *out = kiln_input_layer(n - 1, shape);
    return true;
}

int kiln_layer_output_rank(const kiln_layer_config *c, int in_rank) {
    switch (c->type) {
    case KILN_LAYER_INPUT: return c->input_ndim;
    case KILN_LAYER_FLATTEN:
    case KILN_LAYER_GLOBAL_AVG_POOL2D:
    case KILN_LAYER_DENSE: return 1;
    default: return in_rank;
    }
}

static kiln_status conv2d(const jl *j, kiln_layer_config *c) {
    static const char *const no[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                     "kernel_constraint", "bias_constraint", "lora_rank"};
    int groups;
    KILN_TRY(get_int(j, "filters", 0, 1, 1 << 20, &c->filters));
    KILN_TRY(get_pair(j, "kernel_size", 0, &c->kernel_h, &c->kernel_w));
    if (!c->kernel_h) return JL_FAIL(j, KILN_ERR_FORMAT, "kernel_size is missing");
    KILN_TRY(get_pair(j, "strides", 1, &c->conv.stride_h, &c->conv.stride_w));
    KILN_TRY(get_pair(j, "dilation_rate", 1, &c->conv.dilation_h, &c->conv.dilation_w));
    KILN_TRY(padding(j, &c->conv.padding));
    KILN_TRY(channels_last(j));
    KILN_TRY(get_int(j, "groups", 1, 1, 1 << 20, &groups));
    if (groups != 1) return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "groups %d is not supported (1 only)", groups);
    KILN_TRY(activation(j, &c->activation));
    KILN_TRY(get_bool(j, "use_bias", true, &c->use_bias));
    return refuse(j, no, 6);
}

static kiln_status dense(const jl *j, kiln_layer_config *c) {
    static const char *const no[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                     "kernel_constraint", "bias_constraint", "lora_rank"};
    KILN_TRY(get_int(j, "units", 0, 1, 1 << 24, &c->units));
    KILN_TRY(activation(j, &c->activation));
    KILN_TRY(get_bool(j, "use_bias", true, &c->use_bias));
    return refuse(j, no, 6);
}

static kiln_status batchnorm(const jl *j, kiln_layer_config *c, int in_rank) {
    static const char *const no[] = {"renorm", "virtual_batch_size", "adjustment", "beta_regularizer",
                                     "gamma_regularizer", "beta_constraint", "gamma_constraint"};
    const cJSON *axis = get(j, "axis");
    if (cJSON_IsArray(axis) && cJSON_GetArraySize(axis) == 1) axis = cJSON_GetArrayItem(axis, 0);
    int a = -1;
    if (!absent(axis)) KILN_TRY(int_of(j, axis, "axis", -1, 16, &a));
    if (a != -1 && a != in_rank) /* Keras counts the batch axis: the last of rank r is r */
        return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "axis %d is not supported (the last axis only: -1 or %d)", a, in_rank);
    static const char *const conv[] = {"keras", "torch", "torch_cumulative"};
    int k;
    KILN_TRY(get_choice(j, "kiln_convention", conv, 3, &k));
    if (k) {
        c->bn = kiln_bn_params_torch();
        c->bn.cumulative = k == 2;
    }
    KILN_TRY(get_float(j, "momentum", c->bn.momentum, 0.0, 1.0, &c->bn.momentum));
    KILN_TRY(get_float(j, "epsilon", c->bn.epsilon, 0.0, 1e10, &c->bn.epsilon));
    KILN_TRY(get_bool(j, "center", true, &c->bn.center));
    KILN_TRY(get_bool(j, "scale", true, &c->bn.scale));
    return refuse(j, no, 7);
}

static kiln_status pool2d(const jl *j, kiln_layer_config *c) {
    KILN_TRY(get_pair(j, "pool_size", 2, &c->pool.pool_h, &c->pool.pool_w));
    KILN_TRY(get_pair(j, "strides", 0, &c->pool.stride_h, &c->pool.stride_w));
    KILN_TRY(padding(j, &c->pool.padding));
    return channels_last(j);
}

static kiln_status options(const jl *j, kiln_layer_config *c, int in_rank) {
    switch (c->type) {
    case KILN_LAYER_CONV2D: return conv2d(j, c);
    case KILN_LAYER_DENSE: return dense(j, c);
    case KILN_LAYER_BATCHNORM: return batchnorm(j, c, in_rank);
    case KILN_LAYER_MAX_POOL2D:
    case KILN_LAYER_AVG_POOL2D: return pool2d(j, c);
    case KILN_LAYER_GLOBAL_AVG_POOL2D: {
        bool keep;
        KILN_TRY(get_bool(j, "keepdims", false, &keep));
        if (keep) return JL_FAIL(j, KILN_ERR_UNSUPPORTED, "keepdims true is not supported");
        return channels_last(j);
    }
    case KILN_LAYER_FLATTEN: return channels_last(j);
    case KILN_LAYER_DROPOUT: {
        static const char *const no[] = {"noise_shape"};
        const cJSON *seed = get(j, "seed");
        if (!absent(seed) && !(cJSON_IsNumber(seed) && seed->valuedouble >= 0 && seed->valuedouble < 0x1p63))
            return JL_FAIL(j, KILN_ERR_FORMAT, "seed must be a non-negative integer or null");
        c->seed = absent(seed) ? 0 : (uint64_t)seed->valuedouble;
        KILN_TRY(get_float(j, "rate", 0.0f, 0.0, 0.999999, &c->rate));
        return refuse(j, no, 1);
    }
    case KILN_LAYER_ACTIVATION: return activation(j, &c->activation);
    default: return KILN_OK; /* Add */
    }
}

kiln_status kiln_layer_config_from_json(const char *cls, const cJSON *cfg, int in_rank, kiln_layer_config *out) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cfg, "name");
    jl j = {cJSON_IsString(nm) ? nm->valuestring : "", cls ? cls : "?", cfg};
    if (!cJSON_IsObject(cfg)) return JL_FAIL(&j, KILN_ERR_FORMAT, "its config is not an object");
    kiln_layer_type t = KILN_LAYER_TYPE_COUNT;
    for (int k = 0; k < KILN_LAYER_TYPE_COUNT; k++)
        if (cls && !strcmp(cls, kiln_layer_type_name((kiln_layer_type)k))) t = (kiln_layer_type)k;
    if (t == KILN_LAYER_TYPE_COUNT)
        return JL_FAIL(&j, KILN_ERR_UNSUPPORTED, "layer class %s is not supported (InputLayer, Conv2D, Dense, "
                       "BatchNormalization, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, "
                       "Dropout, Activation, Add)", j.cls);
    if (strlen(j.name) >= KILN_NAME_MAX)
        return JL_FAIL(&j, KILN_ERR_UNSUPPORTED, "names are at most %d characters", KILN_NAME_MAX - 1);
    KILN_TRY(dtype_float32(&j));
    kiln_status s;
    if (t == KILN_LAYER_INPUT) {
        if (!kiln_json_input_shape(cfg, j.name, out, &s))
            return JL_FAIL(&j, KILN_ERR_FORMAT, "no batch_shape (Keras 3) or batch_input_shape (Keras 2)");
        if (s != KILN_OK) return s;
        static const char *const no[] = {"sparse", "ragged"};
        KILN_TRY(refuse(&j, no, 2));
    } else {
        *out = kiln_flatten_layer(); /* Keras' defaults in every field */
        out->type = t;
        KILN_TRY(options(&j, out, in_rank));
    }
    snprintf(out->name, sizeof out->name, "%s", j.name);
    return get_bool(&j, "trainable", true, &out->trainable);
}
